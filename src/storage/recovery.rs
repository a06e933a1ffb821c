//! Start-up recovery: decide where the commit log ends and bring the derived consume queues
//! and index back in line with it.
//!
//! After a clean shutdown the checkpoint is trusted once the last record before it checks
//! out and nothing follows it, and no old segment is read. Otherwise (an unclean stop, a
//! torn or damaged last record, no usable checkpoint) the log is walked from the segment
//! holding the checkpoint (or from the active segment, whichever is earlier); damage in the
//! middle is stepped over and recorded in the damage log, a torn tail is cut, and every
//! record from there on is dispatched again through the store's one dispatch path.
//! This module never appends new data and never deletes a segment that holds a valid record.

use std::sync::atomic::Ordering;

use crate::storage::checkpoint::Checkpoint;
use crate::storage::damage::{DamageKind, DamagedRange, FoundBy};
use crate::storage::error::Result;
use crate::storage::store::{now_ms, Dispatch, Shared};

pub(crate) fn recover(shared: &Shared, clean: bool) -> Result<()> {
    let log = &shared.commit_log;
    let cp = Checkpoint::load(&shared.root);
    let segs = log.segments();
    let (Some(first), Some(last)) = (segs.first(), segs.last()) else {
        // No log at all: nothing a queue points at can be read.
        for cq in shared.all_queues() {
            cq.truncate_from_physical(0)?;
        }
        shared.stats.opened_clean.store(clean, Ordering::Relaxed);
        return Ok(());
    };
    let log_start = first.from_offset();
    let log_limit = last.from_offset() + last.size() as u64;

    let trusted = cp
        .filter(|c| clean && (log_start..=log_limit).contains(&c.commit_log))
        .filter(|c| match log.check_tail(c.last_record, c.commit_log) {
            Ok(()) => true,
            Err(why) => {
                tracing::warn!(reason = %why, "the log's end does not match the checkpoint; scanning it");
                false
            }
        });
    let end = if let Some(cp) = trusted {
        log.set_end(cp.commit_log, false)?;
        let replay_from = cp
            .consume_queue
            .min(cp.index)
            .clamp(log_start, cp.commit_log);
        // After a clean stop no entry points past the checkpoint: only a replay needs the
        // queues cut (reading every queue here made a start with many queues slow).
        if replay_from < cp.commit_log {
            for cq in shared.all_queues() {
                cq.truncate_from_physical(replay_from)?;
            }
            replay(shared, replay_from, cp.commit_log, cp.index)?;
        }
        log.set_last_record(cp.last_record);
        shared.stats.opened_clean.store(true, Ordering::Relaxed);
        cp.commit_log
    } else {
        if clean {
            tracing::warn!("no usable checkpoint; scanning the commit log");
        } else {
            tracing::warn!("last shutdown was not clean; recovering the commit log tail");
        }
        let base = cp
            .map(|c| c.commit_log.min(c.consume_queue).min(c.index))
            .unwrap_or(log_start)
            .clamp(log_start, last.from_offset());
        let start = log.segment_start(base);
        for cq in shared.all_queues() {
            cq.truncate_from_physical(start)?;
        }
        let (end, last_record) = replay(shared, start, u64::MAX, cp.map(|c| c.index).unwrap_or(0))?;
        log.set_end(end, true)?;
        log.set_last_record(last_record);
        // The recovered tail and the zeroed rest may never have reached the disk; they must
        // before anything after them is acknowledged as durable.
        log.sync_from(start)?;
        shared.stats.opened_clean.store(false, Ordering::Relaxed);
        tracing::info!(end, "commit log recovered");
        end
    };
    // Queues may still point below a log minimum that retention moved; applied lazily.
    for cq in shared.all_queues() {
        cq.set_log_min(log_start);
    }
    shared.dispatched.store(end, Ordering::Release);
    // Entries re-indexed just now are not on disk yet: keep the old mark until a flush.
    let index_on_disk = cp.map(|c| c.index).unwrap_or(0).min(end);
    shared.index_flushed.store(index_on_disk, Ordering::Release);
    Ok(())
}

/// Walks good records from `start` and dispatches each one; returns where the good part of
/// the log ends and where its last record starts. Damaged ranges the walk stepped over go
/// to the damage log. Index entries are only re-added from `index_from` on (earlier ones
/// are on disk already; duplicates would be harmless but wasteful).
fn replay(shared: &Shared, start: u64, limit: u64, index_from: u64) -> Result<(u64, Option<u64>)> {
    let mut failed = None;
    let outcome = shared.commit_log.scan(start, limit, |view| {
        if failed.is_none() {
            let with_index = view.physical_offset >= index_from;
            if let Err(e) = shared.dispatch(&Dispatch::from_view(view), with_index, true) {
                failed = Some(e);
            }
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    shared
        .stats
        .open_records_scanned
        .fetch_add(outcome.records, Ordering::Relaxed);
    shared
        .stats
        .open_segments_scanned
        .fetch_add(outcome.segments, Ordering::Relaxed);
    for damage in &outcome.damaged {
        shared.damage.record_blocking(DamagedRange {
            from: damage.from,
            to: damage.to,
            kind: if damage.torn_tail {
                DamageKind::TornTail
            } else {
                DamageKind::Corrupt
            },
            found_by: FoundBy::Recovery,
            found_at: now_ms(),
            reason: damage.reason.clone(),
        });
    }
    Ok((outcome.end, outcome.last_record))
}
