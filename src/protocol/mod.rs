//! The wire protocol: frames, the length-prefixed codec, request/response codes and the
//! typed request set.
//!
//! This module owns the bytes between two actimq processes: how a [`Frame`] is laid out
//! (a 4-byte big-endian length, then one MessagePack map holding version, kind, opaque,
//! code, remark, the typed header and a binary body), how it is read from and written to a
//! socket ([`FrameCodec`]), RocketMQ's numbers for [`RequestCode`] and [`ResponseCode`], and
//! the typed headers and bodies of each code ([`Request`], [`decode_request`]).
//!
//! It must never depend on actors, sockets, storage or a runtime, never panic on input from
//! a peer (oversized, truncated or garbage frames are typed [`Error`]s), and never allocate
//! more than the configured maximum frame size on a peer's say-so. Protocol errors become
//! wire codes in one place only: [`Error::response_code`].
//!
//! # Modules
//! - [`frame`]: [`Frame`], [`FrameKind`], header/body encoding helpers
//! - [`codec`]: [`FrameCodec`], the tokio-util `Decoder`/`Encoder`
//! - [`code`]: [`RequestCode`], [`ResponseCode`]
//! - [`command`]: [`Request`] and [`decode_request`]
//! - [`message`]: send, pull, offset, lookup, retry and transaction headers
//! - [`group`]: heartbeat, membership and queue-lock headers and bodies, [`MessageQueue`]
//! - [`topic`]: topic configuration, permissions, create/delete, statistics
//! - [`route`]: broker registration and route data served by the name server

#![deny(missing_docs)]

pub mod batch;
pub mod code;
pub mod codec;
pub mod command;
mod direct_codec;
mod error;
pub mod frame;
pub mod group;
pub mod message;
pub mod route;
pub mod topic;

pub use code::{RequestCode, ResponseCode};
pub use codec::{FrameCodec, DEFAULT_MAX_FRAME_SIZE, READ_BUFFER_CAPACITY};
pub use command::{decode_request, Request};
pub use error::{Error, Result};
pub use frame::{encode_body, encode_header, Frame, FrameKind, NoHeader, PROTOCOL_VERSION};
pub use group::MessageQueue;
