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
    limits: ConnectionLimits,
    owner: Recipient<InboundBatch>,
    on_close: Recipient<ConnectionClosed>,
    accept_log: LogThrottle,
}

impl Listener {
    /// Starts accepting on `listener`; requests go to `owner`, closures to `on_close`.
    pub fn start(
        listener: TcpListener,
        limits: ConnectionLimits,
        owner: Recipient<InboundBatch>,
        on_close: Recipient<ConnectionClosed>,
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
                limits,
                owner,
                on_close,
                accept_log: LogThrottle::new(ACCEPT_LOG_EVERY),
            }
        }))
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
            Ok((stream, peer)) => {
                Connection::start(
                    stream,
                    peer,
                    &self.limits,
                    self.owner.clone(),
                    self.on_close.clone(),
                );
            }
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
