//! Retention: deleting whole commit-log segments that are old enough, or (only with
//! `disk_full_policy = "delete_oldest"`) the oldest ones early when the disk is too full,
//! never one younger than `forced_retention_floor_minutes`; and letting consume queues and
//! the index follow.
//!
//! Never deletes the segment being written, and never leaves a hole: segments go strictly
//! oldest first. Reads below the new minimum then get "offset moved".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::storage::commit_log::CommitLog;
use crate::storage::config::DiskFullPolicy;
use crate::storage::error::{Error, Result};
use crate::storage::store::Shared;

/// What one retention run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetentionReport {
    /// Whether `now` fell in a `delete_when` hour.
    pub due: bool,
    /// Whether disk use was above `disk_max_used_space_ratio` with the `delete_oldest`
    /// policy, so segments younger than `file_reserved_time` could be deleted.
    pub forced: bool,
    /// Disk use of the store's file system, percent.
    pub disk_used_percent: u32,
    /// Commit-log segments deleted.
    pub deleted_segments: usize,
    /// Lowest readable commit-log offset afterwards.
    pub min_offset: u64,
}

/// Percent of the file system holding `path` that is in use, as `df` reports it: used
/// blocks over used plus available ones, rounded up. Blocks reserved for the superuser
/// count as neither, so a file system with a large reserve is not taken for a full one
/// (on this project's machine 64 % of the disk is reserved, and counting it as used read
/// 79 % where `df` says 42 %).
pub fn disk_used_percent(path: &std::path::Path) -> Result<u32> {
    let stats = fs4::statvfs(path).map_err(|e| Error::io(path, e))?;
    let used = stats.total_space().saturating_sub(stats.free_space());
    let usable = used.saturating_add(stats.available_space());
    if usable == 0 {
        return Ok(0);
    }
    Ok(used.saturating_mul(100).div_ceil(usable) as u32)
}

pub(crate) fn clean(shared: &Shared, now: SystemTime) -> Result<RetentionReport> {
    let _serial = shared.retention_lock.lock();
    let cfg = &shared.config;
    let hour = now
        .duration_since(UNIX_EPOCH)
        .map(|d| ((d.as_secs() / 3600) % 24) as u32)
        .unwrap_or(0);
    let due = cfg.delete_hours()?.contains(&hour);
    let disk_used_percent = disk_used_percent(&shared.root)?;
    let over = disk_used_percent > cfg.disk_max_used_space_ratio;
    let forced = over && cfg.disk_full_policy == DiskFullPolicy::DeleteOldest;
    if over && !forced {
        shared.warn_disk_short(disk_used_percent);
    }
    let reserved = Duration::from_secs(cfg.file_reserved_time.saturating_mul(3600));
    let floor = Duration::from_secs(cfg.forced_retention_floor_minutes.saturating_mul(60));
    // A segment's modification time is its newest write, so it is no older than its
    // newest message: keeping segments younger than the floor by it keeps those messages.
    let keep_for = if forced {
        reserved.min(floor)
    } else {
        reserved
    };
    let mut deleted_segments = 0;
    if due || forced {
        deleted_segments = shared
            .commit_log
            .delete_oldest(cfg.delete_file_batch_max, |seg| {
                CommitLog::modified(seg).is_some_and(|m| m + keep_for <= now)
            })?;
    }
    let min_offset = shared.commit_log.min_offset();
    if deleted_segments > 0 {
        for cq in shared.all_queues() {
            cq.delete_below_physical(min_offset)?;
        }
        if let Some(index) = &shared.index {
            index.delete_below_physical(min_offset)?;
        }
        tracing::info!(
            deleted_segments,
            min_offset,
            forced,
            "retention deleted commit-log segments"
        );
    }
    Ok(RetentionReport {
        due,
        forced,
        disk_used_percent,
        deleted_segments,
        min_offset,
    })
}
