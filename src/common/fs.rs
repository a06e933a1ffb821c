//! Small durable-file helpers shared by the store, the broker's metadata files and the
//! client's local offset files. Blocking: callers on an event loop run them on a blocking
//! thread (see `docs/ARCHITECTURE.md`, "Threads"); this module never spawns one itself
//! except through [`Snapshot::write_off_thread`].

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Fsyncs a directory so that file creations, renames and deletions in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

/// Replaces `path` with `data` so that a crash leaves either the old file or the new one,
/// never a mix: write a sibling `.tmp`, fsync it, rename it over `path`, fsync the folder.
/// Creates the folder if needed.
pub fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    disk_faults::pause_if_held(path);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    sync_dir(dir)
}

/// A file rewritten from snapshots of in-memory state (the topic table, a group's offsets).
/// The owner takes snapshots on its own thread, in order, and has them written on a
/// blocking thread; writes may finish in any order, but an older snapshot never replaces a
/// newer one, and two writes of the file never overlap. Clones share that state.
#[derive(Debug, Clone)]
pub struct SnapshotFile {
    path: PathBuf,
    taken: Arc<AtomicU64>,
    /// The sequence number written last; held while writing.
    written: Arc<Mutex<u64>>,
}

/// One numbered snapshot of a [`SnapshotFile`], ready to be written.
#[derive(Debug)]
pub struct Snapshot {
    file: SnapshotFile,
    seq: u64,
    data: Vec<u8>,
}

impl SnapshotFile {
    /// The file at `path` (nothing is read or written yet).
    pub fn new(path: PathBuf) -> Self {
        SnapshotFile {
            path,
            taken: Arc::new(AtomicU64::new(0)),
            written: Arc::new(Mutex::new(0)),
        }
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Numbers `data` as the newest snapshot. Call in the order the state changed.
    pub fn snapshot(&self, data: Vec<u8>) -> Snapshot {
        Snapshot {
            file: self.clone(),
            seq: self.taken.fetch_add(1, Ordering::AcqRel) + 1,
            data,
        }
    }
}

impl Snapshot {
    /// The file it is for.
    pub fn path(&self) -> &Path {
        &self.file.path
    }

    /// Writes the snapshot with [`write_atomically`] unless a newer one is already written.
    /// Blocking: call it on a blocking thread ([`Snapshot::write_off_thread`]).
    pub fn write(self) -> io::Result<()> {
        let mut written = self
            .file
            .written
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if *written >= self.seq {
            return Ok(());
        }
        write_atomically(&self.file.path, &self.data)?;
        *written = self.seq;
        Ok(())
    }

    /// [`Snapshot::write`] on tokio's blocking pool, so that an event loop awaiting it keeps
    /// serving while the disk is slow.
    pub async fn write_off_thread(self) -> io::Result<()> {
        let path = self.file.path.clone();
        tokio::task::spawn_blocking(move || self.write())
            .await
            .map_err(|e| {
                io::Error::other(format!("writing {} stopped early: {e}", path.display()))
            })?
    }
}

/// Test hooks for a disk that misbehaves: one holds chosen operations for a while (a slow
/// disk stalls nobody but the operation's own requester), the other fails one (a write
/// error the store must survive). Off unless a test arms them; then the next operation
/// whose path contains the pattern is held or failed, once. Unarmed, each check is one
/// atomic load.
#[doc(hidden)]
pub mod disk_faults {
    use std::path::Path;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Mutex;
    use std::time::Duration;

    static ARMED: AtomicBool = AtomicBool::new(false);
    static HOLDS: Mutex<Vec<(String, Duration)>> = Mutex::new(Vec::new());
    static BEGUN: AtomicU64 = AtomicU64::new(0);
    static ENDED: AtomicU64 = AtomicU64::new(0);
    static FAIL_ARMED: AtomicBool = AtomicBool::new(false);
    static FAILS: Mutex<Vec<String>> = Mutex::new(Vec::new());

    /// Holds the next disk operation on a path containing `pattern` for `duration`.
    pub fn hold_next(pattern: &str, duration: Duration) {
        let mut holds = HOLDS.lock().unwrap_or_else(|p| p.into_inner());
        holds.push((pattern.to_owned(), duration));
        ARMED.store(true, Ordering::Release);
    }

    /// Sleeps if a hold matches `path` (and disarms that hold).
    pub fn pause_if_held(path: &Path) {
        if !ARMED.load(Ordering::Acquire) {
            return;
        }
        let held = {
            let mut holds = HOLDS.lock().unwrap_or_else(|p| p.into_inner());
            let text = path.to_string_lossy();
            let found = holds.iter().position(|(p, _)| text.contains(p.as_str()));
            let held = found.map(|i| holds.remove(i).1);
            ARMED.store(!holds.is_empty(), Ordering::Release);
            held
        };
        if let Some(d) = held {
            tracing::warn!(path = %path.display(), ?d, "test hook: holding this disk operation");
            BEGUN.fetch_add(1, Ordering::AcqRel);
            std::thread::sleep(d);
            ENDED.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Holds that have begun so far (a test waits for its hold to be on).
    pub fn holds_begun() -> u64 {
        BEGUN.load(Ordering::Acquire)
    }

    /// Holds that have ended so far (a test checks answers came while its hold was on).
    pub fn holds_ended() -> u64 {
        ENDED.load(Ordering::Acquire)
    }

    /// Fails the next write whose path contains `pattern` with an I/O error.
    pub fn fail_next(pattern: &str) {
        let mut fails = FAILS.lock().unwrap_or_else(|p| p.into_inner());
        fails.push(pattern.to_owned());
        FAIL_ARMED.store(true, Ordering::Release);
    }

    /// The injected failure for a write to `path`, if one is armed for it (and disarms it).
    pub fn injected_failure(path: &Path) -> std::io::Result<()> {
        if !FAIL_ARMED.load(Ordering::Acquire) {
            return Ok(());
        }
        let mut fails = FAILS.lock().unwrap_or_else(|p| p.into_inner());
        let text = path.to_string_lossy();
        let found = fails.iter().position(|p| text.contains(p.as_str()));
        if let Some(i) = found {
            fails.remove(i);
        }
        FAIL_ARMED.store(!fails.is_empty(), Ordering::Release);
        match found {
            Some(_) => {
                tracing::warn!(path = %path.display(), "test hook: failing this write");
                Err(std::io::Error::other("test hook: injected write failure"))
            }
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("a.json");
        write_atomically(&path, b"first, longer").unwrap();
        write_atomically(&path, b"second").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"second");
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = SnapshotFile::new(dir.path().join("t.toml"));
        let old = file.snapshot(b"old".to_vec());
        let new = file.snapshot(b"new".to_vec());
        new.write().unwrap();
        old.write().unwrap();
        assert_eq!(std::fs::read(file.path()).unwrap(), b"new");
    }
}
