//! The frame: the unit every actimq connection sends and receives.
//!
//! # Wire layout
//! ```text
//! +-------------------+--------------------------------------------------+
//! | length N: u32 BE  | N bytes: one MessagePack map (struct-as-map)     |
//! +-------------------+--------------------------------------------------+
//!   map keys: version u16, kind u8 (0 request, 1 response, 2 one-way), opaque u32,
//!             code i32, remark str (optional), header bin (optional), body bin (optional)
//! ```
//! Fields are named on the wire so later versions can add keys; unknown keys are ignored
//! on input, and absent optional keys mean "none". `header` is itself the MessagePack map of
//! the typed header for `code` (see [`encode_header`]); `body` is an opaque payload (message
//! bytes, or the MessagePack of a typed body, see [`encode_body`]).
//!
//! Decoding is zero-copy: [`Frame::header`] and [`Frame::body`] are slices of the buffer the
//! frame arrived in. This module never touches sockets; [`crate::protocol::FrameCodec`] does
//! the length prefix.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::code::{RequestCode, ResponseCode};
use super::error::{short_type_name, Error, Result};

/// The protocol version this build writes into every frame. Bump it only for changes an
/// older peer would misread; adding an optional map key does not need a bump.
pub const PROTOCOL_VERSION: u16 = 1;

/// MessagePack of an empty map: what a header type with no fields (or only skipped ones)
/// encodes to. Stored as an empty `header`, and an empty `header` decodes as this.
const EMPTY_MAP: &[u8] = &[0x80];

/// Nesting limit for the frame envelope: it is flat, so anything deeper is garbage, and a
/// low limit keeps hostile input from recursing through the stack.
const FRAME_MAX_DEPTH: usize = 8;

/// Nesting limit for typed headers and bodies (a `ClusterInfo` is about 5 levels deep).
const VALUE_MAX_DEPTH: usize = 32;

/// Whether a frame asks, answers, or asks without wanting an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// A request; the receiver must answer with a response carrying the same opaque.
    Request,
    /// The answer to the request with the same opaque; `code` is a [`ResponseCode`].
    Response,
    /// A request that must never be answered (offset commits, notifications).
    Oneway,
}

impl FrameKind {
    /// The byte this kind is written as (a number, not a name, to keep frames small).
    fn to_wire(self) -> u8 {
        match self {
            FrameKind::Request => 0,
            FrameKind::Response => 1,
            FrameKind::Oneway => 2,
        }
    }

    /// The kind for a wire byte; `None` for a byte no version has defined.
    fn from_wire(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(FrameKind::Request),
            1 => Some(FrameKind::Response),
            2 => Some(FrameKind::Oneway),
            _ => None,
        }
    }
}

/// One decoded frame: envelope fields plus the still-encoded header and the body.
///
/// Build frames with [`Frame::request`], [`Frame::oneway`], [`Frame::response`] and
/// [`Frame::error`] rather than by hand, so kind, code and version are always consistent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Protocol version of the sender, so a receiver can refuse what it cannot read.
    pub version: u16,
    /// Request, response or one-way.
    pub kind: FrameKind,
    /// Pairs a response with its request: the responder copies the request's value.
    pub opaque: u32,
    /// A [`RequestCode`] for requests and one-way frames, a [`ResponseCode`] for responses.
    /// Kept raw so an unknown code still decodes and can be answered.
    pub code: i32,
    /// Human-readable text, mostly the reason of an error response.
    pub remark: Option<String>,
    /// MessagePack of the typed header for `code`; empty means "no header fields".
    pub header: Bytes,
    /// Binary payload (message bytes, stored records, or a MessagePack body).
    pub body: Bytes,
}

/// The serde shape of a frame on the wire, borrowing from either a [`Frame`] (encoding) or
/// the receive buffer (decoding, so `header`/`body` are not copied).
#[derive(Serialize, Deserialize)]
pub(crate) struct WireFrame<'a> {
    pub(crate) version: u16,
    pub(crate) kind: u8,
    pub(crate) opaque: u32,
    pub(crate) code: i32,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    pub(crate) remark: Option<&'a str>,
    #[serde(
        default,
        borrow,
        with = "serde_bytes",
        skip_serializing_if = "is_empty"
    )]
    pub(crate) header: &'a [u8],
    #[serde(
        default,
        borrow,
        with = "serde_bytes",
        skip_serializing_if = "is_empty"
    )]
    pub(crate) body: &'a [u8],
}

/// `skip_serializing_if` helper: absent on the wire means empty.
fn is_empty(bytes: &&[u8]) -> bool {
    bytes.is_empty()
}

/// A header type with no fields, for requests and responses whose code needs none
/// (`GET_BROKER_CLUSTER_INFO`, a plain `SUCCESS`). Encodes to an empty header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoHeader {}

impl Frame {
    /// A frame with the current version and no remark, header or body.
    pub fn new(kind: FrameKind, opaque: u32, code: i32) -> Self {
        Frame {
            version: PROTOCOL_VERSION,
            kind,
            opaque,
            code,
            remark: None,
            header: Bytes::new(),
            body: Bytes::new(),
        }
    }

    /// A request expecting a response, with `header` encoded for `code`.
    pub fn request<H: Serialize + ?Sized>(
        code: RequestCode,
        opaque: u32,
        header: &H,
        body: Bytes,
    ) -> Result<Self> {
        Self::with_parts(FrameKind::Request, opaque, code.as_i32(), header, body)
    }

    /// A request that must not be answered (offset commits, notifications).
    pub fn oneway<H: Serialize + ?Sized>(
        code: RequestCode,
        opaque: u32,
        header: &H,
        body: Bytes,
    ) -> Result<Self> {
        Self::with_parts(FrameKind::Oneway, opaque, code.as_i32(), header, body)
    }

    /// The response to the request whose opaque was `request_opaque`.
    pub fn response<H: Serialize + ?Sized>(
        request_opaque: u32,
        code: ResponseCode,
        header: &H,
        body: Bytes,
    ) -> Result<Self> {
        Self::with_parts(
            FrameKind::Response,
            request_opaque,
            code.as_i32(),
            header,
            body,
        )
    }

    /// A response with no header or body: `code` and a remark saying why. Infallible, so an
    /// error path can always produce an answer.
    pub fn error(request_opaque: u32, code: ResponseCode, remark: impl Into<String>) -> Self {
        Frame {
            remark: Some(remark.into()),
            ..Frame::new(FrameKind::Response, request_opaque, code.as_i32())
        }
    }

    /// The error response to send when handling `self` failed with `err`, or `None` when
    /// nothing may be sent: `self` is one-way or itself a response.
    pub fn error_reply(&self, err: &Error) -> Option<Frame> {
        if self.kind != FrameKind::Request {
            return None;
        }
        Some(Frame::error(
            self.opaque,
            err.response_code(),
            err.to_string(),
        ))
    }

    /// Replaces the remark (builder style).
    pub fn with_remark(mut self, remark: impl Into<String>) -> Self {
        self.remark = Some(remark.into());
        self
    }

    /// True for a request that expects a response.
    pub fn is_request(&self) -> bool {
        self.kind == FrameKind::Request
    }

    /// True for a one-way request (no response may be sent).
    pub fn is_oneway(&self) -> bool {
        self.kind == FrameKind::Oneway
    }

    /// True for a response.
    pub fn is_response(&self) -> bool {
        self.kind == FrameKind::Response
    }

    /// The request code, when this is a request or one-way frame with a known code.
    pub fn request_code(&self) -> Option<RequestCode> {
        match self.kind {
            FrameKind::Request | FrameKind::Oneway => RequestCode::from_i32(self.code),
            FrameKind::Response => None,
        }
    }

    /// The response code, when this is a response with a known code.
    pub fn response_code(&self) -> Option<ResponseCode> {
        match self.kind {
            FrameKind::Response => ResponseCode::from_i32(self.code),
            FrameKind::Request | FrameKind::Oneway => None,
        }
    }

    /// Decodes the typed header. An empty header decodes as an empty map, so types whose
    /// fields all have defaults (and [`NoHeader`]) accept it.
    ///
    /// # Errors
    /// [`Error::BadHeader`] naming the code and `T` when the bytes do not fit `T`.
    pub fn decode_header<T: DeserializeOwned>(&self) -> Result<T> {
        decode_value(&self.header).map_err(|e| Error::BadHeader {
            code: self.code,
            type_name: short_type_name::<T>(),
            reason: e.to_string(),
        })
    }

    /// Decodes the body as a MessagePack value (for codes whose body is typed: heartbeat,
    /// route data, lock sets). An empty body decodes as an empty map.
    ///
    /// # Errors
    /// [`Error::BadBody`] naming the code and `T` when the bytes do not fit `T`.
    pub fn decode_body<T: DeserializeOwned>(&self) -> Result<T> {
        decode_value(&self.body).map_err(|e| Error::BadBody {
            code: self.code,
            type_name: short_type_name::<T>(),
            reason: e.to_string(),
        })
    }

    /// Shared constructor for the typed helpers.
    fn with_parts<H: Serialize + ?Sized>(
        kind: FrameKind,
        opaque: u32,
        code: i32,
        header: &H,
        body: Bytes,
    ) -> Result<Self> {
        Ok(Frame {
            header: encode_header(header)?,
            body,
            ..Frame::new(kind, opaque, code)
        })
    }

    /// The borrowed wire shape of this frame, for the encoder.
    pub(crate) fn wire(&self) -> WireFrame<'_> {
        WireFrame {
            version: self.version,
            kind: self.kind.to_wire(),
            opaque: self.opaque,
            code: self.code,
            remark: self.remark.as_deref(),
            header: &self.header,
            body: &self.body,
        }
    }

    /// Decodes one frame from its MessagePack bytes (the length prefix already removed).
    /// `header` and `body` of the result are slices of `payload`, not copies.
    pub(crate) fn decode_payload(payload: &Bytes) -> Result<Frame> {
        // The direct decoder reads the envelope as this crate writes it; anything else goes
        // through serde, which gives the errors.
        let wire: WireFrame<'_> = match super::direct_codec::wire_frame(payload) {
            Some(wire) => wire,
            None => decode_with_depth(payload, FRAME_MAX_DEPTH).map_err(Error::malformed)?,
        };
        let kind = FrameKind::from_wire(wire.kind)
            .ok_or_else(|| Error::malformed(format!("unknown frame kind {}", wire.kind)))?;
        Ok(Frame {
            version: wire.version,
            kind,
            opaque: wire.opaque,
            code: wire.code,
            remark: wire.remark.map(str::to_owned),
            header: sub_bytes(payload, wire.header)?,
            body: sub_bytes(payload, wire.body)?,
        })
    }
}

/// Encodes a typed header as a MessagePack map (field names as keys, so fields can be
/// added later). A header with no fields encodes to empty bytes.
///
/// # Errors
/// [`Error::Encode`] if `T`'s `Serialize` fails (a programming error).
pub fn encode_header<H: Serialize + ?Sized>(header: &H) -> Result<Bytes> {
    let bytes = encode_value(header)?;
    if bytes == EMPTY_MAP {
        return Ok(Bytes::new());
    }
    Ok(Bytes::from(bytes))
}

/// Encodes a typed body (heartbeat data, route data, ...) as a MessagePack map.
///
/// # Errors
/// [`Error::Encode`] if `T`'s `Serialize` fails (a programming error).
pub fn encode_body<B: Serialize + ?Sized>(body: &B) -> Result<Bytes> {
    encode_value(body).map(Bytes::from)
}

/// MessagePack with struct fields as map keys.
fn encode_value<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    // Sized for a send's header at once: growing from empty cost several reallocations
    // per message.
    let mut out = Vec::with_capacity(256);
    rmp_serde::encode::write_named(&mut out, value).map_err(|e| Error::Encode {
        type_name: short_type_name::<T>(),
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// Decodes a header or body; empty input means an empty map.
fn decode_value<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    let bytes = if bytes.is_empty() { EMPTY_MAP } else { bytes };
    decode_with_depth(bytes, VALUE_MAX_DEPTH)
}

/// `rmp_serde::from_slice` with a nesting limit, borrowing from `bytes` where `T` allows.
fn decode_with_depth<'de, T: Deserialize<'de>>(
    bytes: &'de [u8],
    max_depth: usize,
) -> Result<T, rmp_serde::decode::Error> {
    let mut de = rmp_serde::Deserializer::from_read_ref(bytes);
    de.set_max_depth(max_depth);
    T::deserialize(&mut de)
}

/// The part of `buf` that `part` borrows, as a `Bytes` sharing `buf`'s memory.
/// Checked rather than `Bytes::slice_ref` (which panics) so no input can panic the decoder.
fn sub_bytes(buf: &Bytes, part: &[u8]) -> Result<Bytes> {
    if part.is_empty() {
        return Ok(Bytes::new());
    }
    let start = (part.as_ptr() as usize)
        .checked_sub(buf.as_ptr() as usize)
        .filter(|start| start.saturating_add(part.len()) <= buf.len())
        .ok_or_else(|| Error::malformed("decoded field does not lie inside the frame buffer"))?;
    Ok(buf.slice(start..start + part.len()))
}
