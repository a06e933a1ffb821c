//! RemoteLink actor: the client end of one TCP connection to a broker or a name server
//! (DESIGN.md's "BrokerLink"; brokers use it for their name servers too).
//!
//! Owns the socket and the table of requests in flight. Many requests are pipelined on the
//! one connection and answers are matched by opaque id, in any order. A request that gets no
//! answer in time fails alone ([`LinkError::Timeout`]). A lost connection fails every request
//! in flight ([`LinkError::Lost`]) and stops the actor; it runs under a `Supervisor`, so the
//! restart is the reconnect, after a backoff that doubles up to a limit. While the link is
//! down, new requests fail at once ([`LinkError::Unavailable`]) so callers can try another
//! peer instead of waiting. It never interprets what it carries.

use std::collections::HashMap;
use std::time::Duration;

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

/// Sends a request and waits for its response.
#[derive(Message)]
#[rtype(result = "Result<Frame, LinkError>")]
pub struct Call {
    /// The request; its opaque is assigned by the link.
    pub frame: Frame,
    /// How long to wait for the answer.
    pub timeout: Duration,
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
            backoff_max: Duration::from_secs(5),
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
        }
    }
}

type Reply = oneshot::Sender<Result<Frame, LinkError>>;

enum State {
    Connecting,
    Connected(FramedWrite<Frame, WriteHalf<TcpStream>, FrameCodec>),
    Down(String),
}

/// One client connection.
pub struct RemoteLink {
    addr: String,
    config: LinkConfig,
    state: State,
    pending: HashMap<u32, Reply>,
    queued: Vec<(Frame, Option<Reply>)>,
    next_opaque: u32,
    backoff: Duration,
    on_request: Option<Recipient<PeerRequest>>,
}

impl RemoteLink {
    /// Starts a supervised link to `addr` (`host:port`). Requests the peer sends go to
    /// `on_request`.
    pub fn start(
        addr: impl Into<String>,
        config: LinkConfig,
        on_request: Option<Recipient<PeerRequest>>,
    ) -> Addr<RemoteLink> {
        let addr = addr.into();
        Supervisor::start(move |_| RemoteLink {
            addr,
            config,
            state: State::Connecting,
            pending: HashMap::new(),
            queued: Vec::new(),
            next_opaque: 0,
            backoff: Duration::ZERO,
            on_request,
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
                ctx.add_stream(FramedRead::new(
                    read,
                    FrameCodec::new(act.config.max_frame_size),
                ));
                let writer =
                    FramedWrite::new(write, FrameCodec::new(act.config.max_frame_size), ctx);
                act.state = State::Connected(writer);
                tracing::debug!(addr = %act.addr, "link connected");
                for (frame, reply) in std::mem::take(&mut act.queued) {
                    // A caller that gave up must not have its request sent after all (it may
                    // have retried elsewhere already).
                    if reply.as_ref().is_some_and(|tx| tx.is_closed()) {
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

    fn write(&mut self, mut frame: Frame, reply: Option<Reply>) {
        let size = frame.body.len() + frame.header.len() + 64;
        if size > self.config.max_frame_size {
            // Only this request fails; an encode error would take the whole link down.
            if let Some(tx) = reply {
                let _ = tx.send(Err(LinkError::TooLarge {
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
                if let Some(tx) = reply {
                    self.pending.insert(frame.opaque, tx);
                }
                w.write(frame);
            }
            State::Connecting => self.queued.push((frame, reply)),
            State::Down(reason) => {
                if let Some(tx) = reply {
                    let _ = tx.send(Err(LinkError::Unavailable {
                        addr: self.addr.clone(),
                        reason: reason.clone(),
                    }));
                }
            }
        }
    }

    fn fail_all(&mut self, err: impl Fn(String) -> LinkError) {
        for (_, tx) in self.pending.drain() {
            let _ = tx.send(Err(err(self.addr.clone())));
        }
        for (_, reply) in self.queued.drain(..) {
            if let Some(tx) = reply {
                let _ = tx.send(Err(err(self.addr.clone())));
            }
        }
    }
}

impl Actor for RemoteLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
        // Answers that nobody waits for any more (the caller timed out) are forgotten.
        ctx.run_interval(Duration::from_secs(1), |act, _| {
            act.pending.retain(|_, tx| !tx.is_closed());
        });
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
    }
}

impl StreamHandler<Result<Frame, protocol::Error>> for RemoteLink {
    fn handle(&mut self, item: Result<Frame, protocol::Error>, ctx: &mut Self::Context) {
        match item {
            Ok(frame) if frame.is_response() => {
                // The peer speaks our protocol: a later loss reconnects quickly again.
                self.backoff = Duration::ZERO;
                if let Some(tx) = self.pending.remove(&frame.opaque) {
                    let _ = tx.send(Ok(frame));
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
    type Result = ResponseFuture<Result<Frame, LinkError>>;

    fn handle(&mut self, msg: Call, _ctx: &mut Self::Context) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        self.write(msg.frame, Some(tx));
        let addr = self.addr.clone();
        let timeout = msg.timeout;
        Box::pin(async move {
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(answer)) => answer,
                Ok(Err(_)) => Err(LinkError::Lost { addr }),
                Err(_) => Err(LinkError::Timeout {
                    addr,
                    timeout_ms: timeout.as_millis() as u64,
                }),
            }
        })
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
    link.send(Call { frame, timeout })
        .await
        .unwrap_or_else(|_| {
            Err(LinkError::Lost {
                addr: addr.to_owned(),
            })
        })
}
