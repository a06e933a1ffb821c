//! Rebalancer actor: one per consumer group in a client.
//!
//! Owns the question "which queues are mine?". Every `rebalance_interval` (RocketMQ: 20 s),
//! on a broker's NOTIFY_CONSUMER_IDS_CHANGED and at start, it fetches each subscribed topic's
//! readable queues and (clustering) the group's member ids, and shares the queues out with
//! an [`AllocateStrategy`] (broadcasting: every member gets every queue). The answer goes to
//! its consumer as [`Assign`]; the consumer starts and stops its per-queue pullers. Runs are
//! never concurrent: a request during a run schedules one more run after it.
//!
//! Supervised. Its fatal path is a run that is stuck: one that finishes no topic within
//! its stall limit ([`STALL_LIMIT`] unless [`Rebalancer::with_stall_limit`] says
//! otherwise), say because its consumer never answers an [`Assign`]. Runs never overlap, so
//! a stuck run would stop every later one: the rebalancer stops instead, and the restart
//! drops the stuck run with the old context, forgets it was running, and `started()`
//! starts a fresh run and arms the periodic timer again (once: the old one went with the
//! old context). It keeps no other state beyond its settings and the brokers it has met.

pub mod allocate;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::actors::client::client_instance::{ClientInstance, HeartbeatNow, RebalanceNow};
use crate::actors::client::consumer_support::{consumer_ids, read_queues};
use crate::client::MessageModel;
use crate::protocol::MessageQueue;
use allocate::AllocateStrategy;

/// How soon an incomplete rebalance is tried again.
const RETRY_SOON: Duration = Duration::from_secs(1);

/// A run that finishes no topic for this long is stuck. Every step of a run is bounded
/// (requests time out within seconds; a consumer gives a queue up within its stop grace),
/// but a topic whose consumer hands over many queues can take minutes: generous, so that
/// only a run that will never end trips it.
pub const STALL_LIMIT: Duration = Duration::from_secs(300);

/// The queues of one topic this member now owns. The answer says whether the consumer
/// could take them all (an orderly consumer may have to wait for another member's lock).
#[derive(Message, Debug, Clone)]
#[rtype(result = "bool")]
pub struct Assign {
    /// The topic.
    pub topic: String,
    /// The queues.
    pub queues: BTreeSet<MessageQueue>,
}

/// A group's rebalancer.
pub struct Rebalancer {
    client: Addr<ClientInstance>,
    group: String,
    client_id: String,
    model: MessageModel,
    topics: Vec<String>,
    strategy: Arc<dyn AllocateStrategy>,
    target: Recipient<Assign>,
    interval: Duration,
    running: bool,
    again: bool,
    stopped: bool,
    known_brokers: BTreeSet<String>,
    /// See [`STALL_LIMIT`].
    stall_limit: Duration,
    /// Topics runs have finished (or given up on) so far; the watchdog compares it to
    /// what it last saw.
    progress: Arc<AtomicU64>,
    /// The timer checking the run in progress for progress.
    watchdog: Option<SpawnHandle>,
}

impl Rebalancer {
    /// A rebalancer (not started).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: Addr<ClientInstance>,
        group: String,
        client_id: String,
        model: MessageModel,
        topics: Vec<String>,
        strategy: Arc<dyn AllocateStrategy>,
        target: Recipient<Assign>,
        interval: Duration,
    ) -> Self {
        Rebalancer {
            client,
            group,
            client_id,
            model,
            topics,
            strategy,
            target,
            interval,
            running: false,
            again: false,
            stopped: false,
            known_brokers: BTreeSet::new(),
            stall_limit: STALL_LIMIT,
            progress: Arc::new(AtomicU64::new(0)),
            watchdog: None,
        }
    }

    /// How long a run may go without finishing a topic before it counts as stuck.
    pub fn with_stall_limit(mut self, limit: Duration) -> Self {
        self.stall_limit = limit;
        self
    }

    /// Stops the actor if the run in progress has finished no topic since `seen` by the
    /// time the stall limit has passed; re-arms itself while the run moves.
    fn arm_watchdog(&mut self, seen: u64, ctx: &mut Context<Self>) {
        let handle = ctx.run_later(self.stall_limit, move |act, ctx| {
            act.watchdog = None;
            if !act.running {
                return;
            }
            let now = act.progress.load(Ordering::Relaxed);
            if now != seen {
                return act.arm_watchdog(now, ctx);
            }
            tracing::error!(group = %act.group, stall_limit_ms = act.stall_limit.as_millis() as u64,
                "rebalance stuck: no topic done within the stall limit; restarting the rebalancer");
            ctx.stop();
        });
        self.watchdog = Some(handle);
    }

    fn run(&mut self, ctx: &mut Context<Self>) {
        if self.stopped {
            return;
        }
        if self.running {
            self.again = true;
            return;
        }
        self.running = true;
        let progress = Arc::clone(&self.progress);
        self.arm_watchdog(progress.load(Ordering::Relaxed), ctx);
        let (client, group, me, model, topics, strategy, target) = (
            self.client.clone(),
            self.group.clone(),
            self.client_id.clone(),
            self.model,
            self.topics.clone(),
            Arc::clone(&self.strategy),
            self.target.clone(),
        );
        let known = self.known_brokers.clone();
        let work = async move {
            let mut brokers = BTreeSet::new();
            let mut incomplete = false;
            for (i, topic) in topics.into_iter().enumerate() {
                if i > 0 {
                    // Reaching a topic means the one before it is done (or given up on).
                    progress.fetch_add(1, Ordering::Relaxed);
                }
                let queues = match read_queues(&client, &topic, true).await {
                    Ok(q) => q,
                    Err(e) => {
                        tracing::debug!(%group, %topic, error = %e, "rebalance: no queues yet");
                        incomplete = true;
                        continue;
                    }
                };
                brokers.extend(queues.iter().map(|q| q.broker_name.clone()));
                if !brokers.is_subset(&known) {
                    // New brokers must know this member before they can list it.
                    let _ = client.send(HeartbeatNow).await;
                }
                let mine: BTreeSet<MessageQueue> = match model {
                    MessageModel::Broadcasting => queues.into_iter().collect(),
                    MessageModel::Clustering => match consumer_ids(&client, &group, &topic).await {
                        Ok(ids) => strategy
                            .allocate(&group, &me, &queues, &ids)
                            .into_iter()
                            .collect(),
                        Err(e) => {
                            tracing::debug!(%group, %topic, error = %e, "rebalance: member list unavailable");
                            incomplete = true;
                            continue;
                        }
                    },
                };
                let settled = target
                    .send(Assign {
                        topic,
                        queues: mine,
                    })
                    .await
                    .unwrap_or(false);
                incomplete |= !settled;
            }
            (brokers, incomplete)
        };
        ctx.spawn(
            work.into_actor(self)
                .map(|(brokers, incomplete), act, ctx| {
                    act.known_brokers.extend(brokers);
                    act.running = false;
                    if let Some(watchdog) = act.watchdog.take() {
                        ctx.cancel_future(watchdog);
                    }
                    if incomplete {
                        // A topic without a route yet (created by its first send) or a broker that
                        // does not list us yet: look again soon rather than a full interval later.
                        ctx.run_later(RETRY_SOON, |act, ctx| act.run(ctx));
                    }
                    if std::mem::take(&mut act.again) {
                        act.run(ctx);
                    }
                }),
        );
    }
}

impl Actor for Rebalancer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.interval, |act, ctx| act.run(ctx));
        self.run(ctx);
    }
}

impl Supervised for Rebalancer {
    fn restarting(&mut self, _: &mut Self::Context) {
        // The stuck run and its watchdog went with the old context; `started()` runs anew.
        self.running = false;
        self.again = false;
        self.watchdog = None;
    }
}

impl Handler<RebalanceNow> for Rebalancer {
    type Result = ();

    fn handle(&mut self, _: RebalanceNow, ctx: &mut Self::Context) {
        self.run(ctx);
    }
}

/// Stops rebalancing for good (the actor itself goes when its last address is dropped).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopRebalancer;

impl Handler<StopRebalancer> for Rebalancer {
    type Result = ();

    fn handle(&mut self, _: StopRebalancer, _: &mut Self::Context) {
        self.stopped = true;
    }
}
