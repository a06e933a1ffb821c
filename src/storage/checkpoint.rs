//! The checkpoint file: how far each part of the store is known to be on disk.
//!
//! Recovery after an unclean stop starts its scan from here instead of from the first
//! segment. The file is replaced atomically (write, fsync, rename, fsync the folder) and
//! carries a CRC, so a torn checkpoint is detected and ignored rather than trusted.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::storage::error::{Error, Result};
use crate::storage::mapped_file::sync_dir;

/// Four positions and a CRC: the layout before `last_record` was added. Still read.
const CHECKPOINT_LEN_V1: usize = 8 * 4 + 4;
/// Five positions and a CRC.
const CHECKPOINT_LEN: usize = 8 * 5 + 4;
/// `last_record`'s "none" on disk.
const NO_RECORD: u64 = u64::MAX;

/// Flushed positions, all commit-log byte offsets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checkpoint {
    /// Commit-log bytes below this are on disk.
    pub commit_log: u64,
    /// Consume-queue entries for records below this are on disk.
    pub consume_queue: u64,
    /// Index entries for records below this are on disk.
    pub index: u64,
    /// When it was written (ms since the epoch).
    pub written_at: i64,
    /// Where the last record below `commit_log` starts, so a clean start can check that
    /// record without scanning the log (`None` in an empty log, and in checkpoints written
    /// before this field existed).
    pub last_record: Option<u64>,
}

impl Checkpoint {
    /// Where the checkpoint lives in a store.
    pub fn path(root: &Path) -> PathBuf {
        root.join("checkpoint")
    }

    /// Reads the checkpoint; `None` if it is missing or damaged.
    pub fn load(root: &Path) -> Option<Checkpoint> {
        let path = Self::path(root);
        let data = std::fs::read(&path).ok()?;
        if data.len() != CHECKPOINT_LEN && data.len() != CHECKPOINT_LEN_V1 {
            tracing::warn!(path = %path.display(), "checkpoint has the wrong size; ignoring it");
            return None;
        }
        let (body, crc) = data.split_at(data.len() - 4);
        let mut c = [0u8; 4];
        c.copy_from_slice(crc);
        if crc32fast::hash(body) != u32::from_be_bytes(c) {
            tracing::warn!(path = %path.display(), "checkpoint CRC mismatch; ignoring it");
            return None;
        }
        let field = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&body[i * 8..i * 8 + 8]);
            u64::from_be_bytes(a)
        };
        Some(Checkpoint {
            commit_log: field(0),
            consume_queue: field(1),
            index: field(2),
            written_at: field(3) as i64,
            last_record: (body.len() >= 40)
                .then(|| field(4))
                .filter(|at| *at != NO_RECORD),
        })
    }

    /// Durably replaces the checkpoint.
    pub fn store(&self, root: &Path) -> Result<()> {
        let mut body = Vec::with_capacity(CHECKPOINT_LEN);
        body.extend_from_slice(&self.commit_log.to_be_bytes());
        body.extend_from_slice(&self.consume_queue.to_be_bytes());
        body.extend_from_slice(&self.index.to_be_bytes());
        body.extend_from_slice(&self.written_at.to_be_bytes());
        body.extend_from_slice(&self.last_record.unwrap_or(NO_RECORD).to_be_bytes());
        let crc = crc32fast::hash(&body);
        body.extend_from_slice(&crc.to_be_bytes());
        let tmp = root.join("checkpoint.tmp");
        let mut f = File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&body).map_err(|e| Error::io(&tmp, e))?;
        f.sync_all().map_err(|e| Error::io(&tmp, e))?;
        let path = Self::path(root);
        std::fs::rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
        sync_dir(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Checkpoint::load(dir.path()), None);
        let cp = Checkpoint {
            commit_log: 1,
            consume_queue: 2,
            index: 3,
            written_at: 4,
            last_record: Some(5),
        };
        cp.store(dir.path()).unwrap();
        assert_eq!(Checkpoint::load(dir.path()), Some(cp));
        let none = Checkpoint {
            last_record: None,
            ..cp
        };
        none.store(dir.path()).unwrap();
        assert_eq!(Checkpoint::load(dir.path()), Some(none));
        // The layout written before `last_record` existed still loads.
        let mut v1 = Vec::new();
        for field in [1u64, 2, 3, 4] {
            v1.extend_from_slice(&field.to_be_bytes());
        }
        let crc = crc32fast::hash(&v1);
        v1.extend_from_slice(&crc.to_be_bytes());
        std::fs::write(Checkpoint::path(dir.path()), &v1).unwrap();
        assert_eq!(Checkpoint::load(dir.path()), Some(none));
        cp.store(dir.path()).unwrap();
        let p = Checkpoint::path(dir.path());
        let mut raw = std::fs::read(&p).unwrap();
        raw[3] ^= 0xFF;
        std::fs::write(&p, raw).unwrap();
        assert_eq!(Checkpoint::load(dir.path()), None);
    }
}
