//! QueuePuller actor: one per message queue a push consumer owns.
//!
//! Owns the queue's pull loop and its process queue (messages pulled and not yet consumed).
//! It long-polls the broker, filters by exact tag, hands messages to the listener (several
//! batches at once in concurrent mode; one batch at a time, in queue order, in orderly mode),
//! sends a failed message (`ReconsumeLater`, a panic, a call past `consume_timeout`) back to
//! its broker for a delayed retry (clustering; consumed again here if that fails), retries a
//! failed orderly batch here after `suspend_current_queue_time` up to `max_reconsume_times`
//! and then dead-letters it, drops it with a warning (broadcasting), and
//! stops pulling while `pull_threshold_for_queue` messages wait. Its consume offset (the
//! lowest offset not yet consumed) is reported to the consumer, which commits it. While the
//! queue's master is away (gone from the route, or its link down) a concurrent consumer
//! reads from a slave of the same broker name, from the same offset, and looks for the
//! master again every second; an orderly one waits for the master (it needs its lock).
//!
//! Not supervised: a queue taken away or a consumer shut down stops it for good, and a new
//! owner starts from the committed offset.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::actors::client::client_instance::ClientInstance;
use crate::actors::client::consumer_support::{self, BrokerLink};
use crate::client::{ConsumeResult, MessageExt};
use crate::common::names::RETRY_GROUP_TOPIC_PREFIX;
use crate::common::properties::PROPERTY_RETRY_TOPIC;
use crate::protocol::{MessageQueue, ResponseCode};

/// How often a puller reading from a slave looks for its master again.
const SLAVE_RECHECK: Duration = Duration::from_secs(1);

/// Runs a batch of messages through the application's handler.
pub type ListenerFn = Arc<
    dyn Fn(Vec<MessageExt>) -> futures_util::future::BoxFuture<'static, ConsumeResult>
        + Send
        + Sync,
>;

/// What a puller needs from its consumer.
#[derive(Clone)]
pub struct PullerSettings {
    /// Consumer group.
    pub group: String,
    /// Subscription expression of the queue's topic.
    pub expression: String,
    /// Exact tags accepted (empty = all).
    pub tags: BTreeSet<String>,
    /// Messages per pull.
    pub pull_batch_size: i32,
    /// Messages per listener call.
    pub consume_batch_size: usize,
    /// Stop pulling while this many messages wait.
    pub pull_threshold_for_queue: usize,
    /// One batch at a time, in queue order.
    pub orderly: bool,
    /// Wait before consuming a failed message again here when it could not be sent back.
    pub reconsume_delay: Duration,
    /// Broadcasting: failed messages are dropped (logged), not retried.
    pub broadcasting: bool,
    /// Redeliveries before a message is dead-lettered.
    pub max_reconsume_times: u32,
    /// Orderly: wait before a failed batch is consumed again.
    pub suspend_current_queue_time: Duration,
    /// A listener call running longer counts as failed.
    pub consume_timeout: Duration,
    /// How long the broker may hold a pull.
    pub suspend: Duration,
    /// The handler.
    pub listener: ListenerFn,
}

/// Reports a queue's consume offset to its consumer.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Progress {
    /// The queue.
    pub mq: MessageQueue,
    /// Lowest offset not yet consumed.
    pub offset: u64,
    /// The puller reporting: one stopped and replaced (an offset reset) may still have a
    /// report on its way, which must not count for its successor.
    pub from: Addr<QueuePuller>,
}

/// Stops the puller. Answers its final consume offset once the listener calls in flight
/// have finished (at most [`STOP_GRACE`] later), so a queue is never consumed by its old and
/// its new owner at once.
#[derive(Message)]
#[rtype(result = "Option<u64>")]
pub struct StopPulling;

/// Longest a stop waits for listener calls in flight.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// One queue's pull-and-consume loop.
pub struct QueuePuller {
    mq: MessageQueue,
    client: Addr<ClientInstance>,
    settings: PullerSettings,
    progress: Recipient<Progress>,
    link: Option<BrokerLink>,
    /// Since when `link` is a slave's (the master was away), if it is.
    from_slave_since: Option<Instant>,
    next_offset: u64,
    /// Pulled and not yet consumed, by queue offset.
    cache: BTreeMap<u64, MessageExt>,
    /// Cached offsets not handed to the listener yet (orderly mode).
    waiting: VecDeque<u64>,
    consuming: bool,
    stopped: bool,
    /// Listener calls running now.
    in_flight: usize,
    /// Stop requests waiting for those calls to end.
    stop_waiters: Vec<tokio::sync::oneshot::Sender<u64>>,
}

impl QueuePuller {
    /// A puller for `mq` starting at `start_offset` (not started).
    pub fn new(
        mq: MessageQueue,
        client: Addr<ClientInstance>,
        settings: PullerSettings,
        progress: Recipient<Progress>,
        start_offset: u64,
    ) -> Self {
        QueuePuller {
            mq,
            client,
            settings,
            progress,
            link: None,
            from_slave_since: None,
            next_offset: start_offset,
            cache: BTreeMap::new(),
            waiting: VecDeque::new(),
            consuming: false,
            stopped: false,
            in_flight: 0,
            stop_waiters: Vec::new(),
        }
    }

    fn consume_offset(&self) -> u64 {
        self.cache
            .keys()
            .next()
            .copied()
            .unwrap_or(self.next_offset)
    }

    fn report(&self, ctx: &Context<Self>) {
        self.progress.do_send(Progress {
            mq: self.mq.clone(),
            offset: self.consume_offset(),
            from: ctx.address(),
        });
    }

    fn pull_later(&mut self, ctx: &mut Context<Self>, after: Duration) {
        ctx.run_later(after, |act, ctx| act.pull(ctx));
    }

    fn pull(&mut self, ctx: &mut Context<Self>) {
        if self.stopped {
            return;
        }
        if self.cache.len() >= self.settings.pull_threshold_for_queue {
            // Flow control: let the listener catch up first.
            return self.pull_later(ctx, Duration::from_millis(50));
        }
        let Some(link) = self.link.clone() else {
            let (client, mq) = (self.client.clone(), self.mq.clone());
            // Orderly consumption needs the master's lock; other reads may go to a slave
            // while the master is away.
            let orderly = self.settings.orderly;
            ctx.spawn(
                async move {
                    if orderly {
                        consumer_support::broker_for(&client, &mq)
                            .await
                            .map(|l| (l, false))
                    } else {
                        consumer_support::reader_for(&client, &mq).await
                    }
                }
                .into_actor(self)
                .map(|res, act, ctx| match res {
                        Ok((link, slave)) => {
                            if slave && act.from_slave_since.is_none() {
                                tracing::info!(queue = ?act.mq, broker = %link.0, "the master is away: reading from a slave");
                            }
                            act.from_slave_since = slave.then(Instant::now);
                            act.link = Some(link);
                            act.pull(ctx);
                        }
                        Err(e) => {
                            tracing::debug!(queue = ?act.mq, error = %e, "no broker for queue yet");
                            act.pull_later(ctx, Duration::from_secs(1));
                        }
                    }),
            );
            return;
        };
        let (group, mq, offset) = (
            self.settings.group.clone(),
            self.mq.clone(),
            self.next_offset,
        );
        let (max, expr, suspend) = (
            self.settings.pull_batch_size,
            self.settings.expression.clone(),
            self.settings.suspend,
        );
        let fut = async move {
            consumer_support::pull(&link, &group, &mq, offset, max, &expr, Some(suspend)).await
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            if act.stopped {
                return;
            }
            // On a slave, look for the master again every second.
            if act
                .from_slave_since
                .is_some_and(|t| t.elapsed() >= SLAVE_RECHECK)
            {
                act.link = None;
            }
            match res {
                Ok(p) => {
                    let next = p.header.next_begin_offset.max(0) as u64;
                    match p.code {
                        ResponseCode::Success => {
                            act.accept(p.messages, ctx);
                            act.next_offset = next.max(act.next_offset);
                            act.pull(ctx);
                        }
                        ResponseCode::PullOffsetMoved => {
                            tracing::warn!(queue = ?act.mq, from = offset, to = next, "offset moved by the broker");
                            act.next_offset = next;
                            act.report(ctx);
                            act.pull(ctx);
                        }
                        // Nothing new (the broker held the pull) or nothing matched: ask again.
                        _ => {
                            act.next_offset = next.max(act.next_offset);
                            act.report(ctx);
                            act.pull(ctx);
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(queue = ?act.mq, error = %e, "pull failed; retrying in 1 s");
                    act.link = None;
                    act.pull_later(ctx, Duration::from_secs(1));
                }
            }
        }));
    }

    fn accept(&mut self, messages: Vec<crate::client::MessageExt>, ctx: &mut Context<Self>) {
        let tags = &self.settings.tags;
        let mut fresh = Vec::new();
        for m in messages {
            if m.queue_offset < self.next_offset {
                continue;
            }
            // The broker filters by tag hash; hashes collide, so check the tag itself.
            if !tags.is_empty() && !m.tags().is_some_and(|t| tags.contains(t)) {
                continue;
            }
            if self.cache.contains_key(&m.queue_offset) {
                continue;
            }
            let mut m = m;
            if self.mq.topic.starts_with(RETRY_GROUP_TOPIC_PREFIX) {
                // A retry: the listener sees the topic it subscribed.
                if let Some(t) = m.property(PROPERTY_RETRY_TOPIC).map(str::to_owned) {
                    m.stored.topic = t;
                }
            }
            fresh.push(m.queue_offset);
            self.cache.insert(m.queue_offset, m);
        }
        if self.settings.orderly {
            self.waiting.extend(fresh);
            self.consume_next_in_order(ctx);
        } else {
            for chunk in fresh.chunks(self.settings.consume_batch_size.max(1)) {
                self.dispatch(chunk.to_vec(), ctx);
            }
        }
        self.report(ctx);
    }

    fn consume_next_in_order(&mut self, ctx: &mut Context<Self>) {
        if self.consuming || self.stopped {
            return;
        }
        let n = self
            .settings
            .consume_batch_size
            .max(1)
            .min(self.waiting.len());
        if n == 0 {
            return;
        }
        let batch: Vec<u64> = self.waiting.drain(..n).collect();
        self.consuming = true;
        self.dispatch(batch, ctx);
    }

    fn dispatch(&mut self, offsets: Vec<u64>, ctx: &mut Context<Self>) {
        let msgs: Vec<MessageExt> = offsets
            .iter()
            .filter_map(|o| self.cache.get(o).cloned())
            .collect();
        if msgs.is_empty() {
            return;
        }
        let call = run_listener(
            Arc::clone(&self.settings.listener),
            msgs,
            self.settings.consume_timeout,
            self.mq.clone(),
        );
        self.in_flight += 1;
        ctx.spawn(call.into_actor(self).map(move |result, act, ctx| {
            act.in_flight = act.in_flight.saturating_sub(1);
            if act.stopped {
                // Record what the listener finished, then tell a waiting stop where this
                // queue got to.
                if result == ConsumeResult::Success {
                    for o in &offsets {
                        act.cache.remove(o);
                    }
                }
                act.answer_stops(ctx);
                return;
            }
            match result {
                ConsumeResult::Success => {
                    for o in &offsets {
                        act.cache.remove(o);
                    }
                    act.report(ctx);
                    if act.settings.orderly {
                        act.consuming = false;
                        act.consume_next_in_order(ctx);
                    }
                }
                ConsumeResult::ReconsumeLater => act.failed(offsets, ctx),
            }
        }));
    }

    /// A batch the listener failed: retried through the broker (clustering), dropped
    /// (broadcasting, as RocketMQ), or retried here in order (orderly).
    fn failed(&mut self, offsets: Vec<u64>, ctx: &mut Context<Self>) {
        if self.settings.orderly {
            return self.failed_in_order(offsets, ctx);
        }
        if self.settings.broadcasting {
            tracing::warn!(queue = ?self.mq, ?offsets, "a broadcasting consumer does not retry: the failed messages are dropped");
            for o in &offsets {
                self.cache.remove(o);
            }
            return self.report(ctx);
        }
        for o in offsets {
            self.send_back(o, 0, ctx);
        }
    }

    /// Sends the message at `offset` back to its broker (`delay_level` 0: the broker's
    /// retry schedule; -1: the dead-letter topic); once stored there the queue moves past
    /// it. If that fails it is consumed again here after `reconsume_delay`, never dropped.
    fn send_back(&mut self, offset: u64, delay_level: i32, ctx: &mut Context<Self>) {
        let Some(msg) = self.cache.get(&offset).cloned() else {
            return;
        };
        let (client, group, max) = (
            self.client.clone(),
            self.settings.group.clone(),
            self.settings.max_reconsume_times,
        );
        self.in_flight += 1;
        let fut = async move {
            consumer_support::send_back(&client, &group, &msg, delay_level, max).await
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            act.in_flight = act.in_flight.saturating_sub(1);
            match res {
                Ok(()) => {
                    act.cache.remove(&offset);
                    if !act.stopped {
                        act.report(ctx);
                        if act.settings.orderly {
                            act.consuming = false;
                            act.consume_next_in_order(ctx);
                        }
                    }
                }
                Err(e) => {
                    let delay = if act.settings.orderly {
                        act.settings.suspend_current_queue_time
                    } else {
                        act.settings.reconsume_delay
                    };
                    tracing::warn!(queue = ?act.mq, offset, error = %e, "a failed message could not be sent back to its broker; consuming it again here in {delay:?}");
                    if let Some(m) = act.cache.get_mut(&offset) {
                        m.reconsume_times += 1;
                    }
                    if !act.stopped {
                        ctx.run_later(delay, move |act, ctx| {
                            if act.stopped {
                                return;
                            }
                            if act.settings.orderly {
                                act.waiting.push_front(offset);
                                act.consuming = false;
                                act.consume_next_in_order(ctx);
                            } else {
                                act.dispatch(vec![offset], ctx);
                            }
                        });
                    }
                }
            }
            if act.stopped {
                act.answer_stops(ctx);
            }
        }));
    }

    /// Orderly: the same batch again after `suspend_current_queue_time`, before anything
    /// after it; a message failed `max_reconsume_times` times is dead-lettered instead and
    /// the queue moves on.
    fn failed_in_order(&mut self, offsets: Vec<u64>, ctx: &mut Context<Self>) {
        let max = self.settings.max_reconsume_times;
        let (exhausted, retry): (Vec<u64>, Vec<u64>) = offsets
            .into_iter()
            .partition(|o| self.cache.get(o).is_some_and(|m| m.reconsume_times >= max));
        for o in &retry {
            if let Some(m) = self.cache.get_mut(o) {
                m.reconsume_times += 1;
            }
        }
        if retry.is_empty() {
            // Every message of the batch is exhausted: dead-letter them in order; the
            // last answer lets the queue go on (a failure brings the message back here).
            for o in exhausted {
                self.send_back(o, -1, ctx);
            }
            return;
        }
        // Exhausted messages wait with the rest of the batch: order is kept.
        let mut batch = exhausted;
        batch.extend(retry);
        batch.sort_unstable();
        let delay = self.settings.suspend_current_queue_time;
        ctx.run_later(delay, move |act, ctx| {
            if act.stopped {
                return;
            }
            for o in batch.iter().rev() {
                act.waiting.push_front(*o);
            }
            act.consuming = false;
            act.consume_next_in_order(ctx);
        });
    }
}

/// Runs the listener on a batch; a panic or a call longer than `timeout` counts as
/// `ReconsumeLater` (logged), so one bad message never stops the consumer.
async fn run_listener(
    listener: ListenerFn,
    msgs: Vec<MessageExt>,
    timeout: Duration,
    mq: MessageQueue,
) -> ConsumeResult {
    use futures_util::FutureExt;
    let call = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| listener(msgs))) {
        Ok(f) => f,
        Err(panic) => {
            tracing::error!(queue = ?mq, panic = %panic_text(&panic), "the listener panicked; its messages will be retried");
            return ConsumeResult::ReconsumeLater;
        }
    };
    match actix_rt::time::timeout(timeout, std::panic::AssertUnwindSafe(call).catch_unwind()).await
    {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => {
            tracing::error!(queue = ?mq, panic = %panic_text(&panic), "the listener panicked; its messages will be retried");
            ConsumeResult::ReconsumeLater
        }
        Err(_) => {
            tracing::warn!(queue = ?mq, ?timeout, "the listener ran past consume_timeout; its messages will be retried");
            ConsumeResult::ReconsumeLater
        }
    }
}

/// The message a panic carried, if it is text.
fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(not text)".to_owned())
}

impl QueuePuller {
    fn answer_stops(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight > 0 {
            return;
        }
        let offset = self.consume_offset();
        for tx in self.stop_waiters.drain(..) {
            let _ = tx.send(offset);
        }
        ctx.stop();
    }
}

impl Actor for QueuePuller {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.pull(ctx);
    }
}

impl Handler<StopPulling> for QueuePuller {
    type Result = ResponseFuture<Option<u64>>;

    fn handle(&mut self, _: StopPulling, ctx: &mut Self::Context) -> Self::Result {
        self.stopped = true;
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.stop_waiters.push(tx);
        if self.in_flight == 0 {
            self.answer_stops(ctx);
        } else {
            // A listener that never returns must not hold the queue forever.
            ctx.run_later(STOP_GRACE, |act, ctx| {
                act.in_flight = 0;
                act.answer_stops(ctx);
            });
        }
        Box::pin(async move { rx.await.ok() })
    }
}
