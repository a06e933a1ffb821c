//! The stored-message record: RocketMQ's own commit-log layout, byte for byte.
//!
//! Owns the layout, the properties string, and encoding a message into a commit-log slot;
//! `decode` (its own file) reads and checks a record from any byte string, and must never
//! panic or read past its input, whatever the bytes.
//!
//! # Layout (all integers big-endian)
//!
//! | offset | field | size |
//! |---|---|---|
//! | 0 | total size (whole record) | 4 |
//! | 4 | magic [`MESSAGE_MAGIC_CODE`] | 4 |
//! | 8 | body CRC32 & 0x7FFFFFFF | 4 |
//! | 12 | queue id | 4 |
//! | 16 | user flag | 4 |
//! | 20 | queue offset | 8 |
//! | 28 | physical (commit-log) offset | 8 |
//! | 36 | sys flag | 4 |
//! | 40 | born timestamp (ms) | 8 |
//! | 48 | born host: IPv4 + port (8), or IPv6 + port (20) if sys flag has [`SYSFLAG_BORNHOST_V6`] | 8/20 |
//! | .. | store timestamp (ms) | 8 |
//! | .. | store host: 8, or 20 with [`SYSFLAG_STOREHOST_V6`] | 8/20 |
//! | .. | reconsume times | 4 |
//! | .. | prepared-transaction offset | 8 |
//! | .. | body length + body | 4 + n |
//! | .. | topic length (u8, ≤ 127) + topic | 1 + n |
//! | .. | properties length (i16) + properties | 2 + n |
//!
//! The body CRC covers only the body, so every record this store writes also ends its
//! properties with [`PROPERTY_RECORD_CRC`]: the CRC32 of all record bytes before its value,
//! as ten decimal digits. A torn or garbled byte anywhere in the record is then detected
//! (RocketMQ 5 uses the same idea, `__CRC32#`), while other readers see one more property.
//!
//! A segment's unused tail is closed by a blank marker: total size (the rest of the segment)
//! and [`BLANK_MAGIC_CODE`].

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;

use crate::storage::error::MessageIllegal;

mod decode;

pub use decode::{
    check_stored, decode, decode_records, peek, peek_total_size, reencode, Peek, RecordView,
    StoredMessage, Verify,
};

/// Magic of a message record (RocketMQ's V1 code: topic length in one byte).
pub const MESSAGE_MAGIC_CODE: i32 = 0xDAA3_20A7_u32 as i32;
/// Magic of the blank marker that pads a segment's end.
pub const BLANK_MAGIC_CODE: i32 = 0xCBD4_3194_u32 as i32;
/// A segment always keeps room for a blank marker (total size + magic).
pub const END_FILE_MIN_BLANK_LENGTH: usize = 8;
/// Sys flag bit: the born host is IPv6.
pub const SYSFLAG_BORNHOST_V6: i32 = 0x10;
/// Sys flag bit: the store host is IPv6.
pub const SYSFLAG_STOREHOST_V6: i32 = 0x20;

/// Byte offset of the queue id field.
pub const QUEUE_ID_POSITION: usize = 12;
/// Byte offset of the queue offset field.
pub const QUEUE_OFFSET_POSITION: usize = 20;
/// Byte offset of the physical offset field.
pub const PHYSICAL_OFFSET_POSITION: usize = 28;
/// Byte offset of the sys flag field.
pub const SYSFLAG_POSITION: usize = 36;
/// Byte offset of the born host field.
pub const BORN_HOST_POSITION: usize = 48;

pub use crate::common::properties::{
    encode_properties, parse_properties, property, NAME_VALUE_SEPARATOR, PROPERTY_KEYS,
    PROPERTY_SEPARATOR, PROPERTY_TAGS, PROPERTY_UNIQ_KEY,
};
/// Property that ends every record this store writes: CRC32 of the record before the value.
pub const PROPERTY_RECORD_CRC: &str = "__CRC32#";
/// Bytes the record-CRC property adds: name, separator, ten digits, separator.
pub const RECORD_CRC_SUFFIX_LEN: usize = PROPERTY_RECORD_CRC.len() + 1 + 10 + 1;
pub use crate::common::properties::PROPERTY_DELAY;

/// Why bytes are not a valid record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// Fewer bytes than the record needs.
    #[error("record truncated: need {need} bytes, have {have}")]
    Truncated {
        /// Bytes the record needs.
        need: usize,
        /// Bytes available.
        have: usize,
    },
    /// The magic field is neither a message nor a blank marker.
    #[error("bad magic code {0:#010x}")]
    BadMagic(u32),
    /// The total-size field disagrees with the fields inside.
    #[error("total size field says {declared} bytes but the fields add up to {actual}")]
    BadLength {
        /// The total-size field.
        declared: usize,
        /// The sum of the fields.
        actual: usize,
    },
    /// A length field is negative.
    #[error("negative length in field {0}")]
    NegativeLength(&'static str),
    /// The body does not match its CRC: the record was damaged.
    #[error("body CRC mismatch: stored {stored:#x}, computed {computed:#x}")]
    BodyCrc {
        /// CRC in the record.
        stored: u32,
        /// CRC of the body bytes.
        computed: u32,
    },
    /// The whole-record CRC does not match: a byte outside the body was damaged.
    #[error("record CRC mismatch: stored {stored}, computed {computed}")]
    RecordCrc {
        /// CRC in the record.
        stored: u32,
        /// CRC of the record bytes.
        computed: u32,
    },
    /// Strict verification asked for a record CRC and the record has none.
    #[error("record has no {PROPERTY_RECORD_CRC} property")]
    RecordCrcMissing,
    /// The record stores another physical offset than the one it was read at.
    #[error("record read at commit-log offset {expected} says it was stored at {stored}")]
    WrongOffset {
        /// The offset inside the record.
        stored: i64,
        /// Where it was read.
        expected: u64,
    },
    /// A host's port field is outside 0..=65535 (it would be read as another port).
    #[error("port field {0} is outside 0..=65535")]
    BadPort(i32),
    /// The topic is not UTF-8.
    #[error("topic is not valid UTF-8")]
    TopicNotUtf8,
    /// The properties are not UTF-8.
    #[error("properties are not valid UTF-8")]
    PropertiesNotUtf8,
}

/// A message as handed to the store: everything but what the store assigns
/// (queue offset, physical offset, store time and host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageToStore {
    /// Topic name, 1..=127 bytes.
    pub topic: String,
    /// Queue within the topic.
    pub queue_id: u32,
    /// Opaque user flag.
    pub flag: i32,
    /// RocketMQ sys flag bits (compression, transaction type, IPv6 hosts); the store sets
    /// the host bits itself.
    pub sys_flag: i32,
    /// When the producer created the message (ms since the epoch).
    pub born_timestamp: i64,
    /// The producer's address.
    pub born_host: SocketAddr,
    /// How many times the message was redelivered.
    pub reconsume_times: i32,
    /// Offset of the prepared half-message (transactions), else 0.
    pub prepared_transaction_offset: i64,
    /// The payload.
    pub body: Bytes,
    /// RocketMQ properties string (`name\u{1}value\u{2}...`); see [`encode_properties`].
    pub properties: String,
}

impl MessageToStore {
    /// A stored message made ready to store again in `topic`/`queue_id` (a delayed message
    /// coming due, a retry, a committed transaction): body, flags, born time and host and
    /// reconsume count kept, `drop` removed from its properties and `add` appended. The
    /// stored record CRC property is always removed, or the store would append a second.
    pub fn rebuilt_from(
        stored: &StoredMessage,
        topic: &str,
        queue_id: u32,
        drop: &[&str],
        add: &[(&str, &str)],
    ) -> Self {
        MessageToStore {
            topic: topic.to_owned(),
            queue_id,
            flag: stored.flag,
            sys_flag: stored.sys_flag,
            born_timestamp: stored.born_timestamp,
            born_host: stored.born_host,
            reconsume_times: stored.reconsume_times,
            prepared_transaction_offset: 0,
            body: stored.body.clone(),
            properties: encode_properties(
                parse_properties(&stored.properties)
                    .filter(|(k, _)| *k != PROPERTY_RECORD_CRC && !drop.contains(k))
                    .chain(add.iter().copied()),
            ),
        }
    }

    /// Moves the message into `topic`/`queue_id`, one the broker keeps for itself (a delay
    /// level's schedule queue, the half-message queue), its own topic and queue kept in the
    /// `REAL_TOPIC` and `REAL_QID` properties (replacing any already there).
    pub fn park(&mut self, topic: &str, queue_id: u32) {
        use crate::common::properties::{PROPERTY_REAL_QUEUE_ID, PROPERTY_REAL_TOPIC};
        let queue = self.queue_id.to_string();
        self.properties = encode_properties(
            parse_properties(&self.properties)
                .filter(|(n, _)| *n != PROPERTY_REAL_TOPIC && *n != PROPERTY_REAL_QUEUE_ID)
                .chain([
                    (PROPERTY_REAL_TOPIC, self.topic.as_str()),
                    (PROPERTY_REAL_QUEUE_ID, queue.as_str()),
                ]),
        );
        self.topic = topic.to_owned();
        self.queue_id = queue_id;
    }

    /// A message with the given topic, queue and body and neutral defaults elsewhere.
    pub fn new(topic: impl Into<String>, queue_id: u32, body: impl Into<Bytes>) -> Self {
        MessageToStore {
            topic: topic.into(),
            queue_id,
            flag: 0,
            sys_flag: 0,
            born_timestamp: 0,
            born_host: SocketAddr::from(([127, 0, 0, 1], 0)),
            reconsume_times: 0,
            prepared_transaction_offset: 0,
            body: body.into(),
            properties: String::new(),
        }
    }

    /// Sets the properties string from name/value pairs.
    pub fn with_properties<'a>(
        mut self,
        props: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Self {
        self.properties = encode_properties(props);
        self
    }

    /// Encoded record size when stored with the given store host.
    pub fn encoded_len(&self, store_host: &SocketAddr) -> usize {
        record_len(
            self.body.len(),
            self.topic.len(),
            self.stored_properties_len(),
            self.born_host.is_ipv6(),
            store_host.is_ipv6(),
        )
    }

    /// Length of the stored properties: the caller's plus the record-CRC property.
    pub fn stored_properties_len(&self) -> usize {
        self.properties.len() + self.needs_separator() as usize + RECORD_CRC_SUFFIX_LEN
    }

    /// Whether the caller's properties lack the final separator (non-Java clients leave it
    /// out); one is added so the record-CRC property does not merge into the last value.
    fn needs_separator(&self) -> bool {
        !self.properties.is_empty() && !self.properties.ends_with(PROPERTY_SEPARATOR)
    }

    /// Checks the limits that the encoding imposes, independent of configuration.
    pub fn validate(&self) -> Result<(), MessageIllegal> {
        if self.topic.is_empty() || self.topic.len() > 127 {
            return Err(MessageIllegal::TopicLength {
                len: self.topic.len(),
            });
        }
        if !self
            .topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'%' | b'|' | b'_' | b'-'))
        {
            return Err(MessageIllegal::TopicChars {
                topic: self.topic.clone(),
            });
        }
        crate::common::properties::check_encoded(&self.properties)
            .map_err(MessageIllegal::Properties)?;
        if self.stored_properties_len() > i16::MAX as usize {
            return Err(MessageIllegal::PropertiesTooLong {
                len: self.stored_properties_len(),
            });
        }
        Ok(())
    }
}

/// The fields the store assigns at append time.
#[derive(Debug, Clone, Copy)]
pub struct StoreStamp {
    /// Offset of the message within its queue.
    pub queue_offset: u64,
    /// Byte offset of the record in the commit log.
    pub physical_offset: u64,
    /// When the broker stored it (ms since the epoch).
    pub store_timestamp: i64,
    /// The broker's address.
    pub store_host: SocketAddr,
}

fn host_len(v6: bool) -> usize {
    if v6 {
        20
    } else {
        8
    }
}

/// Size of a record with the given variable parts.
pub fn record_len(
    body: usize,
    topic: usize,
    properties: usize,
    born_v6: bool,
    store_v6: bool,
) -> usize {
    4 + 4
        + 4
        + 4
        + 4
        + 8
        + 8
        + 4
        + 8
        + host_len(born_v6)
        + 8
        + host_len(store_v6)
        + 4
        + 8
        + 4
        + body
        + 1
        + topic
        + 2
        + properties
}

/// CRC of a body as RocketMQ stores it (the top bit cleared).
pub fn body_crc(body: &[u8]) -> u32 {
    crc32fast::hash(body) & 0x7FFF_FFFF
}

/// Java's `String.hashCode()` of a tag, which RocketMQ keeps in consume-queue entries so a
/// broker can filter by tag without reading the commit log.
pub fn tag_hash(tag: &str) -> i64 {
    let mut h: i32 = 0;
    for unit in tag.encode_utf16() {
        h = h.wrapping_mul(31).wrapping_add(unit as i32);
    }
    h as i64
}

fn put_host(buf: &mut [u8], pos: usize, host: &SocketAddr) -> usize {
    match host.ip() {
        IpAddr::V4(ip) => {
            buf[pos..pos + 4].copy_from_slice(&ip.octets());
            buf[pos + 4..pos + 8].copy_from_slice(&(host.port() as i32).to_be_bytes());
            pos + 8
        }
        IpAddr::V6(ip) => {
            buf[pos..pos + 16].copy_from_slice(&ip.octets());
            buf[pos + 16..pos + 20].copy_from_slice(&(host.port() as i32).to_be_bytes());
            pos + 20
        }
    }
}

/// Writes `msg` as a record into `buf`, which must be exactly `msg.encoded_len(store host)`
/// bytes (the caller sized it; a wrong size is a bug in the caller, so it panics in debug).
/// `crc` is [`body_crc`] of the body, computed by the caller outside any lock.
pub fn encode_into(buf: &mut [u8], msg: &MessageToStore, crc: u32, stamp: &StoreStamp) {
    debug_assert_eq!(buf.len(), msg.encoded_len(&stamp.store_host));
    let mut sys_flag = msg.sys_flag & !(SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6);
    if msg.born_host.is_ipv6() {
        sys_flag |= SYSFLAG_BORNHOST_V6;
    }
    if stamp.store_host.is_ipv6() {
        sys_flag |= SYSFLAG_STOREHOST_V6;
    }
    let total = buf.len();
    buf[0..4].copy_from_slice(&(total as i32).to_be_bytes());
    buf[4..8].copy_from_slice(&MESSAGE_MAGIC_CODE.to_be_bytes());
    buf[8..12].copy_from_slice(&crc.to_be_bytes());
    buf[12..16].copy_from_slice(&(msg.queue_id as i32).to_be_bytes());
    buf[16..20].copy_from_slice(&msg.flag.to_be_bytes());
    buf[20..28].copy_from_slice(&(stamp.queue_offset as i64).to_be_bytes());
    buf[28..36].copy_from_slice(&(stamp.physical_offset as i64).to_be_bytes());
    buf[36..40].copy_from_slice(&sys_flag.to_be_bytes());
    buf[40..48].copy_from_slice(&msg.born_timestamp.to_be_bytes());
    let mut pos = put_host(buf, 48, &msg.born_host);
    buf[pos..pos + 8].copy_from_slice(&stamp.store_timestamp.to_be_bytes());
    pos = put_host(buf, pos + 8, &stamp.store_host);
    buf[pos..pos + 4].copy_from_slice(&msg.reconsume_times.to_be_bytes());
    buf[pos + 4..pos + 12].copy_from_slice(&msg.prepared_transaction_offset.to_be_bytes());
    pos += 12;
    buf[pos..pos + 4].copy_from_slice(&(msg.body.len() as i32).to_be_bytes());
    pos += 4;
    buf[pos..pos + msg.body.len()].copy_from_slice(&msg.body);
    pos += msg.body.len();
    buf[pos] = msg.topic.len() as u8;
    pos += 1;
    buf[pos..pos + msg.topic.len()].copy_from_slice(msg.topic.as_bytes());
    pos += msg.topic.len();
    buf[pos..pos + 2].copy_from_slice(&(msg.stored_properties_len() as i16).to_be_bytes());
    pos += 2;
    buf[pos..pos + msg.properties.len()].copy_from_slice(msg.properties.as_bytes());
    pos += msg.properties.len();
    if msg.needs_separator() {
        buf[pos] = PROPERTY_SEPARATOR as u8;
        pos += 1;
    }
    buf[pos..pos + PROPERTY_RECORD_CRC.len()].copy_from_slice(PROPERTY_RECORD_CRC.as_bytes());
    pos += PROPERTY_RECORD_CRC.len();
    buf[pos] = NAME_VALUE_SEPARATOR as u8;
    pos += 1;
    let crc = crc32fast::hash(&buf[..pos]);
    write_crc_digits(&mut buf[pos..pos + 10], crc);
    buf[pos + 10] = PROPERTY_SEPARATOR as u8;
}

fn write_crc_digits(out: &mut [u8], mut crc: u32) {
    for d in out.iter_mut().rev() {
        *d = b'0' + (crc % 10) as u8;
        crc /= 10;
    }
}

/// The blank marker that closes a segment whose unused tail is `tail_len` bytes long: the
/// tail's length and the blank magic code (the rest of the tail is left as it is).
pub fn blank_marker(tail_len: usize) -> [u8; END_FILE_MIN_BLANK_LENGTH] {
    let mut marker = [0u8; END_FILE_MIN_BLANK_LENGTH];
    marker[0..4].copy_from_slice(&(tail_len as i32).to_be_bytes());
    marker[4..8].copy_from_slice(&BLANK_MAGIC_CODE.to_be_bytes());
    marker
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The byte scanner agrees with the plain definition: split on the pair separator,
        /// keep the pieces that have a name/value separator, split those at the first one.
        #[test]
        fn parse_properties_matches_split(props in "[ab\u{1}\u{2}é]{0,24}") {
            let expected: Vec<(&str, &str)> = props
                .split(PROPERTY_SEPARATOR)
                .filter_map(|kv| kv.split_once(NAME_VALUE_SEPARATOR))
                .collect();
            prop_assert_eq!(parse_properties(&props).collect::<Vec<_>>(), expected);
        }
    }

    fn sample() -> MessageToStore {
        MessageToStore::new("TopicTest", 3, Bytes::from_static(b"hello world"))
            .with_properties([("TAGS", "TagA"), ("KEYS", "k1 k2")])
    }

    fn stamp() -> StoreStamp {
        StoreStamp {
            queue_offset: 7,
            physical_offset: 1234,
            store_timestamp: 1_700_000_000_000,
            store_host: "10.0.0.5:10911".parse().unwrap(),
        }
    }

    #[test]
    fn round_trip_v4() {
        let msg = sample();
        let st = stamp();
        let mut buf = vec![0u8; msg.encoded_len(&st.store_host)];
        encode_into(&mut buf, &msg, body_crc(&msg.body), &st);
        let v = decode(&buf, Verify::Strict).unwrap();
        assert_eq!(v.total_size, buf.len());
        assert_eq!(v.topic, "TopicTest");
        assert_eq!(v.queue_id, 3);
        assert_eq!(v.queue_offset, 7);
        assert_eq!(v.physical_offset, 1234);
        assert_eq!(v.body, b"hello world");
        assert_eq!(v.property("TAGS"), Some("TagA"));
        assert_eq!(v.tags_code(), tag_hash("TagA"));
        assert_eq!(v.store_host, st.store_host);
        // 84 fixed bytes with IPv4 hosts, per RocketMQ's layout.
        assert_eq!(
            buf.len(),
            84 + 4 + 11 + 1 + 9 + 2 + msg.properties.len() + RECORD_CRC_SUFFIX_LEN
        );
    }

    #[test]
    fn round_trip_v6_sets_flags() {
        let mut msg = sample();
        msg.born_host = "[::1]:4000".parse().unwrap();
        let mut st = stamp();
        st.store_host = "[fe80::1]:10911".parse().unwrap();
        let mut buf = vec![0u8; msg.encoded_len(&st.store_host)];
        encode_into(&mut buf, &msg, body_crc(&msg.body), &st);
        let v = decode(&buf, Verify::Strict).unwrap();
        assert_eq!(v.born_host, msg.born_host);
        assert_eq!(v.store_host, st.store_host);
        assert_eq!(
            v.sys_flag & (SYSFLAG_BORNHOST_V6 | SYSFLAG_STOREHOST_V6),
            0x30
        );
    }

    #[test]
    fn java_string_hash_code() {
        // Values from java.lang.String#hashCode.
        assert_eq!(tag_hash(""), 0);
        assert_eq!(tag_hash("TagA"), 2_598_919);
        assert_eq!(tag_hash("hello"), 99_162_322);
    }

    #[test]
    fn detects_bit_flip_in_body() {
        let msg = sample();
        let st = stamp();
        let mut buf = vec![0u8; msg.encoded_len(&st.store_host)];
        encode_into(&mut buf, &msg, body_crc(&msg.body), &st);
        let body_at = decode(&buf, Verify::Strict).unwrap().body_range.start;
        buf[body_at] ^= 1;
        assert!(matches!(
            decode(&buf, Verify::Strict),
            Err(RecordError::BodyCrc { .. } | RecordError::RecordCrc { .. })
        ));
    }

    #[test]
    fn record_crc_detects_damage_outside_the_body() {
        let msg = sample();
        let st = stamp();
        let mut buf = vec![0u8; msg.encoded_len(&st.store_host)];
        encode_into(&mut buf, &msg, body_crc(&msg.body), &st);
        for at in [QUEUE_OFFSET_POSITION + 3, 45, buf.len() - 25] {
            let mut bad = buf.clone();
            bad[at] ^= 0x40;
            assert!(
                decode(&bad, Verify::Strict).is_err(),
                "flip at {at} undetected"
            );
        }
        // Without the record CRC a header flip goes unnoticed; Strict refuses such records.
        assert!(decode(&buf, Verify::Strict).is_ok());
    }

    #[test]
    fn truncated_input_is_an_error() {
        let msg = sample();
        let st = stamp();
        let mut buf = vec![0u8; msg.encoded_len(&st.store_host)];
        encode_into(&mut buf, &msg, body_crc(&msg.body), &st);
        for cut in 0..buf.len() {
            assert!(decode(&buf[..cut], Verify::Strict).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn properties_without_final_separator_keep_their_last_value() {
        let mut msg = sample();
        msg.properties = "TAGS\u{1}TagB".to_owned();
        let st = stamp();
        let mut buf = vec![0u8; msg.encoded_len(&st.store_host)];
        encode_into(&mut buf, &msg, body_crc(&msg.body), &st);
        let v = decode(&buf, Verify::Strict).unwrap();
        assert_eq!(v.property("TAGS"), Some("TagB"));
    }

    #[test]
    fn properties_parse_like_rocketmq() {
        let p = encode_properties([("A", "1"), ("B", "two")]);
        assert_eq!(p, "A\u{1}1\u{2}B\u{1}two\u{2}");
        assert_eq!(property(&p, "B"), Some("two"));
        assert_eq!(property(&p, "C"), None);
        assert_eq!(property("garbage\u{2}x", "x"), None);
    }
}
