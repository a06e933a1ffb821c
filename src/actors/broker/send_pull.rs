//! The broker's send and pull paths: topic checks (and auto-creation) for a send, the choice
//! of queue, and the hand-over to the queue actor that appends or reads. Answers come from
//! the queue actor, never from here, except for requests refused up front.

use super::*;

/// What a send needs to know of its topic (copied out rather than cloning the config).
pub(super) struct SendTarget {
    perm: i32,
    write_queue_nums: i32,
}

impl SendTarget {
    fn of(t: &crate::protocol::topic::TopicConfig) -> Self {
        SendTarget {
            perm: t.perm,
            write_queue_nums: t.write_queue_nums,
        }
    }
}

impl Broker {
    pub(super) fn topic_for_send(
        &mut self,
        h: &SendMessageRequestHeader,
        ctx: &mut Context<Self>,
    ) -> Result<SendTarget, (ResponseCode, String)> {
        validate_topic_name(&h.topic).map_err(|e| (ResponseCode::MessageIllegal, e))?;
        if let Some(t) = self.topics.get(&h.topic) {
            return Ok(SendTarget::of(t));
        }
        if !self.config.auto_create_topic_enable {
            return Err((
                ResponseCode::TopicNotExist,
                format!("topic '{}' does not exist on broker {} and auto_create_topic_enable is off; create it with mqadmin updateTopic", h.topic, self.config.broker_name),
            ));
        }
        let queues = if h.default_topic_queue_nums > 0 {
            h.default_topic_queue_nums
                .min(self.config.default_topic_queue_nums as i32)
        } else {
            self.config.default_topic_queue_nums as i32
        };
        let t = self
            .topics
            .auto_create(&h.topic, queues)
            .map_err(|e| (ResponseCode::SystemError, e.to_string()))?;
        tracing::info!(topic = %h.topic, queues, "topic created on first send");
        self.register_all(ctx);
        Ok(SendTarget::of(&t))
    }

    pub(super) fn on_send(
        &mut self,
        inb: Inbound,
        mut h: SendMessageRequestHeader,
        body: Bytes,
        batch: bool,
        ctx: &mut Context<Self>,
    ) {
        if self.shutting_down {
            return inb.fail(ResponseCode::ServiceNotAvailable, "broker is shutting down");
        }
        if !self.config.is_master() {
            return inb.fail(
                ResponseCode::ServiceNotAvailable,
                "this broker is a slave and does not accept sends",
            );
        }
        let topic = match self.topic_for_send(&h, ctx) {
            Ok(t) => t,
            Err((code, why)) => return inb.fail(code, why),
        };
        if !is_writeable(topic.perm) {
            return inb.fail(
                ResponseCode::NoPermission,
                format!(
                    "topic '{}' is not writeable on broker {}",
                    h.topic, self.config.broker_name
                ),
            );
        }
        let writable = topic.write_queue_nums.max(1) as u32;
        let queue_id = if h.queue_id < 0 {
            self.next_queue = self.next_queue.wrapping_add(1);
            self.next_queue % writable
        } else if (h.queue_id as u32) < writable {
            h.queue_id as u32
        } else {
            return inb.fail(
                ResponseCode::MessageIllegal,
                format!(
                    "queue id {} is illegal: topic '{}' has {} write queues",
                    h.queue_id, h.topic, writable
                ),
            );
        };
        let reply = (!inb.oneway).then(|| inb.reply.clone());
        let queue = self.queue(&h.topic, queue_id);
        let stamp = |topic: String, body: Bytes, flag: i32, properties: String| MessageToStore {
            topic,
            queue_id,
            flag,
            sys_flag: h.sys_flag,
            born_timestamp: h.born_timestamp,
            born_host: inb.peer,
            reconsume_times: h.reconsume_times,
            prepared_transaction_offset: 0,
            body,
            properties,
        };
        let sent = if batch {
            let entries = match crate::protocol::batch::decode_batch(&body) {
                Ok(e) if !e.is_empty() => e,
                Ok(_) => return inb.fail(ResponseCode::MessageIllegal, "empty batch"),
                Err(e) => {
                    return inb.fail(ResponseCode::MessageIllegal, format!("bad batch body: {e}"))
                }
            };
            let msgs = entries
                .into_iter()
                .map(|e| stamp(h.topic.clone(), e.body, e.flag, e.properties))
                .collect();
            queue
                .try_send(AppendBatch {
                    msgs,
                    opaque: inb.opaque,
                    reply,
                })
                .is_ok()
        } else {
            let (topic, properties) = (
                std::mem::take(&mut h.topic),
                std::mem::take(&mut h.properties),
            );
            let msg = stamp(topic, body, h.flag, properties);
            queue
                .try_send(Append {
                    msg,
                    opaque: inb.opaque,
                    reply,
                })
                .is_ok()
        };
        if !sent {
            inb.fail(
                ResponseCode::SystemBusy,
                "broker busy: the queue's backlog is full, retry later",
            );
        }
    }

    pub(super) fn on_pull(&mut self, inb: Inbound, h: PullMessageRequestHeader) {
        let Some(topic) = self.topics.get(&h.topic).cloned() else {
            return inb.fail(
                ResponseCode::TopicNotExist,
                format!(
                    "topic '{}' does not exist on broker {}",
                    h.topic, self.config.broker_name
                ),
            );
        };
        if !is_readable(topic.perm) {
            return inb.fail(
                ResponseCode::NoPermission,
                format!("topic '{}' is not readable", h.topic),
            );
        }
        if h.queue_id < 0 || h.queue_id >= topic.read_queue_nums {
            return inb.fail(
                ResponseCode::InvalidParameter,
                format!("queue id {} is illegal for topic '{}'", h.queue_id, h.topic),
            );
        }
        if h.sys_flag & PULL_FLAG_COMMIT_OFFSET != 0
            && h.commit_offset >= 0
            && !h.consumer_group.is_empty()
        {
            if let Ok(g) = self.group(&h.consumer_group) {
                g.do_send(consumer_group::CommitOffset {
                    topic: h.topic.clone(),
                    queue_id: h.queue_id,
                    offset: h.commit_offset,
                });
            }
        }
        let hold = if h.sys_flag & PULL_FLAG_SUSPEND != 0 && !self.shutting_down {
            Duration::from_millis(
                (h.suspend_timeout_millis.max(0) as u64).min(self.config.long_polling_timeout),
            )
        } else {
            Duration::ZERO
        };
        let pull = Pull {
            offset: h.queue_offset.max(0) as u64,
            max_msgs: h.max_msg_nums.clamp(1, 1024) as usize,
            tag_filter: tag_filter(h.subscription.as_deref()),
            hold,
            max_bytes: message_queue::MAX_PULL_BYTES
                .min(self.config.max_frame_size.saturating_sub(64 * 1024)),
            opaque: inb.opaque,
            reply: inb.reply.clone(),
        };
        if self
            .queue(&h.topic, h.queue_id as u32)
            .try_send(pull)
            .is_err()
        {
            inb.fail(ResponseCode::SystemBusy, "broker busy, retry later");
        }
    }

    pub(super) fn topic_stats(&self, topic: &str) -> TopicStatsTable {
        let mut offset_table = BTreeMap::new();
        let queues = self
            .topics
            .get(topic)
            .map(|t| t.read_queue_nums.max(t.write_queue_nums))
            .unwrap_or(0);
        for q in 0..queues.max(0) as u32 {
            let (min, max) = (
                self.store.min_offset(topic, q),
                self.store.max_offset(topic, q),
            );
            let last = if max > 0 {
                self.store
                    .read_by_queue_offset(topic, q, max - 1)
                    .map(|m| m.store_timestamp)
                    .unwrap_or(0)
            } else {
                0
            };
            offset_table.insert(
                Mq {
                    topic: topic.to_owned(),
                    broker_name: self.config.broker_name.clone(),
                    queue_id: q as i32,
                },
                TopicOffset {
                    min_offset: min as i64,
                    max_offset: max as i64,
                    last_update_timestamp: last,
                },
            );
        }
        TopicStatsTable { offset_table }
    }
}
