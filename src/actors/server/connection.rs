//! Connection actor: one per accepted socket on a NameServer or Broker.
//!
//! Owns the socket: reads frames, decodes each request once, hands the requests of each read
//! as one [`InboundBatch`] to the actor that owns the server's state (through a
//! `Recipient`, so it never names that actor's type) and writes the responses that come
//! back as [`Outbound`]. A request it cannot decode gets
//! an error response naming the problem; a frame it cannot even delimit (oversized, garbage)
//! closes this connection with a logged reason and harms no other. When it stops it tells
//! the owner ([`ConnectionClosed`]) so state tied to the peer is dropped at once.
//!
//! Memory per connection is bounded: its reader charges the bytes of a frame still arriving
//! to the server's [`FrameBudget`], which closes the largest holders ([`Evict`]) when the
//! server-wide total passes `max_incomplete_frame_bytes`. Timer: a connection that receives
//! no byte for `channel_expired_timeout` is closed (checked every quarter of it), so silent
//! sockets cannot pile up; real clients heartbeat well within it.
//!
//! Its writer is bounded too: the bytes encoded and not yet taken by the kernel are counted
//! ([`WriteMeter`]), and a peer that lets them pass `max_pending_write_bytes` (it sends
//! requests and does not read the answers) is closed at once, with a warning naming it,
//! dropping what was buffered for it. Without that bound the buffer of such a peer grows
//! with every answer, because the connection keeps reading and answering its requests.
//! Not covered by it: the answers to the requests in flight (at most
//! [`MAX_OUTSTANDING_PER_CONNECTION`]), which the owner builds in full before they reach
//! this actor, so one peer can still cost up to that many answers at once.
//!
//! It is not supervised: a socket cannot be reattached, so a restart would be meaningless.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::io::{FramedWrite, WriteHandler};
use actix::prelude::*;
use futures_util::StreamExt;
use tokio::io::WriteHalf;
use tokio::net::TcpStream;
use tokio_util::codec::FramedRead;

use crate::actors::server::frame_budget::{FrameBudget, Meter, MeteredCodec};
use crate::actors::server::write_meter::{MeteredEncoder, MeteredWriter, WriteMeter};
use crate::config::DEFAULT_MAX_PENDING_WRITE_BYTES;
use crate::protocol::{
    self, decode_request, Frame, FrameCodec, Request, ResponseCode, READ_BUFFER_CAPACITY,
};

/// Process-unique id of a connection, so owners can key state by it.
pub type ConnId = u64;

static NEXT_CONN_ID: AtomicU64 = AtomicU64::new(1);

/// A decoded request for the owner of this server's state.
pub struct Inbound {
    /// Which connection it came on.
    pub conn: ConnId,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The request's id: echo it in the response.
    pub opaque: u32,
    /// Whether the peer wants no response.
    pub oneway: bool,
    /// The request.
    pub request: Request,
    /// Where the response goes (the connection itself); shared by every request of the
    /// connection, so handing it on costs no allocation.
    pub reply: Arc<Recipient<Outbound>>,
    /// The same connection, for several answers at once.
    pub replies: Arc<Recipient<OutboundBatch>>,
}

impl Inbound {
    /// Sends `frame` back on the connection unless the request was one-way.
    pub fn respond(&self, frame: Frame) {
        if !self.oneway {
            self.reply.do_send(Outbound(frame));
        }
    }

    /// Sends an error response unless the request was one-way.
    pub fn fail(&self, code: ResponseCode, remark: impl Into<String>) {
        self.respond(Frame::error(self.opaque, code, remark));
    }
}

/// The requests one read of the socket brought, in order: one actor message per read,
/// not per request, so a pipelining peer costs the owner one mailbox hop per burst and the
/// owner can append a burst of sends with one write.
#[derive(Message)]
#[rtype(result = "()")]
pub struct InboundBatch(pub Vec<Inbound>);

/// Most frames handed over in one [`InboundBatch`].
pub const MAX_FRAMES_PER_BATCH: usize = 64;

/// A frame to write to the socket.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Outbound(pub Frame);

/// Several frames to write to the socket, in order: the answers to the sends of one read
/// come back as one message.
#[derive(Message)]
#[rtype(result = "()")]
pub struct OutboundBatch(pub Vec<Frame>);

/// Told to the owner when a connection has gone.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct ConnectionClosed {
    /// Which connection.
    pub conn: ConnId,
    /// The peer's address.
    pub peer: SocketAddr,
}

/// Tells a connection that the server's [`FrameBudget`] chose it to close: it stops reading
/// at once (dropping its buffer) and closes once its answers are written.
#[derive(Message, Clone, Copy)]
#[rtype(result = "()")]
pub struct Evict;

/// What bounds each connection of one server; cloned into every connection (the budget is
/// shared).
#[derive(Debug, Clone)]
pub struct ConnectionLimits {
    /// Largest frame read or written.
    pub max_frame_size: usize,
    /// A connection that receives no byte for this long is closed.
    pub idle_timeout: Duration,
    /// The server-wide budget for bytes of incomplete frames.
    pub budget: Arc<FrameBudget>,
    /// Most bytes of answers one connection may have waiting for its peer to read; past it
    /// the connection is closed.
    pub max_pending_write_bytes: usize,
}

impl ConnectionLimits {
    /// Limits with a fresh budget of `max_incomplete_frame_bytes`, and the default bound of
    /// unread answers per connection ([`DEFAULT_MAX_PENDING_WRITE_BYTES`]).
    pub fn new(
        max_frame_size: usize,
        idle_timeout: Duration,
        max_incomplete_frame_bytes: usize,
    ) -> Self {
        ConnectionLimits {
            max_frame_size,
            idle_timeout,
            budget: FrameBudget::new(max_incomplete_frame_bytes),
            max_pending_write_bytes: DEFAULT_MAX_PENDING_WRITE_BYTES,
        }
    }

    /// The same limits with `bytes` as the bound of unread answers per connection.
    pub fn with_max_pending_write_bytes(mut self, bytes: usize) -> Self {
        self.max_pending_write_bytes = bytes;
        self
    }
}

/// The socket writer of a connection, with its buffer counted.
type Writer = FramedWrite<Frame, MeteredWriter<WriteHalf<TcpStream>>, MeteredEncoder<FrameCodec>>;

/// One accepted socket.
pub struct Connection {
    id: ConnId,
    peer: SocketAddr,
    writer: Writer,
    /// Bytes in `writer`'s buffer, not yet taken by the kernel.
    unsent: WriteMeter,
    /// More than this in `unsent` closes the connection.
    max_pending_write_bytes: usize,
    /// Closed for not reading its answers: nothing more is written (the buffer is dropped
    /// with the actor).
    cut_off: bool,
    owner: Recipient<InboundBatch>,
    on_close: Recipient<ConnectionClosed>,
    /// This connection, as the answer address of its requests.
    me: Arc<Recipient<Outbound>>,
    me_batch: Arc<Recipient<OutboundBatch>>,
    max_frame_size: usize,
    /// Requests handed on and not answered yet. Capped so that the answers being prepared
    /// for one peer are bounded in number (what it leaves unread is bounded by
    /// `max_pending_write_bytes`).
    outstanding: usize,
    /// The byte stream broke (a frame could not be delimited): nothing more is read, and
    /// the connection closes once the requests already handed on are answered.
    closing: bool,
    /// The socket's reader, cancelled to drop its buffer at once when the connection is
    /// evicted or idle.
    reader: Option<SpawnHandle>,
    /// Shared with the reader: bytes received so far.
    meter: Arc<Meter>,
    /// Silence longer than this closes the connection.
    idle_timeout: Duration,
    /// `meter`'s reading at the last idle check, and when it last changed.
    last_received: (u64, Instant),
}

/// How long a broken connection waits for the answers to requests it already handed on.
pub const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Most unanswered requests one connection may have; more get SYSTEM_BUSY at once.
pub const MAX_OUTSTANDING_PER_CONNECTION: usize = 1024;

impl Connection {
    /// Starts the actor for an accepted socket.
    pub fn start(
        stream: TcpStream,
        peer: SocketAddr,
        limits: &ConnectionLimits,
        owner: Recipient<InboundBatch>,
        on_close: Recipient<ConnectionClosed>,
    ) -> Addr<Connection> {
        let _ = stream.set_nodelay(true);
        let max_frame_size = limits.max_frame_size;
        let budget = Arc::clone(&limits.budget);
        let idle_timeout = limits.idle_timeout;
        let max_pending_write_bytes = limits.max_pending_write_bytes;
        Connection::create(move |ctx| {
            let id = NEXT_CONN_ID.fetch_add(1, Ordering::Relaxed);
            let (read, write) = tokio::io::split(stream);
            let codec = MeteredCodec::new(
                FrameCodec::new(max_frame_size),
                budget,
                id,
                peer,
                ctx.address().recipient(),
            );
            let meter = codec.meter();
            let reader = ctx.add_stream(
                FramedRead::with_capacity(read, codec, READ_BUFFER_CAPACITY)
                    .ready_chunks(MAX_FRAMES_PER_BATCH),
            );
            let unsent = WriteMeter::default();
            let writer = FramedWrite::new(
                MeteredWriter::new(write, unsent.clone()),
                MeteredEncoder::new(FrameCodec::new(max_frame_size), unsent.clone()),
                ctx,
            );
            Connection {
                id,
                peer,
                writer,
                unsent,
                max_pending_write_bytes,
                cut_off: false,
                owner,
                on_close,
                me: Arc::new(ctx.address().recipient()),
                me_batch: Arc::new(ctx.address().recipient()),
                max_frame_size,
                outstanding: 0,
                closing: false,
                reader: Some(reader),
                meter,
                idle_timeout,
                last_received: (0, Instant::now()),
            }
        })
    }

    /// Stops reading and drops the read buffer now (its budget share with it), then closes
    /// once the requests already handed on are answered.
    fn shut_reader(&mut self, ctx: &mut Context<Self>) {
        if let Some(reader) = self.reader.take() {
            ctx.cancel_future(reader);
        }
        if !self.closing {
            self.close_when_answered(ctx);
        }
    }

    /// Closes the connection if no byte arrived for `idle_timeout`.
    fn check_idle(&mut self, ctx: &mut Context<Self>) {
        let now = Instant::now();
        let received = self.meter.received();
        if received != self.last_received.0 {
            self.last_received = (received, now);
        } else if !self.closing
            && now.saturating_duration_since(self.last_received.1) >= self.idle_timeout
        {
            // Not a warning: clients that go away without closing are routine.
            tracing::debug!(
                peer = %self.peer, conn = self.id, idle_ms = self.idle_timeout.as_millis() as u64,
                "closing a connection silent for channel_expired_timeout"
            );
            self.shut_reader(ctx);
        }
    }

    /// Stops reading and closes once every request handed on is answered (at most
    /// [`CLOSE_GRACE`] later): requests already executed still get their answers, so
    /// their senders need not retry them.
    fn close_when_answered(&mut self, ctx: &mut Context<Self>) {
        self.closing = true;
        if self.outstanding == 0 {
            self.writer.close();
        } else {
            ctx.run_later(CLOSE_GRACE, |_, ctx| ctx.stop());
        }
    }

    /// Decodes one frame into a request for the owner, or answers it here (bad request,
    /// too many in flight). Counts the request as outstanding when it wants an answer.
    fn accept_frame(&mut self, frame: Frame, ctx: &mut Context<Self>) -> Option<Inbound> {
        if frame.is_response() {
            tracing::debug!(peer = %self.peer, opaque = frame.opaque, "ignoring an unsolicited response");
            return None;
        }
        let oneway = frame.is_oneway();
        let opaque = frame.opaque;
        let request = match decode_request(&frame) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(peer = %self.peer, code = frame.code, error = %e, "rejecting request");
                if let Some(reply) = frame.error_reply(&e) {
                    self.send(reply, ctx);
                }
                return None;
            }
        };
        if !oneway && self.outstanding >= MAX_OUTSTANDING_PER_CONNECTION {
            self.send(
                Frame::error(
                    opaque,
                    ResponseCode::SystemBusy,
                    format!("more than {MAX_OUTSTANDING_PER_CONNECTION} requests in flight on this connection; read the answers first"),
                ),
                ctx,
            );
            return None;
        }
        if !oneway {
            self.outstanding += 1;
        }
        Some(Inbound {
            conn: self.id,
            peer: self.peer,
            opaque,
            oneway,
            request,
            reply: Arc::clone(&self.me),
            replies: Arc::clone(&self.me_batch),
        })
    }

    /// Hands a read's worth of requests to the owner.
    fn hand_over(&mut self, batch: Vec<Inbound>, ctx: &mut Context<Self>) {
        if batch.is_empty() {
            return;
        }
        // A full owner mailbox means the server is overloaded: say so instead of queueing
        // without bound (RocketMQ's SYSTEM_BUSY, which clients retry elsewhere).
        if let Err(e) = self.owner.try_send(InboundBatch(batch)) {
            let (code, why, InboundBatch(batch)) = match e {
                SendError::Full(b) => (ResponseCode::SystemBusy, "server busy, try again later", b),
                SendError::Closed(b) => {
                    (ResponseCode::ServiceNotAvailable, "server shutting down", b)
                }
            };
            for inb in batch.iter().filter(|i| !i.oneway) {
                self.outstanding -= 1;
                self.send(Frame::error(inb.opaque, code, why), ctx);
            }
        }
    }
}

impl Actor for Connection {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        tracing::debug!(peer = %self.peer, conn = self.id, "connection open");
        // A quarter of the timeout: a silent peer is closed within 1.25 times it, for one
        // wake-up per connection every 30 s at the default.
        let every = (self.idle_timeout / 4).max(Duration::from_millis(10));
        ctx.run_interval(every, Connection::check_idle);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        tracing::debug!(peer = %self.peer, conn = self.id, "connection closed");
        self.on_close.do_send(ConnectionClosed {
            conn: self.id,
            peer: self.peer,
        });
    }
}

impl StreamHandler<Vec<Result<Frame, protocol::Error>>> for Connection {
    fn handle(&mut self, items: Vec<Result<Frame, protocol::Error>>, ctx: &mut Self::Context) {
        crate::actors::busy_poll::note_activity();
        if self.closing || self.cut_off {
            return;
        }
        let mut batch = Vec::with_capacity(items.len());
        for item in items {
            match item {
                Ok(frame) => batch.extend(self.accept_frame(frame, ctx)),
                Err(e) => {
                    // The byte stream can no longer be trusted to be aligned on frames;
                    // what came before the bad frame is still served and answered.
                    if matches!(e, protocol::Error::OverBudget { .. }) {
                        // The budget logs evictions, rate-limited: a flood must not flood.
                        tracing::debug!(peer = %self.peer, error = %e, "closing connection");
                    } else {
                        tracing::warn!(peer = %self.peer, error = %e, "closing connection after a protocol error");
                    }
                    self.hand_over(batch, ctx);
                    self.close_when_answered(ctx);
                    return;
                }
            }
        }
        self.hand_over(batch, ctx);
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // After a protocol error the stream ends too, and `handle` has arranged the close.
        // Otherwise the peer has gone: close now, so that what is tied to it (group
        // membership, held pulls) is dropped at once.
        if !self.closing {
            ctx.stop();
        }
    }
}

impl Connection {
    /// Appends `frame` to the socket's buffer, and closes the connection if its peer has
    /// left more than `max_pending_write_bytes` there unread. Every write goes through here.
    fn send(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        if self.cut_off {
            return;
        }
        self.writer.write(frame);
        let pending = self.unsent.pending();
        if pending > self.max_pending_write_bytes {
            // Not throttled: each line costs the peer max_pending_write_bytes of answers it
            // asked for, so lines cannot come faster than that memory is handed out.
            tracing::warn!(
                peer = %self.peer, conn = self.id, pending, limit = self.max_pending_write_bytes,
                "closing a connection that does not read its answers: more than \
                 max_pending_write_bytes are waiting to be sent to it"
            );
            self.cut_off = true;
            // Stopping drops the writer and its buffer; answers already queued for this
            // peer are dropped unwritten (`cut_off`), later ones go to a closed mailbox.
            if let Some(reader) = self.reader.take() {
                ctx.cancel_future(reader);
            }
            ctx.stop();
        }
    }

    /// Writes one frame to the socket's buffer, counting answers off `outstanding`.
    fn write_frame(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        if frame.is_response() {
            self.outstanding = self.outstanding.saturating_sub(1);
        }
        // An answer too big for the peer's codec would kill the connection; send the error
        // instead (the owner is expected to bound what it answers).
        let approx = frame.body.len() + frame.header.len() + 64;
        if approx > self.max_frame_size {
            let opaque = frame.opaque;
            let error = Frame::error(
                opaque,
                ResponseCode::SystemError,
                format!(
                    "response of {approx} bytes exceeds max_frame_size {}",
                    self.max_frame_size
                ),
            );
            self.send(error, ctx);
        } else {
            self.send(frame, ctx);
        }
        if self.closing && !self.cut_off && self.outstanding == 0 {
            self.writer.close();
        }
    }
}

impl Handler<Outbound> for Connection {
    type Result = ();

    fn handle(&mut self, msg: Outbound, ctx: &mut Self::Context) {
        self.write_frame(msg.0, ctx);
    }
}

impl Handler<OutboundBatch> for Connection {
    type Result = ();

    fn handle(&mut self, msg: OutboundBatch, ctx: &mut Self::Context) {
        for frame in msg.0 {
            self.write_frame(frame, ctx);
        }
    }
}

impl Handler<Evict> for Connection {
    type Result = ();

    /// The budget has logged why; only let go of the buffer and the socket here.
    fn handle(&mut self, _: Evict, ctx: &mut Self::Context) {
        self.shut_reader(ctx);
    }
}

impl WriteHandler<protocol::Error> for Connection {
    fn error(&mut self, err: protocol::Error, _ctx: &mut Self::Context) -> Running {
        tracing::warn!(peer = %self.peer, error = %err, "write failed; closing connection");
        Running::Stop
    }
}
