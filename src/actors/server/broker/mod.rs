//! Broker actor: the front desk of a broker process.
//!
//! Owns the topic table, the broker's registration with every name server, and the maps from
//! (topic, queue) to [`MessageQueue`] actors and from group name to [`ConsumerGroup`]
//! actors. Each request from a [`Connection`](crate::actors::server::connection::Connection) is
//! routed to the actor that owns its state. Sends are the exception: the sends of one
//! connection read are appended here, together, with one commit-log write, answered, and the
//! queue actors of the touched queues are told so that they answer held pulls. Pulls are
//! answered by the queue actor. Timers: registration every `register_broker_interval` (and
//! at once after a topic change). On [`Shutdown`] it stops accepting, unregisters, persists
//! offsets and closes the store cleanly.
//!
//! Supervised: a poisoned store stops it, and the restart reopens the store (recovery runs)
//! while sends are refused; its other state (topic table, actor maps, links) survives the
//! restart unchanged (see `reopen`). `requests` routes each request; `send_pull` holds the
//! send and pull paths.

mod deferred;
mod internal_store;
mod producers;
mod reopen;
mod replication;
mod requests;
mod reset_offsets;
mod retry;
mod schedule;
mod send_pull;
pub mod topic_table;
mod transactions;

pub use internal_store::{InternalAnswers, StoreInternal, StoredInternally};
pub use schedule::ReadQueue;
pub use transactions::{store_one, AskProducer, CurrentStore, OP_REMOVE_TAG};

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};

use crate::actors::remote_link::{self, LinkConfig, RemoteLink};
use crate::actors::server::connection::{
    ConnId, ConnectionClosed, ConnectionLimits, Inbound, InboundBatch, Outbound, OutboundBatch,
};
use crate::actors::server::consumer_group::{self, ConsumerGroup, GroupTimings};
use crate::actors::server::ha;
use crate::actors::server::listener::{Listener, StopAccepting};
use crate::actors::server::message_queue::{self, tag_filter, Appended, MessageQueue, Pull};
use crate::actors::server::transaction_check::{
    CheckSettings, StopChecking, TransactionCheck, TRANSACTION_CHECK_GROUP,
};
use crate::config::BrokerConfig;
use crate::protocol::group::{GetConsumerListByGroupResponseBody, MessageQueue as Mq};
use crate::protocol::message::{
    GetEarliestMsgStoretimeResponseHeader, OffsetResponseHeader, PullMessageRequestHeader,
    QueryMessageResponseHeader, SendMessageRequestHeader, SendMessageResponseHeader,
};
use crate::protocol::route::{RegisterBrokerRequestHeader, UnregisterBrokerRequestHeader};
use crate::protocol::topic::{
    is_readable, is_writeable, ConsumeStats, OffsetWrapper, TopicOffset, TopicStatsTable,
};
use crate::protocol::{encode_body, Frame, NoHeader, Request, RequestCode, ResponseCode};
use crate::storage::{MessageStore, MessageToStore};
use topic_table::{validate_topic_name, TopicTable, TopicTableError};

/// Pull request flag: the client allows the broker to hold the request (long polling).
const PULL_FLAG_SUSPEND: i32 = 0x2;
/// Pull request flag: the request carries the group's committed offset.
const PULL_FLAG_COMMIT_OFFSET: i32 = 0x1;
pub use crate::protocol::topic::AUTO_CREATE_TOPIC_KEY;
/// Most consumer groups one broker keeps actors for.
const MAX_CONSUMER_GROUPS: usize = 10_000;
/// How long a name-server call may take.
const NAMESRV_TIMEOUT: Duration = Duration::from_secs(3);
/// How soon a failed registration is tried again (instead of at the next periodic one): a
/// broker started together with its name server must not stay unknown for 30 s because it
/// was up a moment first.
const REGISTRATION_RETRY: Duration = Duration::from_secs(1);

/// Why a broker could not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// `broker_ip1` and the port do not form a socket address.
    #[error("broker_ip1 '{0}' is not an IP address")]
    BadAddress(String),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] crate::storage::Error),
    /// The topic table could not be loaded.
    #[error(transparent)]
    Topics(#[from] TopicTableError),
    /// [`BrokerHandle::wait_registered`] ran out of time.
    #[error(
        "the broker is not registered with {missing} after {waited_ms} ms: is the name \
         server running and is namesrv_addr right? (the broker keeps trying)"
    )]
    NotRegistered {
        /// The name servers that have not accepted a registration yet.
        missing: String,
        /// How long it waited.
        waited_ms: u64,
    },
    /// The broker actor stopped (a shutdown).
    #[error("the broker has stopped")]
    Stopped,
}

/// Opens the store on a thread of its own: recovery may read for a while, and the event
/// loop must stay free to notice a SIGTERM meanwhile (the caller can then simply exit;
/// a half-done recovery is redone at the next start).
async fn open_store_off_thread(
    config: crate::storage::StoreConfig,
    store_host: SocketAddr,
) -> Result<MessageStore, crate::storage::Error> {
    let root = config.store_path_root_dir.clone();
    on_store_thread("actimq-store-open", root, move || {
        MessageStore::open(config, store_host)
    })
    .await
}

/// Runs `open` (which opens a store under `root`) on a new thread named `name` and awaits
/// its answer, so that the event loop keeps serving while it blocks.
pub(super) async fn on_store_thread(
    name: &str,
    root: std::path::PathBuf,
    open: impl FnOnce() -> Result<MessageStore, crate::storage::Error> + Send + 'static,
) -> Result<MessageStore, crate::storage::Error> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = tx.send(open());
        })
        .map_err(|e| crate::storage::Error::Io {
            path: root.clone(),
            source: e,
        })?;
    rx.await.map_err(|_| crate::storage::Error::Io {
        path: root,
        source: std::io::Error::other(format!("thread {name} ended without an answer")),
    })?
}

/// Stops the broker gracefully; answers when the store is closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// The name servers that have not accepted a registration of this broker yet.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct Unregistered;

/// A running broker.
#[derive(Clone)]
pub struct BrokerHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The broker actor (internal: its messages are not API).
    #[doc(hidden)]
    pub broker: Addr<Broker>,
}

impl BrokerHandle {
    /// Waits until every configured name server has accepted a registration of this
    /// broker, so that clients asking them for routes find it (registration runs in the
    /// background from the start; a freshly started broker is usually registered within
    /// milliseconds). Fails with [`BrokerError::NotRegistered`] after `within`.
    pub async fn wait_registered(&self, within: Duration) -> Result<(), BrokerError> {
        let started = std::time::Instant::now();
        loop {
            let missing = self
                .broker
                .send(Unregistered)
                .await
                .map_err(|_| BrokerError::Stopped)?;
            if missing.is_empty() {
                return Ok(());
            }
            if started.elapsed() >= within {
                return Err(BrokerError::NotRegistered {
                    missing: missing.join(";"),
                    waited_ms: started.elapsed().as_millis() as u64,
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Graceful stop (see [`Shutdown`]).
    pub async fn shutdown(&self) {
        let _ = self.broker.send(Shutdown).await;
    }
}

/// The broker actor.
pub struct Broker {
    config: BrokerConfig,
    advertised: String,
    store: Arc<MessageStore>,
    topics: TopicTable,
    /// Queue actors by topic, then queue id (looked up per send without building a key).
    queues: HashMap<String, HashMap<u32, QueueActor>>,
    groups: HashMap<String, Addr<ConsumerGroup>>,
    conn_groups: HashMap<ConnId, HashSet<String>>,
    namesrvs: Vec<(String, Addr<RemoteLink>)>,
    listener: Option<Addr<Listener>>,
    next_queue: u32,
    shutting_down: bool,
    /// A quick re-registration is scheduled (one at most).
    registration_retry: bool,
    /// Name servers that accepted a registration at least once.
    registered_with: std::collections::HashSet<String>,
    /// Sends of the batch being handled, appended together at its end.
    pending: send_pull::PendingSends,
    /// Sends waiting for disk work done off the event loop, in arrival order.
    deferred: deferred::DeferredSends,
    /// A topic was created on first send and the table is not yet saved: the sends that
    /// created it are answered only after it is.
    topics_unsaved: bool,
    /// Whether sends are taken, or refused while a poisoned store is reopened.
    write_side: reopen::WriteSide,
    /// Replication: this broker's part (master acceptor or slave link), the answers and
    /// wake-ups waiting for slaves, and the status its actors keep (see `replication`).
    ha: replication::Replication,
    /// Where messages the broker stores on its own behalf are answered (started on first
    /// use; see `internal_store`).
    internal: Option<internal_store::InternalStore>,
    /// The delay-level deliveries (a master's; started once, kept across restarts).
    deliveries: Vec<Addr<crate::actors::server::schedule_delivery::ScheduleDelivery>>,
    /// How many delay levels `message_delay_level` defines.
    delay_level_count: usize,
    /// Producer group → live connections, from heartbeats: whom a transaction check-back
    /// asks (see `producers`).
    producers: producers::ProducerRegistry,
    /// The check-back of unresolved half messages (a master's; started with the broker).
    transaction_check: Option<Addr<TransactionCheck>>,
}

/// A queue actor and its wake-up flag (see [`MessageQueue::wake_flag`]).
struct QueueActor {
    addr: Addr<MessageQueue>,
    wake_pending: Arc<std::sync::atomic::AtomicBool>,
}

/// Binds, opens the store, starts the broker and registers it with its name servers.
/// Must run inside an actix system.
pub async fn start_broker(config: BrokerConfig) -> Result<BrokerHandle, BrokerError> {
    if config.namesrv_addrs().is_empty() {
        tracing::warn!(
            "no name server configured (namesrv_addr, -n or NAMESRV_ADDR): \
             this broker will not register and clients will not find it"
        );
    }
    let bind = config.listen_addr();
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|source| BrokerError::Bind {
            addr: bind.clone(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| BrokerError::Bind {
        addr: bind.clone(),
        source,
    })?;
    let advertised = format!("{}:{}", config.broker_ip1, local.port());
    let store_host: SocketAddr = advertised
        .parse()
        .map_err(|_| BrokerError::BadAddress(config.broker_ip1.clone()))?;
    let store = Arc::new(open_store_off_thread(config.store.clone(), store_host).await?);
    replication::set_confirm_policy(&store, &config);
    let (ha_listener, ha_advertised) = replication::bind_ha(&config, local.port()).await?;
    let ha_state = Arc::new(ha::HaState::default());
    let (ha_store, ha_config, ha_state_for_actors) =
        (Arc::clone(&store), config.clone(), Arc::clone(&ha_state));
    let mut topics = TopicTable::load(&config.store.store_path_root_dir)?;
    if config.auto_create_topic_enable && topics.get(AUTO_CREATE_TOPIC_KEY).is_none() {
        // Producers ask for this topic's route when theirs has none, then send to a broker
        // that creates the real topic on first use (RocketMQ's convention).
        topics.upsert(crate::protocol::topic::TopicConfig {
            topic_name: AUTO_CREATE_TOPIC_KEY.to_owned(),
            read_queue_nums: config.default_topic_queue_nums as i32,
            write_queue_nums: config.default_topic_queue_nums as i32,
            perm: crate::protocol::topic::PERM_READ_WRITE | crate::protocol::topic::PERM_INHERIT,
            topic_sys_flag: 0,
            order: false,
        });
        topics.snapshot()?.save().await?;
    }
    let mailbox = config.send_message_queue_capacity;
    let config_workers = config.server_worker_threads;
    let limits = ConnectionLimits::new(
        config.max_frame_size,
        Duration::from_millis(config.channel_expired_timeout),
        config.max_incomplete_frame_bytes,
    )
    .with_max_pending_write_bytes(config.max_pending_write_bytes);
    // The Broker, its MessageQueues and its Connections all run on this thread.
    crate::actors::busy_poll::start(std::time::Duration::from_micros(config.busy_poll_us));
    let broker = Supervisor::start(move |ctx: &mut Context<Broker>| {
        ctx.set_mailbox_capacity(mailbox);
        Broker {
            namesrvs: Vec::new(),
            advertised,
            store,
            topics,
            queues: HashMap::new(),
            groups: HashMap::new(),
            conn_groups: HashMap::new(),
            listener: None,
            next_queue: 0,
            shutting_down: false,
            registration_retry: false,
            registered_with: std::collections::HashSet::new(),
            pending: send_pull::PendingSends::default(),
            deferred: deferred::DeferredSends::default(),
            topics_unsaved: false,
            write_side: reopen::WriteSide::default(),
            ha: replication::Replication::new(ha_state, ha_advertised),
            internal: None,
            deliveries: Vec::new(),
            delay_level_count: crate::config::parse_delay_levels(&config.message_delay_level)
                .map_or(1, |l| l.len()),
            producers: producers::ProducerRegistry::default(),
            transaction_check: None,
            config,
        }
    });
    replication::start_ha_actors(
        &broker,
        ha_listener,
        &ha_store,
        &ha_config,
        ha_state_for_actors,
    );
    // Connections on worker threads, if configured; the Broker and its queue actors stay on
    // this one. The arbiters stop with the process.
    let workers = (0..config_workers)
        .map(|_| Arbiter::new().handle())
        .collect();
    let accept = Listener::start_with_workers(
        listener,
        limits,
        broker.clone().recipient(),
        broker.clone().recipient(),
        workers,
    )
    .map_err(|source| BrokerError::Bind { addr: bind, source })?;
    broker.do_send(SetListener(accept));
    Ok(BrokerHandle {
        addr: local,
        broker,
    })
}

#[derive(Message)]
#[rtype(result = "()")]
struct SetListener(Addr<Listener>);

/// Waits until a queue actor has handled everything sent to it before.
#[derive(Message)]
#[rtype(result = "()")]
struct Drain;

impl Handler<Drain> for MessageQueue {
    type Result = ();
    fn handle(&mut self, _: Drain, _: &mut Context<Self>) {}
}

impl Broker {
    fn queue(&mut self, topic: &str, queue_id: u32) -> Addr<MessageQueue> {
        if let Some(q) = self.queues.get(topic).and_then(|t| t.get(&queue_id)) {
            return q.addr.clone();
        }
        let actor = MessageQueue::new(
            topic.to_owned(),
            queue_id,
            Arc::clone(&self.store),
            !self.config.is_master(),
        );
        let wake_pending = actor.wake_flag();
        let addr = Supervisor::start(move |_| actor);
        // Records appended before this actor existed are in no wake list: wake it once they
        // are confirmed too, or a pull it holds for them would wait for its deadline.
        self.wake_once_confirmed(vec![(addr.clone(), Arc::clone(&wake_pending))]);
        self.queues.entry(topic.to_owned()).or_default().insert(
            queue_id,
            QueueActor {
                addr: addr.clone(),
                wake_pending,
            },
        );
        addr
    }

    /// The actor of a group, started on first use. The name becomes a file name, so it is
    /// checked like a topic name; the number of groups is capped so that a peer inventing
    /// names cannot grow the broker without bound.
    fn group(&mut self, name: &str) -> Result<Addr<ConsumerGroup>, String> {
        if let Some(g) = self.groups.get(name) {
            return Ok(g.clone());
        }
        crate::common::names::validate_group_name(name)?;
        if self.groups.len() >= MAX_CONSUMER_GROUPS {
            return Err(format!(
                "this broker already serves {MAX_CONSUMER_GROUPS} consumer groups"
            ));
        }
        let timings = GroupTimings {
            channel_expired_timeout: Duration::from_millis(self.config.channel_expired_timeout),
            flush_consumer_offset_interval: Duration::from_millis(
                self.config.flush_consumer_offset_interval,
            ),
        };
        let (n, root) = (
            name.to_owned(),
            self.config.store.store_path_root_dir.clone(),
        );
        let addr = Supervisor::start(move |_| ConsumerGroup::new(n, &root, timings));
        self.groups.insert(name.to_owned(), addr.clone());
        Ok(addr)
    }

    /// Starts the check-back of unresolved half messages on a master, once (a restart after
    /// a store reopen keeps the one running: it reads the store through the broker).
    fn start_transaction_check(&mut self, ctx: &mut Context<Self>) {
        if self.transaction_check.is_some() || !self.config.is_master() {
            return;
        }
        let group = match self.group(TRANSACTION_CHECK_GROUP) {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(error = %e, "transaction check-back not started");
                return;
            }
        };
        let settings = CheckSettings {
            timeout: Duration::from_millis(self.config.transaction_timeout),
            check_max: self.config.transaction_check_max,
            interval: Duration::from_millis(self.config.transaction_check_interval),
        };
        let check = TransactionCheck::new(ctx.address().downgrade(), group, settings).start();
        self.transaction_check = Some(check);
    }

    fn register_all(&mut self, ctx: &mut Context<Self>) {
        let header = RegisterBrokerRequestHeader {
            broker_name: self.config.broker_name.clone(),
            broker_addr: self.advertised.clone(),
            cluster_name: self.config.broker_cluster_name.clone(),
            ha_server_addr: self.ha.advertised().unwrap_or(&self.advertised).to_owned(),
            broker_id: self.config.broker_id,
            heartbeat_timeout_millis: None,
        };
        let body = match encode_body(&self.topics.wrapper()) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the topic table for registration");
                return;
            }
        };
        for (addr, link) in &self.namesrvs {
            let Ok(frame) = Frame::request(RequestCode::RegisterBroker, 0, &header, body.clone())
            else {
                continue;
            };
            let (addr, link) = (addr.clone(), link.clone());
            ctx.spawn(
                async move {
                    let mut master_ha = None;
                    let answered = match remote_link::call(&link, &addr, frame, NAMESRV_TIMEOUT).await {
                        Ok(f) if f.response_code() == Some(ResponseCode::Success) => {
                            master_ha = f
                                .decode_header::<crate::protocol::route::RegisterBrokerResponseHeader>()
                                .ok();
                            Some(true)
                        }
                        Ok(f) => {
                            // A refusal is an answer: the periodic registration tries again.
                            tracing::warn!(namesrv = %addr, code = f.code, remark = ?f.remark, "registration refused");
                            Some(false)
                        }
                        Err(e) => {
                            tracing::warn!(namesrv = %addr, error = %e, "registration failed; retrying in 1 s");
                            None
                        }
                    };
                    (addr, answered, master_ha)
                }
                .into_actor(self)
                .map(|(addr, answered, master_ha), act, ctx| {
                    if answered == Some(true) {
                        act.registered_with.insert(addr);
                        act.master_published(master_ha, ctx);
                    }
                    let registered = answered.is_some();
                    if !registered && !act.registration_retry && !act.shutting_down {
                        act.registration_retry = true;
                        ctx.run_later(REGISTRATION_RETRY, |act, ctx| {
                            act.registration_retry = false;
                            act.register_all(ctx);
                        });
                    }
                }),
            );
        }
    }
}

impl Actor for Broker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.namesrvs.is_empty() {
            // A name server that restarts is found again within a second, and registered
            // with at once (`LinkStateChanged`), not at the next periodic registration.
            let link_config = LinkConfig {
                max_frame_size: self.config.max_frame_size,
                backoff_max: Duration::from_secs(1),
                ..LinkConfig::default()
            };
            let watcher = ctx.address().recipient();
            self.namesrvs = self
                .config
                .namesrv_addrs()
                .into_iter()
                .map(|a| {
                    let link = RemoteLink::start_watched(
                        a.clone(),
                        link_config.clone(),
                        None,
                        Some(watcher.clone()),
                    );
                    (a, link)
                })
                .collect();
        }
        tracing::info!(
            broker = %self.config.broker_name, id = self.config.broker_id,
            cluster = %self.config.broker_cluster_name, addr = %self.advertised,
            namesrv = ?self.config.namesrv_addrs(), "broker started"
        );
        self.register_all(ctx);
        self.start_replication_timers(ctx);
        self.start_deliveries(ctx);
        self.start_transaction_check(ctx);
        let every = Duration::from_millis(self.config.register_broker_interval);
        ctx.run_interval(every, |act, ctx| {
            if !act.shutting_down {
                act.register_all(ctx);
            }
        });
    }
}

impl Handler<remote_link::LinkStateChanged> for Broker {
    type Result = ();
    /// A name server link (re)connected: register with it now. (A restarted name server
    /// knows nothing; waiting for the periodic registration would hide this broker for up
    /// to `register_broker_interval`.)
    fn handle(&mut self, msg: remote_link::LinkStateChanged, ctx: &mut Context<Self>) {
        if msg.up && !self.shutting_down {
            tracing::debug!(namesrv = %msg.addr, "name server link up; registering");
            self.register_all(ctx);
        }
    }
}

impl Handler<Unregistered> for Broker {
    type Result = Vec<String>;
    fn handle(&mut self, _: Unregistered, _: &mut Context<Self>) -> Vec<String> {
        self.namesrvs
            .iter()
            .map(|(a, _)| a)
            .filter(|a| !self.registered_with.contains(*a))
            .cloned()
            .collect()
    }
}

impl Handler<SetListener> for Broker {
    type Result = ();
    fn handle(&mut self, msg: SetListener, _: &mut Context<Self>) {
        self.listener = Some(msg.0);
    }
}

impl Handler<InboundBatch> for Broker {
    type Result = ();

    fn handle(&mut self, batch: InboundBatch, ctx: &mut Self::Context) {
        for inb in batch.0 {
            self.handle_request(inb, ctx);
        }
        self.append_pending(ctx);
        self.stop_if_store_poisoned(ctx);
    }
}

impl Handler<ConnectionClosed> for Broker {
    type Result = ();

    fn handle(&mut self, msg: ConnectionClosed, _: &mut Self::Context) {
        self.producers.connection_closed(msg.conn);
        for g in self.conn_groups.remove(&msg.conn).unwrap_or_default() {
            if let Some(addr) = self.groups.get(&g) {
                addr.do_send(consumer_group::ConnectionGone(msg.conn));
            }
        }
    }
}

impl Handler<Shutdown> for Broker {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _: &mut Self::Context) -> Self::Result {
        tracing::info!(broker = %self.config.broker_name, "shutting down");
        self.shutting_down = true;
        if let Some(l) = self.listener.take() {
            l.do_send(StopAccepting);
        }
        if let Some(c) = self.transaction_check.take() {
            c.do_send(StopChecking);
        }
        let queues: Vec<_> = self
            .queues
            .values()
            .flat_map(|t| t.values().map(|q| q.addr.clone()))
            .collect();
        let groups: Vec<_> = self.groups.values().cloned().collect();
        let links = self.namesrvs.clone();
        let header = UnregisterBrokerRequestHeader {
            broker_name: self.config.broker_name.clone(),
            broker_addr: self.advertised.clone(),
            cluster_name: self.config.broker_cluster_name.clone(),
            broker_id: self.config.broker_id,
        };
        let store = Arc::clone(&self.store);
        Box::pin(
            async move {
                // Reads the queue actors have begun finish before the store closes.
                for q in queues {
                    let _ = q.send(Drain).await;
                }
                let unregistering = links.into_iter().map(|(addr, link)| {
                    let frame =
                        Frame::request(RequestCode::UnregisterBroker, 0, &header, Bytes::new());
                    async move {
                        let Ok(frame) = frame else { return };
                        if let Err(e) =
                            remote_link::call(&link, &addr, frame, NAMESRV_TIMEOUT).await
                        {
                            tracing::warn!(namesrv = %addr, error = %e, "unregister failed");
                        }
                    }
                });
                futures_util::future::join_all(unregistering).await;
                for g in groups {
                    let _ = g.send(consumer_group::PersistOffsets).await;
                }
                // Closing flushes and syncs: on a blocking thread, not the event loop.
                let closed = tokio::task::spawn_blocking(move || store.shutdown()).await;
                match closed {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "store did not close cleanly"),
                    Err(e) => {
                        tracing::error!(error = %e, "the thread closing the store stopped early")
                    }
                }
            }
            .into_actor(self),
        )
    }
}

/// The wire code for a store error (re-exported for the binaries' messages).
pub use message_queue::store_error_code;
