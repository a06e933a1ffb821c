//! `mqbench producer`: closed-loop sends with a bounded number in flight, or open-loop sends
//! on a fixed schedule kept by a timerfd; per-second lines and the final summary. Never
//! retries on its own: the producer's retries are part of what is measured.

use super::*;

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
pub(super) async fn run_producer(
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
    delay_level: u32,
    json: bool,
) -> Result<(), String> {
    let (count, duration) = limits(count, duration);
    let client = ClientInstance::start(ClientConfig::new(namesrv)).map_err(|e| e.to_string())?;
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
            m.with_delay_level(delay_level)
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
    {
        let s = stats.borrow();
        let tps = s.acked as f64 / elapsed;
        let mb_s = tps * size as f64 / 1_000_000.0;
        let mode_name = format!("{mode:?}").to_lowercase();
        if json {
            let counts = (s.sent, s.acked, s.failed);
            let v = send_summary(&mode_name, size, inflight, counts, elapsed, tps, &s.hist);
            println!("{v}");
        } else {
            println!(
            "sent {} acked {} failed {} in {:.2} s: {:.0} msgs/s, {:.1} MB/s; send→ack p50 {} µs, p99 {} µs, p99.9 {} µs, max {} µs",
            s.sent, s.acked, s.failed, elapsed, tps, mb_s,
            s.hist.value_at_quantile(0.5), s.hist.value_at_quantile(0.99), s.hist.value_at_quantile(0.999), s.hist.max()
        );
        }
    }
    if mode == Mode::Oneway {
        // A one-way send is done once handed to its connection, and no answer says when
        // the connection wrote it: give the last ones a moment before the process exits
        // (a loaded machine was seen to lose the tail of a run without it).
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    Ok(())
}

/// A periodic timer with microsecond precision on the runtime thread (Linux timerfd).
pub(super) struct Ticker {
    fd: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
}

impl Ticker {
    pub(super) fn every(period: Duration) -> std::io::Result<Ticker> {
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
    pub(super) async fn tick(&self) -> std::io::Result<u64> {
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
