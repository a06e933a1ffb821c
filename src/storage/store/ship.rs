//! Reading the log for a slave: chunks of whole, verified records, and the digest of the
//! last record that lets a master check that a slave's log is a prefix of its own.
//!
//! A chunk never carries a record that fails its checks: shipping one would overwrite the
//! only good copy a slave may hold with a damaged one. The damage is recorded and the
//! caller stops at it.

use super::*;
use crate::storage::damage::{DamageKind, DamagedRange, FoundBy};
use crate::storage::record::{Peek, RecordError, END_FILE_MIN_BLANK_LENGTH};

/// Whole records read for a slave (see [`MessageStore::ship_chunk`]).
#[derive(Debug, Clone)]
pub struct LogChunk {
    /// Commit-log offset of the first byte.
    pub start: u64,
    /// The records (or one blank marker's header, which the slave rolls on).
    pub bytes: Bytes,
    /// Where the next chunk starts (past the bytes, or the next segment after a marker).
    pub next: u64,
}

impl MessageStore {
    /// Up to about `limit` bytes of whole records starting at `from` and ending at or below
    /// `end` (one record larger than `limit` is read whole). Each record is checked as a
    /// read for a consumer is (size, magic, stored offset, CRCs); the chunk stops before the
    /// first one that fails. If the very first fails, the error is returned and the range is
    /// added to the damage log: replication cannot pass it. Empty at `end`.
    pub fn ship_chunk(&self, from: u64, end: u64, limit: usize) -> Result<LogChunk> {
        let log = &self.shared.commit_log;
        let empty = |next| LogChunk {
            start: from,
            bytes: Bytes::new(),
            next,
        };
        if from >= end {
            return Ok(empty(from));
        }
        let want = limit
            .max(END_FILE_MIN_BLANK_LENGTH)
            .min((end - from) as usize);
        let buf = log.read_available(from, want)?;
        let mut pos = 0usize;
        while pos < buf.len() {
            let at = from + pos as u64;
            let rest = &buf[pos..];
            match record::peek(rest) {
                Ok(Peek::Blank) if pos == 0 => {
                    let seg_end = log.segment_start(at) + log.segment_size() as u64;
                    return Ok(LogChunk {
                        start: from,
                        bytes: buf.slice(0..END_FILE_MIN_BLANK_LENGTH.min(buf.len())),
                        next: seg_end,
                    });
                }
                Ok(Peek::Blank) => break,
                Ok(Peek::Message(len)) if len <= rest.len() => {
                    if let Err(source) = record::check_stored(&rest[..len], at) {
                        if pos == 0 {
                            return Err(self.damaged_for_shipping(at, len, source));
                        }
                        break;
                    }
                    pos += len;
                }
                Ok(Peek::Message(len)) if pos == 0 => {
                    // One record longer than the limit: ship it whole.
                    let rec = log.read(at, len)?;
                    if let Err(source) = record::check_stored(&rec, at) {
                        return Err(self.damaged_for_shipping(at, len, source));
                    }
                    return Ok(LogChunk {
                        start: from,
                        next: at + len as u64,
                        bytes: rec,
                    });
                }
                // A record cut by the read: the next chunk starts with it.
                Ok(Peek::Message(_)) | Err(RecordError::Truncated { .. }) => break,
                Err(source) if pos == 0 => {
                    return Err(self.damaged_for_shipping(at, rest.len(), source))
                }
                Err(_) => break,
            }
        }
        Ok(LogChunk {
            start: from,
            bytes: buf.slice(0..pos),
            next: from + pos as u64,
        })
    }

    fn damaged_for_shipping(&self, at: u64, len: usize, source: RecordError) -> Error {
        self.shared.damage.record(DamagedRange {
            from: at,
            to: at + len as u64,
            kind: DamageKind::Corrupt,
            found_by: FoundBy::Replication,
            found_at: now_ms(),
            reason: format!("not shipped to a slave: {source}"),
        });
        Error::CorruptRecord { offset: at, source }
    }

    /// The log's end and its last record's start and CRC, read together under the write
    /// lock (an append finishing between two separate reads would pair an end with another
    /// record's digest): what a slave says when it connects.
    pub fn end_and_last_digest(&self) -> (u64, Option<(u64, u32)>) {
        let _w = self.shared.write_lock.lock();
        (self.max_physical_offset(), self.last_record_digest())
    }

    /// Where the last record of the log starts and the CRC of its bytes, or `None` for an
    /// empty log. A slave sends it when it connects; its master compares it with
    /// [`MessageStore::record_digest`] at the same place.
    pub fn last_record_digest(&self) -> Option<(u64, u32)> {
        let at = self.shared.commit_log.last_record()?;
        self.record_digest(at).ok().map(|(_, crc)| (at, crc))
    }

    /// The end and the CRC of the bytes of the record starting at `at`.
    pub fn record_digest(&self, at: u64) -> Result<(u64, u32)> {
        let raw = self.shared.commit_log.read_record(at)?;
        Ok((at + raw.len() as u64, crc32fast::hash(&raw)))
    }
}
