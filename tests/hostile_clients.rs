//! Hostile and silent clients against the real `mqbroker` and `mqnamesrv`: peers that
//! announce huge frames and send a few bytes must not take the server's memory, peers that
//! trickle big frames are closed once the server-wide budget for incomplete frames is spent,
//! and silent sockets are closed after `channel_expired_timeout`, while well-behaved
//! clients keep working throughout.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actimq::admin::AdminClient;
use actimq::internals::protocol::message::{PullMessageRequestHeader, SendMessageRequestHeader};
use actimq::internals::protocol::{Frame, FrameCodec, NoHeader, RequestCode};
use bytes::{Bytes, BytesMut};
use common::process::{broker, broker_config, eventually, namesrv, Proc};
use tokio_util::codec::{Decoder, Encoder};

const TIMEOUT: Duration = Duration::from_secs(10);
/// Hostile connections per memory test.
const HOSTILE: usize = 500;
/// What the server's anonymous memory must stay under while they are open.
const RSS_LIMIT_KB: u64 = 64 * 1024;

/// The server's resident anonymous memory (heap and the like), in KiB.
fn rss_anon_kb(p: &Proc) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc/PID/status")
}

/// Lets this process (and the servers it starts) open `n` more sockets.
fn raise_fd_limit(n: u64) {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain libc calls on a properly initialised struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < n + 256 {
            lim.rlim_cur = lim.rlim_max.min(n * 2 + 1024);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
    }
    assert!(
        lim.rlim_cur >= n + 256,
        "RLIMIT_NOFILE {} too low",
        lim.rlim_cur
    );
}

/// Opens `n` sockets that each announce a frame of 16 MiB - 1 bytes and send ten of them.
fn open_huge_frame_prefixes(addr: &str, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|_| {
            let mut s = TcpStream::connect(addr).unwrap();
            s.write_all(&(16 * 1024 * 1024 - 1u32).to_be_bytes())
                .unwrap();
            s.write_all(b"0123456789").unwrap();
            s
        })
        .collect()
}

/// Samples the server's RssAnon until `until` says stop, returning the peak.
fn peak_rss_while(p: &Proc, mut until: impl FnMut() -> bool) -> u64 {
    let mut peak = 0;
    loop {
        let now = rss_anon_kb(p);
        peak = peak.max(now);
        assert!(
            now < RSS_LIMIT_KB,
            "{} RssAnon {now} kB is over {RSS_LIMIT_KB} kB",
            p.name
        );
        if until() {
            return peak;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A client that keeps doing `round` (one request and its check) in its own actix system
/// until told to stop; counts the rounds. Panics (failing the join) on the first failure.
struct Busy {
    stop: Arc<AtomicBool>,
    rounds: Arc<AtomicU64>,
    thread: JoinHandle<()>,
}

impl Busy {
    fn start<F, Fut>(namesrv: &str, round: F) -> Busy
    where
        F: Fn(AdminClient, u64) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = AdminClient>,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(AtomicU64::new(0));
        let (stop2, rounds2, ns) = (Arc::clone(&stop), Arc::clone(&rounds), namesrv.to_owned());
        let thread = std::thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let mut admin = AdminClient::new(&ns, TIMEOUT);
                let mut i = 0;
                while !stop2.load(Ordering::Relaxed) {
                    admin = round(admin, i).await;
                    i += 1;
                    rounds2.fetch_add(1, Ordering::Relaxed);
                }
            })
        });
        Busy {
            stop,
            rounds,
            thread,
        }
    }

    fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Waits until `more` rounds past the current count have succeeded.
    fn wait_rounds(&self, more: u64) {
        let target = self.rounds() + more;
        eventually(TIMEOUT, "the honest client's rounds", || {
            assert!(!self.thread.is_finished(), "the honest client failed");
            (self.rounds() >= target).then_some(())
        });
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the honest client never failed");
        self.rounds.load(Ordering::Relaxed)
    }
}

/// A producer-and-consumer round trip against `broker`: send one message, pull it back.
fn send_and_pull(
    broker: String,
) -> impl Fn(AdminClient, u64) -> std::pin::Pin<Box<dyn std::future::Future<Output = AdminClient>>> + Send
{
    move |mut admin, i| {
        let broker = broker.clone();
        Box::pin(async move {
            let body = Bytes::from(format!("honest-{i}"));
            let send = SendMessageRequestHeader {
                producer_group: "honest".into(),
                topic: "Honest".into(),
                default_topic: "TBW102".into(),
                default_topic_queue_nums: 4,
                queue_id: 0,
                born_timestamp: 1,
                ..Default::default()
            };
            let r = admin.send(&broker, &send, body.clone()).await.unwrap();
            let pull = PullMessageRequestHeader {
                consumer_group: "honest".into(),
                topic: "Honest".into(),
                queue_id: 0,
                queue_offset: r.queue_offset,
                max_msg_nums: 1,
                ..Default::default()
            };
            let p = admin.pull(&broker, &pull).await.unwrap();
            assert_eq!(p.messages[0].body, body);
            admin
        })
    }
}

/// The socket was closed by the server: EOF or a reset.
fn closed_by_server(mut s: &TcpStream, deadline: Instant) -> bool {
    let left = deadline.saturating_duration_since(Instant::now());
    s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
        .unwrap();
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Err(e) if matches!(e.kind(), ErrorKind::ConnectionReset | ErrorKind::BrokenPipe) => true,
        _ => false,
    }
}

#[test]
fn broker_memory_stays_bounded_under_500_huge_frame_prefixes() {
    raise_fd_limit(HOSTILE as u64);
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 120_000);
    let cfg = broker_config(dir.path(), "broker-m", "");
    let b = broker(&cfg, &ns.addr);
    let honest = Busy::start(&ns.addr, send_and_pull(b.addr.clone()));
    honest.wait_rounds(20);
    let before = rss_anon_kb(&b);

    let hostile = open_huge_frame_prefixes(&b.addr, HOSTILE);
    // The broker's one actor thread serves the honest client after the reads queued before
    // its requests, so 200 more rounds and two seconds see every hostile prefix read.
    let started = Instant::now();
    let target = honest.rounds() + 200;
    let peak = peak_rss_while(&b, || {
        assert!(!honest.thread.is_finished(), "the honest client failed");
        honest.rounds() >= target && started.elapsed() >= Duration::from_secs(2)
    });
    drop(hostile);
    honest.wait_rounds(20);
    let after = rss_anon_kb(&b);
    let rounds = honest.finish();
    eprintln!(
        "mqbroker RssAnon: {before} kB before, peak {peak} kB with {HOSTILE} hostile \
         connections, {after} kB after they closed; {rounds} honest round trips"
    );
}

#[test]
fn namesrv_memory_stays_bounded_under_500_huge_frame_prefixes() {
    raise_fd_limit(HOSTILE as u64);
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 120_000);
    let cfg = broker_config(dir.path(), "broker-n", "");
    let _b = broker(&cfg, &ns.addr);
    // A client asking the name server for the cluster, as admin tools and clients do.
    let honest = Busy::start(&ns.addr, |mut admin, _| async move {
        admin.cluster_info().await.unwrap();
        admin
    });
    honest.wait_rounds(20);
    let before = rss_anon_kb(&ns);

    let hostile = open_huge_frame_prefixes(&ns.addr, HOSTILE);
    let started = Instant::now();
    let target = honest.rounds() + 200;
    let peak = peak_rss_while(&ns, || {
        assert!(!honest.thread.is_finished(), "the honest client failed");
        honest.rounds() >= target && started.elapsed() >= Duration::from_secs(2)
    });
    drop(hostile);
    honest.wait_rounds(20);
    let after = rss_anon_kb(&ns);
    let rounds = honest.finish();
    eprintln!(
        "mqnamesrv RssAnon: {before} kB before, peak {peak} kB with {HOSTILE} hostile \
         connections, {after} kB after they closed; {rounds} honest round trips"
    );
}

#[test]
fn silent_sockets_are_closed_after_channel_expired_timeout() {
    const SILENT: usize = 200;
    raise_fd_limit(SILENT as u64);
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 120_000);
    let cfg = broker_config(dir.path(), "broker-s", "channel_expired_timeout = 2000");
    let b = broker(&cfg, &ns.addr);

    // One connection that keeps talking (a request every 250 ms) on the same socket.
    let stop = Arc::new(AtomicBool::new(false));
    let active = {
        let (stop, addr) = (Arc::clone(&stop), b.addr.clone());
        std::thread::spawn(move || {
            let mut s = TcpStream::connect(&addr).unwrap();
            s.set_read_timeout(Some(TIMEOUT)).unwrap();
            let (mut codec, mut buf, mut answers) = (FrameCodec::default(), BytesMut::new(), 0u32);
            while !stop.load(Ordering::Relaxed) {
                let mut out = BytesMut::new();
                let req = Frame::request(
                    RequestCode::GetAllTopicConfig,
                    answers,
                    &NoHeader {},
                    Bytes::new(),
                )
                .unwrap();
                codec.encode(req, &mut out).unwrap();
                s.write_all(&out)
                    .expect("the active connection is still open");
                loop {
                    if let Some(f) = codec.decode(&mut buf).unwrap() {
                        assert_eq!(f.opaque, answers);
                        break;
                    }
                    let mut chunk = [0u8; 4096];
                    let n = s.read(&mut chunk).unwrap();
                    assert!(n > 0, "the broker closed the active connection");
                    buf.extend_from_slice(&chunk[..n]);
                }
                answers += 1;
                std::thread::sleep(Duration::from_millis(250));
            }
            answers
        })
    };

    let opened = Instant::now();
    let silent: Vec<TcpStream> = (0..SILENT)
        .map(|_| TcpStream::connect(&b.addr).unwrap())
        .collect();
    // Not before the timeout: the first socket is still open well into it.
    assert!(
        !closed_by_server(&silent[0], opened + Duration::from_millis(1500)),
        "a silent socket was closed before channel_expired_timeout"
    );
    // And all of them within 1.25 times it, plus slack for a loaded machine.
    let deadline = opened + Duration::from_secs(8);
    for (i, s) in silent.iter().enumerate() {
        assert!(
            closed_by_server(s, deadline),
            "silent socket {i} still open {:?} after connecting",
            opened.elapsed()
        );
    }
    let closed_after = opened.elapsed();
    stop.store(true, Ordering::Relaxed);
    let answers = active.join().expect("the active connection stayed open");
    assert!(
        answers >= 3,
        "only {answers} answers on the active connection"
    );
    eprintln!("{SILENT} silent sockets closed within {closed_after:?}; the active one got {answers} answers");
}

#[test]
fn trickled_big_frames_are_cut_at_the_budget() {
    // A 4 MiB budget; 12 peers each send 1 MiB of a 3 MiB frame and stop there.
    const PEERS: usize = 12;
    raise_fd_limit(PEERS as u64);
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 120_000);
    let cfg = broker_config(
        dir.path(),
        "broker-t",
        "max_message_size = 1048576\nmax_frame_size = 4194304\nmax_incomplete_frame_bytes = 4194304",
    );
    let b = broker(&cfg, &ns.addr);
    let honest = Busy::start(&ns.addr, send_and_pull(b.addr.clone()));
    honest.wait_rounds(5);

    let chunk = vec![7u8; 1024 * 1024];
    let peers: Vec<TcpStream> = (0..PEERS)
        .map(|_| {
            let mut s = TcpStream::connect(&b.addr).unwrap();
            s.write_all(&(3 * 1024 * 1024u32).to_be_bytes()).unwrap();
            s.write_all(&chunk).unwrap();
            s
        })
        .collect();
    // At most four 1 MiB frames fit: the others are closed, and soon.
    let closed = peers
        .iter()
        .filter(|s| closed_by_server(s, Instant::now() + Duration::from_secs(2)))
        .count();
    assert!(closed >= PEERS - 4, "only {closed} of {PEERS} closed");
    honest.wait_rounds(20);
    honest.finish();
    let log = b.log_text();
    assert!(
        log.contains("max_incomplete_frame_bytes") && log.contains("127.0.0.1:"),
        "evictions are logged with the peer; log:\n{log}"
    );
    // Throttled: a dozen evictions in a burst make far fewer lines.
    let lines = log
        .lines()
        .filter(|l| l.contains("largest incomplete frames"))
        .count();
    assert!((1..PEERS - 4).contains(&lines), "{lines} eviction lines");
}
