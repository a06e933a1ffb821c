//! Name-server traffic: broker registration and the route data clients ask for.
//!
//! Modelled on RocketMQ's `RegisterBrokerRequestHeader`, `TopicRouteData`, `BrokerData`,
//! `QueueData`, `ClusterInfo` and `TopicList`. Broker ids are `u64` (0 = master, ≥ 1 =
//! slaves); address maps are ordered so the master comes first.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// Broker id of a master; slaves have ids ≥ 1.
pub const MASTER_ID: u64 = 0;

/// `REGISTER_BROKER` request header; the body is a
/// [`TopicConfigWrapper`](super::topic::TopicConfigWrapper) with the broker's topics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterBrokerRequestHeader {
    /// Name of the master/slave set (`broker-a`).
    pub broker_name: String,
    /// Address clients connect to (`ip:port`).
    pub broker_addr: String,
    /// Cluster the broker belongs to.
    pub cluster_name: String,
    /// Address slaves replicate from (`ip:port`).
    pub ha_server_addr: String,
    /// [`MASTER_ID`] for the master, ≥ 1 for a slave.
    pub broker_id: u64,
    /// How long the name server keeps the broker without a new registration; `None` =
    /// the name server's default (120 s).
    #[serde(default)]
    pub heartbeat_timeout_millis: Option<u64>,
}

/// `REGISTER_BROKER` response header: what a slave needs to find its master.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisterBrokerResponseHeader {
    /// Address of the set's current master, if one is registered.
    #[serde(default)]
    pub master_addr: Option<String>,
    /// HA address of that master.
    #[serde(default)]
    pub ha_server_addr: Option<String>,
}

/// `UNREGISTER_BROKER` request header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnregisterBrokerRequestHeader {
    /// Name of the master/slave set.
    pub broker_name: String,
    /// Address of the leaving broker.
    pub broker_addr: String,
    /// Cluster of the leaving broker.
    pub cluster_name: String,
    /// Id of the leaving broker.
    pub broker_id: u64,
}

/// `GET_ROUTEINFO_BY_TOPIC` request header (RocketMQ `GetRouteInfoRequestHeader`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetRouteInfoRequestHeader {
    /// Topic whose route is wanted.
    pub topic: String,
}

/// `WATCH_ROUTES` request header (actimq): answer when the name server's routes version
/// differs from `known_version`, or after `hold_ms` with the same version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRoutesRequestHeader {
    /// The version the client knows (0: none yet, answered at once).
    pub known_version: u64,
    /// Longest the name server holds the request (it caps this).
    pub hold_ms: u64,
}

/// `WATCH_ROUTES` response header: the name server's routes version now.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRoutesResponseHeader {
    /// Changes whenever any route changes (and when the name server restarts).
    pub version: u64,
}

/// A master/slave set and where to reach each member.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerData {
    /// Cluster the set belongs to.
    pub cluster: String,
    /// Name of the set.
    pub broker_name: String,
    /// Broker id → address; id [`MASTER_ID`] is the master.
    pub broker_addrs: BTreeMap<u64, String>,
}

impl BrokerData {
    /// The master's address, if the master is registered (producers need it).
    pub fn master_addr(&self) -> Option<&str> {
        self.broker_addrs.get(&MASTER_ID).map(String::as_str)
    }
}

/// How one broker set serves one topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueData {
    /// Name of the broker set.
    pub broker_name: String,
    /// Queues consumers read there.
    pub read_queue_nums: i32,
    /// Queues producers write there.
    pub write_queue_nums: i32,
    /// `PERM_*` bits for the topic on that broker.
    pub perm: i32,
    /// Topic system flags.
    #[serde(default)]
    pub topic_sys_flag: i32,
}

/// `GET_ROUTEINFO_BY_TOPIC` response body: everything a client needs to reach a topic.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicRouteData {
    /// Broker sets serving the topic, with addresses.
    pub broker_datas: Vec<BrokerData>,
    /// Queue counts and permissions per broker set.
    pub queue_datas: Vec<QueueData>,
}

/// `GET_BROKER_CLUSTER_INFO` response body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// Broker name → its set.
    pub broker_addr_table: HashMap<String, BrokerData>,
    /// Cluster name → names of its broker sets.
    pub cluster_addr_table: HashMap<String, BTreeSet<String>>,
}

/// `GET_ALL_TOPIC_LIST_FROM_NAMESERVER` response body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicList {
    /// Every topic name known.
    pub topic_list: BTreeSet<String>,
}
