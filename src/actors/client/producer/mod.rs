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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;
use parking_lot::Mutex;

use crate::actors::client::client_instance::{ClientInstance, GetLink, GetRoute, RegisterProducer};
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
    faults: Mutex<HashMap<String, Instant>>,
    links: Mutex<HashMap<String, Addr<RemoteLink>>>,
    next: AtomicU64,
    uniq_prefix: String,
    uniq_counter: AtomicU64,
}

/// Handle to a producer; cheap to clone.
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
            faults: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            next: AtomicU64::new(0),
            uniq_prefix,
            uniq_counter: AtomicU64::new(0),
        });
        // Heartbeats announce the group to brokers from now on.
        let group = shared.config.producer_group.clone();
        shared.client.do_send(RegisterProducer(group));
        Producer { shared }
    }

    /// Whether the client instance this producer sends through still runs (it stops with
    /// the actix system): sends fail with [`ClientError::Shutdown`] once it has stopped.
    fn alive(&self) -> bool {
        self.shared.client.connected()
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
        if !self.alive() {
            return Err(ClientError::Shutdown);
        }
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
    /// the send. Collecting many results is `join_all` over the handles.
    pub fn send_async(&self, msg: Message) -> SendHandle {
        let me = self.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        actix::spawn(async move {
            // The handle may have been dropped: nobody to tell then.
            let _ = tx.send(me.send(msg).await);
        });
        SendHandle(rx)
    }

    /// Asynchronous send with a callback, called exactly once with the outcome (RocketMQ's
    /// `send(msg, SendCallback)`).
    pub fn send_async_with(
        &self,
        msg: Message,
        callback: impl FnOnce(Result<SendResult, ClientError>) + Send + 'static,
    ) {
        let me = self.clone();
        actix::spawn(async move { callback(me.send(msg).await) });
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
    /// one queue. The result names the first; its `msg_id` lists all, comma-separated.
    pub async fn send_batch(&self, msgs: Vec<Message>) -> Result<SendResult, ClientError> {
        if !self.alive() {
            return Err(ClientError::Shutdown);
        }
        Arc::clone(&self.shared).send_many(msgs).await
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
