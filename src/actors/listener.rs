//! Listener actor: accepts sockets and starts one [`Connection`] per peer.
//!
//! Owns the listening socket and nothing else. Stopping it stops accepting (the first step
//! of a graceful shutdown) without touching connections already open.

use std::io;
use std::net::SocketAddr;

use actix::prelude::*;
use tokio::net::{TcpListener, TcpStream};

use crate::actors::connection::{Connection, ConnectionClosed, InboundBatch};

/// Stops accepting new connections.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopAccepting;

/// Accepts connections for one server.
pub struct Listener {
    local: SocketAddr,
    max_frame_size: usize,
    owner: Recipient<InboundBatch>,
    on_close: Recipient<ConnectionClosed>,
}

impl Listener {
    /// Starts accepting on `listener`; requests go to `owner`, closures to `on_close`.
    pub fn start(
        listener: TcpListener,
        max_frame_size: usize,
        owner: Recipient<InboundBatch>,
        on_close: Recipient<ConnectionClosed>,
    ) -> io::Result<Addr<Listener>> {
        let local = listener.local_addr()?;
        Ok(Listener::create(move |ctx| {
            let accepts = futures_util::stream::unfold(listener, |l| async move {
                let next = l.accept().await;
                if next.is_err() {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Some((next, l))
            });
            ctx.add_stream(accepts);
            Listener {
                local,
                max_frame_size,
                owner,
                on_close,
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
                    self.max_frame_size,
                    self.owner.clone(),
                    self.on_close.clone(),
                );
            }
            // Running out of file descriptors and the like: keep serving the others.
            Err(e) => tracing::warn!(addr = %self.local, error = %e, "accept failed"),
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
