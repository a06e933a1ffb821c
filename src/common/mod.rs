//! What the broker side and the client side both use and neither owns: the clock, atomic
//! file replacement, name rules and the message-properties format.
//!
//! Plain functions over std (plus tokio's blocking pool and tracing). It must never import
//! another module of this crate, so
//! that storage, protocol and both sides of `actors` can depend on it without a cycle.

pub mod clock;
pub mod fs;
pub mod names;
pub mod properties;
