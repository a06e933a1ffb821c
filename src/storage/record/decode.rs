//! Reading records back: what sits at a log position, and a record decoded and checked from
//! any bytes. Must never panic and never read past its input, whatever the bytes: it is fed
//! torn files and bytes from the network. It never writes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use bytes::Bytes;

use super::*;

/// The record CRC a record carries at its end, if it has one, and the CRC of the bytes it
/// covers. `rec` is exactly one record.
fn record_crc(rec: &[u8]) -> Option<(u32, u32)> {
    let n = rec.len();
    let value = rec.get(n.checked_sub(11)?..n - 1)?;
    let name_at = n.checked_sub(RECORD_CRC_SUFFIX_LEN)?;
    let name = rec.get(name_at..name_at + PROPERTY_RECORD_CRC.len() + 1)?;
    if &name[..PROPERTY_RECORD_CRC.len()] != PROPERTY_RECORD_CRC.as_bytes()
        || name[PROPERTY_RECORD_CRC.len()] != NAME_VALUE_SEPARATOR as u8
        || rec[n - 1] != PROPERTY_SEPARATOR as u8
        || !value.iter().all(u8::is_ascii_digit)
    {
        return None;
    }
    let stored = value
        .iter()
        .fold(0u64, |acc, d| acc * 10 + (d - b'0') as u64);
    Some((stored as u32, crc32fast::hash(&rec[..n - 11])))
}

/// Checks that `rec` is exactly one record this store wrote at `physical_offset`, intact:
/// its size field, magic and stored offset agree, and its record CRC (which covers every
/// byte before it, body included) matches. One pass over the bytes and no parsing of
/// fields, so a read path can afford it for every record it hands out; `decode` tells
/// what is wrong when this fails.
pub fn check_stored(rec: &[u8], physical_offset: u64) -> Result<(), RecordError> {
    let declared = match peek(rec)? {
        Peek::Message(n) => n,
        Peek::Blank => return Err(RecordError::BadMagic(BLANK_MAGIC_CODE as u32)),
    };
    if declared != rec.len() {
        return Err(RecordError::BadLength {
            declared,
            actual: rec.len(),
        });
    }
    let stored_at = read_i64(rec, PHYSICAL_OFFSET_POSITION)?;
    if stored_at != physical_offset as i64 {
        return Err(RecordError::WrongOffset {
            stored: stored_at,
            expected: physical_offset,
        });
    }
    match record_crc(rec) {
        Some((stored, computed)) if stored != computed => {
            Err(RecordError::RecordCrc { stored, computed })
        }
        Some(_) => Ok(()),
        None => Err(RecordError::RecordCrcMissing),
    }
}

/// The record a view came from, encoded again from its fields as this store writes it
/// (with the record CRC appended): a store that re-stores a message, and the decoder's
/// round-trip checks, start from here. `None` when the view's properties cannot have come
/// from this encoder (they would get a separator added before the record CRC).
pub fn reencode(view: &RecordView<'_>) -> Option<Vec<u8>> {
    let own = view
        .properties
        .len()
        .checked_sub(RECORD_CRC_SUFFIX_LEN)
        .and_then(|n| view.properties.get(..n))?;
    if !own.is_empty() && !own.ends_with(PROPERTY_SEPARATOR) {
        return None;
    }
    let msg = MessageToStore {
        topic: view.topic.to_owned(),
        queue_id: view.queue_id,
        flag: view.flag,
        sys_flag: view.sys_flag,
        born_timestamp: view.born_timestamp,
        born_host: view.born_host,
        reconsume_times: view.reconsume_times,
        prepared_transaction_offset: view.prepared_transaction_offset,
        body: Bytes::copy_from_slice(view.body),
        properties: own.to_owned(),
    };
    let stamp = StoreStamp {
        queue_offset: view.queue_offset,
        physical_offset: view.physical_offset,
        store_timestamp: view.store_timestamp,
        store_host: view.store_host,
    };
    let mut buf = vec![0u8; msg.encoded_len(&stamp.store_host)];
    encode_into(&mut buf, &msg, body_crc(&msg.body), &stamp);
    Some(buf)
}

/// What sits at a position in the commit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peek {
    /// A message record of this many bytes (not yet validated).
    Message(usize),
    /// A blank marker: the rest of the segment is unused.
    Blank,
}

/// The total-size field at the start of `buf` (a record's or a blank marker's).
pub fn peek_total_size(buf: &[u8]) -> Result<usize, RecordError> {
    let total = read_i32(buf, 0)?;
    usize::try_from(total).map_err(|_| RecordError::NegativeLength("total size"))
}

/// Reads the size and magic at the start of `buf` without validating the record.
pub fn peek(buf: &[u8]) -> Result<Peek, RecordError> {
    let total = read_i32(buf, 0)?;
    let magic = read_i32(buf, 4)?;
    match magic {
        MESSAGE_MAGIC_CODE => {
            if total < 0 {
                return Err(RecordError::NegativeLength("total size"));
            }
            Ok(Peek::Message(total as usize))
        }
        BLANK_MAGIC_CODE => Ok(Peek::Blank),
        other => Err(RecordError::BadMagic(other as u32)),
    }
}

fn read_slice(buf: &[u8], pos: usize, len: usize) -> Result<&[u8], RecordError> {
    let end = pos.checked_add(len).ok_or(RecordError::Truncated {
        need: usize::MAX,
        have: buf.len(),
    })?;
    buf.get(pos..end).ok_or(RecordError::Truncated {
        need: end,
        have: buf.len(),
    })
}

fn read_i32(buf: &[u8], pos: usize) -> Result<i32, RecordError> {
    let s = read_slice(buf, pos, 4)?;
    Ok(i32::from_be_bytes([s[0], s[1], s[2], s[3]]))
}

fn read_i64(buf: &[u8], pos: usize) -> Result<i64, RecordError> {
    let s = read_slice(buf, pos, 8)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(i64::from_be_bytes(a))
}

/// A host's port, stored as an i32; one outside 0..=65535 is refused rather than cut to
/// 16 bits, so a decoded record always re-encodes to the same bytes.
fn read_port(buf: &[u8], pos: usize) -> Result<u16, RecordError> {
    let port = read_i32(buf, pos)?;
    u16::try_from(port).map_err(|_| RecordError::BadPort(port))
}

fn read_host(buf: &[u8], pos: usize, v6: bool) -> Result<(SocketAddr, usize), RecordError> {
    if v6 {
        let s = read_slice(buf, pos, 16)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(s);
        let port = read_port(buf, pos + 16)?;
        Ok((
            SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), port),
            pos + 20,
        ))
    } else {
        let s = read_slice(buf, pos, 4)?;
        let port = read_port(buf, pos + 4)?;
        Ok((
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(s[0], s[1], s[2], s[3])), port),
            pos + 8,
        ))
    }
}

/// A decoded record borrowing its variable parts from the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Total record size.
    pub total_size: usize,
    /// Stored body CRC.
    pub body_crc: u32,
    /// Queue within the topic.
    pub queue_id: u32,
    /// User flag.
    pub flag: i32,
    /// Offset within the queue.
    pub queue_offset: u64,
    /// Commit-log offset.
    pub physical_offset: u64,
    /// Sys flag bits.
    pub sys_flag: i32,
    /// Producer time (ms).
    pub born_timestamp: i64,
    /// Producer address.
    pub born_host: SocketAddr,
    /// Broker time (ms).
    pub store_timestamp: i64,
    /// Broker address.
    pub store_host: SocketAddr,
    /// Redelivery count.
    pub reconsume_times: i32,
    /// Prepared half-message offset.
    pub prepared_transaction_offset: i64,
    /// Byte range of the body within the input.
    pub body_range: std::ops::Range<usize>,
    /// The body.
    pub body: &'a [u8],
    /// The topic.
    pub topic: &'a str,
    /// The raw properties string.
    pub properties: &'a str,
}

impl RecordView<'_> {
    /// One property's value.
    pub fn property(&self, name: &str) -> Option<&str> {
        property(self.properties, name)
    }

    /// The tag hash a consume-queue entry carries for this record (0 without a tag).
    pub fn tags_code(&self) -> i64 {
        self.property(PROPERTY_TAGS).map(tag_hash).unwrap_or(0)
    }
}

/// How much of a record `decode` verifies beyond its structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Structure only (hot reads of data this process just wrote).
    Structure,
    /// The body CRC, and the record CRC when the record carries one (records from elsewhere).
    Crc,
    /// The body CRC and a record CRC that must be present (recovery and replication of
    /// records this kind of store wrote).
    Strict,
}

/// Decodes and validates the record at the start of `buf` (see [`Verify`]).
pub fn decode(buf: &[u8], verify: Verify) -> Result<RecordView<'_>, RecordError> {
    let declared = match peek(buf)? {
        Peek::Message(n) => n,
        Peek::Blank => return Err(RecordError::BadMagic(BLANK_MAGIC_CODE as u32)),
    };
    // Never look past the record's own declared end, even if the input goes on.
    let rec = read_slice(buf, 0, declared)?;
    let stored_crc = read_i32(rec, 8)? as u32;
    let queue_id = read_i32(rec, QUEUE_ID_POSITION)?;
    let flag = read_i32(rec, 16)?;
    let queue_offset = read_i64(rec, QUEUE_OFFSET_POSITION)?;
    let physical_offset = read_i64(rec, PHYSICAL_OFFSET_POSITION)?;
    let sys_flag = read_i32(rec, SYSFLAG_POSITION)?;
    let born_timestamp = read_i64(rec, 40)?;
    let (born_host, pos) = read_host(rec, BORN_HOST_POSITION, sys_flag & SYSFLAG_BORNHOST_V6 != 0)?;
    let store_timestamp = read_i64(rec, pos)?;
    let (store_host, pos) = read_host(rec, pos + 8, sys_flag & SYSFLAG_STOREHOST_V6 != 0)?;
    let reconsume_times = read_i32(rec, pos)?;
    let prepared_transaction_offset = read_i64(rec, pos + 4)?;
    let pos = pos + 12;
    let body_len = read_i32(rec, pos)?;
    if body_len < 0 {
        return Err(RecordError::NegativeLength("body"));
    }
    let body_start = pos + 4;
    let body = read_slice(rec, body_start, body_len as usize)?;
    let pos = body_start + body.len();
    let topic_len = *read_slice(rec, pos, 1)?.first().unwrap_or(&0) as usize;
    let topic = read_slice(rec, pos + 1, topic_len)?;
    let pos = pos + 1 + topic_len;
    let props_len_bytes = read_slice(rec, pos, 2)?;
    let props_len = i16::from_be_bytes([props_len_bytes[0], props_len_bytes[1]]);
    if props_len < 0 {
        return Err(RecordError::NegativeLength("properties"));
    }
    let props = read_slice(rec, pos + 2, props_len as usize)?;
    let actual = pos + 2 + props.len();
    if actual != declared {
        return Err(RecordError::BadLength { declared, actual });
    }
    if verify != Verify::Structure {
        let record_checked = match record_crc(rec) {
            Some((stored, computed)) if stored != computed => {
                return Err(RecordError::RecordCrc { stored, computed });
            }
            Some(_) => true,
            None if verify == Verify::Strict => return Err(RecordError::RecordCrcMissing),
            None => false,
        };
        // The record CRC covers the body and the stored body CRC too, so once it matches
        // a second pass over the body can only agree (the store computes both itself).
        // Strict checks it anyway only when it has no record CRC, which it refuses above.
        let computed = if record_checked && verify == Verify::Strict {
            stored_crc
        } else {
            body_crc(body)
        };
        if computed != stored_crc {
            return Err(RecordError::BodyCrc {
                stored: stored_crc,
                computed,
            });
        }
    }
    if queue_id < 0 {
        return Err(RecordError::NegativeLength("queue id"));
    }
    if queue_offset < 0 || physical_offset < 0 {
        return Err(RecordError::NegativeLength("offset"));
    }
    Ok(RecordView {
        total_size: declared,
        body_crc: stored_crc,
        queue_id: queue_id as u32,
        flag,
        queue_offset: queue_offset as u64,
        physical_offset: physical_offset as u64,
        sys_flag,
        born_timestamp,
        born_host,
        store_timestamp,
        store_host,
        reconsume_times,
        prepared_transaction_offset,
        body_range: body_start..body_start + body.len(),
        body,
        topic: std::str::from_utf8(topic).map_err(|_| RecordError::TopicNotUtf8)?,
        properties: std::str::from_utf8(props).map_err(|_| RecordError::PropertiesNotUtf8)?,
    })
}

/// A record read from the store: the stored bytes as they are (ready to ship in a pull)
/// plus its decoded fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// The whole stored record, shared with the mapped segment where possible.
    pub raw: Bytes,
    /// Topic.
    pub topic: String,
    /// Queue within the topic.
    pub queue_id: u32,
    /// Offset within the queue.
    pub queue_offset: u64,
    /// Commit-log offset.
    pub physical_offset: u64,
    /// User flag.
    pub flag: i32,
    /// Sys flag bits.
    pub sys_flag: i32,
    /// Producer time (ms).
    pub born_timestamp: i64,
    /// Producer address.
    pub born_host: SocketAddr,
    /// Broker time (ms).
    pub store_timestamp: i64,
    /// Broker address.
    pub store_host: SocketAddr,
    /// Redelivery count.
    pub reconsume_times: i32,
    /// The body, a slice of `raw`.
    pub body: Bytes,
    /// The raw properties string.
    pub properties: String,
}

impl StoredMessage {
    /// Decodes a whole record held in `raw` (CRC checked).
    pub fn decode(raw: Bytes) -> Result<Self, RecordError> {
        Self::decode_verified(raw, Verify::Crc)
    }

    /// Decodes a whole record held in `raw`, validated as `verify` says (a store reading
    /// its own log uses [`Verify::Strict`]: every record it wrote carries a record CRC).
    pub fn decode_verified(raw: Bytes, verify: Verify) -> Result<Self, RecordError> {
        let v = decode(&raw, verify)?;
        let body = raw.slice(v.body_range.clone());
        Ok(StoredMessage {
            topic: v.topic.to_owned(),
            queue_id: v.queue_id,
            queue_offset: v.queue_offset,
            physical_offset: v.physical_offset,
            flag: v.flag,
            sys_flag: v.sys_flag,
            born_timestamp: v.born_timestamp,
            born_host: v.born_host,
            store_timestamp: v.store_timestamp,
            store_host: v.store_host,
            reconsume_times: v.reconsume_times,
            properties: v.properties.to_owned(),
            body,
            raw,
        })
    }

    /// One property's value.
    pub fn property(&self, name: &str) -> Option<&str> {
        property(&self.properties, name)
    }

    /// The business keys (the `KEYS` property split on spaces).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.property(PROPERTY_KEYS)
            .unwrap_or("")
            .split(' ')
            .filter(|k| !k.is_empty())
    }

    /// RocketMQ's offset message id of this record.
    pub fn offset_msg_id(&self) -> String {
        crate::storage::message_id::offset_msg_id(&self.store_host, self.physical_offset)
    }
}

/// Splits a pull body (stored records back to back) into messages.
pub fn decode_records(body: &bytes::Bytes) -> Result<Vec<StoredMessage>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let len = peek_total_size(&body[pos..]).map_err(|e| e.to_string())?;
        if len == 0 || pos + len > body.len() {
            return Err(format!("record at {pos} claims {len} bytes"));
        }
        out.push(StoredMessage::decode(body.slice(pos..pos + len)).map_err(|e| e.to_string())?);
        pos += len;
    }
    Ok(out)
}
