//! Durability bookkeeping: who waits for which commit-log offset to reach the disk.
//!
//! Owns the queue of durability waiters and the condition variable that wakes the flush
//! thread. Many writers waiting at once are all answered by the one flush that covers them
//! (group commit). This module never flushes anything itself: the store's flush thread does
//! and reports back here. Callbacks always run with no lock of this module held.

use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use crate::storage::error::Error;

/// Called once when a commit-log offset is durable, or with the error that prevented it.
pub type DurableCallback = Box<dyn FnOnce(Result<(), Error>) + Send + 'static>;

/// Why no waiter can be answered with success any more.
#[derive(Debug, Clone)]
enum Failure {
    Poisoned(String),
    Closed,
}

impl Failure {
    fn to_error(&self) -> Error {
        match self {
            Failure::Poisoned(why) => Error::Poisoned(why.clone()),
            Failure::Closed => Error::Closed,
        }
    }
}

#[derive(Default)]
struct State {
    waiters: Vec<(u64, DurableCallback)>,
    kicked: bool,
    stop: bool,
    failed: Option<Failure>,
}

/// Shared between writers (who register waiters) and the flush thread (who answers them).
#[derive(Default)]
pub struct FlushQueue {
    state: Mutex<State>,
    wake: Condvar,
}

impl std::fmt::Debug for FlushQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlushQueue").finish_non_exhaustive()
    }
}

/// What the flush thread should do after waking.
#[derive(Debug, PartialEq, Eq)]
pub enum Wake {
    /// Flush (a waiter arrived, someone asked, or the interval passed).
    Flush,
    /// The store is shutting down.
    Stop,
}

impl FlushQueue {
    /// Registers a waiter for `offset`; answers it at once with the error if the queue has
    /// already failed.
    pub fn push(&self, offset: u64, cb: DurableCallback) {
        let mut st = self.state.lock();
        if let Some(failure) = st.failed.clone() {
            drop(st);
            cb(Err(failure.to_error()));
            return;
        }
        st.waiters.push((offset, cb));
        st.kicked = true;
        drop(st);
        self.wake.notify_one();
    }

    /// Asks the flush thread to flush now.
    pub fn kick(&self) {
        self.state.lock().kicked = true;
        self.wake.notify_one();
    }

    /// Tells the flush thread to exit.
    pub fn stop(&self) {
        self.state.lock().stop = true;
        self.wake.notify_all();
    }

    /// Blocks the flush thread until there is new work or `interval` passes. After a round
    /// that made no progress it sleeps even if waiters remain, so waiters for offsets that
    /// are not written yet cannot make it spin.
    pub fn wait(&self, interval: Duration, progressed: bool) -> Wake {
        let mut st = self.state.lock();
        if !st.stop && !st.kicked && (st.waiters.is_empty() || !progressed) {
            self.wake.wait_for(&mut st, interval);
        }
        st.kicked = false;
        if st.stop {
            Wake::Stop
        } else {
            Wake::Flush
        }
    }

    /// Answers every waiter at or below `durable`; returns how many were answered.
    pub fn complete(&self, durable: u64) -> usize {
        let ready: Vec<DurableCallback> = {
            let mut st = self.state.lock();
            let (ready, pending): (Vec<_>, Vec<_>) =
                st.waiters.drain(..).partition(|(o, _)| *o <= durable);
            st.waiters = pending;
            ready.into_iter().map(|(_, cb)| cb).collect()
        };
        let n = ready.len();
        for cb in ready {
            cb(Ok(()));
        }
        n
    }

    /// Fails every waiter, now and later, because the store is poisoned.
    pub fn poison(&self, why: String) {
        self.fail(Failure::Poisoned(why));
    }

    /// Fails every waiter, now and later, because the store is closing.
    pub fn close(&self) {
        self.fail(Failure::Closed);
    }

    fn fail(&self, failure: Failure) {
        let all: Vec<_> = {
            let mut st = self.state.lock();
            st.failed.get_or_insert(failure.clone());
            st.waiters.drain(..).collect()
        };
        for (_, cb) in all {
            cb(Err(failure.to_error()));
        }
    }
}
