//! HaAcceptor actor: a master's replication listener and the tally of its slaves.
//!
//! Owns the HA listening socket, the sessions it started, and each slave's acknowledged
//! offset. From those it computes the replicated offset (the `min_in_sync_replicas`-th
//! highest acknowledgement), hands it to the store and, when it moves, to the broker
//! ([`ReplicaProgress`]); it also counts the slaves within `ha_slave_fallbehind_max` of the
//! log's end. It never reads or writes the log itself (sessions do). Not supervised: it
//! has no fatal condition; a failed accept is retried.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::net::{TcpListener, TcpStream};

use super::session::{HaSession, SessionSettings};
use super::{HaState, LogGrew, ReplicaProgress, SlaveView, UseStore};
use crate::storage::MessageStore;

/// Most replication connections at once (a master has a few slaves; a peer opening more
/// must not grow the master's memory).
const MAX_SESSIONS: usize = 64;

/// A session's slave acknowledged `offset` (or, with `broker_id`, said hello from there).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SlaveAcked {
    /// The session.
    pub id: u64,
    /// Set by the hello.
    pub broker_id: Option<u64>,
    /// Every byte below it is on the slave.
    pub offset: u64,
}

/// A session stopped replicating, and why (a refusal; it closes soon after).
#[derive(Message)]
#[rtype(result = "()")]
pub struct SlaveStopped {
    /// The session.
    pub id: u64,
    /// Why.
    pub why: String,
}

/// A session ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionGone {
    /// The session.
    pub id: u64,
}

/// What the acceptor needs besides its socket.
#[derive(Debug, Clone)]
pub struct AcceptorSettings {
    /// Passed to every session.
    pub session: SessionSettings,
    /// Acknowledgements that make a record replicated.
    pub min_in_sync_replicas: usize,
    /// Lag past which a slave does not count as in sync.
    pub fallbehind_max: u64,
}

struct Slave {
    addr: Addr<HaSession>,
    peer: SocketAddr,
    broker_id: u64,
    /// `None` until the hello.
    acked: Option<u64>,
    stopped: Option<String>,
}

/// The master's replication listener.
pub struct HaAcceptor {
    store: Arc<MessageStore>,
    state: Arc<HaState>,
    progress: Recipient<ReplicaProgress>,
    settings: AcceptorSettings,
    slaves: HashMap<u64, Slave>,
    next_id: u64,
    replicated: u64,
}

impl HaAcceptor {
    /// Starts accepting slaves on `listener`.
    pub fn start(
        listener: TcpListener,
        store: Arc<MessageStore>,
        state: Arc<HaState>,
        progress: Recipient<ReplicaProgress>,
        settings: AcceptorSettings,
    ) -> Addr<HaAcceptor> {
        HaAcceptor::create(move |ctx| {
            let accepts = futures_util::stream::unfold(listener, |l| async move {
                let next = l.accept().await;
                if next.is_err() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Some((next, l))
            });
            ctx.add_stream(accepts);
            HaAcceptor {
                replicated: store.replicated_offset(),
                store,
                state,
                progress,
                settings,
                slaves: HashMap::new(),
                next_id: 0,
            }
        })
    }

    /// Recomputes the replicated offset and the in-sync count (on every acknowledgement).
    fn tally(&mut self) {
        let end = self.store.max_physical_offset();
        // One vote per slave (`broker_id`): a slave that reconnected while its old session
        // lingers must not count twice toward `min_in_sync_replicas`.
        let mut by_slave: HashMap<u64, u64> = HashMap::new();
        for s in self.slaves.values().filter(|s| s.stopped.is_none()) {
            if let Some(a) = s.acked {
                let best = by_slave.entry(s.broker_id).or_insert(a);
                *best = (*best).max(a);
            }
        }
        let mut acks: Vec<u64> = by_slave.into_values().collect();
        acks.sort_unstable_by(|a, b| b.cmp(a));
        let in_sync = acks
            .iter()
            .filter(|&&a| end.saturating_sub(a) <= self.settings.fallbehind_max)
            .count();
        self.state.in_sync.store(in_sync, Ordering::Release);
        self.state.connected.store(acks.len(), Ordering::Release);
        if let Some(&r) = acks.get(self.settings.min_in_sync_replicas.saturating_sub(1)) {
            if r > self.replicated {
                self.replicated = r;
                self.store.set_replicated(r);
                self.progress.do_send(ReplicaProgress(r));
            }
        }
    }

    /// Rebuilds the status view (each second and when a slave comes or goes).
    fn refresh_view(&mut self) {
        let end = self.store.max_physical_offset();
        let views = self
            .slaves
            .iter()
            .map(|(id, s)| {
                let view = SlaveView {
                    addr: s.peer.to_string(),
                    broker_id: s.broker_id,
                    acked_offset: s.acked.unwrap_or(0),
                    lag_bytes: s.acked.map_or(end, |a| end.saturating_sub(a)),
                    state: match (&s.stopped, s.acked) {
                        (Some(why), _) => format!("stopped: {why}"),
                        (None, None) => "handshake".to_owned(),
                        (None, Some(_)) => "streaming".to_owned(),
                    },
                };
                (*id, view)
            })
            .collect();
        *self.state.slaves.lock() = views;
    }
}

impl Actor for HaAcceptor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Lag moves with the log even when no slave speaks: keep the view current.
        ctx.run_interval(super::HEARTBEAT, |act, _| {
            act.tally();
            act.refresh_view();
        });
    }
}

impl StreamHandler<std::io::Result<(TcpStream, SocketAddr)>> for HaAcceptor {
    fn handle(&mut self, item: std::io::Result<(TcpStream, SocketAddr)>, ctx: &mut Self::Context) {
        let (stream, peer) = match item {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a slave connection; retrying");
                return;
            }
        };
        if self.slaves.len() >= MAX_SESSIONS {
            tracing::warn!(%peer, "too many replication connections; refusing this one");
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let addr = HaSession::start(
            id,
            stream,
            peer,
            Arc::clone(&self.store),
            ctx.address(),
            self.settings.session.clone(),
        );
        self.slaves.insert(
            id,
            Slave {
                addr,
                peer,
                broker_id: 0,
                acked: None,
                stopped: None,
            },
        );
        self.tally();
        self.refresh_view();
    }
}

impl Handler<SlaveAcked> for HaAcceptor {
    type Result = ();
    fn handle(&mut self, msg: SlaveAcked, _: &mut Self::Context) {
        if let Some(s) = self.slaves.get_mut(&msg.id) {
            let hello = msg.broker_id.is_some();
            if let Some(b) = msg.broker_id {
                s.broker_id = b;
            }
            s.acked = Some(s.acked.unwrap_or(0).max(msg.offset));
            self.tally();
            if hello {
                self.refresh_view();
            }
        }
    }
}

impl Handler<SlaveStopped> for HaAcceptor {
    type Result = ();
    fn handle(&mut self, msg: SlaveStopped, _: &mut Self::Context) {
        if let Some(s) = self.slaves.get_mut(&msg.id) {
            s.stopped = Some(msg.why);
            self.tally();
            self.refresh_view();
        }
    }
}

impl Handler<SessionGone> for HaAcceptor {
    type Result = ();
    fn handle(&mut self, msg: SessionGone, _: &mut Self::Context) {
        self.slaves.remove(&msg.id);
        self.tally();
        self.refresh_view();
    }
}

impl Handler<LogGrew> for HaAcceptor {
    type Result = ();
    fn handle(&mut self, msg: LogGrew, _: &mut Self::Context) {
        for s in self.slaves.values().filter(|s| s.acked.is_some()) {
            s.addr.do_send(msg);
        }
    }
}

impl Handler<UseStore> for HaAcceptor {
    type Result = ();
    fn handle(&mut self, msg: UseStore, _: &mut Self::Context) {
        for s in self.slaves.values() {
            s.addr.do_send(msg.clone());
        }
        self.store = msg.0;
        // The new handle knows no slave position: the reconnecting slaves' hellos set it.
        self.replicated = 0;
    }
}
