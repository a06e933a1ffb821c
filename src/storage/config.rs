//! The store's configuration: RocketMQ's `MessageStoreConfig` names, snake-cased, with
//! RocketMQ's defaults, loadable from TOML and checked by [`StoreConfig::validate`].
//!
//! This module only describes and validates settings; it never touches the disk.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::storage::consume_queue::CQ_STORE_UNIT_SIZE;
use crate::storage::error::{Error, Result};

/// When an append counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FlushDiskType {
    /// Appends are flushed by a background timer every `flush_interval_commit_log` ms;
    /// a crash of the machine (not of the process) can lose the last interval.
    #[default]
    AsyncFlush,
    /// A writer may wait until its record is on disk; concurrent appends share one flush
    /// (group commit).
    SyncFlush,
}

/// What a store does when its disk runs short (see `disk_max_used_space_ratio`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiskFullPolicy {
    /// Refuse writes until space is freed; nothing is deleted before its time. Producers
    /// get "service not available" and move to another broker.
    #[default]
    RefuseWrites,
    /// Delete the oldest segments, expired or not (RocketMQ's behaviour), but never one
    /// whose newest message is younger than `forced_retention_floor_minutes`.
    DeleteOldest,
}

/// Settings of one message store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// Root folder of the store (commit log, consume queues, index, checkpoint).
    pub store_path_root_dir: PathBuf,
    /// Commit-log segment size in bytes (default 1 GiB).
    pub mapped_file_size_commit_log: u64,
    /// Consume-queue segment size in bytes, a multiple of 20 (default 300,000 entries).
    pub mapped_file_size_consume_queue: u64,
    /// When an append counts as durable.
    pub flush_disk_type: FlushDiskType,
    /// Background commit-log flush period in ms (async flush).
    pub flush_interval_commit_log: u64,
    /// Background consume-queue, index and checkpoint flush period in ms.
    pub flush_interval_consume_queue: u64,
    /// How long a sync-flush writer waits for its flush before giving up, in ms.
    pub sync_flush_timeout: u64,
    /// Hours a commit-log segment is kept after its last write.
    pub file_reserved_time: u64,
    /// Hours of the day (UTC, `;`-separated, e.g. `"04"` or `"04;16"`) when expired
    /// segments are deleted.
    pub delete_when: String,
    /// Disk use (percent of the store's file system, as `df` shows it) above which the
    /// oldest segments are deleted at once, expired or not, when `disk_full_policy` is
    /// `delete_oldest`; with `refuse_writes` it only raises a warning.
    pub disk_max_used_space_ratio: u32,
    /// What the store does when its disk runs short: refuse writes (nothing acknowledged is
    /// deleted early) or delete the oldest segments, RocketMQ's behaviour.
    pub disk_full_policy: DiskFullPolicy,
    /// With `delete_oldest`, a segment whose newest message is younger than this many
    /// minutes is never deleted early, however full the disk.
    pub forced_retention_floor_minutes: u64,
    /// Disk use (percent, as `df` shows it, rounded up) at or above which the store refuses
    /// writes
    /// until retention or an operator frees space (RocketMQ's
    /// `diskSpaceWarningLevelRatio`): a disk that fills up completely can no longer take
    /// the queue and index entries of messages already written.
    pub disk_space_warning_level_ratio: u32,
    /// How often retention runs, in ms.
    pub clean_resource_interval: u64,
    /// At most this many segments are deleted per retention run.
    pub delete_file_batch_max: usize,
    /// Largest accepted encoded record, in bytes (default 4 MiB).
    pub max_message_size: usize,
    /// Whether keys and unique ids are indexed.
    pub message_index_enable: bool,
    /// Hash slots per index file.
    pub max_hash_slot_num: u32,
    /// Entries per index file.
    pub max_index_num: u32,
    /// Reserve each segment's blocks at creation and keep its pages faulted in ahead of the
    /// writer (about 64 MiB) on a background thread, so appends do not pay page faults.
    pub warm_mapped_file_enable: bool,
    /// Most consume-queue segment files open (and mapped for reading) at once, over all
    /// queues; the least recently used are closed beyond it. A store may hold far more
    /// queues than a process may hold files or mappings, and most of them are idle.
    pub max_mapped_queue_files: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        StoreConfig {
            store_path_root_dir: home.join("store"),
            mapped_file_size_commit_log: 1 << 30,
            mapped_file_size_consume_queue: 300_000 * CQ_STORE_UNIT_SIZE as u64,
            flush_disk_type: FlushDiskType::AsyncFlush,
            flush_interval_commit_log: 500,
            flush_interval_consume_queue: 1000,
            sync_flush_timeout: 5000,
            file_reserved_time: 72,
            delete_when: "04".to_owned(),
            disk_max_used_space_ratio: 75,
            disk_full_policy: DiskFullPolicy::RefuseWrites,
            forced_retention_floor_minutes: 60,
            disk_space_warning_level_ratio: 90,
            clean_resource_interval: 10_000,
            delete_file_batch_max: 10,
            max_message_size: 4 * 1024 * 1024,
            message_index_enable: true,
            max_hash_slot_num: 5_000_000,
            max_index_num: 20_000_000,
            warm_mapped_file_enable: true,
            max_mapped_queue_files: 1024,
        }
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> Error {
    Error::Config {
        key,
        reason: reason.into(),
    }
}

impl StoreConfig {
    /// A config for a store rooted at `dir`, other settings default.
    pub fn with_root(dir: impl Into<PathBuf>) -> Self {
        StoreConfig {
            store_path_root_dir: dir.into(),
            ..StoreConfig::default()
        }
    }

    /// Checks every value and their combinations; the error names the key.
    pub fn validate(&self) -> Result<()> {
        let seg = self.mapped_file_size_commit_log;
        if !(4096..=(1 << 40)).contains(&seg) {
            return Err(invalid(
                "mapped_file_size_commit_log",
                format!("{seg} is outside 4096..=2^40 bytes"),
            ));
        }
        let cq = self.mapped_file_size_consume_queue;
        if cq == 0 || !cq.is_multiple_of(CQ_STORE_UNIT_SIZE as u64) {
            return Err(invalid(
                "mapped_file_size_consume_queue",
                format!("{cq} must be a positive multiple of {CQ_STORE_UNIT_SIZE}"),
            ));
        }
        // Record sizes are stored as i32; RocketMQ's default is 4 MiB.
        if self.max_message_size < 128
            || self.max_message_size as u64 + 8 > seg
            || self.max_message_size > (1 << 30)
        {
            return Err(invalid(
                "max_message_size",
                format!(
                    "{} must be in 128..=1 GiB and leave 8 bytes in a commit-log segment of {seg}",
                    self.max_message_size
                ),
            ));
        }
        if self.flush_interval_commit_log == 0 {
            return Err(invalid(
                "flush_interval_commit_log",
                "must be at least 1 ms",
            ));
        }
        if self.flush_interval_consume_queue == 0 {
            return Err(invalid(
                "flush_interval_consume_queue",
                "must be at least 1 ms",
            ));
        }
        if self.clean_resource_interval == 0 {
            return Err(invalid("clean_resource_interval", "must be at least 1 ms"));
        }
        if !(1..=100).contains(&self.disk_max_used_space_ratio) {
            return Err(invalid(
                "disk_max_used_space_ratio",
                "must be a percentage in 1..=100",
            ));
        }
        if !(1..=100).contains(&self.disk_space_warning_level_ratio) {
            return Err(invalid(
                "disk_space_warning_level_ratio",
                "must be a percentage in 1..=100",
            ));
        }
        if self.disk_full_policy == DiskFullPolicy::DeleteOldest
            && self.disk_space_warning_level_ratio <= self.disk_max_used_space_ratio
            && self.disk_max_used_space_ratio < 100
        {
            return Err(invalid(
                "disk_space_warning_level_ratio",
                format!(
                    "{} % is not above disk_max_used_space_ratio ({} %): writes would be \
                     refused before retention starts freeing space; raise it or lower \
                     disk_max_used_space_ratio",
                    self.disk_space_warning_level_ratio, self.disk_max_used_space_ratio
                ),
            ));
        }
        self.delete_hours()?;
        if !(1..=1_000_000).contains(&self.max_mapped_queue_files) {
            return Err(invalid(
                "max_mapped_queue_files",
                format!("{} is outside 1..=1000000", self.max_mapped_queue_files),
            ));
        }
        if self.max_hash_slot_num == 0 || self.max_index_num < 2 {
            return Err(invalid(
                "max_index_num",
                "index needs at least one slot and two entries",
            ));
        }
        Ok(())
    }

    /// The hours of the day named by `delete_when`.
    pub fn delete_hours(&self) -> Result<Vec<u32>> {
        self.delete_when
            .split(';')
            .map(|h| {
                h.trim()
                    .parse::<u32>()
                    .ok()
                    .filter(|h| *h < 24)
                    .ok_or_else(|| invalid("delete_when", format!("'{h}' is not an hour 00..23")))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_rocketmq_defaults_and_valid() {
        let c = StoreConfig::default();
        c.validate().unwrap();
        assert_eq!(c.mapped_file_size_commit_log, 1 << 30);
        assert_eq!(c.flush_interval_commit_log, 500);
        assert_eq!(c.file_reserved_time, 72);
        assert_eq!(c.delete_when, "04");
        assert_eq!(c.disk_max_used_space_ratio, 75);
        assert_eq!(c.max_message_size, 4 << 20);
    }

    #[test]
    fn toml_names_and_unknown_keys() {
        let c: StoreConfig =
            toml::from_str("flush_disk_type = \"sync_flush\"\nfile_reserved_time = 1").unwrap();
        assert_eq!(c.disk_full_policy, DiskFullPolicy::RefuseWrites);
        let deleting: StoreConfig = toml::from_str("disk_full_policy = \"delete_oldest\"").unwrap();
        assert_eq!(deleting.disk_full_policy, DiskFullPolicy::DeleteOldest);
        assert_eq!(c.flush_disk_type, FlushDiskType::SyncFlush);
        assert_eq!(c.file_reserved_time, 1);
        let err = toml::from_str::<StoreConfig>("flush_disk_typo = 1").unwrap_err();
        assert!(err.to_string().contains("flush_disk_typo"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let c = StoreConfig {
            mapped_file_size_consume_queue: 21,
            ..StoreConfig::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("mapped_file_size_consume_queue"), "{e}");
        let c = StoreConfig {
            delete_when: "25".into(),
            ..StoreConfig::default()
        };
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("delete_when"));
    }

    #[test]
    fn writes_may_stop_only_above_the_forced_deletion_level() {
        let with = |warning, max_used| StoreConfig {
            disk_space_warning_level_ratio: warning,
            disk_max_used_space_ratio: max_used,
            disk_full_policy: DiskFullPolicy::DeleteOldest,
            ..StoreConfig::default()
        };
        // Refusing writes deletes nothing early, so the two levels need no order.
        StoreConfig {
            disk_space_warning_level_ratio: 75,
            disk_max_used_space_ratio: 75,
            ..StoreConfig::default()
        }
        .validate()
        .unwrap();
        let e = with(75, 75).validate().unwrap_err().to_string();
        assert!(
            e.contains("disk_space_warning_level_ratio") && e.contains("disk_max_used_space_ratio"),
            "{e}"
        );
        assert!(with(90, 95).validate().is_err());
        assert!(with(0, 100).validate().is_err());
        with(76, 75).validate().unwrap();
        // Forced deletion off: any warning level stands.
        with(1, 100).validate().unwrap();
        with(100, 100).validate().unwrap();
    }
}
