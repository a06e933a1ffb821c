//! Write-side abuse against the real `mqbroker`: clients that send pulls and never read the
//! answers (slow readers) and one connection flooding it with sends. The slow readers are
//! cut off once `max_pending_write_bytes` of answers wait for each, the flood is held back
//! by the per-connection cap on requests in flight and the broker's bounded mailbox, the
//! broker's anonymous memory stays under a bound derived from its configuration, and a
//! well-behaved producer keeps getting SEND_OK throughout.
//!
//! The bound per slow reader is its `max_pending_write_bytes`, the answer that crossed it,
//! and the answers to the requests it may have in flight (the broker builds those before
//! its connection can refuse them): small answers here, and many more pulls than may be in
//! flight, so that what grows without the cut-off is what the peer leaves unread.
//!
//! `cargo test --test write_side_abuse -- --nocapture` prints the memory figures.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actimq::admin::AdminClient;
use actimq::internals::actors::server::connection::MAX_OUTSTANDING_PER_CONNECTION;
use actimq::internals::protocol::message::{PullMessageRequestHeader, SendMessageRequestHeader};
use actimq::internals::protocol::{Frame, FrameCodec, RequestCode, ResponseCode};
use actimq::{ClientConfig, ClientInstance, Message, Producer, ProducerConfig, SendStatus};
use bytes::{Bytes, BytesMut};
use common::process::{broker, broker_config, eventually, namesrv, Proc};
use tokio_util::codec::{Decoder, Encoder};

/// The broker's `max_pending_write_bytes` here: small, so the bound below is tight.
const MAX_PENDING_WRITE: usize = 1024 * 1024;
/// The broker's `max_frame_size` (the smallest `max_pending_write_bytes` allows).
const MAX_FRAME: usize = 1024 * 1024;
/// Connections that send pulls and never read.
const SLOW_READERS: usize = 8;
/// Pulls each slow reader writes at once (one broker read's worth), and the most it writes
/// in all: 16 times the requests a connection may have in flight, so that what it leaves
/// unread, not what is in flight, is what grows.
const PULLS_PER_WRITE: usize = 64;
const MAX_PULLS_PER_READER: usize = 16 * MAX_OUTSTANDING_PER_CONNECTION;
/// The message every slow reader's pull is answered with, and a bound of that answer
/// (record and response headers included).
const FAT_SIZE: usize = 2000;
const ANSWER_BOUND: usize = FAT_SIZE + 1024;
/// The flood: sends of 1 KiB, written 64 at a time, for at most this many or this long.
const FLOOD_MAX: u64 = 200_000;
const FLOOD_FOR: Duration = Duration::from_secs(8);
/// What the broker may allocate besides the slow readers' buffers: the flood's requests in
/// flight (at most 1,024 of ~1.2 KiB on its connection), the store's and the allocator's
/// working memory.
const MARGIN_KB: u64 = 32 * 1024;
/// Longest the whole abuse may take before the test gives up waiting.
const ABUSE_DEADLINE: Duration = Duration::from_secs(30);
/// SEND_OK answers the honest producer gets before the abuse (a warm client), and the
/// fewest it must get while the abuse goes on (on a 2-vCPU machine with debug binaries it
/// got 12 to 300 in the ~7 s the flood lasted); every one of its sends must be SEND_OK.
const HONEST_WARMUP: u64 = 20;
const HONEST_DURING: u64 = 5;

/// One field of `/proc/PID/status`, in KiB.
fn status_kb(p: &Proc, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("{field} in /proc/PID/status"))
}

/// (VmRSS, RssAnon) in KiB. RssAnon is what buffers cost; VmRSS also counts the mapped
/// commit log's pages, which the flood grows and the kernel may reclaim.
fn rss(p: &Proc) -> (u64, u64) {
    (status_kb(p, "VmRSS:"), status_kb(p, "RssAnon:"))
}

fn encode(frames: impl IntoIterator<Item = Frame>) -> Bytes {
    let (mut codec, mut out) = (FrameCodec::default(), BytesMut::new());
    for f in frames {
        codec.encode(f, &mut out).unwrap();
    }
    out.freeze()
}

/// A producer on its own actix system sending one message at a time until told to stop;
/// counts the SEND_OK answers and keeps every other outcome.
struct Honest {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    failures: Arc<Mutex<Vec<String>>>,
    thread: JoinHandle<()>,
}

impl Honest {
    fn start(namesrv: &str) -> Honest {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let failures = Arc::new(Mutex::new(Vec::new()));
        let (stop2, ok2, failures2) = (Arc::clone(&stop), Arc::clone(&ok), Arc::clone(&failures));
        let ns = namesrv.to_owned();
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let client = ClientInstance::start(ClientConfig::new(ns)).unwrap();
                let mut config = ProducerConfig::new("honest");
                // The deadline each send must meet, retries included.
                config.send_msg_timeout = Duration::from_secs(10);
                let producer = Producer::start(client.clone(), config);
                let mut i = 0u64;
                while !stop2.load(Ordering::Relaxed) {
                    match producer
                        .send(Message::new("Steady", format!("steady-{i}")))
                        .await
                    {
                        Ok(r) if r.status == SendStatus::SendOk => {
                            ok2.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => failures2
                            .lock()
                            .unwrap()
                            .push(format!("send {i}: {}", r.status)),
                        Err(e) => failures2.lock().unwrap().push(format!("send {i}: {e}")),
                    }
                    i += 1;
                }
                producer.shutdown().await;
                ClientInstance::shutdown(&client).await;
            })
        });
        Honest {
            stop,
            ok,
            failures,
            thread,
        }
    }

    fn ok(&self) -> u64 {
        self.ok.load(Ordering::Relaxed)
    }

    /// Waits until `more` SEND_OKs past the current count.
    fn wait_ok(&self, more: u64) {
        let target = self.ok() + more;
        eventually(
            Duration::from_secs(20),
            "the honest producer's sends",
            || {
                assert!(!self.thread.is_finished(), "the honest producer stopped");
                (self.ok() >= target).then_some(())
            },
        );
    }

    /// Stops it; returns every send that was not SEND_OK.
    fn finish(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .join()
            .expect("the honest producer ran to the end");
        std::mem::take(&mut *self.failures.lock().unwrap())
    }
}

/// Stores the message every slow reader's pull asks for (queue 0 of `Fat`).
fn fill_fat_queue(namesrv: &str, broker: &str) {
    actix_rt::System::new().block_on(async {
        let mut admin = AdminClient::new(namesrv, Duration::from_secs(10));
        let header = SendMessageRequestHeader {
            producer_group: "filler".into(),
            topic: "Fat".into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 1,
            queue_id: 0,
            born_timestamp: 1,
            ..Default::default()
        };
        let body = Bytes::from(vec![b'a'; FAT_SIZE]);
        admin.send(broker, &header, body.clone()).await.unwrap();
        // A pull gets it back, as each slow reader's will.
        let got = admin.pull(broker, &fat_pull()).await.unwrap();
        assert_eq!(got.messages.len(), 1);
        assert_eq!(got.messages[0].body, body);
    })
}

fn fat_pull() -> PullMessageRequestHeader {
    PullMessageRequestHeader {
        consumer_group: "slow".into(),
        topic: "Fat".into(),
        queue_id: 0,
        queue_offset: 0,
        max_msg_nums: 1,
        ..Default::default()
    }
}

/// Writes pulls on `s`, 64 at a time, and never reads; stops at the first write error (the
/// broker closed it) or after `MAX_PULLS_PER_READER`. Returns the socket and how many pulls
/// it wrote.
fn slow_reader(mut s: TcpStream, deadline: Instant) -> (TcpStream, usize) {
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let pulls = encode((0..PULLS_PER_WRITE).map(|i| {
        Frame::request(
            RequestCode::PullMessage,
            i as u32,
            &fat_pull(),
            Bytes::new(),
        )
        .unwrap()
    }));
    let mut written = 0;
    while written < MAX_PULLS_PER_READER && Instant::now() < deadline {
        if s.write_all(&pulls).is_err() {
            break;
        }
        written += PULLS_PER_WRITE;
    }
    (s, written)
}

/// Whether the broker logged closing `peer` for not reading its answers.
fn cut_off_logged(log: &str, peer: &str) -> bool {
    log.lines()
        .any(|l| l.contains("does not read its answers") && l.contains(peer))
}

/// The socket was closed by the broker: reading what it holds ends in EOF or a reset.
/// Reads at most `MAX_PULLS_PER_READER` answers' worth, until `deadline`.
fn drained_to_close(mut s: &TcpStream, deadline: Instant) -> bool {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0usize;
    while total <= MAX_PULLS_PER_READER * ANSWER_BOUND {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        s.set_read_timeout(Some(left)).unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => total += n,
            Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => {
                return true
            }
            Err(_) => return false,
        }
    }
    false
}

/// What the flood got back.
#[derive(Debug, Default)]
struct FloodTally {
    sent: u64,
    ok: u64,
    busy: u64,
    other: u64,
}

/// One connection sending 1 KiB messages as fast as the broker takes them, 64 per write,
/// never waiting for an answer (a second thread reads and counts them).
fn flood(addr: &str, stop: &AtomicBool) -> FloodTally {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_write_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut reader = s.try_clone().unwrap();
    let sent = Arc::new(AtomicU64::new(0));
    let writer_done = Arc::new(AtomicBool::new(false));
    let counter = {
        let (sent, writer_done) = (Arc::clone(&sent), Arc::clone(&writer_done));
        std::thread::spawn(move || {
            let mut tally = FloodTally::default();
            let (mut codec, mut buf) = (FrameCodec::default(), BytesMut::new());
            let mut chunk = vec![0u8; 256 * 1024];
            reader
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            loop {
                while let Some(f) = codec.decode(&mut buf).unwrap() {
                    match f.response_code() {
                        Some(ResponseCode::Success) => tally.ok += 1,
                        Some(ResponseCode::SystemBusy) => tally.busy += 1,
                        _ => tally.other += 1,
                    }
                }
                let answered = tally.ok + tally.busy + tally.other;
                if writer_done.load(Ordering::Acquire) && answered >= sent.load(Ordering::Acquire) {
                    return tally;
                }
                match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => return tally,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        })
    };
    let body = Bytes::from(vec![b'f'; 1024]);
    let batch = encode((0..64).map(|i| {
        let header = SendMessageRequestHeader {
            producer_group: "flood".into(),
            topic: "Flood".into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 4,
            queue_id: i % 4,
            born_timestamp: 1,
            ..Default::default()
        };
        Frame::request(RequestCode::SendMessage, i as u32, &header, body.clone()).unwrap()
    }));
    let until = Instant::now() + FLOOD_FOR;
    while sent.load(Ordering::Relaxed) < FLOOD_MAX
        && Instant::now() < until
        && !stop.load(Ordering::Relaxed)
    {
        if s.write_all(&batch).is_err() {
            break;
        }
        sent.fetch_add(64, Ordering::Release);
    }
    writer_done.store(true, Ordering::Release);
    let mut tally = counter.join().unwrap();
    tally.sent = sent.load(Ordering::Relaxed);
    tally
}

#[test]
fn slow_readers_are_cut_off_and_a_flood_stays_bounded_while_a_producer_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 120_000);
    let cfg = broker_config(
        dir.path(),
        "broker-w",
        &format!(
            "max_message_size = 65536\nmax_frame_size = {MAX_FRAME}\n\
             max_pending_write_bytes = {MAX_PENDING_WRITE}"
        ),
    );
    let b = broker(&cfg, &ns.addr);
    fill_fat_queue(&ns.addr, &b.addr);
    let honest = Honest::start(&ns.addr);
    honest.wait_ok(HONEST_WARMUP);
    let (vm_before, anon_before) = rss(&b);
    // Each slow reader may cost its limit, the answer that crossed it, and the answers to
    // the requests it may have in flight, built before they reach its connection; nothing
    // else may grow by more than the margin.
    let per_reader_kb =
        ((MAX_PENDING_WRITE + MAX_FRAME + MAX_OUTSTANDING_PER_CONNECTION * ANSWER_BOUND) / 1024)
            as u64;
    let bound_kb = anon_before + SLOW_READERS as u64 * per_reader_kb + MARGIN_KB;

    let deadline = Instant::now() + ABUSE_DEADLINE;
    let stop_flood = Arc::new(AtomicBool::new(false));
    let flooder = {
        let (addr, stop) = (b.addr.clone(), Arc::clone(&stop_flood));
        std::thread::spawn(move || flood(&addr, &stop))
    };
    let sockets: Vec<TcpStream> = (0..SLOW_READERS)
        .map(|_| TcpStream::connect(&b.addr).unwrap())
        .collect();
    let peers: Vec<String> = sockets
        .iter()
        .map(|s| s.local_addr().unwrap().to_string())
        .collect();
    let readers: Vec<JoinHandle<(TcpStream, usize)>> = sockets
        .into_iter()
        .map(|s| std::thread::spawn(move || slow_reader(s, deadline)))
        .collect();
    let ok_at_start = honest.ok();

    // Sample the broker's memory until every load loop has ended and every slow reader has
    // been cut off (without the cut-off: until the deadline, while the broker answers all
    // the pulls it was sent).
    let (mut vm_peak, mut anon_peak) = (vm_before, anon_before);
    loop {
        let (vm, anon) = rss(&b);
        vm_peak = vm_peak.max(vm);
        anon_peak = anon_peak.max(anon);
        let log = b.log_text();
        let done = flooder.is_finished()
            && readers.iter().all(JoinHandle::is_finished)
            && peers.iter().all(|p| cut_off_logged(&log, p));
        if done || Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    stop_flood.store(true, Ordering::Relaxed);
    let ok_during = honest.ok() - ok_at_start;
    let tally = flooder.join().unwrap();
    let readers: Vec<(TcpStream, usize)> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    let pulls: Vec<usize> = readers.iter().map(|(_, n)| *n).collect();
    println!(
        "mqbroker before: VmRSS {vm_before} kB, RssAnon {anon_before} kB; \
         peak during the abuse: VmRSS {vm_peak} kB, RssAnon {anon_peak} kB (bound {bound_kb} kB)"
    );
    println!("slow readers wrote {pulls:?} pulls; flood: {tally:?}; honest SEND_OKs during it: {ok_during}");

    assert!(
        anon_peak <= bound_kb,
        "RssAnon peaked at {anon_peak} kB, over the bound of {bound_kb} kB \
         ({anon_before} kB before + {SLOW_READERS} x {per_reader_kb} kB + {MARGIN_KB} kB)"
    );
    // The slow readers were cut off, each named in the log.
    let drain_by = Instant::now() + Duration::from_secs(10);
    for (i, (s, _)) in readers.iter().enumerate() {
        assert!(
            drained_to_close(s, drain_by),
            "slow reader {i} was not closed by the broker"
        );
    }
    let log = b.log_text();
    for (i, peer) in peers.iter().enumerate() {
        assert!(
            cut_off_logged(&log, peer),
            "no cut-off line for slow reader {i} ({peer}); log:\n{log}"
        );
    }
    // The flood was answered, and the honest producer served while it ran.
    assert!(
        tally.sent > 0 && tally.ok + tally.busy == tally.sent && tally.other == 0,
        "flood answers: {tally:?}"
    );
    assert!(
        ok_during >= HONEST_DURING,
        "only {ok_during} honest sends got SEND_OK during the abuse"
    );
    honest.wait_ok(HONEST_DURING);
    let failures = honest.finish();
    assert!(failures.is_empty(), "honest sends failed: {failures:?}");
    let (vm_after, anon_after) = rss(&b);
    println!("mqbroker after: VmRSS {vm_after} kB, RssAnon {anon_after} kB");
}
