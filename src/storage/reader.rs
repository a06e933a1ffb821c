//! Pull-style reads: turning (queue, offset, limits, tag filter) into stored records.
//!
//! Mirrors RocketMQ's `getMessage`: status codes for every edge (empty queue, offset too
//! small, caught up, past the end), tag filtering on the hash kept in the consume queue, and
//! records handed out as zero-copy views of the mapped log. Never copies a body.

use std::sync::atomic::Ordering;

use crate::storage::consume_queue::CqEntry;
use crate::storage::damage::{DamageKind, DamagedRange, FoundBy};
use crate::storage::error::Error;
use crate::storage::record;
use crate::storage::store::{now_ms, GetResult, GetStatus, MessageStore, Shared};

/// Upper bound on entries examined per call, so a selective filter over a long queue
/// cannot turn one pull into a full scan.
pub const MAX_FILTER_SCAN: u64 = 16_000;

pub(crate) fn get_messages(
    store: &MessageStore,
    topic: &str,
    queue_id: u32,
    offset: u64,
    max_msgs: usize,
    max_bytes: usize,
    filter: Option<&dyn Fn(i64) -> bool>,
) -> GetResult {
    let shared = store.shared();
    let done = |status, next_offset, min_offset, max_offset| GetResult {
        status,
        messages: Vec::new(),
        next_offset,
        min_offset,
        max_offset,
    };
    let Some(cq) = shared.queue(topic, queue_id) else {
        return done(GetStatus::NoMessageInQueue, 0, 0, 0);
    };
    // Consumers see confirmed records only (see `store::confirm`).
    let (min, max) = (
        cq.min_offset(),
        shared.visible_end(&cq, shared.confirmed_offset()),
    );
    // Past the confirmed end but within the written one (say, a `sync_master` restarted
    // before its slave is back: nothing is confirmed yet). The offset is not wrong, and
    // correcting it would send the consumer back to consume again.
    if offset > max && offset <= cq.max_offset() {
        return done(GetStatus::NotConfirmedYet, offset, min, max);
    }
    if max == 0 {
        return done(GetStatus::NoMessageInQueue, 0, min, max);
    }
    if offset < min {
        return done(GetStatus::OffsetTooSmall, min, min, max);
    }
    if offset == max {
        return done(GetStatus::OffsetOverflowOne, offset, min, max);
    }
    if offset > max {
        return done(GetStatus::OffsetOverflowBadly, max, min, max);
    }
    let mut messages = Vec::new();
    let mut bytes = 0usize;
    let mut removing = false;
    let mut next = offset;
    let limit = offset.saturating_add(MAX_FILTER_SCAN).min(max);
    while next < limit && messages.len() < max_msgs {
        let Some(entry) = cq.get(next) else {
            next += 1;
            continue;
        };
        if filter.is_some_and(|f| !f(entry.tags_code)) {
            next += 1;
            continue;
        }
        if !messages.is_empty() && bytes + entry.size as usize > max_bytes {
            break;
        }
        match shared
            .commit_log
            .read(entry.physical_offset, entry.size as usize)
        {
            Ok(raw) => match verify(&raw, entry.physical_offset) {
                Ok(()) => {
                    bytes += raw.len();
                    messages.push(raw);
                }
                Err(reason) => {
                    // Handing it out would stall the consumer on a record it cannot
                    // decode; skipping costs exactly this record, and says so.
                    skip_damaged(shared, topic, queue_id, next, &entry, reason);
                }
            },
            Err(Error::OffsetMoved { .. }) => removing = true,
            Err(e) => {
                // Skip it: stopping here would make the client ask for this entry forever.
                tracing::error!(topic, queue_id, offset = next, error = %e, "consume-queue entry points at unreadable log; skipping it");
            }
        }
        next += 1;
    }
    let status = if !messages.is_empty() {
        GetStatus::Found
    } else if removing {
        GetStatus::MessageWasRemoving
    } else {
        GetStatus::NoMatchedMessage
    };
    GetResult {
        status,
        messages,
        next_offset: next,
        min_offset: cq.min_offset(),
        max_offset: max,
    }
}

/// Checks a record before it goes to a consumer: that it is the record the queue entry
/// points at, intact (size, magic, stored offset and record CRC; see
/// [`record::check_stored`]). One CRC pass over a kilobyte costs well under a microsecond;
/// a consumer stuck for good on a damaged record costs far more.
fn verify(raw: &[u8], physical_offset: u64) -> Result<(), String> {
    record::check_stored(raw, physical_offset).map_err(|e| e.to_string())
}

fn skip_damaged(
    shared: &Shared,
    topic: &str,
    queue_id: u32,
    queue_offset: u64,
    entry: &CqEntry,
    reason: String,
) {
    shared
        .stats
        .damaged_records_skipped
        .fetch_add(1, Ordering::Relaxed);
    let new = shared.damage.record(DamagedRange {
        from: entry.physical_offset,
        to: entry.physical_offset + entry.size as u64,
        kind: DamageKind::Corrupt,
        found_by: FoundBy::Read,
        found_at: now_ms(),
        reason: format!("{topic}:{queue_id} queue offset {queue_offset}: {reason}"),
    });
    if !new {
        tracing::debug!(
            topic,
            queue_id,
            queue_offset,
            "skipping a record already known damaged"
        );
    }
}
