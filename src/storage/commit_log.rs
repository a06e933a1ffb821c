//! The commit log: one append-only byte log for every topic of a broker, split into
//! fixed-size segment files named by their starting offset.
//!
//! Owns the segment list, appends (one writer at a time, serialised by the store), zero-copy
//! reads, flushing, the recovery scan and whole-segment deletion. It never interprets what
//! the records mean for queues or keys: that is the dispatcher's job in `store`. The
//! recovery walk and the clean-start tail check live in `scan`.
//!
//! # Invariants
//! - Segments are contiguous: segment i+1 starts where segment i ends.
//! - A record never spans two segments; a segment's unused tail is closed by a blank marker.
//! - The end offset only grows, except when recovery truncates a torn tail at open.

#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::storage::error::{Error, Result};
use crate::storage::mapped_file::{parse_segment_name, sync_dir, MappedFile};
use crate::storage::record::{self, Peek, END_FILE_MIN_BLANK_LENGTH};
use crate::storage::warmer;

mod scan;

pub use scan::{Damage, ScanOutcome};

/// The commit log.
#[derive(Debug)]
pub struct CommitLog {
    dir: PathBuf,
    segment_size: usize,
    warm: bool,
    segments: RwLock<Vec<Arc<MappedFile>>>,
    /// The next segment, being created and read ahead by a background thread so that a roll
    /// does not stall appends (a page not yet in the page cache costs several times one that is).
    prepared: Mutex<Option<Prepared>>,
    /// Records of one append are encoded here and written with one `pwrite`. Only the
    /// writer (under the store's write lock) takes it, so it is never contended.
    staging: Mutex<Vec<u8>>,
    /// Everything below this offset is on disk.
    flushed_offset: AtomicU64,
    /// Where the last record written starts ([`NO_RECORD`] for none), kept in the
    /// checkpoint so a clean start can check the last record without a scan.
    last_record: AtomicU64,
}

/// [`CommitLog::last_record`]'s "none".
const NO_RECORD: u64 = u64::MAX;

#[derive(Debug)]
struct Prepared {
    start: u64,
    /// The new segment arrives here as soon as its file exists and its blocks are reserved;
    /// the thread then goes on reading its pages into the page cache.
    ready: std::sync::mpsc::Receiver<Result<Arc<MappedFile>>>,
    /// What `ready` delivered, once a readiness check received it.
    got: Option<Result<Arc<MappedFile>>>,
}

impl Prepared {
    /// Whether the segment (or its failure) has arrived; never waits.
    fn is_ready(&mut self) -> bool {
        if self.got.is_none() {
            match self.ready.try_recv() {
                Ok(r) => self.got = Some(r),
                Err(std::sync::mpsc::TryRecvError::Empty) => return false,
                // The thread died without an answer: creating in line is all that is left.
                Err(std::sync::mpsc::TryRecvError::Disconnected) => return false,
            }
        }
        true
    }

    /// The segment, waiting for it if it has not arrived.
    fn take(self) -> std::result::Result<Result<Arc<MappedFile>>, std::sync::mpsc::RecvError> {
        match self.got {
            Some(r) => Ok(r),
            None => self.ready.recv(),
        }
    }
}

impl CommitLog {
    /// Opens (or creates) the log in `dir`. Segment positions are unknown until the store
    /// calls [`CommitLog::set_end`] after deciding where the log ends.
    pub fn open(dir: &Path, segment_size: usize, warm: bool) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            let name = entry.file_name();
            let Some(start) = name.to_str().and_then(parse_segment_name) else {
                tracing::warn!(file = ?entry.path(), "ignoring a file that is not a commit-log segment");
                continue;
            };
            found.push((start, entry.path()));
        }
        found.sort();
        let mut segments = Vec::with_capacity(found.len());
        let mut expect: Option<u64> = None;
        for (start, path) in found {
            if start % segment_size as u64 != 0 || expect.is_some_and(|e| e != start) {
                return Err(Error::BadFile {
                    path,
                    reason: format!(
                        "segment does not follow its predecessor (expected start {}, segment size {segment_size})",
                        expect.unwrap_or(0)
                    ),
                });
            }
            segments.push(Arc::new(MappedFile::open(&path, start, segment_size)?));
            expect = Some(start + segment_size as u64);
        }
        Ok(CommitLog {
            dir: dir.to_owned(),
            segment_size,
            warm,
            segments: RwLock::new(segments),
            flushed_offset: AtomicU64::new(0),
            last_record: AtomicU64::new(NO_RECORD),
            prepared: Mutex::new(None),
            staging: Mutex::new(Vec::new()),
        })
    }

    /// Segment size in bytes.
    pub fn segment_size(&self) -> usize {
        self.segment_size
    }

    /// A snapshot of the segment list.
    pub fn segments(&self) -> Vec<Arc<MappedFile>> {
        self.segments.read().clone()
    }

    /// Lowest readable offset (start of the oldest segment kept).
    pub fn min_offset(&self) -> u64 {
        self.segments
            .read()
            .first()
            .map(|s| s.from_offset())
            .unwrap_or(0)
    }

    /// Offset the next record will be written at (if it fits in the active segment).
    pub fn max_offset(&self) -> u64 {
        self.segments
            .read()
            .last()
            .map(|s| s.from_offset() + s.wrote() as u64)
            .unwrap_or(0)
    }

    /// Everything below this offset is on disk.
    pub fn flushed_offset(&self) -> u64 {
        self.flushed_offset.load(Ordering::Acquire)
    }

    /// Start offset of the segment that holds `offset`.
    pub fn segment_start(&self, offset: u64) -> u64 {
        offset - offset % self.segment_size as u64
    }

    /// Appends one record of `len` bytes, encoded by `fill(buf, physical_offset)`, rolling to
    /// a new segment first when it does not fit. Same contract as [`Self::append_chunk`].
    pub(crate) fn append_one(&self, len: usize, fill: impl FnOnce(&mut [u8], u64)) -> Result<u64> {
        let mut fill = Some(fill);
        let offsets = self.append_chunk(&[len], |_, buf, phys| {
            if let Some(f) = fill.take() {
                f(buf, phys);
            }
        })?;
        offsets.first().copied().ok_or_else(|| Error::BadFile {
            path: self.dir.clone(),
            reason: format!("record of {len} bytes was not written"),
        })
    }

    /// Appends as many of the records whose sizes are `lens` as fit in one segment, in
    /// order and with one write, rolling to a new segment first (closing the old one with a
    /// blank marker) when not even the first fits. `fill(i, buf, physical_offset)` encodes
    /// record `i` into `buf`. Returns the physical offset of each record written: at least
    /// one, and the caller repeats with the rest. Nothing is published unless the write
    /// succeeded. The caller must serialise appends (the store's write lock) and check each
    /// size against the segment size.
    pub(crate) fn append_chunk(
        &self,
        lens: &[usize],
        mut fill: impl FnMut(usize, &mut [u8], u64),
    ) -> Result<Vec<u64>> {
        let Some(&first) = lens.first() else {
            return Ok(Vec::new());
        };
        let seg = self.writable_segment(first)?;
        let start = seg.wrote();
        let mut pos = start;
        let mut staging = self.staging.lock();
        staging.clear();
        let mut offsets = Vec::with_capacity(lens.len());
        for (i, &len) in lens.iter().enumerate() {
            if seg.size() - pos < len + END_FILE_MIN_BLANK_LENGTH {
                break;
            }
            let at = staging.len();
            staging.resize(at + len, 0);
            let phys = seg.from_offset() + pos as u64;
            fill(i, &mut staging[at..], phys);
            offsets.push(phys);
            pos += len;
        }
        if offsets.is_empty() {
            return Err(Error::BadFile {
                path: seg.path().to_owned(),
                reason: format!("record of {first} bytes does not fit at {start}"),
            });
        }
        let written = seg.write_at(start, &staging);
        if staging.capacity() > STAGING_KEEP {
            // One huge append must not pin its buffer for the life of the log.
            *staging = Vec::new();
        }
        written?;
        seg.set_wrote(pos);
        if let Some(&last) = offsets.last() {
            self.last_record.store(last, Ordering::Release);
        }
        Ok(offsets)
    }

    /// Returns the active segment if `len` bytes plus a blank marker fit, else closes it and
    /// creates the next one.
    fn writable_segment(&self, len: usize) -> Result<Arc<MappedFile>> {
        let last = self.segments.read().last().cloned();
        match last {
            Some(seg) if seg.remaining() >= len + END_FILE_MIN_BLANK_LENGTH => Ok(seg),
            Some(seg) => {
                self.close_segment(&seg)?;
                self.create_segment(seg.from_offset() + self.segment_size as u64)
            }
            None => self.create_segment(0),
        }
    }

    fn close_segment(&self, seg: &MappedFile) -> Result<()> {
        let pos = seg.wrote();
        let rest = seg.size() - pos;
        if rest >= END_FILE_MIN_BLANK_LENGTH {
            seg.write_at(pos, &record::blank_marker(rest))?;
        }
        seg.set_wrote(seg.size());
        Ok(())
    }

    fn create_segment(&self, start: u64) -> Result<Arc<MappedFile>> {
        let prepared = self.prepared.lock().take();
        if prepared.as_ref().is_none_or(|p| p.start != start) {
            self.remove_stray(start)?;
        }
        let seg = match prepared.map(|p| (p.start, p.take())) {
            Some((at, Ok(Ok(seg)))) if at == start => seg,
            Some((at, received)) => {
                if let Ok(Ok(stray)) = received {
                    stray.delete()?;
                }
                tracing::warn!(
                    at,
                    start,
                    "pre-allocated segment unusable; creating one in line"
                );
                self.new_segment(start)?
            }
            None => self.new_segment(start)?,
        };
        self.segments.write().push(Arc::clone(&seg));
        self.prepare(start + self.segment_size as u64);
        Ok(seg)
    }

    /// Creates the segment at `start` on a background thread, which hands it over as soon as
    /// the file exists (blocks reserved) and then, with warming on, keeps its pages read
    /// in ahead of the writer (see [`warmer::keep_warm`]). `None` if no thread could start.
    fn spawn_segment(
        &self,
        start: u64,
    ) -> Option<std::sync::mpsc::Receiver<Result<Arc<MappedFile>>>> {
        let (dir, size, warm) = (self.dir.clone(), self.segment_size, self.warm);
        let (tx, rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("actimq-prealloc".into())
            .spawn(move || {
                let created = MappedFile::create(&dir, start, size, warm).map(Arc::new);
                let seg = created.as_ref().ok().map(Arc::downgrade);
                let _ = tx.send(created);
                if let (Some(seg), true) = (seg, warm) {
                    warmer::keep_warm(seg);
                }
            });
        match spawned {
            Ok(_) => Some(rx),
            Err(e) => {
                tracing::warn!(error = %e, "cannot start a segment thread");
                None
            }
        }
    }

    /// A segment now: waits for its file (milliseconds), not for its warming.
    fn new_segment(&self, start: u64) -> Result<Arc<MappedFile>> {
        match self.spawn_segment(start) {
            Some(ready) => ready
                .recv()
                .map_err(|_| Error::io(&self.dir, std::io::Error::other("segment thread died")))?,
            None => Ok(Arc::new(MappedFile::create(
                &self.dir,
                start,
                self.segment_size,
                self.warm,
            )?)),
        }
    }

    /// Starts preparing the segment at `start` in the background (when warming is on).
    fn prepare(&self, start: u64) {
        if self.warm {
            if let Some(ready) = self.spawn_segment(start) {
                *self.prepared.lock() = Some(Prepared {
                    start,
                    ready,
                    got: None,
                });
            }
        }
    }

    /// Pre-allocates the segment after the active one, and keeps the active one warm ahead
    /// of the writer; called once recovery settled the end.
    pub fn prepare_next(&self) {
        let last = self.segments.read().last().cloned();
        if let (Some(seg), true) = (&last, self.warm) {
            let seg = Arc::downgrade(seg);
            let spawned = std::thread::Builder::new()
                .name("actimq-prealloc".into())
                .spawn(move || warmer::keep_warm(seg));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "cannot start a segment thread; pages fault in on use");
            }
        }
        let next = last.map(|s| s.from_offset() + s.size() as u64).unwrap_or(0);
        self.prepare(next);
    }

    /// Waits for a pending pre-allocation and removes its file (at shutdown: an unused
    /// segment past the end would only be deleted again by the next open).
    pub fn discard_prepared(&self) -> Result<()> {
        let prepared = self.prepared.lock().take();
        if let Some(p) = prepared {
            if let Ok(Ok(seg)) = p.take() {
                seg.delete()?;
                sync_dir(&self.dir)?;
            }
        }
        Ok(())
    }

    /// Whether appending `bytes` more now would have to create a segment file, or wait for
    /// the pre-allocation thread: true when they do not fit in the active segment and the
    /// next one is not ready. Never waits and makes no system call.
    pub(crate) fn roll_would_block(&self, bytes: usize) -> bool {
        let next = match self.segments.read().last() {
            Some(seg) if seg.remaining() >= bytes + END_FILE_MIN_BLANK_LENGTH => return false,
            Some(seg) => seg.from_offset() + seg.size() as u64,
            None => 0,
        };
        match self.prepared.lock().as_mut() {
            Some(p) if p.start == next => !p.is_ready(),
            _ => true,
        }
    }

    /// Makes the segment after the active one ready for [`Self::append_chunk`]: waits for
    /// the pre-allocation thread, or creates the file here if none is preparing it. Blocking;
    /// the caller runs it on a blocking thread while no append is under way.
    pub(crate) fn prepare_next_segment(&self) -> Result<()> {
        let next = match self.segments.read().last() {
            Some(seg) => seg.from_offset() + seg.size() as u64,
            None => 0,
        };
        // Taken out so that the lock is not held while waiting: a readiness check from the
        // event loop must never wait on this thread.
        let pending = self.prepared.lock().take();
        let got = match pending {
            Some(p) if p.start == next => match p.take() {
                Ok(Ok(seg)) => Ok(seg),
                _ => self.create_unprepared(next),
            },
            Some(p) => {
                if let Ok(Ok(stray)) = p.take() {
                    stray.delete()?;
                }
                self.create_unprepared(next)
            }
            None => self.create_unprepared(next),
        };
        let seg = got?;
        let (tx, ready) = std::sync::mpsc::channel();
        let _ = tx.send(Ok(Arc::clone(&seg)));
        *self.prepared.lock() = Some(Prepared {
            start: next,
            ready,
            got: Some(Ok(seg)),
        });
        Ok(())
    }

    /// A file left at segment `start`'s name by an attempt that failed part-way (a full
    /// disk) is not part of the log: removes it so this attempt does not fail with "exists".
    fn remove_stray(&self, start: u64) -> Result<()> {
        let stray = self
            .dir
            .join(crate::storage::mapped_file::segment_name(start));
        if stray.exists() {
            tracing::warn!(path = %stray.display(), "removing a segment file left by a failed creation");
            std::fs::remove_file(&stray).map_err(|e| Error::io(&stray, e))?;
        }
        Ok(())
    }

    /// Creates segment `start` on this thread, first removing a file a failed attempt left.
    fn create_unprepared(&self, start: u64) -> Result<Arc<MappedFile>> {
        self.remove_stray(start)?;
        Ok(Arc::new(MappedFile::create(
            &self.dir,
            start,
            self.segment_size,
            self.warm,
        )?))
    }

    /// Closes the active segment with a blank marker so the next append starts a new one.
    /// Used when replaying a master's log, whose blank markers say where it rolled.
    pub(crate) fn roll(&self) -> Result<()> {
        match self.segments.read().last().cloned() {
            Some(seg) => self.close_segment(&seg),
            None => Ok(()),
        }
    }

    /// Zero-copy view of up to `len` published bytes at `offset`, never crossing a segment
    /// end (for shipping the log to a slave). Empty at the end of the log.
    pub fn read_available(&self, offset: u64, len: usize) -> Result<Bytes> {
        if offset == self.max_offset() {
            return Ok(Bytes::new());
        }
        let seg = self.locate(offset)?;
        let pos = (offset - seg.from_offset()) as usize;
        let len = len.min(seg.wrote().saturating_sub(pos));
        seg.bytes(pos, len).ok_or(Error::OffsetBeyondEnd {
            requested: offset,
            max: self.max_offset(),
        })
    }

    /// Zero-copy view of exactly `len` bytes at `offset`.
    pub fn read(&self, offset: u64, len: usize) -> Result<Bytes> {
        let seg = self.locate(offset)?;
        let pos = (offset - seg.from_offset()) as usize;
        seg.bytes(pos, len).ok_or(Error::OffsetBeyondEnd {
            requested: offset + len as u64,
            max: self.max_offset(),
        })
    }

    /// Zero-copy view of the whole record at `offset` (its size is read from the record).
    pub fn read_record(&self, offset: u64) -> Result<Bytes> {
        let seg = self.locate(offset)?;
        let pos = (offset - seg.from_offset()) as usize;
        let beyond = || Error::OffsetBeyondEnd {
            requested: offset,
            max: self.max_offset(),
        };
        let head = seg.slice(pos, 8).ok_or_else(beyond)?;
        match record::peek(head) {
            Ok(Peek::Message(len)) => seg.bytes(pos, len).ok_or_else(beyond),
            Ok(Peek::Blank) => Err(beyond()),
            Err(source) => Err(Error::CorruptRecord { offset, source }),
        }
    }

    fn locate(&self, offset: u64) -> Result<Arc<MappedFile>> {
        // One guard for the minimum and the lookup, so a concurrent retention run shows up
        // as "offset moved" and never as "beyond the end".
        let segs = self.segments.read();
        let min = segs.first().map(|s| s.from_offset()).unwrap_or(0);
        if offset < min {
            return Err(Error::OffsetMoved {
                requested: offset,
                min,
            });
        }
        let idx = ((offset - min) / self.segment_size as u64) as usize;
        segs.get(idx)
            .cloned()
            .ok_or_else(|| Error::OffsetBeyondEnd {
                requested: offset,
                max: segs
                    .last()
                    .map(|s| s.from_offset() + s.wrote() as u64)
                    .unwrap_or(0),
            })
    }

    /// Flushes every segment with unflushed bytes. Callable from any thread while the
    /// writer appends. Returns the offset below which everything is durable.
    pub fn flush(&self) -> Result<u64> {
        let from = self.flushed_offset();
        let segs = self.segments();
        let mut durable = from;
        for seg in segs
            .iter()
            .filter(|s| s.from_offset() + s.size() as u64 > from)
        {
            let flushed = seg.flush()?;
            durable = seg.from_offset() + flushed as u64;
            if flushed < seg.size() {
                break;
            }
        }
        self.flushed_offset.fetch_max(durable, Ordering::AcqRel);
        Ok(self.flushed_offset())
    }

    /// Start of the last record appended (or found by recovery), if any.
    pub fn last_record(&self) -> Option<u64> {
        match self.last_record.load(Ordering::Acquire) {
            NO_RECORD => None,
            at => Some(at),
        }
    }

    /// Records where the last record starts (recovery, after it settled the end).
    pub(crate) fn set_last_record(&self, at: Option<u64>) {
        self.last_record
            .store(at.unwrap_or(NO_RECORD), Ordering::Release);
    }

    /// Makes `end` the end of the log: segments wholly below it are full, the one holding it
    /// is cut there (its tail zeroed when `zero_tail`, so stale bytes can never be mistaken
    /// for records), and segments past it are deleted. Only for use at open.
    pub fn set_end(&self, end: u64, zero_tail: bool) -> Result<()> {
        let mut segs = self.segments.write();
        let mut keep = Vec::with_capacity(segs.len());
        let mut deleted = false;
        for seg in segs.drain(..) {
            let from = seg.from_offset();
            let to = from + seg.size() as u64;
            if to <= end {
                seg.set_wrote(seg.size());
                seg.set_flushed(seg.size());
                keep.push(seg);
            } else if from <= end {
                let pos = (end - from) as usize;
                if zero_tail {
                    // SAFETY: only at open, before the log is shared.
                    unsafe { zero_dirty_tail(&seg, pos) };
                }
                seg.set_wrote(pos);
                seg.set_flushed(pos);
                keep.push(seg);
            } else {
                tracing::warn!(path = %seg.path().display(), "deleting commit-log segment past the recovered end");
                seg.delete()?;
                deleted = true;
            }
        }
        *segs = keep;
        if deleted {
            sync_dir(&self.dir)?;
        }
        self.flushed_offset.store(end, Ordering::Release);
        Ok(())
    }

    /// Writes every byte of the segments from `start` on to disk, written or zeroed. Used
    /// after unclean recovery: the recovered tail may never have been flushed, and it must be
    /// durable before anything after it is acknowledged.
    pub fn sync_from(&self, start: u64) -> Result<()> {
        for seg in self
            .segments()
            .iter()
            .filter(|s| s.from_offset() + s.size() as u64 > start)
        {
            seg.flush_all()?;
        }
        Ok(())
    }

    /// Deletes up to `max` of the oldest segments (never the active one) that `pick`
    /// accepts, stopping at the first it rejects so the log stays contiguous. Returns the
    /// number deleted.
    pub fn delete_oldest(
        &self,
        max: usize,
        mut pick: impl FnMut(&MappedFile) -> bool,
    ) -> Result<usize> {
        let victims: Vec<Arc<MappedFile>> = {
            let segs = self.segments.read();
            let deletable = segs.len().saturating_sub(1);
            segs.iter()
                .take(deletable.min(max))
                .take_while(|s| pick(s))
                .cloned()
                .collect()
        };
        if victims.is_empty() {
            return Ok(0);
        }
        {
            // Only remove what is still at the front: a concurrent run may have taken some.
            let mut segs = self.segments.write();
            let still_front = segs
                .iter()
                .zip(&victims)
                .take_while(|(a, b)| Arc::ptr_eq(a, b))
                .count();
            if still_front != victims.len() {
                return Ok(0);
            }
            segs.drain(..still_front);
        }
        for seg in &victims {
            tracing::info!(path = %seg.path().display(), "retention: deleting commit-log segment");
            seg.delete()?;
        }
        sync_dir(&self.dir)?;
        Ok(victims.len())
    }

    /// Last modification time of a segment's file.
    pub fn modified(seg: &MappedFile) -> Option<SystemTime> {
        std::fs::metadata(seg.path())
            .and_then(|m| m.modified())
            .ok()
    }
}

/// Largest staging buffer kept between appends (a bigger one is freed after its write).
const STAGING_KEEP: usize = 8 << 20;

/// Zeroes a segment from `pos`, skipping pages that are already zero so that never-written
/// (sparse) parts of a large segment are not allocated on disk.
///
/// # Safety
/// No other thread may access the segment.
unsafe fn zero_dirty_tail(seg: &MappedFile, pos: usize) {
    const CHUNK: usize = 4096;
    let size = seg.size();
    let mut at = pos;
    while at < size {
        let len = (CHUNK - at % CHUNK).min(size - at);
        // SAFETY: in bounds; exclusive access is the caller's contract.
        if let Some(chunk) = unsafe { seg.slice_mut(at, len) } {
            if chunk.iter().any(|b| *b != 0) {
                chunk.fill(0);
            }
        }
        at += len;
    }
}
