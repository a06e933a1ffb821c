//! The confirmed offset: the commit-log offset up to which every record is as safe as the
//! broker's roles promise, and the only point past which nothing is shown to a consumer.
//!
//! A record is confirmed once it is written (always), flushed (when the store is asked to
//! confirm on flush: `sync_flush` on a master), and held by enough slaves (when the broker
//! says so: `sync_master`; the broker reports the slaves' position with
//! [`MessageStore::set_replicated`]). Reads for consumers (pulls, queue ends, lookups by key
//! or id) stop at it, so a consumer never sees a message whose sender was not, or could
//! not yet be, told `SEND_OK`. This module owns the bookkeeping only; who moves the
//! replicated offset, and who wakes the pulls held while it moves, is the broker's.

use super::*;

/// What a record needs besides being written before it is confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConfirmPolicy {
    /// It must be flushed to disk (a `sync_flush` master).
    pub flushed: bool,
    /// Enough slaves must hold it (a `sync_master`).
    pub replicated: bool,
}

/// The store's side of the confirmed offset: the policy and the slaves' position.
#[derive(Debug, Default)]
pub(crate) struct Confirmation {
    flushed: AtomicBool,
    replicated: AtomicBool,
    /// Commit-log offset below which enough slaves hold every record.
    replica_offset: AtomicU64,
}

impl Confirmation {
    pub(crate) fn new(policy: ConfirmPolicy) -> Self {
        let c = Confirmation::default();
        c.set(policy);
        c
    }

    fn set(&self, policy: ConfirmPolicy) {
        self.flushed.store(policy.flushed, Ordering::Release);
        self.replicated.store(policy.replicated, Ordering::Release);
    }
}

impl MessageStore {
    /// Replaces what a record needs before it is confirmed. A store opens with
    /// `flushed = (flush_disk_type == sync_flush)` and `replicated = false`; a broker changes
    /// it for its role (a slave shows what its master shipped once written; a `sync_master`
    /// waits for its slaves).
    pub fn set_confirm_policy(&self, policy: ConfirmPolicy) {
        self.shared.confirmation.set(policy);
    }

    /// What a record needs before it is confirmed.
    pub fn confirm_policy(&self) -> ConfirmPolicy {
        let c = &self.shared.confirmation;
        ConfirmPolicy {
            flushed: c.flushed.load(Ordering::Acquire),
            replicated: c.replicated.load(Ordering::Acquire),
        }
    }

    /// Records that enough slaves hold the log below `offset` (never moves back).
    pub fn set_replicated(&self, offset: u64) {
        self.shared
            .confirmation
            .replica_offset
            .fetch_max(offset, Ordering::AcqRel);
    }

    /// The offset below which enough slaves hold every record (as last reported).
    pub fn replicated_offset(&self) -> u64 {
        self.shared
            .confirmation
            .replica_offset
            .load(Ordering::Acquire)
    }

    /// The commit-log offset below which every record is confirmed (see the module doc).
    pub fn confirmed_offset(&self) -> u64 {
        self.shared.confirmed_offset()
    }
}

impl Shared {
    pub(crate) fn confirmed_offset(&self) -> u64 {
        // Read the written end first: the other bounds only move up, so the minimum never
        // claims a record that was not written when it was computed.
        let mut confirmed = self.commit_log.max_offset();
        let c = &self.confirmation;
        if c.flushed.load(Ordering::Acquire) {
            confirmed = confirmed.min(self.commit_log.flushed_offset());
        }
        if c.replicated.load(Ordering::Acquire) {
            confirmed = confirmed.min(c.replica_offset.load(Ordering::Acquire));
        }
        confirmed
    }

    /// The end of a queue as consumers see it: the first queue offset whose record is not
    /// confirmed yet (the queue's end when all are). Entries' log offsets grow with their
    /// queue offsets, so this is a binary search over the unconfirmed tail; at rest it reads
    /// one entry.
    pub(crate) fn visible_end(&self, cq: &ConsumeQueue, confirmed: u64) -> u64 {
        let (min, max) = (cq.min_offset(), cq.max_offset());
        let confirmed_at = |n: u64| {
            cq.get(n)
                .is_none_or(|e| e.physical_offset + e.size as u64 <= confirmed)
        };
        if max <= min || confirmed_at(max - 1) {
            return max;
        }
        // Invariant: everything below `lo` is confirmed, `hi` is not.
        let (mut lo, mut hi) = (min, max - 1);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if confirmed_at(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }
}
