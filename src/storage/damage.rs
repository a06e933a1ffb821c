//! The damage log: every commit-log range the store found unreadable and stepped over,
//! kept in the small file `damage.json` under the store root so an operator sees it after
//! a restart too (`mqadmin brokerStatus` shows it).
//!
//! Owns the list of damaged ranges, its bound and its file. It never decides what is
//! damaged (recovery and the read path do) and never deletes data: a range recorded here
//! is only skipped by readers, its bytes stay on disk for forensics.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

/// Ranges kept in the file. Older ones are dropped past this (their count is kept), so a
/// disk that keeps failing cannot grow the file or the broker's memory without bound.
pub const MAX_DAMAGE_RANGES: usize = 256;

/// How a damaged range was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FoundBy {
    /// The start-up check of the log met it; readers never see it.
    Recovery,
    /// A read for a consumer met it; that read skipped the record.
    Read,
    /// Shipping the log to a slave met it; replication stopped before it.
    Replication,
}

/// What kind of damage a range is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DamageKind {
    /// Bytes inside the log that are not valid records, with valid records after them.
    Corrupt,
    /// A partly written record at the very end of the log, cut away.
    TornTail,
}

/// One damaged commit-log range: `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DamagedRange {
    /// First damaged byte (commit-log offset).
    pub from: u64,
    /// First byte after the damage.
    pub to: u64,
    /// What it is.
    pub kind: DamageKind,
    /// Who found it.
    pub found_by: FoundBy,
    /// When it was found (ms since the epoch).
    pub found_at: i64,
    /// What was wrong, in words.
    pub reason: String,
}

impl DamagedRange {
    /// Bytes in the range.
    pub fn bytes(&self) -> u64 {
        self.to.saturating_sub(self.from)
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct DamageFile {
    /// Ranges dropped from the file because it was full.
    #[serde(default)]
    dropped: u64,
    ranges: Vec<DamagedRange>,
}

/// The store's damage log.
#[derive(Debug)]
pub struct DamageLog {
    path: PathBuf,
    file: crate::common::fs::SnapshotFile,
    state: Mutex<DamageFile>,
    /// Start offsets already recorded, so a record every consumer trips over is logged once.
    seen: Mutex<HashSet<u64>>,
}

impl DamageLog {
    /// Where the log lives in a store.
    pub fn path(root: &Path) -> PathBuf {
        root.join("damage.json")
    }

    /// Loads the log of the store at `root`; an unreadable file is reported and replaced
    /// (it is a report, not data: losing it loses no message).
    pub fn load(root: &Path) -> Self {
        let path = Self::path(root);
        let state = match std::fs::read(&path) {
            Ok(raw) => serde_json::from_slice::<DamageFile>(&raw).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e, "damage log unreadable; starting a new one");
                DamageFile::default()
            }),
            Err(_) => DamageFile::default(),
        };
        let seen = state.ranges.iter().map(|r| r.from).collect();
        DamageLog {
            file: crate::common::fs::SnapshotFile::new(path.clone()),
            path,
            state: Mutex::new(state),
            seen: Mutex::new(seen),
        }
    }

    /// Records a range unless one starting at the same offset is already recorded, logs
    /// it, and has the file rewritten on a thread of its own: this runs on the read path,
    /// which may be an event loop. Returns whether it was new.
    pub fn record(&self, range: DamagedRange) -> bool {
        self.record_with(range, false)
    }

    /// [`Self::record`] that rewrites the file before it returns (recovery, tests).
    pub fn record_blocking(&self, range: DamagedRange) -> bool {
        self.record_with(range, true)
    }

    fn record_with(&self, range: DamagedRange, wait: bool) -> bool {
        {
            let mut seen = self.seen.lock();
            if !seen.insert(range.from) {
                return false;
            }
            if seen.len() > 16 * MAX_DAMAGE_RANGES {
                // Forget offsets no longer in the file: at worst one of them is logged twice.
                let kept: HashSet<u64> = self.state.lock().ranges.iter().map(|r| r.from).collect();
                *seen = kept;
                seen.insert(range.from);
            }
        }
        tracing::error!(
            from = range.from,
            to = range.to,
            bytes = range.bytes(),
            kind = ?range.kind,
            found_by = ?range.found_by,
            reason = %range.reason,
            path = %self.path.display(),
            "commit-log damage: the messages in this range cannot be delivered; all others are"
        );
        let mut state = self.state.lock();
        state.ranges.push(range);
        if state.ranges.len() > MAX_DAMAGE_RANGES {
            let excess = state.ranges.len() - MAX_DAMAGE_RANGES;
            state.ranges.drain(..excess);
            state.dropped += excess as u64;
        }
        let snapshot = match serde_json::to_vec_pretty(&*state) {
            Ok(data) => self.file.snapshot(data),
            Err(e) => {
                tracing::warn!(error = %e, "could not encode the damage log");
                return true;
            }
        };
        drop(state);
        let write = move || {
            if let Err(e) = snapshot.write() {
                tracing::warn!(error = %e, "could not write the damage log; the damage is only in the broker's log");
            }
        };
        if wait {
            write();
        } else if let Err(e) = std::thread::Builder::new()
            .name("actimq-damage-log".into())
            .spawn(write)
        {
            tracing::warn!(error = %e, "could not start the damage-log writer; the damage is only in the broker's log");
        }
        true
    }

    /// The ranges recorded (newest last) and how many older ones were dropped.
    pub fn snapshot(&self) -> (Vec<DamagedRange>, u64) {
        let state = self.state.lock();
        (state.ranges.clone(), state.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(from: u64) -> DamagedRange {
        DamagedRange {
            from,
            to: from + 10,
            kind: DamageKind::Corrupt,
            found_by: FoundBy::Read,
            found_at: 1,
            reason: "test".into(),
        }
    }

    #[test]
    fn ranges_survive_reload_once_each_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let log = DamageLog::load(dir.path());
        assert!(log.record_blocking(range(100)));
        assert!(
            !log.record_blocking(range(100)),
            "the same record is logged once"
        );
        let reloaded = DamageLog::load(dir.path());
        assert_eq!(reloaded.snapshot().0, vec![range(100)]);
        assert!(
            !reloaded.record_blocking(range(100)),
            "known after a reload too"
        );
        for i in 0..(MAX_DAMAGE_RANGES as u64 + 5) {
            reloaded.record_blocking(range(1000 + i));
        }
        let (ranges, dropped) = DamageLog::load(dir.path()).snapshot();
        assert_eq!(ranges.len(), MAX_DAMAGE_RANGES);
        assert_eq!(dropped, 6);
    }

    #[test]
    fn a_garbled_file_is_replaced_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(DamageLog::path(dir.path()), b"{not json").unwrap();
        let log = DamageLog::load(dir.path());
        assert!(log.snapshot().0.is_empty());
        assert!(log.record_blocking(range(7)));
        assert_eq!(DamageLog::load(dir.path()).snapshot().0.len(), 1);
    }
}
