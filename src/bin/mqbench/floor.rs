//! `mqbench floor`: this machine's own round-trip floor at a fixed rate, with no broker.
//!
//! An echo server runs as a process of its own (this binary, `mqbench floor-echo`), placed
//! and scheduled as a broker process would be, on one event-loop thread as the broker's actor
//! thread is. It answers every request of `size` bytes with a 64-byte answer (about a send
//! answer's size). The client keeps the producer's open-loop schedule (the same timerfd
//! ticker, latency measured from each send's scheduled time) over one loopback TCP
//! connection. Whatever latency this measures is the machine's: timer and socket wake-ups,
//! halted vCPUs, the host's scheduling. Run beside `mqbench producer --rate`, it tells that
//! part of a latency figure from the broker's. It opens no connection but its own and never
//! talks to a broker.

use super::*;

use std::collections::VecDeque;

use producer::Ticker;
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Bytes of the echo server's answer to each request.
const ANSWER_LEN: usize = 64;
/// How long the client waits for the answers still due after its last send.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

struct FloorStats {
    sent: u64,
    acked: u64,
    hist: Histogram<u64>,
}

#[allow(clippy::too_many_arguments)]
pub(super) async fn run_floor(
    size: usize,
    inflight: usize,
    count: Option<u64>,
    duration: Option<u64>,
    rate: u64,
    server_busy_poll: Duration,
    json: bool,
) -> Result<(), String> {
    if rate == 0 {
        return Err("--rate must be at least 1".into());
    }
    if size == 0 {
        return Err(
            "--size must be at least 1 byte: the echo server answers whole requests".into(),
        );
    }
    let (count, duration) = limits(count, duration);
    let mut server = EchoProcess::start(size, server_busy_poll)?;
    let addr = server.addr;

    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect to the echo server at {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("TCP_NODELAY: {e}"))?;
    let (read_half, mut write_half) = stream.into_split();

    let stats = Rc::new(RefCell::new(FloorStats {
        sent: 0,
        acked: 0,
        hist: histogram(),
    }));
    // Scheduled times of the requests sent and not yet answered, oldest first: the server
    // answers in order, so each answer belongs to the front one.
    let pending: Rc<RefCell<VecDeque<Instant>>> = Rc::default();
    let window = Arc::new(tokio::sync::Semaphore::new(inflight.max(1)));
    let reader = {
        let (stats, pending, window) =
            (Rc::clone(&stats), Rc::clone(&pending), Arc::clone(&window));
        actix_rt::spawn(async move {
            let mut answers = BufReader::with_capacity(64 * 1024, read_half);
            let mut answer = [0u8; ANSWER_LEN];
            while answers.read_exact(&mut answer).await.is_ok() {
                actimq::internals::actors::busy_poll::note_activity();
                let Some(scheduled) = pending.borrow_mut().pop_front() else {
                    break;
                };
                let mut s = stats.borrow_mut();
                s.acked += 1;
                s.hist
                    .saturating_record((scheduled.elapsed().as_micros() as u64).max(1));
                window.add_permits(1);
            }
            // No more answers: a send waiting for room in the window must not wait forever.
            window.close();
        })
    };

    let request = vec![b'a'; size];
    let gap = Duration::from_secs_f64(1.0 / rate as f64);
    let ticker = Ticker::every(gap).map_err(|e| format!("cannot start the rate timer: {e}"))?;
    let started = Instant::now();
    let deadline = started + duration;
    let mut n = 0u64;
    'schedule: while n < count {
        let due = ticker
            .tick()
            .await
            .map_err(|e| format!("rate timer failed: {e}"))?;
        for _ in 0..due {
            let scheduled = started + gap * (n + 1) as u32;
            if scheduled > deadline || n >= count {
                break 'schedule;
            }
            match tokio::time::timeout_at(deadline.into(), window.acquire()).await {
                Ok(Ok(permit)) => permit.forget(),
                // The window closed (answers stopped) or stayed full past the deadline.
                Ok(Err(_)) | Err(_) => break 'schedule,
            }
            pending.borrow_mut().push_back(scheduled);
            if let Err(e) = write_half.write_all(&request).await {
                pending.borrow_mut().pop_back();
                tracing::warn!(error = %e, "echo request failed");
                break 'schedule;
            }
            stats.borrow_mut().sent += 1;
            n += 1;
        }
    }
    let last_answer = Instant::now() + DRAIN_GRACE;
    while !pending.borrow().is_empty() && Instant::now() < last_answer {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    // Closing our side ends the server's loop (it reads end of stream) and its process.
    drop(write_half);
    reader.abort();
    server.wait();

    let s = stats.borrow();
    let tps = s.acked as f64 / elapsed;
    if json {
        let counts = (s.sent, s.acked, s.sent - s.acked);
        let v = send_summary("floor", size, inflight, counts, elapsed, tps, &s.hist);
        println!("{v}");
    } else {
        println!(
            "echo floor: sent {} answered {} in {:.2} s; request→answer p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
            s.sent,
            s.acked,
            elapsed,
            s.hist.value_at_quantile(0.5),
            s.hist.value_at_quantile(0.99),
            s.hist.value_at_quantile(0.999),
            s.hist.max()
        );
    }
    if s.acked < s.sent {
        return Err(format!(
            "{} of {} echo requests were not answered within {} s",
            s.sent - s.acked,
            s.sent,
            DRAIN_GRACE.as_secs()
        ));
    }
    Ok(())
}

/// The echo server's process, stopped when dropped.
struct EchoProcess {
    child: std::process::Child,
    addr: std::net::SocketAddr,
}

impl EchoProcess {
    /// Starts `mqbench floor-echo` and reads the address it listens on (its first line).
    fn start(size: usize, busy_poll: Duration) -> Result<EchoProcess, String> {
        use std::io::BufRead;
        let exe = std::env::current_exe()
            .map_err(|e| format!("cannot find this program to start the echo server: {e}"))?;
        let mut child = std::process::Command::new(exe)
            .args([
                "--busy-poll-us",
                &busy_poll.as_micros().to_string(),
                "floor-echo",
                "--size",
                &size.to_string(),
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start the echo server process: {e}"))?;
        let mut line = String::new();
        let read = match child.stdout.take() {
            Some(out) => std::io::BufReader::new(out).read_line(&mut line),
            None => Ok(0),
        };
        let parsed = read
            .map_err(|e| e.to_string())
            .and_then(|_| line.trim().parse().map_err(|e| format!("{e} in {line:?}")));
        match parsed {
            Ok(addr) => Ok(EchoProcess { child, addr }),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(format!("the echo server did not say where it listens: {e}"))
            }
        }
    }

    /// Waits up to a second for the server to end after its client closed, then stops it.
    fn wait(&mut self) {
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for EchoProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// How long the echo server waits for its one client before giving up.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(10);

/// `mqbench floor-echo`: listens on 127.0.0.1 (a free port), prints the address as its first
/// line, then answers one connection's `size`-byte requests in order, each with 64 bytes,
/// until the client closes it. Run by `mqbench floor`; not meant to be started by hand.
pub(super) async fn run_floor_echo(size: usize) -> Result<(), String> {
    if size == 0 {
        return Err("--size must be at least 1 byte".into());
    }
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("echo server address: {e}"))?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        writeln!(out, "{addr}")
            .and_then(|()| out.flush())
            .map_err(|e| format!("cannot report the echo server's address: {e}"))?;
    }
    let (socket, _) = tokio::time::timeout(ACCEPT_TIMEOUT, listener.accept())
        .await
        .map_err(|_| format!("no client within {} s", ACCEPT_TIMEOUT.as_secs()))?
        .map_err(|e| format!("accept: {e}"))?;
    echo(socket, size)
        .await
        .map_err(|e| format!("echo connection failed: {e}"))
}

async fn echo(socket: TcpStream, size: usize) -> std::io::Result<()> {
    socket.set_nodelay(true)?;
    let (read_half, mut write_half) = socket.into_split();
    let mut requests = BufReader::with_capacity(64 * 1024, read_half);
    let mut request = vec![0u8; size];
    let answer = [0u8; ANSWER_LEN];
    loop {
        match requests.read_exact(&mut request).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        actimq::internals::actors::busy_poll::note_activity();
        write_half.write_all(&answer).await?;
    }
}
