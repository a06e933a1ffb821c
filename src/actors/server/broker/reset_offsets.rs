//! `INVOKE_BROKER_TO_RESET_OFFSET` (`mqadmin resetOffsetByTime`): moves a consumer group's
//! offsets of a topic on this broker to the first message stored at or after a time (back
//! or forward), commits them, and then tells the group's connected members
//! (`RESET_CONSUMER_CLIENT_OFFSET`), which restart their queues there.
//!
//! It owns that sequence only: the offsets live in the `ConsumerGroup` actor, the time
//! lookup in the store. It must never tell members before the new offsets are committed
//! (a member restarting a queue reads them back), and it runs on masters only (a slave's
//! offsets are copies of its master's).

use super::requests::response;
use super::*;
use crate::protocol::group::{ResetOffsetBody, ResetOffsetRequestHeader};

impl Broker {
    pub(super) fn reset_offsets(&mut self, inb: Inbound, h: ResetOffsetRequestHeader) {
        if !self.config.is_master() {
            return inb.fail(
                ResponseCode::NoPermission,
                format!(
                    "broker {} is a slave; reset offsets on its master",
                    self.config.broker_name
                ),
            );
        }
        let Some(topic) = self.topics.get(&h.topic).cloned() else {
            return inb.fail(
                ResponseCode::TopicNotExist,
                format!(
                    "topic '{}' does not exist on broker {}",
                    h.topic, self.config.broker_name
                ),
            );
        };
        let group = match self.group(&h.group) {
            Ok(g) => g,
            Err(e) => return inb.fail(ResponseCode::InvalidParameter, e),
        };
        let offset_table: Vec<(Mq, i64)> = (0..topic.read_queue_nums.max(0))
            .map(|queue_id| {
                let offset =
                    self.store
                        .offset_for_timestamp(&h.topic, queue_id as u32, h.timestamp);
                let mq = Mq {
                    topic: h.topic.clone(),
                    broker_name: self.config.broker_name.clone(),
                    queue_id,
                };
                (mq, offset as i64)
            })
            .collect();
        let commits: Vec<_> = offset_table
            .iter()
            .map(|(mq, offset)| {
                group.send(consumer_group::CommitOffset {
                    topic: mq.topic.clone(),
                    queue_id: mq.queue_id,
                    offset: *offset,
                    keep_larger: false,
                })
            })
            .collect();
        let body = ResetOffsetBody { offset_table };
        let encoded = encode_body(&body).and_then(|bytes| {
            let notice =
                Frame::oneway(RequestCode::ResetConsumerClientOffset, 0, &h, bytes.clone())?;
            Ok((notice, bytes))
        });
        let (notice, answer) = match encoded {
            Ok(both) => both,
            Err(e) => return inb.fail(ResponseCode::SystemError, e.to_string()),
        };
        tracing::info!(group = %h.group, topic = %h.topic, timestamp = h.timestamp, "resetting consumer offsets");
        actix::spawn(async move {
            for commit in commits {
                match commit.await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return inb.fail(ResponseCode::SystemError, e.to_string()),
                    Err(e) => return inb.fail(ResponseCode::SystemError, e.to_string()),
                }
            }
            group.do_send(consumer_group::TellMembers(notice));
            response(&inb, ResponseCode::Success, &NoHeader {}, answer);
        });
    }
}
