//! A consume queue: the per-(topic, queue id) index into the commit log.
//!
//! Owns fixed 20-byte entries (commit-log offset u64, size u32, tag hash i64, big-endian)
//! in their own segment files, so "message N of this queue" is one multiplication away. It
//! is derived data: the store can always rebuild it from the commit log, and this module
//! never reads or writes message bodies.
//!
//! # On disk
//! Segments are named by their first byte offset in the queue (20 digits) and hold up to
//! `mapped_file_size_consume_queue` bytes. Entries are appended with `pwrite`, so a file
//! is as long as its entries (a full disk is an `ENOSPC` error, not a fault) and a segment
//! shorter than the segment size is normal. Files written by earlier versions were created
//! at full size and zero-filled; a zero size marks an entry never written, and written
//! entries are contiguous, so their end is found by binary search.
//!
//! # Writes
//! A `pwrite` per 20-byte entry was a system call per message (about 1 µs here, a third of
//! a small append), so a queue keeps its newest entries, up to [`PENDING_MAX`] bytes of
//! one segment, in memory: reads find them there at once, and they reach the file in one
//! `pwrite` when the buffer fills, when a write lands elsewhere, or at the next flush.
//! Entries lost from the buffer in a crash are derived data: the checkpoint never counts
//! them as flushed, so recovery replays them from the commit log.
//!
//! # Cost
//! Opening a queue lists its folder and looks at the last segment's length: no entry is
//! read unless that segment is full-size (then O(log n) reads). Files are opened and mapped
//! on first use through the store's [`QueueFiles`] cache, which bounds how many are open.
//! The commit log's minimum is applied on first use too ([`ConsumeQueue::set_log_min`]),
//! so a clean start reads no queue at all.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};

use crate::storage::error::{Error, Result};
use crate::storage::mapped_file::{parse_segment_name, segment_name, sync_dir};
use crate::storage::queue_files::{QueueFiles, SegFile};

/// Bytes per consume-queue entry: commit-log offset (8), size (4), tag hash (8).
pub const CQ_STORE_UNIT_SIZE: usize = 20;

/// Most bytes of entries a queue keeps in memory before writing them out: about a page, so
/// a busy queue makes one `pwrite` per 204 entries, and 10,000 busy queues buffer 40 MB.
pub const PENDING_MAX: usize = 4096 - 4096 % CQ_STORE_UNIT_SIZE;

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
    /// The entry's 20 bytes as stored.
    pub fn to_bytes(&self) -> [u8; CQ_STORE_UNIT_SIZE] {
        let mut buf = [0u8; CQ_STORE_UNIT_SIZE];
        buf[0..8].copy_from_slice(&self.physical_offset.to_be_bytes());
        buf[8..12].copy_from_slice(&self.size.to_be_bytes());
        buf[12..20].copy_from_slice(&self.tags_code.to_be_bytes());
        buf
    }

    /// Parses the entry in the first 20 bytes of `buf`. `None` if `buf` is shorter or the
    /// slot was never written (a zero size: old files are zero-filled, and a hole in a file
    /// reads as zeros).
    pub fn from_bytes(buf: &[u8]) -> Option<CqEntry> {
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
        (e.size > 0).then_some(e)
    }
}

/// One segment of a queue: where it starts, and its open file if the cache still holds it.
#[derive(Debug)]
struct Segment {
    /// First byte offset (in the queue) the segment holds; also its file name.
    start: u64,
    /// Weak, so that the cache alone decides how long the file stays open.
    handle: Mutex<Weak<SegFile>>,
}

/// Entries put but not yet written to their file: consecutive ones from queue offset
/// `from`, all in one segment.
#[derive(Debug, Default)]
struct Pending {
    from: u64,
    bytes: Vec<u8>,
}

/// One consume queue.
#[derive(Debug)]
pub struct ConsumeQueue {
    topic: String,
    queue_id: u32,
    dir: PathBuf,
    segment_size: usize,
    files: Arc<QueueFiles>,
    /// Contiguous segments, oldest first.
    segments: RwLock<Vec<Arc<Segment>>>,
    /// Lowest readable queue offset (moves up with retention). Until `min_settled`, a
    /// lower bound: the commit log's minimum may not have been applied yet.
    min_offset: AtomicU64,
    /// Next queue offset to be written.
    max_offset: AtomicU64,
    /// Lowest commit-log offset still readable, as far as this queue was told.
    log_min: AtomicU64,
    /// Whether `min_offset` reflects `log_min` and skips a leading unwritten stretch.
    min_settled: AtomicBool,
    /// Serialises settling, so concurrent first readers read the file once.
    settle_lock: Mutex<()>,
    /// Queue offset below which entries are known durable.
    flushed: AtomicU64,
    /// Folders whose new entries (segment files, the queue's own folder) must be made
    /// durable by the next flush, before entries in them count as flushed.
    unsynced_dirs: Mutex<Vec<PathBuf>>,
    /// The newest entries, not yet in the file (see the module docs).
    pending: Mutex<Pending>,
    /// `Pending::from` while it holds entries, `u64::MAX` when empty, so that reads of
    /// older entries do not take the lock. Set before `max_offset` moves past the entries,
    /// and reset only after they are in the file.
    pending_from: AtomicU64,
}

/// Where a queue's last segment ends, from its length; for a full-size segment (an old
/// zero-filled one, or a full new one) from its entries, by binary search.
fn find_end(path: &Path, segment_size: usize, files: &QueueFiles) -> Result<usize> {
    let len = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    crate::storage::mapped_file::check_segment_len(path, len, segment_size)?;
    // A torn append may leave part of an entry: it was never published.
    let len = len as usize - len as usize % CQ_STORE_UNIT_SIZE;
    if len < segment_size {
        return Ok(len);
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let written = |i: usize| -> Result<bool> {
        let mut buf = [0u8; CQ_STORE_UNIT_SIZE];
        files.count_probe_read();
        file.read_exact_at(&mut buf, (i * CQ_STORE_UNIT_SIZE) as u64)
            .map_err(|e| Error::io(path, e))?;
        Ok(CqEntry::from_bytes(&buf).is_some())
    };
    let n = segment_size / CQ_STORE_UNIT_SIZE;
    if written(n - 1)? {
        return Ok(segment_size);
    }
    if !written(0)? {
        // Empty, or a queue that began inside this segment (entries after a zeroed head):
        // the binary search below needs written entries from the start, so walk back from
        // the end instead, a chunk at a time. Only old files of queues emptied by recovery
        // or created mid-segment get here.
        const CHUNK: usize = 3276 * CQ_STORE_UNIT_SIZE;
        let mut buf = vec![0u8; CHUNK];
        let mut end = segment_size;
        while end > 0 {
            let start = end.saturating_sub(CHUNK);
            let chunk = &mut buf[..end - start];
            files.count_probe_read();
            file.read_exact_at(chunk, start as u64)
                .map_err(|e| Error::io(path, e))?;
            if let Some(i) = chunk
                .chunks_exact(CQ_STORE_UNIT_SIZE)
                .rposition(|e| CqEntry::from_bytes(e).is_some())
            {
                return Ok(start + (i + 1) * CQ_STORE_UNIT_SIZE);
            }
            end = start;
        }
        return Ok(0);
    }
    // Entry 0 is written and entry n-1 is not: find the first unwritten one.
    let (mut lo, mut hi) = (1, n - 1);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if written(mid)? {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo * CQ_STORE_UNIT_SIZE)
}

/// Creates segment file `path`. An empty file already there is taken as the segment: it
/// holds no entry, and is what a creation that failed part-way (or was interrupted) leaves;
/// refusing it would stop the queue for good. A non-empty one is an error.
fn open_new_segment(path: &Path, segment_size: usize) -> Result<SegFile> {
    match SegFile::open(path, segment_size, true) {
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::AlreadyExists => {
            let existing = SegFile::open(path, segment_size, false)?;
            if existing.known_len() != 0 {
                return Err(Error::BadFile {
                    path: path.to_owned(),
                    reason: "a consume-queue segment that should be new already holds data".into(),
                });
            }
            tracing::warn!(path = %path.display(), "taking an empty file left where a new consume-queue segment goes");
            Ok(existing)
        }
        other => other,
    }
}

impl ConsumeQueue {
    /// Opens the queue stored under `dir`, creating the folder if needed. Lists the folder
    /// and finds the end from the last segment's length; opens no segment file and reads no
    /// entry unless that segment is full-size (see the module docs).
    pub fn open(
        dir: PathBuf,
        topic: &str,
        queue_id: u32,
        segment_size: usize,
        files: Arc<QueueFiles>,
    ) -> Result<Self> {
        crate::common::fs::disk_faults::pause_if_held(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            if let Some(start) = entry.file_name().to_str().and_then(parse_segment_name) {
                found.push(start);
            }
        }
        found.sort_unstable();
        let unit = CQ_STORE_UNIT_SIZE as u64;
        let (mut min, mut max) = (0, 0);
        if let (Some(&first), Some(&last)) = (found.first(), found.last()) {
            if let Some(bad) = found.iter().find(|s| **s % segment_size as u64 != 0) {
                return Err(Error::BadFile {
                    path: dir.join(segment_name(*bad)),
                    reason: format!("not aligned to the consume-queue segment size {segment_size}"),
                });
            }
            let end = find_end(&dir.join(segment_name(last)), segment_size, &files)?;
            max = (last + end as u64) / unit;
            min = (first / unit).min(max);
        }
        let segments = found
            .into_iter()
            .map(|start| {
                Arc::new(Segment {
                    start,
                    handle: Mutex::new(Weak::new()),
                })
            })
            .collect();
        Ok(ConsumeQueue {
            topic: topic.to_owned(),
            queue_id,
            dir,
            segment_size,
            files,
            segments: RwLock::new(segments),
            min_offset: AtomicU64::new(min),
            max_offset: AtomicU64::new(max),
            log_min: AtomicU64::new(0),
            min_settled: AtomicBool::new(min == max),
            settle_lock: Mutex::new(()),
            flushed: AtomicU64::new(max),
            unsynced_dirs: Mutex::new(Vec::new()),
            pending: Mutex::new(Pending::default()),
            pending_from: AtomicU64::new(u64::MAX),
        })
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

    /// Lowest readable queue offset.
    pub fn min_offset(&self) -> u64 {
        self.settle_min();
        self.min_offset.load(Ordering::Acquire)
    }

    /// Next queue offset to be written (the number of messages ever stored in the queue).
    pub fn max_offset(&self) -> u64 {
        self.max_offset.load(Ordering::Acquire)
    }

    /// Tells the queue that the commit log now starts at `log_min`, without reading
    /// anything: entries pointing below it are dropped from view on first use.
    pub fn set_log_min(&self, log_min: u64) {
        if self.log_min.fetch_max(log_min, Ordering::AcqRel) < log_min {
            self.min_settled.store(false, Ordering::Release);
        }
    }

    /// Applies the pending commit-log minimum and skips a leading unwritten stretch. One
    /// read in the usual case, O(log n) when the minimum cuts into the queue. On an I/O
    /// error the minimum stays as it was, and the next use tries again.
    fn settle_min(&self) {
        if self.min_settled.load(Ordering::Acquire) {
            return;
        }
        let _settling = self.settle_lock.lock();
        if self.min_settled.load(Ordering::Acquire) {
            return;
        }
        let log_min = self.log_min.load(Ordering::Acquire);
        let (min, max) = (
            self.min_offset.load(Ordering::Acquire),
            self.max_offset.load(Ordering::Acquire),
        );
        let settled = (|| -> Result<u64> {
            let mut from = min;
            if min < max && self.read_entry(min)?.is_none() {
                // A queue that began inside its first segment: find its first entry.
                from = self.partition(min, max, |e| e.is_some())?;
            }
            match self.read_entry(from)? {
                Some(e) if e.physical_offset >= log_min => Ok(from),
                _ => self.partition(from, max, |e| {
                    e.is_none_or(|e| e.physical_offset >= log_min)
                }),
            }
        })();
        match settled {
            Ok(new_min) => {
                self.min_offset.fetch_max(new_min, Ordering::AcqRel);
                self.min_settled.store(true, Ordering::Release);
            }
            Err(e) => {
                tracing::error!(topic = %self.topic, queue_id = self.queue_id, error = %e,
                    "cannot read the consume queue to find its first entry");
            }
        }
    }

    /// The entry at queue offset `n`, if it is readable.
    pub fn get(&self, n: u64) -> Option<CqEntry> {
        if n < self.min_offset() || n >= self.max_offset() {
            return None;
        }
        match self.read_entry(n) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(topic = %self.topic, queue_id = self.queue_id, offset = n,
                    error = %e, "cannot read consume-queue entry");
                None
            }
        }
    }

    /// The segment holding byte `byte` of the queue.
    fn segment_at(&self, byte: u64) -> Option<Arc<Segment>> {
        let segs = self.segments.read();
        let first = segs.first()?.start;
        let idx = byte.checked_sub(first)? / self.segment_size as u64;
        let seg = segs.get(usize::try_from(idx).ok()?)?;
        (byte - seg.start < self.segment_size as u64).then(|| Arc::clone(seg))
    }

    /// The open file of `seg`, opening it (and taking it into the cache) if it is not.
    fn file(&self, seg: &Segment) -> Result<Arc<SegFile>> {
        let mut handle = seg.handle.lock();
        if let Some(f) = handle.upgrade() {
            QueueFiles::touch(&f);
            return Ok(f);
        }
        let path = self.dir.join(segment_name(seg.start));
        let f = Arc::new(SegFile::open(&path, self.segment_size, false)?);
        *handle = Arc::downgrade(&f);
        self.files.admit(Arc::clone(&f));
        Ok(f)
    }

    /// Reads entry `n` without checking the queue's bounds: `None` if never written.
    fn read_entry(&self, n: u64) -> Result<Option<CqEntry>> {
        if n >= self.pending_from.load(Ordering::Acquire) {
            let p = self.pending.lock();
            if !p.bytes.is_empty() && n >= p.from {
                let at = ((n - p.from) * self.unit()) as usize;
                return Ok(p
                    .bytes
                    .get(at..at + CQ_STORE_UNIT_SIZE)
                    .and_then(CqEntry::from_bytes));
            }
            // Written out meanwhile: it is in the file now.
        }
        let Some(byte) = n.checked_mul(self.unit()) else {
            return Ok(None);
        };
        let Some(seg) = self.segment_at(byte) else {
            return Ok(None);
        };
        let mut buf = [0u8; CQ_STORE_UNIT_SIZE];
        let found = self
            .file(&seg)?
            .read_at((byte - seg.start) as usize, &mut buf)?;
        Ok(found.then(|| CqEntry::from_bytes(&buf)).flatten())
    }

    /// Stores the entry for queue offset `n`. An offset below the end that already holds
    /// this entry is skipped (a replay after recovery); one holding a different entry is an
    /// error, or with `replace` (recovery: the log is the truth) the queue is cut there and
    /// rewritten. Returns whether the entry was written. Only the store's writer may call it.
    /// The entry is readable by [`ConsumeQueue::get`] as soon as this returns.
    pub fn put(&self, n: u64, entry: CqEntry, replace: bool) -> Result<bool> {
        crate::common::fs::disk_faults::injected_failure(&self.dir)
            .map_err(|e| Error::io(&self.dir, e))?;
        self.settle_min();
        let max = self.max_offset();
        if n < max {
            if self.read_entry(n)? == Some(entry) {
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
        if n > max {
            let last_end = self
                .segments
                .read()
                .last()
                .map(|s| s.start + self.segment_size as u64);
            if let Some(last_end) = last_end {
                if seg_start.saturating_sub(last_end) > 16 * self.segment_size as u64 {
                    return Err(self.bad(format!("queue offset {n} is far past the end {max}")));
                }
                tracing::warn!(topic = %self.topic, queue_id = self.queue_id, expected = max,
                    got = n, "consume queue gap: entries in between are unreadable");
            }
        }
        self.segment_for_write(seg_start)?;
        let mut p = self.pending.lock();
        let next_pending = p.from + (p.bytes.len() / CQ_STORE_UNIT_SIZE) as u64;
        let same_segment =
            p.from * self.unit() / self.segment_size as u64 == byte / self.segment_size as u64;
        if !p.bytes.is_empty()
            && (n != next_pending || !same_segment || p.bytes.len() >= PENDING_MAX)
        {
            self.write_out(&mut p)?;
        }
        if p.bytes.is_empty() {
            p.from = n;
            self.pending_from.store(n, Ordering::Release);
        }
        p.bytes.extend_from_slice(&entry.to_bytes());
        drop(p);
        if n > max && self.min_offset.load(Ordering::Acquire) == max {
            // The queue was empty (new, or emptied by retention): it now starts here.
            self.min_offset.store(n, Ordering::Release);
        }
        self.max_offset.store(n + 1, Ordering::Release);
        Ok(true)
    }

    /// Writes the pending entries to their file with one `pwrite`. On failure they stay
    /// pending (and readable), and the error names the file.
    fn write_out(&self, p: &mut Pending) -> Result<()> {
        if p.bytes.is_empty() {
            return Ok(());
        }
        let byte = p.from * self.unit();
        let seg = self
            .segment_at(byte)
            .ok_or_else(|| self.bad(format!("no segment for pending entry {}", p.from)))?;
        self.file(&seg)?
            .write_at((byte - seg.start) as usize, &p.bytes)?;
        // Readers that still see the old mark find the buffer empty and read the file.
        self.pending_from.store(u64::MAX, Ordering::Release);
        // Dropped rather than cleared: an idle queue keeps no buffer.
        p.bytes = Vec::new();
        Ok(())
    }

    fn bad(&self, reason: String) -> Error {
        Error::BadFile {
            path: self.dir.clone(),
            reason,
        }
    }

    /// The segment starting at `seg_start`, creating it (and any skipped ones before it,
    /// left empty) if it is past the last one.
    fn segment_for_write(&self, seg_start: u64) -> Result<Arc<Segment>> {
        if let Some(last) = self.segments.read().last() {
            if last.start == seg_start {
                return Ok(Arc::clone(last));
            }
        }
        let mut segs = self.segments.write();
        let mut next = match segs.last() {
            Some(last) => last.start + self.segment_size as u64,
            None => seg_start,
        };
        if next > seg_start {
            return Err(self.bad(format!(
                "write into segment {seg_start}, behind the last one {}",
                next - self.segment_size as u64
            )));
        }
        while next <= seg_start {
            let path = self.dir.join(segment_name(next));
            let f = Arc::new(open_new_segment(&path, self.segment_size)?);
            segs.push(Arc::new(Segment {
                start: next,
                handle: Mutex::new(Arc::downgrade(&f)),
            }));
            self.files.admit(f);
            next += self.segment_size as u64;
        }
        drop(segs);
        self.sync_dir_on_flush(self.dir.clone());
        self.segments
            .read()
            .last()
            .cloned()
            .ok_or_else(|| self.bad("no consume-queue segment after creation".into()))
    }

    /// Whether storing entries up to queue offset `last` would have to create a segment
    /// file. No system call.
    pub fn needs_segment_for(&self, last: u64) -> bool {
        let byte = last.saturating_mul(self.unit());
        let seg_start = byte - byte % self.segment_size as u64;
        self.segments
            .read()
            .last()
            .is_none_or(|s| s.start < seg_start)
    }

    /// Creates the segment files entries up to queue offset `last` need. Blocking; only the
    /// store's writer calls it, off the event loop.
    pub fn create_segments_for(&self, last: u64) -> Result<()> {
        let byte = last
            .checked_mul(self.unit())
            .ok_or_else(|| self.bad(format!("queue offset {last} is out of range")))?;
        if !self.needs_segment_for(last) {
            return Ok(());
        }
        self.segment_for_write(byte - byte % self.segment_size as u64)
            .map(|_| ())
    }

    /// Has the next flush make `dir` durable first (a new file or folder in it).
    pub fn sync_dir_on_flush(&self, dir: PathBuf) {
        let mut dirs = self.unsynced_dirs.lock();
        if !dirs.contains(&dir) {
            dirs.push(dir);
        }
    }

    /// First queue offset in `[lo, hi)` whose entry (`None`: never written) satisfies
    /// `pred`, assuming `pred` is false then true along the queue (binary search). Returns
    /// `hi` if none does.
    fn partition(
        &self,
        lo: u64,
        hi: u64,
        mut pred: impl FnMut(Option<CqEntry>) -> bool,
    ) -> Result<u64> {
        let (mut lo, mut hi) = (lo, hi);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if pred(self.read_entry(mid)?) {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        Ok(lo)
    }

    /// Drops every entry pointing at or past commit-log offset `phys` (recovery: those are
    /// replayed from the log, or the records they point at are gone). Only at open.
    pub fn truncate_from_physical(&self, phys: u64) -> Result<()> {
        self.settle_min();
        let (min, max) = (self.min_offset(), self.max_offset());
        let cut = self.partition(min, max, |e| e.is_none_or(|e| e.physical_offset >= phys))?;
        if cut == max {
            return Ok(());
        }
        self.truncate_at(cut)
    }

    /// Drops the entries from queue offset `cut` on. Only at open or under the writer's lock
    /// during recovery.
    fn truncate_at(&self, cut: u64) -> Result<()> {
        let byte = cut.saturating_mul(self.unit());
        {
            let mut p = self.pending.lock();
            if cut <= p.from {
                p.bytes = Vec::new();
                self.pending_from.store(u64::MAX, Ordering::Release);
            } else {
                let keep = ((cut - p.from) * self.unit()) as usize;
                p.bytes.truncate(keep);
            }
        }
        let mut segs = self.segments.write();
        let mut keep = Vec::with_capacity(segs.len());
        let mut deleted = false;
        for seg in segs.drain(..) {
            if seg.start > byte {
                self.delete_segment(&seg)?;
                deleted = true;
                continue;
            }
            if byte < seg.start + self.segment_size as u64 {
                self.file(&seg)?.truncate((byte - seg.start) as usize)?;
            }
            keep.push(seg);
        }
        *segs = keep;
        drop(segs);
        if deleted {
            sync_dir(&self.dir)?;
        }
        self.max_offset.store(cut, Ordering::Release);
        self.flushed.fetch_min(cut, Ordering::AcqRel);
        if self.min_offset.load(Ordering::Acquire) > cut {
            self.min_offset.store(cut, Ordering::Release);
        }
        Ok(())
    }

    fn delete_segment(&self, seg: &Segment) -> Result<()> {
        if let Some(f) = seg.handle.lock().upgrade() {
            self.files.forget(&f);
        }
        let path = self.dir.join(segment_name(seg.start));
        std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))
    }

    /// Retention: forgets entries pointing below commit-log offset `min_phys` and deletes
    /// segments holding only such entries (never the last one).
    pub fn delete_below_physical(&self, min_phys: u64) -> Result<usize> {
        self.set_log_min(min_phys);
        let byte = self.min_offset().saturating_mul(self.unit());
        let victims: Vec<Arc<Segment>> = {
            let segs = self.segments.read();
            let n = segs.len().saturating_sub(1);
            segs.iter()
                .take(n)
                .take_while(|s| s.start + self.segment_size as u64 <= byte)
                .cloned()
                .collect()
        };
        if victims.is_empty() {
            return Ok(0);
        }
        self.segments.write().drain(..victims.len());
        for seg in &victims {
            self.delete_segment(seg)?;
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
        let (min, max) = (self.min_offset(), self.max_offset());
        let found = self.partition(min, max, |e| {
            e.is_none_or(|e| store_time(e.physical_offset).is_none_or(|t| t >= timestamp))
        });
        found.unwrap_or_else(|e| {
            tracing::error!(topic = %self.topic, queue_id = self.queue_id, error = %e,
                "cannot read the consume queue to search by time");
            max
        })
    }

    /// Makes written entries durable (and the folders they were created in). Callable from
    /// any thread; a queue with nothing new costs two atomic loads.
    pub fn flush(&self) -> Result<()> {
        let max = self.max_offset();
        let done = self.flushed.load(Ordering::Acquire);
        if done >= max {
            return Ok(());
        }
        self.write_out(&mut self.pending.lock())?;
        let dirs = std::mem::take(&mut *self.unsynced_dirs.lock());
        for (i, dir) in dirs.iter().enumerate() {
            if let Err(e) = sync_dir(dir) {
                self.unsynced_dirs.lock().extend(dirs[i..].iter().cloned());
                return Err(e);
            }
        }
        let (from, to) = (done * self.unit(), max * self.unit());
        let segs: Vec<Arc<Segment>> = self
            .segments
            .read()
            .iter()
            .filter(|s| s.start < to && s.start + self.segment_size as u64 > from)
            .cloned()
            .collect();
        for seg in segs {
            match seg.handle.lock().upgrade() {
                Some(f) => f.sync()?,
                None => {
                    // Evicted: sync through a short-lived descriptor rather than take the
                    // file back into the cache (fsync acts on the file, not the descriptor).
                    let path = self.dir.join(segment_name(seg.start));
                    std::fs::File::open(&path)
                        .and_then(|f| f.sync_data())
                        .map_err(|e| Error::io(&path, e))?;
                }
            }
        }
        self.flushed.fetch_max(max, Ordering::AcqRel);
        Ok(())
    }

    /// The queue's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests;
