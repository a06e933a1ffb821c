//! Clusters, routes and topics through the admin client: what the name servers know
//! (clusters, brokers, topics, routes) and what brokers are told (create, update and delete
//! a topic, per-queue offsets).
//!
//! This file owns the requests and the plain types they return ([`TopicSpec`],
//! [`ClusterBroker`], [`QueueStatus`]). It must never print or decide what is shown.

use bytes::Bytes;
use serde::{Serialize, Serializer};

use super::{AdminClient, AdminError};
use crate::protocol::group::MessageQueue;
use crate::protocol::route::{ClusterInfo, GetRouteInfoRequestHeader, TopicList, TopicRouteData};
use crate::protocol::topic::{
    CreateTopicRequestHeader, DeleteTopicFromNamesrvRequestHeader, DeleteTopicRequestHeader,
    GetTopicStatsInfoRequestHeader, TopicStatsTable, AUTO_CREATE_TOPIC_KEY, PERM_READ_WRITE,
};
use crate::protocol::{NoHeader, RequestCode};

/// A topic as a broker should serve it: what [`AdminClient::create_topic`] asks for.
///
/// Serializes as the request it becomes (`topic`, `default_topic`, `read_queue_nums`, ...),
/// which is what `mqadmin updateTopic --json` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicSpec {
    /// Topic name.
    pub name: String,
    /// How many queues consumers read (RocketMQ `readQueueNums`).
    pub read_queues: i32,
    /// How many queues producers write (RocketMQ `writeQueueNums`). Fewer write than read
    /// queues is how a topic is shrunk: drain the extra queues, then lower both.
    pub write_queues: i32,
    /// Permission bits: [`PERM_READ_WRITE`](super::PERM_READ_WRITE) (the default),
    /// [`PERM_READ`](super::PERM_READ) or [`PERM_WRITE`](super::PERM_WRITE).
    pub perm: i32,
    /// Whether the topic is ordered (producers pick queues by sharding key).
    pub order: bool,
}

impl TopicSpec {
    /// Read and write queues per broker when none are given: mqadmin's default.
    pub const DEFAULT_QUEUES: i32 = 8;

    /// A readable and writeable, unordered topic with [`Self::DEFAULT_QUEUES`] queues.
    pub fn new(name: impl Into<String>) -> Self {
        TopicSpec {
            name: name.into(),
            read_queues: Self::DEFAULT_QUEUES,
            write_queues: Self::DEFAULT_QUEUES,
            perm: PERM_READ_WRITE,
            order: false,
        }
    }

    /// The same number of read and write queues.
    pub fn queues(mut self, n: i32) -> Self {
        self.read_queues = n;
        self.write_queues = n;
        self
    }

    /// These permission bits.
    pub fn perm(mut self, perm: i32) -> Self {
        self.perm = perm;
        self
    }

    /// An ordered topic.
    pub fn ordered(mut self) -> Self {
        self.order = true;
        self
    }
}

impl Serialize for TopicSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.to_request_header().serialize(s)
    }
}

/// What [`AdminClient::update_topic`] accepts: a [`TopicSpec`], or for code written
/// against the wire types, the request header itself.
pub trait TopicRequest {
    /// The `UPDATE_AND_CREATE_TOPIC` header to send.
    fn to_request_header(&self) -> CreateTopicRequestHeader;
}

impl TopicRequest for TopicSpec {
    fn to_request_header(&self) -> CreateTopicRequestHeader {
        CreateTopicRequestHeader {
            topic: self.name.clone(),
            default_topic: AUTO_CREATE_TOPIC_KEY.to_owned(),
            read_queue_nums: self.read_queues,
            write_queue_nums: self.write_queues,
            perm: self.perm,
            topic_sys_flag: 0,
            order: self.order,
        }
    }
}

impl TopicRequest for CreateTopicRequestHeader {
    fn to_request_header(&self) -> CreateTopicRequestHeader {
        self.clone()
    }
}

/// One broker of a cluster, as `mqadmin clusterList` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterBroker {
    /// The cluster's name.
    pub cluster: String,
    /// The broker's name (shared by a master and its slaves).
    pub broker_name: String,
    /// 0 for the master, above 0 for slaves.
    pub broker_id: u64,
    /// Where the broker listens.
    pub addr: String,
}

/// One queue of a topic: its offsets on the broker that serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueueStatus {
    /// The queue.
    pub queue: MessageQueue,
    /// The oldest offset still stored.
    pub min_offset: i64,
    /// The next offset to be written.
    pub max_offset: i64,
    /// When the last message was stored (ms since the epoch, 0 if never).
    pub last_update_timestamp: i64,
}

/// The master address of every broker in `info`, sorted.
pub(super) fn all_masters(info: &ClusterInfo) -> Vec<String> {
    let mut v: Vec<String> = info
        .broker_addr_table
        .values()
        .filter_map(|b| b.master_addr().map(str::to_owned))
        .collect();
    v.sort();
    v
}

impl AdminClient {
    /// Brokers and clusters known to the name servers.
    pub async fn cluster_info(&mut self) -> Result<ClusterInfo, AdminError> {
        self.namesrv(RequestCode::GetBrokerClusterInfo, &NoHeader {})
            .await
    }

    /// Every broker the name servers know, by cluster name (sorted), then broker name and
    /// broker id.
    pub async fn cluster_list(&mut self) -> Result<Vec<ClusterBroker>, AdminError> {
        let info = self.cluster_info().await?;
        let mut clusters: Vec<_> = info.cluster_addr_table.iter().collect();
        clusters.sort();
        let mut rows = Vec::new();
        for (cluster, names) in clusters {
            for name in names {
                if let Some(b) = info.broker_addr_table.get(name) {
                    for (id, addr) in &b.broker_addrs {
                        rows.push(ClusterBroker {
                            cluster: cluster.clone(),
                            broker_name: name.clone(),
                            broker_id: *id,
                            addr: addr.clone(),
                        });
                    }
                }
            }
        }
        Ok(rows)
    }

    /// The master address of every broker of `cluster`. Empty when the cluster's brokers
    /// have no master registered; an error when the name servers do not know the cluster.
    pub async fn cluster_masters(&mut self, cluster: &str) -> Result<Vec<String>, AdminError> {
        let info = self.cluster_info().await?;
        let names =
            info.cluster_addr_table
                .get(cluster)
                .ok_or_else(|| AdminError::UnknownCluster {
                    cluster: cluster.to_owned(),
                })?;
        Ok(names
            .iter()
            .filter_map(|n| {
                info.broker_addr_table
                    .get(n)?
                    .master_addr()
                    .map(str::to_owned)
            })
            .collect())
    }

    /// Every topic known to the name servers.
    pub async fn topic_list(&mut self) -> Result<TopicList, AdminError> {
        self.namesrv(RequestCode::GetAllTopicListFromNameserver, &NoHeader {})
            .await
    }

    /// The route of one topic: its brokers and their queue counts.
    pub async fn route(&mut self, topic: &str) -> Result<TopicRouteData, AdminError> {
        let header = GetRouteInfoRequestHeader {
            topic: topic.to_owned(),
        };
        self.namesrv(RequestCode::GetRouteInfoByTopic, &header)
            .await
    }

    /// Creates a topic on one broker, or updates it if the broker has it already (one
    /// request does both, as in RocketMQ). The broker tells the name servers on its next
    /// registration.
    pub async fn create_topic(&mut self, broker: &str, spec: &TopicSpec) -> Result<(), AdminError> {
        self.update_topic(broker, spec).await
    }

    /// Creates or updates a topic on one broker: [`AdminClient::create_topic`], also taking
    /// a raw [`CreateTopicRequestHeader`].
    pub async fn update_topic(
        &mut self,
        broker: &str,
        topic: &impl TopicRequest,
    ) -> Result<(), AdminError> {
        let header = topic.to_request_header();
        self.call_ok(
            broker,
            RequestCode::UpdateAndCreateTopic,
            &header,
            Bytes::new(),
        )
        .await
        .map(|_| ())
    }

    /// Creates or updates a topic on every master of `cluster`, in turn, and returns their
    /// addresses. Stops at the first broker that fails; the ones before it have the topic.
    pub async fn create_topic_in_cluster(
        &mut self,
        cluster: &str,
        spec: &TopicSpec,
    ) -> Result<Vec<String>, AdminError> {
        let masters = self.cluster_masters(cluster).await?;
        if masters.is_empty() {
            return Err(AdminError::NoMaster {
                cluster: cluster.to_owned(),
            });
        }
        for addr in &masters {
            self.create_topic(addr, spec).await?;
        }
        Ok(masters)
    }

    /// Deletes a topic from one broker (its configuration and its queues' files).
    pub async fn delete_topic_in_broker(
        &mut self,
        broker: &str,
        topic: &str,
    ) -> Result<(), AdminError> {
        let header = DeleteTopicRequestHeader {
            topic: topic.to_owned(),
        };
        self.call_ok(
            broker,
            RequestCode::DeleteTopicInBroker,
            &header,
            Bytes::new(),
        )
        .await
        .map(|_| ())
    }

    /// Deletes a topic's route from one name server: from `cluster`'s brokers only, or
    /// from every broker when `cluster` is `None`.
    pub async fn delete_topic_in_namesrv(
        &mut self,
        namesrv: &str,
        topic: &str,
        cluster: Option<&str>,
    ) -> Result<(), AdminError> {
        let header = DeleteTopicFromNamesrvRequestHeader {
            topic: topic.to_owned(),
            cluster_name: cluster.map(str::to_owned),
        };
        self.call_ok(
            namesrv,
            RequestCode::DeleteTopicInNamesrv,
            &header,
            Bytes::new(),
        )
        .await
        .map(|_| ())
    }

    /// Deletes a topic from every master of `cluster`, then from every name server's
    /// routes of that cluster. Stops at the first failure.
    pub async fn delete_topic(&mut self, cluster: &str, topic: &str) -> Result<(), AdminError> {
        for addr in self.cluster_masters(cluster).await? {
            self.delete_topic_in_broker(&addr, topic).await?;
        }
        for ns in self.namesrvs.clone() {
            self.delete_topic_in_namesrv(&ns, topic, Some(cluster))
                .await?;
        }
        Ok(())
    }

    /// Per-queue offsets of a topic on one broker.
    pub async fn topic_stats(
        &mut self,
        broker: &str,
        topic: &str,
    ) -> Result<TopicStatsTable, AdminError> {
        let header = GetTopicStatsInfoRequestHeader {
            topic: topic.to_owned(),
        };
        self.call_for_body(broker, RequestCode::GetTopicStatsInfo, &header)
            .await
    }

    /// Every queue of a topic with its offsets, asking the master of each broker on the
    /// topic's route; in route order, then queue order.
    pub async fn topic_status(&mut self, topic: &str) -> Result<Vec<QueueStatus>, AdminError> {
        let route = self.route(topic).await?;
        let mut rows = Vec::new();
        for b in &route.broker_datas {
            let Some(master) = b.master_addr() else {
                continue;
            };
            let stats = self.topic_stats(master, topic).await?;
            rows.extend(
                stats
                    .offset_table
                    .into_iter()
                    .map(|(queue, o)| QueueStatus {
                        queue,
                        min_offset: o.min_offset,
                        max_offset: o.max_offset,
                        last_update_timestamp: o.last_update_timestamp,
                    }),
            );
        }
        Ok(rows)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_becomes_the_header_mqadmin_always_sent() {
        let spec = TopicSpec::new("T").queues(4).ordered();
        assert_eq!(
            spec.to_request_header(),
            CreateTopicRequestHeader {
                topic: "T".into(),
                default_topic: "TBW102".into(),
                read_queue_nums: 4,
                write_queue_nums: 4,
                perm: PERM_READ_WRITE,
                topic_sys_flag: 0,
                order: true,
            }
        );
        assert_eq!(
            serde_json::to_value(&spec).ok(),
            serde_json::to_value(spec.to_request_header()).ok()
        );
    }

    #[test]
    fn masters_are_sorted() {
        let mut info = ClusterInfo::default();
        for (name, addr) in [("b", "10.0.0.2:1"), ("a", "10.0.0.1:1")] {
            let mut data = crate::protocol::route::BrokerData {
                cluster: "C".into(),
                broker_name: name.into(),
                ..Default::default()
            };
            data.broker_addrs.insert(0, addr.into());
            data.broker_addrs.insert(1, format!("{addr}0"));
            info.broker_addr_table.insert(name.into(), data);
        }
        assert_eq!(all_masters(&info), ["10.0.0.1:1", "10.0.0.2:1"]);
    }
}
