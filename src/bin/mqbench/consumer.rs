//! `mqbench consumer`: a push consumer counting what it receives, with born→delivered and
//! stored→delivered latency; per-second lines and the final summary. It only measures:
//! it never sends, and consumes whatever the group is given.
//!
//! Born→delivered uses the microsecond send time `mqbench producer --rate` writes into its
//! bodies (the born timestamp otherwise). Stored→delivered can only use the broker's store
//! timestamp, which has millisecond resolution as in RocketMQ's layout: it reads up to 1 ms
//! high, and at sub-millisecond latencies it exceeds born→delivered.
//!
//! Delayed messages (sent with `mqbench producer --delay-level`) carry the due time the
//! broker stamped when it delivered them (`TIMER_DELIVER_MS`: store time plus the level's
//! delay, in ms): for those it also counts any that arrived before their due time and
//! records due→delivered.

use super::*;

#[allow(clippy::too_many_arguments)]
pub(super) async fn run_consumer(
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
    let client = ClientInstance::start(ClientConfig::new(namesrv)).map_err(|e| e.to_string())?;
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
    // A run starts where its own flags say, never at offsets an earlier run left behind:
    // broadcasting offsets (kept in local files) go to a folder of this process alone,
    // removed at the end. Several broadcasting benchmark consumers on one machine then each
    // get every message, as they would on separate machines.
    let own_offsets = (model == Model::Broadcasting)
        .then(|| std::env::temp_dir().join(format!("mqbench-offsets-{}", std::process::id())));
    if let Some(dir) = &own_offsets {
        config.offset_store_dir = dir.clone();
    }
    config.consume_message_batch_max_size = 32;
    config.persist_consumer_offset_interval = Duration::from_secs(1);
    let received = Arc::new(AtomicU64::new(0));
    let bytes = Arc::new(AtomicU64::new(0));
    let hists = Arc::new(Mutex::new((histogram(), histogram())));
    // Delayed messages: how many arrived before their due time, and due→delivered.
    let due = Arc::new(Mutex::new((0u64, 0u64, histogram())));
    let d = Arc::clone(&due);
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
        if let Ok(mut d) = d.lock() {
            for m in msgs {
                let Some(due_ms) = m
                    .property("TIMER_DELIVER_MS")
                    .and_then(|v| v.parse::<i64>().ok())
                else {
                    continue;
                };
                d.0 += 1;
                let late_us = now - due_ms * 1000;
                if late_us < 0 {
                    d.1 += 1;
                }
                d.2.saturating_record(late_us.max(1) as u64);
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
    if let Err(e) = consumer.shutdown().await {
        eprintln!("{e}");
    }
    if let Some(dir) = own_offsets {
        let _ = std::fs::remove_dir_all(dir);
    }
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
    let (delayed, early, late) = due
        .lock()
        .map(|d| (d.0, d.1, d.2.clone()))
        .map_err(|_| "histogram lock poisoned".to_string())?;
    if json {
        let v = serde_json::json!({
            "delayed": delayed, "delayed_early": early, "due_to_delivered": percentiles(&late),
            "received": got, "duration_s": elapsed, "tps": tps, "mb_s": mb_s,
            "cpu_s": process_cpu_seconds(), "p50_us": born.value_at_quantile(0.5), "p99_us": born.value_at_quantile(0.99),
            "p999_us": born.value_at_quantile(0.999), "max_us": born.max(),
            "born_to_delivered": percentiles(&born), "stored_to_delivered": percentiles(&stored),
        });
        println!("{v}");
    } else {
        println!(
            "received {got} in {elapsed:.2} s: {tps:.0} msgs/s, {mb_s:.1} MB/s; born→delivered p50 {} µs p99 {} µs max {} µs; stored→delivered (millisecond store time, up to 1 ms high) p50 {} µs p99 {} µs",
            born.value_at_quantile(0.5), born.value_at_quantile(0.99), born.max(), stored.value_at_quantile(0.5), stored.value_at_quantile(0.99)
        );
        if delayed > 0 {
            println!(
                "delayed {delayed}: {early} before their due time; due→delivered (due time in ms) p50 {} µs p99 {} µs max {} µs",
                late.value_at_quantile(0.5), late.value_at_quantile(0.99), late.max()
            );
        }
    }
    Ok(())
}
