//! The store's lookups: records by physical offset, queue offset, message id and key,
//! queue bounds and time search, and pull-style reads. Reads never take the write lock.

use super::*;

impl MessageStore {
    /// Zero-copy bytes of the whole record at `offset`.
    pub fn read_raw(&self, offset: u64) -> Result<Bytes> {
        self.shared.commit_log.read_record(offset)
    }

    /// Zero-copy commit-log bytes (for shipping the log to a slave).
    /// Up to `len` bytes, fewer at a segment end or the log end (empty there).
    pub fn read_log(&self, offset: u64, len: usize) -> Result<Bytes> {
        self.shared.commit_log.read_available(offset, len)
    }

    /// The record at commit-log `offset`, decoded and CRC-checked.
    pub fn read_by_physical(&self, offset: u64) -> Result<StoredMessage> {
        let raw = self.read_raw(offset)?;
        // Strict: every record this store wrote ends with a record CRC, so one without it
        // was damaged exactly there.
        StoredMessage::decode_verified(raw, record::Verify::Strict)
            .map_err(|source| Error::CorruptRecord { offset, source })
    }

    /// The message at `queue_offset` of a queue.
    pub fn read_by_queue_offset(
        &self,
        topic: &str,
        queue_id: u32,
        queue_offset: u64,
    ) -> Result<StoredMessage> {
        let cq = self.shared.queue(topic, queue_id);
        let (min, max) = cq
            .as_ref()
            .map(|q| (q.min_offset(), q.max_offset()))
            .unwrap_or((0, 0));
        if queue_offset < min {
            return Err(Error::OffsetMoved {
                requested: queue_offset,
                min,
            });
        }
        let entry = cq
            .and_then(|q| q.get(queue_offset))
            .ok_or(Error::OffsetBeyondEnd {
                requested: queue_offset,
                max,
            })?;
        match self.read_by_physical(entry.physical_offset) {
            Err(Error::OffsetMoved { .. }) => Err(Error::OffsetMoved {
                requested: queue_offset,
                min: self.min_offset(topic, queue_id),
            }),
            other => other,
        }
    }

    /// The message named by an offset message id (see [`AppendResult::msg_id`]).
    pub fn read_by_msg_id(&self, msg_id: &str) -> Result<Option<StoredMessage>> {
        let Ok((host, offset)) = decode_offset_msg_id(msg_id) else {
            return Ok(None);
        };
        if host != self.shared.store_host || offset >= self.confirmed_offset() {
            return Ok(None);
        }
        match self.read_by_physical(offset) {
            Ok(m) => Ok(Some(m)),
            Err(Error::OffsetBeyondEnd { .. }) | Err(Error::CorruptRecord { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Messages of `topic` whose `KEYS` contain `key` or whose `UNIQ_KEY` is `key`, stored
    /// between `begin` and `end` (ms, inclusive), newest first, at most `max`.
    pub fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        begin: i64,
        end: i64,
        max: usize,
    ) -> Result<Vec<StoredMessage>> {
        let Some(index) = &self.shared.index else {
            return Ok(Vec::new());
        };
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        let confirmed = self.confirmed_offset();
        // Over-fetch: hash collisions and stale entries are filtered below.
        for phys in index.query(topic, key, begin, end, max.saturating_mul(4).max(32)) {
            if out.len() >= max || phys >= confirmed || !seen.insert(phys) {
                continue;
            }
            let Ok(m) = self.read_by_physical(phys) else {
                continue;
            };
            let matches = m.topic == topic
                && (m.keys().any(|k| k == key) || m.property(PROPERTY_UNIQ_KEY) == Some(key))
                && (begin..=end).contains(&m.store_timestamp);
            if matches {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Lowest readable offset of a queue.
    pub fn min_offset(&self, topic: &str, queue_id: u32) -> u64 {
        self.shared
            .queue(topic, queue_id)
            .map(|q| q.min_offset())
            .unwrap_or(0)
    }

    /// The end of a queue as consumers see it: one past its last confirmed message (see
    /// [`MessageStore::confirmed_offset`]).
    pub fn max_offset(&self, topic: &str, queue_id: u32) -> u64 {
        self.shared
            .queue(topic, queue_id)
            .map(|q| self.shared.visible_end(&q, self.shared.confirmed_offset()))
            .unwrap_or(0)
    }

    /// Next offset to be written in a queue, confirmed or not.
    pub fn written_max_offset(&self, topic: &str, queue_id: u32) -> u64 {
        self.shared
            .queue(topic, queue_id)
            .map(|q| q.max_offset())
            .unwrap_or(0)
    }

    /// First queue offset stored at or after `timestamp` (ms).
    pub fn offset_for_timestamp(&self, topic: &str, queue_id: u32, timestamp: i64) -> u64 {
        let Some(cq) = self.shared.queue(topic, queue_id) else {
            return 0;
        };
        cq.offset_for_timestamp(timestamp, |phys| self.shared.store_timestamp_at(phys))
    }

    /// Topics with at least one queue, and their queue ids.
    pub fn topics(&self) -> Vec<(String, Vec<u32>)> {
        let q = self.shared.queues.read();
        let mut v: Vec<_> = q
            .iter()
            .map(|(t, qs)| {
                let mut ids: Vec<u32> = qs.keys().copied().collect();
                ids.sort_unstable();
                (t.clone(), ids)
            })
            .collect();
        v.sort();
        v
    }

    /// Reads up to `max_msgs` messages (and about `max_bytes`) from a queue starting at
    /// `offset`, skipping entries whose tag hash `filter` rejects.
    pub fn get_messages(
        &self,
        topic: &str,
        queue_id: u32,
        offset: u64,
        max_msgs: usize,
        max_bytes: usize,
        filter: Option<&dyn Fn(i64) -> bool>,
    ) -> GetResult {
        crate::storage::reader::get_messages(
            self, topic, queue_id, offset, max_msgs, max_bytes, filter,
        )
    }
}
