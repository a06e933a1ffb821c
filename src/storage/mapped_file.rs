//! One fixed-size file mapped into memory: the unit of the commit log, consume queues and
//! index.
//!
//! Owns the mapping, the write position readers may see and the position known flushed.
//! The single writer appends beyond the published write position; readers only touch bytes
//! below it, so the two never overlap and no lock is needed on the read path. This module
//! must never decide *what* is written; it only hands out bytes.

#![allow(unsafe_code)]

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use memmap2::{MmapOptions, MmapRaw};

use crate::storage::error::{Error, Result};

/// Width of the zero-padded start offset in segment file names (RocketMQ's convention).
pub const FILE_NAME_DIGITS: usize = 20;

/// A mapped segment file.
pub struct MappedFile {
    path: PathBuf,
    /// Logical offset of the first byte of this file within its log.
    file_from_offset: u64,
    size: usize,
    map: MmapRaw,
    /// Kept open so the mapping's file stays the one we created; appends are written
    /// through it (see [`MappedFile::write_at`]).
    file: File,
    /// Bytes written and visible to readers. Only grows, except during recovery.
    wrote: AtomicUsize,
    /// Bytes known to be on disk.
    flushed: AtomicUsize,
    /// The thread keeping this file warm, if one does (see `storage::warmer`).
    warmer: OnceLock<std::thread::Thread>,
    /// Write position from which the warmer has work again: publishing a position at or past
    /// it unparks the warmer. `usize::MAX` until a warmer first asks.
    wake_warmer_at: AtomicUsize,
}

impl std::fmt::Debug for MappedFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MappedFile")
            .field("path", &self.path)
            .field("from", &self.file_from_offset)
            .field("wrote", &self.wrote.load(Ordering::Relaxed))
            .finish()
    }
}

/// The file name for a segment starting at `offset`.
pub fn segment_name(offset: u64) -> String {
    format!("{offset:0width$}", width = FILE_NAME_DIGITS)
}

/// Parses a segment file name back into its start offset.
pub fn parse_segment_name(name: &str) -> Option<u64> {
    if name.len() != FILE_NAME_DIGITS || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// Refuses a segment file longer than the configured segment size: the size is fixed
/// when a store is created, and a longer file means another configuration wrote it.
pub(crate) fn check_segment_len(path: &Path, len: u64, size: usize) -> Result<()> {
    if len > size as u64 {
        return Err(Error::BadFile {
            path: path.to_owned(),
            reason: format!(
                "file is {len} bytes but the configured segment size is {size}; \
                 the segment size cannot be changed for an existing store"
            ),
        });
    }
    Ok(())
}

/// Fsyncs a directory so that file creations and deletions in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    crate::common::fs::sync_dir(dir).map_err(|e| Error::io(dir, e))
}

impl MappedFile {
    /// Creates a new zero-filled segment file of `size` bytes and maps it.
    pub fn create(dir: &Path, file_from_offset: u64, size: usize, warm: bool) -> Result<Self> {
        let path = dir.join(segment_name(file_from_offset));
        crate::common::fs::disk_faults::pause_if_held(&path);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let prepared = file
            .set_len(size as u64)
            .and_then(|()| file.sync_all())
            .map_err(|e| Error::io(&path, e))
            .and_then(|()| sync_dir(dir));
        if let Err(e) = prepared {
            // Leave nothing behind that would make the next attempt fail with "exists".
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        let mapped = Self::map(path.clone(), file, file_from_offset, size).and_then(|mf| {
            if warm {
                mf.warm().map(|()| mf)
            } else {
                Ok(mf)
            }
        });
        if mapped.is_err() {
            // A full disk fails the block reservation: the next attempt must find no file.
            let _ = std::fs::remove_file(&path);
        }
        mapped
    }

    /// Maps an existing segment. A file shorter than `size` (a torn creation or a damaged
    /// disk) is zero-extended so that recovery sees its missing tail as "not written".
    pub fn open(path: &Path, file_from_offset: u64, size: usize) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        check_segment_len(path, len, size)?;
        if len < size as u64 {
            tracing::warn!(path = %path.display(), len, size, "segment shorter than configured, zero-extending");
            file.set_len(size as u64).map_err(|e| Error::io(path, e))?;
        }
        Self::map(path.to_owned(), file, file_from_offset, size)
    }

    fn map(path: PathBuf, file: File, file_from_offset: u64, size: usize) -> Result<Self> {
        let map = MmapOptions::new()
            .len(size)
            .map_raw(&file)
            .map_err(|e| Error::io(&path, e))?;
        Ok(Self::from_parts(path, file, map, file_from_offset, size))
    }

    fn from_parts(
        path: PathBuf,
        file: File,
        map: MmapRaw,
        file_from_offset: u64,
        size: usize,
    ) -> Self {
        MappedFile {
            path,
            file_from_offset,
            size,
            map,
            file,
            wrote: AtomicUsize::new(0),
            flushed: AtomicUsize::new(0),
            warmer: OnceLock::new(),
            wake_warmer_at: AtomicUsize::new(usize::MAX),
        }
    }

    /// Reserves the file's blocks, so a write never waits for block allocation and a full
    /// disk shows up here rather than as a fault inside a write.
    pub fn warm(&self) -> Result<()> {
        fs4::fs_std::FileExt::allocate(&self.file, self.size as u64)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Brings `len` bytes at `at` into the page cache ahead of use with `readahead(2)`: the
    /// kernel allocates and zeroes the pages on the caller's (background) thread instead of
    /// inside the appender's writes. Nothing is dirtied and nothing is mapped: the pages
    /// enter no page table, so neither this call nor their later writeback has page-table
    /// entries to set up or clean. That made it cheaper than `MADV_POPULATE_READ`, which
    /// this replaced: 1–2 µs less machine CPU per message, see docs/BENCHMARKS.md, 2026-11-26.
    /// Returns `false` if the kernel refuses; pages are then allocated by the writes
    /// themselves.
    pub fn prefetch(&self, at: usize, len: usize) -> bool {
        use std::os::fd::AsRawFd;
        let at = at.min(self.size);
        let len = len.min(self.size - at);
        if len == 0 {
            return true;
        }
        // The kernel reads at most the device's read-ahead size per call (`read_ahead_kb`,
        // 128 KiB by default) and ignores the rest of a larger request, so larger ranges
        // go in calls of that size.
        const CHUNK: usize = 128 << 10;
        let end = at + len;
        let mut pos = at;
        while pos < end {
            let n = CHUNK.min(end - pos);
            let Ok(offset) = libc::off64_t::try_from(pos) else {
                return false;
            };
            // SAFETY: readahead only reads the descriptor, which `self.file` keeps open,
            // and touches no memory of ours.
            if unsafe { libc::readahead(self.file.as_raw_fd(), offset, n) } != 0 {
                let e = std::io::Error::last_os_error();
                tracing::debug!(path = %self.path.display(), error = %e, "readahead refused; pages fault in on use");
                return false;
            }
            pos += n;
        }
        true
    }

    /// The next stretch of the file at or after `pos` that may hold data, as `[from, to)`,
    /// skipping holes and never-written (unwritten) extents the file system reports with
    /// `SEEK_DATA`/`SEEK_HOLE`. `None` when nothing past `pos` holds data. A file system
    /// that cannot tell reports the whole rest of the file. Recovery uses it so that
    /// searching the unwritten tail of a large segment reads nothing from disk.
    pub fn next_data(&self, pos: usize) -> Option<(usize, usize)> {
        use std::os::fd::AsRawFd;
        if pos >= self.size {
            return None;
        }
        let fd = self.file.as_raw_fd();
        let at = libc::off64_t::try_from(pos).ok()?;
        // SAFETY: lseek only moves this descriptor's file position, which nothing else uses
        // (writes are positional, reads go through the mapping).
        let data = unsafe { libc::lseek64(fd, at, libc::SEEK_DATA) };
        if data < 0 {
            return match std::io::Error::last_os_error().raw_os_error() {
                Some(libc::ENXIO) => None,
                _ => Some((pos, self.size)),
            };
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek64(fd, data, libc::SEEK_HOLE) };
        let from = usize::try_from(data).ok()?.min(self.size);
        let to = if hole < 0 {
            self.size
        } else {
            usize::try_from(hole).unwrap_or(self.size).min(self.size)
        };
        (from < to).then_some((from, to))
    }

    /// Asks the kernel to map `len` bytes at `at` with huge pages where it can (a file
    /// system with large folios; Linux 6.x ext4 and xfs do). Best effort: elsewhere the
    /// range keeps small pages.
    pub fn advise_huge_pages(&self, at: usize, len: usize) {
        let at = at.min(self.size);
        let len = len.min(self.size - at);
        if let Err(e) = self.map.advise_range(memmap2::Advice::HugePage, at, len) {
            tracing::debug!(path = %self.path.display(), error = %e, "huge-page advice refused");
        }
    }

    /// Chooses how page faults on this mapping fill the page cache. While a segment is
    /// being appended to, only readers fault on it (consumers close behind the writer, on
    /// pages the writes have just filled), and each fault brings in single pages. Measured
    /// against the default with the drain row (three alternating runs, 2026-11-26): 412–494k
    /// against 341–495k msgs/s. It was first chosen when the warmer faulted pages in
    /// through the mapping: with read-ahead, one such fault filled and zeroed a large folio
    /// and held a core for tens of milliseconds. Once the segment is full it is only read,
    /// front to back, and read-ahead is what a catching-up consumer wants. Best effort: a
    /// kernel that refuses the advice keeps its default.
    pub fn set_appending(&self, appending: bool) {
        let advice = if appending {
            memmap2::Advice::Random
        } else {
            memmap2::Advice::Normal
        };
        if let Err(e) = self.map.advise(advice) {
            tracing::debug!(path = %self.path.display(), error = %e, "madvise refused");
        }
    }

    /// Writes `data` at `pos` with `pwrite`, without publishing it. Appends go through the
    /// file rather than stores into the mapping: pages written by the kernel are never
    /// mapped writable, so writeback has no page-table entries to clean (on a virtual
    /// machine each such cleaning was an inter-processor interrupt per page) and the
    /// appender takes no write faults. Readers keep using the mapping; the page cache is
    /// the same.
    pub fn write_at(&self, pos: usize, data: &[u8]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        if pos
            .checked_add(data.len())
            .is_none_or(|end| end > self.size)
        {
            return Err(Error::BadFile {
                path: self.path.clone(),
                reason: format!("write of {} bytes at {pos} exceeds the file", data.len()),
            });
        }
        self.file
            .write_all_at(data, pos as u64)
            .map_err(|e| Error::io(&self.path, e))
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Logical offset of the first byte.
    pub fn from_offset(&self) -> u64 {
        self.file_from_offset
    }

    /// File size in bytes.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Bytes published to readers.
    pub fn wrote(&self) -> usize {
        self.wrote.load(Ordering::Acquire)
    }

    /// Bytes known durable.
    pub fn flushed(&self) -> usize {
        self.flushed.load(Ordering::Acquire)
    }

    /// Bytes left for appends.
    pub fn remaining(&self) -> usize {
        self.size - self.wrote()
    }

    /// Whether no more appends fit.
    pub fn is_full(&self) -> bool {
        self.wrote() >= self.size
    }

    /// Publishes bytes up to `pos` to readers, and wakes this file's warmer if the writer
    /// has now eaten into its window by a step.
    pub fn set_wrote(&self, pos: usize) {
        self.wrote.store(pos.min(self.size), Ordering::Release);
        if let Some(warmer) = self.warmer.get() {
            // Pairs with the fence in `wake_warmer_at`: either the warmer sees this position
            // before it parks, or this sees its wake-up position and unparks it.
            fence(Ordering::SeqCst);
            if pos >= self.wake_warmer_at.load(Ordering::Relaxed) {
                warmer.unpark();
            }
        }
    }

    /// Makes the calling thread this file's warmer, the one [`MappedFile::set_wrote`] wakes.
    /// Returns `false` if another thread already is.
    pub(crate) fn adopt_warmer(&self) -> bool {
        self.warmer.set(std::thread::current()).is_ok()
    }

    /// For the warmer that adopted this file: asks to be unparked once the write position
    /// reaches `pos`. Returns `false` if it already has, or the file is full: the caller
    /// must then not park. Unparking is best effort (a wake-up may come early, or from an
    /// older request), so the caller parks with a timeout and re-checks.
    pub(crate) fn wake_warmer_at(&self, pos: usize) -> bool {
        self.wake_warmer_at.store(pos, Ordering::Relaxed);
        // Pairs with the fence in `set_wrote`.
        fence(Ordering::SeqCst);
        self.wrote() < pos && !self.is_full()
    }

    /// Records that bytes up to `pos` are durable (used after recovery and for full files).
    pub fn set_flushed(&self, pos: usize) {
        self.flushed.store(pos.min(self.size), Ordering::Release);
    }

    /// Mutable access to `len` bytes at `pos` for the single writer.
    ///
    /// # Safety
    /// The caller must be the only writer of this file (the owning log's write lock is held)
    /// and must not hand out a range overlapping bytes below the published write position
    /// while readers may exist, except during recovery before the store is shared.
    #[allow(clippy::mut_from_ref)]
    pub unsafe fn slice_mut(&self, pos: usize, len: usize) -> Option<&mut [u8]> {
        let end = pos.checked_add(len)?;
        if end > self.size {
            return None;
        }
        // SAFETY: in bounds by the check above; exclusivity is the caller's contract.
        Some(unsafe { std::slice::from_raw_parts_mut(self.map.as_mut_ptr().add(pos), len) })
    }

    /// Read access to bytes at `pos`, which must lie below the published write position.
    pub fn slice(&self, pos: usize, len: usize) -> Option<&[u8]> {
        let end = pos.checked_add(len)?;
        if end > self.wrote() {
            return None;
        }
        // SAFETY: published bytes are never written again while the file is shared.
        Some(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(pos), len) })
    }

    /// Read access to any bytes of the mapping, published or not.
    ///
    /// # Safety
    /// No writer may be writing the range concurrently (recovery, or under the writer's lock).
    pub unsafe fn slice_unpublished(&self, pos: usize, len: usize) -> Option<&[u8]> {
        let end = pos.checked_add(len)?;
        if end > self.size {
            return None;
        }
        // SAFETY: in bounds; no concurrent writer by the caller's contract.
        Some(unsafe { std::slice::from_raw_parts(self.map.as_ptr().add(pos), len) })
    }

    /// A zero-copy handle on published bytes that keeps this mapping alive.
    pub fn bytes(self: &Arc<Self>, pos: usize, len: usize) -> Option<Bytes> {
        self.slice(pos, len)?;
        Some(Bytes::from_owner(MappedSlice {
            file: Arc::clone(self),
            pos,
            len,
        }))
    }

    /// Writes published-but-unflushed bytes to disk. Safe to call from any thread, also
    /// while the writer appends. Returns the new flushed position.
    pub fn flush(&self) -> Result<usize> {
        let target = self.wrote();
        let done = self.flushed();
        if target > done {
            crate::common::fs::disk_faults::pause_if_held(&self.path);
            self.map
                .flush_range(done, target - done)
                .map_err(|e| Error::io(&self.path, e))?;
            self.flushed.fetch_max(target, Ordering::AcqRel);
        }
        Ok(target.max(done))
    }

    /// Flushes the whole mapping regardless of positions (for files written in place).
    pub fn flush_all(&self) -> Result<()> {
        self.map.flush().map_err(|e| Error::io(&self.path, e))
    }

    /// Zeroes everything from `pos` to the end and moves both positions back to `pos`.
    ///
    /// # Safety
    /// Only during recovery or under the writer's lock with no reader holding a view of the
    /// truncated range.
    pub unsafe fn truncate(&self, pos: usize) {
        if pos < self.size {
            // SAFETY: in bounds; exclusivity is the caller's contract.
            unsafe { std::ptr::write_bytes(self.map.as_mut_ptr().add(pos), 0, self.size - pos) };
        }
        self.wrote.store(pos.min(self.size), Ordering::Release);
        self.flushed.fetch_min(pos.min(self.size), Ordering::AcqRel);
    }

    /// Removes the file from disk. The mapping stays valid for holders of [`Bytes`] views.
    pub fn delete(&self) -> Result<()> {
        std::fs::remove_file(&self.path).map_err(|e| Error::io(&self.path, e))
    }
}

/// Owner behind a zero-copy [`Bytes`] view of a mapped segment.
struct MappedSlice {
    file: Arc<MappedFile>,
    pos: usize,
    len: usize,
}

impl AsRef<[u8]> for MappedSlice {
    fn as_ref(&self) -> &[u8] {
        // SAFETY: the range was published when this view was made, and published bytes are
        // never rewritten while views exist (truncation happens only during recovery).
        unsafe { std::slice::from_raw_parts(self.file.map.as_ptr().add(self.pos), self.len) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        assert_eq!(segment_name(1 << 30), "00000000001073741824");
        assert_eq!(parse_segment_name("00000000001073741824"), Some(1 << 30));
        assert_eq!(parse_segment_name("0000000000107374182x"), None);
        assert_eq!(parse_segment_name("12"), None);
    }

    #[test]
    fn write_publish_read_flush() {
        let dir = tempfile::tempdir().unwrap();
        let mf = Arc::new(MappedFile::create(dir.path(), 0, 8192, true).unwrap());
        assert!(
            mf.slice(0, 4).is_none(),
            "unpublished bytes are not readable"
        );
        unsafe { mf.slice_mut(0, 4).unwrap().copy_from_slice(b"abcd") };
        mf.set_wrote(4);
        let b = mf.bytes(0, 4).unwrap();
        assert_eq!(&b[..], b"abcd");
        assert_eq!(mf.flush().unwrap(), 4);
        assert_eq!(mf.flushed(), 4);
        assert!(unsafe { mf.slice_mut(8190, 4) }.is_none());
        drop(mf);
        assert_eq!(&b[..], b"abcd", "a view outlives the file handle");
    }

    /// Pages of `mf` in `[at, at + len)` that are in the page cache (`mincore`).
    fn resident_pages(mf: &MappedFile, at: usize, len: usize) -> usize {
        let page = 4096;
        let mut vec = vec![0u8; len.div_ceil(page)];
        // SAFETY: the range lies inside the mapping, which `mf` keeps alive; `vec` has one
        // byte per page of it.
        let rc =
            unsafe { libc::mincore(mf.map.as_mut_ptr().add(at).cast(), len, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().filter(|b| *b & 1 == 1).count()
    }

    #[test]
    fn publishing_past_the_warmers_mark_unparks_it() {
        let dir = tempfile::tempdir().unwrap();
        let mf = MappedFile::create(dir.path(), 0, 1 << 20, true).unwrap();
        assert!(mf.adopt_warmer());
        let second = std::thread::scope(|s| s.spawn(|| mf.adopt_warmer()).join().unwrap());
        assert!(!second, "a file has one warmer");
        // Joining the scoped thread may have left this thread an unpark token: use it up.
        std::thread::park_timeout(std::time::Duration::ZERO);
        assert!(
            mf.wake_warmer_at(64 << 10),
            "nothing written yet: the warmer may sleep"
        );
        mf.set_wrote(64 << 10);
        // The writer's unpark left this thread's token set, so parking returns at once;
        // without it this would sleep the whole timeout.
        let parked = std::time::Instant::now();
        std::thread::park_timeout(std::time::Duration::from_secs(30));
        assert!(
            parked.elapsed() < std::time::Duration::from_secs(10),
            "publishing past the mark did not wake the warmer"
        );
        assert!(
            !mf.wake_warmer_at(32 << 10),
            "already written: the warmer must not sleep"
        );
    }

    #[test]
    fn the_warmer_follows_the_writer_and_ends_with_its_file() {
        use crate::storage::warmer::{keep_warm, WARM_AHEAD};
        use std::time::{Duration, Instant};
        let eventually = |what: &str, done: &dyn Fn() -> bool| {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !done() {
                assert!(Instant::now() < deadline, "not within 30 s: {what}");
                std::thread::sleep(Duration::from_millis(10));
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let mib = 1 << 20;
        let mf = Arc::new(MappedFile::create(dir.path(), 0, WARM_AHEAD + 16 * mib, true).unwrap());
        if resident_pages(&mf, 0, mib) == 256 {
            eprintln!("reserved blocks are already cached here (tmpfs?): nothing to check");
            return;
        }
        let weak = Arc::downgrade(&mf);
        let warmer = std::thread::spawn(move || keep_warm(weak));
        eventually("the first window is cached", &|| {
            resident_pages(&mf, WARM_AHEAD - mib, mib) == 256
        });
        // The window ends WARM_AHEAD past the writer, and the warmer is asleep.
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(resident_pages(&mf, WARM_AHEAD + 6 * mib, mib), 0);
        mf.set_wrote(8 * mib);
        eventually("the window follows the writer", &|| {
            resident_pages(&mf, WARM_AHEAD + 6 * mib, mib) == 256
        });
        drop(mf);
        eventually("the warmer's thread ends with its file", &|| {
            warmer.is_finished()
        });
    }

    /// CPU time (user + system, in clock ticks) a thread of this process has used.
    fn thread_cpu_ticks(tid: i32) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        // Fields after the command name, which is in parentheses and may hold spaces.
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    }

    #[test]
    fn the_warmer_of_a_nearly_full_idle_segment_sleeps() {
        use crate::storage::warmer::{keep_warm, WARM_AHEAD};
        use std::time::{Duration, Instant};
        let dir = tempfile::tempdir().unwrap();
        let mib = 1 << 20;
        let mf = Arc::new(MappedFile::create(dir.path(), 0, WARM_AHEAD + 8 * mib, true).unwrap());
        // The writer is inside the last warm window: everything up to the end gets warmed,
        // and then there is nothing left to do until the file fills.
        mf.set_wrote(40 * mib);
        let weak = Arc::downgrade(&mf);
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let warmer = std::thread::spawn(move || {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            keep_warm(weak)
        });
        let tid = tid_rx.recv().unwrap();
        // Let it warm the window (a few hundred milliseconds at most), then measure.
        std::thread::sleep(Duration::from_secs(1));
        let before = thread_cpu_ticks(tid);
        let measured = Instant::now();
        std::thread::sleep(Duration::from_secs(3));
        let used = thread_cpu_ticks(tid) - before;
        let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        let spent = measured.elapsed().as_secs() * ticks_per_sec;
        // A parked thread uses nothing; a spinning one uses nearly all of the interval.
        // A tenth is generous for a busy shared host.
        assert!(
            used * 10 < spent,
            "the idle warmer used {used} of {spent} clock ticks: it spins instead of parking"
        );
        // Filling the file wakes it, and it ends.
        mf.set_wrote(mf.size());
        let deadline = Instant::now() + Duration::from_secs(10);
        while !warmer.is_finished() {
            assert!(
                Instant::now() < deadline,
                "the warmer did not end once its file was full"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn prefetch_brings_pages_into_the_cache_without_writing() {
        let dir = tempfile::tempdir().unwrap();
        let mf = MappedFile::create(dir.path(), 0, 4 << 20, true).unwrap();
        let (at, len) = (1 << 20, 1 << 20);
        // On a disk file system a new file's reserved blocks are not cached until something
        // reads them, so the check below fails if prefetching does nothing. tmpfs caches
        // them at once and leaves nothing to check.
        if resident_pages(&mf, at, len) == 256 {
            eprintln!("reserved blocks are already cached here (tmpfs?): nothing to check");
            return;
        }
        assert!(mf.prefetch(at, len));
        assert_eq!(resident_pages(&mf, at, len), 256);
        // SAFETY: nothing writes to this file.
        let head = unsafe { mf.slice_unpublished(at, 16) }.unwrap();
        assert!(head.iter().all(|b| *b == 0));
        assert!(
            mf.prefetch(4 << 20, 4096),
            "a range past the end is a no-op"
        );
    }
}
