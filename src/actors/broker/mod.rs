//! Broker actor: the front desk of a broker process.
//!
//! Owns the topic table, the broker's registration with every name server, and the maps from
//! (topic, queue) to [`MessageQueue`] actors and from group name to [`ConsumerGroup`]
//! actors. Each request from a [`Connection`](crate::actors::connection::Connection) is
//! routed to the actor that owns its state; sends and pulls are answered by the queue actor
//! directly, so this actor never waits on the store. Timers: registration every
//! `register_broker_interval` (and at once after a topic change). On [`Shutdown`] it stops
//! accepting, lets queued appends finish, unregisters, persists offsets and closes the store
//! cleanly.
//!
//! Supervised: its state (topic table, actor maps, links) survives a restart unchanged.

pub mod topic_table;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};

use crate::actors::connection::{ConnId, ConnectionClosed, Inbound};
use crate::actors::consumer_group::{self, ConsumerGroup, GroupTimings};
use crate::actors::listener::{Listener, StopAccepting};
use crate::actors::message_queue::{self, tag_filter, Append, AppendBatch, MessageQueue, Pull};
use crate::actors::remote_link::{self, LinkConfig, RemoteLink};
use crate::config::BrokerConfig;
use crate::protocol::group::{GetConsumerListByGroupResponseBody, MessageQueue as Mq};
use crate::protocol::message::{
    GetEarliestMsgStoretimeResponseHeader, OffsetResponseHeader, PullMessageRequestHeader,
    QueryMessageResponseHeader, SendMessageRequestHeader,
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
/// The topic whose route tells producers which brokers create topics on first send.
pub const AUTO_CREATE_TOPIC_KEY: &str = "TBW102";
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
}

/// Stops the broker gracefully; answers when the store is closed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// A running broker.
#[derive(Clone)]
pub struct BrokerHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The broker actor.
    pub broker: Addr<Broker>,
}

impl BrokerHandle {
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
    queues: HashMap<(String, u32), Addr<MessageQueue>>,
    groups: HashMap<String, Addr<ConsumerGroup>>,
    conn_groups: HashMap<ConnId, HashSet<String>>,
    namesrvs: Vec<(String, Addr<RemoteLink>)>,
    listener: Option<Addr<Listener>>,
    next_queue: u32,
    shutting_down: bool,
    /// A quick re-registration is scheduled (one at most).
    registration_retry: bool,
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
    let store = Arc::new(MessageStore::open(config.store.clone(), store_host)?);
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
        })?;
    }
    let mailbox = config.send_message_queue_capacity;
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
            config,
        }
    });
    let max_frame = broker
        .send(GetMaxFrame)
        .await
        .unwrap_or(crate::protocol::DEFAULT_MAX_FRAME_SIZE);
    let accept = Listener::start(
        listener,
        max_frame,
        broker.clone().recipient(),
        broker.clone().recipient(),
    )
    .map_err(|source| BrokerError::Bind { addr: bind, source })?;
    broker.do_send(SetListener(accept));
    Ok(BrokerHandle {
        addr: local,
        broker,
    })
}

#[derive(Message)]
#[rtype(result = "usize")]
struct GetMaxFrame;

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

fn response<H: serde::Serialize>(inb: &Inbound, code: ResponseCode, header: &H, body: Bytes) {
    match Frame::response(inb.opaque, code, header, body) {
        Ok(f) => inb.respond(f),
        Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
    }
}

fn ok_body<B: serde::Serialize>(inb: &Inbound, body: &B) {
    match encode_body(body) {
        Ok(b) => response(inb, ResponseCode::Success, &NoHeader {}, b),
        Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
    }
}

fn offset_answer(inb: &Inbound, offset: u64) {
    response(
        inb,
        ResponseCode::Success,
        &OffsetResponseHeader {
            offset: offset as i64,
        },
        Bytes::new(),
    );
}

impl Broker {
    fn queue(&mut self, topic: &str, queue_id: u32) -> Addr<MessageQueue> {
        let key = (topic.to_owned(), queue_id);
        if let Some(q) = self.queues.get(&key) {
            return q.clone();
        }
        let (t, store) = (topic.to_owned(), Arc::clone(&self.store));
        let addr = Supervisor::start(move |_| MessageQueue::new(t, queue_id, store));
        self.queues.insert(key, addr.clone());
        addr
    }

    /// The actor of a group, started on first use. The name becomes a file name, so it is
    /// checked like a topic name; the number of groups is capped so that a peer inventing
    /// names cannot grow the broker without bound.
    fn group(&mut self, name: &str) -> Result<Addr<ConsumerGroup>, String> {
        if let Some(g) = self.groups.get(name) {
            return Ok(g.clone());
        }
        validate_topic_name(name).map_err(|e| e.replace("topic name", "consumer group name"))?;
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

    fn register_all(&mut self, ctx: &mut Context<Self>) {
        let header = RegisterBrokerRequestHeader {
            broker_name: self.config.broker_name.clone(),
            broker_addr: self.advertised.clone(),
            cluster_name: self.config.broker_cluster_name.clone(),
            ha_server_addr: self.advertised.clone(),
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
                    match remote_link::call(&link, &addr, frame, NAMESRV_TIMEOUT).await {
                        Ok(f) if f.response_code() == Some(ResponseCode::Success) => true,
                        Ok(f) => {
                            // A refusal is an answer: the periodic registration tries again.
                            tracing::warn!(namesrv = %addr, code = f.code, remark = ?f.remark, "registration refused");
                            true
                        }
                        Err(e) => {
                            tracing::warn!(namesrv = %addr, error = %e, "registration failed; retrying in 1 s");
                            false
                        }
                    }
                }
                .into_actor(self)
                .map(|registered, act, ctx| {
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

    fn topic_for_send(
        &mut self,
        h: &SendMessageRequestHeader,
        ctx: &mut Context<Self>,
    ) -> Result<crate::protocol::topic::TopicConfig, (ResponseCode, String)> {
        validate_topic_name(&h.topic).map_err(|e| (ResponseCode::MessageIllegal, e))?;
        if let Some(t) = self.topics.get(&h.topic) {
            return Ok(t.clone());
        }
        if !self.config.auto_create_topic_enable {
            return Err((
                ResponseCode::TopicNotExist,
                format!("topic '{}' does not exist on broker {} and auto_create_topic_enable is off; create it with mqadmin updateTopic", h.topic, self.config.broker_name),
            ));
        }
        let queues = if h.default_topic_queue_nums > 0 {
            h.default_topic_queue_nums
                .min(self.config.default_topic_queue_nums as i32)
        } else {
            self.config.default_topic_queue_nums as i32
        };
        let t = self
            .topics
            .auto_create(&h.topic, queues)
            .map_err(|e| (ResponseCode::SystemError, e.to_string()))?;
        tracing::info!(topic = %h.topic, queues, "topic created on first send");
        self.register_all(ctx);
        Ok(t)
    }

    fn on_send(
        &mut self,
        inb: Inbound,
        h: SendMessageRequestHeader,
        body: Bytes,
        batch: bool,
        ctx: &mut Context<Self>,
    ) {
        if self.shutting_down {
            return inb.fail(ResponseCode::ServiceNotAvailable, "broker is shutting down");
        }
        if !self.config.is_master() {
            return inb.fail(
                ResponseCode::ServiceNotAvailable,
                "this broker is a slave and does not accept sends",
            );
        }
        let topic = match self.topic_for_send(&h, ctx) {
            Ok(t) => t,
            Err((code, why)) => return inb.fail(code, why),
        };
        if !is_writeable(topic.perm) {
            return inb.fail(
                ResponseCode::NoPermission,
                format!(
                    "topic '{}' is not writeable on broker {}",
                    h.topic, self.config.broker_name
                ),
            );
        }
        let writable = topic.write_queue_nums.max(1) as u32;
        let queue_id = if h.queue_id < 0 {
            self.next_queue = self.next_queue.wrapping_add(1);
            self.next_queue % writable
        } else if (h.queue_id as u32) < writable {
            h.queue_id as u32
        } else {
            return inb.fail(
                ResponseCode::MessageIllegal,
                format!(
                    "queue id {} is illegal: topic '{}' has {} write queues",
                    h.queue_id, h.topic, writable
                ),
            );
        };
        let reply = (!inb.oneway).then(|| inb.reply.clone());
        let queue = self.queue(&h.topic, queue_id);
        let stamp = |body: Bytes, flag: i32, properties: String| MessageToStore {
            topic: h.topic.clone(),
            queue_id,
            flag,
            sys_flag: h.sys_flag,
            born_timestamp: h.born_timestamp,
            born_host: inb.peer,
            reconsume_times: h.reconsume_times,
            prepared_transaction_offset: 0,
            body,
            properties,
        };
        let sent = if batch {
            let entries = match crate::protocol::batch::decode_batch(&body) {
                Ok(e) if !e.is_empty() => e,
                Ok(_) => return inb.fail(ResponseCode::MessageIllegal, "empty batch"),
                Err(e) => {
                    return inb.fail(ResponseCode::MessageIllegal, format!("bad batch body: {e}"))
                }
            };
            let msgs = entries
                .into_iter()
                .map(|e| stamp(e.body, e.flag, e.properties))
                .collect();
            queue
                .try_send(AppendBatch {
                    msgs,
                    opaque: inb.opaque,
                    reply,
                })
                .is_ok()
        } else {
            let msg = stamp(body, h.flag, h.properties.clone());
            queue
                .try_send(Append {
                    msg,
                    opaque: inb.opaque,
                    reply,
                })
                .is_ok()
        };
        if !sent {
            inb.fail(
                ResponseCode::SystemBusy,
                "broker busy: the queue's backlog is full, retry later",
            );
        }
    }

    fn on_pull(&mut self, inb: Inbound, h: PullMessageRequestHeader) {
        let Some(topic) = self.topics.get(&h.topic).cloned() else {
            return inb.fail(
                ResponseCode::TopicNotExist,
                format!(
                    "topic '{}' does not exist on broker {}",
                    h.topic, self.config.broker_name
                ),
            );
        };
        if !is_readable(topic.perm) {
            return inb.fail(
                ResponseCode::NoPermission,
                format!("topic '{}' is not readable", h.topic),
            );
        }
        if h.queue_id < 0 || h.queue_id >= topic.read_queue_nums {
            return inb.fail(
                ResponseCode::InvalidParameter,
                format!("queue id {} is illegal for topic '{}'", h.queue_id, h.topic),
            );
        }
        if h.sys_flag & PULL_FLAG_COMMIT_OFFSET != 0
            && h.commit_offset >= 0
            && !h.consumer_group.is_empty()
        {
            if let Ok(g) = self.group(&h.consumer_group) {
                g.do_send(consumer_group::CommitOffset {
                    topic: h.topic.clone(),
                    queue_id: h.queue_id,
                    offset: h.commit_offset,
                });
            }
        }
        let hold = if h.sys_flag & PULL_FLAG_SUSPEND != 0 && !self.shutting_down {
            Duration::from_millis(
                (h.suspend_timeout_millis.max(0) as u64).min(self.config.long_polling_timeout),
            )
        } else {
            Duration::ZERO
        };
        let pull = Pull {
            offset: h.queue_offset.max(0) as u64,
            max_msgs: h.max_msg_nums.clamp(1, 1024) as usize,
            tag_filter: tag_filter(h.subscription.as_deref()),
            hold,
            max_bytes: message_queue::MAX_PULL_BYTES
                .min(self.config.max_frame_size.saturating_sub(64 * 1024)),
            opaque: inb.opaque,
            reply: inb.reply.clone(),
        };
        if self
            .queue(&h.topic, h.queue_id as u32)
            .try_send(pull)
            .is_err()
        {
            inb.fail(ResponseCode::SystemBusy, "broker busy, retry later");
        }
    }

    fn topic_stats(&self, topic: &str) -> TopicStatsTable {
        let mut offset_table = BTreeMap::new();
        let queues = self
            .topics
            .get(topic)
            .map(|t| t.read_queue_nums.max(t.write_queue_nums))
            .unwrap_or(0);
        for q in 0..queues.max(0) as u32 {
            let (min, max) = (
                self.store.min_offset(topic, q),
                self.store.max_offset(topic, q),
            );
            let last = if max > 0 {
                self.store
                    .read_by_queue_offset(topic, q, max - 1)
                    .map(|m| m.store_timestamp)
                    .unwrap_or(0)
            } else {
                0
            };
            offset_table.insert(
                Mq {
                    topic: topic.to_owned(),
                    broker_name: self.config.broker_name.clone(),
                    queue_id: q as i32,
                },
                TopicOffset {
                    min_offset: min as i64,
                    max_offset: max as i64,
                    last_update_timestamp: last,
                },
            );
        }
        TopicStatsTable { offset_table }
    }

    fn handle_request(&mut self, mut inb: Inbound, ctx: &mut Context<Self>) {
        // The request moves into its handler; what stays in `inb` is only used to answer.
        let request = std::mem::replace(&mut inb.request, Request::GetAllTopicConfig);
        match request {
            Request::SendMessage(h, body) => self.on_send(inb, h, body, false, ctx),
            Request::SendBatchMessage(h, body) => self.on_send(inb, h, body, true, ctx),
            Request::PullMessage(h) => self.on_pull(inb, h),
            Request::HeartBeat(data) => {
                for consumer in data.consumer_data_set {
                    let name = consumer.group_name.clone();
                    self.conn_groups
                        .entry(inb.conn)
                        .or_default()
                        .insert(name.clone());
                    let group = match self.group(&name) {
                        Ok(g) => g,
                        Err(e) => return inb.fail(ResponseCode::InvalidParameter, e),
                    };
                    group.do_send(consumer_group::Heartbeat {
                        client_id: data.client_id.clone(),
                        conn: inb.conn,
                        notify: inb.reply.clone(),
                        data: consumer,
                    });
                }
                response(&inb, ResponseCode::Success, &NoHeader {}, Bytes::new());
            }
            Request::UnregisterClient(h) => {
                if let Some(g) = h.consumer_group.as_deref().filter(|g| !g.is_empty()) {
                    if let Ok(g) = self.group(g) {
                        g.do_send(consumer_group::Leave {
                            client_id: h.client_id,
                        });
                    }
                }
                response(&inb, ResponseCode::Success, &NoHeader {}, Bytes::new());
            }
            Request::QueryConsumerOffset(h) => {
                let group = match self.group(&h.consumer_group) {
                    Ok(g) => g,
                    Err(e) => return inb.fail(ResponseCode::InvalidParameter, e),
                };
                let queue_starts_at_zero =
                    self.store.min_offset(&h.topic, h.queue_id.max(0) as u32) == 0;
                actix::spawn(async move {
                    match group
                        .send(consumer_group::QueryOffset {
                            topic: h.topic.clone(),
                            queue_id: h.queue_id,
                        })
                        .await
                    {
                        Ok(Some(o)) => response(
                            &inb,
                            ResponseCode::Success,
                            &OffsetResponseHeader { offset: o },
                            Bytes::new(),
                        ),
                        // RocketMQ answers 0 for a group that never committed while the queue
                        // still holds its first message, unless the client asks otherwise.
                        Ok(None)
                            if h.set_zero_if_not_found != Some(false) && queue_starts_at_zero =>
                        {
                            response(
                                &inb,
                                ResponseCode::Success,
                                &OffsetResponseHeader { offset: 0 },
                                Bytes::new(),
                            )
                        }
                        Ok(None) => inb.fail(
                            ResponseCode::QueryNotFound,
                            format!(
                                "group '{}' has no committed offset for {}:{}",
                                h.consumer_group, h.topic, h.queue_id
                            ),
                        ),
                        Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
                    }
                });
            }
            Request::UpdateConsumerOffset(h) => {
                if self.shutting_down {
                    return inb.fail(ResponseCode::ServiceNotAvailable, "broker is shutting down");
                }
                let group = match self.group(&h.consumer_group) {
                    Ok(g) => g,
                    Err(e) => return inb.fail(ResponseCode::InvalidParameter, e),
                };
                group.do_send(consumer_group::CommitOffset {
                    topic: h.topic,
                    queue_id: h.queue_id,
                    offset: h.commit_offset,
                });
                response(&inb, ResponseCode::Success, &NoHeader {}, Bytes::new());
            }
            Request::GetConsumerListByGroup(h) => {
                let group = match self.group(&h.consumer_group) {
                    Ok(g) => g,
                    Err(e) => return inb.fail(ResponseCode::InvalidParameter, e),
                };
                actix::spawn(async move {
                    match group.send(consumer_group::ListMembers).await {
                        Ok(ids) if !ids.is_empty() => ok_body(
                            &inb,
                            &GetConsumerListByGroupResponseBody {
                                consumer_id_list: ids,
                            },
                        ),
                        Ok(_) => inb.fail(
                            ResponseCode::SystemError,
                            format!("no consumer for this group, {}", h.consumer_group),
                        ),
                        Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
                    }
                });
            }
            Request::GetConsumeStats(h) => {
                let group = match self.group(&h.consumer_group) {
                    Ok(g) => g,
                    Err(e) => return inb.fail(ResponseCode::InvalidParameter, e),
                };
                let store = Arc::clone(&self.store);
                let broker_name = self.config.broker_name.clone();
                actix::spawn(async move {
                    let Ok(offsets) = group.send(consumer_group::ListOffsets).await else {
                        return inb.fail(ResponseCode::SystemError, "consumer group actor is gone");
                    };
                    let mut stats = ConsumeStats::default();
                    for ((topic, q), consumer_offset) in offsets {
                        if h.topic.as_deref().is_some_and(|t| t != topic) {
                            continue;
                        }
                        let broker_offset = store.max_offset(&topic, q as u32) as i64;
                        stats.offset_table.insert(
                            Mq {
                                topic,
                                broker_name: broker_name.clone(),
                                queue_id: q,
                            },
                            OffsetWrapper {
                                broker_offset,
                                consumer_offset,
                                last_timestamp: 0,
                            },
                        );
                    }
                    ok_body(&inb, &stats);
                });
            }
            Request::GetMaxOffset(h) => offset_answer(
                &inb,
                self.store.max_offset(&h.topic, h.queue_id.max(0) as u32),
            ),
            Request::GetMinOffset(h) => offset_answer(
                &inb,
                self.store.min_offset(&h.topic, h.queue_id.max(0) as u32),
            ),
            Request::SearchOffsetByTimestamp(h) => offset_answer(
                &inb,
                self.store
                    .offset_for_timestamp(&h.topic, h.queue_id.max(0) as u32, h.timestamp),
            ),
            Request::GetEarliestMsgStoretime(h) => {
                let q = h.queue_id.max(0) as u32;
                let min = self.store.min_offset(&h.topic, q);
                match self.store.read_by_queue_offset(&h.topic, q, min) {
                    Ok(m) => response(
                        &inb,
                        ResponseCode::Success,
                        &GetEarliestMsgStoretimeResponseHeader {
                            timestamp: m.store_timestamp,
                        },
                        Bytes::new(),
                    ),
                    Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
                }
            }
            Request::ViewMessageById(h) => match self.store.read_raw(h.offset.max(0) as u64) {
                Ok(raw) => response(&inb, ResponseCode::Success, &NoHeader {}, raw),
                Err(e) => inb.fail(
                    ResponseCode::SystemError,
                    format!("no message at offset {}: {e}", h.offset),
                ),
            },
            Request::QueryMessage(h) => match self.store.query_by_key(
                &h.topic,
                &h.key,
                h.begin_timestamp,
                h.end_timestamp,
                h.max_num.clamp(1, 64) as usize,
            ) {
                Ok(found) if !found.is_empty() => {
                    let mut body = BytesMut::new();
                    for m in &found {
                        body.extend_from_slice(&m.raw);
                    }
                    let header = QueryMessageResponseHeader {
                        index_last_update_timestamp: found
                            .iter()
                            .map(|m| m.store_timestamp)
                            .max()
                            .unwrap_or(0),
                        index_last_update_phyoffset: found
                            .iter()
                            .map(|m| m.physical_offset as i64)
                            .max()
                            .unwrap_or(0),
                    };
                    response(&inb, ResponseCode::Success, &header, body.freeze());
                }
                Ok(_) => inb.fail(
                    ResponseCode::QueryNotFound,
                    format!("no message with key '{}' in topic '{}'", h.key, h.topic),
                ),
                Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
            },
            Request::UpdateAndCreateTopic(h) => {
                if let Err(e) = validate_topic_name(&h.topic) {
                    return inb.fail(ResponseCode::InvalidParameter, e);
                }
                if h.read_queue_nums <= 0
                    || h.write_queue_nums <= 0
                    || h.read_queue_nums > 1024
                    || h.write_queue_nums > 1024
                {
                    return inb.fail(
                        ResponseCode::InvalidParameter,
                        "read and write queue counts must be in 1..=1024",
                    );
                }
                match self.topics.upsert(h.to_topic_config()) {
                    Ok(()) => {
                        tracing::info!(topic = %h.topic, read = h.read_queue_nums, write = h.write_queue_nums, "topic updated");
                        self.register_all(ctx);
                        response(&inb, ResponseCode::Success, &NoHeader {}, Bytes::new());
                    }
                    Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
                }
            }
            Request::DeleteTopicInBroker(h) => match self.topics.remove(&h.topic) {
                Ok(existed) => {
                    self.queues.retain(|(t, _), _| *t != h.topic);
                    if existed {
                        self.register_all(ctx);
                    }
                    response(&inb, ResponseCode::Success, &NoHeader {}, Bytes::new());
                }
                Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
            },
            Request::LockBatchMq(body) => {
                let group = match self.group(&body.consumer_group) {
                    Ok(g) => g,
                    Err(e) => return inb.fail(ResponseCode::InvalidParameter, e),
                };
                let ask = consumer_group::LockQueues {
                    client_id: body.client_id,
                    queues: body.mq_set,
                };
                actix::spawn(async move {
                    match group.send(ask).await {
                        Ok(held) => ok_body(
                            &inb,
                            &crate::protocol::group::LockBatchResponseBody {
                                lock_ok_mq_set: held,
                            },
                        ),
                        Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
                    }
                });
            }
            Request::UnlockBatchMq(body) => {
                if let Ok(group) = self.group(&body.consumer_group) {
                    group.do_send(consumer_group::UnlockQueues {
                        client_id: body.client_id,
                        queues: body.mq_set,
                    });
                }
                response(&inb, ResponseCode::Success, &NoHeader {}, Bytes::new());
            }
            Request::GetAllTopicConfig => ok_body(&inb, &self.topics.wrapper()),
            Request::GetTopicStatsInfo(h) => {
                if self.topics.get(&h.topic).is_none() {
                    return inb.fail(
                        ResponseCode::TopicNotExist,
                        format!(
                            "topic '{}' does not exist on broker {}",
                            h.topic, self.config.broker_name
                        ),
                    );
                }
                ok_body(&inb, &self.topic_stats(&h.topic));
            }
            other => inb.fail(
                ResponseCode::RequestCodeNotSupported,
                format!("request {} is not supported by this broker", other.code()),
            ),
        }
    }
}

impl Actor for Broker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if self.namesrvs.is_empty() {
            let link_config = LinkConfig {
                max_frame_size: self.config.max_frame_size,
                ..LinkConfig::default()
            };
            self.namesrvs = self
                .config
                .namesrv_addrs()
                .into_iter()
                .map(|a| (a.clone(), RemoteLink::start(a, link_config.clone(), None)))
                .collect();
        }
        tracing::info!(
            broker = %self.config.broker_name, id = self.config.broker_id,
            cluster = %self.config.broker_cluster_name, addr = %self.advertised,
            namesrv = ?self.config.namesrv_addrs(), "broker started"
        );
        self.register_all(ctx);
        let every = Duration::from_millis(self.config.register_broker_interval);
        ctx.run_interval(every, |act, ctx| {
            if !act.shutting_down {
                act.register_all(ctx);
            }
        });
    }
}

impl Supervised for Broker {}

impl Handler<GetMaxFrame> for Broker {
    type Result = usize;
    fn handle(&mut self, _: GetMaxFrame, _: &mut Context<Self>) -> usize {
        self.config.max_frame_size
    }
}

impl Handler<SetListener> for Broker {
    type Result = ();
    fn handle(&mut self, msg: SetListener, _: &mut Context<Self>) {
        self.listener = Some(msg.0);
    }
}

impl Handler<Inbound> for Broker {
    type Result = ();

    fn handle(&mut self, msg: Inbound, ctx: &mut Self::Context) {
        self.handle_request(msg, ctx);
    }
}

impl Handler<ConnectionClosed> for Broker {
    type Result = ();

    fn handle(&mut self, msg: ConnectionClosed, _: &mut Self::Context) {
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
        let queues: Vec<_> = self.queues.values().cloned().collect();
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
                // Appends already queued are finished before the store closes.
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
                if let Err(e) = store.shutdown() {
                    tracing::error!(error = %e, "store did not close cleanly");
                }
            }
            .into_actor(self),
        )
    }
}

/// The wire code for a store error (re-exported for the binaries' messages).
pub use message_queue::store_error_code;
