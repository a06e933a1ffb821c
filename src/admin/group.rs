//! Consumer groups through the admin client: a group's committed offsets against each
//! queue's end (its progress and lag), and which connected consumer holds which queue.
//!
//! This file owns the group requests and the plain types they return. It must never
//! change a group's offsets or membership: everything here only reads.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::topic::all_masters;
use super::{AdminClient, AdminError};
use crate::actors::rebalancer::allocate::{AllocateAveragely, AllocateStrategy};
use crate::protocol::group::{
    GetConsumerListByGroupRequestHeader, GetConsumerListByGroupResponseBody, MessageQueue,
};
use crate::protocol::topic::{ConsumeStats, GetConsumeStatsRequestHeader};
use crate::protocol::RequestCode;

/// One queue's progress for a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueProgress {
    /// The queue.
    pub queue: MessageQueue,
    /// The next offset the broker will write.
    pub broker_offset: i64,
    /// The group's committed offset (the next message it will read).
    pub consumer_offset: i64,
    /// When the group last pulled from the queue (ms since the epoch, 0 if unknown).
    pub last_timestamp: i64,
}

impl QueueProgress {
    /// Messages the group has still to read: `broker_offset - consumer_offset`. Negative
    /// when the committed offset is past the end (a queue that was truncated or a broker
    /// that lost its tail); shown as is so that such a queue stands out.
    pub fn lag(&self) -> i64 {
        self.broker_offset - self.consumer_offset
    }
}

/// A group's progress on every master broker that knows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct GroupProgress {
    /// Per queue, by broker address (sorted), then queue.
    pub queues: Vec<QueueProgress>,
}

impl GroupProgress {
    /// Messages left to read over all queues; a negative lag counts as none.
    pub fn total_lag(&self) -> i64 {
        self.queues.iter().map(|q| q.lag().max(0)).sum()
    }
}

/// One connected consumer of a group and the queues it should hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConsumerAssignment {
    /// The consumer's client id.
    pub client_id: String,
    /// The queues it reported holding (or, for a client that does not report them, the
    /// ones the average allocation gives it), sorted.
    pub queues: Vec<MessageQueue>,
}

impl AdminClient {
    /// A consumer group's progress on one broker: per queue, the broker's max offset and the
    /// group's committed offset. With `topic`, that topic's queues only.
    pub async fn consume_stats(
        &mut self,
        broker: &str,
        group: &str,
        topic: Option<&str>,
    ) -> Result<ConsumeStats, AdminError> {
        let header = GetConsumeStatsRequestHeader {
            consumer_group: group.to_owned(),
            topic: topic.map(str::to_owned),
        };
        self.call_for_body(broker, RequestCode::GetConsumeStats, &header)
            .await
    }

    /// A group's progress on every master broker of every cluster. A broker that does not
    /// know the group, or does not answer, is left out rather than failing the whole
    /// report; an error only when the name servers cannot be asked.
    pub async fn consumer_progress(&mut self, group: &str) -> Result<GroupProgress, AdminError> {
        let info = self.cluster_info().await?;
        let mut queues = Vec::new();
        for broker in all_masters(&info) {
            if let Ok(stats) = self.consume_stats(&broker, group, None).await {
                queues.extend(
                    stats
                        .offset_table
                        .into_iter()
                        .map(|(queue, o)| QueueProgress {
                            queue,
                            broker_offset: o.broker_offset,
                            consumer_offset: o.consumer_offset,
                            last_timestamp: o.last_timestamp,
                        }),
                );
            }
        }
        Ok(GroupProgress { queues })
    }

    /// The client ids of the group's consumers connected to one broker.
    pub async fn consumer_ids(
        &mut self,
        broker: &str,
        group: &str,
    ) -> Result<Vec<String>, AdminError> {
        Ok(self.members(broker, group).await?.consumer_id_list)
    }

    /// The group's members as `broker` knows them, with the queues each reported holding.
    async fn members(
        &mut self,
        broker: &str,
        group: &str,
    ) -> Result<GetConsumerListByGroupResponseBody, AdminError> {
        let header = GetConsumerListByGroupRequestHeader {
            consumer_group: group.to_owned(),
        };
        self.call_for_body(broker, RequestCode::GetConsumerListByGroup, &header)
            .await
    }

    /// Every consumer of the group connected to a master broker, sorted by client id, with
    /// the queues it holds: as it reported them in its heartbeat (what it consumes now), or,
    /// for a client that does not report them, the group's queues (those it has offsets
    /// for) divided by the average allocation every consumer runs by default. Brokers that
    /// do not answer are left out; [`AdminError::NoConsumer`] when no consumer is connected
    /// anywhere.
    pub async fn consumer_connection(
        &mut self,
        group: &str,
    ) -> Result<Vec<ConsumerAssignment>, AdminError> {
        let info = self.cluster_info().await?;
        let mut members = BTreeSet::new();
        let mut reported: BTreeMap<String, BTreeSet<MessageQueue>> = BTreeMap::new();
        let mut queues = BTreeSet::new();
        for broker in all_masters(&info) {
            if let Ok(body) = self.members(&broker, group).await {
                members.extend(body.consumer_id_list);
                for (member, held) in body.assignments {
                    reported.entry(member).or_default().extend(held);
                }
            }
            if let Ok(stats) = self.consume_stats(&broker, group, None).await {
                queues.extend(stats.offset_table.into_keys());
            }
        }
        if members.is_empty() {
            return Err(AdminError::NoConsumer {
                group: group.to_owned(),
            });
        }
        let members: Vec<String> = members.into_iter().collect();
        let queues: Vec<MessageQueue> = queues.into_iter().collect();
        Ok(members
            .iter()
            .map(|m| ConsumerAssignment {
                client_id: m.clone(),
                queues: match reported.get(m) {
                    Some(held) => held.iter().cloned().collect(),
                    None => AllocateAveragely.allocate(group, m, &queues, &members),
                },
            })
            .collect())
    }
}
