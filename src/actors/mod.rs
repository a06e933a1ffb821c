//! Actors, by side: [`server`] holds the name server and the broker with its per-queue and
//! per-group actors and the server half of sockets; [`client`] holds what an application
//! embeds (client instance, producers, consumers, rebalancer). The two sides never import
//! each other; at this top level are the only things both use:
//!
//! - [`remote_link`] — `RemoteLink`, the client half of a socket (the broker uses it to
//!   register with name servers, clients and tools to reach brokers);
//! - [`busy_poll`] — not an actor: opt-in busy-polling of an actor thread after traffic.
//!
//! One actor per file; each file's `//!` says what it owns, which messages it accepts, its
//! timers and its restart behaviour. The map is `docs/ARCHITECTURE.md`.
//!
//! The old flat paths (`actors::broker`, `actors::producer`, …) are re-exported below so
//! code written against them keeps compiling.

pub mod busy_poll;
pub mod client;
pub mod remote_link;
pub mod server;

pub use client::{
    client_instance, consumer_support, producer, pull_consumer, push_consumer, queue_puller,
    rebalancer, transaction_producer,
};
pub use server::{
    broker, connection, consumer_group, frame_budget, listener, log_throttle, message_queue,
    namesrv, transaction_check,
};
