//! The protocol layer's error type: everything that can go wrong turning bytes into frames
//! and frames into typed requests.
//!
//! Each variant carries what a person needs to act on it (the size and the limit, the code,
//! the Rust type that failed to decode). The one place these errors become wire codes is
//! [`Error::response_code`]; this module never talks to sockets or actors.

use std::io;

use super::code::ResponseCode;

/// Protocol-layer result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in framing, encoding or decoding.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A frame announced (or would need) more bytes than the configured maximum. The peer is
    /// misbehaving or misconfigured; the connection cannot be resynchronised and must close.
    #[error(
        "frame of {size} bytes exceeds the maximum frame size of {max} bytes \
         (raise max_frame_size on both ends, or send smaller batches)"
    )]
    FrameTooLarge {
        /// Announced or encoded size of the frame, without the 4-byte length prefix.
        size: usize,
        /// The limit in force.
        max: usize,
    },
    /// A length-delimited frame whose contents are not a valid actimq frame (garbage, a
    /// different protocol on the port, or a truncated stream).
    #[error("malformed frame: {reason}")]
    Malformed {
        /// What the decoder tripped over.
        reason: String,
    },
    /// A well-formed request frame carried a request code this build does not know. The
    /// frame itself decoded, so the server can still answer with the request's opaque.
    #[error("unknown request code {0} (not supported by this actimq version)")]
    UnknownCode(i32),
    /// The peer speaks a protocol version this build does not support.
    #[error("protocol version {version} not supported (this build speaks {supported})")]
    VersionNotSupported {
        /// The version the frame carried.
        version: u16,
        /// The newest version this build speaks.
        supported: u16,
    },
    /// [`crate::protocol::decode_request`] was given a response frame.
    #[error("frame with opaque {opaque} and code {code} is a response, not a request")]
    NotARequest {
        /// The frame's opaque, to find the request it answers.
        opaque: u32,
        /// The frame's (response) code.
        code: i32,
    },
    /// The typed header of a frame did not decode as the type its code calls for.
    #[error("header of code {code} does not decode as {type_name}: {reason}")]
    BadHeader {
        /// The frame's code (request or response).
        code: i32,
        /// The Rust type that was expected.
        type_name: &'static str,
        /// What serde said.
        reason: String,
    },
    /// The body of a frame did not decode as the type its code calls for.
    #[error("body of code {code} does not decode as {type_name}: {reason}")]
    BadBody {
        /// The frame's code (request or response).
        code: i32,
        /// The Rust type that was expected.
        type_name: &'static str,
        /// What serde said.
        reason: String,
    },
    /// A value could not be serialized (a bug in the type's `Serialize`, not a peer problem).
    #[error("cannot encode {type_name}: {reason}")]
    Encode {
        /// The Rust type being encoded.
        type_name: &'static str,
        /// What serde said.
        reason: String,
    },
    /// The server's budget for bytes of incomplete frames (shared by all its connections) is
    /// spent and this connection holds one of the largest: it is closed so that the others
    /// keep working. Raised by the server's reader, never by [`crate::protocol::FrameCodec`].
    #[error(
        "dropped an incomplete frame of {held} bytes: the server's buffers for incomplete \
         frames are full (max_incomplete_frame_bytes = {limit})"
    )]
    OverBudget {
        /// Bytes of the incomplete frame this connection had buffered.
        held: usize,
        /// The server-wide limit.
        limit: usize,
    },
    /// Reading or writing the socket failed (tokio-util's codec traits need this variant).
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
}

impl Error {
    /// The response code to answer a request with when handling it failed with `self`.
    ///
    /// This is the single place where protocol errors become wire codes, so the broker and
    /// the name server answer the same failure the same way.
    pub fn response_code(&self) -> ResponseCode {
        match self {
            Error::UnknownCode(_) => ResponseCode::RequestCodeNotSupported,
            Error::VersionNotSupported { .. } => ResponseCode::VersionNotSupported,
            Error::BadHeader { .. } | Error::BadBody { .. } => ResponseCode::InvalidParameter,
            Error::FrameTooLarge { .. }
            | Error::OverBudget { .. }
            | Error::Malformed { .. }
            | Error::NotARequest { .. }
            | Error::Encode { .. }
            | Error::Io(_) => ResponseCode::SystemError,
        }
    }

    /// Whether the connection that produced this error must be closed: the byte stream is
    /// out of sync (oversized or unreadable frame) or the socket itself failed. The other
    /// errors concern one frame and can be answered on a healthy connection.
    pub fn is_fatal(&self) -> bool {
        matches!(
            self,
            Error::FrameTooLarge { .. }
                | Error::OverBudget { .. }
                | Error::Malformed { .. }
                | Error::Io(_)
        )
    }

    /// Builds a [`Error::Malformed`] from anything printable.
    pub(crate) fn malformed(reason: impl std::fmt::Display) -> Self {
        Error::Malformed {
            reason: reason.to_string(),
        }
    }
}

/// The last path segment of a type's name, for error messages that stay readable
/// (`SendMessageRequestHeader` rather than the full module path).
pub(crate) fn short_type_name<T: ?Sized>() -> &'static str {
    let full = std::any::type_name::<T>();
    // Generic types keep their full name: cutting inside `<...>` would mislead.
    if full.contains('<') {
        return full;
    }
    full.rsplit("::").next().unwrap_or(full)
}
