//! The push consumer's settings and the listener it hands messages to.
//!
//! Owns [`PushConsumerConfig`] (RocketMQ's names and defaults) and [`MessageListener`]. It
//! must never hold consumer state: the actor in the parent module does.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use futures_util::future::BoxFuture;

use super::ConsumeMessages;
use crate::actors::client::queue_puller::ListenerFn;
use crate::actors::client::rebalancer::allocate::{AllocateAveragely, AllocateStrategy};
use crate::client::{ConsumeFromWhere, ConsumeResult, MessageExt, MessageModel};

/// What consumes messages: a function or an actor.
#[derive(Clone)]
pub struct MessageListener(pub(super) ListenerFn);

impl MessageListener {
    /// A plain function, called on the consumer's thread; keep it quick (hand long work to
    /// an actor and use [`MessageListener::actor`]).
    pub fn from_fn(f: impl Fn(&[MessageExt]) -> ConsumeResult + Send + Sync + 'static) -> Self {
        let f = Arc::new(f);
        MessageListener(Arc::new(move |msgs| {
            let r = f(&msgs);
            Box::pin(async move { r }) as BoxFuture<'static, ConsumeResult>
        }))
    }

    /// An actor that handles [`ConsumeMessages`]; a dead actor means "reconsume later".
    /// The handler can answer [`ConsumeResult`] directly (`type Result = ConsumeResult;`),
    /// and other messages can ask the actor what it has seen, as a web handler would.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use std::time::Duration;
    ///
    /// // actix comes from actimq, so its version is always the client's.
    /// use actimq::actix::prelude::*;
    /// // actix's prelude has a `Message` trait and derive: rename the client's message.
    /// use actimq::{
    ///     ClientConfig, ClientInstance, ConsumeFromWhere, ConsumeMessages, ConsumeResult,
    ///     Message as MqMessage, MessageListener, Producer, ProducerConfig, PushConsumer,
    ///     PushConsumerConfig,
    /// };
    ///
    /// /// Counts messages per tag.
    /// #[derive(Default)]
    /// struct TagCounter {
    ///     counts: HashMap<String, usize>,
    /// }
    ///
    /// impl Actor for TagCounter {
    ///     type Context = Context<Self>;
    /// }
    ///
    /// impl Handler<ConsumeMessages> for TagCounter {
    ///     type Result = ConsumeResult;
    ///
    ///     fn handle(&mut self, batch: ConsumeMessages, _: &mut Context<Self>) -> ConsumeResult {
    ///         for m in batch.0 {
    ///             *self.counts.entry(m.tags().unwrap_or("").to_owned()).or_default() += 1;
    ///         }
    ///         ConsumeResult::Success
    ///     }
    /// }
    ///
    /// /// Asks the counter for its counts.
    /// #[derive(Message)]
    /// #[rtype(result = "HashMap<String, usize>")]
    /// struct GetCounts;
    ///
    /// impl Handler<GetCounts> for TagCounter {
    ///     type Result = MessageResult<GetCounts>;
    ///
    ///     fn handle(&mut self, _: GetCounts, _: &mut Context<Self>) -> Self::Result {
    ///         MessageResult(self.counts.clone())
    ///     }
    /// }
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # actimq::actix::System::new().block_on(async {
    /// # let store = tempfile::tempdir()?;
    /// # let cluster = actimq::server::LocalCluster::start(store.path()).await?;
    /// let client = ClientInstance::start(ClientConfig::new(cluster.namesrv_addr()))?;
    /// let producer = Producer::start(client.clone(), ProducerConfig::new("p"));
    /// for tag in ["Created", "Created", "Paid"] {
    ///     producer.send(MqMessage::new("Orders", "order").with_tags(tag)).await?;
    /// }
    ///
    /// let counter = TagCounter::default().start();
    /// let config = PushConsumerConfig::new("tag-counters")
    ///     .subscribe("Orders", "*")
    ///     .consume_from(ConsumeFromWhere::FirstOffset);
    /// let listener = MessageListener::actor(counter.clone().recipient());
    /// let consumer = PushConsumer::start(client.clone(), config, listener).await?;
    ///
    /// let mut counts = HashMap::new();
    /// for _ in 0..1500 {
    ///     counts = counter.send(GetCounts).await?;
    ///     if counts.values().sum::<usize>() == 3 {
    ///         break;
    ///     }
    ///     actimq::actix::clock::sleep(Duration::from_millis(20)).await;
    /// }
    /// assert_eq!(counts.get("Created"), Some(&2));
    /// assert_eq!(counts.get("Paid"), Some(&1));
    /// consumer.shutdown().await?;
    /// producer.shutdown().await;
    /// ClientInstance::shutdown(&client).await;
    /// # cluster.shutdown().await;
    /// # Ok(())
    /// # })
    /// # }
    /// ```
    pub fn actor(recipient: Recipient<ConsumeMessages>) -> Self {
        MessageListener(Arc::new(move |msgs| {
            let r = recipient.clone();
            Box::pin(async move {
                r.send(ConsumeMessages(msgs))
                    .await
                    .unwrap_or(ConsumeResult::ReconsumeLater)
            })
        }))
    }
}

/// Push-consumer settings (RocketMQ's names and defaults).
#[derive(Clone)]
pub struct PushConsumerConfig {
    /// Consumer group.
    pub consumer_group: String,
    /// Topic → subscription expression (`*`, `TagA || TagB`).
    pub subscriptions: BTreeMap<String, String>,
    /// Clustering (queues shared out) or broadcasting (every member gets everything).
    pub message_model: MessageModel,
    /// Where a group with no committed offset starts.
    pub consume_from_where: ConsumeFromWhere,
    /// With [`ConsumeFromWhere::Timestamp`]: ms since the epoch.
    pub consume_timestamp: i64,
    /// One batch at a time per queue, in queue order.
    pub orderly: bool,
    /// Messages per listener call.
    pub consume_message_batch_max_size: usize,
    /// Messages per pull.
    pub pull_batch_size: i32,
    /// Stop pulling a queue while this many of its messages wait.
    pub pull_threshold_for_queue: usize,
    /// How often offsets are committed.
    pub persist_consumer_offset_interval: Duration,
    /// How often the rebalance runs without a change notice.
    pub rebalance_interval: Duration,
    /// Clustering, concurrent: a failed message (the listener answered `ReconsumeLater`,
    /// panicked, or ran past `consume_timeout`) is sent back to its broker, which delivers
    /// it again from the group's retry topic `%RETRY%<group>` after the delay of level
    /// `3 + reconsume times` (10 s, 30 s, 1 min, ... with the broker's default levels),
    /// while the rest of its queue goes on. Once it was redelivered this many times it goes
    /// to the group's dead-letter topic `%DLQ%<group>` instead (`mqadmin queryDlqMsg`).
    /// Orderly: the queue is retried locally this many times, then the message is
    /// dead-lettered and the queue moves on. Default 16 (RocketMQ's).
    pub max_reconsume_times: u32,
    /// Clustering, concurrent: wait before consuming a failed message again here when it
    /// could not be sent back to its broker (the broker is away); it is never dropped.
    /// Default 5 s.
    pub reconsume_delay: Duration,
    /// Orderly: how long a queue whose batch failed waits before the same batch is
    /// consumed again (RocketMQ's `suspendCurrentQueueTimeMillis`). Default 1 s.
    pub suspend_current_queue_time: Duration,
    /// A listener call running longer than this counts as failed (its messages are
    /// retried as above). An async listener's future is dropped then; a plain function
    /// cannot be interrupted and is judged when it returns. Default 15 min (RocketMQ's).
    pub consume_timeout: Duration,
    /// How long a broker may hold a pull.
    pub pull_suspend: Duration,
    /// Folder of broadcasting consumers' offset files (`<dir>/<group>.toml`, kept across
    /// restarts). Two broadcasting consumers of one group on one machine need two folders.
    pub offset_store_dir: PathBuf,
    /// How queues are shared out.
    pub allocate_strategy: Arc<dyn AllocateStrategy>,
}

impl PushConsumerConfig {
    /// Defaults for a group.
    pub fn new(group: impl Into<String>) -> Self {
        let home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        PushConsumerConfig {
            consumer_group: group.into(),
            subscriptions: BTreeMap::new(),
            message_model: MessageModel::Clustering,
            consume_from_where: ConsumeFromWhere::LastOffset,
            consume_timestamp: 0,
            orderly: false,
            consume_message_batch_max_size: 1,
            pull_batch_size: 32,
            pull_threshold_for_queue: 1000,
            persist_consumer_offset_interval: Duration::from_secs(5),
            rebalance_interval: Duration::from_secs(20),
            max_reconsume_times: 16,
            reconsume_delay: Duration::from_secs(5),
            suspend_current_queue_time: Duration::from_secs(1),
            consume_timeout: Duration::from_secs(15 * 60),
            pull_suspend: Duration::from_secs(15),
            offset_store_dir: home.join(".actimq").join("offsets"),
            allocate_strategy: Arc::new(AllocateAveragely),
        }
    }

    /// Adds a subscription.
    pub fn subscribe(mut self, topic: impl Into<String>, expression: impl Into<String>) -> Self {
        self.subscriptions.insert(topic.into(), expression.into());
        self
    }

    /// Where a group with no committed offset starts: [`ConsumeFromWhere::LastOffset`]
    /// (the default: what is stored from the group's start on), `FirstOffset` (everything
    /// still stored), or `Timestamp` (set [`PushConsumerConfig::consume_timestamp`] too).
    pub fn consume_from(mut self, from: ConsumeFromWhere) -> Self {
        self.consume_from_where = from;
        self
    }

    /// Broadcasting: every member of the group gets every message, and offsets are kept
    /// in `offset_store_dir` on this machine instead of on the brokers. A message the
    /// listener fails is not retried (as in RocketMQ): it is dropped with a warning.
    pub fn broadcasting(mut self) -> Self {
        self.message_model = MessageModel::Broadcasting;
        self
    }

    /// Orderly: each queue's messages go to the listener one batch at a time, in queue
    /// order (pair with [`crate::Producer::send_orderly`]).
    pub fn orderly(mut self) -> Self {
        self.orderly = true;
        self
    }
}
