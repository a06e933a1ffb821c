//! Dead letters: listing a consumer group's dead-letter topic `%DLQ%<group>`
//! (`mqadmin queryDlqMsg`) and sending its messages back to the topic they were first sent
//! to (`mqadmin resendDlqMsg`), for a listener fixed since they failed.
//!
//! Reads and sends only; it never deletes a dead letter (a resend is a new message, and the
//! letter stays listed, as in RocketMQ).

use crate::common::names::dlq_topic;
use crate::common::properties::{
    PROPERTY_DELAY, PROPERTY_DUE_MS, PROPERTY_KEYS, PROPERTY_MAX_RECONSUME_TIMES,
    PROPERTY_ORIGIN_MESSAGE_ID, PROPERTY_REAL_QUEUE_ID, PROPERTY_REAL_TOPIC, PROPERTY_RETRY_TOPIC,
    PROPERTY_TAGS, PROPERTY_UNIQ_KEY,
};
use crate::protocol::message::PullMessageRequestHeader;
use crate::protocol::ResponseCode;
use crate::storage::record::PROPERTY_RECORD_CRC;
use crate::{Message, SendResult};

use super::{AdminClient, AdminError, FoundMessage};

/// Messages asked for per pull while listing.
const PULL_BATCH: i32 = 32;

/// A dead letter sent back to its topic.
#[derive(Debug, Clone)]
pub struct Resent {
    /// The dead letter.
    pub letter: FoundMessage,
    /// Where its copy was stored.
    pub result: SendResult,
}

impl FoundMessage {
    /// The topic a retried or dead-lettered message was first sent to (its `RETRY_TOPIC`),
    /// else its own topic.
    pub fn original_topic(&self) -> &str {
        self.properties
            .get(PROPERTY_RETRY_TOPIC)
            .map_or(self.topic.as_str(), String::as_str)
    }
}

impl AdminClient {
    /// The dead letters of `group` (`queryDlqMsg`): up to `max` messages of `%DLQ%<group>`,
    /// from every broker serving it, oldest first per queue. An error names a topic with no
    /// route when the group never dead-lettered anything.
    pub async fn query_dlq(
        &mut self,
        group: &str,
        max: usize,
    ) -> Result<Vec<FoundMessage>, AdminError> {
        let topic = dlq_topic(group);
        let route = self.route(&topic).await?;
        let mut found = Vec::new();
        for set in &route.broker_datas {
            let queues = route
                .queue_datas
                .iter()
                .find(|q| q.broker_name == set.broker_name)
                .map_or(0, |q| q.read_queue_nums.max(0));
            // The master (id 0) holds every letter; a slave only while it is away.
            let Some(addr) = set.broker_addrs.values().next().cloned() else {
                continue;
            };
            for queue_id in 0..queues {
                let mut offset = 0i64;
                while found.len() < max {
                    let header = PullMessageRequestHeader {
                        consumer_group: "mqadmin-dlq".into(),
                        topic: topic.clone(),
                        queue_id,
                        queue_offset: offset,
                        max_msg_nums: PULL_BATCH,
                        ..Default::default()
                    };
                    let outcome = self.pull(&addr, &header).await?;
                    match outcome.code {
                        ResponseCode::Success => {
                            for m in outcome.messages {
                                if found.len() < max {
                                    found.push(FoundMessage::from_stored(m, &set.broker_name));
                                }
                            }
                            offset = outcome.header.next_begin_offset.max(offset + 1);
                        }
                        ResponseCode::PullOffsetMoved | ResponseCode::PullRetryImmediately
                            if outcome.header.next_begin_offset > offset =>
                        {
                            offset = outcome.header.next_begin_offset;
                        }
                        _ => break,
                    }
                }
            }
        }
        Ok(found)
    }

    /// Sends the dead letters of `group` back to the topics they were first sent to
    /// (`resendDlqMsg`): the one whose unique id is `only`, or every one. Each copy is a new
    /// message with the letter's body, tag, keys and user properties, and
    /// `ORIGIN_MESSAGE_ID` naming the letter; its reconsume count starts again at 0.
    pub async fn resend_dlq(
        &mut self,
        group: &str,
        only: Option<&str>,
    ) -> Result<Vec<Resent>, AdminError> {
        let letters = self.query_dlq(group, usize::MAX).await?;
        let mut resent = Vec::new();
        for letter in letters {
            if only.is_some_and(|id| id != letter.msg_id && id != letter.offset_msg_id) {
                continue;
            }
            let mut msg = Message::new(letter.original_topic(), letter.body.clone());
            msg.tags = letter.tags.clone();
            msg.keys = letter.keys.clone();
            for (name, value) in &letter.properties {
                let internal = matches!(
                    name.as_str(),
                    PROPERTY_TAGS
                        | PROPERTY_KEYS
                        | PROPERTY_UNIQ_KEY
                        | PROPERTY_RECORD_CRC
                        | PROPERTY_DELAY
                        | PROPERTY_DUE_MS
                        | PROPERTY_REAL_TOPIC
                        | PROPERTY_REAL_QUEUE_ID
                        | PROPERTY_RETRY_TOPIC
                        | PROPERTY_MAX_RECONSUME_TIMES
                        | PROPERTY_ORIGIN_MESSAGE_ID
                );
                if !internal {
                    msg.properties.insert(name.clone(), value.clone());
                }
            }
            msg.properties.insert(
                PROPERTY_ORIGIN_MESSAGE_ID.to_owned(),
                if letter.msg_id.is_empty() {
                    letter.offset_msg_id.clone()
                } else {
                    letter.msg_id.clone()
                },
            );
            let result = self.send_message(msg).await?;
            resent.push(Resent { letter, result });
        }
        if let (Some(id), true) = (only, resent.is_empty()) {
            return Err(AdminError::Refused {
                peer: "the brokers".into(),
                code: "NOT_FOUND".into(),
                remark: format!("no dead letter of group '{group}' has the id '{id}'"),
            });
        }
        Ok(resent)
    }
}
