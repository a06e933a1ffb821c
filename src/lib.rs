//! actimq: a distributed message broker on actix, modelled on Apache RocketMQ.
//!
//! # Where to start
//! - Applications: the client at the crate root ([`ClientInstance`], [`Producer`],
//!   [`PushConsumer`], [`PullConsumer`], [`Message`]); to run a name server and a broker in
//!   the same process, [`server`].
//! - Operators' tools: [`admin`], the request/response client `mqadmin` is built on.
//!
//! # Layout, bottom up
//! - [`common`]: clock, durable-file helpers, name rules, the properties format.
//! - [`storage`]: the durable store (commit log, consume queues, index, recovery). Plain
//!   Rust, no actors and no sockets. [`protocol`]: the wire format and request types.
//! - [`config`] (typed configs) and [`client`] (the client's plain vocabulary).
//! - [`actors`]: `actors::server` (name server, broker, queue and group actors,
//!   connections) and `actors::client` (client instance, producer, consumers, rebalancer),
//!   which never import each other.
//! - [`admin`], [`server`], and the binaries `mqnamesrv`, `mqbroker`, `mqadmin`, `mqbench`.
//!
//! The map (layers and their import rules, actor tree, threads, message paths, file
//! formats) is `docs/ARCHITECTURE.md` in the repository.

#![deny(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod actors;
pub mod admin;
pub mod cli;
pub mod client;
pub mod common;
pub mod config;
pub mod protocol;
pub mod server;
pub mod storage;

/// The actix this crate is built on, so an application's actors and the client's always
/// use the same version: `use actimq::actix::prelude::*;`.
pub use actix;
pub use actors::client_instance::{ClientConfig, ClientInstance};
pub use actors::producer::{Producer, ProducerConfig, SendHandle};
pub use actors::pull_consumer::{
    LitePullConsumer, LitePullConsumerConfig, PullConsumer, PullResult, PullStatus,
};
pub use actors::push_consumer::{
    ConsumeMessages, MessageListener, PushConsumer, PushConsumerConfig,
};
pub use client::{
    ClientError, ConsumeFromWhere, ConsumeResult, Message, MessageExt, MessageModel, SendResult,
    SendStatus,
};
pub use protocol::MessageQueue;
