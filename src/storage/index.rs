//! The message index: business keys and unique ids to commit-log offsets, on disk.
//!
//! Owns index files laid out like RocketMQ's `IndexFile`: a 40-byte header, a table of
//! 4-byte hash slots, then 20-byte entries (key hash u32, commit-log offset u64, seconds
//! since the file's first entry i32, previous entry in the same slot i32), so a lookup walks
//! one chain and the files survive restart without being loaded into memory. Hashes collide
//! and a crash can leave stale entries, so callers verify every hit against the commit log;
//! this module never reads the commit log itself.
//!
//! Entries are stored through a mapping, so every file's blocks are allocated when it is
//! created (or, for a file from an older version, when it is opened): a store into a page
//! the file system cannot back would be a `SIGBUS`, while a failed allocation is an
//! `ENOSPC` error. A file that cannot be created is retried a little later; meanwhile keys
//! go unindexed (lookups by key miss those messages) rather than stopping the store.

#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::storage::error::{Error, Result};
use crate::storage::mapped_file::{parse_segment_name, sync_dir, MappedFile};

/// Header bytes: begin/end store time, begin/end commit-log offset, slots used, entries.
pub const INDEX_HEADER_SIZE: usize = 40;
/// Bytes per hash slot.
pub const HASH_SLOT_SIZE: usize = 4;
/// Bytes per index entry.
pub const INDEX_ENTRY_SIZE: usize = 20;
/// After an index file could not be created (a full disk), keys go unindexed for this long
/// before the next attempt, so a full disk costs one failed creation (and one log line) per
/// interval rather than one per message.
pub const RETRY_CREATE_AFTER: Duration = Duration::from_secs(1);

/// Hash of an index key (`topic#key`).
pub fn key_hash(topic: &str, key: &str) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(topic.as_bytes());
    h.update(b"#");
    h.update(key.as_bytes());
    h.finalize()
}

struct IndexFile {
    file: MappedFile,
    slots: usize,
    max_entries: usize,
    dirty: AtomicBool,
    /// False for an old file whose blocks could not be allocated at open: storing into it
    /// could fault, so new entries go to a new file.
    writable: bool,
}

fn get_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

fn get_i32(b: &[u8], at: usize) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    i32::from_be_bytes(a)
}

impl IndexFile {
    fn size(slots: usize, max_entries: usize) -> usize {
        INDEX_HEADER_SIZE + slots * HASH_SLOT_SIZE + max_entries * INDEX_ENTRY_SIZE
    }

    fn new(file: MappedFile, slots: usize, max_entries: usize, writable: bool) -> Self {
        // The slot table is written at random: with 4 KiB pages nearly every put missed
        // the TLB (a two-level page walk on a virtual machine), which cost as much as the
        // rest of the put together. Huge pages keep the whole table in a few TLB entries;
        // the entries behind it are appended in order and stay on small pages, so a
        // growing index never stalls a writer on a 2 MiB page fault.
        file.advise_huge_pages(0, INDEX_HEADER_SIZE + slots * HASH_SLOT_SIZE);
        IndexFile {
            file,
            slots,
            max_entries,
            dirty: AtomicBool::new(false),
            writable,
        }
    }

    // All accessors below run under the service's mutex, which makes them the only
    // readers and writers of the mapping (the flusher only calls msync).
    fn bytes(&self, at: usize, len: usize) -> &[u8] {
        // SAFETY: the service mutex serialises every access; ranges are computed in bounds.
        unsafe { self.file.slice_unpublished(at, len) }.unwrap_or(&[])
    }

    fn write(&self, at: usize, data: &[u8]) {
        // SAFETY: as above.
        if let Some(b) = unsafe { self.file.slice_mut(at, data.len()) } {
            b.copy_from_slice(data);
        }
    }

    fn header(&self) -> Option<(i64, i64, i64, i64, i32, i32)> {
        let h = self.bytes(0, INDEX_HEADER_SIZE);
        (h.len() == INDEX_HEADER_SIZE).then(|| {
            (
                get_i64(h, 0),
                get_i64(h, 8),
                get_i64(h, 16),
                get_i64(h, 24),
                get_i32(h, 32),
                get_i32(h, 36),
            )
        })
    }

    fn count(&self) -> usize {
        self.header().map(|h| h.5.max(1) as usize).unwrap_or(1)
    }

    fn end_phy(&self) -> u64 {
        self.header().map(|h| h.3.max(0) as u64).unwrap_or(0)
    }

    fn begin_timestamp(&self) -> i64 {
        self.header().map(|h| h.0).unwrap_or(0)
    }

    fn end_timestamp(&self) -> i64 {
        self.header().map(|h| h.1).unwrap_or(0)
    }

    fn is_full(&self) -> bool {
        self.count() >= self.max_entries
    }

    fn slot_at(&self, hash: u32) -> usize {
        INDEX_HEADER_SIZE + (hash as usize % self.slots) * HASH_SLOT_SIZE
    }

    fn entry_at(&self, i: usize) -> usize {
        INDEX_HEADER_SIZE + self.slots * HASH_SLOT_SIZE + i * INDEX_ENTRY_SIZE
    }

    /// Asks the CPU to start loading the slot of `hash`. The slot table is far larger than
    /// the caches and addressed at random, so the slot read in [`Self::put`] is nearly
    /// always a cache miss; issued before the record is encoded and copied, the load
    /// overlaps that work instead of stalling the appender.
    fn prefetch(&self, hash: u32) {
        let slot = self.bytes(self.slot_at(hash), HASH_SLOT_SIZE);
        #[cfg(target_arch = "x86_64")]
        if !slot.is_empty() {
            // SAFETY: a prefetch is only a hint: it cannot fault, and the address lies inside
            // a live mapping anyway.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                    slot.as_ptr().cast(),
                )
            };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = slot;
    }

    fn put(&self, hash: u32, phy: u64, store_ts: i64) -> bool {
        let count = self.count();
        if count >= self.max_entries || !self.writable {
            return false;
        }
        let Some((mut begin_ts, _, mut begin_phy, _, mut used, _)) = self.header() else {
            return false;
        };
        if count == 1 {
            begin_ts = store_ts;
            begin_phy = phy as i64;
        }
        let slot_pos = self.slot_at(hash);
        let prev = get_i32(self.bytes(slot_pos, 4), 0);
        let prev = if prev <= 0 || prev as usize >= count {
            used += 1;
            0
        } else {
            prev
        };
        let diff = (store_ts.saturating_sub(begin_ts) / 1000).clamp(0, i32::MAX as i64) as i32;
        let mut e = [0u8; INDEX_ENTRY_SIZE];
        e[0..4].copy_from_slice(&hash.to_be_bytes());
        e[4..12].copy_from_slice(&phy.to_be_bytes());
        e[12..16].copy_from_slice(&diff.to_be_bytes());
        e[16..20].copy_from_slice(&prev.to_be_bytes());
        self.write(self.entry_at(count), &e);
        self.write(slot_pos, &(count as i32).to_be_bytes());
        let mut h = [0u8; INDEX_HEADER_SIZE];
        h[0..8].copy_from_slice(&begin_ts.to_be_bytes());
        h[8..16].copy_from_slice(&store_ts.to_be_bytes());
        h[16..24].copy_from_slice(&begin_phy.to_be_bytes());
        h[24..32].copy_from_slice(&(phy as i64).to_be_bytes());
        h[32..36].copy_from_slice(&used.to_be_bytes());
        h[36..40].copy_from_slice(&((count + 1) as i32).to_be_bytes());
        self.write(0, &h);
        self.dirty.store(true, Ordering::Release);
        true
    }

    fn select(&self, hash: u32, begin: i64, end: i64, max: usize, out: &mut Vec<u64>) {
        let count = self.count();
        let begin_ts = self.begin_timestamp();
        let mut idx = get_i32(self.bytes(self.slot_at(hash), 4), 0);
        while idx > 0 && (idx as usize) < count && out.len() < max {
            let e = self.bytes(self.entry_at(idx as usize), INDEX_ENTRY_SIZE);
            if e.len() < INDEX_ENTRY_SIZE {
                break;
            }
            let ts = begin_ts.saturating_add(get_i32(e, 12) as i64 * 1000);
            // Entries keep whole seconds: widen the window by one and let the caller check
            // the record's exact store time.
            if get_i32(e, 0) as u32 == hash
                && ts.saturating_add(1000) >= begin
                && ts.saturating_sub(1000) <= end
            {
                out.push(get_i64(e, 4) as u64);
            }
            let prev = get_i32(e, 16);
            // Chains only point backwards; anything else is damage, so stop.
            if prev >= idx {
                break;
            }
            idx = prev;
        }
    }
}

/// All index files of a store.
pub struct IndexService {
    dir: PathBuf,
    slots: usize,
    max_entries: usize,
    files: Mutex<Vec<Arc<IndexFile>>>,
    /// When creating the next file last failed; no new attempt before `RETRY_CREATE_AFTER`.
    create_failed_at: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for IndexService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IndexService")
            .field("dir", &self.dir)
            .finish()
    }
}

impl IndexService {
    /// Opens the index files in `dir`.
    pub fn open(dir: &Path, slots: u32, max_entries: u32) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let (slots, max_entries) = (slots as usize, max_entries as usize);
        let size = IndexFile::size(slots, max_entries);
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
            let entry = entry.map_err(|e| Error::io(dir, e))?;
            if let Some(seq) = entry.file_name().to_str().and_then(parse_segment_name) {
                found.push((seq, entry.path()));
            }
        }
        found.sort();
        let mut files = Vec::new();
        let newest = found.last().map(|(seq, _)| *seq);
        for (seq, path) in found {
            let file = MappedFile::open(&path, seq, size)?;
            // Only the newest file is written to. Files from older versions are sparse:
            // allocate its blocks now, or write nothing more into it.
            let writable = Some(seq) != newest
                || file
                    .warm()
                    .map_err(|e| {
                        tracing::warn!(path = %path.display(), error = %e,
                        "cannot allocate the index file's blocks; new keys go to a new file");
                    })
                    .is_ok();
            files.push(Arc::new(IndexFile::new(file, slots, max_entries, writable)));
        }
        Ok(IndexService {
            dir: dir.to_owned(),
            slots,
            max_entries,
            files: Mutex::new(files),
            create_failed_at: Mutex::new(None),
        })
    }

    /// Starts loading the slot a later [`Self::put`] of `key` will read (a hint; see
    /// `IndexFile::prefetch`).
    pub fn prefetch(&self, topic: &str, key: &str) {
        if let Some(last) = self.files.lock().last() {
            last.prefetch(key_hash(topic, key));
        }
    }

    /// Whether storing `keys` more keys now would have to create an index file (the newest
    /// has less room than that). False while a failed creation waits out
    /// [`RETRY_CREATE_AFTER`]: keys then go unindexed, as [`Self::put`] says. No system call.
    pub fn needs_new_file(&self, keys: usize) -> bool {
        if self
            .create_failed_at
            .lock()
            .is_some_and(|t| t.elapsed() < RETRY_CREATE_AFTER)
        {
            return false;
        }
        match self.files.lock().last() {
            Some(f) => !f.writable || f.max_entries.saturating_sub(f.count()) < keys,
            None => true,
        }
    }

    /// Creates the next index file (blocks allocated) and makes it the one written to.
    /// Blocking; the caller runs it off the event loop while no append is under way.
    pub fn add_file(&self) -> Result<()> {
        let seq = self
            .files
            .lock()
            .last()
            .map(|f| f.file.from_offset() + 1)
            .unwrap_or(0)
            .max(crate::common::clock::now_ms() as u64);
        match self.create(seq) {
            Ok(file) => {
                *self.create_failed_at.lock() = None;
                self.files.lock().push(file);
                Ok(())
            }
            Err(e) => {
                *self.create_failed_at.lock() = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Records that `key` of `topic` is stored at `phy`. Fails only when a new file was
    /// needed and could not be created: the key is then not indexed, and the next file is
    /// tried again after [`RETRY_CREATE_AFTER`] (keys in between are skipped too).
    pub fn put(&self, topic: &str, key: &str, phy: u64, store_ts: i64) -> Result<()> {
        let hash = key_hash(topic, key);
        let mut files = self.files.lock();
        if let Some(last) = files.last() {
            if last.put(hash, phy, store_ts) {
                return Ok(());
            }
        }
        let mut failed_at = self.create_failed_at.lock();
        if failed_at.is_some_and(|t| t.elapsed() < RETRY_CREATE_AFTER) {
            return Ok(());
        }
        let seq = files.last().map(|f| f.file.from_offset() + 1).unwrap_or(0);
        let seq = seq.max(crate::common::clock::now_ms() as u64);
        let file = match self.create(seq) {
            Ok(file) => file,
            Err(e) => {
                *failed_at = Some(Instant::now());
                return Err(e);
            }
        };
        *failed_at = None;
        file.put(hash, phy, store_ts);
        files.push(file);
        Ok(())
    }

    /// Creates index file `seq` with all its blocks allocated; leaves nothing behind if that
    /// fails.
    fn create(&self, seq: u64) -> Result<Arc<IndexFile>> {
        let size = IndexFile::size(self.slots, self.max_entries);
        let file = MappedFile::create(&self.dir, seq, size, false)?;
        if let Err(e) = file.warm() {
            if let Err(rm) = file.delete() {
                tracing::warn!(error = %rm, "cannot remove the index file that failed");
            }
            return Err(e);
        }
        Ok(Arc::new(IndexFile::new(
            file,
            self.slots,
            self.max_entries,
            true,
        )))
    }

    /// Commit-log offsets recorded for `key` of `topic` between the two store times (ms),
    /// newest first, at most `max`. Hits may be stale or collisions: verify each.
    pub fn query(&self, topic: &str, key: &str, begin: i64, end: i64, max: usize) -> Vec<u64> {
        let hash = key_hash(topic, key);
        let files = self.files.lock();
        let mut out = Vec::new();
        for f in files.iter().rev() {
            if out.len() >= max {
                break;
            }
            if f.count() <= 1
                || f.end_timestamp().saturating_add(1000) < begin
                || f.begin_timestamp().saturating_sub(1000) > end
            {
                continue;
            }
            f.select(hash, begin, end, max, &mut out);
        }
        out
    }

    /// Flushes index files written since their last flush. Callable from any thread.
    pub fn flush(&self) -> Result<()> {
        let files: Vec<Arc<IndexFile>> = self.files.lock().clone();
        for f in files {
            if f.dirty.swap(false, Ordering::AcqRel) {
                if let Err(e) = f.file.flush_all() {
                    f.dirty.store(true, Ordering::Release);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// Deletes index files whose every entry points below commit-log offset `min_phys`
    /// (never the file being written).
    pub fn delete_below_physical(&self, min_phys: u64) -> Result<usize> {
        let victims: Vec<Arc<IndexFile>> = {
            let mut files = self.files.lock();
            let n = files.len().saturating_sub(1);
            let k = files
                .iter()
                .take(n)
                .take_while(|f| f.end_phy() < min_phys)
                .count();
            files.drain(..k).collect()
        };
        for f in &victims {
            f.file.delete()?;
        }
        if !victims.is_empty() {
            sync_dir(&self.dir)?;
        }
        Ok(victims.len())
    }

    /// Whether the newest file is full (test and diagnostics aid).
    pub fn file_count(&self) -> usize {
        self.files.lock().len()
    }

    /// Whether the newest file can take no more entries.
    pub fn newest_is_full(&self) -> bool {
        self.files.lock().last().is_some_and(|f| f.is_full())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_query_roll_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let idx = IndexService::open(dir.path(), 7, 50).unwrap();
            for i in 0..200u64 {
                idx.put(
                    "T",
                    &format!("k{}", i % 10),
                    i * 100,
                    1_000_000 + i as i64 * 10,
                )
                .unwrap();
            }
            assert!(idx.file_count() >= 4, "rolled to new files");
            idx.flush().unwrap();
        }
        let idx = IndexService::open(dir.path(), 7, 50).unwrap();
        let mut hits = idx.query("T", "k3", 0, i64::MAX, 1000);
        hits.sort();
        let want: Vec<u64> = (0..200u64)
            .filter(|i| i % 10 == 3)
            .map(|i| i * 100)
            .collect();
        // Collisions may add extra hits (callers verify), but every real one is there.
        for w in &want {
            assert!(hits.contains(w), "missing {w}");
        }
        assert!(
            idx.query("T", "k3", 0, 1000, 1000).is_empty(),
            "time window excludes all"
        );
    }
}
