//! HaSlaveLink actor: a slave's replication link to its master.
//!
//! Owns the socket to the master's HA address (from `ha_master_address`, else the one the
//! name servers publish for the master of the same `broker_name`, handed over with
//! [`MasterAddress`]) and the order of appends: chunks are applied one at a time, on a
//! blocking thread, through the store's raw-append path, each acknowledged once written.
//! Its own log's end is the only position it keeps, so a restart resumes exactly there: no
//! gap, no byte twice (the store refuses an append that does not start at its end).
//!
//! Supervised: a connect failure, a lost or silent master, or an append that fails stops
//! it; the restart waits a backoff (100 ms doubling to 1 s, reset once data flows) and
//! connects again. A refusal from the master (a divergent log, damaged bytes on the master)
//! is not retried: the link stays idle, says why in its status, and writes nothing.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::io::{FramedWrite, WriteHandler};
use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use tokio::io::WriteHalf;
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, LengthDelimitedCodec};

use super::wire::{codec, HaFrame, Hello};
use super::{HaState, SlaveAppended, UseStore, HEARTBEAT, SILENCE_LIMIT};
use crate::storage::{Error as StoreError, MessageStore};

const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// The master's HA address as the name servers publish it (`None`: not known now).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct MasterAddress(pub Option<String>);

/// Who this slave is.
#[derive(Debug, Clone)]
pub struct SlaveSettings {
    /// Its `broker_name` (the master checks it).
    pub broker_name: String,
    /// Its `broker_id`.
    pub broker_id: u64,
    /// `ha_master_address`, if set: used instead of the published one.
    pub fixed_master: Option<String>,
    /// Largest frame accepted.
    pub max_frame: usize,
}

enum Phase {
    /// No master address known, or waiting for the backoff.
    Idle,
    Connecting,
    Streaming,
    /// The master refused: nothing more is written until the process restarts.
    Refused,
}

/// The slave's end of replication.
pub struct HaSlaveLink {
    store: Arc<MessageStore>,
    state: Arc<HaState>,
    appended: Recipient<SlaveAppended>,
    settings: SlaveSettings,
    published_master: Option<String>,
    /// The master this connection (or attempt) is for.
    connected_to: Option<String>,
    writer: Option<FramedWrite<Bytes, WriteHalf<TcpStream>, LengthDelimitedCodec>>,
    phase: Phase,
    backoff: Duration,
    last_heard: Instant,
    /// Chunks received and not yet applied, in order.
    chunks: VecDeque<(u64, Bytes)>,
    applying: bool,
}

impl HaSlaveLink {
    /// A link (start it under a `Supervisor`).
    pub fn new(
        store: Arc<MessageStore>,
        state: Arc<HaState>,
        appended: Recipient<SlaveAppended>,
        settings: SlaveSettings,
    ) -> Self {
        HaSlaveLink {
            store,
            state,
            appended,
            settings,
            published_master: None,
            connected_to: None,
            writer: None,
            phase: Phase::Idle,
            backoff: Duration::ZERO,
            last_heard: Instant::now(),
            chunks: VecDeque::new(),
            applying: false,
        }
    }

    fn master(&self) -> Option<String> {
        self.settings
            .fixed_master
            .clone()
            .or_else(|| self.published_master.clone())
    }

    fn set_state(&self, state: impl Into<String>) {
        let (state, master) = (state.into(), self.connected_to.clone().or(self.master()));
        self.state.set_link(|l| {
            l.state = state;
            l.master = master;
        });
    }

    fn connect(&mut self, ctx: &mut Context<Self>) {
        if !matches!(self.phase, Phase::Idle) {
            return;
        }
        let Some(master) = self.master() else {
            self.set_state("idle: waiting for the master's address from the name servers");
            return;
        };
        self.phase = Phase::Connecting;
        self.connected_to = Some(master.clone());
        self.set_state("connecting");
        ctx.wait(
            async move { TcpStream::connect(master.as_str()).await }
                .into_actor(self)
                .map(|res, act, ctx| match res {
                    Ok(stream) => act.connected(stream, ctx),
                    Err(e) => {
                        act.set_state(format!("down: cannot connect: {e}"));
                        tracing::debug!(master = ?act.connected_to, error = %e, "cannot reach the master's replication port");
                        ctx.stop();
                    }
                }),
        );
    }

    fn connected(&mut self, stream: TcpStream, ctx: &mut Context<Self>) {
        let _ = stream.set_nodelay(true);
        let (read, write) = tokio::io::split(stream);
        ctx.add_stream(FramedRead::new(read, codec(self.settings.max_frame)));
        let mut writer = FramedWrite::new(write, codec(self.settings.max_frame), ctx);
        let (max_offset, last_record) = self.store.end_and_last_digest();
        let hello = HaFrame::Hello(Hello {
            broker_name: self.settings.broker_name.clone(),
            broker_id: self.settings.broker_id,
            max_offset,
            last_record,
        });
        match hello.encode() {
            Ok(b) => writer.write(b),
            Err(e) => {
                tracing::error!(error = %e, "cannot encode the replication hello");
                ctx.stop();
                return;
            }
        }
        self.writer = Some(writer);
        self.phase = Phase::Streaming;
        self.last_heard = Instant::now();
        self.set_state("streaming");
        tracing::info!(master = ?self.connected_to, from = self.store.max_physical_offset(), "replicating from the master");
    }

    fn ack(&mut self, offset: u64) {
        if let (Some(w), Ok(b)) = (self.writer.as_mut(), HaFrame::Ack(offset).encode()) {
            w.write(b);
        }
    }

    fn apply_next(&mut self, ctx: &mut Context<Self>) {
        if self.applying || !matches!(self.phase, Phase::Streaming) {
            return;
        }
        let Some((start, bytes)) = self.chunks.pop_front() else {
            return;
        };
        self.applying = true;
        let store = Arc::clone(&self.store);
        let append = tokio::task::spawn_blocking(move || store.append_encoded(start, &bytes));
        ctx.spawn(append.into_actor(self).map(move |res, act, ctx| {
            act.applying = false;
            match res {
                Ok(Ok(end)) => {
                    act.backoff = Duration::ZERO;
                    act.ack(end);
                    act.appended.do_send(SlaveAppended);
                    act.apply_next(ctx);
                }
                Ok(Err(e @ StoreError::CorruptRecord { .. })) => {
                    let why = format!("the master shipped bytes that fail their checks at {start}: {e}; nothing was written");
                    tracing::error!(reason = %why, "replication stopped");
                    act.refused(why);
                }
                Ok(Err(e)) => {
                    // Not at the end (a chunk from an earlier connection landed), the disk
                    // full, ...: reconnect from the log's own end after the backoff.
                    tracing::warn!(at = start, error = %e, "cannot append what the master shipped; reconnecting");
                    act.set_state(format!("down: append failed: {e}"));
                    ctx.stop();
                }
                Err(e) => {
                    tracing::error!(error = %e, "the append thread stopped");
                    ctx.stop();
                }
            }
        }));
    }

    fn refused(&mut self, why: String) {
        self.phase = Phase::Refused;
        self.chunks.clear();
        if let Some(mut w) = self.writer.take() {
            w.close();
        }
        self.set_state(format!("refused: {why}"));
    }
}

impl Actor for HaSlaveLink {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(HEARTBEAT, |act, ctx| {
            if !matches!(act.phase, Phase::Streaming) {
                return;
            }
            if act.last_heard.elapsed() > SILENCE_LIMIT {
                tracing::warn!(master = ?act.connected_to, "master silent for {SILENCE_LIMIT:?}; reconnecting");
                act.set_state("down: the master went silent");
                ctx.stop();
                return;
            }
            if !act.applying && act.chunks.is_empty() {
                let end = act.store.max_physical_offset();
                act.ack(end);
            }
        });
        ctx.run_later(self.backoff, |act, ctx| act.connect(ctx));
    }
}

impl Supervised for HaSlaveLink {
    fn restarting(&mut self, _: &mut Self::Context) {
        self.writer = None;
        self.chunks.clear();
        self.applying = false;
        if !matches!(self.phase, Phase::Refused) {
            self.phase = Phase::Idle;
        }
        self.backoff = (self.backoff * 2).clamp(BACKOFF_FIRST, BACKOFF_MAX);
    }
}

impl StreamHandler<Result<BytesMut, std::io::Error>> for HaSlaveLink {
    fn handle(&mut self, item: Result<BytesMut, std::io::Error>, ctx: &mut Self::Context) {
        if !matches!(self.phase, Phase::Streaming) {
            return;
        }
        self.last_heard = Instant::now();
        let frame = match item
            .map_err(|e| e.to_string())
            .and_then(|b| HaFrame::decode(b).map_err(|e| e.to_string()))
        {
            Ok(f) => f,
            Err(e) => {
                tracing::warn!(master = ?self.connected_to, error = %e, "replication socket failed; reconnecting");
                self.set_state(format!("down: {e}"));
                ctx.stop();
                return;
            }
        };
        match frame {
            HaFrame::Data {
                start,
                master_end,
                bytes,
            } => {
                self.state.set_link(|l| l.master_end = master_end);
                if !bytes.is_empty() {
                    self.chunks.push_back((start, bytes));
                    self.apply_next(ctx);
                }
            }
            HaFrame::Refused(why) => {
                tracing::error!(master = ?self.connected_to, reason = %why, "the master refused to replicate to this slave; replication stopped");
                self.refused(why);
            }
            other => {
                tracing::warn!(frame = ?std::mem::discriminant(&other), "unexpected replication frame; reconnecting");
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        if matches!(self.phase, Phase::Streaming) {
            tracing::warn!(master = ?self.connected_to, "the master closed the replication link; reconnecting");
            self.set_state("down: the master closed the link");
            ctx.stop();
        }
    }
}

impl WriteHandler<std::io::Error> for HaSlaveLink {
    fn error(&mut self, err: std::io::Error, _: &mut Self::Context) -> Running {
        tracing::warn!(master = ?self.connected_to, error = %err, "cannot write to the master; reconnecting");
        Running::Stop
    }
}

impl Handler<MasterAddress> for HaSlaveLink {
    type Result = ();
    fn handle(&mut self, msg: MasterAddress, ctx: &mut Self::Context) {
        if msg.0 == self.published_master || msg.0.is_none() {
            return;
        }
        self.published_master = msg.0;
        if self.settings.fixed_master.is_some() {
            return;
        }
        match self.phase {
            Phase::Idle => self.connect(ctx),
            // Following a master that moved: reconnect to the new address.
            Phase::Streaming | Phase::Connecting if self.connected_to != self.published_master => {
                ctx.stop()
            }
            _ => {}
        }
    }
}

impl Handler<UseStore> for HaSlaveLink {
    type Result = ();
    /// Reconnects from the new handle's end.
    fn handle(&mut self, msg: UseStore, ctx: &mut Self::Context) {
        self.store = msg.0;
        if !matches!(self.phase, Phase::Refused) {
            ctx.stop();
        }
    }
}
