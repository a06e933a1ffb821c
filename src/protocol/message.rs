//! Headers of the message data path: send, pull, offsets, lookups, retries, transactions.
//!
//! Modelled on RocketMQ's `*RequestHeader`/`*ResponseHeader` classes (field names
//! snake_cased, Java `int`/`long` kept as `i32`/`i64`). Required fields have no default,
//! so a frame missing one fails with [`crate::protocol::Error::BadHeader`]; optional ones
//! are `#[serde(default)]`. Message bytes travel in the frame body, never in a header.

use serde::{Deserialize, Serialize};

/// Pull `sys_flag` bit: the request carries `commit_offset` and the broker should store it
/// for the group (masters only).
pub const PULL_FLAG_COMMIT_OFFSET: i32 = 0x1;
/// Pull `sys_flag` bit: the broker may hold the request (long polling) until a message
/// arrives or `suspend_timeout_millis` passes.
pub const PULL_FLAG_SUSPEND: i32 = 0x2;
/// Pull `sys_flag` bit: the request carries `subscription`/`sub_version`; otherwise the
/// broker uses the subscription it learnt from heartbeats.
pub const PULL_FLAG_SUBSCRIPTION: i32 = 0x4;
/// Pull `sys_flag` bit: class filter mode (kept for RocketMQ compatibility, unused).
pub const PULL_FLAG_CLASS_FILTER: i32 = 0x8;
/// Pull `sys_flag` bit: pull from a lite-pull consumer.
pub const PULL_FLAG_LITE_PULL: i32 = 0x10;

/// `commit_or_rollback` value: not a transaction message.
pub const TRANSACTION_NOT_TYPE: i32 = 0x0;
/// `commit_or_rollback` value: commit the half message.
pub const TRANSACTION_COMMIT_TYPE: i32 = 0x8;
/// `commit_or_rollback` value: roll the half message back.
pub const TRANSACTION_ROLLBACK_TYPE: i32 = 0xC;

/// `SEND_MESSAGE` / `SEND_BATCH_MESSAGE` request header; the message body (or the encoded
/// batch) is the frame body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessageRequestHeader {
    /// Producer group, for transactions and per-group statistics.
    pub producer_group: String,
    /// Destination topic.
    pub topic: String,
    /// Template topic when `topic` does not exist and auto-creation is on (RocketMQ
    /// `TBW102`); empty = no auto-creation.
    #[serde(default)]
    pub default_topic: String,
    /// Queue count for an auto-created topic.
    #[serde(default)]
    pub default_topic_queue_nums: i32,
    /// Target queue; -1 lets the broker pick one.
    pub queue_id: i32,
    /// Message system flags (compression, transaction type, ...), stored with the message.
    pub sys_flag: i32,
    /// When the producer created the message (ms since the epoch).
    pub born_timestamp: i64,
    /// Opaque user flag, stored and returned as is.
    pub flag: i32,
    /// Properties in RocketMQ's `key\x01value\x02` form (tags, keys, unique key, delay).
    #[serde(default)]
    pub properties: String,
    /// How many times this message was already redelivered (for retries).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reconsume_times: i32,
    /// True when the body is a batch of messages (`SEND_BATCH_MESSAGE`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub batch: bool,
    /// Retry limit before the message goes to the dead-letter queue; `None` = the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_reconsume_times: Option<i32>,
}

// Optional fields at their defaults are left off the wire: every send carries this header,
// and each key costs an encode on the client and a decode (with a UTF-8 check) on the
// broker. Absent keys decode to the same defaults.
fn is_zero(v: &i32) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// `SEND_MESSAGE` response header (with `SUCCESS`, `FLUSH_DISK_TIMEOUT`,
/// `FLUSH_SLAVE_TIMEOUT` or `SLAVE_NOT_AVAILABLE`: all mean "stored").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendMessageResponseHeader {
    /// Offset message id (store host + commit-log offset, hex); comma-joined for a batch.
    pub msg_id: String,
    /// Queue the message went to.
    pub queue_id: i32,
    /// Offset of the (first) message in that queue.
    pub queue_offset: i64,
    /// Transaction id, for transactional messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<String>,
    /// Unique id of the batch, for batch sends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch_uniq_id: Option<String>,
}

impl SendMessageResponseHeader {
    /// Decodes the header of a send's answer. Every acknowledged send reads one, so a
    /// direct reader takes the shape this crate writes; anything else goes through serde
    /// ([`Frame::decode_header`](super::frame::Frame::decode_header)), which gives the errors.
    ///
    /// # Errors
    /// [`Error::BadHeader`](super::Error::BadHeader) when the bytes do not fit.
    pub fn from_frame(frame: &super::frame::Frame) -> super::error::Result<Self> {
        match super::direct_codec::send_response_header(&frame.header) {
            Some(header) => Ok(header),
            None => frame.decode_header(),
        }
    }
}

/// `PULL_MESSAGE` request header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullMessageRequestHeader {
    /// Consumer group pulling.
    pub consumer_group: String,
    /// Topic pulled from.
    pub topic: String,
    /// Queue pulled from.
    pub queue_id: i32,
    /// First queue offset wanted.
    pub queue_offset: i64,
    /// At most this many messages in the response.
    pub max_msg_nums: i32,
    /// `PULL_FLAG_*` bits.
    pub sys_flag: i32,
    /// The group's consumed offset to commit (with [`PULL_FLAG_COMMIT_OFFSET`]).
    pub commit_offset: i64,
    /// How long the broker may hold the request when nothing is available (with
    /// [`PULL_FLAG_SUSPEND`]).
    pub suspend_timeout_millis: i64,
    /// Subscription expression ("TagA || TagB", "*"), with [`PULL_FLAG_SUBSCRIPTION`].
    #[serde(default)]
    pub subscription: Option<String>,
    /// Version (timestamp) of the subscription, so the broker can spot a stale one.
    pub sub_version: i64,
    /// Expression language of `subscription` ("TAG" or "SQL92").
    #[serde(default)]
    pub expression_type: Option<String>,
    /// Upper bound on the response body size, on top of `max_msg_nums`.
    #[serde(default)]
    pub max_msg_bytes: Option<i32>,
}

/// `PULL_MESSAGE` response header: present on every outcome (found, not found, retry,
/// offset moved), since the client always needs the offsets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullMessageResponseHeader {
    /// Broker id to pull from next (0 = the master; a slave when the master is behind).
    pub suggest_which_broker_id: u64,
    /// Queue offset to ask for next.
    pub next_begin_offset: i64,
    /// Oldest offset still stored in the queue.
    pub min_offset: i64,
    /// Next offset to be written in the queue.
    pub max_offset: i64,
}

/// `QUERY_CONSUMER_OFFSET` request header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryConsumerOffsetRequestHeader {
    /// Group whose offset is asked for.
    pub consumer_group: String,
    /// Topic of the queue.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
    /// Answer 0 instead of `QUERY_NOT_FOUND` when the group never committed.
    #[serde(default)]
    pub set_zero_if_not_found: Option<bool>,
}

/// `UPDATE_CONSUMER_OFFSET` request header (usually sent one-way).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateConsumerOffsetRequestHeader {
    /// Group committing.
    pub consumer_group: String,
    /// Topic of the queue.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
    /// Next offset the group will consume.
    pub commit_offset: i64,
    /// An actimq addition (RocketMQ brokers ignore it): keep the broker's offset if it is
    /// already larger. A slave pushing the offsets consumers committed on it while the
    /// master was away sets it, so a newer commit on the master is never undone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_larger: Option<bool>,
}

/// `GET_MAX_OFFSET` request header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetMaxOffsetRequestHeader {
    /// Topic of the queue.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
    /// Only count messages already replicated/committed.
    #[serde(default)]
    pub committed: bool,
}

/// `GET_MIN_OFFSET` request header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetMinOffsetRequestHeader {
    /// Topic of the queue.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
}

/// `GET_EARLIEST_MSG_STORETIME` request header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetEarliestMsgStoretimeRequestHeader {
    /// Topic of the queue.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
}

/// `GET_EARLIEST_MSG_STORETIME` response header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GetEarliestMsgStoretimeResponseHeader {
    /// Store time of the oldest message in the queue (ms since the epoch).
    pub timestamp: i64,
}

/// Which side of a timestamp `SEARCH_OFFSET_BY_TIMESTAMP` should land on when several
/// messages share it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BoundaryType {
    /// The first message stored at or after the timestamp.
    #[default]
    Lower,
    /// The last message stored at or before the timestamp.
    Upper,
}

/// `SEARCH_OFFSET_BY_TIMESTAMP` request header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SearchOffsetRequestHeader {
    /// Topic of the queue.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
    /// Store time searched for (ms since the epoch).
    pub timestamp: i64,
    /// Which neighbour to return.
    #[serde(default)]
    pub boundary_type: BoundaryType,
}

/// Response header of `QUERY_CONSUMER_OFFSET`, `GET_MAX_OFFSET`, `GET_MIN_OFFSET` and
/// `SEARCH_OFFSET_BY_TIMESTAMP`: RocketMQ has one class per code, all with one `offset`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetResponseHeader {
    /// The offset asked for.
    pub offset: i64,
    /// `QUERY_CONSUMER_OFFSET` only, an actimq addition that RocketMQ clients ignore: when
    /// the group first subscribed the topic on this broker (ms since the epoch). A consumer
    /// that finds no committed offset on a queue starts `LastOffset` from there (the
    /// earliest such time over the topic's brokers), so a queue that appeared while every
    /// member was down is read from what was stored after the group subscribed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribed_since_ms: Option<i64>,
}

/// `VIEW_MESSAGE_BY_ID` request header; the response body is one stored message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewMessageRequestHeader {
    /// Commit-log offset decoded from the offset message id.
    pub offset: i64,
    /// Topic of the message, when known (lets the broker check permissions).
    #[serde(default)]
    pub topic: Option<String>,
}

/// `QUERY_MESSAGE` request header; the response body is the stored messages found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryMessageRequestHeader {
    /// Topic searched.
    pub topic: String,
    /// Business key (from the `KEYS` property) or, with `unique_key`, a unique message id.
    pub key: String,
    /// At most this many messages.
    pub max_num: i32,
    /// Only messages stored at or after this time (ms).
    pub begin_timestamp: i64,
    /// Only messages stored before this time (ms).
    pub end_timestamp: i64,
    /// `key` is a `UNIQ_KEY` (RocketMQ's `_UNIQUE_KEY_QUERY`).
    #[serde(default)]
    pub unique_key: bool,
}

/// `QUERY_MESSAGE` response header.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryMessageResponseHeader {
    /// When the index was last written (ms), so the client can tell how fresh it is.
    pub index_last_update_timestamp: i64,
    /// Commit-log offset the index covers up to.
    pub index_last_update_phyoffset: i64,
}

/// `CONSUMER_SEND_MSG_BACK` request header: consumption failed, redeliver later.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerSendMsgBackRequestHeader {
    /// Commit-log offset of the message that failed.
    pub offset: i64,
    /// Consumer group that failed it (the retry topic is `%RETRY%<group>`).
    pub group: String,
    /// Delay level: 0 = broker picks (3 + reconsume times), -1 = straight to the DLQ.
    pub delay_level: i32,
    /// Message id of the original message.
    #[serde(default)]
    pub origin_msg_id: Option<String>,
    /// Topic of the original message.
    #[serde(default)]
    pub origin_topic: Option<String>,
    /// Retry limit before dead-lettering; `None` = the broker's default.
    #[serde(default)]
    pub max_reconsume_times: Option<i32>,
}

/// `END_TRANSACTION` request header (one-way): commit or roll back a half message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndTransactionRequestHeader {
    /// Producer group owning the transaction.
    pub producer_group: String,
    /// Queue offset of the half message.
    pub tran_state_table_offset: i64,
    /// Commit-log offset of the half message.
    pub commit_log_offset: i64,
    /// `TRANSACTION_COMMIT_TYPE`, `TRANSACTION_ROLLBACK_TYPE` or `TRANSACTION_NOT_TYPE`.
    pub commit_or_rollback: i32,
    /// True when answering a `CHECK_TRANSACTION_STATE`.
    #[serde(default)]
    pub from_transaction_check: bool,
    /// Message id of the half message.
    pub msg_id: String,
    /// Transaction id.
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// Topic of the half message.
    #[serde(default)]
    pub topic: Option<String>,
}

/// `CHECK_TRANSACTION_STATE` request header (broker → producer, one-way); the body is the
/// stored half message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckTransactionStateRequestHeader {
    /// Queue offset of the half message.
    pub tran_state_table_offset: i64,
    /// Commit-log offset of the half message.
    pub commit_log_offset: i64,
    /// Unique message id.
    #[serde(default)]
    pub msg_id: Option<String>,
    /// Transaction id.
    #[serde(default)]
    pub transaction_id: Option<String>,
    /// Offset message id.
    #[serde(default)]
    pub offset_msg_id: Option<String>,
    /// Topic of the half message.
    #[serde(default)]
    pub topic: Option<String>,
}
