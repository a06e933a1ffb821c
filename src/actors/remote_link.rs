//! RemoteLink actor: the client end of one TCP connection to a broker or a name server
//! (brokers use it for their name servers too; see `docs/ARCHITECTURE.md`).
//!
//! Owns the socket and the table of requests in flight. Many requests are pipelined on the
//! one connection and answers are matched by opaque id, in any order. A request that gets no
//! answer in time fails alone ([`LinkError::Timeout`]). A lost connection fails every request
//! in flight ([`LinkError::Lost`]) and stops the actor; it runs under a `Supervisor`, so the
//! restart is the reconnect, after a backoff that doubles up to a limit. While the link is
//! down, new requests fail at once ([`LinkError::Unavailable`]) so callers can try another
//! peer instead of waiting. It never interprets what it carries.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use actix::io::{FramedWrite, WriteHandler};
use actix::prelude::*;
use tokio::io::WriteHalf;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::codec::FramedRead;

use crate::protocol::{self, Frame, FrameCodec, DEFAULT_MAX_FRAME_SIZE};

/// Why a request over a link failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The peer cannot be reached now.
    #[error("{addr} is unavailable: {reason}")]
    Unavailable {
        /// The peer.
        addr: String,
        /// What connecting said.
        reason: String,
    },
    /// The connection dropped before the answer came.
    #[error("connection to {addr} was lost before it answered")]
    Lost {
        /// The peer.
        addr: String,
    },
    /// The request is larger than a frame may be.
    #[error("request of about {size} bytes to {addr} exceeds max_frame_size {max}")]
    TooLarge {
        /// The peer.
        addr: String,
        /// Approximate frame size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// No answer within the caller's timeout.
    #[error("{addr} did not answer within {timeout_ms} ms")]
    Timeout {
        /// The peer.
        addr: String,
        /// The timeout that passed.
        timeout_ms: u64,
    },
}

/// Sends a request; the answer (or the failure) arrives on `reply`. Use [`call`], which
/// builds this and waits in the caller's own task: the link keeps no future per request
/// (an actor polls every future it holds on each wake-up, which with hundreds of requests
/// in flight cost more than the requests themselves).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Call {
    /// The request; its opaque is assigned by the link.
    pub frame: Frame,
    /// How long to wait for the answer (reported in the timeout error).
    pub timeout: Duration,
    /// When to give up on the answer.
    pub deadline: Instant,
    /// Where the outcome goes.
    pub reply: Reply,
}

/// Sends a one-way frame; nothing comes back.
#[derive(Message)]
#[rtype(result = "Result<(), LinkError>")]
pub struct Send(pub Frame);

/// A request the peer sent us (a broker notifying a consumer, for instance).
#[derive(Message, Clone)]
#[rtype(result = "()")]
pub struct PeerRequest {
    /// The peer's address.
    pub addr: String,
    /// The request.
    pub frame: Frame,
}

/// Tunables of a link.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
    /// First reconnect delay; doubles per failure.
    pub backoff_min: Duration,
    /// Largest reconnect delay.
    pub backoff_max: Duration,
    /// Largest frame accepted or sent.
    pub max_frame_size: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            connect_timeout: Duration::from_secs(3),
            backoff_min: Duration::from_millis(100),
            // A peer that comes back is found within a second (routes, registrations and
            // failover lean on it); a refused connect costs next to nothing.
            backoff_max: Duration::from_secs(1),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
        }
    }
}

/// Where a request's outcome goes.
pub type Reply = oneshot::Sender<Result<Frame, LinkError>>;

/// A request waiting for its answer.
struct Pending {
    reply: Reply,
    deadline: Instant,
    timeout: Duration,
}

/// A request waiting for the connection.
struct Queued {
    frame: Frame,
    reply: Option<Pending>,
}

enum State {
    Connecting,
    Connected(FramedWrite<Frame, WriteHalf<TcpStream>, FrameCodec>),
    Down(String),
}

/// Closes a link for good: requests in flight fail, the socket is closed, and the link
/// never reconnects (new requests fail at once with [`LinkError::Unavailable`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close;

/// A watched link connected (`up`) or lost its connection (see
/// [`RemoteLink::start_watched`]): the owner re-registers with a restarted peer, or
/// refreshes what it knows of a peer that went away, at once rather than at its next timer.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct LinkStateChanged {
    /// The peer's address.
    pub addr: String,
    /// Connected now (`true`) or just lost (`false`).
    pub up: bool,
}

/// Whether the link is down (its last connection failed or was lost, and no new one is
/// under way): a caller with another address for the same data goes there meanwhile.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct IsDown;

/// One client connection.
pub struct RemoteLink {
    addr: String,
    /// Set by [`Close`]: the supervisor's restart must not reconnect.
    closed: bool,
    config: LinkConfig,
    state: State,
    pending: HashMap<u32, Pending>,
    queued: Vec<Queued>,
    next_opaque: u32,
    backoff: Duration,
    on_request: Option<Recipient<PeerRequest>>,
    /// Told when the link connects and when a connection is lost.
    on_state: Option<Recipient<LinkStateChanged>>,
    /// A connection was made since the last loss was reported.
    was_up: bool,
    /// The timer that fails requests past their deadline, and the deadline it is set for.
    sweep: Option<(SpawnHandle, Instant)>,
}

impl RemoteLink {
    /// Starts a supervised link to `addr` (`host:port`). Requests the peer sends go to
    /// `on_request`.
    pub fn start(
        addr: impl Into<String>,
        config: LinkConfig,
        on_request: Option<Recipient<PeerRequest>>,
    ) -> Addr<RemoteLink> {
        Self::start_watched(addr, config, on_request, None)
    }

    /// [`RemoteLink::start`], also telling `on_state` each time the link connects and each
    /// time a connection is lost ([`LinkStateChanged`]).
    pub fn start_watched(
        addr: impl Into<String>,
        config: LinkConfig,
        on_request: Option<Recipient<PeerRequest>>,
        on_state: Option<Recipient<LinkStateChanged>>,
    ) -> Addr<RemoteLink> {
        let addr = addr.into();
        Supervisor::start(move |_| RemoteLink {
            addr,
            closed: false,
            config,
            state: State::Connecting,
            pending: HashMap::new(),
            queued: Vec::new(),
            next_opaque: 0,
            backoff: Duration::ZERO,
            on_request,
            on_state,
            was_up: false,
            sweep: None,
        })
    }

    /// The peer's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.state = State::Connecting;
        let addr = self.addr.clone();
        let limit = self.config.connect_timeout;
        let attempt = async move {
            match tokio::time::timeout(limit, TcpStream::connect(&addr)).await {
                Ok(Ok(s)) => Ok(s),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("connect timed out after {} ms", limit.as_millis())),
            }
        };
        ctx.spawn(attempt.into_actor(self).map(|res, act, ctx| match res {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let (read, write) = tokio::io::split(stream);
                ctx.add_stream(FramedRead::with_capacity(
                    read,
                    FrameCodec::new(act.config.max_frame_size),
                    crate::protocol::READ_BUFFER_CAPACITY,
                ));
                let writer =
                    FramedWrite::new(write, FrameCodec::new(act.config.max_frame_size), ctx);
                act.state = State::Connected(writer);
                tracing::debug!(addr = %act.addr, "link connected");
                act.was_up = true;
                if let Some(w) = &act.on_state {
                    w.do_send(LinkStateChanged {
                        addr: act.addr.clone(),
                        up: true,
                    });
                }
                for Queued { frame, reply } in std::mem::take(&mut act.queued) {
                    // A caller that gave up must not have its request sent after all (it may
                    // have retried elsewhere already).
                    if reply.as_ref().is_some_and(|p| p.reply.is_closed()) {
                        continue;
                    }
                    act.write(frame, reply);
                }
            }
            Err(reason) => {
                tracing::debug!(addr = %act.addr, %reason, "link connect failed");
                act.fail_all(|addr| LinkError::Unavailable {
                    addr,
                    reason: reason.clone(),
                });
                act.state = State::Down(reason);
                act.grow_backoff();
                ctx.stop();
            }
        }));
    }

    fn grow_backoff(&mut self) {
        self.backoff = (self.backoff * 2)
            .max(self.config.backoff_min)
            .min(self.config.backoff_max);
    }

    fn write(&mut self, mut frame: Frame, reply: Option<Pending>) {
        let size = frame.body.len() + frame.header.len() + 64;
        if size > self.config.max_frame_size {
            // Only this request fails; an encode error would take the whole link down.
            if let Some(p) = reply {
                let _ = p.reply.send(Err(LinkError::TooLarge {
                    addr: self.addr.clone(),
                    size,
                    max: self.config.max_frame_size,
                }));
            }
            return;
        }
        match &mut self.state {
            State::Connected(w) => {
                self.next_opaque = self.next_opaque.wrapping_add(1);
                frame.opaque = self.next_opaque;
                if let Some(p) = reply {
                    self.pending.insert(frame.opaque, p);
                }
                w.write(frame);
            }
            State::Connecting => self.queued.push(Queued { frame, reply }),
            State::Down(reason) => {
                if let Some(p) = reply {
                    let _ = p.reply.send(Err(LinkError::Unavailable {
                        addr: self.addr.clone(),
                        reason: reason.clone(),
                    }));
                }
            }
        }
    }

    fn fail_all(&mut self, err: impl Fn(String) -> LinkError) {
        for (_, p) in self.pending.drain() {
            let _ = p.reply.send(Err(err(self.addr.clone())));
        }
        for q in self.queued.drain(..) {
            if let Some(p) = q.reply {
                let _ = p.reply.send(Err(err(self.addr.clone())));
            }
        }
    }

    /// Makes sure the deadline sweep runs by `deadline`. One timer serves every request
    /// (RocketMQ scans its response table the same way, rather than a timer per request),
    /// set for the earliest deadline: with equal timeouts a new request never moves it, and
    /// an idle link has no timer at all.
    fn arm_sweep(&mut self, deadline: Instant, ctx: &mut Context<Self>) {
        if let Some((handle, at)) = self.sweep {
            if at <= deadline {
                return;
            }
            ctx.cancel_future(handle);
        }
        let after = deadline.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(after, |act, ctx| act.sweep(ctx));
        self.sweep = Some((handle, deadline));
    }

    /// The sweep: fails what is past its deadline, then sets the timer for the earliest
    /// deadline still waiting.
    fn sweep(&mut self, ctx: &mut Context<Self>) {
        self.sweep = None;
        self.expire();
        let next = self
            .pending
            .values()
            .map(|p| p.deadline)
            .chain(
                self.queued
                    .iter()
                    .filter_map(|q| q.reply.as_ref().map(|p| p.deadline)),
            )
            .min();
        if let Some(deadline) = next {
            self.arm_sweep(deadline, ctx);
        }
    }

    /// Fails the requests whose deadline passed, and forgets those whose caller left.
    fn expire(&mut self) {
        let now = Instant::now();
        let addr = &self.addr;
        let expired = |p: &Pending| p.reply.is_closed() || p.deadline <= now;
        let timed_out = |p: Pending| {
            let _ = p.reply.send(Err(LinkError::Timeout {
                addr: addr.clone(),
                timeout_ms: p.timeout.as_millis() as u64,
            }));
        };
        if self.pending.values().any(expired) {
            let gone: Vec<u32> = self
                .pending
                .iter()
                .filter(|(_, p)| expired(p))
                .map(|(k, _)| *k)
                .collect();
            for k in gone {
                if let Some(p) = self.pending.remove(&k) {
                    timed_out(p);
                }
            }
        }
        if self
            .queued
            .iter()
            .any(|q| q.reply.as_ref().is_some_and(expired))
        {
            let (keep, gone): (Vec<_>, Vec<_>) = std::mem::take(&mut self.queued)
                .into_iter()
                .partition(|q| !q.reply.as_ref().is_some_and(expired));
            self.queued = keep;
            gone.into_iter().filter_map(|q| q.reply).for_each(timed_out);
        }
    }
}

impl Actor for RemoteLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        // A restart leaves no timer behind; requests from before it were failed.
        self.sweep = None;
        if self.closed {
            // Restarted by the supervisor after `Close` stopped it: stay down, answering
            // requests with `Unavailable` until the last address is dropped.
            return;
        }
        if self.backoff.is_zero() {
            self.connect(ctx);
        } else {
            ctx.run_later(self.backoff, |act, ctx| act.connect(ctx));
        }
    }
}

impl Supervised for RemoteLink {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        let reason = match &self.state {
            State::Down(r) => r.clone(),
            _ => "connection lost".to_owned(),
        };
        self.fail_all(|addr| LinkError::Lost { addr });
        self.state = State::Down(reason);
        if std::mem::take(&mut self.was_up) {
            if let Some(w) = &self.on_state {
                w.do_send(LinkStateChanged {
                    addr: self.addr.clone(),
                    up: false,
                });
            }
        }
    }
}

impl StreamHandler<Result<Frame, protocol::Error>> for RemoteLink {
    fn handle(&mut self, item: Result<Frame, protocol::Error>, ctx: &mut Self::Context) {
        super::busy_poll::note_activity();
        match item {
            Ok(frame) if frame.is_response() => {
                // The peer speaks our protocol: a later loss reconnects quickly again.
                self.backoff = Duration::ZERO;
                if let Some(p) = self.pending.remove(&frame.opaque) {
                    let _ = p.reply.send(Ok(frame));
                }
            }
            Ok(frame) => {
                if let Some(r) = &self.on_request {
                    r.do_send(PeerRequest {
                        addr: self.addr.clone(),
                        frame,
                    });
                }
            }
            Err(e) => {
                tracing::warn!(addr = %self.addr, error = %e, "protocol error on link; reconnecting");
                self.state = State::Down(e.to_string());
                self.grow_backoff();
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        tracing::debug!(addr = %self.addr, "link closed by peer");
        self.state = State::Down("closed by peer".into());
        self.grow_backoff();
        ctx.stop();
    }
}

impl WriteHandler<protocol::Error> for RemoteLink {
    fn error(&mut self, err: protocol::Error, _ctx: &mut Self::Context) -> Running {
        tracing::warn!(addr = %self.addr, error = %err, "link write failed; reconnecting");
        self.state = State::Down(err.to_string());
        self.grow_backoff();
        Running::Stop
    }
}

impl Handler<Call> for RemoteLink {
    type Result = ();

    fn handle(&mut self, msg: Call, ctx: &mut Self::Context) {
        let deadline = msg.deadline;
        let pending = Pending {
            reply: msg.reply,
            deadline,
            timeout: msg.timeout,
        };
        self.write(msg.frame, Some(pending));
        self.arm_sweep(deadline, ctx);
    }
}

impl Handler<IsDown> for RemoteLink {
    type Result = bool;

    fn handle(&mut self, _: IsDown, _: &mut Self::Context) -> bool {
        matches!(self.state, State::Down(_))
    }
}

impl Handler<Close> for RemoteLink {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Self::Context) {
        self.closed = true;
        let reason = "closed by its owner".to_owned();
        self.fail_all(|addr| LinkError::Unavailable {
            addr,
            reason: reason.clone(),
        });
        // Stopping drops the reader and the writer, which closes the socket.
        self.state = State::Down(reason);
        ctx.stop();
    }
}

impl Handler<Send> for RemoteLink {
    type Result = Result<(), LinkError>;

    fn handle(&mut self, msg: Send, _ctx: &mut Self::Context) -> Self::Result {
        if let State::Down(reason) = &self.state {
            return Err(LinkError::Unavailable {
                addr: self.addr.clone(),
                reason: reason.clone(),
            });
        }
        self.write(msg.0, None);
        Ok(())
    }
}

/// Sends `frame` over `link` and waits for the answer; a dead actor counts as a lost link.
pub async fn call(
    link: &Addr<RemoteLink>,
    addr: &str,
    frame: Frame,
    timeout: Duration,
) -> Result<Frame, LinkError> {
    call_until(link, addr, frame, timeout, Instant::now() + timeout).await
}

/// [`call`] with the deadline already known (`timeout` only names the budget in the error),
/// for callers that read the clock once per operation.
pub async fn call_until(
    link: &Addr<RemoteLink>,
    addr: &str,
    frame: Frame,
    timeout: Duration,
    deadline: Instant,
) -> Result<Frame, LinkError> {
    let (tx, rx) = oneshot::channel();
    // Not bounded by the mailbox: callers bound what they have in flight themselves, and a
    // full mailbox must not turn into an error the caller would retry at once.
    link.do_send(Call {
        frame,
        timeout,
        deadline,
        reply: tx,
    });
    rx.await.unwrap_or_else(|_| {
        Err(LinkError::Lost {
            addr: addr.to_owned(),
        })
    })
}
