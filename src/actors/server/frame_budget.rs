//! The server-wide budget for bytes of incomplete frames, and the reader codec that
//! charges it. Not an actor: a value shared by `Arc` by the connections of one server.
//!
//! Owns, for one broker or name server, the total of bytes its connections hold for frames
//! that have not fully arrived, and the registry of those connections. Each connection
//! reads through a [`MeteredCodec`], which wraps [`FrameCodec`], charges what its buffer
//! holds after every decode and counts the bytes received (the connection's idle timer
//! reads that count). When the total passes the limit, the connections holding the largest
//! incomplete frames are told to close ([`Evict`]) until the rest fits; the one whose read
//! tipped it over also fails that read at once. Every eviction is logged with the peer's
//! address, at most once a second.
//!
//! It never touches a socket and is never a global: two servers in one process (tests)
//! each have their own budget. The only lock is taken when a connection opens or closes
//! and when the budget is over; the read path touches atomics only.
//!
//! # Invariant
//! `total` is the sum of every registered [`Meter`]'s `held`: each change of a `held` (a
//! swap) is mirrored in `total` by the code that made it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::Recipient;
use bytes::BytesMut;
use parking_lot::{Mutex, MutexGuard};
use tokio_util::codec::Decoder;

use crate::actors::server::connection::{ConnId, Evict};
use crate::actors::server::log_throttle::LogThrottle;
use crate::protocol::{self, Frame, FrameCodec};

/// What one connection's reader shares with the budget and with its connection actor.
#[derive(Debug, Default)]
pub struct Meter {
    /// Bytes buffered for a frame not complete yet (charged to the budget).
    held: AtomicUsize,
    /// Bytes received since the connection opened; the idle timer compares readings.
    received: AtomicU64,
    /// The budget chose this connection to close; its reader refuses further input.
    evicted: AtomicBool,
}

impl Meter {
    /// Bytes received since the connection opened.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }
}

/// A registered connection: what the budget needs to choose and close it.
struct Member {
    peer: SocketAddr,
    meter: Arc<Meter>,
    evict: Recipient<Evict>,
}

struct Registry {
    members: HashMap<ConnId, Member>,
    /// Evictions come in floods (many hostile sockets at once): one line a second.
    log: LogThrottle,
}

/// The budget of one server.
pub struct FrameBudget {
    /// Most bytes of incomplete frames all connections together may hold.
    limit: usize,
    /// Bytes held now (see the module's invariant).
    total: AtomicUsize,
    registry: Mutex<Registry>,
}

impl std::fmt::Debug for FrameBudget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameBudget")
            .field("limit", &self.limit)
            .field("total", &self.total.load(Ordering::Relaxed))
            .finish()
    }
}

impl FrameBudget {
    /// A budget of `limit` bytes for one server's connections.
    pub fn new(limit: usize) -> Arc<FrameBudget> {
        Arc::new(FrameBudget {
            limit,
            total: AtomicUsize::new(0),
            registry: Mutex::new(Registry {
                members: HashMap::new(),
                log: LogThrottle::new(Duration::from_secs(1)),
            }),
        })
    }

    /// The limit in force.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes of incomplete frames held now by all connections.
    pub fn held(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock()
    }

    fn register(&self, conn: ConnId, peer: SocketAddr, evict: Recipient<Evict>) -> Arc<Meter> {
        let meter = Arc::new(Meter::default());
        let member = Member {
            peer,
            meter: Arc::clone(&meter),
            evict,
        };
        self.registry().members.insert(conn, member);
        meter
    }

    fn unregister(&self, conn: ConnId, meter: &Meter) {
        self.registry().members.remove(&conn);
        let held = meter.held.swap(0, Ordering::Relaxed);
        self.total.fetch_sub(held, Ordering::Relaxed);
    }

    /// Sets what `meter` holds to `held`; past the limit, evicts the largest holders.
    fn charge(&self, meter: &Meter, held: usize) {
        let old = meter.held.swap(held, Ordering::Relaxed);
        if held <= old {
            self.total.fetch_sub(old - held, Ordering::Relaxed);
            return;
        }
        let total = self.total.fetch_add(held - old, Ordering::Relaxed) + (held - old);
        if total > self.limit {
            self.evict_largest();
        }
    }

    /// Closes the connections holding the largest incomplete frames until the rest fits.
    fn evict_largest(&self) {
        let mut registry = self.registry();
        let mut by_size: Vec<(usize, ConnId)> = registry
            .members
            .iter()
            .filter(|(_, m)| !m.meter.evicted.load(Ordering::Relaxed))
            .map(|(id, m)| (m.meter.held.load(Ordering::Relaxed), *id))
            .filter(|(held, _)| *held > 0)
            .collect();
        by_size.sort_unstable_by(|a, b| b.cmp(a));
        let now = Instant::now();
        for (_, id) in by_size {
            let total = self.total.load(Ordering::Relaxed);
            if total <= self.limit {
                break;
            }
            let Some(member) = registry.members.get(&id) else {
                continue;
            };
            member.meter.evicted.store(true, Ordering::Relaxed);
            let held = member.meter.held.swap(0, Ordering::Relaxed);
            self.total.fetch_sub(held, Ordering::Relaxed);
            // Wakes a connection waiting for bytes that may never come; the one reading
            // now sees `evicted` first.
            member.evict.do_send(Evict);
            let peer = member.peer;
            if let Some(suppressed) = registry.log.allow(now) {
                tracing::warn!(
                    %peer, held, total, limit = self.limit, suppressed,
                    "closing a connection holding one of the largest incomplete frames: \
                     the server's buffers for incomplete frames are over max_incomplete_frame_bytes"
                );
            }
        }
    }
}

/// The server side's reader codec: [`FrameCodec`] plus the budget's bookkeeping.
pub struct MeteredCodec {
    inner: FrameCodec,
    budget: Arc<FrameBudget>,
    meter: Arc<Meter>,
    conn: ConnId,
    /// Buffer length after the previous decode: what is beyond it arrived since.
    seen: usize,
}

impl MeteredCodec {
    /// Registers connection `conn` with `budget`; `evict` is how the budget closes it.
    pub fn new(
        inner: FrameCodec,
        budget: Arc<FrameBudget>,
        conn: ConnId,
        peer: SocketAddr,
        evict: Recipient<Evict>,
    ) -> Self {
        let meter = budget.register(conn, peer, evict);
        MeteredCodec {
            inner,
            budget,
            meter,
            conn,
            seen: 0,
        }
    }

    /// The meter the connection actor reads (bytes received).
    pub fn meter(&self) -> Arc<Meter> {
        Arc::clone(&self.meter)
    }

    fn metered(&mut self, src: &mut BytesMut, eof: bool) -> protocol::Result<Option<Frame>> {
        if let Some(new) = src.len().checked_sub(self.seen).filter(|n| *n > 0) {
            self.meter.received.fetch_add(new as u64, Ordering::Relaxed);
        }
        if self.meter.evicted.load(Ordering::Relaxed) {
            return Err(protocol::Error::OverBudget {
                held: src.len(),
                limit: self.budget.limit(),
            });
        }
        let decoded = if eof {
            self.inner.decode_eof(src)
        } else {
            self.inner.decode(src)
        };
        self.seen = src.len();
        // What stays in the buffer is (the start of) frames still to come; after an error
        // the stream ends and the codec is dropped, so nothing is held.
        let held = if decoded.is_ok() { src.len() } else { 0 };
        self.budget.charge(&self.meter, held);
        if self.meter.evicted.load(Ordering::Relaxed) {
            return Err(protocol::Error::OverBudget {
                held,
                limit: self.budget.limit(),
            });
        }
        decoded
    }
}

impl Decoder for MeteredCodec {
    type Item = Frame;
    type Error = protocol::Error;

    fn decode(&mut self, src: &mut BytesMut) -> protocol::Result<Option<Frame>> {
        self.metered(src, false)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> protocol::Result<Option<Frame>> {
        self.metered(src, true)
    }
}

impl Drop for MeteredCodec {
    /// The reader is gone (connection closed or evicted), and its buffer with it.
    fn drop(&mut self) {
        self.budget.unregister(self.conn, &self.meter);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix::prelude::*;
    use bytes::BufMut;

    /// Stands in for a connection actor: counts the evictions it is told of.
    struct Target(Arc<AtomicUsize>);
    impl Actor for Target {
        type Context = Context<Self>;
    }
    impl Handler<Evict> for Target {
        type Result = ();
        fn handle(&mut self, _: Evict, _: &mut Context<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn codec(budget: &Arc<FrameBudget>, conn: ConnId) -> (MeteredCodec, Arc<AtomicUsize>) {
        let evictions = Arc::new(AtomicUsize::new(0));
        let target = Target(Arc::clone(&evictions)).start();
        let peer: SocketAddr = ([127, 0, 0, 1], 1000 + conn as u16).into();
        let c = MeteredCodec::new(
            FrameCodec::default(),
            Arc::clone(budget),
            conn,
            peer,
            target.recipient(),
        );
        (c, evictions)
    }

    /// The start of a 1 MiB frame: its prefix and `n - 4` bytes.
    fn partial(n: usize) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u32(1 << 20);
        b.put_bytes(0, n - 4);
        b
    }

    #[actix_rt::test]
    async fn the_largest_holder_is_evicted_when_the_total_passes_the_limit() {
        let budget = FrameBudget::new(100);
        let (mut a, a_evicted) = codec(&budget, 1);
        let (mut b, b_evicted) = codec(&budget, 2);
        let (mut c, c_evicted) = codec(&budget, 3);
        let (mut buf_a, mut buf_b, mut buf_c) = (partial(60), partial(30), partial(50));
        assert!(a.decode(&mut buf_a).unwrap().is_none());
        assert!(b.decode(&mut buf_b).unwrap().is_none());
        assert_eq!(budget.held(), 90);
        assert_eq!(a.meter().received(), 60);
        // C's bytes take the total to 140: A, the largest, goes; C and B stay.
        assert!(c.decode(&mut buf_c).unwrap().is_none());
        assert_eq!(budget.held(), 80);
        assert!(matches!(
            a.decode(&mut buf_a),
            Err(protocol::Error::OverBudget { limit: 100, .. })
        ));
        // Let the eviction messages arrive.
        actix_rt::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(a_evicted.load(Ordering::Relaxed), 1);
        assert_eq!(b_evicted.load(Ordering::Relaxed), 0);
        assert_eq!(c_evicted.load(Ordering::Relaxed), 0);
        // Dropping a reader gives its share back.
        drop(b);
        assert_eq!(budget.held(), 50);
        drop((a, c));
        assert_eq!(budget.held(), 0);
        assert!(budget.registry().members.is_empty());
    }

    #[actix_rt::test]
    async fn the_reader_that_tips_the_budget_fails_its_own_read() {
        let budget = FrameBudget::new(100);
        let (mut a, _) = codec(&budget, 1);
        let (mut b, _) = codec(&budget, 2);
        let (mut buf_a, mut buf_b) = (partial(40), partial(80));
        assert!(a.decode(&mut buf_a).unwrap().is_none());
        assert!(matches!(
            b.decode(&mut buf_b),
            Err(protocol::Error::OverBudget { held: 80, .. })
        ));
        assert_eq!(budget.held(), 40);
    }

    #[actix_rt::test]
    async fn complete_frames_are_not_charged() {
        let budget = FrameBudget::new(100);
        let (mut a, _) = codec(&budget, 1);
        let mut out = BytesMut::new();
        let frame = Frame::new(crate::protocol::FrameKind::Request, 1, 10);
        tokio_util::codec::Encoder::encode(&mut FrameCodec::default(), frame, &mut out).unwrap();
        let len = out.len();
        out.put_u32(1 << 20); // and the start of the next one
        assert!(a.decode(&mut out).unwrap().is_some());
        assert!(a.decode(&mut out).unwrap().is_none());
        assert_eq!(budget.held(), 4);
        assert_eq!(a.meter().received(), len as u64 + 4);
    }
}
