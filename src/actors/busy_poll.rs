//! Opt-in busy-polling of an actor thread's event loop while traffic flows, for latency.
//!
//! An idle actor thread sleeps in `epoll_wait`, and the next request pays for waking it: an
//! interrupt to a halted CPU, a context switch and cold caches. On this project's virtual
//! machine that is most of a 300 µs round trip at 5,000 requests/s. With busy-polling on, a
//! task on the thread keeps yielding for `budget` after the last frame arrived. The runtime
//! then polls its sockets and timers (`epoll_wait` with a zero timeout) between rounds
//! instead of sleeping, so a request arriving inside the budget is read at once. After
//! `budget` without a frame the task sleeps until the next one, so an idle process costs
//! nothing; the price is a busy core while traffic flows.
//!
//! Connections report traffic with [`note_activity`]: every frame counts, requests and
//! answers alike (a broker's name-server answers too), so a budget longer than the gaps
//! between heartbeats keeps an otherwise idle process polling. This module never reads sockets or
//! touches actor state, and unless [`start`] is called with a non-zero budget it runs no
//! task and reads no clock.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

thread_local! {
    /// Frames seen on this thread; the poller compares it with what it saw last.
    static ACTIVITY: Cell<u64> = const { Cell::new(0) };
    /// The sleeping poller, woken by the next frame.
    static SLEEPER: RefCell<Option<Waker>> = const { RefCell::new(None) };
    /// What the poller of this thread is doing.
    static STATE: Cell<PollerState> = const { Cell::new(PollerState::Off) };
    /// The actix `System` whose runtime runs this thread's poller.
    static OWNER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// What the busy-poller of the current thread is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PollerState {
    /// No poller runs on this thread (never started, or its runtime stopped).
    Off,
    /// Traffic was seen within the budget: the thread polls instead of sleeping.
    Polling,
    /// No traffic for the whole budget: the poller waits for the next frame.
    Sleeping,
}

/// Records that a frame arrived on this thread, waking the poller if it sleeps. With
/// busy-polling off this is one thread-local increment.
pub fn note_activity() {
    ACTIVITY.with(|a| a.set(a.get().wrapping_add(1)));
    if let Some(waker) = SLEEPER.with(|s| s.borrow_mut().take()) {
        waker.wake();
    }
}

/// Starts busy-polling the current actor thread (an actix `System` or `Arbiter`): after each
/// frame, the thread polls for `budget` before it may sleep. A zero budget does nothing, and
/// so does a call on a thread whose poller already runs (the first budget stays). Must be
/// called from inside the actix runtime.
pub fn start(budget: Duration) {
    let system = actix_rt::System::try_current().map(|s| s.id());
    if budget.is_zero() || (state() != PollerState::Off && OWNER.with(Cell::get) == system) {
        return;
    }
    // A poller left from an earlier runtime on this thread is never polled again.
    OWNER.with(|o| o.set(system));
    STATE.with(|s| s.set(PollerState::Sleeping));
    // Frames that arrive before the task first runs count as traffic.
    let seen = ACTIVITY.with(Cell::get);
    actix_rt::spawn(poll_while_busy(budget, system, seen));
}

/// What the busy-poller of the current thread is doing.
pub fn state() -> PollerState {
    STATE.with(Cell::get)
}

/// Marks the poller off when its task ends, unless a newer runtime on the thread already
/// started its own.
struct OffWhenDropped(Option<usize>);

impl Drop for OffWhenDropped {
    fn drop(&mut self) {
        if OWNER.with(Cell::get) == self.0 {
            STATE.with(|s| s.set(PollerState::Off));
            SLEEPER.with(|s| s.borrow_mut().take());
        }
    }
}

async fn poll_while_busy(budget: Duration, system: Option<usize>, mut seen: u64) {
    let _off = OffWhenDropped(system);
    // No traffic yet: sleep until the first frame rather than poll a budget for nothing.
    let mut last_traffic = Instant::now()
        .checked_sub(budget)
        .unwrap_or_else(Instant::now);
    loop {
        if OWNER.with(Cell::get) != system {
            // A newer runtime on this thread started its own poller; this one is stale.
            return;
        }
        let now_seen = ACTIVITY.with(Cell::get);
        if now_seen != seen {
            seen = now_seen;
            last_traffic = Instant::now();
        }
        if last_traffic.elapsed() < budget {
            STATE.with(|s| s.set(PollerState::Polling));
            // Let any other runnable thread on this core (the store's flush thread, say) go
            // first: polling must only use time nobody else wants.
            std::thread::yield_now();
            // Yielding puts this task behind a zero-timeout poll of the I/O driver, so the
            // runtime checks its sockets and timers on every round instead of sleeping.
            tokio::task::yield_now().await;
            continue;
        }
        STATE.with(|s| s.set(PollerState::Sleeping));
        poll_fn(|cx| {
            if ACTIVITY.with(Cell::get) != seen {
                return Poll::Ready(());
            }
            SLEEPER.with(|s| *s.borrow_mut() = Some(cx.waker().clone()));
            Poll::Pending
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Waits (yielding to the runtime, up to 5 s) until the poller is in `want`.
    async fn wait_for(want: PollerState) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while state() != want {
            assert!(
                Instant::now() < deadline,
                "poller stayed {:?}, expected {want:?}",
                state()
            );
            actix_rt::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[actix_rt::test]
    async fn polls_after_traffic_and_sleeps_when_it_stops() {
        assert_eq!(state(), PollerState::Off);
        // A budget far above the checks' 1 ms steps, so a busy test machine cannot make
        // them miss the polling window.
        start(Duration::from_millis(200));
        wait_for(PollerState::Sleeping).await;

        note_activity();
        wait_for(PollerState::Polling).await;
        // Traffic that keeps coming keeps it polling past one budget.
        let until = Instant::now() + Duration::from_millis(500);
        while Instant::now() < until {
            note_activity();
            tokio::task::yield_now().await;
            assert_eq!(state(), PollerState::Polling);
        }
        wait_for(PollerState::Sleeping).await;

        // The next frame wakes it again.
        note_activity();
        wait_for(PollerState::Polling).await;
        wait_for(PollerState::Sleeping).await;
    }

    #[actix_rt::test]
    async fn a_zero_budget_starts_nothing() {
        start(Duration::ZERO);
        actix_rt::time::sleep(Duration::from_millis(5)).await;
        note_activity();
        assert_eq!(state(), PollerState::Off);
    }

    #[test]
    fn a_new_runtime_on_the_thread_gets_its_own_poller() {
        let system = actix_rt::System::new();
        system.block_on(async {
            start(Duration::from_millis(5));
            wait_for(PollerState::Sleeping).await;
        });
        drop(system);
        // The old poller can never run again; the new runtime must not count on it.
        let system = actix_rt::System::new();
        system.block_on(async {
            start(Duration::from_millis(5));
            note_activity();
            wait_for(PollerState::Polling).await;
        });
    }
}
