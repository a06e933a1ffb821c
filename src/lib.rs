//! actimq: a distributed message broker on [actix](https://actix.rs), modelled on Apache
//! RocketMQ, and the producer and consumer actors to use it from an actix application.
//!
//! Name servers keep routes, brokers store and deliver messages, a topic is split into
//! message queues spread over brokers, and the consumers of a group share the queues out
//! (clustering) or each get everything (broadcasting): RocketMQ's model, names and defaults.
//!
//! # A producer and a consumer
//!
//! One [`ClientInstance`] per process and name-server list carries the connections; any
//! number of [`Producer`]s and [`PushConsumer`]s share it. Everything runs inside an actix
//! system. This example starts its own name server and broker ([`server::LocalCluster`], on
//! free ports) so that it runs anywhere; against a real cluster, the name-server address is
//! e.g. `"127.0.0.1:9876"` (`mqnamesrv`'s default).
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! use actimq::{
//!     ClientConfig, ClientInstance, ConsumeFromWhere, ConsumeResult, Message as MqMessage,
//!     MessageListener, Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
//! };
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # actimq::actix::System::new().block_on(async {
//! # let store = tempfile::tempdir()?;
//! # let cluster = actimq::server::LocalCluster::start(store.path()).await?;
//! # let namesrv_addr = cluster.namesrv_addr();
//! let client = ClientInstance::start(ClientConfig::new(namesrv_addr))?;
//!
//! // Send: the topic is created on first use (or beforehand with `mqadmin updateTopic`).
//! let producer = Producer::start(client.clone(), ProducerConfig::new("orders-producer"));
//! let sent = producer
//!     .send(MqMessage::new("Orders", "order 42 created").with_tags("Created"))
//!     .await?;
//! println!("stored as {} in {:?}", sent.msg_id(), sent.message_queue);
//! producer
//!     .send_orderly(MqMessage::new("Orders", "order 42 paid").with_tags("Paid"), "order-42")
//!     .await?;
//!
//! // Consume: a closure (or an actor: `MessageListener::actor`) gets each batch.
//! let received = Arc::new(AtomicUsize::new(0));
//! let counter = Arc::clone(&received);
//! let config = PushConsumerConfig::new("orders-consumer")
//!     .subscribe("Orders", "Created || Paid")
//!     .consume_from(ConsumeFromWhere::FirstOffset); // this group is new: read what is stored
//! let listener = MessageListener::from_fn(move |msgs| {
//!     for m in msgs {
//!         println!("received {}", String::from_utf8_lossy(m.body()));
//!     }
//!     counter.fetch_add(msgs.len(), Ordering::Relaxed);
//!     ConsumeResult::Success
//! });
//! let consumer = PushConsumer::start(client.clone(), config, listener).await?;
//! for _ in 0..1500 {
//!     if received.load(Ordering::Relaxed) == 2 {
//!         break;
//!     }
//!     actimq::actix::clock::sleep(Duration::from_millis(20)).await;
//! }
//!
//! // Stop in this order: consumers (their offsets are committed), producers, the instance.
//! consumer.shutdown().await?;
//! producer.shutdown().await;
//! ClientInstance::shutdown(&client).await;
//! # cluster.shutdown().await;
//! # Ok(())
//! # })
//! # }
//! ```
//!
//! # What is where
//! - Sending: [`Producer`] (synchronous, [`Producer::send_async`] futures and callbacks,
//!   one-way, ordered by key, batches), configured by [`ProducerConfig`], answered with a
//!   [`SendResult`].
//! - Consuming: [`PushConsumer`] (the client pulls and calls your [`MessageListener`]: a
//!   closure or an actor handling [`ConsumeMessages`]), [`PullConsumer`] (you pull queue by
//!   queue), [`LitePullConsumer`] (you poll, it rebalances). Messages arrive as
//!   [`MessageExt`].
//! - Errors: every call returns [`ClientError`], whose variants name the topic, broker or
//!   limit involved and say what to do.
//! - Running servers in-process: [`server`] ([`server::LocalCluster`] for tests and demos,
//!   [`server::start_namesrv`] and [`server::start_broker`] for full control).
//! - Operations from code (topics, consumer progress, broker status): [`admin`], what the
//!   `mqadmin` command is built on.
//! - [`actix`] is re-exported so your actors use the client's version:
//!   `use actimq::actix::prelude::*;`, and `actimq::actix::System::new().block_on(..)` runs
//!   a system without any other crate (`actimq::actix::clock::sleep` waits in it).
//!   actix's derive macros (`#[derive(Message)]`, `#[rtype(..)]`) write `::actix::…`
//!   paths, so a crate using them also lists `actix = "0.13"` in its own `Cargo.toml`
//!   (cargo then shares one copy with this crate); without them, implement
//!   `actimq::actix::Message` by hand.
//! - Names: actix's prelude exports a `Message` trait and derive, and so does this crate's
//!   root (the message you send). Import ours as `use actimq::Message as MqMessage;`; with
//!   both glob imports (`use actimq::*; use actimq::actix::prelude::*;`) the bare name is
//!   ambiguous, so also say which one `Message` is: `use actimq::actix::Message;`.
//! - Logs: the client reports through `tracing` (connections lost, skipped backlogs,
//!   consumers left running at shutdown); install a subscriber (e.g. `tracing-subscriber`)
//!   to see them.
//!
//! Everything else (storage, protocol, the actors' own messages) is internal and not
//! documented here; `docs/ARCHITECTURE.md` in the repository maps it.

#![deny(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod admin;
pub mod server;

#[doc(hidden)]
pub mod internals;

// The crate's own code keeps its short paths (`crate::storage::…`).
pub(crate) use internals::{actors, client, common, config, protocol, storage};

/// The actix this crate is built on, so an application's actors and the client's always
/// use the same version: `use actimq::actix::prelude::*;`.
pub use actix;
/// Busy-polling for latency at light load: called inside the actix system, the current
/// thread keeps polling its sockets for `budget` after each frame instead of sleeping (a
/// wake-up saved per request, a busy core while traffic flows). Off unless called; the
/// broker's equivalent is its `busy_poll_us` setting.
pub use actors::busy_poll::start as start_busy_poll;
pub use actors::client_instance::{ClientConfig, ClientInstance};
pub use actors::producer::{Producer, ProducerConfig, SendHandle};
pub use actors::pull_consumer::{
    LitePullConsumer, LitePullConsumerConfig, PullConsumer, PullResult, PullStatus,
};
pub use actors::push_consumer::{
    ConsumeMessages, MessageListener, PushConsumer, PushConsumerConfig,
};
pub use actors::rebalancer::allocate::{
    AllocateAveragely, AllocateAveragelyByCircle, AllocateStrategy,
};
pub use actors::remote_link::LinkConfig;
pub use actors::transaction_producer::{
    LocalTransactionState, TransactionListener, TransactionProducer, TransactionSendResult,
};
pub use client::{
    ClientError, ConsumeFromWhere, ConsumeResult, Message, MessageExt, MessageModel, SendResult,
    SendStatus,
};
pub use protocol::MessageQueue;
