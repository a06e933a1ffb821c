//! Messages as applications see them, and what sends and consumption report.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::protocol::MessageQueue;
use crate::storage::record::{
    NAME_VALUE_SEPARATOR, PROPERTY_KEYS, PROPERTY_SEPARATOR, PROPERTY_TAGS, PROPERTY_UNIQ_KEY,
};
use crate::storage::StoredMessage;

pub use crate::protocol::group::{ConsumeFromWhere, MessageModel};

/// A message to send.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Message {
    /// Topic.
    pub topic: String,
    /// Optional tag, for filtering by consumers (`TagA`).
    pub tags: Option<String>,
    /// Business keys, indexed by the broker for lookups.
    pub keys: Vec<String>,
    /// Payload.
    pub body: Bytes,
    /// Opaque user flag.
    pub flag: i32,
    /// User properties.
    pub properties: BTreeMap<String, String>,
}

impl Message {
    /// A message with a topic and body.
    pub fn new(topic: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Message {
            topic: topic.into(),
            body: body.into(),
            ..Message::default()
        }
    }

    /// Sets the tag.
    pub fn with_tags(mut self, tags: impl Into<String>) -> Self {
        self.tags = Some(tags.into());
        self
    }

    /// Adds a business key.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.keys.push(key.into());
        self
    }

    /// Asks the broker to deliver the message only after the delay of `level` (RocketMQ's
    /// delay levels: with the broker's default `message_delay_level`, 1 = 1 s, 2 = 5 s,
    /// 3 = 10 s, 4 = 30 s, 5 = 1 min, ... 18 = 2 h; a level past the last means the last).
    /// The send is acknowledged once the message is stored; it reaches consumers of its
    /// topic when it comes due. 0 means no delay. Sets the `DELAY` property, so any client
    /// can do the same.
    pub fn with_delay_level(mut self, level: u32) -> Self {
        if level == 0 {
            self.properties
                .remove(crate::common::properties::PROPERTY_DELAY);
        } else {
            self.properties.insert(
                crate::common::properties::PROPERTY_DELAY.to_owned(),
                level.to_string(),
            );
        }
        self
    }

    /// Adds a user property. A send refuses the names the producer sets itself (`TAGS`,
    /// `KEYS`, `UNIQ_KEY`; use [`Self::with_tags`] and [`Self::with_key`]) and names or values
    /// containing `\u{1}` or `\u{2}`, which delimit properties on the wire.
    pub fn with_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.insert(name.into(), value.into());
        self
    }

    /// The RocketMQ properties string, with the producer's unique id.
    pub(crate) fn encoded_properties(&self, unique_id: &str) -> String {
        // Written in one pass into one sized string: this runs once per send.
        let pair = |name: &str, value: &str| name.len() + value.len() + 2;
        let mut len = pair(PROPERTY_UNIQ_KEY, unique_id);
        len += self
            .properties
            .iter()
            .map(|(k, v)| pair(k, v))
            .sum::<usize>();
        len += self.tags.as_deref().map_or(0, |t| pair(PROPERTY_TAGS, t));
        if !self.keys.is_empty() {
            len += pair(PROPERTY_KEYS, "") + self.keys.iter().map(|k| k.len() + 1).sum::<usize>();
        }
        let mut out = String::with_capacity(len);
        for (name, value) in &self.properties {
            push_property(&mut out, name, [value.as_str()]);
        }
        if let Some(t) = &self.tags {
            push_property(&mut out, PROPERTY_TAGS, [t.as_str()]);
        }
        if !self.keys.is_empty() {
            push_property(
                &mut out,
                PROPERTY_KEYS,
                self.keys.iter().map(String::as_str),
            );
        }
        push_property(&mut out, PROPERTY_UNIQ_KEY, [unique_id]);
        out
    }
}

/// Appends `name`, then the `parts` joined by spaces as its value, in RocketMQ's properties
/// format (see [`crate::storage::record::encode_properties`]).
fn push_property<'a>(out: &mut String, name: &str, parts: impl IntoIterator<Item = &'a str>) {
    out.push_str(name);
    out.push(NAME_VALUE_SEPARATOR);
    for (i, part) in parts.into_iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(part);
    }
    out.push(PROPERTY_SEPARATOR);
}

/// How a stored message stands (RocketMQ's `SendStatus`). Only [`SendStatus::SendOk`] is an
/// acknowledgement: the others say the message is stored on the master but not as safe as
/// the broker's roles promise (not flushed, or not held by a slave), and it may be lost if
/// that broker fails now. New statuses may come, so a `match` needs a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum SendStatus {
    /// Stored as the broker promises: flushed under `sync_flush`, held by its slaves under
    /// `sync_master`.
    SendOk,
    /// Stored, but not flushed within the broker's `sync_flush_timeout`.
    FlushDiskTimeout,
    /// Stored on a `sync_master`, but no slave acknowledged it within `sync_flush_timeout`.
    FlushSlaveTimeout,
    /// Stored on a `sync_master` that has too few slaves in sync (none connected, or too
    /// far behind) to hold it.
    SlaveNotAvailable,
}

/// RocketMQ's spelling: `SEND_OK`.
impl std::fmt::Display for SendStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SendStatus::SendOk => "SEND_OK",
            SendStatus::FlushDiskTimeout => "FLUSH_DISK_TIMEOUT",
            SendStatus::FlushSlaveTimeout => "FLUSH_SLAVE_TIMEOUT",
            SendStatus::SlaveNotAvailable => "SLAVE_NOT_AVAILABLE",
        })
    }
}

/// What a broker said about a stored message.
///
/// The ids have RocketMQ's meanings: [`SendResult::msg_id`] is the producer's unique id
/// (the Java client's `getMsgId()`), [`SendResult::offset_msg_id`] the broker's offset id
/// (`getOffsetMsgId()`). Earlier versions had a *field* `msg_id` holding the offset id;
/// `msg_id` is now a method, so code written against the old field fails to compile
/// (`attempted to take value of method`) instead of silently reading the other id.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SendResult {
    /// Status.
    pub status: SendStatus,
    /// The broker's offset message id (its address + the commit-log offset), RocketMQ's
    /// `offsetMsgId`: what `mqadmin queryMsgById` and the broker's lookups take.
    pub offset_msg_id: String,
    /// The producer's unique id of the message (`UNIQ_KEY`), also [`SendResult::msg_id`].
    pub unique_id: String,
    /// Where it went.
    pub message_queue: MessageQueue,
    /// Its offset in that queue.
    pub queue_offset: u64,
}

impl SendResult {
    /// The message id as RocketMQ users know it: the producer's unique id (`UNIQ_KEY`),
    /// the same on every delivery and the key consumers deduplicate by.
    pub fn msg_id(&self) -> &str {
        &self.unique_id
    }
}

/// A received message: what was sent plus where it was stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageExt {
    /// The queue it came from.
    pub queue: MessageQueue,
    /// Its offset in that queue.
    pub queue_offset: u64,
    /// The stored record, decoded (the storage layer's type: read it through the methods).
    pub(crate) stored: StoredMessage,
    /// How many times it was delivered before.
    pub reconsume_times: u32,
}

impl MessageExt {
    /// The topic it was sent to.
    pub fn topic(&self) -> &str {
        &self.stored.topic
    }

    /// The message id as RocketMQ users know it: the producer's unique id, the same on
    /// every delivery (what to deduplicate by). `None` for a message sent without one (by
    /// a client that sets no `UNIQ_KEY`); [`MessageExt::offset_msg_id`] always exists.
    pub fn msg_id(&self) -> Option<&str> {
        self.unique_id()
    }

    /// The broker's offset id (store address + commit-log offset), RocketMQ's
    /// `offsetMsgId`.
    pub fn offset_msg_id(&self) -> String {
        self.stored.offset_msg_id()
    }

    /// Its offset in the broker's commit log.
    pub fn commit_log_offset(&self) -> u64 {
        self.stored.physical_offset
    }

    /// The opaque user flag it was sent with.
    pub fn flag(&self) -> i32 {
        self.stored.flag
    }

    /// Every property, user-set and system (`TAGS`, `KEYS`, `UNIQ_KEY`, ...), in order.
    pub fn properties(&self) -> impl Iterator<Item = (&str, &str)> {
        crate::common::properties::parse_properties(&self.stored.properties)
    }

    /// Where the producer ran.
    pub fn born_host(&self) -> std::net::SocketAddr {
        self.stored.born_host
    }

    /// The broker that stored it.
    pub fn store_host(&self) -> std::net::SocketAddr {
        self.stored.store_host
    }

    /// The body.
    pub fn body(&self) -> &Bytes {
        &self.stored.body
    }

    /// The tag, if any.
    pub fn tags(&self) -> Option<&str> {
        self.stored.property(PROPERTY_TAGS)
    }

    /// The business keys.
    pub fn keys(&self) -> Vec<&str> {
        self.stored.keys().collect()
    }

    /// One user property.
    pub fn property(&self, name: &str) -> Option<&str> {
        self.stored.property(name)
    }

    /// The producer's unique id.
    pub fn unique_id(&self) -> Option<&str> {
        self.stored.property(PROPERTY_UNIQ_KEY)
    }

    /// When the broker stored it (ms since the epoch).
    pub fn store_timestamp(&self) -> i64 {
        self.stored.store_timestamp
    }

    /// When the producer created it (ms since the epoch).
    pub fn born_timestamp(&self) -> i64 {
        self.stored.born_timestamp
    }
}

/// A message handler's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumeResult {
    /// Done: the offset may move past these messages.
    Success,
    /// Deliver these messages again later.
    ReconsumeLater,
}

/// So that an actor listener's handler can say `type Result = ConsumeResult;` and return
/// the verdict directly (without wrapping it in `actix::MessageResult`).
impl<A, M> actix::dev::MessageResponse<A, M> for ConsumeResult
where
    A: actix::Actor,
    M: actix::Message<Result = ConsumeResult>,
{
    fn handle(self, _: &mut A::Context, tx: Option<actix::dev::OneshotSender<ConsumeResult>>) {
        if let Some(tx) = tx {
            // The asker may be gone (its consumer shut down): nothing to answer then.
            let _ = tx.send(self);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::record::{encode_properties, parse_properties};

    #[test]
    fn encoded_properties_match_the_generic_encoder() {
        let bare = Message::new("T", "b");
        assert_eq!(
            bare.encoded_properties("ID1"),
            encode_properties([(PROPERTY_UNIQ_KEY, "ID1")])
        );
        let full = Message::new("T", "b")
            .with_tags("TagA")
            .with_key("k1")
            .with_key("k2")
            .with_property("b", "2")
            .with_property("a", "1");
        let got = full.encoded_properties("ID2");
        assert_eq!(
            got,
            encode_properties([
                ("a", "1"),
                ("b", "2"),
                (PROPERTY_TAGS, "TagA"),
                (PROPERTY_KEYS, "k1 k2"),
                (PROPERTY_UNIQ_KEY, "ID2"),
            ])
        );
        assert_eq!(parse_properties(&got).count(), 5);
    }
}
