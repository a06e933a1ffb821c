//! A consume queue: the per-(topic, queue id) index into the commit log.
//!
//! Owns fixed 20-byte entries (commit-log offset u64, size u32, tag hash i64, big-endian)
//! in their own segment files, so "message N of this queue" is one multiplication away. It
//! is derived data: the store can always rebuild it from the commit log, and this module
//! never reads or writes message bodies.

#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;

use crate::storage::error::{Error, Result};
use crate::storage::mapped_file::{parse_segment_name, sync_dir, MappedFile};

/// Bytes per consume-queue entry: commit-log offset (8), size (4), tag hash (8).
pub const CQ_STORE_UNIT_SIZE: usize = 20;

/// One consume-queue entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CqEntry {
    /// Where the record starts in the commit log.
    pub physical_offset: u64,
    /// Record size in bytes.
    pub size: u32,
    /// Java `hashCode` of the message's tag (0 when it has none).
    pub tags_code: i64,
}

impl CqEntry {
    fn encode(&self, buf: &mut [u8]) {
        buf[0..8].copy_from_slice(&self.physical_offset.to_be_bytes());
        buf[8..12].copy_from_slice(&self.size.to_be_bytes());
        buf[12..20].copy_from_slice(&self.tags_code.to_be_bytes());
    }

    fn decode(buf: &[u8]) -> Option<CqEntry> {
        let b = buf.get(..CQ_STORE_UNIT_SIZE)?;
        let mut off = [0u8; 8];
        off.copy_from_slice(&b[0..8]);
        let mut size = [0u8; 4];
        size.copy_from_slice(&b[8..12]);
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&b[12..20]);
        let e = CqEntry {
            physical_offset: u64::from_be_bytes(off),
            size: u32::from_be_bytes(size),
            tags_code: i64::from_be_bytes(tag),
        };
        // A zero size marks a slot never written (files are zero-filled).
        (e.size > 0).then_some(e)
    }
}

impl CqEntry {
    /// Decodes one entry from the first [`CQ_STORE_UNIT_SIZE`] bytes of `buf`: `None` when
    /// `buf` is shorter than an entry or the slot was never written (size 0).
    pub fn from_bytes(buf: &[u8]) -> Option<CqEntry> {
        Self::decode(buf)
    }
}

/// One consume queue.
#[derive(Debug)]
pub struct ConsumeQueue {
    topic: String,
    queue_id: u32,
    dir: PathBuf,
    segment_size: usize,
    segments: RwLock<Vec<Arc<MappedFile>>>,
    /// Lowest readable queue offset (moves up with retention).
    min_offset: AtomicU64,
    /// Next queue offset to be written.
    max_offset: AtomicU64,
}

impl ConsumeQueue {
    /// Opens the queue stored under `dir`, creating the folder if needed, and finds its end
    /// from the last segment's last written entry.
    pub fn open(dir: PathBuf, topic: &str, queue_id: u32, segment_size: usize) -> Result<Self> {
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            if let Some(start) = entry.file_name().to_str().and_then(parse_segment_name) {
                found.push((start, entry.path()));
            }
        }
        found.sort();
        let mut segments = Vec::with_capacity(found.len());
        for (start, path) in found {
            if start % segment_size as u64 != 0 {
                return Err(Error::BadFile {
                    path,
                    reason: format!("not aligned to the consume-queue segment size {segment_size}"),
                });
            }
            let seg = MappedFile::open(&path, start, segment_size)?;
            seg.set_wrote(segment_size);
            seg.set_flushed(segment_size);
            segments.push(Arc::new(seg));
        }
        let cq = ConsumeQueue {
            topic: topic.to_owned(),
            queue_id,
            dir,
            segment_size,
            segments: RwLock::new(segments),
            min_offset: AtomicU64::new(0),
            max_offset: AtomicU64::new(0),
        };
        cq.find_bounds();
        Ok(cq)
    }

    /// Topic of this queue.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Queue id.
    pub fn queue_id(&self) -> u32 {
        self.queue_id
    }

    fn unit(&self) -> u64 {
        CQ_STORE_UNIT_SIZE as u64
    }

    /// Sets min and max from the files: the last written entry of the last segment, and the
    /// first written entry of the first.
    fn find_bounds(&self) {
        let segs = self.segments.read();
        let (Some(first), Some(last)) = (segs.first(), segs.last()) else {
            return;
        };
        // SAFETY: called at open, before the queue is shared.
        let end = (0..self.segment_size / CQ_STORE_UNIT_SIZE)
            .rev()
            .find(|i| {
                let bytes =
                    unsafe { last.slice_unpublished(i * CQ_STORE_UNIT_SIZE, CQ_STORE_UNIT_SIZE) };
                bytes.and_then(CqEntry::decode).is_some()
            })
            .map(|i| (i + 1) * CQ_STORE_UNIT_SIZE)
            .unwrap_or(0);
        last.set_wrote(end);
        last.set_flushed(end);
        let max = (last.from_offset() + end as u64) / self.unit();
        let start = (0..first.wrote() / CQ_STORE_UNIT_SIZE)
            .find(|i| {
                first
                    .slice(i * CQ_STORE_UNIT_SIZE, CQ_STORE_UNIT_SIZE)
                    .and_then(CqEntry::decode)
                    .is_some()
            })
            .map(|i| (first.from_offset() / self.unit()) + i as u64)
            .unwrap_or(max);
        self.max_offset.store(max, Ordering::Release);
        self.min_offset.store(start.min(max), Ordering::Release);
    }

    /// Lowest readable queue offset.
    pub fn min_offset(&self) -> u64 {
        self.min_offset.load(Ordering::Acquire)
    }

    /// Next queue offset to be written (the number of messages ever stored in the queue).
    pub fn max_offset(&self) -> u64 {
        self.max_offset.load(Ordering::Acquire)
    }

    /// The entry at queue offset `n`, if it is readable.
    pub fn get(&self, n: u64) -> Option<CqEntry> {
        if n < self.min_offset() || n >= self.max_offset() {
            return None;
        }
        let byte = n * self.unit();
        let segs = self.segments.read();
        let first = segs.first()?.from_offset();
        let idx = (byte.checked_sub(first)? / self.segment_size as u64) as usize;
        let seg = segs.get(idx)?;
        let pos = (byte - seg.from_offset()) as usize;
        seg.slice(pos, CQ_STORE_UNIT_SIZE).and_then(CqEntry::decode)
    }

    /// Stores the entry for queue offset `n`. An offset below the end that already holds
    /// this entry is skipped (a replay after recovery); one holding a different entry is an
    /// error, or with `replace` (recovery: the log is the truth) the queue is cut there and
    /// rewritten. Returns whether the entry was written. Only the store's writer may call it.
    pub fn put(&self, n: u64, entry: CqEntry, replace: bool) -> Result<bool> {
        let max = self.max_offset();
        if n < max {
            if self.get(n) == Some(entry) {
                return Ok(false);
            }
            if !replace {
                return Err(self.bad(format!("entry {n} disagrees with the commit log")));
            }
            tracing::warn!(topic = %self.topic, queue_id = self.queue_id, offset = n,
                "consume-queue entry disagrees with the commit log; rewriting from here");
            self.truncate_at(n)?;
        }
        let max = self.max_offset();
        let byte = n
            .checked_mul(self.unit())
            .ok_or_else(|| self.bad(format!("queue offset {n} is out of range")))?;
        let seg_start = byte - byte % self.segment_size as u64;
        if n > max && !self.segments.read().is_empty() {
            let last_end = self
                .segments
                .read()
                .last()
                .map(|s| s.from_offset() + s.size() as u64)
                .unwrap_or(0);
            if seg_start.saturating_sub(last_end) > 16 * self.segment_size as u64 {
                return Err(self.bad(format!("queue offset {n} is far past the end {max}")));
            }
            tracing::warn!(topic = %self.topic, queue_id = self.queue_id, expected = max, got = n,
                "consume queue gap: entries in between are unreadable");
        }
        let seg = self.segment_for_write(seg_start)?;
        let pos = (byte - seg_start) as usize;
        // SAFETY: single writer (store write lock) and `pos` is at or past the published end.
        let buf = unsafe { seg.slice_mut(pos, CQ_STORE_UNIT_SIZE) }
            .ok_or_else(|| self.bad(format!("entry position {pos} outside the segment")))?;
        entry.encode(buf);
        seg.set_wrote(pos + CQ_STORE_UNIT_SIZE);
        if n > max && self.min_offset() == max {
            // The queue was empty (new, or emptied by retention): it now starts here.
            self.min_offset.store(n, Ordering::Release);
        }
        self.max_offset.store(n + 1, Ordering::Release);
        Ok(true)
    }

    fn bad(&self, reason: String) -> Error {
        Error::BadFile {
            path: self.dir.clone(),
            reason,
        }
    }

    fn segment_for_write(&self, seg_start: u64) -> Result<Arc<MappedFile>> {
        if let Some(last) = self.segments.read().last() {
            if last.from_offset() == seg_start {
                return Ok(Arc::clone(last));
            }
        }
        let mut segs = self.segments.write();
        let mut next = match segs.last() {
            Some(last) => {
                last.set_wrote(last.size());
                last.from_offset() + self.segment_size as u64
            }
            None => seg_start,
        };
        while next <= seg_start {
            let seg = Arc::new(MappedFile::create(
                &self.dir,
                next,
                self.segment_size,
                false,
            )?);
            if next < seg_start {
                seg.set_wrote(self.segment_size);
            }
            segs.push(seg);
            next += self.segment_size as u64;
        }
        segs.last().cloned().ok_or_else(|| Error::BadFile {
            path: self.dir.clone(),
            reason: "no consume-queue segment after creation".into(),
        })
    }

    /// First queue offset in `[lo, hi)` whose entry satisfies `pred`, assuming `pred` is
    /// false then true along the queue (binary search). Returns `hi` if none does.
    fn partition_point(&self, lo: u64, hi: u64, mut pred: impl FnMut(&CqEntry) -> bool) -> u64 {
        let (mut lo, mut hi) = (lo, hi);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.get(mid) {
                Some(e) if !pred(&e) => lo = mid + 1,
                _ => hi = mid,
            }
        }
        lo
    }

    /// Drops every entry pointing at or past commit-log offset `phys` (recovery: those are
    /// replayed from the log, or the records they point at are gone). Only at open.
    pub fn truncate_from_physical(&self, phys: u64) -> Result<()> {
        let (min, max) = (self.min_offset(), self.max_offset());
        let cut = self.partition_point(min, max, |e| e.physical_offset >= phys);
        if cut == max {
            return Ok(());
        }
        self.truncate_at(cut)
    }

    /// Drops the entries from queue offset `cut` on. Only at open or under the writer's lock
    /// during recovery.
    fn truncate_at(&self, cut: u64) -> Result<()> {
        let byte = cut.saturating_mul(self.unit());
        let mut segs = self.segments.write();
        let mut keep = Vec::with_capacity(segs.len());
        let mut deleted = false;
        for seg in segs.drain(..) {
            let from = seg.from_offset();
            if from > byte {
                seg.delete()?;
                deleted = true;
                continue;
            }
            if byte < from + seg.size() as u64 {
                // SAFETY: only during recovery, before the queue is shared.
                unsafe { seg.truncate((byte - from) as usize) };
            }
            keep.push(seg);
        }
        *segs = keep;
        drop(segs);
        if deleted {
            sync_dir(&self.dir)?;
        }
        self.max_offset.store(cut, Ordering::Release);
        if self.min_offset() > cut {
            self.min_offset.store(cut, Ordering::Release);
        }
        Ok(())
    }

    /// Retention: forgets entries pointing below commit-log offset `min_phys` and deletes
    /// segments holding only such entries (never the last one).
    pub fn delete_below_physical(&self, min_phys: u64) -> Result<usize> {
        let (min, max) = (self.min_offset(), self.max_offset());
        let new_min = self.partition_point(min, max, |e| e.physical_offset >= min_phys);
        if new_min > min {
            self.min_offset.store(new_min, Ordering::Release);
        }
        let byte = new_min * self.unit();
        let victims: Vec<Arc<MappedFile>> = {
            let segs = self.segments.read();
            let n = segs.len().saturating_sub(1);
            segs.iter()
                .take(n)
                .take_while(|s| s.from_offset() + s.size() as u64 <= byte)
                .cloned()
                .collect()
        };
        if victims.is_empty() {
            return Ok(0);
        }
        self.segments.write().drain(..victims.len());
        for seg in &victims {
            seg.delete()?;
        }
        sync_dir(&self.dir)?;
        Ok(victims.len())
    }

    /// First queue offset whose message was stored at or after `timestamp` (ms), using
    /// `store_time` to read a record's store time; `max_offset` when none is.
    pub fn offset_for_timestamp(
        &self,
        timestamp: i64,
        mut store_time: impl FnMut(u64) -> Option<i64>,
    ) -> u64 {
        self.partition_point(self.min_offset(), self.max_offset(), |e| {
            store_time(e.physical_offset).is_none_or(|t| t >= timestamp)
        })
    }

    /// Flushes written entries. Callable from any thread.
    pub fn flush(&self) -> Result<()> {
        for seg in self
            .segments
            .read()
            .iter()
            .filter(|s| s.flushed() < s.wrote())
        {
            seg.flush()?;
        }
        Ok(())
    }

    /// The queue's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
