//! Messages through the admin client: raw single sends and pulls to one broker (for tests
//! and tools that pick the queue themselves), and sending or reading messages as a tool
//! does, through the client's producer and pull consumer (routes, retries, offsets).
//!
//! This file owns those requests and [`ConsumedMessage`], the plain form of a message read.
//! It must never print, and never commit a group's offset past a message it has not
//! handed to the caller.

use bytes::Bytes;
use serde::Serialize;

use super::transport::decode_header;
use super::{AdminClient, AdminError};
use crate::protocol::message::{
    PullMessageRequestHeader, PullMessageResponseHeader, SendMessageRequestHeader,
    SendMessageResponseHeader,
};
use crate::protocol::{RequestCode, ResponseCode};
use crate::storage::record::decode_records;
use crate::storage::StoredMessage;
use crate::{Message, Producer, ProducerConfig, PullConsumer, PullStatus, SendResult};

/// The producer group [`AdminClient::send_message`] sends as.
pub const PRODUCER_GROUP: &str = "mqadmin-producer";

/// How many messages one pull of [`AdminClient::consume_messages`] asks for.
const CONSUME_BATCH: u32 = 32;

/// Outcome of one raw pull ([`AdminClient::pull`]).
#[derive(Debug, Clone)]
pub struct PullOutcome {
    /// The broker's response code.
    pub code: ResponseCode,
    /// Offsets from the response header.
    pub header: PullMessageResponseHeader,
    /// Decoded messages (empty unless `code` is success).
    pub messages: Vec<StoredMessage>,
}

/// What [`AdminClient::consume_messages`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumeOptions {
    /// The topic.
    pub topic: String,
    /// The consumer group whose committed offsets are read, and advanced past what was read.
    pub group: String,
    /// Stop after this many messages.
    pub count: usize,
    /// Start at each queue's first message instead of the group's committed offset.
    pub from_beginning: bool,
}

/// One message read by [`AdminClient::consume_messages`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumedMessage {
    /// The queue it was read from.
    pub queue: crate::MessageQueue,
    /// Its offset in that queue.
    pub queue_offset: u64,
    /// Its message id as RocketMQ users know it: the producer's unique id (`UNIQ_KEY`),
    /// empty for a message sent without one.
    pub msg_id: String,
    /// The broker's offset id: its address and the commit-log offset, RocketMQ's
    /// `offsetMsgId`.
    pub offset_msg_id: String,
    /// Its tag, if any.
    pub tags: Option<String>,
    /// Its business keys.
    pub keys: Vec<String>,
    /// Its body.
    pub body: Bytes,
}

impl AdminClient {
    /// Sends one message to the queue the header names (synchronously: returns once the
    /// broker stored it). No route lookup and no retry: see [`AdminClient::send_message`].
    pub async fn send(
        &mut self,
        broker: &str,
        header: &SendMessageRequestHeader,
        body: Bytes,
    ) -> Result<SendMessageResponseHeader, AdminError> {
        let f = self
            .call_ok(broker, RequestCode::SendMessage, header, body)
            .await?;
        decode_header(broker, &f)
    }

    /// Pulls from one queue. Not-found and offset-moved answers are outcomes, not errors.
    pub async fn pull(
        &mut self,
        broker: &str,
        header: &PullMessageRequestHeader,
    ) -> Result<PullOutcome, AdminError> {
        let f = self
            .call(broker, RequestCode::PullMessage, header, Bytes::new())
            .await?;
        let code = f.response_code().unwrap_or(ResponseCode::SystemError);
        match code {
            ResponseCode::Success
            | ResponseCode::PullNotFound
            | ResponseCode::PullRetryImmediately
            | ResponseCode::PullOffsetMoved => {
                let header: PullMessageResponseHeader = decode_header(broker, &f)?;
                let messages = if code == ResponseCode::Success {
                    decode_records(&f.body).map_err(|reason| AdminError::BadAnswer {
                        peer: broker.to_owned(),
                        reason,
                    })?
                } else {
                    Vec::new()
                };
                Ok(PullOutcome {
                    code,
                    header,
                    messages,
                })
            }
            _ => Err(AdminError::Refused {
                peer: broker.to_owned(),
                code: code.to_string(),
                remark: f.remark.unwrap_or_default(),
            }),
        }
    }

    /// Sends one message as a producer of [`PRODUCER_GROUP`] would: the topic's route from
    /// the name servers, the next queue in turn, retries on another broker. Returns where
    /// it was stored.
    pub async fn send_message(&mut self, message: Message) -> Result<SendResult, AdminError> {
        let producer = match &self.producer {
            Some(p) => p.clone(),
            None => {
                let p =
                    Producer::start(self.client_instance()?, ProducerConfig::new(PRODUCER_GROUP));
                self.producer = Some(p.clone());
                p
            }
        };
        Ok(producer.send(message).await?)
    }

    /// Reads up to `options.count` messages of a topic, queue by queue, calling `each` with
    /// every one as it is read, and returns how many were read.
    ///
    /// Each queue starts at the group's committed offset (or its first message with
    /// `from_beginning`); after each queue the group's offset is committed just past the
    /// last message handed to `each`, so the next call goes on from there. An error stops
    /// the reading: queues already read keep their committed offsets.
    pub async fn consume_messages(
        &mut self,
        options: &ConsumeOptions,
        mut each: impl FnMut(&ConsumedMessage),
    ) -> Result<usize, AdminError> {
        let consumer = PullConsumer::new(self.client_instance()?, options.group.clone());
        let count = options.count;
        let mut read = 0;
        for mq in consumer.fetch_queues(&options.topic).await? {
            let mut offset = if options.from_beginning {
                0
            } else {
                consumer.fetch_offset(&mq).await?.unwrap_or(0)
            };
            while read < count {
                let r = consumer.pull(&mq, "*", offset, CONSUME_BATCH).await?;
                if r.status == PullStatus::OffsetIllegal {
                    offset = r.next_begin_offset;
                    continue;
                }
                let handed = r.messages.len().min(count - read);
                for m in &r.messages[..handed] {
                    read += 1;
                    offset = m.queue_offset + 1;
                    each(&ConsumedMessage {
                        queue: mq.clone(),
                        queue_offset: m.queue_offset,
                        msg_id: m.msg_id().unwrap_or_default().to_owned(),
                        offset_msg_id: m.offset_msg_id(),
                        tags: m.tags().map(str::to_owned),
                        keys: m.keys().into_iter().map(str::to_owned).collect(),
                        body: m.body().clone(),
                    });
                }
                // A batch cut short by `count` leaves the rest for the next call: the
                // offset stays just past the last message handed over.
                if r.status != PullStatus::Found || handed < r.messages.len() {
                    break;
                }
                offset = offset.max(r.next_begin_offset);
            }
            consumer.commit_offset(&mq, offset).await?;
        }
        Ok(read)
    }
}
