//! `mqbench`: load generator in the spirit of RocketMQ's benchmark tools.
//!
//! `mqbench producer` sends with a bounded number in flight (closed loop) or at a fixed rate
//! (open loop: latency is measured from each send's scheduled time, so queueing is not
//! hidden); `mqbench consumer` consumes with a push consumer. Both print a line per second
//! and a summary with HdrHistogram percentiles; `--json` prints one JSON object as the last
//! line instead. `mqbench floor` measures the machine's own round trip at a rate, with an
//! echo server process in place of a broker. Every loop is bounded by `--count` and `--duration`.

// glibc malloc showed up as ~10 % of the hot path in profiles (fragmentation between
// threads); mimalloc's thread-local free lists take that off.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod chaos;
mod consumer;
mod floor;
mod producer;

use consumer::run_consumer;
use floor::{run_floor, run_floor_echo};
use producer::run_producer;

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
        /// Send every message with this delay level (0 = none): the broker delivers it
        /// once the level's delay has passed; `mqbench consumer` then reports how late
        /// past its due time each arrived.
        #[arg(long = "delay-level", default_value_t = 0)]
        delay_level: u32,
        /// Print one JSON object as the last line.
        #[arg(long)]
        json: bool,
    },
    /// Consume messages and measure born→delivered and stored→delivered latency (the
    /// latter from the broker's millisecond store time, so up to 1 ms high).
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
    /// This machine's round-trip floor: open-loop requests to an echo server process over
    /// loopback TCP, no broker; request→answer latency from each scheduled send time.
    Floor {
        /// Request size in bytes (the answer is 64 bytes).
        #[arg(short = 's', long = "size", default_value_t = 1024)]
        size: usize,
        /// Requests sent and not yet answered, at most.
        #[arg(short = 'w', long = "inflight", default_value_t = 256)]
        inflight: usize,
        /// Stop after this many requests.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this many seconds.
        #[arg(long)]
        duration: Option<u64>,
        /// Requests per second.
        #[arg(long, default_value_t = 5000)]
        rate: u64,
        /// Busy-poll the echo server's event loop for this many microseconds after each
        /// request, as a broker does with `busy_poll_us`; 0 = off.
        #[arg(long = "server-busy-poll-us", default_value_t = 0)]
        server_busy_poll_us: u64,
        /// Print one JSON object as the last line.
        #[arg(long)]
        json: bool,
    },
    /// A reliability audit: a cluster of real processes on loopback, load, seeded kills,
    /// pauses and restarts, then an account of every message (see docs/RELIABILITY.md).
    Chaos(chaos::ChaosArgs),
    /// The echo server of `mqbench floor`, started by it as a process of its own.
    #[command(hide = true)]
    FloorEcho {
        /// Request size in bytes.
        #[arg(long, default_value_t = 1024)]
        size: usize,
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

/// The `--json` summary of a sending run (`mqbench producer`, `mqbench floor`): the counts,
/// the rate, this process's CPU time and the latency percentiles.
fn send_summary(
    mode: &str,
    size: usize,
    inflight: usize,
    (sent, acked, failed): (u64, u64, u64),
    elapsed: f64,
    tps: f64,
    hist: &Histogram<u64>,
) -> serde_json::Value {
    let mut v = serde_json::json!({
        "mode": mode, "size": size, "inflight": inflight, "sent": sent, "acked": acked,
        "failed": failed, "duration_s": elapsed, "tps": tps,
        "mb_s": tps * size as f64 / 1_000_000.0, "cpu_s": process_cpu_seconds(),
    });
    if let (Some(o), serde_json::Value::Object(p)) = (v.as_object_mut(), percentiles(hist)) {
        o.extend(p);
    }
    v
}

fn limits(count: Option<u64>, duration: Option<u64>) -> (u64, Duration) {
    let count = count.unwrap_or(u64::MAX);
    // Every run is bounded in time: without --duration, one hour at most.
    let duration =
        Duration::from_secs(duration.unwrap_or(if count == u64::MAX { 60 } else { 3600 }));
    (count, duration)
}

fn main() -> ExitCode {
    let args = Args::parse();
    // The chaos audit's clients see every fault as warnings (links reset, locks lost): its
    // own lines and the processes' logs in the work folder tell the story instead.
    actimq::internals::cli::init_tracing_with_default(match args.command {
        Command::Chaos(_) => "error",
        _ => "warn",
    });
    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        actimq::internals::actors::busy_poll::start(Duration::from_micros(args.busy_poll_us));
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
                delay_level,
                json,
            } => {
                run_producer(
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
                    delay_level,
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
            Command::Floor {
                size,
                inflight,
                count,
                duration,
                rate,
                server_busy_poll_us,
                json,
            } => {
                run_floor(
                    size,
                    inflight,
                    count,
                    duration,
                    rate,
                    Duration::from_micros(server_busy_poll_us),
                    json,
                )
                .await
            }
            Command::FloorEcho { size } => run_floor_echo(size).await,
            Command::Chaos(chaos_args) => chaos::run_chaos(chaos_args).await,
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
