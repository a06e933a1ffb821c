//! Client groups: heartbeats, membership, queue locks and the [`MessageQueue`] they name.
//!
//! Modelled on RocketMQ's `HeartbeatData`, `UnregisterClientRequestHeader`,
//! `GetConsumerListByGroup*`, `NotifyConsumerIdsChangedRequestHeader` and
//! `LockBatch*`/`UnlockBatch*`. Enum values keep RocketMQ's spelling
//! (`CONSUME_FROM_LAST_OFFSET`) so a RocketMQ codec can map them one to one.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

/// One queue of one topic on one broker: the unit of load balancing and locking.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct MessageQueue {
    /// Topic the queue belongs to.
    pub topic: String,
    /// Broker (master/slave set) serving the queue.
    pub broker_name: String,
    /// Queue id within the topic on that broker.
    pub queue_id: i32,
}

/// How a consumer gets messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ConsumeType {
    /// Pull consumer: the application asks for messages.
    ConsumeActively,
    /// Push consumer: the library pulls and hands messages to a listener.
    #[default]
    ConsumePassively,
}

/// How a group shares messages among its members.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageModel {
    /// Every message goes to every member; offsets live on the client.
    Broadcasting,
    /// Queues are divided among the members; offsets live on the broker.
    #[default]
    Clustering,
}

/// Where a group with no committed offset starts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ConsumeFromWhere {
    /// Every message stored from the moment the consumer started, and nothing older: the
    /// end of a queue that already held messages then, the start of a queue that appeared
    /// later (a topic created after the consumer, a broker added, more queues).
    #[default]
    #[serde(rename = "CONSUME_FROM_LAST_OFFSET")]
    LastOffset,
    /// At the oldest stored message.
    #[serde(rename = "CONSUME_FROM_FIRST_OFFSET")]
    FirstOffset,
    /// At the first message stored after the consumer's configured timestamp.
    #[serde(rename = "CONSUME_FROM_TIMESTAMP")]
    Timestamp,
}

/// One topic subscription of a consumer group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionData {
    /// Topic subscribed to.
    pub topic: String,
    /// The expression as written ("TagA || TagB", "*").
    pub sub_string: String,
    /// Tags parsed from `sub_string` (empty = all).
    #[serde(default)]
    pub tags_set: BTreeSet<String>,
    /// Hash codes of `tags_set`, which the consume queue stores per message for filtering.
    #[serde(default)]
    pub code_set: BTreeSet<i32>,
    /// Version (timestamp) of the subscription; a newer one replaces an older one.
    pub sub_version: i64,
    /// Expression language ("TAG" or "SQL92").
    #[serde(default)]
    pub expression_type: String,
}

/// A producer group the client belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ProducerData {
    /// Producer group name.
    pub group_name: String,
}

/// A consumer group the client belongs to, with its subscriptions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerData {
    /// Consumer group name.
    pub group_name: String,
    /// Push or pull.
    pub consume_type: ConsumeType,
    /// Clustering or broadcasting.
    pub message_model: MessageModel,
    /// Start position for a group without committed offsets.
    pub consume_from_where: ConsumeFromWhere,
    /// Subscriptions, one per topic.
    #[serde(default)]
    pub subscription_data_set: Vec<SubscriptionData>,
    /// The queues this member consumes now, once it has rebalanced (an actimq addition
    /// that RocketMQ brokers ignore): `mqadmin consumerConnection` shows what members hold
    /// rather than recomputing a split. `None` from clients that do not report it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigned_queues: Option<Vec<MessageQueue>>,
}

/// `HEART_BEAT` body: who the client is and which groups it belongs to. Sent to every
/// broker periodically and on changes; a broker forgets clients that stop sending it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatData {
    /// Client id (`ip@instance`), unique per client instance.
    pub client_id: String,
    /// Producer groups of the client (no duplicates).
    #[serde(default)]
    pub producer_data_set: Vec<ProducerData>,
    /// Consumer groups of the client (no duplicate group names).
    #[serde(default)]
    pub consumer_data_set: Vec<ConsumerData>,
}

/// `UNREGISTER_CLIENT` request header: the client leaves (one of) its groups.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnregisterClientRequestHeader {
    /// Client leaving.
    pub client_id: String,
    /// Producer group left, if any.
    #[serde(default)]
    pub producer_group: Option<String>,
    /// Consumer group left, if any (its members are then told to rebalance).
    #[serde(default)]
    pub consumer_group: Option<String>,
}

/// `GET_CONSUMER_LIST_BY_GROUP` request header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetConsumerListByGroupRequestHeader {
    /// Group asked about.
    pub consumer_group: String,
}

/// `GET_CONSUMER_LIST_BY_GROUP` response body: the input of a rebalance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetConsumerListByGroupResponseBody {
    /// Client ids of the group's live members.
    pub consumer_id_list: Vec<String>,
    /// The queues each member reported holding (an actimq addition; members that report
    /// nothing are absent).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub assignments: std::collections::BTreeMap<String, Vec<MessageQueue>>,
}

/// `NOTIFY_CONSUMER_IDS_CHANGED` request header (broker → consumer, one-way).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifyConsumerIdsChangedRequestHeader {
    /// Group whose membership changed.
    pub consumer_group: String,
}

/// `INVOKE_BROKER_TO_RESET_OFFSET` (admin → broker) and `RESET_CONSUMER_CLIENT_OFFSET`
/// (broker → consumer) header: RocketMQ's `ResetOffsetRequestHeader`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetOffsetRequestHeader {
    /// The topic whose offsets move.
    pub topic: String,
    /// The consumer group.
    pub group: String,
    /// Each queue goes to its first message stored at or after this time (ms since the
    /// epoch); past the last message, to the queue's end.
    pub timestamp: i64,
    /// RocketMQ's `isForce`: move offsets forward as well as back (always, here).
    #[serde(default)]
    pub is_force: bool,
}

/// The body of the answer to `INVOKE_BROKER_TO_RESET_OFFSET` and of
/// `RESET_CONSUMER_CLIENT_OFFSET`: the new offset of each queue.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetOffsetBody {
    /// Queue → its new offset.
    pub offset_table: Vec<(MessageQueue, i64)>,
}

/// `LOCK_BATCH_MQ` request body: lock queues for exclusive (orderly) consumption.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockBatchRequestBody {
    /// Group asking.
    pub consumer_group: String,
    /// Client asking; the lock is held for it.
    pub client_id: String,
    /// Only lock on this broker (do not forward to replicas).
    #[serde(default)]
    pub only_this_broker: bool,
    /// Queues to lock.
    pub mq_set: BTreeSet<MessageQueue>,
}

/// `LOCK_BATCH_MQ` response body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockBatchResponseBody {
    /// Queues now locked by the asking client (a subset of the request's).
    pub lock_ok_mq_set: BTreeSet<MessageQueue>,
}

/// `UNLOCK_BATCH_MQ` request body: release queue locks.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnlockBatchRequestBody {
    /// Group releasing.
    pub consumer_group: String,
    /// Client releasing; only its own locks are released.
    pub client_id: String,
    /// Only unlock on this broker.
    #[serde(default)]
    pub only_this_broker: bool,
    /// Queues to unlock.
    pub mq_set: BTreeSet<MessageQueue>,
}

/// `GET_ALL_CONSUMER_OFFSET` response body (RocketMQ's `ConsumerOffsetSerializeWrapper`):
/// `"topic@group"` → queue id → committed offset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerOffsetWrapper {
    /// The offsets.
    pub offset_table: std::collections::BTreeMap<String, std::collections::BTreeMap<i32, i64>>,
}
