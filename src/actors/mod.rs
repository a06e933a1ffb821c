//! Actors: the NameServer, the Broker and its per-queue and per-group actors, connections
//! and the client side. One actor per file; each file's `//!` says what it owns, which
//! messages it accepts, its timers and its restart behaviour (see `DESIGN.md`).
//!
//! - [`namesrv`] — `NameServer` (+ its pure `route_table`)
//! - [`broker`] — `Broker` (+ its `topic_table`); [`message_queue`] — `MessageQueue`;
//!   [`consumer_group`] — `ConsumerGroup`
//! - [`listener`] — `Listener`; [`connection`] — `Connection` (server side of a socket)
//! - [`remote_link`] — `RemoteLink` (client side of a socket, DESIGN.md's BrokerLink)
//! - [`busy_poll`] — not an actor: opt-in busy-polling of an actor thread after traffic
//! - [`frame_budget`] — not an actor: one server's budget for incomplete frames, shared by
//!   its connections; [`log_throttle`] — one log line a second for floods

pub mod broker;
pub mod busy_poll;
pub mod client_instance;
pub mod connection;
pub mod consumer_group;
pub mod consumer_support;
pub mod frame_budget;
pub mod listener;
pub mod log_throttle;
pub mod message_queue;
pub mod namesrv;
pub mod producer;
pub mod pull_consumer;
pub mod push_consumer;
pub mod queue_puller;
pub mod rebalancer;
pub mod remote_link;
