//! Consumer retries and dead letters (`CONSUMER_SEND_MSG_BACK`), as RocketMQ's broker does
//! them: a message a consumer group failed is stored again in the group's retry topic
//! `%RETRY%<group>`, delayed by level `3 + reconsume times` (10 s, 30 s, 1 m, ... with the
//! default levels) and with its reconsume count raised; once the count reaches the
//! consumer's `max_reconsume_times` (or the consumer asks, with delay level -1) it goes to
//! `%DLQ%<group>` instead, a topic no consumer subscribes by default.
//!
//! Also owns the creation of those two topics: the retry topic when a clustering push
//! consumer heartbeats (its members subscribe it at once), the dead-letter topic on its
//! first letter. It never answers a send-back before the new message is stored as a send
//! would be acknowledged: the consumer moves its offset past the message on that answer.

use super::*;
use crate::actors::server::schedule_delivery::to_schedule;
use crate::common::names::{dlq_topic, retry_topic, RETRY_GROUP_TOPIC_PREFIX};
use crate::common::properties::{
    encode_properties, PROPERTY_DELAY, PROPERTY_DUE_MS, PROPERTY_MAX_RECONSUME_TIMES,
    PROPERTY_ORIGIN_MESSAGE_ID, PROPERTY_REAL_QUEUE_ID, PROPERTY_REAL_TOPIC, PROPERTY_RETRY_TOPIC,
};
use crate::protocol::group::{ConsumeType, ConsumerData, MessageModel};
use crate::protocol::message::ConsumerSendMsgBackRequestHeader;
use crate::protocol::topic::{TopicConfig, PERM_READ_WRITE};

/// RocketMQ's default retry limit (a push consumer's `maxReconsumeTimes` of -1).
pub(super) const DEFAULT_MAX_RECONSUME_TIMES: i32 = 16;
/// Queues of a retry or dead-letter topic (RocketMQ uses one).
const RETRY_QUEUES: i32 = 1;

impl Broker {
    /// Creates `topic` (one queue, read and write) if this broker does not have it yet, and
    /// tells the name servers. The table is saved before the next append is answered.
    pub(super) fn ensure_group_topic(&mut self, topic: &str, ctx: &mut Context<Self>) {
        if self.topics.get(topic).is_some() || !self.config.is_master() {
            return;
        }
        self.topics.upsert(TopicConfig {
            topic_name: topic.to_owned(),
            read_queue_nums: RETRY_QUEUES,
            write_queue_nums: RETRY_QUEUES,
            perm: PERM_READ_WRITE,
            topic_sys_flag: 0,
            order: false,
        });
        self.topics_unsaved = true;
        tracing::info!(topic, "consumer group topic created");
        self.register_all(ctx);
    }

    /// A heartbeat's consumer: a clustering push consumer gets its retry topic.
    pub(super) fn on_consumer_heartbeat(
        &mut self,
        consumer: &ConsumerData,
        ctx: &mut Context<Self>,
    ) {
        if consumer.message_model == MessageModel::Clustering
            && consumer.consume_type == ConsumeType::ConsumePassively
        {
            self.ensure_group_topic(&retry_topic(&consumer.group_name), ctx);
        }
    }

    /// `CONSUMER_SEND_MSG_BACK`: stores the failed message again, delayed in the group's
    /// retry topic or in its dead-letter topic, and answers once it is stored.
    pub(super) fn send_back(
        &mut self,
        inb: Inbound,
        h: ConsumerSendMsgBackRequestHeader,
        ctx: &mut Context<Self>,
    ) {
        if !self.config.is_master() {
            return inb.fail(
                ResponseCode::ServiceNotAvailable,
                "this broker is a slave: send the message back to its master",
            );
        }
        if let Err(e) = crate::common::names::validate_group_name(&h.group) {
            return inb.fail(ResponseCode::InvalidParameter, e);
        }
        let original = match self.store.read_by_physical(h.offset.max(0) as u64) {
            Ok(m) => m,
            Err(e) => {
                return inb.fail(
                    ResponseCode::SystemError,
                    format!(
                        "no message at commit-log offset {} to send back: {e}",
                        h.offset
                    ),
                )
            }
        };
        let max = h
            .max_reconsume_times
            .filter(|m| *m >= 0)
            .unwrap_or(DEFAULT_MAX_RECONSUME_TIMES);
        let times = original.reconsume_times.max(0);
        let dead = h.delay_level < 0 || times >= max;
        let topic = if dead {
            dlq_topic(&h.group)
        } else {
            retry_topic(&h.group)
        };
        self.ensure_group_topic(&topic, ctx);
        // The topic the consumer subscribed: kept from the first retry on.
        let first_topic = original
            .property(PROPERTY_RETRY_TOPIC)
            .map(str::to_owned)
            .or_else(|| {
                (!original.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX))
                    .then(|| original.topic.clone())
            })
            .or(h.origin_topic.clone())
            .unwrap_or_default();
        let origin_id = original
            .property(PROPERTY_ORIGIN_MESSAGE_ID)
            .map(str::to_owned)
            .or(h.origin_msg_id.clone())
            .unwrap_or_else(|| original.offset_msg_id());
        let max_text = max.to_string();
        let mut msg = MessageToStore::rebuilt_from(
            &original,
            &topic,
            0,
            &[
                PROPERTY_DELAY,
                PROPERTY_DUE_MS,
                PROPERTY_REAL_TOPIC,
                PROPERTY_REAL_QUEUE_ID,
                PROPERTY_RETRY_TOPIC,
                PROPERTY_ORIGIN_MESSAGE_ID,
                PROPERTY_MAX_RECONSUME_TIMES,
            ],
            &[
                (PROPERTY_RETRY_TOPIC, first_topic.as_str()),
                (PROPERTY_ORIGIN_MESSAGE_ID, origin_id.as_str()),
                (PROPERTY_MAX_RECONSUME_TIMES, max_text.as_str()),
            ],
        );
        msg.reconsume_times = if dead { times } else { times + 1 };
        let level = if dead {
            0
        } else if h.delay_level > 0 {
            h.delay_level as u32
        } else {
            3 + times as u32
        };
        if level > 0 {
            let level_text = level.to_string();
            msg.properties
                .push_str(&encode_properties([(PROPERTY_DELAY, level_text.as_str())]));
            to_schedule(&mut msg, level, self.delay_level_count);
        } else {
            tracing::warn!(
                group = %h.group,
                topic = %first_topic,
                msg_id = %origin_id,
                reconsume_times = times,
                "message dead-lettered to {topic} after {times} retries"
            );
        }
        let answer = self.queue_internal(msg);
        actix::spawn(async move {
            match answer.await {
                Ok(Ok(_)) => response(&inb, ResponseCode::Success, &NoHeader {}, Bytes::new()),
                Ok(Err(why)) => inb.fail(
                    ResponseCode::SystemError,
                    format!("not stored for retry: {why}"),
                ),
                Err(_) => inb.fail(ResponseCode::SystemError, "the broker dropped the retry"),
            }
        });
    }
}

use super::requests::response;
