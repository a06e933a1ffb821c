//! ClientInstance actor: what the producers and consumers of one process share for one
//! name-server list.
//!
//! Owns the links to the name servers and brokers (one [`RemoteLink`] per address), the
//! topic-route cache, the client id, and the registry of producer groups and consumers that
//! heartbeats announce. Timers: routes of known topics refreshed every
//! `poll_name_server_interval` (and at once on a miss); heartbeats to every broker in use
//! every `heartbeat_broker_interval` (and at once when a consumer registers). Name servers
//! are tried in turn, so one dead name server stops nobody. A broker's
//! NOTIFY_CONSUMER_IDS_CHANGED is forwarded to that group's rebalancer.
//!
//! Not supervised: nothing it holds can go bad in a way a restart would mend (links
//! reconnect by themselves, each under its own supervisor; routes are refreshed on a
//! timer). It stops on [`ClientInstance::shutdown`] (after unregistering every group it
//! announced and closing its links) or with the actix system.

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;

use crate::actors::remote_link::{self, LinkConfig, PeerRequest, RemoteLink};
use crate::client::ClientError;
use crate::protocol::group::{
    ConsumerData, HeartbeatData, MessageQueue, NotifyConsumerIdsChangedRequestHeader, ProducerData,
    ResetOffsetBody, ResetOffsetRequestHeader,
};
use crate::protocol::route::{GetRouteInfoRequestHeader, TopicRouteData};
use crate::protocol::{encode_body, Frame, NoHeader, RequestCode, ResponseCode};

/// Settings shared by every producer and consumer of a client instance.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Name servers, `host:port;host:port`.
    pub namesrv_addr: String,
    /// Distinguishes several instances in one process (part of the client id).
    pub instance_name: String,
    /// How often known routes are refreshed.
    pub poll_name_server_interval: Duration,
    /// How often brokers get a heartbeat.
    pub heartbeat_broker_interval: Duration,
    /// How long one request to a name server may take.
    pub namesrv_timeout: Duration,
    /// Tunables of each connection.
    pub link: LinkConfig,
}

impl ClientConfig {
    /// RocketMQ's defaults for the given name servers.
    pub fn new(namesrv_addr: impl Into<String>) -> Self {
        ClientConfig {
            namesrv_addr: namesrv_addr.into(),
            instance_name: uuid::Uuid::new_v4().simple().to_string()[..8].to_owned(),
            poll_name_server_interval: Duration::from_secs(30),
            heartbeat_broker_interval: Duration::from_secs(30),
            namesrv_timeout: Duration::from_secs(3),
            link: LinkConfig::default(),
        }
    }
}

/// Tells a rebalancer to run now.
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct RebalanceNow;

/// A broker reset the group's offsets of a topic (`RESET_CONSUMER_CLIENT_OFFSET`, sent by
/// `mqadmin resetOffsetByTime`): the consumer restarts each queue it holds at its new
/// offset.
#[derive(Message, Clone, Debug)]
#[rtype(result = "()")]
pub struct ResetOffsets {
    /// The topic.
    pub topic: String,
    /// Queue → its new offset (the broker's queues only).
    pub offsets: Vec<(MessageQueue, u64)>,
}

/// A broker asks the producer group of a half message whether its transaction committed
/// (CHECK_TRANSACTION_STATE): routed to the group's transaction producer here, which
/// answers the broker with END_TRANSACTION.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct CheckTransactionState {
    /// The broker that asked (where the answer goes).
    pub broker_addr: String,
    /// The request's header (offsets and ids of the half record).
    pub header: crate::protocol::message::CheckTransactionStateRequestHeader,
    /// The half record the broker stored, decoded.
    pub half: crate::storage::StoredMessage,
}

/// Routes the CHECK_TRANSACTION_STATE requests of a producer group to its transaction
/// producer (dropped with the group by [`UnregisterProducer`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterTransactionChecker {
    /// The producer group.
    pub group: String,
    /// Where its checks go.
    pub checker: Recipient<CheckTransactionState>,
}

/// The route of a topic (from the cache unless `refresh`).
#[derive(Message)]
#[rtype(result = "Result<TopicRouteData, ClientError>")]
pub struct GetRoute {
    /// The topic.
    pub topic: String,
    /// Ask the name servers even if a route is cached.
    pub refresh: bool,
}

/// The link to a broker address.
#[derive(Message)]
#[rtype(result = "Addr<RemoteLink>")]
pub struct GetLink(pub String);

/// This instance's client id.
#[derive(Message)]
#[rtype(result = "String")]
pub struct GetClientId;

/// Announces a producer group in heartbeats.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterProducer(pub String);

/// Announces a consumer in heartbeats and routes its group's change notices.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterConsumer {
    /// Group name, subscriptions and mode.
    pub data: ConsumerData,
    /// Its rebalancer.
    pub rebalance: Recipient<RebalanceNow>,
    /// Where offset resets go (push consumers; `None` for consumers that cannot take one).
    pub reset: Option<Recipient<ResetOffsets>>,
}

/// The queues a consumer of `group` holds after a rebalance: announced in the next
/// heartbeat, sent at once when they changed (`mqadmin consumerConnection` shows them).
#[derive(Message)]
#[rtype(result = "()")]
pub struct ReportAssignment {
    /// The group.
    pub group: String,
    /// Its queues now, sorted.
    pub queues: Vec<MessageQueue>,
}

/// Forgets a consumer group and tells the brokers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UnregisterConsumer(pub String);

/// Forgets a producer group and tells the brokers.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UnregisterProducer(pub String);

/// Unregisters every group, closes every link and stops the instance.
#[derive(Message)]
#[rtype(result = "()")]
struct Shutdown;

/// Sends heartbeats now; answers when every broker answered or failed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct HeartbeatNow;

/// One per process and name-server list.
pub struct ClientInstance {
    config: ClientConfig,
    client_id: String,
    namesrvs: Vec<(String, Addr<RemoteLink>)>,
    preferred_namesrv: usize,
    /// The name server's routes version last seen through `WATCH_ROUTES` (`None`: not yet;
    /// the watch is off after a name server that does not know the request).
    routes_version: Option<u64>,
    watch_routes: bool,
    brokers: HashMap<String, Addr<RemoteLink>>,
    routes: HashMap<String, TopicRouteData>,
    producer_groups: BTreeSet<String>,
    consumers: HashMap<String, (ConsumerData, Recipient<RebalanceNow>)>,
    /// Group → where its offset resets go.
    resets: HashMap<String, Recipient<ResetOffsets>>,
    /// Producer group → its transaction producer, which answers the brokers' checks.
    checkers: HashMap<String, Recipient<CheckTransactionState>>,
}

impl ClientInstance {
    /// Starts an instance.
    /// Fails with [`ClientError::NoActixSystem`] when called outside an actix system (its
    /// actors need one's event loop), instead of panicking as spawning would.
    pub fn start(config: ClientConfig) -> Result<Addr<ClientInstance>, ClientError> {
        if actix::System::try_current().is_none() || tokio::runtime::Handle::try_current().is_err()
        {
            return Err(ClientError::NoActixSystem);
        }
        let client_id = format!("127.0.0.1@{}#{}", std::process::id(), config.instance_name);
        Ok(Actor::start(ClientInstance {
            client_id,
            namesrvs: Vec::new(),
            preferred_namesrv: 0,
            routes_version: None,
            watch_routes: true,
            brokers: HashMap::new(),
            routes: HashMap::new(),
            producer_groups: BTreeSet::new(),
            consumers: HashMap::new(),
            resets: HashMap::new(),
            checkers: HashMap::new(),
            config,
        }))
    }

    /// Stops the instance: every producer group and consumer still registered is
    /// unregistered from the brokers, the connections to brokers and name servers are
    /// closed, and the actor stops, so that the sends and consumers still using it fail
    /// with [`ClientError::Shutdown`]. Shut consumers down first
    /// ([`crate::PushConsumer::shutdown`] commits their offsets; one still running here is
    /// named in a `tracing` warning and its uncommitted progress is delivered again later), and
    /// producers too if their sends under way should finish ([`crate::Producer::shutdown`]).
    /// Returns once the brokers answered or `namesrv_timeout` passed; calling it on a
    /// stopped instance returns at once.
    pub async fn shutdown(client: &Addr<ClientInstance>) {
        // A stopped instance (or system) has nothing left to do.
        let _ = client.send(Shutdown).await;
    }

    /// [`ClientInstance::shutdown`] without waiting for it: for owners that cannot await
    /// (a `Drop`). Does nothing on a stopped instance.
    pub(crate) fn shutdown_later(client: &Addr<ClientInstance>) {
        client.do_send(Shutdown);
    }

    /// Tells every broker in use that `client_id` left a producer or a consumer group.
    fn unregister(
        &mut self,
        producer_group: Option<String>,
        consumer_group: Option<String>,
        ctx: &mut Context<Self>,
    ) -> impl std::future::Future<Output = ()> + 'static {
        let header = crate::protocol::group::UnregisterClientRequestHeader {
            client_id: self.client_id.clone(),
            producer_group,
            consumer_group,
        };
        let targets = self.broker_links(ctx);
        let timeout = self.config.namesrv_timeout;
        async move {
            let Ok(frame) = Frame::request(RequestCode::UnregisterClient, 0, &header, Bytes::new())
            else {
                return;
            };
            // One broker at a time would make a shutdown wait for each dead one in turn.
            let calls = targets.iter().map(|(addr, link)| {
                let frame = frame.clone();
                async move {
                    if let Err(e) = remote_link::call(link, addr, frame, timeout).await {
                        tracing::debug!(broker = %addr, error = %e, "unregister failed");
                    }
                }
            });
            futures_util::future::join_all(calls).await;
        }
    }

    /// Asks the name servers for the route of every known topic. With `rebalance`, the
    /// consumers are told to rebalance when a route changed (a broker came or went).
    fn refresh_routes(&mut self, rebalance: bool, ctx: &mut Context<Self>) {
        for topic in self.routes.keys().cloned().collect::<Vec<_>>() {
            let fut = fetch_route(
                self.namesrvs.clone(),
                self.preferred_namesrv,
                topic.clone(),
                self.config.namesrv_timeout,
            );
            ctx.spawn(fut.into_actor(self).map(move |(r, idx), act, _| {
                if let Some(i) = idx {
                    act.preferred_namesrv = i;
                }
                let changed = match r {
                    Ok(route) => act.routes.insert(topic, route.clone()) != Some(route),
                    Err(ClientError::NoRoute { .. }) => act.routes.remove(&topic).is_some(),
                    Err(e) => {
                        tracing::debug!(%topic, error = %e, "route refresh failed");
                        false
                    }
                };
                if changed && rebalance {
                    for (_, r) in act.consumers.values() {
                        r.do_send(RebalanceNow);
                    }
                }
            }));
        }
    }

    /// Holds a `WATCH_ROUTES` request on a name server; when it answers with a version other
    /// than the one known, the routes are refreshed (and consumers rebalance if one changed):
    /// a broker that comes or goes reaches this client within moments of the name server
    /// seeing it, not at the next `poll_name_server_interval`. Then it watches again.
    fn watch_routes(&mut self, ctx: &mut Context<Self>) {
        if !self.watch_routes || self.namesrvs.is_empty() {
            return;
        }
        let idx = self.preferred_namesrv % self.namesrvs.len();
        let (addr, link) = self.namesrvs[idx].clone();
        let header = crate::protocol::route::WatchRoutesRequestHeader {
            known_version: self.routes_version.unwrap_or(0),
            hold_ms: WATCH_HOLD.as_millis() as u64,
        };
        let Ok(frame) = Frame::request(RequestCode::WatchRoutes, 0, &header, Bytes::new()) else {
            return;
        };
        let asked = std::time::Instant::now();
        let timeout = WATCH_HOLD + self.config.namesrv_timeout;
        let call = async move { remote_link::call(&link, &addr, frame, timeout).await };
        ctx.spawn(call.into_actor(self).map(move |res, act, ctx| {
            let version = match res {
                Ok(f) if f.response_code() == Some(ResponseCode::Success) => f
                    .decode_header::<crate::protocol::route::WatchRoutesResponseHeader>()
                    .ok()
                    .map(|h| h.version),
                Ok(f) if f.response_code() == Some(ResponseCode::RequestCodeNotSupported) => {
                    tracing::debug!("the name server does not watch routes; polling only");
                    act.watch_routes = false;
                    return;
                }
                _ => None,
            };
            let changed = match (version, act.routes_version) {
                (Some(v), Some(known)) => v != known,
                _ => false,
            };
            if version.is_some() {
                act.routes_version = version;
            } else {
                // A name server down: the next watch goes to the next one.
                act.preferred_namesrv = (idx + 1) % act.namesrvs.len().max(1);
            }
            if changed {
                act.refresh_routes(true, ctx);
            }
            if changed || (version.is_some() && asked.elapsed() >= WATCH_HOLD / 2) {
                act.watch_routes(ctx);
            } else {
                ctx.run_later(WATCH_PAUSE, |act, ctx| act.watch_routes(ctx));
            }
        }));
    }

    fn link(&mut self, addr: &str, ctx: &mut Context<Self>) -> Addr<RemoteLink> {
        if let Some(l) = self.brokers.get(addr) {
            return l.clone();
        }
        // Watched: a broker that goes away or comes back changes routes now, not at the
        // next poll of the name servers (which may not have noticed yet: asked again after
        // a second).
        let l = RemoteLink::start_watched(
            addr,
            self.config.link.clone(),
            Some(ctx.address().recipient()),
            Some(ctx.address().recipient()),
        );
        self.brokers.insert(addr.to_owned(), l.clone());
        l
    }

    /// A link to every broker in use, with its address.
    fn broker_links(&mut self, ctx: &mut Context<Self>) -> Vec<(String, Addr<RemoteLink>)> {
        self.brokers_in_use()
            .into_iter()
            .map(|a| {
                let l = self.link(&a, ctx);
                (a, l)
            })
            .collect()
    }

    /// Master addresses of every broker in a cached route.
    /// The brokers heartbeats go to: every master in the routes, and, when this client has
    /// consumers, the slaves too (as RocketMQ): a consumer that fails over to a slave, or
    /// joins while its master is down, is a member there too, so the slave can answer who
    /// is in the group.
    fn brokers_in_use(&self) -> BTreeSet<String> {
        let slaves_too = !self.consumers.is_empty();
        self.routes
            .values()
            .flat_map(|r| r.broker_datas.iter())
            .flat_map(|b| {
                b.broker_addrs
                    .iter()
                    .filter(move |(id, _)| slaves_too || **id == crate::protocol::route::MASTER_ID)
                    .map(|(_, a)| a.clone())
            })
            .collect()
    }

    fn heartbeat_frame(&self) -> Option<Frame> {
        let data = HeartbeatData {
            client_id: self.client_id.clone(),
            producer_data_set: self
                .producer_groups
                .iter()
                .map(|g| ProducerData {
                    group_name: g.clone(),
                })
                .collect(),
            consumer_data_set: self.consumers.values().map(|(d, _)| d.clone()).collect(),
        };
        let body = encode_body(&data).ok()?;
        Frame::request(RequestCode::HeartBeat, 0, &NoHeader {}, body).ok()
    }

    fn heartbeat(
        &mut self,
        ctx: &mut Context<Self>,
    ) -> impl std::future::Future<Output = ()> + 'static {
        self.heartbeat_including(None, ctx)
    }

    /// [`Self::heartbeat`], to `also` as well even if no cached route lists it yet: a
    /// broker that restarted is dropped from the routes while it is away and comes back
    /// into them a moment after its link does; it must learn this client's groups now (a
    /// transaction check-back needs a producer of the group), not at the next timer.
    fn heartbeat_including(
        &mut self,
        also: Option<&str>,
        ctx: &mut Context<Self>,
    ) -> impl std::future::Future<Output = ()> + 'static {
        let frame = self.heartbeat_frame();
        let mut targets = self.broker_links(ctx);
        if let Some(addr) = also {
            if !targets.iter().any(|(a, _)| a == addr) {
                let link = self.link(addr, ctx);
                targets.push((addr.to_owned(), link));
            }
        }
        async move {
            let Some(frame) = frame else { return };
            for (addr, link) in targets {
                if let Err(e) =
                    remote_link::call(&link, &addr, frame.clone(), Duration::from_secs(3)).await
                {
                    tracing::debug!(broker = %addr, error = %e, "heartbeat failed");
                }
            }
        }
    }
}

/// Asks the name servers in turn, starting with the last one that answered.
async fn fetch_route(
    namesrvs: Vec<(String, Addr<RemoteLink>)>,
    start: usize,
    topic: String,
    timeout: Duration,
) -> (Result<TopicRouteData, ClientError>, Option<usize>) {
    if namesrvs.is_empty() {
        return (
            Err(ClientError::NamesrvUnreachable {
                addrs: String::new(),
                reason: "no name server address configured (namesrv_addr / NAMESRV_ADDR)".into(),
            }),
            None,
        );
    }
    let header = GetRouteInfoRequestHeader {
        topic: topic.clone(),
    };
    let mut last = String::new();
    let mut not_found = false;
    for i in 0..namesrvs.len() {
        let idx = (start + i) % namesrvs.len();
        let (addr, link) = &namesrvs[idx];
        let Ok(frame) = Frame::request(RequestCode::GetRouteInfoByTopic, 0, &header, Bytes::new())
        else {
            continue;
        };
        match remote_link::call(link, addr, frame, timeout).await {
            Ok(f) if f.response_code() == Some(ResponseCode::Success) => {
                match f.decode_body::<TopicRouteData>() {
                    Ok(route) => return (Ok(route), Some(idx)),
                    Err(e) => last = format!("{addr}: bad route: {e}"),
                }
            }
            Ok(f) if f.response_code() == Some(ResponseCode::TopicNotExist) => not_found = true,
            Ok(f) => last = format!("{addr}: code {} {}", f.code, f.remark.unwrap_or_default()),
            Err(e) => last = e.to_string(),
        }
    }
    if not_found {
        return (Err(ClientError::NoRoute { topic }), None);
    }
    let addrs = namesrvs
        .iter()
        .map(|(a, _)| a.as_str())
        .collect::<Vec<_>>()
        .join(";");
    (
        Err(ClientError::NamesrvUnreachable {
            addrs,
            reason: last,
        }),
        None,
    )
}

/// How long a name server holds a `WATCH_ROUTES` request of this client.
const WATCH_HOLD: Duration = Duration::from_secs(20);
/// The pause before watching again after an error or an answer that changed nothing.
const WATCH_PAUSE: Duration = Duration::from_secs(1);

/// How long after a broker link changed the routes are asked for a second time.
const ROUTE_RECHECK: Duration = Duration::from_secs(1);

impl Actor for ClientInstance {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // An application that returns before its first await drops the runtime with this
        // actor not yet started; actix then starts it during the drop, where timers and
        // links would panic ("there is no reactor running"). Nothing can run then anyway.
        if tokio::runtime::Handle::try_current().is_err() {
            ctx.stop();
            return;
        }
        if self.namesrvs.is_empty() {
            self.namesrvs = self
                .config
                .namesrv_addr
                .split(';')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(|a| {
                    (
                        a.to_owned(),
                        RemoteLink::start(a, self.config.link.clone(), None),
                    )
                })
                .collect();
        }
        ctx.run_interval(self.config.poll_name_server_interval, |act, ctx| {
            act.refresh_routes(false, ctx);
        });
        self.watch_routes(ctx);
        ctx.run_interval(self.config.heartbeat_broker_interval, |act, ctx| {
            let fut = act.heartbeat(ctx);
            ctx.spawn(fut.into_actor(act));
        });
    }
}

impl Handler<GetRoute> for ClientInstance {
    type Result = ResponseActFuture<Self, Result<TopicRouteData, ClientError>>;

    fn handle(&mut self, msg: GetRoute, _ctx: &mut Self::Context) -> Self::Result {
        if !msg.refresh {
            if let Some(r) = self.routes.get(&msg.topic) {
                let r = r.clone();
                return Box::pin(fut::ready(Ok(r)));
            }
        }
        let topic = msg.topic.clone();
        let fut = fetch_route(
            self.namesrvs.clone(),
            self.preferred_namesrv,
            msg.topic,
            self.config.namesrv_timeout,
        );
        Box::pin(fut.into_actor(self).map(move |(r, idx), act, _| {
            if let Some(i) = idx {
                act.preferred_namesrv = i;
            }
            if let Ok(route) = &r {
                act.routes.insert(topic, route.clone());
            }
            r
        }))
    }
}

impl Handler<GetLink> for ClientInstance {
    type Result = Addr<RemoteLink>;

    fn handle(&mut self, msg: GetLink, ctx: &mut Self::Context) -> Self::Result {
        self.link(&msg.0, ctx)
    }
}

impl Handler<GetClientId> for ClientInstance {
    type Result = String;

    fn handle(&mut self, _: GetClientId, _: &mut Self::Context) -> String {
        self.client_id.clone()
    }
}

impl Handler<RegisterProducer> for ClientInstance {
    type Result = ();

    fn handle(&mut self, msg: RegisterProducer, _: &mut Self::Context) {
        self.producer_groups.insert(msg.0);
    }
}

impl Handler<RegisterTransactionChecker> for ClientInstance {
    type Result = ();

    fn handle(&mut self, msg: RegisterTransactionChecker, _: &mut Self::Context) {
        self.checkers.insert(msg.group, msg.checker);
    }
}

impl Handler<RegisterConsumer> for ClientInstance {
    type Result = ();

    fn handle(&mut self, msg: RegisterConsumer, _: &mut Self::Context) {
        match msg.reset {
            Some(r) => self.resets.insert(msg.data.group_name.clone(), r),
            None => self.resets.remove(&msg.data.group_name),
        };
        self.consumers
            .insert(msg.data.group_name.clone(), (msg.data, msg.rebalance));
    }
}

impl Handler<UnregisterConsumer> for ClientInstance {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: UnregisterConsumer, ctx: &mut Self::Context) -> Self::Result {
        self.consumers.remove(&msg.0);
        self.resets.remove(&msg.0);
        Box::pin(self.unregister(None, Some(msg.0), ctx).into_actor(self))
    }
}

impl Handler<UnregisterProducer> for ClientInstance {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: UnregisterProducer, ctx: &mut Self::Context) -> Self::Result {
        self.producer_groups.remove(&msg.0);
        self.checkers.remove(&msg.0);
        Box::pin(self.unregister(Some(msg.0), None, ctx).into_actor(self))
    }
}

impl Handler<Shutdown> for ClientInstance {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Self::Context) -> Self::Result {
        if !self.consumers.is_empty() {
            let groups: Vec<&str> = self.consumers.keys().map(String::as_str).collect();
            tracing::warn!(
                groups = %groups.join(", "),
                "client instance shut down under running consumers: shut them down first, \
                 or what they consumed since their last commit is delivered again"
            );
        }
        let producers = std::mem::take(&mut self.producer_groups);
        self.checkers.clear();
        let consumers: Vec<String> = self.consumers.drain().map(|(g, _)| g).collect();
        let leaving: Vec<_> = producers
            .into_iter()
            .map(|g| self.unregister(Some(g), None, ctx))
            .collect::<Vec<_>>()
            .into_iter()
            .chain(
                consumers
                    .into_iter()
                    .map(|g| self.unregister(None, Some(g), ctx))
                    .collect::<Vec<_>>(),
            )
            .collect();
        Box::pin(
            futures_util::future::join_all(leaving)
                .into_actor(self)
                .map(|_, act, ctx| {
                    for link in act
                        .brokers
                        .values()
                        .chain(act.namesrvs.iter().map(|(_, l)| l))
                    {
                        link.do_send(remote_link::Close);
                    }
                    act.brokers.clear();
                    act.namesrvs.clear();
                    act.routes.clear();
                    ctx.stop();
                }),
        )
    }
}

impl Handler<ReportAssignment> for ClientInstance {
    type Result = ();

    fn handle(&mut self, msg: ReportAssignment, ctx: &mut Self::Context) {
        let Some((data, _)) = self.consumers.get_mut(&msg.group) else {
            return;
        };
        if data.assigned_queues.as_ref() == Some(&msg.queues) {
            return;
        }
        data.assigned_queues = Some(msg.queues);
        let fut = self.heartbeat(ctx);
        ctx.spawn(fut.into_actor(self));
    }
}

impl Handler<HeartbeatNow> for ClientInstance {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: HeartbeatNow, ctx: &mut Self::Context) -> Self::Result {
        Box::pin(self.heartbeat(ctx).into_actor(self))
    }
}

impl Handler<PeerRequest> for ClientInstance {
    type Result = ();

    fn handle(&mut self, msg: PeerRequest, _: &mut Self::Context) {
        if msg.frame.request_code() == Some(RequestCode::ResetConsumerClientOffset) {
            return self.reset_offsets(&msg.frame);
        }
        if msg.frame.request_code() == Some(RequestCode::CheckTransactionState) {
            return self.check_transaction(msg);
        }
        if msg.frame.request_code() != Some(RequestCode::NotifyConsumerIdsChanged) {
            return;
        }
        let Ok(h) = msg
            .frame
            .decode_header::<NotifyConsumerIdsChangedRequestHeader>()
        else {
            return;
        };
        if let Some((_, r)) = self.consumers.get(&h.consumer_group) {
            r.do_send(RebalanceNow);
        }
    }
}

impl ClientInstance {
    /// Hands a broker's `CHECK_TRANSACTION_STATE` to the transaction producer of the half's
    /// group (its `PGROUP` property; the header does not name it).
    fn check_transaction(&self, msg: PeerRequest) {
        use crate::common::properties::{property, PROPERTY_PRODUCER_GROUP};
        let decoded = msg
            .frame
            .decode_header::<crate::protocol::message::CheckTransactionStateRequestHeader>()
            .map_err(|e| e.to_string())
            .and_then(|h| {
                let half = crate::storage::StoredMessage::decode(msg.frame.body.clone())
                    .map_err(|e| format!("undecodable half message: {e}"))?;
                Ok((h, half))
            });
        let (header, half) = match decoded {
            Ok(both) => both,
            Err(e) => {
                tracing::warn!(broker = %msg.addr, error = %e, "ignoring an undecodable transaction check");
                return;
            }
        };
        let group = property(&half.properties, PROPERTY_PRODUCER_GROUP).unwrap_or("");
        let Some(checker) = self.checkers.get(group) else {
            tracing::debug!(broker = %msg.addr, group, "a transaction check for a group with no transaction producer here; ignored");
            return;
        };
        checker.do_send(CheckTransactionState {
            broker_addr: msg.addr,
            header,
            half,
        });
    }

    /// Hands a broker's `RESET_CONSUMER_CLIENT_OFFSET` to the group's consumer here.
    fn reset_offsets(&self, frame: &Frame) {
        let decoded = frame
            .decode_header::<ResetOffsetRequestHeader>()
            .and_then(|h| Ok((h, frame.decode_body::<ResetOffsetBody>()?)));
        let (h, body) = match decoded {
            Ok(both) => both,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring an undecodable offset reset");
                return;
            }
        };
        let Some(consumer) = self.resets.get(&h.group) else {
            tracing::info!(group = %h.group, "an offset reset for a group with no push consumer here; ignored");
            return;
        };
        let offsets = body
            .offset_table
            .into_iter()
            .filter(|(mq, _)| mq.topic == h.topic)
            .map(|(mq, offset)| (mq, offset.max(0) as u64))
            .collect();
        consumer.do_send(ResetOffsets {
            topic: h.topic,
            offsets,
        });
    }
}

impl Handler<remote_link::LinkStateChanged> for ClientInstance {
    type Result = ();

    fn handle(&mut self, msg: remote_link::LinkStateChanged, ctx: &mut Self::Context) {
        if !self.brokers.contains_key(&msg.addr) {
            return;
        }
        tracing::debug!(broker = %msg.addr, up = msg.up, "broker link changed; refreshing routes");
        if msg.up {
            // A broker that (re)started knows none of this client's groups: tell it now,
            // not at the next heartbeat (an orderly consumer's locks need it, and a
            // transaction check-back needs a producer of the group).
            let fut = self.heartbeat_including(Some(&msg.addr), ctx);
            ctx.spawn(fut.into_actor(self));
        }
        self.refresh_routes(true, ctx);
        // The name servers drop a dead broker when its connection closes, which may be a
        // moment after this client saw it: ask again shortly.
        ctx.run_later(ROUTE_RECHECK, |act, ctx| act.refresh_routes(true, ctx));
    }
}
