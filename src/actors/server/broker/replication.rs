//! The broker's side of replication: binding the master's HA port, starting the master's
//! [`HaAcceptor`] or the slave's supervised [`HaSlaveLink`], the confirmed-offset policy of
//! each role, `sync_master` answers (released when the slaves' acknowledgement passes
//! them, `FLUSH_SLAVE_TIMEOUT` after `sync_flush_timeout`, `SLAVE_NOT_AVAILABLE` at once
//! with too few slaves in sync), waking held pulls when records become confirmed, and a
//! slave's copy of its master's topic table.
//!
//! It never answers a send `SEND_OK` before the records are confirmed as the role
//! promises, and never shows a consumer a record before that either.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::*;
use crate::actors::server::ha::acceptor::{AcceptorSettings, HaAcceptor};
use crate::actors::server::ha::session::SessionSettings;
use crate::actors::server::ha::slave_link::{HaSlaveLink, MasterAddress, SlaveSettings};
use crate::actors::server::ha::{HaState, LogGrew, ReplicaProgress, SlaveAppended, UseStore};
use crate::config::BrokerRole;
use crate::protocol::group::ConsumerOffsetWrapper;
use crate::protocol::route::RegisterBrokerResponseHeader;
use crate::protocol::topic::TopicConfigWrapper;
use crate::storage::{ConfirmPolicy, FlushDiskType};

/// How often a slave copies its master's topic table.
const METADATA_SYNC_INTERVAL: Duration = Duration::from_secs(3);
/// How often `sync_master` answers are checked against their deadline.
const SLAVE_WAIT_CHECK: Duration = Duration::from_millis(50);
/// Most batches of wake-ups kept waiting for slaves; past it, every queue is woken at the
/// next progress instead (a slave away for long must not grow the broker's memory).
const MAX_WAITING_WAKES: usize = 4096;

/// A queue actor to wake, with its flag (see `MessageQueue::wake_flag`).
pub(super) type Wake = (Addr<MessageQueue>, Arc<AtomicBool>);

/// Tells each queue actor that its queue has new confirmed messages.
pub(super) fn wake(wakes: &[Wake]) {
    for (addr, flag) in wakes {
        wake_one(addr, flag);
    }
}

/// Wakes one queue actor unless a wake is already on its way.
pub(super) fn wake_one(addr: &Addr<MessageQueue>, flag: &AtomicBool) {
    if !flag.swap(true, Ordering::AcqRel) {
        addr.do_send(Appended);
    }
}

/// A `sync_master` send stored and waiting for its slaves.
struct AwaitingSlaves {
    end: u64,
    deadline: Instant,
    opaque: u32,
    header: SendMessageResponseHeader,
    reply: Arc<Recipient<Outbound>>,
}

enum Role {
    None,
    Master(Addr<HaAcceptor>),
    Slave(Addr<HaSlaveLink>),
}

/// The broker's replication state.
pub(super) struct Replication {
    state: Arc<HaState>,
    /// The HA address registered with the name servers (a master's).
    advertised: Option<String>,
    role: Role,
    /// What the name servers last said about this broker name's master (for a slave).
    master: Option<RegisterBrokerResponseHeader>,
    /// A slave's link to its master as a client (topic table copies).
    master_link: Option<(String, Addr<RemoteLink>)>,
    awaiting: VecDeque<AwaitingSlaves>,
    wakes: VecDeque<(u64, Vec<Wake>)>,
    /// Wake-ups dropped for memory's sake: every queue is woken once the slaves pass this.
    wake_all_at: Option<u64>,
}

/// Sets what a record needs before consumers see it, for this broker's role.
pub(super) fn set_confirm_policy(store: &MessageStore, config: &BrokerConfig) {
    let sync_flush = config.store.flush_disk_type == FlushDiskType::SyncFlush;
    store.set_confirm_policy(match config.broker_role {
        BrokerRole::AsyncMaster => ConfirmPolicy {
            flushed: sync_flush,
            replicated: false,
        },
        BrokerRole::SyncMaster => ConfirmPolicy {
            flushed: sync_flush,
            replicated: true,
        },
        // What a master ships is confirmed there; a slave shows it once written.
        BrokerRole::Slave => ConfirmPolicy::default(),
    });
}

/// Binds a master's HA port; `None` for a slave. Returns the address to publish.
pub(super) async fn bind_ha(
    config: &BrokerConfig,
    listen_port: u16,
) -> Result<(Option<tokio::net::TcpListener>, Option<String>), BrokerError> {
    if !config.is_master() {
        return Ok((None, None));
    }
    let bind = config.ha_listen_addr(listen_port);
    let listener = tokio::net::TcpListener::bind(&bind)
        .await
        .map_err(|source| BrokerError::Bind {
            addr: bind.clone(),
            source,
        })?;
    let port = listener
        .local_addr()
        .map_err(|source| BrokerError::Bind { addr: bind, source })?
        .port();
    Ok((
        Some(listener),
        Some(format!("{}:{port}", config.broker_ip1)),
    ))
}

/// Starts the master's acceptor (given its listener) or the slave's link, and hands it to
/// the broker.
pub(super) fn start_ha_actors(
    broker: &Addr<Broker>,
    listener: Option<tokio::net::TcpListener>,
    store: &Arc<MessageStore>,
    config: &BrokerConfig,
    state: Arc<HaState>,
) {
    let max_frame = ha::CHUNK_BYTES + config.store.max_message_size + 1024;
    if let Some(listener) = listener {
        let acceptor = HaAcceptor::start(
            listener,
            Arc::clone(store),
            state,
            broker.clone().recipient(),
            AcceptorSettings {
                session: SessionSettings {
                    broker_name: config.broker_name.clone(),
                    ship_flushed_only: config.store.flush_disk_type == FlushDiskType::SyncFlush,
                    max_frame,
                },
                min_in_sync_replicas: config.min_in_sync_replicas,
                fallbehind_max: config.ha_slave_fallbehind_max,
            },
        );
        broker.do_send(SetHa(Role::Master(acceptor)));
    } else if !config.is_master() {
        let fixed = config.ha_master_address.trim();
        let link = HaSlaveLink::new(
            Arc::clone(store),
            state,
            broker.clone().recipient(),
            SlaveSettings {
                broker_name: config.broker_name.clone(),
                broker_id: config.broker_id,
                fixed_master: (!fixed.is_empty()).then(|| fixed.to_owned()),
                max_frame,
            },
        );
        let link = Supervisor::start(move |_| link);
        broker.do_send(SetHa(Role::Slave(link)));
    }
}

impl Replication {
    pub(super) fn new(state: Arc<HaState>, advertised: Option<String>) -> Self {
        Replication {
            state,
            advertised,
            role: Role::None,
            master: None,
            master_link: None,
            awaiting: VecDeque::new(),
            wakes: VecDeque::new(),
            wake_all_at: None,
        }
    }

    /// The HA address to register (a master's).
    pub(super) fn advertised(&self) -> Option<&str> {
        self.advertised.as_deref()
    }

    /// What the replication actors report.
    pub(super) fn state(&self) -> &HaState {
        &self.state
    }

    /// Holds a `sync_master` answer until the slaves hold `end`.
    pub(super) fn await_slaves(
        &mut self,
        end: u64,
        timeout: Duration,
        opaque: u32,
        header: SendMessageResponseHeader,
        reply: Arc<Recipient<Outbound>>,
    ) {
        self.awaiting.push_back(AwaitingSlaves {
            end,
            deadline: Instant::now() + timeout,
            opaque,
            header,
            reply,
        });
    }

    /// Wakes `wakes` once the slaves hold `end`.
    pub(super) fn wake_when_replicated(&mut self, end: u64, wakes: Vec<Wake>) {
        if wakes.is_empty() {
            return;
        }
        if self.wake_all_at.is_some() || self.wakes.len() >= MAX_WAITING_WAKES {
            let dropped = self.wakes.drain(..).map(|(e, _)| e).max().unwrap_or(0);
            self.wake_all_at = Some(self.wake_all_at.unwrap_or(0).max(dropped).max(end));
            return;
        }
        self.wakes.push_back((end, wakes));
    }

    /// Tells the sessions that there is more to ship, if any slave is connected.
    pub(super) fn log_grew(&self) {
        if let Role::Master(a) = &self.role {
            if self.state.any_connected() {
                a.do_send(LogGrew);
            }
        }
    }

    /// The acceptor, to tell from another thread (after a flush).
    pub(super) fn acceptor_if_slaves(&self) -> Option<Addr<HaAcceptor>> {
        match &self.role {
            Role::Master(a) if self.state.any_connected() => Some(a.clone()),
            _ => None,
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct SetHa(Role);

impl Handler<SetHa> for Broker {
    type Result = ();
    fn handle(&mut self, msg: SetHa, _: &mut Context<Self>) {
        self.ha.role = msg.0;
        if let (Role::Slave(link), Some(h)) = (&self.ha.role, &self.ha.master) {
            link.do_send(MasterAddress(h.ha_server_addr.clone()));
        }
    }
}

impl Handler<ReplicaProgress> for Broker {
    type Result = ();
    fn handle(&mut self, msg: ReplicaProgress, _: &mut Context<Self>) {
        let ReplicaProgress(offset) = msg;
        let ha = &mut self.ha;
        while ha.awaiting.front().is_some_and(|a| a.end <= offset) {
            if let Some(a) = ha.awaiting.pop_front() {
                let frame =
                    Frame::response(a.opaque, ResponseCode::Success, &a.header, Bytes::new())
                        .unwrap_or_else(|e| {
                            Frame::error(a.opaque, ResponseCode::SystemError, e.to_string())
                        });
                a.reply.do_send(Outbound(frame));
            }
        }
        while ha.wakes.front().is_some_and(|(end, _)| *end <= offset) {
            if let Some((_, w)) = ha.wakes.pop_front() {
                wake(&w);
            }
        }
        if ha.wake_all_at.is_some_and(|at| at <= offset) {
            ha.wake_all_at = None;
            self.wake_all_queues();
        }
    }
}

impl Handler<SlaveAppended> for Broker {
    type Result = ();
    fn handle(&mut self, _: SlaveAppended, _: &mut Context<Self>) {
        self.wake_all_queues();
    }
}

impl Broker {
    /// Wakes `wakes` once everything written so far is confirmed (at once if it is).
    pub(super) fn wake_once_confirmed(&mut self, wakes: Vec<Wake>) {
        let end = self.store.max_physical_offset();
        if self.store.confirmed_offset() >= end {
            return;
        }
        if self.store.confirm_policy().replicated {
            self.ha.wake_when_replicated(end, wakes);
        } else {
            self.store.on_durable(end, Box::new(move |_| wake(&wakes)));
        }
    }

    /// Answers GET_ALL_CONSUMER_OFFSET: every group's committed offsets, from its actor when
    /// it runs, else from its file (read on the blocking pool).
    pub(super) fn all_consumer_offsets(&mut self, inb: Inbound) {
        let running: Vec<(String, Addr<ConsumerGroup>)> = self
            .groups
            .iter()
            .map(|(n, a)| (n.clone(), a.clone()))
            .collect();
        let root = self.config.store.store_path_root_dir.clone();
        actix::spawn(async move {
            let mut table: BTreeMap<String, BTreeMap<i32, i64>> = BTreeMap::new();
            let mut add = |group: &str, offsets: BTreeMap<(String, i32), i64>| {
                for ((topic, queue), offset) in offsets {
                    table
                        .entry(format!("{topic}@{group}"))
                        .or_default()
                        .insert(queue, offset);
                }
            };
            for (name, addr) in &running {
                if let Ok(offsets) = addr.send(consumer_group::ListOffsets).await {
                    add(name, offsets);
                }
            }
            let skip: std::collections::HashSet<String> =
                running.into_iter().map(|(n, _)| n).collect();
            let from_files = tokio::task::spawn_blocking(move || {
                consumer_group::groups_on_disk(&root)
                    .into_iter()
                    .filter(|g| !skip.contains(g))
                    .filter_map(|g| consumer_group::read_offsets_file(&root, &g).map(|o| (g, o)))
                    .collect::<Vec<_>>()
            })
            .await
            .unwrap_or_default();
            for (name, offsets) in from_files {
                add(&name, offsets);
            }
            requests::ok_body(
                &inb,
                &ConsumerOffsetWrapper {
                    offset_table: table,
                },
            );
        });
    }

    /// The replication timers, armed in `started` (so again after a restart).
    pub(super) fn start_replication_timers(&self, ctx: &mut Context<Self>) {
        match self.config.broker_role {
            BrokerRole::Slave => {
                ctx.run_interval(METADATA_SYNC_INTERVAL, |act, ctx| {
                    act.copy_master_metadata(ctx)
                });
            }
            BrokerRole::SyncMaster => {
                ctx.run_interval(SLAVE_WAIT_CHECK, |act, _| act.expire_slave_waits());
            }
            BrokerRole::AsyncMaster => {}
        }
    }

    /// After a reopen: the replication actors read and write the new handle (sessions
    /// close and slaves reconnect; a slave's link reconnects from the new store's end).
    pub(super) fn replication_store_reopened(&self, store: &Arc<MessageStore>) {
        set_confirm_policy(store, &self.config);
        match &self.ha.role {
            Role::Master(a) => a.do_send(UseStore(Arc::clone(store))),
            Role::Slave(l) => l.do_send(UseStore(Arc::clone(store))),
            Role::None => {}
        }
    }

    /// Wakes every queue actor (a slave does not know which queues a chunk touched).
    pub(super) fn wake_all_queues(&self) {
        for q in self.queues.values().flat_map(|t| t.values()) {
            if !q.wake_pending.swap(true, Ordering::AcqRel) {
                q.addr.do_send(Appended);
            }
        }
    }

    /// Answers `FLUSH_SLAVE_TIMEOUT` to the sends whose slaves did not answer in time (the
    /// message is stored on the master; it is not acknowledged).
    fn expire_slave_waits(&mut self) {
        let now = Instant::now();
        while self.ha.awaiting.front().is_some_and(|a| a.deadline <= now) {
            if let Some(a) = self.ha.awaiting.pop_front() {
                let frame = Frame::response(
                    a.opaque,
                    ResponseCode::FlushSlaveTimeout,
                    &a.header,
                    Bytes::new(),
                )
                .unwrap_or_else(|e| {
                    Frame::error(a.opaque, ResponseCode::SystemError, e.to_string())
                });
                a.reply.do_send(Outbound(frame));
            }
        }
    }

    /// What a registration answered about this broker name's master (a slave follows it).
    pub(super) fn master_published(
        &mut self,
        header: Option<RegisterBrokerResponseHeader>,
        ctx: &mut Context<Self>,
    ) {
        if self.config.is_master() {
            return;
        }
        let Some(h) = header.filter(|h| h.ha_server_addr.as_deref().is_some_and(|a| !a.is_empty()))
        else {
            // No master registered yet: ask again soon rather than at the next periodic
            // registration (a slave started before its master would otherwise wait 30 s).
            if self.ha.master.is_none() && !self.registration_retry && !self.shutting_down {
                self.registration_retry = true;
                ctx.run_later(REGISTRATION_RETRY, |act, ctx| {
                    act.registration_retry = false;
                    act.register_all(ctx);
                });
            }
            return;
        };
        if let Role::Slave(link) = &self.ha.role {
            link.do_send(MasterAddress(h.ha_server_addr.clone()));
        }
        self.ha.master = Some(h);
    }

    /// A slave copies its master's topic table and consumer offsets (over the normal
    /// protocol), so that it can serve consumers of every topic the master has, from where
    /// their group was. Topics are added or updated, never removed (a consumer may still be
    /// reading them here); offsets only move up (`MergeOffsets`).
    fn copy_master_metadata(&mut self, ctx: &mut Context<Self>) {
        let Some(master) = self.ha.master.as_ref().and_then(|h| h.master_addr.clone()) else {
            return;
        };
        let link = match &self.ha.master_link {
            Some((addr, link)) if *addr == master => link.clone(),
            _ => {
                let config = LinkConfig {
                    max_frame_size: self.config.max_frame_size,
                    ..LinkConfig::default()
                };
                let link = RemoteLink::start(master.clone(), config, None);
                self.ha.master_link = Some((master.clone(), link.clone()));
                link
            }
        };
        let fetch = async move {
            let topics =
                ask_master::<TopicConfigWrapper>(&link, &master, RequestCode::GetAllTopicConfig)
                    .await;
            let offsets = ask_master::<ConsumerOffsetWrapper>(
                &link,
                &master,
                RequestCode::GetAllConsumerOffset,
            )
            .await;
            (topics, offsets)
        };
        ctx.spawn(fetch.into_actor(self).map(|(topics, offsets), act, ctx| {
            match topics {
                Ok(table) => act.merge_master_topics(table, ctx),
                Err(e) => tracing::debug!(error = %e, "cannot copy the master's topic table"),
            }
            match offsets {
                Ok(table) => act.merge_master_offsets(table, ctx),
                Err(e) => tracing::debug!(error = %e, "cannot copy the master's consumer offsets"),
            }
        }));
    }

    fn merge_master_topics(&mut self, table: TopicConfigWrapper, ctx: &mut Context<Self>) {
        let mut changed = false;
        for (name, t) in table.topic_config_table {
            if self.topics.get(&name) != Some(&t) {
                self.topics.upsert(t);
                changed = true;
            }
        }
        if changed {
            tracing::info!("topic table copied from the master");
            self.register_all(ctx);
            if let Ok(snapshot) = self.topics.snapshot() {
                actix::spawn(async move {
                    if let Err(e) = snapshot.save().await {
                        tracing::warn!(error = %e, "cannot save the copied topic table");
                    }
                });
            }
        }
    }

    fn merge_master_offsets(&mut self, table: ConsumerOffsetWrapper, ctx: &mut Context<Self>) {
        let mut by_group: BTreeMap<String, BTreeMap<(String, i32), i64>> = BTreeMap::new();
        for (key, queues) in table.offset_table {
            // "topic@group": a topic name has no '@', a group name may not either.
            let Some((topic, group)) = key.split_once('@') else {
                continue;
            };
            let offsets = by_group.entry(group.to_owned()).or_default();
            for (queue, offset) in queues {
                offsets.insert((topic.to_owned(), queue), offset);
            }
        }
        // Groups only this slave knows (committed here while the master was away) too.
        for name in self.groups.keys() {
            by_group.entry(name.clone()).or_default();
        }
        let Some((master, link)) = self.ha.master_link.clone() else {
            return;
        };
        let mut merges = Vec::new();
        for (group, offsets) in by_group {
            match self.group(&group) {
                Ok(g) => merges.push((group, g.send(consumer_group::MergeOffsets(offsets)))),
                Err(e) => {
                    tracing::debug!(%group, error = %e, "master's offsets for a group not kept")
                }
            }
        }
        // What consumers committed here while the master was away goes up to the master,
        // which keeps the larger (a newer commit there is never undone).
        ctx.spawn(
            async move {
                for (group, merge) in merges {
                    let Ok(ahead) = merge.await else { continue };
                    for ((topic, queue_id), offset) in ahead {
                        let h = crate::protocol::message::UpdateConsumerOffsetRequestHeader {
                            consumer_group: group.clone(),
                            topic,
                            queue_id,
                            commit_offset: offset,
                            keep_larger: Some(true),
                        };
                        let Ok(frame) = Frame::request(RequestCode::UpdateConsumerOffset, 0, &h, Bytes::new()) else {
                            continue;
                        };
                        if let Err(e) = remote_link::call(&link, &master, frame, NAMESRV_TIMEOUT).await {
                            tracing::debug!(%group, error = %e, "cannot push an offset to the master; next copy tries again");
                            return;
                        }
                    }
                }
            }
            .into_actor(self),
        );
    }
}

/// One metadata request to the master, decoded.
async fn ask_master<T: serde::de::DeserializeOwned>(
    link: &Addr<RemoteLink>,
    master: &str,
    code: RequestCode,
) -> Result<T, String> {
    let frame = Frame::request(code, 0, &NoHeader {}, Bytes::new()).map_err(|e| e.to_string())?;
    let f = remote_link::call(link, master, frame, NAMESRV_TIMEOUT)
        .await
        .map_err(|e| e.to_string())?;
    if f.response_code() != Some(ResponseCode::Success) {
        return Err(format!(
            "the master answered {}: {}",
            f.code,
            f.remark.unwrap_or_default()
        ));
    }
    f.decode_body::<T>().map_err(|e| e.to_string())
}
