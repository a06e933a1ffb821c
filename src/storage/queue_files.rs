//! Open consume-queue segment files, and the store-wide bound on how many are open.
//!
//! Owns the descriptors and read-only mappings of consume-queue segments. A segment file is
//! written with `pwrite`, so it grows with its entries and a full disk is an `ENOSPC` error
//! from the write, never a `SIGBUS` from a store into a mapping the file system cannot back.
//! It is read through a read-only mapping made on first read, and only below the file's
//! length (reading a mapped page past the end of a file is a `SIGBUS` too).
//!
//! A store may hold tens of thousands of queues, most of them idle, so files are opened on
//! first use and kept in a CLOCK cache ([`QueueFiles`]) of at most `max_mapped_queue_files`
//! entries: open descriptors and mappings follow use, not the number of queues. Queues
//! keep only weak handles; a file evicted while a reader still holds it stays valid until
//! that reader lets go. This module never decides what is written or where.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use memmap2::{Mmap, MmapOptions};
use parking_lot::Mutex;

use crate::storage::error::{Error, Result};

/// One open consume-queue segment file.
#[derive(Debug)]
pub struct SegFile {
    path: PathBuf,
    file: File,
    /// Read-only view of the whole segment size, made on first read: a queue that is only
    /// written (no consumer yet) costs a descriptor and no mapping.
    map: OnceLock<Mmap>,
    /// The segment size: how far the mapping reaches, and the most a write may reach.
    capacity: usize,
    /// File length as last seen (grown by our writes, refreshed with `fstat` when a read
    /// reaches past it). Reads through the mapping never go past it.
    len: AtomicU64,
    /// CLOCK's reference bit: set on each use, cleared by the sweep looking for a victim.
    referenced: AtomicBool,
}

impl SegFile {
    /// Opens (or with `create`, creates; it must not exist) the segment at `path`.
    pub fn open(path: &Path, capacity: usize, create: bool) -> Result<Self> {
        if create {
            crate::common::fs::disk_faults::pause_if_held(path);
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(create)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        Ok(SegFile {
            path: path.to_owned(),
            file,
            map: OnceLock::new(),
            capacity,
            len: AtomicU64::new(len),
            referenced: AtomicBool::new(true),
        })
    }

    /// The file's length when it was opened or last written.
    pub fn known_len(&self) -> u64 {
        self.len.load(Ordering::Acquire)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `data` at `pos` with `pwrite`. Blocks the file system cannot supply fail here
    /// with the OS error (`ENOSPC`), naming the file.
    pub fn write_at(&self, pos: usize, data: &[u8]) -> Result<()> {
        let end = pos
            .checked_add(data.len())
            .filter(|end| *end <= self.capacity)
            .ok_or_else(|| Error::BadFile {
                path: self.path.clone(),
                reason: format!("write of {} bytes at {pos} exceeds the segment", data.len()),
            })?;
        self.file
            .write_all_at(data, pos as u64)
            .map_err(|e| Error::io(&self.path, e))?;
        self.len.fetch_max(end as u64, Ordering::AcqRel);
        Ok(())
    }

    /// Copies the bytes at `pos` into `out`; `Ok(false)` if they lie past the end of the
    /// file (never written).
    pub fn read_at(&self, pos: usize, out: &mut [u8]) -> Result<bool> {
        let Some(end) = pos.checked_add(out.len()).filter(|e| *e <= self.capacity) else {
            return Ok(false);
        };
        if end as u64 > self.len.load(Ordering::Acquire) {
            // Another handle on the same file (one evicted while in use) may have grown it.
            let len = self.file_len()?;
            self.len.store(len, Ordering::Release);
            if end as u64 > len {
                return Ok(false);
            }
        }
        let map = match self.map.get() {
            Some(m) => m,
            None => {
                // SAFETY: the mapping is read-only and only read below the file's length
                // (checked above), so it never faults past the end. The file is changed only
                // by `pwrite` of bytes no reader has been shown yet, or by truncation during
                // recovery, before the store is shared.
                let m = unsafe { MmapOptions::new().len(self.capacity).map(&self.file) }
                    .map_err(|e| Error::io(&self.path, e))?;
                // A concurrent first read may have won; its mapping is as good as ours.
                let _ = self.map.set(m);
                self.map.get().ok_or_else(|| Error::BadFile {
                    path: self.path.clone(),
                    reason: "mapping vanished".into(),
                })?
            }
        };
        out.copy_from_slice(&map[pos..end]);
        Ok(true)
    }

    fn file_len(&self) -> Result<u64> {
        Ok(self
            .file
            .metadata()
            .map_err(|e| Error::io(&self.path, e))?
            .len())
    }

    /// Cuts the file to `len` bytes if it is longer (recovery only: no reader may hold
    /// bytes past `len`). Never lengthens it: a zero tail would read as unwritten entries
    /// but count in the length that marks a queue's end.
    pub fn truncate(&self, len: usize) -> Result<()> {
        if self.file_len()? <= len as u64 {
            return Ok(());
        }
        self.file
            .set_len(len as u64)
            .map_err(|e| Error::io(&self.path, e))?;
        self.len.store(len as u64, Ordering::Release);
        Ok(())
    }

    /// Makes the file's written bytes (and its length) durable.
    pub fn sync(&self) -> Result<()> {
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    /// Whether a read mapping exists (tests and diagnostics).
    pub fn is_mapped(&self) -> bool {
        self.map.get().is_some()
    }
}

/// The store-wide cache of open consume-queue files.
#[derive(Debug)]
pub struct QueueFiles {
    bound: usize,
    ring: Mutex<Ring>,
    opened: AtomicU64,
    probe_reads: AtomicU64,
}

#[derive(Debug, Default)]
struct Ring {
    files: Vec<Arc<SegFile>>,
    /// CLOCK's hand: the next slot the sweep looks at.
    hand: usize,
}

impl QueueFiles {
    /// A cache holding at most `bound` (at least 1) open files.
    pub fn new(bound: usize) -> Arc<Self> {
        Arc::new(QueueFiles {
            bound: bound.max(1),
            ring: Mutex::new(Ring::default()),
            opened: AtomicU64::new(0),
            probe_reads: AtomicU64::new(0),
        })
    }

    /// Takes `file` in, closing the least recently used ones beyond the bound. Their
    /// descriptors and mappings go when the last reader holding one lets go.
    pub fn admit(&self, file: Arc<SegFile>) {
        self.opened.fetch_add(1, Ordering::Relaxed);
        let mut evicted = Vec::new();
        {
            let mut ring = self.ring.lock();
            while ring.files.len() >= self.bound {
                let at = ring.hand % ring.files.len();
                if ring.files[at].referenced.swap(false, Ordering::Relaxed) {
                    ring.hand = at + 1;
                } else {
                    evicted.push(ring.files.swap_remove(at));
                    ring.hand = at;
                }
            }
            ring.files.push(file);
        }
        // Unmapping and closing happen outside the lock.
        drop(evicted);
    }

    /// Drops `file` from the cache (its file is being deleted).
    pub fn forget(&self, file: &Arc<SegFile>) {
        let mut ring = self.ring.lock();
        if let Some(at) = ring.files.iter().position(|f| Arc::ptr_eq(f, file)) {
            ring.files.swap_remove(at);
        }
    }

    /// Marks `file` as just used, so the sweep passes it over once.
    pub fn touch(file: &SegFile) {
        if !file.referenced.load(Ordering::Relaxed) {
            file.referenced.store(true, Ordering::Relaxed);
        }
    }

    /// Files open in the cache now.
    pub fn open_files(&self) -> usize {
        self.ring.lock().files.len()
    }

    /// Files of the cache with a read mapping now.
    pub fn mapped_files(&self) -> usize {
        self.ring
            .lock()
            .files
            .iter()
            .filter(|f| f.is_mapped())
            .count()
    }

    /// Files opened into the cache since it was made.
    pub fn opened_total(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// Entries read while opening queues (finding the end of an old-format file).
    pub fn probe_reads(&self) -> u64 {
        self.probe_reads.load(Ordering::Relaxed)
    }

    pub(crate) fn count_probe_read(&self) {
        self.probe_reads.fetch_add(1, Ordering::Relaxed);
    }
}
