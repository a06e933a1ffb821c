//! The client side: a process's shared `ClientInstance` (routes, heartbeats, links),
//! producers, push and pull consumers, the per-queue puller and the group rebalancer.
//!
//! It talks to brokers and name servers only through [`RemoteLink`](crate::actors::remote_link)
//! and the wire types of `protocol`; it must never import `actors::server`.

pub mod client_instance;
pub mod consumer_support;
pub mod producer;
pub mod pull_consumer;
pub mod push_consumer;
pub mod queue_puller;
pub mod rebalancer;
pub mod transaction_producer;

use crate::actors::remote_link::LinkError;
use crate::client::ClientError;

/// The client's view of a transport failure: which broker, and why.
pub(crate) fn from_link(e: LinkError) -> ClientError {
    match e {
        LinkError::Unavailable { addr, reason } => ClientError::BrokerUnavailable {
            broker: addr,
            reason,
        },
        LinkError::Lost { addr } => ClientError::BrokerUnavailable {
            broker: addr,
            reason: "connection lost before the answer".into(),
        },
        LinkError::TooLarge { size, max, .. } => ClientError::MessageTooLarge { size, max },
        LinkError::Timeout { addr, timeout_ms } => ClientError::BrokerUnavailable {
            broker: addr,
            reason: format!("no answer within {timeout_ms} ms"),
        },
    }
}
