//! HaSession actor: the master's end of one slave's replication socket.
//!
//! Owns that socket and the slave's positions (`sent`, `acked`). It first checks the
//! slave's `Hello`: same `broker_name`, its log no longer than the master's and ending on
//! the same record (start and CRC), and not older than the master's oldest byte; otherwise
//! it answers `Refused` with the reason and closes. Then it ships chunks of whole verified
//! records from the slave's end, up to what the master confirmed locally, at most
//! [`WINDOW_BYTES`] ahead of the slave's acknowledgement; a record that fails its checks
//! stops the stream there (the slave keeps what it has). Every acknowledgement goes to the
//! [`HaAcceptor`]. Not supervised: a lost slave reconnects and gets a new session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use actix::io::{FramedWrite, WriteHandler};
use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use tokio::io::WriteHalf;
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use super::acceptor::{HaAcceptor, SessionGone, SlaveAcked, SlaveStopped};
use super::wire::{codec, HaFrame, Hello};
use super::{LogGrew, UseStore, CHUNK_BYTES, HEARTBEAT, SILENCE_LIMIT, WINDOW_BYTES};
use crate::storage::{Error as StoreError, MessageStore};

/// What a session needs to know of its broker.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// The master's `broker_name`: a slave of another name is refused.
    pub broker_name: String,
    /// Ship only flushed bytes (`sync_flush`).
    pub ship_flushed_only: bool,
    /// Largest frame either way.
    pub max_frame: usize,
}

enum Phase {
    Handshake,
    Streaming { sent: u64, acked: u64 },
    Stopped,
}

/// One slave's replication session on its master.
pub struct HaSession {
    id: u64,
    peer: SocketAddr,
    store: Arc<MessageStore>,
    acceptor: Addr<HaAcceptor>,
    settings: SessionSettings,
    writer: FramedWrite<Bytes, WriteHalf<TcpStream>, LengthDelimitedCodec>,
    phase: Phase,
    /// A chunk is being read on a blocking thread.
    reading: bool,
    last_heard: Instant,
    last_sent: Instant,
}

impl HaSession {
    /// Starts a session over an accepted socket.
    pub fn start(
        id: u64,
        stream: TcpStream,
        peer: SocketAddr,
        store: Arc<MessageStore>,
        acceptor: Addr<HaAcceptor>,
        settings: SessionSettings,
    ) -> Addr<HaSession> {
        let _ = stream.set_nodelay(true);
        HaSession::create(move |ctx| {
            let (read, write) = tokio::io::split(stream);
            ctx.add_stream(FramedRead::new(read, codec(settings.max_frame)));
            let writer = FramedWrite::new(write, codec(settings.max_frame), ctx);
            HaSession {
                id,
                peer,
                store,
                acceptor,
                settings,
                writer,
                phase: Phase::Handshake,
                reading: false,
                last_heard: Instant::now(),
                last_sent: Instant::now(),
            }
        })
    }

    fn send(&mut self, frame: HaFrame) {
        match frame.encode() {
            Ok(b) => {
                self.writer.write(b);
                self.last_sent = Instant::now();
            }
            Err(e) => {
                tracing::error!(slave = %self.peer, error = %e, "cannot encode a replication frame")
            }
        }
    }

    /// Refuses the slave with `why` (logged and shown in the status), then closes.
    fn refuse(&mut self, why: String, ctx: &mut Context<Self>) {
        tracing::error!(slave = %self.peer, reason = %why, "replication to this slave refused");
        self.acceptor.do_send(SlaveStopped {
            id: self.id,
            why: why.clone(),
        });
        self.send(HaFrame::Refused(why));
        self.phase = Phase::Stopped;
        self.writer.close();
        // Gives the refusal time to leave before the socket goes.
        ctx.run_later(HEARTBEAT, |_, ctx| ctx.stop());
    }

    fn hello(&mut self, h: Hello, ctx: &mut Context<Self>) {
        if h.broker_name != self.settings.broker_name {
            return self.refuse(
                format!(
                    "the slave belongs to broker_name '{}' but this master serves '{}'",
                    h.broker_name, self.settings.broker_name
                ),
                ctx,
            );
        }
        let (min, max) = (
            self.store.min_physical_offset(),
            self.store.max_physical_offset(),
        );
        if h.max_offset > max {
            return self.refuse(
                format!(
                    "divergent slave: its log ends at {} but the master's ends at {max}; the \
                     slave holds bytes the master does not have, and they are not overwritten \
                     (move the slave's store aside to start it afresh)",
                    h.max_offset
                ),
                ctx,
            );
        }
        if h.max_offset > 0 {
            // The slave's last record must be the master's there, ending at the slave's end,
            // or at the end of a segment the slave rolled past on the master's blank marker.
            let segment = self.store.config().mapped_file_size_commit_log;
            let matches = h.last_record.is_some_and(|(at, crc)| {
                self.store.record_digest(at).is_ok_and(|(end, ours)| {
                    ours == crc
                        && (end == h.max_offset
                            || (h.max_offset.is_multiple_of(segment)
                                && end < h.max_offset
                                && h.max_offset - end < segment))
                })
            });
            if !matches {
                return self.refuse(
                    format!(
                        "divergent slave: its last record (ending at {}) differs from the \
                         master's bytes there; its log is not a prefix of the master's",
                        h.max_offset
                    ),
                    ctx,
                );
            }
        }
        if h.max_offset < min {
            return self.refuse(
                format!(
                    "the slave's log ends at {} but the master's oldest byte is at {min} \
                     (older segments were deleted); give the slave a copy of the master's \
                     store to start from",
                    h.max_offset
                ),
                ctx,
            );
        }
        tracing::info!(slave = %self.peer, broker_id = h.broker_id, from = h.max_offset, "slave connected; replicating");
        self.acceptor.do_send(SlaveAcked {
            id: self.id,
            broker_id: Some(h.broker_id),
            offset: h.max_offset,
        });
        self.phase = Phase::Streaming {
            sent: h.max_offset,
            acked: h.max_offset,
        };
        self.pump(ctx);
    }

    /// The end of what may be shipped: confirmed locally.
    fn shippable_end(&self) -> u64 {
        if self.settings.ship_flushed_only {
            self.store.flushed_offset()
        } else {
            self.store.max_physical_offset()
        }
    }

    /// Ships the next chunk if the window allows and there is one.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let Phase::Streaming { sent, acked } = self.phase else {
            return;
        };
        let end = self.shippable_end();
        if self.reading || sent >= end || sent - acked >= WINDOW_BYTES {
            return;
        }
        self.reading = true;
        let store = Arc::clone(&self.store);
        let read = tokio::task::spawn_blocking(move || store.ship_chunk(sent, end, CHUNK_BYTES));
        ctx.spawn(read.into_actor(self).map(move |res, act, ctx| {
            act.reading = false;
            let Phase::Streaming { sent: now, acked } = act.phase else {
                return;
            };
            if now != sent {
                return;
            }
            match res {
                Ok(Ok(chunk)) if chunk.next > sent => {
                    act.send(HaFrame::Data {
                        start: sent,
                        master_end: end,
                        bytes: chunk.bytes,
                    });
                    act.phase = Phase::Streaming {
                        sent: chunk.next,
                        acked,
                    };
                    act.pump(ctx);
                }
                // Nothing readable where a record should start (a damaged tail): stop and say
                // so rather than ask again forever.
                Ok(Ok(_)) => act.refuse(
                    format!(
                        "replication stopped: no readable record at {sent} in the master's log"
                    ),
                    ctx,
                ),
                Ok(Err(e @ StoreError::CorruptRecord { .. })) => {
                    act.refuse(
                        format!(
                            "replication stopped: the master's log is damaged at {sent} ({e}); \
                             the slave keeps its own copy of everything before and after"
                        ),
                        ctx,
                    );
                }
                Ok(Err(e)) => act.refuse(format!("cannot read the log at {sent}: {e}"), ctx),
                Err(e) => act.refuse(format!("the log reader stopped: {e}"), ctx),
            }
        }));
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.last_heard.elapsed() > SILENCE_LIMIT {
            tracing::warn!(slave = %self.peer, "slave silent for {SILENCE_LIMIT:?}; closing its session");
            ctx.stop();
            return;
        }
        if let Phase::Streaming { sent, .. } = self.phase {
            if self.last_sent.elapsed() >= HEARTBEAT {
                let master_end = self.shippable_end();
                self.send(HaFrame::Data {
                    start: sent,
                    master_end,
                    bytes: Bytes::new(),
                });
            }
            self.pump(ctx);
        }
    }
}

impl Actor for HaSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(HEARTBEAT / 2, |act, ctx| act.tick(ctx));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.acceptor.do_send(SessionGone { id: self.id });
    }
}

impl StreamHandler<Result<BytesMut, std::io::Error>> for HaSession {
    fn handle(&mut self, item: Result<BytesMut, std::io::Error>, ctx: &mut Self::Context) {
        self.last_heard = Instant::now();
        let frame = match item
            .map_err(|e| e.to_string())
            .and_then(|b| HaFrame::decode(b).map_err(|e| e.to_string()))
        {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(slave = %self.peer, error = %e, "replication socket failed; closing it");
                ctx.stop();
                return;
            }
        };
        match (frame, &mut self.phase) {
            (HaFrame::Hello(h), Phase::Handshake) => self.hello(h, ctx),
            (HaFrame::Ack(offset), Phase::Streaming { sent, acked }) => {
                if offset > *sent {
                    let sent = *sent;
                    return self.refuse(
                        format!("the slave acknowledged {offset}, past the {sent} shipped to it"),
                        ctx,
                    );
                }
                if offset > *acked {
                    *acked = offset;
                    self.acceptor.do_send(SlaveAcked {
                        id: self.id,
                        broker_id: None,
                        offset,
                    });
                }
                self.pump(ctx);
            }
            (_, Phase::Stopped) => {}
            (other, _) => {
                tracing::warn!(slave = %self.peer, frame = ?std::mem::discriminant(&other), "unexpected replication frame; closing the session");
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        tracing::info!(slave = %self.peer, "slave disconnected");
        ctx.stop();
    }
}

impl WriteHandler<std::io::Error> for HaSession {
    fn error(&mut self, err: std::io::Error, _: &mut Self::Context) -> Running {
        tracing::warn!(slave = %self.peer, error = %err, "cannot write to the slave; closing its session");
        Running::Stop
    }
}

impl Handler<LogGrew> for HaSession {
    type Result = ();
    fn handle(&mut self, _: LogGrew, ctx: &mut Self::Context) {
        self.pump(ctx);
    }
}

impl Handler<UseStore> for HaSession {
    type Result = ();
    /// The old handle is closed: the slave reconnects and gets a session on the new one.
    fn handle(&mut self, _: UseStore, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
