//! The store's background threads: the flush thread (commit-log flushes, durability
//! answers) and the housekeeping thread (consume-queue, index and checkpoint flushes and
//! retention), and the stop signal they sleep on. Nothing here runs on a caller's thread.

use super::*;

/// A stop flag a background thread can sleep on.
#[derive(Default)]
pub(crate) struct StopSignal {
    stopped: Mutex<bool>,
    cv: parking_lot::Condvar,
}

impl StopSignal {
    /// Sleeps up to `d`; returns true once stopped.
    pub(super) fn sleep(&self, d: Duration) -> bool {
        let mut s = self.stopped.lock();
        if !*s {
            self.cv.wait_for(&mut s, d);
        }
        *s
    }

    pub(super) fn stop(&self) {
        *self.stopped.lock() = true;
        self.cv.notify_all();
    }
}

/// Joins a background thread unless it is the calling thread (a callback running on the
/// flush thread may drop the last handle to the store).
pub(super) fn join_quietly(handle: Option<JoinHandle<()>>, name: &str) {
    if let Some(h) = handle {
        if h.thread().id() == std::thread::current().id() {
            return;
        }
        if h.join().is_err() {
            tracing::error!(thread = name, "store thread panicked");
        }
    }
}

/// The index is flushed on every this-many housekeeping rounds (see `flush_derived_with`).
const INDEX_FLUSH_EVERY: u64 = 10;

impl Shared {
    /// Flushes the commit log and answers durability waiters.
    pub(super) fn flush_commit_log(&self) -> Result<u64> {
        let before = self.commit_log.flushed_offset();
        match self.commit_log.flush() {
            Ok(durable) => {
                if durable > before {
                    self.stats
                        .commit_log_flushes
                        .fetch_add(1, Ordering::Relaxed);
                }
                self.flush_queue.complete(durable);
                Ok(durable)
            }
            Err(e) => {
                self.poison(e.to_string());
                Err(e)
            }
        }
    }

    /// Flushes derived data and records how far it goes in the checkpoint.
    pub(super) fn flush_derived(&self) -> Result<()> {
        self.flush_derived_with(true)
    }

    /// Flushes consume queues and, with `with_index`, the index, then writes the checkpoint.
    /// The index's msync walks a large random-access mapping and interrupts the appender
    /// (TLB shootdowns), so the housekeeping timer flushes it less often; the checkpoint
    /// keeps the index's own position, and recovery re-indexes from there.
    pub(super) fn flush_derived_with(&self, with_index: bool) -> Result<()> {
        let mut last_written = self.derived_lock.lock();
        let dispatched = self.dispatched.load(Ordering::Acquire);
        for cq in self.all_queues() {
            cq.flush()?;
        }
        let index_flushed = match &self.index {
            Some(index) if with_index => {
                index.flush()?;
                self.index_flushed.store(dispatched, Ordering::Release);
                dispatched
            }
            Some(_) => self.index_flushed.load(Ordering::Acquire),
            None => dispatched,
        };
        let flushed = self.commit_log.flushed_offset();
        let cp = Checkpoint {
            commit_log: flushed,
            // Meaningful only when that record ends at `flushed`, as it does at a clean
            // shutdown; a start checks that before trusting it.
            last_record: self.commit_log.last_record().filter(|at| *at < flushed),
            consume_queue: dispatched,
            index: index_flushed,
            written_at: now_ms(),
        };
        let positions = [cp.commit_log, cp.consume_queue, cp.index];
        if *last_written == Some(positions) {
            return Ok(());
        }
        cp.store(&self.root)?;
        *last_written = Some(positions);
        Ok(())
    }

    pub(super) fn flush_loop(&self) {
        let interval = match self.config.flush_disk_type {
            FlushDiskType::AsyncFlush => {
                Duration::from_millis(self.config.flush_interval_commit_log)
            }
            // With waiters the thread wakes at once; the timer only bounds idle sleep.
            FlushDiskType::SyncFlush => {
                Duration::from_millis(self.config.flush_interval_commit_log.min(10))
            }
        };
        let mut progressed = false;
        loop {
            if self.flush_queue.wait(interval, progressed) == Wake::Stop {
                return;
            }
            let poisoned = self.poisoned.lock().clone();
            if let Some(why) = poisoned {
                self.flush_queue.poison(why);
                progressed = false;
                continue;
            }
            let before = self.commit_log.flushed_offset();
            progressed = matches!(self.flush_commit_log(), Ok(after) if after > before);
        }
    }

    pub(super) fn housekeeping_loop(&self) {
        let derived_every = Duration::from_millis(self.config.flush_interval_consume_queue);
        let clean_every = Duration::from_millis(self.config.clean_resource_interval);
        let tick = derived_every.min(clean_every);
        let mut last_clean = Instant::now();
        let mut round = 0u64;
        while !self.housekeeping.sleep(tick) {
            if self.poisoned.lock().is_some() {
                continue;
            }
            round += 1;
            self.retry_after_no_space();
            if self.disk_full_percent.load(Ordering::Relaxed) != 0 {
                self.remind_disk_full();
            }
            if let Err(e) = self.flush_derived_with(round.is_multiple_of(INDEX_FLUSH_EVERY)) {
                if e.is_no_space() {
                    // Derived data and the checkpoint are rebuilt from the log; the
                    // checkpoint simply stays behind until there is space again.
                    self.write_failed(e);
                } else {
                    self.poison(format!("flushing queues, index or checkpoint: {e}"));
                }
                continue;
            }
            if last_clean.elapsed() >= clean_every {
                last_clean = Instant::now();
                if let Err(e) = self.retention_round(SystemTime::now()) {
                    tracing::warn!(error = %e, "retention run failed");
                }
            }
        }
    }
}
