//! Which live connections serve each producer group, as heartbeats announce them: the
//! transaction check-back asks one of them about a half message whose producer went quiet.
//!
//! Owns only that map. It must never keep a connection past its `ConnectionClosed` or the
//! client's unregistration of the group (a check sent there would be lost), and never sends
//! anything itself: the broker picks a connection here and writes to it.

use std::collections::HashMap;
use std::sync::Arc;

use actix::Recipient;

use crate::actors::server::connection::{ConnId, Outbound};

/// Most producer groups remembered: a peer inventing group names must not grow the broker
/// without bound (the consumer groups have the same cap).
const MAX_PRODUCER_GROUPS: usize = 10_000;
/// Most connections remembered per group; a check needs only one live one.
const MAX_CONNECTIONS_PER_GROUP: usize = 1_000;

/// One client's connection serving a group.
struct ProducerConn {
    conn: ConnId,
    client_id: String,
    reply: Arc<Recipient<Outbound>>,
}

/// Producer group → the connections of its live clients.
#[derive(Default)]
pub(super) struct ProducerRegistry {
    groups: HashMap<String, Vec<ProducerConn>>,
    /// Spreads checks over a group's producers (RocketMQ picks one at random).
    next: usize,
}

impl ProducerRegistry {
    /// A heartbeat of `client_id` on `conn` names `group`. A client that reconnected
    /// replaces its old connection.
    pub(super) fn heartbeat(
        &mut self,
        group: &str,
        client_id: &str,
        conn: ConnId,
        reply: &Arc<Recipient<Outbound>>,
    ) {
        if !self.groups.contains_key(group) && self.groups.len() >= MAX_PRODUCER_GROUPS {
            return;
        }
        let conns = self.groups.entry(group.to_owned()).or_default();
        if let Some(c) = conns.iter_mut().find(|c| c.client_id == client_id) {
            c.conn = conn;
            c.reply = Arc::clone(reply);
        } else if conns.len() < MAX_CONNECTIONS_PER_GROUP {
            conns.push(ProducerConn {
                conn,
                client_id: client_id.to_owned(),
                reply: Arc::clone(reply),
            });
        }
    }

    /// `client_id` left `group` (UNREGISTER_CLIENT with a producer group).
    pub(super) fn unregister(&mut self, group: &str, client_id: &str) {
        if let Some(conns) = self.groups.get_mut(group) {
            conns.retain(|c| c.client_id != client_id);
            if conns.is_empty() {
                self.groups.remove(group);
            }
        }
    }

    /// A connection closed: none of its groups can be asked through it any more.
    pub(super) fn connection_closed(&mut self, conn: ConnId) {
        self.groups.retain(|_, conns| {
            conns.retain(|c| c.conn != conn);
            !conns.is_empty()
        });
    }

    /// One live connection of `group`, taking turns, or `None` when it has none.
    pub(super) fn pick(&mut self, group: &str) -> Option<Arc<Recipient<Outbound>>> {
        let conns = self.groups.get(group).filter(|c| !c.is_empty())?;
        self.next = self.next.wrapping_add(1);
        conns
            .get(self.next % conns.len())
            .map(|c| Arc::clone(&c.reply))
    }
}
