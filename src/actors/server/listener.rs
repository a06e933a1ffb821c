//! Listener actor: accepts sockets and starts one [`Connection`] per peer.
//!
//! Owns the listening socket and nothing else. Stopping it stops accepting (the first step
//! of a graceful shutdown) without touching connections already open. Every connection it
//! starts gets the same [`ConnectionLimits`], so they share one budget.
//!
//! An accept that fails (out of file descriptors, say) is retried after 100 ms rather than
//! at once, and logged at most once a second with the number of failures held back: the
//! condition lasts as long as the descriptors stay taken, and a line per retry would flood
//! the log while telling nothing new.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::net::{TcpListener, TcpStream};

use crate::actors::server::connection::{
    Connection, ConnectionClosed, ConnectionLimits, InboundBatch,
};
use crate::actors::server::log_throttle::LogThrottle;

/// Wait after a failed accept before the next: the usual cause (no file descriptor left)
/// only clears when a connection closes, and retrying at once would spin a core.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Shortest gap between two "accept failed" lines.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(1);

/// Stops accepting new connections.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAccepting;

/// Accepts connections for one server.
pub struct Listener {
    local: SocketAddr,
    /// Threads connections are started on, in turn; empty: this thread.
    workers: Vec<ArbiterHandle>,
    next_worker: usize,
    limits: ConnectionLimits,
    owner: Recipient<InboundBatch>,
    on_close: Recipient<ConnectionClosed>,
    accept_log: LogThrottle,
}

impl Listener {
    /// Starts accepting on `listener`; requests go to `owner`, closures to `on_close`.
    /// Connections run on this thread.
    pub fn start(
        listener: TcpListener,
        limits: ConnectionLimits,
        owner: Recipient<InboundBatch>,
        on_close: Recipient<ConnectionClosed>,
    ) -> io::Result<Addr<Listener>> {
        Self::start_with_workers(listener, limits, owner, on_close, Vec::new())
    }

    /// [`Listener::start`] with connections spread over `workers` in turn (each an actix
    /// arbiter: a thread with its own event loop).
    pub fn start_with_workers(
        listener: TcpListener,
        limits: ConnectionLimits,
        owner: Recipient<InboundBatch>,
        on_close: Recipient<ConnectionClosed>,
        workers: Vec<ArbiterHandle>,
    ) -> io::Result<Addr<Listener>> {
        let local = listener.local_addr()?;
        Ok(Listener::create(move |ctx| {
            let accepts = futures_util::stream::unfold(listener, |l| async move {
                let next = l.accept().await;
                if next.is_err() {
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
                Some((next, l))
            });
            ctx.add_stream(accepts);
            Listener {
                local,
                workers,
                next_worker: 0,
                limits,
                owner,
                on_close,
                accept_log: LogThrottle::new(ACCEPT_LOG_EVERY),
            }
        }))
    }
}

impl Listener {
    fn start_connection(&mut self, stream: TcpStream, peer: SocketAddr) {
        let (owner, on_close) = (self.owner.clone(), self.on_close.clone());
        if self.workers.is_empty() {
            Connection::start(stream, peer, &self.limits, owner, on_close);
            return;
        }
        let worker = &self.workers[self.next_worker % self.workers.len()];
        self.next_worker = self.next_worker.wrapping_add(1);
        // A tokio socket belongs to the event loop that registered it: hand the worker the
        // OS socket, which it registers with its own loop.
        let socket = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%peer, error = %e, "cannot hand a connection to a worker thread; closing it");
                return;
            }
        };
        let limits = self.limits.clone();
        let sent = worker.spawn_fn(move || match TcpStream::from_std(socket) {
            Ok(stream) => {
                Connection::start(stream, peer, &limits, owner, on_close);
            }
            Err(e) => {
                tracing::warn!(%peer, error = %e, "a worker thread cannot take a connection; closing it")
            }
        });
        if !sent {
            tracing::warn!(%peer, "a worker thread is gone; the connection is closed");
        }
    }
}

impl Actor for Listener {
    type Context = Context<Self>;

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        tracing::info!(addr = %self.local, "stopped accepting connections");
    }
}

impl StreamHandler<io::Result<(TcpStream, SocketAddr)>> for Listener {
    fn handle(&mut self, item: io::Result<(TcpStream, SocketAddr)>, _ctx: &mut Self::Context) {
        match item {
            Ok((stream, peer)) => self.start_connection(stream, peer),
            // Running out of file descriptors and the like: keep serving the others.
            Err(e) => {
                if let Some(suppressed) = self.accept_log.allow(Instant::now()) {
                    tracing::warn!(
                        addr = %self.local, error = %e, suppressed,
                        "accept failed; retrying every {} ms", ACCEPT_BACKOFF.as_millis()
                    );
                }
            }
        }
    }

    fn finished(&mut self, _ctx: &mut Self::Context) {}
}

impl Handler<StopAccepting> for Listener {
    type Result = ();

    fn handle(&mut self, _: StopAccepting, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
