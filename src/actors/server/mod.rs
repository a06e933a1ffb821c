//! The broker side: the name server, the broker and the actors it starts per queue and per
//! consumer group, and the server half of every socket (listener, connection).
//!
//! It must never import `actors::client`: what both sides need lives in `crate::common`,
//! `crate::protocol`, `crate::storage` or the shared actors at `crate::actors`' top level.

pub mod broker;
pub mod connection;
pub mod consumer_group;
pub mod frame_budget;
pub mod ha;
pub mod listener;
pub mod log_throttle;
pub mod message_queue;
pub mod namesrv;
pub mod schedule_delivery;
pub mod transaction_check;
pub mod write_meter;
