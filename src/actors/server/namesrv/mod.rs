//! NameServer actor: the routing registry brokers register into and clients query.
//!
//! Owns one [`RouteTable`] (plain maps; no locks, since only this actor touches it) and the
//! map from connection to the broker that registered over it. Requests: RegisterBroker,
//! UnregisterBroker, GetRouteInfoByTopic, GetBrokerClusterInfo, GetAllTopicList,
//! DeleteTopicInNamesrv, and WatchRoutes (actimq: held until any route changes, at most
//! 30 s, at most 10,000 held; clients refresh their routes when it answers with a new
//! version). Timer: every `scan_not_active_broker_interval` it drops brokers not
//! heard from within `broker_channel_expired_time`; a broker whose connection closes is
//! dropped at once; a connection silent for `channel_expired_timeout` is closed (see
//! [`Connection`](crate::actors::server::connection::Connection)). Several name servers run side by side and never talk to each other.
//!
//! Supervised. Its fatal path is tables it cannot trust: on every scan it also audits the
//! route tables' invariants ([`RouteTable::audit`]), and a violation (a bug) stops it
//! rather than go on serving routes to brokers that are gone or missing ones that are
//! there. The restart starts from empty tables, which the brokers' periodic registrations
//! refill (RocketMQ's name server keeps no state on disk either); the scan timer is armed
//! again by `started()` in the new context, once.

pub mod route_table;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;

use crate::actors::server::connection::{
    ConnId, ConnectionClosed, ConnectionLimits, Inbound, InboundBatch,
};
use crate::actors::server::listener::{Listener, StopAccepting};
use crate::config::NamesrvConfig;
use crate::protocol::{encode_body, Frame, NoHeader, Request, ResponseCode};
use route_table::RouteTable;

/// A running name server.
#[derive(Clone)]
pub struct NamesrvHandle {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The name server actor (internal: its messages are not API).
    #[doc(hidden)]
    pub namesrv: Addr<NameServer>,
    /// The accept loop (internal; [`NamesrvHandle::stop_accepting`] stops it).
    #[doc(hidden)]
    pub listener: Addr<Listener>,
}

impl NamesrvHandle {
    /// Stops accepting connections.
    pub fn stop_accepting(&self) {
        self.listener.do_send(StopAccepting);
    }
}

/// The name server actor.
pub struct NameServer {
    config: NamesrvConfig,
    routes: RouteTable,
    /// Which broker address registered over which connection, so a closed connection drops
    /// its broker at once.
    conn_brokers: HashMap<ConnId, String>,
    /// Changes with every route change (`WATCH_ROUTES`); starts at the clock, so a restart
    /// never repeats a version a client saw.
    routes_version: u64,
    /// Held `WATCH_ROUTES` requests, answered at the next change or their deadline.
    watchers: HashMap<u64, Inbound>,
    next_watcher: u64,
}

/// Longest a `WATCH_ROUTES` request is held.
const MAX_WATCH_HOLD: Duration = Duration::from_secs(30);
/// Most requests held at once; past it a watch is answered at once (the client then waits a
/// second before asking again), so memory stays bounded whatever clients do.
const MAX_WATCHERS: usize = 10_000;

fn initial_routes_version() -> u64 {
    crate::common::clock::now_ms().max(1) as u64
}

/// Binds the listen address and starts a name server. Must run inside an actix system.
pub async fn start_namesrv(config: NamesrvConfig) -> std::io::Result<NamesrvHandle> {
    let bind = format!("{}:{}", config.listen_host, config.listen_port);
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    let addr = listener.local_addr()?;
    let limits = ConnectionLimits::new(
        config.max_frame_size,
        Duration::from_millis(config.channel_expired_timeout),
        config.max_incomplete_frame_bytes,
    );
    let namesrv = Supervisor::start(move |_| NameServer {
        config,
        routes: RouteTable::new(),
        conn_brokers: HashMap::new(),
        routes_version: initial_routes_version(),
        watchers: HashMap::new(),
        next_watcher: 0,
    });
    let listener = Listener::start(
        listener,
        limits,
        namesrv.clone().recipient(),
        namesrv.clone().recipient(),
    )?;
    tracing::info!(%addr, "name server listening");
    Ok(NamesrvHandle {
        addr,
        namesrv,
        listener,
    })
}

fn answer(inb: &Inbound, result: crate::protocol::Result<Frame>) {
    match result {
        Ok(f) => inb.respond(f),
        Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
    }
}

fn with_body<B: serde::Serialize>(inb: &Inbound, body: &B) {
    answer(
        inb,
        encode_body(body)
            .and_then(|b| Frame::response(inb.opaque, ResponseCode::Success, &NoHeader {}, b)),
    );
}

impl Actor for NameServer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(16 * 1024);
        let scan = Duration::from_millis(self.config.scan_not_active_broker_interval);
        ctx.run_interval(scan, |act, ctx| {
            let idle = Duration::from_millis(act.config.broker_channel_expired_time);
            let expired = act.routes.expire(Instant::now(), idle);
            for addr in &expired {
                tracing::warn!(broker = %addr, "broker expired: not heard from within broker_channel_expired_time");
            }
            if !expired.is_empty() {
                act.routes_changed();
            }
            if let Err(e) = act.routes.audit() {
                tracing::error!(error = %e, "dropping every route: the tables cannot be trusted; brokers register again within register_broker_interval");
                ctx.stop();
            }
        });
    }
}

impl Supervised for NameServer {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // Nothing of the old tables can be trusted. Routes come back with the brokers' next
        // registrations; a broker connection that closes meanwhile has nothing to drop.
        self.routes = RouteTable::new();
        self.conn_brokers.clear();
        // Held watches had their deadlines in the old context: answer them now.
        self.routes_version = self.routes_version.max(initial_routes_version()) + 1;
        self.answer_watchers();
    }
}

/// Breaks the route tables on purpose (see [`RouteTable::corrupt_with_ghost_topic`]), so a
/// test can watch the next audit stop the name server and its restart start clean. Never
/// send it otherwise.
#[doc(hidden)]
#[derive(Message)]
#[rtype(result = "()")]
pub struct CorruptRoutes {
    /// A topic that gets queue data of a broker set that does not exist.
    pub ghost_topic: String,
}

impl Handler<CorruptRoutes> for NameServer {
    type Result = ();

    fn handle(&mut self, msg: CorruptRoutes, _ctx: &mut Self::Context) {
        self.routes.corrupt_with_ghost_topic(&msg.ghost_topic);
    }
}

impl Handler<InboundBatch> for NameServer {
    type Result = ();

    fn handle(&mut self, batch: InboundBatch, ctx: &mut Self::Context) {
        for inb in batch.0 {
            self.serve(inb, ctx);
        }
    }
}

impl NameServer {
    /// A route changed: bump the version and answer every held watch.
    fn routes_changed(&mut self) {
        self.routes_version += 1;
        self.answer_watchers();
    }

    fn answer_watchers(&mut self) {
        for (_, inb) in std::mem::take(&mut self.watchers) {
            self.answer_watch(&inb);
        }
    }

    fn answer_watch(&self, inb: &Inbound) {
        let header = crate::protocol::route::WatchRoutesResponseHeader {
            version: self.routes_version,
        };
        answer(
            inb,
            Frame::response(inb.opaque, ResponseCode::Success, &header, Bytes::new()),
        );
    }

    fn watch(
        &mut self,
        inb: Inbound,
        h: crate::protocol::route::WatchRoutesRequestHeader,
        ctx: &mut Context<Self>,
    ) {
        if h.known_version != self.routes_version || self.watchers.len() >= MAX_WATCHERS {
            return self.answer_watch(&inb);
        }
        let id = self.next_watcher;
        self.next_watcher += 1;
        self.watchers.insert(id, inb);
        let hold = Duration::from_millis(h.hold_ms).min(MAX_WATCH_HOLD);
        ctx.run_later(hold, move |act, _| {
            if let Some(inb) = act.watchers.remove(&id) {
                act.answer_watch(&inb);
            }
        });
    }

    fn serve(&mut self, mut inb: Inbound, ctx: &mut Context<Self>) {
        let request = std::mem::replace(&mut inb.request, Request::GetBrokerClusterInfo);
        match request {
            Request::RegisterBroker(h, topics) => {
                let outcome = self.routes.register_broker(&h, &topics, Instant::now());
                if outcome.routes_changed {
                    tracing::info!(broker = %h.broker_name, id = h.broker_id, addr = %h.broker_addr, topics = topics.topic_config_table.len(), "broker registered");
                    self.routes_changed();
                }
                // A broker that reconnected must not be dropped when its old connection's
                // close arrives later.
                self.conn_brokers.retain(|_, addr| *addr != h.broker_addr);
                self.conn_brokers.insert(inb.conn, h.broker_addr);
                answer(
                    &inb,
                    Frame::response(
                        inb.opaque,
                        ResponseCode::Success,
                        &outcome.response,
                        Bytes::new(),
                    ),
                );
            }
            Request::UnregisterBroker(h) => {
                if self.routes.unregister_broker(&h) {
                    tracing::info!(broker = %h.broker_name, addr = %h.broker_addr, "broker unregistered");
                    self.routes_changed();
                }
                self.conn_brokers.remove(&inb.conn);
                answer(
                    &inb,
                    Frame::response(
                        inb.opaque,
                        ResponseCode::Success,
                        &NoHeader {},
                        Bytes::new(),
                    ),
                );
            }
            Request::GetRouteInfoByTopic(h) => match self.routes.route(&h.topic) {
                Some(route) => with_body(&inb, &route),
                None => inb.fail(
                    ResponseCode::TopicNotExist,
                    format!(
                        "No topic route info in name server for the topic: {}",
                        h.topic
                    ),
                ),
            },
            Request::GetBrokerClusterInfo => with_body(&inb, &self.routes.cluster_info()),
            Request::GetAllTopicListFromNameserver => with_body(&inb, &self.routes.topics()),
            Request::WatchRoutes(h) => self.watch(inb, h, ctx),
            Request::DeleteTopicInNamesrv(h) => {
                if self
                    .routes
                    .delete_topic(&h.topic, h.cluster_name.as_deref())
                {
                    self.routes_changed();
                }
                answer(
                    &inb,
                    Frame::response(
                        inb.opaque,
                        ResponseCode::Success,
                        &NoHeader {},
                        Bytes::new(),
                    ),
                );
            }
            other => inb.fail(
                ResponseCode::RequestCodeNotSupported,
                format!(
                    "request {} is not supported by the name server",
                    other.code()
                ),
            ),
        }
    }
}

impl Handler<ConnectionClosed> for NameServer {
    type Result = ();

    fn handle(&mut self, msg: ConnectionClosed, _ctx: &mut Self::Context) {
        if let Some(addr) = self.conn_brokers.remove(&msg.conn) {
            if self.routes.remove_broker_by_addr(&addr) {
                tracing::info!(broker = %addr, "broker connection closed; routes dropped");
                self.routes_changed();
            }
        }
    }
}
