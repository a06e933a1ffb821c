//! `mqbench`: load generator in the spirit of RocketMQ's benchmark tools.
//!
//! `mqbench producer` sends with a bounded number in flight (closed loop) or at a fixed rate
//! (open loop: latency is measured from each send's scheduled time, so queueing is not
//! hidden); `mqbench consumer` consumes with a push consumer. Both print a line per second
//! and a summary with HdrHistogram percentiles; `--json` prints one JSON object as the last
//! line instead. Every loop is bounded by `--count` and `--duration`.

// glibc malloc showed up as ~10 % of the hot path in profiles (fragmentation between
// threads); mimalloc's thread-local free lists take that off.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::cell::RefCell;
use std::process::ExitCode;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actimq::{
    ClientConfig, ClientInstance, ConsumeFromWhere, ConsumeResult, Message, MessageListener,
    MessageModel, Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
};
use bytes::{BufMut, Bytes, BytesMut};
use clap::{Parser, Subcommand, ValueEnum};
use hdrhistogram::Histogram;

/// actimq benchmark tool.
#[derive(Parser, Debug)]
#[command(name = "mqbench", version, about)]
struct Args {
    /// Busy-poll this process's event loop for this many microseconds after each frame
    /// instead of sleeping (lower latency, a busy core while traffic flows); 0 = off.
    #[arg(long = "busy-poll-us", global = true, default_value_t = 0)]
    busy_poll_us: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    Sync,
    Async,
    Oneway,
    Batch,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Model {
    Clustering,
    Broadcasting,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Send messages and measure send→ack latency.
    Producer {
        /// Name servers.
        #[arg(short = 'n', long = "namesrvAddr", env = "NAMESRV_ADDR")]
        namesrv: String,
        /// Topic.
        #[arg(short = 't', long = "topic", default_value = "BenchmarkTest")]
        topic: String,
        /// Body size in bytes.
        #[arg(short = 's', long = "size", default_value_t = 1024)]
        size: usize,
        /// Messages sent and not yet acknowledged, at most.
        #[arg(short = 'w', long = "inflight", default_value_t = 256)]
        inflight: usize,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<u64>,
        /// Send mode.
        #[arg(long, value_enum, default_value_t = Mode::Async)]
        mode: Mode,
        /// Messages per batch with `--mode batch`.
        #[arg(long = "batch-size", default_value_t = 32)]
        batch_size: usize,
        /// Open loop: one send every 1/rate seconds.
        #[arg(long)]
        rate: Option<u64>,
        /// Give every message a key (indexed by the broker).
        #[arg(short = 'k', long = "keys")]
        keys: bool,
        /// Print one JSON object as the last line.
        #[arg(long)]
        json: bool,
    },
    /// Consume messages and measure born→delivered and stored→delivered latency.
    Consumer {
        /// Name servers.
        #[arg(short = 'n', long = "namesrvAddr", env = "NAMESRV_ADDR")]
        namesrv: String,
        /// Topic.
        #[arg(short = 't', long = "topic", default_value = "BenchmarkTest")]
        topic: String,
        /// Consumer group.
        #[arg(short = 'g', long = "group", default_value = "benchmark_consumer")]
        group: String,
        /// Message model.
        #[arg(long, value_enum, default_value_t = Model::Clustering)]
        model: Model,
        /// Stop after this many messages.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<u64>,
        /// Start at the oldest message instead of the newest.
        #[arg(long = "from-beginning")]
        from_beginning: bool,
        /// Print one JSON object as the last line.
        #[arg(long)]
        json: bool,
    },
}

fn histogram() -> Histogram<u64> {
    // 1 µs .. 1 h with 3 significant digits; the bounds are constants, so this does not fail.
    match Histogram::new_with_bounds(1, 3_600_000_000, 3) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("mqbench: cannot create a latency histogram: {e}");
            std::process::exit(1)
        }
    }
}

fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    serde_json::json!({
        "p50_us": h.value_at_quantile(0.50),
        "p99_us": h.value_at_quantile(0.99),
        "p999_us": h.value_at_quantile(0.999),
        "max_us": h.max(),
    })
}

fn limits(count: Option<u64>, duration: Option<u64>) -> (u64, Duration) {
    let count = count.unwrap_or(u64::MAX);
    // Every run is bounded in time: without --duration, one hour at most.
    let duration =
        Duration::from_secs(duration.unwrap_or(if count == u64::MAX { 60 } else { 3600 }));
    (count, duration)
}

struct ProducerStats {
    sent: u64,
    acked: u64,
    failed: u64,
    hist: Histogram<u64>,
    second_max_us: u64,
    second_sum_us: u64,
    second_n: u64,
}

#[allow(clippy::too_many_arguments)]
async fn run_producer(
    namesrv: String,
    topic: String,
    size: usize,
    inflight: usize,
    count: Option<u64>,
    duration: Option<u64>,
    mode: Mode,
    batch_size: usize,
    rate: Option<u64>,
    keys: bool,
    json: bool,
) -> Result<(), String> {
    let (count, duration) = limits(count, duration);
    let client = ClientInstance::start(ClientConfig::new(namesrv));
    let mut config = ProducerConfig::new("benchmark_producer");
    config.max_message_size = config.max_message_size.max(size * batch_size.max(1));
    let producer = Producer::start(client, config);
    let body = Bytes::from(vec![b'a'; size]);
    let per_send = if mode == Mode::Batch {
        batch_size.max(1) as u64
    } else {
        1
    };
    let stats = Rc::new(RefCell::new(ProducerStats {
        sent: 0,
        acked: 0,
        failed: 0,
        hist: histogram(),
        second_max_us: 0,
        second_sum_us: 0,
        second_n: 0,
    }));
    let issued = Rc::new(RefCell::new(0u64));
    let started = Instant::now();
    let deadline = started + duration;
    let permits = (inflight as u64 / per_send).max(1) as usize;
    let window = Arc::new(tokio::sync::Semaphore::new(permits));

    let stamp_bodies = rate.is_some_and(|r| r > 0);
    let make = {
        let (topic, body) = (topic.clone(), body.clone());
        move |i: u64| {
            // Open-loop runs measure producer→consumer latency: the body carries the send
            // time in microseconds (the born timestamp has only milliseconds).
            let body = if stamp_bodies {
                stamped_body(&body)
            } else {
                body.clone()
            };
            let mut m = Message::new(topic.clone(), body);
            if keys {
                m = m.with_key(format!("bench-{i}"));
            }
            m
        }
    };
    let send_one = {
        let producer = producer.clone();
        let stats = Rc::clone(&stats);
        move |first: u64, scheduled: Instant| {
            let producer = producer.clone();
            let stats = Rc::clone(&stats);
            let msgs: Vec<Message> = (first..first + per_send).map(&make).collect();
            async move {
                let n = msgs.len() as u64;
                let outcome = match mode {
                    Mode::Sync | Mode::Async => match msgs.into_iter().next() {
                        Some(m) => producer.send(m).await.map(|_| ()),
                        None => Ok(()),
                    },
                    Mode::Oneway => match msgs.into_iter().next() {
                        Some(m) => producer.send_oneway(m).await,
                        None => Ok(()),
                    },
                    Mode::Batch => producer.send_batch(msgs).await.map(|_| ()),
                };
                if let Err(e) = &outcome {
                    tracing::warn!(error = %e, "send failed");
                }
                let ok = outcome.is_ok();
                let us = scheduled.elapsed().as_micros() as u64;
                let mut s = stats.borrow_mut();
                s.sent += n;
                if ok {
                    s.acked += n;
                    s.hist.saturating_record(us.max(1));
                    s.second_max_us = s.second_max_us.max(us);
                    s.second_sum_us += us;
                    s.second_n += 1;
                } else {
                    s.failed += n;
                }
            }
        }
    };

    // Per-second report.
    let reporter = {
        let stats = Rc::clone(&stats);
        actix_rt::spawn(async move {
            let mut last_acked = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            loop {
                tick.tick().await;
                let mut s = stats.borrow_mut();
                if !json {
                    let avg = if s.second_n > 0 {
                        s.second_sum_us as f64 / s.second_n as f64 / 1000.0
                    } else {
                        0.0
                    };
                    println!(
                        "Send TPS: {} Max RT(ms): {:.3} Average RT(ms): {:.3} Send Failed: {} Response Failed: 0",
                        s.acked - last_acked,
                        s.second_max_us as f64 / 1000.0,
                        avg,
                        s.failed
                    );
                }
                last_acked = s.acked;
                s.second_max_us = 0;
                s.second_sum_us = 0;
                s.second_n = 0;
            }
        })
    };

    let mut tasks = Vec::new();
    match rate {
        Some(rate) if rate > 0 => {
            // Open loop: sends are scheduled, never held back by slow answers (beyond -w).
            // Send n is due at `started + gap * (n + 1)`. The schedule is kept by a timerfd
            // on this runtime thread: tokio's timer ticks in milliseconds, which would add up
            // to 1 ms to every measured latency, and a timer thread would add a thread
            // hand-over (a wake-up, tens of microseconds here) to every send.
            let gap = Duration::from_secs_f64(per_send as f64 / rate as f64);
            let ticker =
                Ticker::every(gap).map_err(|e| format!("cannot start the rate timer: {e}"))?;
            let mut n = 0u64;
            'schedule: while n * per_send < count {
                let due = match ticker.tick().await {
                    Ok(due) => due,
                    Err(e) => return Err(format!("rate timer failed: {e}")),
                };
                for _ in 0..due {
                    let scheduled = started + gap * (n + 1) as u32;
                    if scheduled > deadline || n * per_send >= count {
                        break 'schedule;
                    }
                    let Ok(permit) = Arc::clone(&window).acquire_owned().await else {
                        break 'schedule;
                    };
                    let fut = send_one(n * per_send, scheduled);
                    // Not kept in `tasks`: a handle keeps its finished task's memory until it
                    // is awaited, and a long run would grow the client by a task per message
                    // (the fresh pages then show up as client stalls in the latency figures).
                    actix_rt::spawn(async move {
                        fut.await;
                        drop(permit);
                    });
                    n += 1;
                }
            }
            // Every send holds a permit until it finishes: taking them all waits for the last.
            let _ = window.acquire_many(permits as u32).await;
        }
        _ => {
            let workers = (inflight as u64 / per_send).max(1);
            for _ in 0..workers {
                let (issued, send_one) = (Rc::clone(&issued), send_one.clone());
                tasks.push(actix_rt::spawn(async move {
                    loop {
                        let first = {
                            let mut n = issued.borrow_mut();
                            if *n >= count || Instant::now() >= deadline {
                                break;
                            }
                            let f = *n;
                            *n += per_send;
                            f
                        };
                        send_one(first, Instant::now()).await;
                    }
                }));
            }
        }
    }
    for t in tasks {
        let _ = t.await;
    }
    reporter.abort();
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let s = stats.borrow();
    let tps = s.acked as f64 / elapsed;
    let mb_s = tps * size as f64 / 1_000_000.0;
    let mode_name = format!("{mode:?}").to_lowercase();
    if json {
        let mut v = serde_json::json!({
            "mode": mode_name, "size": size, "inflight": inflight, "sent": s.sent, "acked": s.acked,
            "failed": s.failed, "duration_s": elapsed, "tps": tps, "mb_s": mb_s,
            "cpu_s": process_cpu_seconds(),
        });
        if let (Some(o), serde_json::Value::Object(p)) = (v.as_object_mut(), percentiles(&s.hist)) {
            o.extend(p);
        }
        println!("{v}");
    } else {
        println!(
            "sent {} acked {} failed {} in {:.2} s: {:.0} msgs/s, {:.1} MB/s; send→ack p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
            s.sent, s.acked, s.failed, elapsed, tps, mb_s,
            s.hist.value_at_quantile(0.5), s.hist.value_at_quantile(0.99), s.hist.value_at_quantile(0.999), s.hist.max()
        );
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn run_consumer(
    namesrv: String,
    topic: String,
    group: String,
    model: Model,
    count: Option<u64>,
    duration: Option<u64>,
    from_beginning: bool,
    json: bool,
) -> Result<(), String> {
    let (count, duration) = limits(count, duration);
    let client = ClientInstance::start(ClientConfig::new(namesrv));
    let mut config = PushConsumerConfig::new(group).subscribe(topic, "*");
    config.message_model = if model == Model::Broadcasting {
        MessageModel::Broadcasting
    } else {
        MessageModel::Clustering
    };
    config.consume_from_where = if from_beginning {
        ConsumeFromWhere::FirstOffset
    } else {
        ConsumeFromWhere::LastOffset
    };
    config.consume_message_batch_max_size = 32;
    config.persist_consumer_offset_interval = Duration::from_secs(1);
    let received = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let hists = Arc::new(Mutex::new((histogram(), histogram())));
    let (r, b, h) = (
        Arc::clone(&received),
        Arc::clone(&bytes),
        Arc::clone(&hists),
    );
    let listener = MessageListener::from_fn(move |msgs| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros() as i64)
            .unwrap_or(0);
        if let Ok(mut h) = h.lock() {
            for m in msgs {
                let born_us = sent_micros(m.body()).unwrap_or(m.born_timestamp() * 1000);
                h.0.saturating_record((now - born_us).max(1) as u64);
                h.1.saturating_record((now - m.store_timestamp() * 1000).max(1) as u64);
            }
        }
        r.fetch_add(msgs.len() as u64, Ordering::Relaxed);
        b.fetch_add(
            msgs.iter().map(|m| m.body().len() as u64).sum(),
            Ordering::Relaxed,
        );
        ConsumeResult::Success
    });
    let consumer = PushConsumer::start(client, config, listener)
        .await
        .map_err(|e| e.to_string())?;
    let started = Instant::now();
    let mut last = 0;
    let mut first_at: Option<Instant> = None;
    while received.load(Ordering::Relaxed) < count && started.elapsed() < duration {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = received.load(Ordering::Relaxed);
        if now > 0 && first_at.is_none() {
            first_at = Some(Instant::now());
        }
        if !json
            && started.elapsed().as_millis() / 1000
                != (started.elapsed() - Duration::from_millis(100)).as_millis() / 1000
        {
            println!("Consume TPS: {} Total: {now}", now - last);
            last = now;
        }
    }
    consumer.shutdown().await;
    let got = received.load(Ordering::Relaxed);
    let elapsed = first_at
        .map(|f| f.elapsed())
        .unwrap_or_else(|| started.elapsed())
        .as_secs_f64()
        .max(1e-9);
    let tps = got as f64 / elapsed;
    let mb_s = bytes.load(Ordering::Relaxed) as f64 / elapsed / 1_000_000.0;
    let (born, stored) = hists
        .lock()
        .map(|h| (h.0.clone(), h.1.clone()))
        .map_err(|_| "histogram lock poisoned".to_string())?;
    if json {
        let v = serde_json::json!({
            "received": got, "duration_s": elapsed, "tps": tps, "mb_s": mb_s,
            "cpu_s": process_cpu_seconds(), "p50_us": born.value_at_quantile(0.5), "p99_us": born.value_at_quantile(0.99),
            "p999_us": born.value_at_quantile(0.999), "max_us": born.max(),
            "born_to_delivered": percentiles(&born), "stored_to_delivered": percentiles(&stored),
        });
        println!("{v}");
    } else {
        println!(
            "received {got} in {elapsed:.2} s: {tps:.0} msgs/s, {mb_s:.1} MB/s; born→delivered p50 {} µs p99 {} µs max {} µs; stored→delivered p50 {} µs p99 {} µs",
            born.value_at_quantile(0.5), born.value_at_quantile(0.99), born.max(), stored.value_at_quantile(0.5), stored.value_at_quantile(0.99)
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    actimq::cli::init_tracing_with_default("warn");
    let args = Args::parse();
    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        actimq::actors::busy_poll::start(Duration::from_micros(args.busy_poll_us));
        match args.command {
            Command::Producer {
                namesrv,
                topic,
                size,
                inflight,
                count,
                duration,
                mode,
                batch_size,
                rate,
                keys,
                json,
            } => {
                run_producer(
                    namesrv, topic, size, inflight, count, duration, mode, batch_size, rate, keys,
                    json,
                )
                .await
            }
            Command::Consumer {
                namesrv,
                topic,
                group,
                model,
                count,
                duration,
                from_beginning,
                json,
            } => {
                run_consumer(
                    namesrv,
                    topic,
                    group,
                    model,
                    count,
                    duration,
                    from_beginning,
                    json,
                )
                .await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mqbench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Marks a body whose next 8 bytes are the send time in microseconds since the epoch.
const STAMP_MAGIC: &[u8; 8] = b"MQBENCH1";

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// A copy of `template` (same size) starting with the stamp and the current time.
fn stamped_body(template: &Bytes) -> Bytes {
    if template.len() < 16 {
        return template.clone();
    }
    let mut b = BytesMut::with_capacity(template.len());
    b.put_slice(STAMP_MAGIC);
    b.put_i64(now_micros());
    b.put_slice(&template[16..]);
    b.freeze()
}

/// The send time a stamped body carries.
fn sent_micros(body: &[u8]) -> Option<i64> {
    let stamp = body.get(8..16)?;
    (body.starts_with(STAMP_MAGIC)).then(|| i64::from_be_bytes(stamp.try_into().unwrap_or([0; 8])))
}

/// CPU time this process has used (user and system), in seconds: on a shared machine whose
/// speed drifts, CPU per message is a steadier measure of the client's cost than its rate.
fn process_cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid value for it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if rc != 0 {
        return 0.0;
    }
    // SAFETY: initialised above (zeroed, then filled by the successful call).
    let usage = unsafe { usage.assume_init() };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// A periodic timer with microsecond precision on the runtime thread (Linux timerfd).
struct Ticker {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

impl Ticker {
    fn every(period: Duration) -> std::io::Result<Ticker> {
        use std::os::fd::FromRawFd;
        // SAFETY: plain system calls; the descriptor is owned by the OwnedFd from here on.
        let raw = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if raw < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let fd = unsafe { std::os::fd::OwnedFd::from_raw_fd(raw) };
        let spec = libc::timespec {
            tv_sec: period.as_secs() as libc::time_t,
            tv_nsec: period.subsec_nanos().max(1) as libc::c_long,
        };
        let value = libc::itimerspec {
            it_interval: spec,
            it_value: spec,
        };
        let rc = unsafe { libc::timerfd_settime(raw, 0, &value, std::ptr::null_mut()) };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: `fd` is an open timerfd owned by the OwnedFd, which the AsyncFd owns until
        // it is dropped, so the descriptor stays valid and the same for its whole life.
        let fd = unsafe { tokio::io::unix::AsyncFd::register(fd) }?;
        Ok(Ticker { fd })
    }

    /// Waits for the next period; returns how many periods ended since the last call.
    async fn tick(&self) -> std::io::Result<u64> {
        use std::os::fd::AsRawFd;
        loop {
            let mut ready = self.fd.readable().await?;
            let read = ready.try_io(|fd| {
                let mut count = [0u8; 8];
                // SAFETY: reads 8 bytes into a buffer of 8 bytes.
                let n = unsafe { libc::read(fd.as_raw_fd(), count.as_mut_ptr().cast(), 8) };
                if n == 8 {
                    Ok(u64::from_ne_bytes(count))
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
            match read {
                Ok(result) => return result,
                Err(_would_block) => continue,
            }
        }
    }
}
