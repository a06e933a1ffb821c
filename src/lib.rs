//! actimq: a distributed message broker on actix, modelled on Apache RocketMQ.
//!
//! # Layout
//! - [`storage`]: the durable storage engine (commit log, consume queues, index, recovery).
//!   Plain Rust, no actors and no sockets.
//!
//! The protocol codec (`protocol`), the actors (`actors`: NameServer, Broker, MessageQueue,
//! ConsumerGroup, connections and the client side) and the binaries (`mqnamesrv`,
//! `mqbroker`, `mqadmin`, `mqbench`) build on it; see `DESIGN.md` in the shared docs and
//! the README for what exists today.

#![deny(unsafe_code)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod actors;
pub mod admin;
pub mod cli;
pub mod client;
pub mod config;
pub mod protocol;
pub mod storage;

pub use actors::client_instance::{ClientConfig, ClientInstance};
pub use actors::producer::{Producer, ProducerConfig};
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
