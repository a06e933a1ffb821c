//! Topic configuration and administration: permissions, `TopicConfig`, create/delete, and
//! the statistics admin tools ask brokers for (per topic, per group, and the broker's
//! runtime table).
//!
//! Modelled on RocketMQ's `TopicConfig`, `TopicConfigSerializeWrapper`, `PermName`,
//! `CreateTopicRequestHeader`, `TopicStatsTable`, `ConsumeStats` and `KVTable`.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use super::group::MessageQueue;

/// Permission bit: consumers may read the topic's queues.
pub const PERM_READ: i32 = 0x4;
/// Permission bit: producers may write the topic's queues.
pub const PERM_WRITE: i32 = 0x2;
/// Permission bit: topics auto-created from this one inherit its configuration.
pub const PERM_INHERIT: i32 = 0x1;
/// The usual permission of a topic: read and write.
pub const PERM_READ_WRITE: i32 = PERM_READ | PERM_WRITE;

/// The topic whose route tells producers which brokers create topics on first send
/// (RocketMQ's `TBW102` convention): a producer whose topic has no route asks for this one.
pub const AUTO_CREATE_TOPIC_KEY: &str = "TBW102";

/// Whether `perm` allows reading.
pub fn is_readable(perm: i32) -> bool {
    perm & PERM_READ == PERM_READ
}

/// Whether `perm` allows writing.
pub fn is_writeable(perm: i32) -> bool {
    perm & PERM_WRITE == PERM_WRITE
}

/// A topic as one broker serves it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfig {
    /// Topic name.
    pub topic_name: String,
    /// Queues consumers read (`0..read_queue_nums`).
    pub read_queue_nums: i32,
    /// Queues producers write (`0..write_queue_nums`).
    pub write_queue_nums: i32,
    /// `PERM_*` bits.
    pub perm: i32,
    /// Topic system flags (RocketMQ `TopicSysFlag`: unit mode bits).
    #[serde(default)]
    pub topic_sys_flag: i32,
    /// Ordered topic: producers pick queues by key and consumers lock queues.
    #[serde(default)]
    pub order: bool,
}

/// Version of a broker's topic table, so the name server can skip unchanged registrations.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
pub struct DataVersion {
    /// Bumped on every change of the table.
    pub counter: u64,
    /// When the table last changed (ms since the epoch).
    pub timestamp: i64,
}

/// Every topic of a broker with the table's version: the `REGISTER_BROKER` body and the
/// `GET_ALL_TOPIC_CONFIG` response body (RocketMQ `TopicConfigSerializeWrapper`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicConfigWrapper {
    /// Topic name → configuration.
    pub topic_config_table: HashMap<String, TopicConfig>,
    /// Version of this table.
    pub data_version: DataVersion,
}

/// `UPDATE_AND_CREATE_TOPIC` request header (RocketMQ `CreateTopicRequestHeader`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateTopicRequestHeader {
    /// Topic to create or update.
    pub topic: String,
    /// Template topic (RocketMQ sends `TBW102`); informational.
    #[serde(default)]
    pub default_topic: String,
    /// Read queue count.
    pub read_queue_nums: i32,
    /// Write queue count.
    pub write_queue_nums: i32,
    /// `PERM_*` bits.
    pub perm: i32,
    /// Topic system flags.
    #[serde(default)]
    pub topic_sys_flag: i32,
    /// Ordered topic.
    #[serde(default)]
    pub order: bool,
}

impl CreateTopicRequestHeader {
    /// The topic configuration this request asks for.
    pub fn to_topic_config(&self) -> TopicConfig {
        TopicConfig {
            topic_name: self.topic.clone(),
            read_queue_nums: self.read_queue_nums,
            write_queue_nums: self.write_queue_nums,
            perm: self.perm,
            topic_sys_flag: self.topic_sys_flag,
            order: self.order,
        }
    }
}

/// `DELETE_TOPIC_IN_BROKER` request header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteTopicRequestHeader {
    /// Topic to delete.
    pub topic: String,
}

/// `DELETE_TOPIC_IN_NAMESRV` request header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeleteTopicFromNamesrvRequestHeader {
    /// Topic whose routes to forget.
    pub topic: String,
    /// Only forget it in this cluster; `None` = everywhere.
    #[serde(default)]
    pub cluster_name: Option<String>,
}

/// `GET_TOPIC_STATS_INFO` request header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetTopicStatsInfoRequestHeader {
    /// Topic asked about.
    pub topic: String,
}

/// Offsets of one queue, for admin statistics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicOffset {
    /// Oldest offset still stored.
    pub min_offset: i64,
    /// Next offset to be written.
    pub max_offset: i64,
    /// Store time of the newest message (ms), 0 if the queue is empty.
    pub last_update_timestamp: i64,
}

/// `GET_TOPIC_STATS_INFO` response body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicStatsTable {
    /// Queue → its offsets.
    pub offset_table: BTreeMap<MessageQueue, TopicOffset>,
}

/// `GET_CONSUME_STATS` request header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetConsumeStatsRequestHeader {
    /// Group asked about.
    pub consumer_group: String,
    /// Only this topic; `None` = every topic the group subscribes to.
    #[serde(default)]
    pub topic: Option<String>,
}

/// A group's progress on one queue.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetWrapper {
    /// Next offset to be written in the queue.
    pub broker_offset: i64,
    /// Next offset the group will consume; the lag is the difference.
    pub consumer_offset: i64,
    /// Store time of the last consumed message (ms).
    pub last_timestamp: i64,
}

/// `GET_CONSUME_STATS` response body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsumeStats {
    /// Queue → the group's progress on it.
    pub offset_table: BTreeMap<MessageQueue, OffsetWrapper>,
    /// Messages consumed per second by the group, as the broker measures commits.
    #[serde(default)]
    pub consume_tps: f64,
}

/// A string → string table: the `GET_BROKER_RUNTIME_INFO` response body (RocketMQ
/// `KVTable`). Values are text so a broker can add a key without a protocol change; keys
/// are ordered so tools print them stably.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvTable {
    /// Key → value (RocketMQ's camelCase keys: `commitLogMaxOffset`, ...).
    #[serde(default)]
    pub table: BTreeMap<String, String>,
}
