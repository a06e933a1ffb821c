//! Producer: sends messages for one producer group.
//!
//! Owns the publish view of each topic (its writable queues on master brokers), the
//! round-robin position, and the list of brokers that failed recently (latency fault
//! tolerance: a broker that failed is avoided for `not_available_duration`). Four send modes:
//! synchronous ([`Producer::send`]: the reply is the broker's SendResult), asynchronous
//! ([`Producer::send_async`]: a callback fires exactly once), one-way
//! ([`Producer::send_oneway`]: nothing is asked of the broker) and ordered
//! ([`Producer::send_orderly`]: one sharding key always lands in the same queue), plus
//! [`Producer::send_batch`]. A failed send is retried on another broker up to
//! `retry_times_when_send_failed` times within `send_msg_timeout`.
//!
//! Sends run concurrently, each in its caller's task, over state every clone of the
//! [`Producer`] handle shares (routes, faults, links): a send is never an actor message, so
//! no mailbox sits on the send path. There is no producer actor: the one there was had no
//! handler and never stopped, so its address only ever served as a liveness token. The
//! producer registers its group with the client instance when it starts, and a send fails
//! with [`ClientError::Shutdown`] once that instance has stopped (with the actix system).
//! `send` holds the send path itself (routes, queue choice, retries, validation).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use parking_lot::Mutex;

use crate::actors::client::client_instance::{
    ClientInstance, GetLink, GetRoute, RegisterProducer, UnregisterProducer,
};
use crate::actors::remote_link::{self, RemoteLink};
use crate::client::{ClientError, Message, SendResult, SendStatus};
use crate::protocol::batch::{encode_batch, BatchEntry};
use crate::protocol::message::{SendMessageRequestHeader, SendMessageResponseHeader};
use crate::protocol::route::TopicRouteData;
use crate::protocol::topic::is_writeable;
use crate::protocol::topic::AUTO_CREATE_TOPIC_KEY;
use crate::protocol::{Frame, MessageQueue, RequestCode, ResponseCode};

mod send;

/// Producer settings (RocketMQ's names and defaults).
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Producer group.
    pub producer_group: String,
    /// Overall time budget of one send, retries included.
    pub send_msg_timeout: Duration,
    /// Extra attempts on other brokers after a failure.
    pub retry_times_when_send_failed: u32,
    /// Largest body accepted (checked before sending).
    pub max_message_size: usize,
    /// How long a broker that failed is avoided.
    pub not_available_duration: Duration,
    /// How long a topic's publish view is trusted before asking for its route again.
    pub route_ttl: Duration,
    /// Try another broker when one stores a message without `SEND_OK` (a slave that did
    /// not confirm in time): the message may then be stored twice. Off by default, as in
    /// RocketMQ; the last such result is returned when no broker does better.
    pub retry_another_broker_when_not_store_ok: bool,
    /// An ordered send whose key's queue is on a broker whose master is down goes to another
    /// queue (RocketMQ's rehash: the key's order across the switch is lost) instead of
    /// failing with [`ClientError::BrokerUnavailable`]. Off by default: strict order.
    pub rehash_orderly_when_broker_down: bool,
}

impl ProducerConfig {
    /// Defaults for a group.
    pub fn new(group: impl Into<String>) -> Self {
        ProducerConfig {
            producer_group: group.into(),
            send_msg_timeout: Duration::from_secs(3),
            retry_times_when_send_failed: 2,
            max_message_size: 4 * 1024 * 1024,
            not_available_duration: Duration::from_secs(10),
            route_ttl: Duration::from_secs(30),
            retry_another_broker_when_not_store_ok: false,
            rehash_orderly_when_broker_down: false,
        }
    }
}

/// A writable queue and the master that owns it.
#[derive(Debug, Clone)]
struct Target {
    queue: MessageQueue,
    broker_addr: String,
}

#[derive(Debug, Clone)]
struct PublishInfo {
    /// Shared, not copied, by every send (a copy cost a few allocations per queue).
    targets: Arc<[Target]>,
    fetched: Instant,
}

fn publish_info(route: &TopicRouteData, topic: &str, cap_queues: Option<i32>) -> Vec<Target> {
    let mut targets = Vec::new();
    for q in route.queue_datas.iter().filter(|q| is_writeable(q.perm)) {
        let Some(addr) = route
            .broker_datas
            .iter()
            .find(|b| b.broker_name == q.broker_name)
            .and_then(|b| b.master_addr())
        else {
            continue;
        };
        let n = cap_queues.map_or(q.write_queue_nums, |c| q.write_queue_nums.min(c));
        for id in 0..n.max(0) {
            targets.push(Target {
                queue: MessageQueue {
                    topic: topic.to_owned(),
                    broker_name: q.broker_name.clone(),
                    queue_id: id,
                },
                broker_addr: addr.to_owned(),
            });
        }
    }
    targets.sort_by(|a, b| a.queue.cmp(&b.queue));
    targets
}

/// Broker sets whose master is away, with their write-queue counts.
type MasterlessSets = Arc<[(String, i32)]>;

/// The sets of `route` whose master is away (queue data but no master registered), with
/// their write-queue counts.
fn masterless_sets(route: &TopicRouteData) -> Vec<(String, i32)> {
    route
        .queue_datas
        .iter()
        .filter(|q| {
            !route
                .broker_datas
                .iter()
                .any(|b| b.broker_name == q.broker_name && b.master_addr().is_some())
        })
        .map(|q| (q.broker_name.clone(), q.write_queue_nums))
        .collect()
}

/// How a send picks its queue.
#[derive(Debug, Clone)]
enum Placement {
    RoundRobin,
    ShardingKey(String),
    Queue(MessageQueue),
}

/// One request's worth of message data, ready to send.
struct Outgoing {
    topic: String,
    body: Bytes,
    batch: bool,
    flag: i32,
    properties: String,
    unique_id: String,
}

/// State shared by every clone of a [`Producer`] and the sends they run.
struct Shared {
    config: ProducerConfig,
    client: Addr<ClientInstance>,
    routes: Mutex<HashMap<String, PublishInfo>>,
    /// Per topic, the broker sets whose master is away, with their write-queue counts: an
    /// ordered send's key still maps onto their queues, so it fails instead of moving.
    masterless: Mutex<HashMap<String, MasterlessSets>>,
    faults: Mutex<HashMap<String, Instant>>,
    links: Mutex<HashMap<String, Addr<RemoteLink>>>,
    next: AtomicU64,
    uniq_prefix: String,
    uniq_counter: AtomicU64,
    /// Set by [`Producer::shutdown`]: sends that start afterwards fail.
    closed: AtomicBool,
    /// Sends under way, and the wake-up of a shutdown waiting for them to end.
    in_flight: AtomicUsize,
    idle: tokio::sync::Notify,
}

/// Counts one send as under way for as long as it lives.
struct InFlight(Arc<Shared>);

impl InFlight {
    /// Counts a send in, or refuses it once the producer is shut down. Counting first and
    /// checking `closed` after means a shutdown either sees this send or this send sees
    /// the shutdown; never neither.
    fn enter(shared: &Arc<Shared>) -> Result<InFlight, ClientError> {
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(Arc::clone(shared));
        if shared.closed.load(Ordering::SeqCst) || !shared.client.connected() {
            return Err(ClientError::Shutdown);
        }
        Ok(guard)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Handle to a producer; cheap to clone, and every clone sends for the same group.
///
/// ```
/// use std::time::Duration;
///
/// use actimq::{ClientConfig, ClientError, ClientInstance, Message as MqMessage};
/// use actimq::{Producer, ProducerConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # actimq::actix::System::new().block_on(async {
/// # let store = tempfile::tempdir()?;
/// # let cluster = actimq::server::LocalCluster::start(store.path()).await?;
/// let client = ClientInstance::start(ClientConfig::new(cluster.namesrv_addr()))?;
/// let producer = Producer::start(client.clone(), ProducerConfig::new("orders-producer"));
///
/// // Synchronous: resolves once the broker stored the message (retried on another broker
/// // if one fails).
/// let result = producer.send(MqMessage::new("Orders", "order 1").with_key("order-1")).await?;
/// println!("{} at offset {} of {:?}", result.msg_id(), result.queue_offset, result.message_queue);
///
/// // Asynchronous: each `send_async` starts at once and returns a future of its result.
/// // The sends run concurrently whether or not, and in whatever order, they are awaited.
/// let handles: Vec<_> = (2..=100)
///     .map(|i| producer.send_async(MqMessage::new("Orders", format!("order {i}"))))
///     .collect();
/// for handle in handles {
///     handle.await?;
/// }
///
/// // Ordered: one sharding key always lands in the same queue, so an orderly consumer
/// // sees these in this order.
/// for step in ["created", "paid", "shipped"] {
///     producer.send_orderly(MqMessage::new("Orders", step), "order-7").await?;
/// }
///
/// // One send with its own time budget, retries included.
/// match producer.send_with_timeout(MqMessage::new("Orders", "urgent"), Duration::from_secs(1)).await {
///     Ok(r) => println!("stored {}", r.msg_id()),
///     Err(ClientError::Exhausted { attempts, last, .. }) => {
///         println!("gave up after {attempts} attempts; last cause: {last:?}")
///     }
///     Err(e) => return Err(e.into()),
/// }
///
/// producer.shutdown().await; // waits for sends under way, then refuses new ones
/// ClientInstance::shutdown(&client).await;
/// # cluster.shutdown().await;
/// # Ok(())
/// # })
/// # }
/// ```
#[derive(Clone)]
pub struct Producer {
    shared: Arc<Shared>,
}

impl Producer {
    /// Starts a producer on a client instance.
    pub fn start(client: Addr<ClientInstance>, config: ProducerConfig) -> Producer {
        let uniq_prefix = uuid::Uuid::new_v4().simple().to_string()[..20].to_uppercase();
        let shared = Arc::new(Shared {
            config,
            client,
            routes: Mutex::new(HashMap::new()),
            masterless: Mutex::new(HashMap::new()),
            faults: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            // A random first queue (as RocketMQ): producers started together, or one send
            // per process, do not all land on the first queue.
            next: AtomicU64::new(uuid::Uuid::new_v4().as_u64_pair().0 >> 1),
            uniq_prefix,
            uniq_counter: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            idle: tokio::sync::Notify::new(),
        });
        // Heartbeats announce the group to brokers from now on.
        let group = shared.config.producer_group.clone();
        shared.client.do_send(RegisterProducer(group));
        Producer { shared }
    }

    async fn send_one(
        &self,
        msg: Message,
        placement: Placement,
        oneway: bool,
    ) -> Result<SendResult, ClientError> {
        self.send_within(msg, placement, oneway, None).await
    }

    async fn send_within(
        &self,
        msg: Message,
        placement: Placement,
        oneway: bool,
        budget: Option<Duration>,
    ) -> Result<SendResult, ClientError> {
        let _counted = InFlight::enter(&self.shared)?;
        Arc::clone(&self.shared)
            .send_one(msg, placement, oneway, budget)
            .await
    }

    /// Synchronous send: resolves once the broker stored the message.
    pub async fn send(&self, msg: Message) -> Result<SendResult, ClientError> {
        self.send_one(msg, Placement::RoundRobin, false).await
    }

    /// [`Producer::send`] with its own time budget (retries included) instead of
    /// `send_msg_timeout`: the send fails with [`ClientError::Exhausted`] once it is spent.
    pub async fn send_with_timeout(
        &self,
        msg: Message,
        timeout: Duration,
    ) -> Result<SendResult, ClientError> {
        self.send_within(msg, Placement::RoundRobin, false, Some(timeout))
            .await
    }

    /// Asynchronous send: the send starts at once and goes on by itself; the returned
    /// [`SendHandle`] resolves to its outcome when awaited, and dropping it does not stop
    /// the send. Collecting many results is awaiting each handle in turn (the sends
    /// already run concurrently), or `futures::future::join_all` over them.
    pub fn send_async(&self, msg: Message) -> SendHandle {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.spawn_send(msg, move |result| {
            // The handle may have been dropped: nobody to tell then.
            let _ = tx.send(result);
        });
        SendHandle(rx)
    }

    /// Runs a round-robin send in its own task and hands its outcome to `done`. The send is
    /// counted as under way from this call on, not from when the task first runs, so a
    /// [`Producer::shutdown`] right after still waits for it.
    fn spawn_send(
        &self,
        msg: Message,
        done: impl FnOnce(Result<SendResult, ClientError>) + Send + 'static,
    ) {
        match InFlight::enter(&self.shared) {
            Ok(counted) => {
                let shared = Arc::clone(&self.shared);
                actix::spawn(async move {
                    let result = shared
                        .send_one(msg, Placement::RoundRobin, false, None)
                        .await;
                    drop(counted);
                    done(result);
                });
            }
            Err(e) => done(Err(e)),
        }
    }

    /// Asynchronous send with a callback, called exactly once with the outcome (RocketMQ's
    /// `send(msg, SendCallback)`).
    pub fn send_async_with(
        &self,
        msg: Message,
        callback: impl FnOnce(Result<SendResult, ClientError>) + Send + 'static,
    ) {
        self.spawn_send(msg, callback);
    }

    /// One-way send: nothing is asked of the broker, so delivery is not confirmed. Fails
    /// only if no broker link could take the frame.
    pub async fn send_oneway(&self, msg: Message) -> Result<(), ClientError> {
        self.send_one(msg, Placement::RoundRobin, true)
            .await
            .map(|_| ())
    }

    /// Ordered send: every message with the same `sharding_key` goes to the same queue, so
    /// an orderly consumer sees them in send order. Not retried on another queue.
    pub async fn send_orderly(
        &self,
        msg: Message,
        sharding_key: impl Into<String>,
    ) -> Result<SendResult, ClientError> {
        self.send_one(msg, Placement::ShardingKey(sharding_key.into()), false)
            .await
    }

    /// Sends to one chosen queue (a `MessageQueueSelector`'s answer).
    pub async fn send_to_queue(
        &self,
        msg: Message,
        queue: MessageQueue,
    ) -> Result<SendResult, ClientError> {
        self.send_one(msg, Placement::Queue(queue), false).await
    }

    /// Sends several messages of one topic as one request; they get consecutive offsets in
    /// one queue. The result's `queue_offset` is the first message's; its `unique_id` and
    /// `offset_msg_id` list every message's id, comma-separated, in batch order (as
    /// RocketMQ's batch `SendResult` does).
    pub async fn send_batch(&self, msgs: Vec<Message>) -> Result<SendResult, ClientError> {
        let _counted = InFlight::enter(&self.shared)?;
        Arc::clone(&self.shared).send_many(msgs).await
    }

    /// Stops this producer and every clone of it: sends that start afterwards fail with
    /// [`ClientError::Shutdown`]; sends already under way (the handles of
    /// [`Producer::send_async`] included) run to their end, each within its own time
    /// budget, before this returns; then the group is dropped from heartbeats and
    /// unregistered from the brokers. The [`ClientInstance`] and its connections stay up
    /// for the other producers and consumers; [`ClientInstance::shutdown`] stops them.
    /// Calling it again returns at once.
    pub async fn shutdown(&self) {
        if self.shared.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        loop {
            // Created before the check, so a wake-up between the two is not missed.
            let idle = self.shared.idle.notified();
            if self.shared.in_flight.load(Ordering::SeqCst) == 0 {
                break;
            }
            idle.await;
        }
        self.shared.links.lock().clear();
        let group = self.shared.config.producer_group.clone();
        // A stopped client instance has nothing left to unregister.
        let _ = self.shared.client.send(UnregisterProducer(group)).await;
    }

    /// The writable queues of a topic (for selectors).
    pub async fn queues(&self, topic: &str) -> Result<Vec<MessageQueue>, ClientError> {
        Ok(self
            .shared
            .publish(topic, false, Instant::now())
            .await?
            .iter()
            .map(|t| t.queue.clone())
            .collect())
    }
}

/// The outcome of a [`Producer::send_async`], as a future. The send runs whether or not this
/// is awaited; it resolves to [`ClientError::Shutdown`] if the actix system stopped first.
#[derive(Debug)]
pub struct SendHandle(tokio::sync::oneshot::Receiver<Result<SendResult, ClientError>>);

impl std::future::Future for SendHandle {
    type Output = Result<SendResult, ClientError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(ClientError::Shutdown)))
    }
}
