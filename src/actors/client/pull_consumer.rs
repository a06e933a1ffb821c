//! Pull consumers: the application asks for messages.
//!
//! [`PullConsumer`] is the plain one: list a topic's queues, pull from a queue at an offset,
//! and fetch or commit the group's offsets yourself. [`LitePullConsumer`] is RocketMQ's "lite
//! pull" consumer, an actor: it subscribes, gets its queues from a [`Rebalancer`] like a push
//! consumer, and [`LitePullConsumer::poll`] returns the next batch from its queues, committing
//! the offsets of what it returned every `persist_consumer_offset_interval` and at shutdown.
//!
//! The lite consumer's actor is not supervised: it has no fatal path (a failed pull or
//! commit is retried), so it lives until it is closed and its addresses are gone; its
//! [`Rebalancer`] is supervised.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::actors::client::client_instance::{
    ClientInstance, GetClientId, ReportAssignment, UnregisterConsumer,
};
use crate::actors::client::consumer_support::{self, Pulled};
use crate::actors::client::rebalancer::allocate::AllocateAveragely;
use crate::actors::client::rebalancer::{Assign, Rebalancer, StopRebalancer};
use crate::client::{ClientError, ConsumeFromWhere, MessageExt, MessageModel};
use crate::protocol::group::{ConsumeType, ConsumerData, SubscriptionData};
use crate::protocol::{MessageQueue, ResponseCode};

/// What a pull found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullStatus {
    /// Messages were returned.
    Found,
    /// The offset is the end of the queue.
    NoNewMessage,
    /// Entries were skipped by the tag filter.
    NoMatchedMessage,
    /// The offset is outside the queue; start again from `next_begin_offset`.
    OffsetIllegal,
}

/// Result of [`PullConsumer::pull`].
#[derive(Debug, Clone)]
pub struct PullResult {
    /// What happened.
    pub status: PullStatus,
    /// Where to pull next.
    pub next_begin_offset: u64,
    /// Lowest offset in the queue.
    pub min_offset: u64,
    /// Next offset to be written in the queue.
    pub max_offset: u64,
    /// The messages (exact tag filter applied).
    pub messages: Vec<MessageExt>,
}

fn to_result(p: Pulled, expression: &str) -> PullResult {
    let tags: Vec<&str> = expression
        .split("||")
        .map(str::trim)
        .filter(|t| !t.is_empty() && *t != "*")
        .collect();
    let status = match p.code {
        ResponseCode::Success => PullStatus::Found,
        ResponseCode::PullNotFound => PullStatus::NoNewMessage,
        ResponseCode::PullRetryImmediately => PullStatus::NoMatchedMessage,
        _ => PullStatus::OffsetIllegal,
    };
    PullResult {
        status,
        next_begin_offset: p.header.next_begin_offset.max(0) as u64,
        min_offset: p.header.min_offset.max(0) as u64,
        max_offset: p.header.max_offset.max(0) as u64,
        messages: p
            .messages
            .into_iter()
            .filter(|m| tags.is_empty() || m.tags().is_some_and(|t| tags.contains(&t)))
            .collect(),
    }
}

/// The plain pull consumer: you choose the queues, pull from offsets you keep, and commit
/// them to the broker when you like (RocketMQ's `DefaultMQPullConsumer`). For a consumer
/// that shares queues out in a group and only asks you to poll, see [`LitePullConsumer`].
///
/// ```
/// use actimq::{ClientConfig, ClientInstance, Message as MqMessage, Producer, ProducerConfig};
/// use actimq::{PullConsumer, PullStatus};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # actimq::actix::System::new().block_on(async {
/// # let store = tempfile::tempdir()?;
/// # let cluster = actimq::server::LocalCluster::start(store.path()).await?;
/// let client = ClientInstance::start(ClientConfig::new(cluster.namesrv_addr()))?;
/// let producer = Producer::start(client.clone(), ProducerConfig::new("p"));
/// for i in 0..5 {
///     producer.send(MqMessage::new("Audit", format!("event {i}"))).await?;
/// }
///
/// let consumer = PullConsumer::new(client.clone(), "auditors");
/// let mut read = 0;
/// for queue in consumer.fetch_queues("Audit").await? {
///     // Start where the group left off, or at the start of the queue.
///     let mut offset = consumer.fetch_offset(&queue).await?.unwrap_or(0);
///     loop {
///         let result = consumer.pull(&queue, "*", offset, 32).await?;
///         read += result.messages.len();
///         offset = result.next_begin_offset;
///         if result.status != PullStatus::Found {
///             break; // NoNewMessage: caught up with this queue
///         }
///     }
///     consumer.commit_offset(&queue, offset).await?;
/// }
/// assert_eq!(read, 5);
/// # ClientInstance::shutdown(&client).await;
/// # cluster.shutdown().await;
/// # Ok(())
/// # })
/// # }
/// ```
#[derive(Clone)]
pub struct PullConsumer {
    client: Addr<ClientInstance>,
    group: String,
}

impl PullConsumer {
    /// A pull consumer of `group` on a client instance.
    pub fn new(client: Addr<ClientInstance>, group: impl Into<String>) -> Self {
        PullConsumer {
            client,
            group: group.into(),
        }
    }

    /// The readable queues of a topic.
    pub async fn fetch_queues(&self, topic: &str) -> Result<Vec<MessageQueue>, ClientError> {
        consumer_support::read_queues(&self.client, topic, true).await
    }

    /// Up to `max` messages of `mq` from `offset` whose tag matches `expression` (`*` = all).
    pub async fn pull(
        &self,
        mq: &MessageQueue,
        expression: &str,
        offset: u64,
        max: u32,
    ) -> Result<PullResult, ClientError> {
        let (link, _) = consumer_support::reader_for(&self.client, mq).await?;
        let p = consumer_support::pull(
            &link,
            &self.group,
            mq,
            offset,
            max.clamp(1, 1024) as i32,
            expression,
            None,
        )
        .await?;
        Ok(to_result(p, expression))
    }

    /// The group's committed offset of `mq`, if any.
    pub async fn fetch_offset(&self, mq: &MessageQueue) -> Result<Option<u64>, ClientError> {
        let (link, _) = consumer_support::reader_for(&self.client, mq).await?;
        consumer_support::query_offset(&link, &self.group, mq).await
    }

    /// Commits the group's offset of `mq`.
    pub async fn commit_offset(&self, mq: &MessageQueue, offset: u64) -> Result<(), ClientError> {
        let (link, _) = consumer_support::reader_for(&self.client, mq).await?;
        consumer_support::commit_offset(&link, &self.group, mq, offset).await
    }
}

/// Lite pull consumer settings.
#[derive(Debug, Clone)]
pub struct LitePullConsumerConfig {
    /// Consumer group.
    pub consumer_group: String,
    /// Topic → expression.
    pub subscriptions: BTreeMap<String, String>,
    /// Where a group with no committed offset starts.
    pub consume_from_where: ConsumeFromWhere,
    /// Most messages one poll returns.
    pub pull_batch_size: u32,
    /// How often returned offsets are committed.
    pub persist_consumer_offset_interval: Duration,
    /// How often the rebalance runs without a change notice.
    pub rebalance_interval: Duration,
}

impl LitePullConsumerConfig {
    /// Defaults for a group.
    pub fn new(group: impl Into<String>) -> Self {
        LitePullConsumerConfig {
            consumer_group: group.into(),
            subscriptions: BTreeMap::new(),
            consume_from_where: ConsumeFromWhere::LastOffset,
            pull_batch_size: 32,
            persist_consumer_offset_interval: Duration::from_secs(5),
            rebalance_interval: Duration::from_secs(20),
        }
    }

    /// Adds a subscription.
    pub fn subscribe(mut self, topic: impl Into<String>, expression: impl Into<String>) -> Self {
        self.subscriptions.insert(topic.into(), expression.into());
        self
    }
}

/// The lite pull consumer actor.
pub struct LitePullActor {
    client: Addr<ClientInstance>,
    config: LitePullConsumerConfig,
    /// Owned queues and the next offset to return (None until resolved).
    queues: BTreeMap<MessageQueue, Option<u64>>,
    committed: BTreeMap<MessageQueue, u64>,
    rebalancer: Option<Addr<Rebalancer>>,
    cursor: usize,
    /// When this consumer started (ms): where `LastOffset` starts queues without an offset.
    subscribed_at_ms: i64,
}

#[derive(Message)]
#[rtype(result = "Result<Vec<MessageExt>, ClientError>")]
struct Poll(Duration);

#[derive(Message)]
#[rtype(result = "()")]
struct Close;

#[derive(Message)]
#[rtype(result = "()")]
struct SetRebalancer(Addr<Rebalancer>);

/// Handle to a lite pull consumer.
#[derive(Clone)]
pub struct LitePullConsumer {
    addr: Addr<LitePullActor>,
}

impl LitePullConsumer {
    /// Subscribes and joins the group.
    pub async fn start(
        client: Addr<ClientInstance>,
        config: LitePullConsumerConfig,
    ) -> Result<LitePullConsumer, ClientError> {
        let client_id = client
            .send(GetClientId)
            .await
            .map_err(|_| ClientError::Shutdown)?;
        let data = ConsumerData {
            group_name: config.consumer_group.clone(),
            consume_type: ConsumeType::ConsumeActively,
            message_model: MessageModel::Clustering,
            consume_from_where: config.consume_from_where,
            subscription_data_set: config
                .subscriptions
                .iter()
                .map(|(t, e)| SubscriptionData {
                    topic: t.clone(),
                    sub_string: e.clone(),
                    expression_type: "TAG".into(),
                    ..Default::default()
                })
                .collect(),
            assigned_queues: None,
        };
        let (c, cfg) = (client.clone(), config.clone());
        let addr = Actor::start(LitePullActor {
            client: c,
            config: cfg,
            queues: BTreeMap::new(),
            committed: BTreeMap::new(),
            rebalancer: None,
            cursor: 0,
            subscribed_at_ms: crate::common::clock::now_ms(),
        });
        let topics: Vec<String> = config.subscriptions.keys().cloned().collect();
        let (c, g, target, every) = (
            client.clone(),
            config.consumer_group.clone(),
            addr.clone().recipient(),
            config.rebalance_interval,
        );
        let rebalancer = Supervisor::start(move |_| {
            Rebalancer::new(
                c,
                g,
                client_id,
                MessageModel::Clustering,
                topics,
                Arc::new(AllocateAveragely),
                target,
                every,
            )
        });
        addr.do_send(SetRebalancer(rebalancer.clone()));
        // A lite pull consumer keeps its own offsets per call: a broker reset reaches it
        // through the committed offsets it reads back, not as a notice.
        consumer_support::join_group(&client, data, &rebalancer, None).await?;
        Ok(LitePullConsumer { addr })
    }

    /// The next messages from this member's queues, waiting up to `timeout` for some.
    pub async fn poll(&self, timeout: Duration) -> Result<Vec<MessageExt>, ClientError> {
        self.addr
            .send(Poll(timeout))
            .await
            .map_err(|_| ClientError::Shutdown)?
    }

    /// The queues this member owns now.
    pub async fn assignment(&self) -> Vec<MessageQueue> {
        self.addr.send(GetQueues).await.unwrap_or_default()
    }

    /// Commits what was returned and leaves the group.
    pub async fn shutdown(&self) {
        let _ = self.addr.send(Close).await;
    }
}

#[derive(Message)]
#[rtype(result = "Vec<MessageQueue>")]
struct GetQueues;

impl LitePullActor {
    fn commit_changed(
        &mut self,
    ) -> impl std::future::Future<Output = Vec<(MessageQueue, u64)>> + 'static {
        let changed: Vec<(MessageQueue, u64)> = self
            .queues
            .iter()
            .filter_map(|(mq, o)| Some((mq.clone(), (*o)?)))
            .filter(|(mq, o)| self.committed.get(mq) != Some(o))
            .collect();
        let (client, group) = (self.client.clone(), self.config.consumer_group.clone());
        async move {
            let mut done = Vec::new();
            for (mq, o) in changed {
                if let Ok((link, _)) = consumer_support::reader_for(&client, &mq).await {
                    if consumer_support::commit_offset(&link, &group, &mq, o)
                        .await
                        .is_ok()
                    {
                        done.push((mq, o));
                    }
                }
            }
            done
        }
    }
}

impl Actor for LitePullActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.config.persist_consumer_offset_interval, |act, ctx| {
            let fut = act.commit_changed();
            ctx.spawn(
                fut.into_actor(act)
                    .map(|done, act, _| act.committed.extend(done)),
            );
        });
    }
}

impl Handler<SetRebalancer> for LitePullActor {
    type Result = ();
    fn handle(&mut self, msg: SetRebalancer, _: &mut Self::Context) {
        self.rebalancer = Some(msg.0);
    }
}

impl Handler<GetQueues> for LitePullActor {
    type Result = MessageResult<GetQueues>;
    fn handle(&mut self, _: GetQueues, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.queues.keys().cloned().collect())
    }
}

impl Handler<Assign> for LitePullActor {
    type Result = ResponseActFuture<Self, bool>;

    fn handle(&mut self, msg: Assign, _: &mut Self::Context) -> Self::Result {
        let gone: Vec<(MessageQueue, u64)> = self
            .queues
            .iter()
            .filter(|(mq, _)| mq.topic == msg.topic && !msg.queues.contains(*mq))
            .filter_map(|(mq, o)| Some((mq.clone(), (*o)?)))
            .collect();
        self.queues
            .retain(|mq, _| mq.topic != msg.topic || msg.queues.contains(mq));
        for mq in &msg.queues {
            self.queues.entry(mq.clone()).or_insert(None);
        }
        // Announced in heartbeats, so `consumerConnection` shows what this member holds.
        self.client.do_send(ReportAssignment {
            group: self.config.consumer_group.clone(),
            queues: self.queues.keys().cloned().collect(),
        });
        let (client, group) = (self.client.clone(), self.config.consumer_group.clone());
        Box::pin(
            async move {
                // Give queues away only after committing where this member got to.
                for (mq, o) in gone {
                    if let Ok((link, _)) = consumer_support::reader_for(&client, &mq).await {
                        let _ = consumer_support::commit_offset(&link, &group, &mq, o).await;
                    }
                }
                true
            }
            .into_actor(self),
        )
    }
}

impl Handler<Poll> for LitePullActor {
    type Result = ResponseActFuture<Self, Result<Vec<MessageExt>, ClientError>>;

    fn handle(&mut self, msg: Poll, _: &mut Self::Context) -> Self::Result {
        let deadline = Instant::now() + msg.0;
        let mut order: Vec<(MessageQueue, Option<u64>)> =
            self.queues.iter().map(|(q, o)| (q.clone(), *o)).collect();
        if !order.is_empty() {
            let k = self.cursor % order.len();
            order.rotate_left(k);
            self.cursor = self.cursor.wrapping_add(1);
        }
        let (client, group) = (self.client.clone(), self.config.consumer_group.clone());
        let (from, max) = (self.config.consume_from_where, self.config.pull_batch_size);
        let since = self.subscribed_at_ms;
        let exprs = self.config.subscriptions.clone();
        let work = async move {
            let mut moved = Vec::new();
            let mut anchors = consumer_support::SubscriptionAnchors::new(since);
            loop {
                for (mq, next) in order.iter_mut() {
                    let Ok((link, _)) = consumer_support::reader_for(&client, mq).await else {
                        continue;
                    };
                    let offset = match next {
                        Some(o) => *o,
                        None => match consumer_support::query_offset(&link, &group, mq).await {
                            Ok(Some(o)) => o,
                            Ok(None) => {
                                let since = anchors.since(&client, &group, &mq.topic).await;
                                consumer_support::initial_offset(&link, &group, mq, from, 0, since)
                                    .await
                                    .unwrap_or(0)
                            }
                            Err(_) => continue,
                        },
                    };
                    *next = Some(offset);
                    let expr = exprs.get(&mq.topic).map(String::as_str).unwrap_or("*");
                    let Ok(p) =
                        consumer_support::pull(&link, &group, mq, offset, max as i32, expr, None)
                            .await
                    else {
                        continue;
                    };
                    let r = to_result(p, expr);
                    let advanced = r.next_begin_offset;
                    *next = Some(advanced);
                    moved.push((mq.clone(), advanced));
                    if !r.messages.is_empty() {
                        return (moved, order, r.messages);
                    }
                }
                if Instant::now() >= deadline {
                    return (moved, order, Vec::new());
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        };
        Box::pin(work.into_actor(self).map(|(moved, order, msgs), act, _| {
            for (mq, o) in order
                .into_iter()
                .chain(moved.into_iter().map(|(q, o)| (q, Some(o))))
            {
                if let (Some(slot), Some(o)) = (act.queues.get_mut(&mq), o) {
                    *slot = Some(slot.map_or(o, |cur| cur.max(o)));
                }
            }
            Ok(msgs)
        }))
    }
}

impl Handler<Close> for LitePullActor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Close, _: &mut Self::Context) -> Self::Result {
        if let Some(r) = self.rebalancer.take() {
            r.do_send(StopRebalancer);
        }
        let (client, group) = (self.client.clone(), self.config.consumer_group.clone());
        Box::pin(
            self.commit_changed()
                .into_actor(self)
                .then(move |done, act, _| {
                    act.committed.extend(done);
                    act.queues.clear();
                    async move {
                        let _ = client.send(UnregisterConsumer(group)).await;
                    }
                    .into_actor(act)
                }),
        )
    }
}
