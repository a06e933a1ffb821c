//! Sends that wait for disk work, done off the event loop, before they can be appended.
//!
//! An append on the event loop only writes into files that exist (a `pwrite` into the page
//! cache). When a batch of sends needs more first (a new queue's folder and file, a new
//! consume-queue or index file, the next commit-log segment not yet pre-allocated, or the
//! topic table after a topic was created on first send), that work runs on tokio's
//! blocking pool and the batch waits here; so do the batches after it, so that sends are
//! appended in the order they arrived. Everything else the broker does (pulls, heartbeats,
//! offsets, admin requests) goes on meanwhile. At most `send_message_queue_capacity` batches
//! wait; sends past that are answered SYSTEM_BUSY. It never appends on another thread and
//! never waits on the disk itself.

use std::collections::VecDeque;

use super::send_pull::PendingSends;
use super::topic_table::{TopicSnapshot, TopicTableError};
use super::*;
use crate::storage::Preparation;

/// Batches of sends waiting for disk work, oldest first.
#[derive(Default)]
pub(super) struct DeferredSends {
    waiting: VecDeque<PendingSends>,
    /// Disk work for the oldest batch is running on a blocking thread.
    working: bool,
}

/// Disk work a batch needs before its append.
struct DiskWork {
    topics: Option<TopicSnapshot>,
    store: Option<Preparation>,
}

/// Why disk work failed: the waiting batch gets this answer instead of being appended.
#[derive(Debug, thiserror::Error)]
enum DiskWorkError {
    #[error(transparent)]
    Store(#[from] crate::storage::Error),
    #[error(transparent)]
    Topics(#[from] TopicTableError),
    #[error("the blocking thread preparing the store stopped early: {0}")]
    Lost(String),
}

impl DiskWorkError {
    fn code(&self) -> ResponseCode {
        match self {
            DiskWorkError::Store(e) => message_queue::store_error_code(e),
            _ => ResponseCode::SystemError,
        }
    }
}

impl Broker {
    /// Appends `batch` now if it needs no disk work and nothing waits before it; otherwise
    /// queues it and, if nothing is running, starts the work for the oldest batch.
    pub(super) fn append_or_defer(&mut self, batch: PendingSends, ctx: &mut Context<Self>) {
        if self.deferred.working || !self.deferred.waiting.is_empty() {
            // Bounded like the request mailbox (same unit: one socket read's sends), so a
            // slow disk turns a flood into "system busy" answers, not memory.
            if self.deferred.waiting.len() >= self.config.send_message_queue_capacity {
                batch.fail_all(
                    ResponseCode::SystemBusy,
                    "broker busy: earlier sends are waiting for the disk to create a file; retry or use another broker",
                );
                return;
            }
            self.deferred.waiting.push_back(batch);
            return;
        }
        match self.disk_work_for(&batch) {
            None => self.append_now(batch),
            Some(work) => {
                self.deferred.waiting.push_back(batch);
                self.start_disk_work(work, ctx);
            }
        }
    }

    /// The disk work `batch` needs, if any. Cheap: no system call.
    fn disk_work_for(&mut self, batch: &PendingSends) -> Option<DiskWork> {
        let topics = if std::mem::take(&mut self.topics_unsaved) {
            match self.topics.snapshot() {
                Ok(s) => Some(s),
                Err(e) => {
                    tracing::error!(error = %e, "cannot serialise the topic table");
                    None
                }
            }
        } else {
            None
        };
        let store = self.store.preparation_for(&batch.msgs);
        (topics.is_some() || store.is_some()).then_some(DiskWork { topics, store })
    }

    fn start_disk_work(&mut self, work: DiskWork, ctx: &mut Context<Self>) {
        self.deferred.working = true;
        let store = Arc::clone(&self.store);
        let saving_topics = work.topics.is_some();
        let job = async move {
            if let Some(topics) = work.topics {
                topics.save().await?;
            }
            if let Some(prep) = work.store {
                tokio::task::spawn_blocking(move || store.prepare(&prep))
                    .await
                    .map_err(|e| DiskWorkError::Lost(e.to_string()))??;
            }
            Ok::<(), DiskWorkError>(())
        };
        ctx.spawn(job.into_actor(self).map(move |done, act, ctx| {
            act.deferred.working = false;
            if let Err(e) = done {
                tracing::warn!(error = %e, "disk work before an append failed; its sends are refused");
                if saving_topics {
                    act.topics_unsaved = true;
                }
                if let Some(batch) = act.deferred.waiting.pop_front() {
                    batch.fail_all(e.code(), &e.to_string());
                }
            }
            act.append_waiting(ctx);
        }));
    }

    /// Appends waiting batches in order until one needs disk work again.
    fn append_waiting(&mut self, ctx: &mut Context<Self>) {
        while let Some(batch) = self.deferred.waiting.pop_front() {
            if let Some(work) = self.disk_work_for(&batch) {
                self.deferred.waiting.push_front(batch);
                self.start_disk_work(work, ctx);
                return;
            }
            self.append_now(batch);
            // Outside a request batch's handler, so its end-of-batch check does not see
            // this append: a poisoned store must stop the broker here too.
            self.stop_if_store_poisoned(ctx);
        }
    }

    /// Refuses every waiting send (SERVICE_NOT_AVAILABLE: the producer tries another
    /// broker). For a restart: the disk work was spawned in the old context and went with it.
    pub(super) fn refuse_deferred_sends(&mut self, why: &str) {
        if std::mem::take(&mut self.deferred.working) {
            // The lost work may have been saving the topic table: save it again next time.
            self.topics_unsaved = true;
        }
        for batch in self.deferred.waiting.drain(..) {
            batch.fail_all(ResponseCode::ServiceNotAvailable, why);
        }
    }

    /// Saves the topic table off the event loop, then answers `inb` (an admin request that
    /// changed it) with success or the reason it could not be saved.
    pub(super) fn answer_once_saved(&mut self, inb: Inbound) {
        let snapshot = match self.topics.snapshot() {
            Ok(s) => s,
            Err(e) => return inb.fail(ResponseCode::SystemError, e.to_string()),
        };
        actix::spawn(async move {
            match snapshot.save().await {
                Ok(()) => {
                    requests::response(&inb, ResponseCode::Success, &NoHeader {}, Bytes::new())
                }
                Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
            }
        });
    }
}
