//! The broker's write side, and what its supervision does: reopen a poisoned store.
//!
//! A poisoned store (a flush or a dispatch failed; see [`crate::storage::Error::Poisoned`])
//! refuses writes for good, because retrying a failed write can lose data silently. Rather
//! than refuse sends until someone restarts the process, the broker treats it as the fatal
//! error it is: once a batch of requests has been handled and the store reports itself
//! poisoned, the broker stops, and its supervisor restarts it. `restarting()` closes the
//! poisoned handle and opens the same folder again on a thread of its own; the open runs
//! recovery from the commit log, which re-derives whatever the failed write left half done.
//!
//! While the store reopens, sends are answered SERVICE_NOT_AVAILABLE so producers move to
//! another broker; everything else goes on, reads through the old handle (a closed store
//! still reads: its files stay mapped). Once the new handle is open it replaces the old one
//! here and in every queue actor ([`StoreReopened`]). If the reopen fails, or the new store
//! is poisoned again within [`REOPEN_AT_MOST_EVERY`] of the reopen (the fault is still
//! there), the broker logs what to do and stays read-only, on the old handle, until it is
//! restarted.
//!
//! A restart keeps the broker's state (topic table, actor maps, links, the mailbox); the
//! timers and futures of the old context are gone, and `started()` runs again, arming the
//! registration timer once in the new context and registering at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::Broker;
use crate::actors::server::message_queue::StoreReopened;
use crate::storage::{MessageStore, StoreConfig};

/// A store poisoned again this soon after being reopened is not reopened again: the fault
/// is still there, and reopening in a loop would only hide it from the operator.
pub const REOPEN_AT_MOST_EVERY: Duration = Duration::from_secs(60);

/// Whether the broker takes sends, and if not, why (the text sent to producers).
#[derive(Debug, Default)]
pub(super) struct WriteSide {
    state: State,
    /// When the store was last reopened (see [`REOPEN_AT_MOST_EVERY`]).
    last_reopen: Option<Instant>,
}

#[derive(Debug, Default)]
enum State {
    /// Sends go to the store.
    #[default]
    Open,
    /// The poisoned store is being closed and reopened.
    Reopening { refusal: String },
    /// The store could not be reopened: reads only, until the broker is restarted.
    ReadOnly { refusal: String },
}

impl WriteSide {
    /// Why sends are refused now, or `None` while the write side is open.
    pub(super) fn refusal(&self) -> Option<&str> {
        match &self.state {
            State::Open => None,
            State::Reopening { refusal } | State::ReadOnly { refusal } => Some(refusal),
        }
    }

    fn is_open(&self) -> bool {
        matches!(self.state, State::Open)
    }
}

impl Broker {
    /// The broker's fatal path: called after each batch of requests (whose appends may have
    /// poisoned the store, or found it poisoned by a background flush). A poisoned store
    /// stops the broker, and the supervisor's restart reopens it (see the module doc).
    pub(super) fn stop_if_store_poisoned(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down || !self.write_side.is_open() {
            return;
        }
        if let Some(why) = self.store.poisoned() {
            tracing::error!(broker = %self.config.broker_name, reason = %why,
                "message store poisoned: stopping the broker's write side; its supervisor reopens the store");
            ctx.stop();
        }
    }

    /// Why sends are refused now (the write side's state, else the store's), for operators'
    /// status views.
    pub(super) fn write_refusal(&self) -> Option<String> {
        self.write_side
            .refusal()
            .map(str::to_owned)
            .or_else(|| self.store.write_refusal())
    }

    /// Closes the poisoned store and opens it again off the event loop; sends are refused
    /// until [`Broker::store_reopened`] has the answer.
    fn reopen_store(&mut self, why: String, ctx: &mut Context<Self>) {
        let name = self.config.broker_name.clone();
        let root = self.config.store.store_path_root_dir.display().to_string();
        if let Some(at) = self
            .write_side
            .last_reopen
            .filter(|at| at.elapsed() < REOPEN_AT_MOST_EVERY)
        {
            let refusal = format!(
                "broker {name} is read-only: its store was poisoned again {} s after it was \
                 reopened ({why}); check the disk under {root} and restart the broker",
                at.elapsed().as_secs()
            );
            tracing::error!(broker = %name, "{refusal}");
            self.write_side.state = State::ReadOnly { refusal };
            return;
        }
        tracing::warn!(broker = %name, store = %root, "reopening the poisoned store; sends are refused until recovery is done");
        self.write_side.state = State::Reopening {
            refusal: format!(
                "broker {name} is reopening its store after a write failure ({why}); \
                 send to another broker"
            ),
        };
        self.write_side.last_reopen = Some(Instant::now());
        let old = Arc::clone(&self.store);
        let (config, host) = (self.config.store.clone(), old.store_host());
        ctx.spawn(
            close_and_reopen(old, config, host)
                .into_actor(self)
                .map(|opened, act, _| act.store_reopened(opened)),
        );
    }

    /// Puts the reopened store to work, or stays read-only on the old one.
    fn store_reopened(&mut self, opened: Result<MessageStore, crate::storage::Error>) {
        let name = self.config.broker_name.clone();
        let store = match opened {
            Ok(store) => Arc::new(store),
            Err(e) => {
                let refusal = format!(
                    "broker {name} is read-only: its store was poisoned and could not be \
                     reopened ({e}); fix the cause under {} and restart the broker",
                    self.config.store.store_path_root_dir.display()
                );
                tracing::error!(broker = %name, "{refusal}");
                self.write_side.state = State::ReadOnly { refusal };
                return;
            }
        };
        if self.shutting_down {
            // The shutdown closed the old handle while this one was opening: close this one
            // too, or the next start would take it for a crash and scan the log again.
            let closing = std::thread::Builder::new()
                .name("actimq-store-close".into())
                .spawn(move || store.shutdown());
            if let Err(e) = closing {
                tracing::warn!(error = %e, "cannot close the reopened store; the next start recovers it");
            }
            return;
        }
        self.store = Arc::clone(&store);
        self.replication_store_reopened(&store);
        for q in self.queues.values().flat_map(|t| t.values()) {
            q.addr.do_send(StoreReopened(Arc::clone(&store)));
        }
        self.write_side.state = State::Open;
        tracing::warn!(broker = %name, opened_clean = store.stats().opened_clean.load(std::sync::atomic::Ordering::Relaxed),
            "store reopened after recovery: sends accepted again");
    }
}

impl Supervised for Broker {
    fn restarting(&mut self, ctx: &mut Context<Self>) {
        // A quick re-registration scheduled in the old context went with it, and so did the
        // disk work sends were waiting for.
        self.registration_retry = false;
        self.refuse_deferred_sends("the broker is restarting; send again");
        if !self.write_side.is_open() {
            return;
        }
        if let Some(why) = self.store.poisoned() {
            self.reopen_store(why, ctx);
        }
    }
}

/// Closes `old` and opens its folder again, on a thread of its own: the close flushes and the
/// open runs recovery, both blocking, and the event loop must keep serving reads meanwhile.
/// The new handle can only open once the old one has let go of the folder's lock, so both
/// run on the one thread, in order.
async fn close_and_reopen(
    old: Arc<MessageStore>,
    config: StoreConfig,
    store_host: SocketAddr,
) -> Result<MessageStore, crate::storage::Error> {
    let root = config.store_path_root_dir.clone();
    super::on_store_thread("actimq-store-reopen", root, move || {
        if let Err(e) = old.close_for_reopen() {
            // Expected on the disk that poisoned it; recovery repairs what it left.
            tracing::warn!(error = %e, "the poisoned store did not close cleanly");
        }
        drop(old);
        MessageStore::open(config, store_host)
    })
    .await
}
