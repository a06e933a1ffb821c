//! PushConsumer actor: the library pulls, the application's listener consumes.
//!
//! Owns a consumer's subscriptions, its [`Rebalancer`], one [`QueuePuller`] per owned queue,
//! and the table of consume offsets its pullers report. Offsets are committed every
//! `persist_consumer_offset_interval`, when a queue is given away (before it is dropped, so
//! the next owner starts where this one stopped), and at shutdown: to the broker in
//! clustering mode, to a local file in broadcasting mode. A new queue starts from the
//! committed offset, or from `consume_from_where` when there is none.
//!
//! Not supervised: it has no fatal path (a failed commit is retried, a broker that fails
//! costs its queues a retry), so it lives until it is shut down and its addresses are gone;
//! its [`Rebalancer`] is supervised. Its settings and the listener type are in `config`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::actors::client::client_instance::{
    ClientInstance, GetClientId, GetRoute, ReportAssignment, ResetOffsets, UnregisterConsumer,
};
use crate::actors::client::consumer_support::{self, LocalOffsets};
use crate::actors::client::queue_puller::{
    ListenerFn, Progress, PullerSettings, QueuePuller, StopPulling,
};
use crate::actors::client::rebalancer::{Assign, Rebalancer, StopRebalancer};
use crate::client::{ClientError, ConsumeResult, MessageExt, MessageModel};
use crate::protocol::group::{ConsumeType, ConsumerData, SubscriptionData};
use crate::protocol::MessageQueue;
use crate::storage::record::tag_hash;

mod config;
pub use config::{MessageListener, PushConsumerConfig};

/// How often orderly consumers renew their queue locks (the broker keeps them 60 s).
const LOCK_RENEWAL: Duration = Duration::from_secs(20);

/// A batch of messages for an actor-based listener.
#[derive(Message)]
#[rtype(result = "ConsumeResult")]
pub struct ConsumeMessages(pub Vec<MessageExt>);

fn tags_of(expression: &str) -> BTreeSet<String> {
    let e = expression.trim();
    if e.is_empty() || e == "*" {
        return BTreeSet::new();
    }
    e.split("||")
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
        .collect()
}

struct Owned {
    puller: Addr<QueuePuller>,
}

/// The push consumer actor.
pub struct PushConsumerActor {
    client: Addr<ClientInstance>,
    config: PushConsumerConfig,
    client_id: String,
    listener: ListenerFn,
    owned: HashMap<MessageQueue, Owned>,
    offsets: BTreeMap<MessageQueue, u64>,
    committed: BTreeMap<MessageQueue, u64>,
    rebalancer: Option<Addr<Rebalancer>>,
    local: Option<LocalOffsets>,
    stopping: bool,
    /// When this consumer started (ms): where `LastOffset` starts queues without an offset.
    subscribed_at_ms: i64,
}

/// Handle to a running push consumer: it pulls the queues the group gives it and calls the
/// listener with each batch; a batch answered [`ConsumeResult::Success`] moves the offset
/// on, and offsets are committed to the brokers every `persist_consumer_offset_interval`
/// and at [`PushConsumer::shutdown`].
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use std::time::{Duration, Instant};
///
/// use actimq::{
///     ClientConfig, ClientError, ClientInstance, ConsumeFromWhere, ConsumeResult,
///     Message as MqMessage, MessageListener, Producer, ProducerConfig, PushConsumer,
///     PushConsumerConfig,
/// };
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # actimq::actix::System::new().block_on(async {
/// # let store = tempfile::tempdir()?;
/// # let cluster = actimq::server::LocalCluster::start(store.path()).await?;
/// let client = ClientInstance::start(ClientConfig::new(cluster.namesrv_addr()))?;
/// let producer = Producer::start(client.clone(), ProducerConfig::new("p"));
/// for i in 0..10 {
///     producer.send(MqMessage::new("Orders", format!("order {i}")).with_tags("Created")).await?;
/// }
///
/// let received = Arc::new(AtomicUsize::new(0));
/// let counter = Arc::clone(&received);
/// let consumer = PushConsumer::start(
///     client.clone(),
///     PushConsumerConfig::new("order-auditors")
///         .subscribe("Orders", "Created")           // tags: `*`, `A`, `A || B`
///         .consume_from(ConsumeFromWhere::FirstOffset), // a new group reads what is stored
///     MessageListener::from_fn(move |msgs| {
///         counter.fetch_add(msgs.len(), Ordering::Relaxed);
///         ConsumeResult::Success
///     }),
/// )
/// .await?;
///
/// let deadline = Instant::now() + Duration::from_secs(30);
/// while received.load(Ordering::Relaxed) < 10 && Instant::now() < deadline {
///     actimq::actix::clock::sleep(Duration::from_millis(20)).await;
/// }
/// assert_eq!(received.load(Ordering::Relaxed), 10);
///
/// // Shutdown commits the offsets; an error means some could not be saved, and those
/// // messages will be delivered to the group again.
/// match consumer.shutdown().await {
///     Ok(()) => {}
///     Err(ClientError::OffsetsNotSaved { queues, .. }) => eprintln!("{queues} queue(s) will repeat"),
///     Err(e) => return Err(e.into()),
/// }
/// # ClientInstance::shutdown(&client).await;
/// # cluster.shutdown().await;
/// # Ok(())
/// # })
/// # }
/// ```
#[derive(Clone)]
pub struct PushConsumer {
    addr: Addr<PushConsumerActor>,
}

#[derive(Message)]
#[rtype(result = "Vec<MessageQueue>")]
struct GetAssignment;

#[derive(Message)]
#[rtype(result = "Result<(), ClientError>")]
struct Shutdown;

#[derive(Message)]
#[rtype(result = "()")]
struct SetRebalancer(Addr<Rebalancer>);

impl PushConsumer {
    /// Starts consuming. Topics that have no route yet are picked up by a later rebalance.
    pub async fn start(
        client: Addr<ClientInstance>,
        mut config: PushConsumerConfig,
        listener: MessageListener,
    ) -> Result<PushConsumer, ClientError> {
        if config.subscriptions.is_empty() {
            return Err(ClientError::MessageIllegal(format!(
                "consumer group '{}' subscribes to nothing",
                config.consumer_group
            )));
        }
        crate::common::names::validate_group_name(&config.consumer_group)
            .map_err(ClientError::MessageIllegal)?;
        // Clustering members take the group's retries too (its brokers create the topic
        // when they see this subscription in a heartbeat).
        let retries = crate::common::names::retry_topic(&config.consumer_group);
        if config.message_model == MessageModel::Clustering {
            config.subscriptions.insert(retries.clone(), "*".into());
        }
        let client_id = client
            .send(GetClientId)
            .await
            .map_err(|_| ClientError::Shutdown)?;
        for topic in config.subscriptions.keys().filter(|t| **t != retries) {
            if let Ok(Err(e)) = client
                .send(GetRoute {
                    topic: topic.clone(),
                    refresh: true,
                })
                .await
            {
                tracing::warn!(%topic, error = %e, "consumer starts without a route; will retry");
            }
        }
        let data = ConsumerData {
            group_name: config.consumer_group.clone(),
            consume_type: ConsumeType::ConsumePassively,
            message_model: config.message_model,
            consume_from_where: config.consume_from_where,
            subscription_data_set: config
                .subscriptions
                .iter()
                .map(|(topic, expr)| {
                    let tags = tags_of(expr);
                    SubscriptionData {
                        topic: topic.clone(),
                        sub_string: expr.clone(),
                        code_set: tags.iter().map(|t| tag_hash(t) as i32).collect(),
                        tags_set: tags,
                        sub_version: 0,
                        expression_type: "TAG".into(),
                    }
                })
                .collect(),
            assigned_queues: None,
        };
        let local = (config.message_model == MessageModel::Broadcasting)
            .then(|| LocalOffsets::new(config.offset_store_dir.clone(), &config.consumer_group));
        let (c2, cfg2, id2) = (client.clone(), config.clone(), client_id.clone());
        let addr = Actor::start(PushConsumerActor {
            client: c2,
            listener: listener.0,
            client_id: id2,
            owned: HashMap::new(),
            offsets: BTreeMap::new(),
            committed: BTreeMap::new(),
            rebalancer: None,
            local,
            stopping: false,
            subscribed_at_ms: crate::common::clock::now_ms(),
            config: cfg2,
        });
        let rebalancer = {
            let (c, g, id, model) = (
                client.clone(),
                config.consumer_group.clone(),
                client_id,
                config.message_model,
            );
            let topics: Vec<String> = config.subscriptions.keys().cloned().collect();
            let (strategy, target, every) = (
                Arc::clone(&config.allocate_strategy),
                addr.clone().recipient(),
                config.rebalance_interval,
            );
            Supervisor::start(move |_| {
                Rebalancer::new(c, g, id, model, topics, strategy, target, every)
            })
        };
        addr.do_send(SetRebalancer(rebalancer.clone()));
        consumer_support::join_group(&client, data, &rebalancer, Some(addr.clone().recipient()))
            .await?;
        Ok(PushConsumer { addr })
    }

    /// The queues of the subscribed topics this member consumes now. A clustering member
    /// also reads its share of the group's retry topic `%RETRY%<group>`, which this leaves
    /// out.
    pub async fn assignment(&self) -> Vec<MessageQueue> {
        self.addr.send(GetAssignment).await.unwrap_or_default()
    }

    /// The offsets this member committed and its brokers acknowledged (the next offset to
    /// consume, per queue it owns now): the group's progress as far as a restart would
    /// resume (RocketMQ's offset store read from memory).
    pub async fn committed_offsets(&self) -> BTreeMap<MessageQueue, u64> {
        self.addr.send(GetCommitted).await.unwrap_or_default()
    }

    /// Stops pulling, commits every offset, and leaves the group (the others take over its
    /// queues at once). Fails with [`ClientError::OffsetsNotSaved`] when some offsets could
    /// not be committed (those messages will be delivered again); a consumer already shut
    /// down answers `Ok`.
    pub async fn shutdown(&self) -> Result<(), ClientError> {
        self.addr.send(Shutdown).await.unwrap_or(Ok(()))
    }
}

impl PushConsumerActor {
    /// Starts pulling `mq` from `offset`, as its owner.
    fn start_puller(&mut self, mq: MessageQueue, offset: u64, ctx: &mut Context<Self>) {
        let settings = self.settings(&mq.topic);
        let puller = QueuePuller::new(
            mq.clone(),
            self.client.clone(),
            settings,
            ctx.address().recipient(),
            offset,
        )
        .start();
        self.offsets.insert(mq.clone(), offset);
        self.owned.insert(mq, Owned { puller });
    }

    fn settings(&self, topic: &str) -> PullerSettings {
        let expression = self
            .config
            .subscriptions
            .get(topic)
            .cloned()
            .unwrap_or_else(|| "*".into());
        PullerSettings {
            group: self.config.consumer_group.clone(),
            tags: tags_of(&expression),
            expression,
            pull_batch_size: self.config.pull_batch_size,
            consume_batch_size: self.config.consume_message_batch_max_size,
            pull_threshold_for_queue: self.config.pull_threshold_for_queue,
            orderly: self.config.orderly,
            reconsume_delay: self.config.reconsume_delay,
            broadcasting: self.config.message_model == MessageModel::Broadcasting,
            max_reconsume_times: self.config.max_reconsume_times,
            suspend_current_queue_time: self.config.suspend_current_queue_time,
            consume_timeout: self.config.consume_timeout,
            suspend: self.config.pull_suspend,
            listener: Arc::clone(&self.listener),
        }
    }

    /// Commits offsets that moved since the last commit.
    fn persist(&mut self) -> impl std::future::Future<Output = Vec<(MessageQueue, u64)>> + 'static {
        let changed: Vec<(MessageQueue, u64)> = self
            .offsets
            .iter()
            .filter(|(mq, o)| self.committed.get(*mq) != Some(*o))
            .map(|(mq, o)| (mq.clone(), *o))
            .collect();
        let (client, group, local) = (
            self.client.clone(),
            self.config.consumer_group.clone(),
            self.local.clone(),
        );
        async move {
            let mut done = Vec::new();
            if let Some(local) = local {
                let map: BTreeMap<MessageQueue, u64> = changed.iter().cloned().collect();
                match local.save_off_thread(map).await {
                    Ok(()) => done = changed,
                    Err(e) => tracing::warn!(error = %e, "cannot save local offsets"),
                }
                return done;
            }
            // All at once: each commit is answered once the broker wrote it, and the broker
            // writes the commits that arrive together in one go.
            let commits = changed.into_iter().map(|(mq, offset)| {
                let (client, group) = (client.clone(), group.clone());
                async move {
                    // While the master is away its slave takes the commit (answered once
                    // durable there) and pushes it to the master once it is back.
                    let committed = match consumer_support::reader_for(&client, &mq).await {
                        Ok((link, _)) => {
                            consumer_support::commit_offset(&link, &group, &mq, offset).await
                        }
                        Err(e) => Err(e),
                    };
                    match committed {
                        Ok(()) => Some((mq, offset)),
                        Err(e) => {
                            tracing::debug!(queue = ?mq, error = %e, "offset commit failed; will retry");
                            None
                        }
                    }
                }
            });
            done.extend(
                futures_util::future::join_all(commits)
                    .await
                    .into_iter()
                    .flatten(),
            );
            done
        }
    }
}

impl Actor for PushConsumerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Commits go through the mailbox, atomically, so a periodic commit can never land
        // after the commit of a queue being handed over (the next owner would start early).
        ctx.run_interval(self.config.persist_consumer_offset_interval, |_, ctx| {
            ctx.address().do_send(PersistNow);
        });
        if self.config.orderly {
            // Broker locks expire after a minute; renew well before, and give up queues whose
            // lock was lost (the next rebalance takes them back if they are still ours).
            ctx.run_interval(LOCK_RENEWAL, |act, ctx| {
                if act.stopping {
                    return;
                }
                let queues: Vec<MessageQueue> = act.owned.keys().cloned().collect();
                let (client, group, me) = (act.client.clone(), act.config.consumer_group.clone(), act.client_id.clone());
                ctx.spawn(
                    async move {
                        let (held, _) = lock_all(&client, &group, &me, queues.clone()).await;
                        queues.into_iter().filter(|q| !held.contains(q)).collect::<Vec<_>>()
                    }
                    .into_actor(act)
                    .map(|lost, act, _| {
                        for mq in lost {
                            tracing::warn!(queue = ?mq, "orderly lock lost; pausing this queue until the next rebalance");
                            if let Some(o) = act.owned.remove(&mq) {
                                o.puller.do_send(StopPulling);
                            }
                        }
                    }),
                );
            });
        }
    }
}

impl Handler<SetRebalancer> for PushConsumerActor {
    type Result = ();
    fn handle(&mut self, msg: SetRebalancer, _: &mut Self::Context) {
        self.rebalancer = Some(msg.0);
    }
}

impl Handler<Progress> for PushConsumerActor {
    type Result = ();
    fn handle(&mut self, msg: Progress, _: &mut Self::Context) {
        // From the queue's current puller only (a replaced one's last word is stale).
        if self
            .owned
            .get(&msg.mq)
            .is_some_and(|o| o.puller == msg.from)
        {
            self.offsets.insert(msg.mq, msg.offset);
        }
    }
}

/// The acknowledged offsets of the queues owned now.
#[derive(Message)]
#[rtype(result = "BTreeMap<MessageQueue, u64>")]
struct GetCommitted;

impl Handler<GetCommitted> for PushConsumerActor {
    type Result = MessageResult<GetCommitted>;
    fn handle(&mut self, _: GetCommitted, _: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.committed
                .iter()
                .filter(|(mq, _)| self.owned.contains_key(*mq))
                .map(|(mq, o)| (mq.clone(), *o))
                .collect(),
        )
    }
}

impl Handler<GetAssignment> for PushConsumerActor {
    type Result = MessageResult<GetAssignment>;
    fn handle(&mut self, _: GetAssignment, _: &mut Self::Context) -> Self::Result {
        let mut v: Vec<MessageQueue> = self
            .owned
            .keys()
            .filter(|mq| {
                !mq.topic
                    .starts_with(crate::common::names::RETRY_GROUP_TOPIC_PREFIX)
            })
            .cloned()
            .collect();
        v.sort();
        MessageResult(v)
    }
}

/// Commits moved offsets now (the periodic timer sends it).
#[derive(Message)]
#[rtype(result = "()")]
struct PersistNow;

impl Handler<PersistNow> for PushConsumerActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, _: PersistNow, _: &mut Self::Context) -> Self::Result {
        let fut = self.persist();
        AtomicResponse::new(Box::pin(
            fut.into_actor(self)
                .map(|done, act, _| act.committed.extend(done)),
        ))
    }
}

impl Handler<Assign> for PushConsumerActor {
    type Result = AtomicResponse<Self, bool>;

    fn handle(&mut self, msg: Assign, _: &mut Self::Context) -> Self::Result {
        if self.stopping {
            return AtomicResponse::new(Box::pin(fut::ready(true)));
        }
        let topic = msg.topic.clone();
        let gone: Vec<(MessageQueue, Addr<QueuePuller>)> = self
            .owned
            .iter()
            .filter(|(mq, _)| mq.topic == topic && !msg.queues.contains(*mq))
            .map(|(mq, o)| (mq.clone(), o.puller.clone()))
            .collect();
        let new: Vec<MessageQueue> = msg
            .queues
            .iter()
            .filter(|mq| !self.owned.contains_key(*mq))
            .cloned()
            .collect();
        for (mq, _) in &gone {
            self.owned.remove(mq);
        }
        if !gone.is_empty() || !new.is_empty() {
            tracing::info!(group = %self.config.consumer_group, client = %self.client_id, %topic, drop = gone.len(), add = new.len(), "rebalanced");
        }
        let (client, group, local) = (
            self.client.clone(),
            self.config.consumer_group.clone(),
            self.local.clone(),
        );
        let (from, ts, since) = (
            self.config.consume_from_where,
            self.config.consume_timestamp,
            self.subscribed_at_ms,
        );
        let offsets_before: BTreeMap<MessageQueue, u64> = gone
            .iter()
            .filter_map(|(mq, _)| Some((mq.clone(), *self.offsets.get(mq)?)))
            .collect();
        // What this consumer itself committed for the queues it takes on: the fallback when
        // their broker answers "no offset" (it lost them: a kill -9 before it wrote them).
        let ours: BTreeMap<MessageQueue, u64> = new
            .iter()
            .filter_map(|mq| Some((mq.clone(), *self.committed.get(mq)?)))
            .collect();
        let (orderly, me) = (self.config.orderly, self.client_id.clone());
        let work = async move {
            let mut settled = true;
            // Queues given away: stop, and commit where we got to before anyone else starts.
            for (mq, puller) in gone {
                let last = puller
                    .send(StopPulling)
                    .await
                    .ok()
                    .flatten()
                    .or_else(|| offsets_before.get(&mq).copied());
                if let (Some(offset), None) = (last, &local) {
                    if let Ok((link, _)) = consumer_support::reader_for(&client, &mq).await {
                        if let Err(e) =
                            consumer_support::commit_offset(&link, &group, &mq, offset).await
                        {
                            tracing::warn!(queue = ?mq, error = %e, "could not commit a queue being given away");
                        }
                    }
                }
                if orderly {
                    // Only now may the next owner lock it and start where we stopped.
                    if let Ok(link) = consumer_support::broker_for(&client, &mq).await {
                        let _ = consumer_support::unlock_queues(
                            &link,
                            &group,
                            &me,
                            [mq.clone()].into(),
                        )
                        .await;
                    }
                }
            }
            // Orderly: a queue is consumed only by the member holding its broker-side lock.
            let new = if orderly {
                let (held, all) = lock_all(&client, &group, &me, new).await;
                settled &= all;
                held
            } else {
                new
            };
            // Queues taken on: find where to start.
            let mut starts = Vec::new();
            let mut anchors = consumer_support::SubscriptionAnchors::new(since);
            for mq in new {
                // An offset read back from where it is kept needs no commit; one computed
                // from `consume_from_where` does.
                let start = match &local {
                    Some(l) => match l.get(&mq) {
                        Some(o) => Ok((o, true)),
                        None => match consumer_support::reader_for(&client, &mq).await {
                            Ok((link, _)) => consumer_support::initial_offset(
                                &link, &group, &mq, from, ts, since,
                            )
                            .await
                            .map(|o| (o, false)),
                            Err(e) => Err(e),
                        },
                    },
                    None => match consumer_support::reader_for(&client, &mq).await {
                        Ok((link, _)) => {
                            match consumer_support::query_offset(&link, &group, &mq).await {
                                Ok(Some(o)) => Ok((o, true)),
                                // Not stored: committed again at the next persist.
                                Ok(None) if ours.contains_key(&mq) => {
                                    let o = ours.get(&mq).copied().unwrap_or_default();
                                    tracing::warn!(%group, queue = ?mq, offset = o,
                                        "the broker has no offset for a queue this consumer committed; resuming from ours and committing it again");
                                    Ok((o, false))
                                }
                                Ok(None) => {
                                    let since = anchors.since(&client, &group, &mq.topic).await;
                                    consumer_support::initial_offset(
                                        &link, &group, &mq, from, ts, since,
                                    )
                                    .await
                                    .map(|o| (o, false))
                                }
                                Err(e) => Err(e),
                            }
                        }
                        Err(e) => Err(e),
                    },
                };
                match start {
                    Ok((o, stored)) => starts.push((mq, o, stored)),
                    Err(e) => {
                        tracing::warn!(queue = ?mq, error = %e, "cannot find a start offset; the next rebalance retries")
                    }
                }
            }
            (starts, settled)
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            |(starts, settled), act, ctx| {
                if act.stopping {
                    return true;
                }
                for (mq, offset, stored) in starts {
                    if act.owned.contains_key(&mq) {
                        continue;
                    }
                    if stored {
                        act.committed.insert(mq.clone(), offset);
                    }
                    act.start_puller(mq, offset, ctx);
                }
                let owned = &act.owned;
                act.offsets.retain(|mq, _| owned.contains_key(mq));
                let mut queues: Vec<MessageQueue> = act.owned.keys().cloned().collect();
                queues.sort();
                act.client.do_send(ReportAssignment {
                    group: act.config.consumer_group.clone(),
                    queues,
                });
                settled
            },
        )))
    }
}

impl Handler<ResetOffsets> for PushConsumerActor {
    type Result = ();

    /// Restarts each queue this member holds at its new offset: the old puller stops first
    /// (its listener calls finish), so no message is consumed by both.
    fn handle(&mut self, msg: ResetOffsets, ctx: &mut Self::Context) {
        if self.stopping {
            return;
        }
        for (mq, offset) in msg.offsets {
            let Some(old) = self.owned.get(&mq).map(|o| o.puller.clone()) else {
                continue;
            };
            tracing::info!(group = %self.config.consumer_group, queue = ?mq, offset, "offset reset by the broker; restarting the queue there");
            // The broker committed it already; nothing to commit until the queue moves.
            self.offsets.insert(mq.clone(), offset);
            self.committed.insert(mq.clone(), offset);
            ctx.spawn(
                {
                    let old = old.clone();
                    async move { old.send(StopPulling).await }
                }
                .into_actor(self)
                .map(move |_, act, ctx| {
                    // Still ours, and not restarted by a rebalance meanwhile.
                    if act.stopping || !act.owned.get(&mq).is_some_and(|o| o.puller == old) {
                        return;
                    }
                    // Reports of the stopped puller no longer count (see `Progress`).
                    act.committed.insert(mq.clone(), offset);
                    act.start_puller(mq, offset, ctx);
                }),
            );
        }
    }
}

/// Locks `queues` (grouped by broker) for this member; answers the ones held and whether
/// that was all of them.
async fn lock_all(
    client: &Addr<ClientInstance>,
    group: &str,
    me: &str,
    queues: Vec<MessageQueue>,
) -> (Vec<MessageQueue>, bool) {
    let mut by_broker: BTreeMap<String, BTreeSet<MessageQueue>> = BTreeMap::new();
    for mq in queues {
        by_broker
            .entry(mq.broker_name.clone())
            .or_default()
            .insert(mq);
    }
    let (mut held, mut all) = (Vec::new(), true);
    for (_, set) in by_broker {
        let Some(first) = set.iter().next().cloned() else {
            continue;
        };
        let got = match consumer_support::broker_for(client, &first).await {
            Ok(link) => consumer_support::lock_queues(&link, group, me, set.clone())
                .await
                .unwrap_or_default(),
            Err(_) => BTreeSet::new(),
        };
        all &= got.len() == set.len();
        held.extend(got);
    }
    (held, all)
}

impl Handler<Shutdown> for PushConsumerActor {
    type Result = ResponseActFuture<Self, Result<(), ClientError>>;

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        self.stopping = true;
        if let Some(r) = self.rebalancer.take() {
            r.do_send(StopRebalancer);
        }
        let pullers: Vec<(MessageQueue, Addr<QueuePuller>)> =
            self.owned.drain().map(|(mq, o)| (mq, o.puller)).collect();
        let (client, group) = (self.client.clone(), self.config.consumer_group.clone());
        let stop = async move {
            let mut last = Vec::new();
            for (mq, p) in pullers {
                if let Ok(Some(o)) = p.send(StopPulling).await {
                    last.push((mq, o));
                }
            }
            last
        };
        Box::pin(
            stop.into_actor(self)
                .then(|last, act, _| {
                    act.offsets.extend(last);
                    act.persist().into_actor(act)
                })
                .then(move |done, act, _| {
                    act.committed.extend(done);
                    let unsaved = act
                        .offsets
                        .iter()
                        .filter(|(mq, o)| act.committed.get(*mq) != Some(*o))
                        .count();
                    async move {
                        let _ = client.send(UnregisterConsumer(group.clone())).await;
                        if unsaved == 0 {
                            Ok(())
                        } else {
                            Err(ClientError::OffsetsNotSaved {
                                group,
                                queues: unsaved,
                            })
                        }
                    }
                    .into_actor(act)
                }),
        )
    }
}
