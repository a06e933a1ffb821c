//! Delayed messages: 100 messages sent with delay level 2 reach the consumer once the
//! level's delay has passed since each was stored, not before. The broker's
//! `message_delay_level` is shortened here to `1s 2s 3s` (RocketMQ's default levels are
//! `1s 5s 10s 30s 1m ... 2h`; level 2 is then 5 s).
//!
//! Run it with `cargo run --example delayed`. It ends with a line like
//! `delivered 100 delayed messages, none early, max late 12 ms`.

#[path = "support/setup.rs"]
mod setup;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actimq::server::LocalCluster;
use actimq::{
    ClientConfig, ClientInstance, ConsumeFromWhere, ConsumeResult, Message, MessageListener,
    Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
};

const TOPIC: &str = "Reminders";
const LEVEL: u32 = 2;
const DELAY_MS: i64 = 2_000;
const COUNT: usize = 100;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn main() -> anyhow::Result<()> {
    setup::init_logs("warn");
    let store = tempfile::tempdir()?;
    actix_rt::System::new().block_on(run(store.path().to_owned()))
}

async fn run(store_dir: std::path::PathBuf) -> anyhow::Result<()> {
    let cluster = LocalCluster::start_with(&store_dir, |broker| {
        broker.message_delay_level = "1s 2s 3s".into();
    })
    .await?;
    let ns = cluster.namesrv_addr();
    cluster.create_topic(TOPIC, 4).await?;
    let client = ClientInstance::start(ClientConfig::new(ns))?;

    // Arrival time and due time (store time + delay, stamped by the broker) per body.
    let arrivals: Arc<Mutex<HashMap<String, (i64, i64)>>> = Arc::default();
    let a = Arc::clone(&arrivals);
    let listener = MessageListener::from_fn(move |msgs| {
        let now = now_ms();
        for m in msgs {
            let due = m
                .property("TIMER_DELIVER_MS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if let Ok(mut a) = a.lock() {
                a.entry(String::from_utf8_lossy(m.body()).into_owned())
                    .or_insert((now, due));
            }
        }
        ConsumeResult::Success
    });
    let config = PushConsumerConfig::new("reminder-readers")
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFromWhere::FirstOffset);
    let consumer = PushConsumer::start(client.clone(), config, listener).await?;

    let producer = Producer::start(client.clone(), ProducerConfig::new("reminder-producers"));
    let mut sent_at = HashMap::new();
    for i in 0..COUNT {
        let body = format!("reminder-{i}");
        sent_at.insert(body.clone(), now_ms());
        producer
            .send(Message::new(TOPIC, body).with_delay_level(LEVEL))
            .await?;
    }
    println!("sent {COUNT} messages with delay level {LEVEL} ({DELAY_MS} ms)");

    let deadline = Instant::now() + Duration::from_secs(30);
    while arrivals.lock().map_or(0, |a| a.len()) < COUNT && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    consumer.shutdown().await?;
    producer.shutdown().await;
    ClientInstance::shutdown(&client).await;
    cluster.shutdown().await;

    let arrivals = arrivals
        .lock()
        .map_err(|_| anyhow::anyhow!("a listener panicked"))?
        .clone();
    // Early: before the broker's due time, or before the send began plus the delay (the
    // store time is later than that).
    let early = arrivals
        .iter()
        .filter(|(body, (at, due))| at < due || *at < sent_at[*body] + DELAY_MS)
        .count();
    let max_late = arrivals
        .values()
        .map(|(at, due)| at - due)
        .max()
        .unwrap_or(0);
    let early_text = if early == 0 {
        "none early".to_owned()
    } else {
        format!("{early} early")
    };
    println!(
        "delivered {} delayed messages, {early_text}, max late {max_late} ms",
        arrivals.len()
    );
    anyhow::ensure!(arrivals.len() == COUNT && early == 0, "unexpected outcome");
    Ok(())
}
