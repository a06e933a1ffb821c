//! The pub/sub demo: an embedded NameServer and Broker on free loopback ports with a
//! temporary store, a producer using all four send modes, and a push consumer.
//!
//! Run it with `cargo run --release --example quickstart`. It ends with a line like
//! `sent 1000, received 1000` and exits 0 when every message arrived.

#[path = "support/setup.rs"]
mod setup;

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actimq::admin::AdminClient;
use actimq::server::LocalCluster;
use actimq::{
    ClientConfig, ClientInstance, ConsumeFromWhere, ConsumeResult, Message, MessageListener,
    Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
};

const TOPIC: &str = "QuickstartTopic";
const PER_MODE: u64 = 250;

fn main() -> anyhow::Result<()> {
    setup::init_logs("warn");
    let store = tempfile::tempdir()?;
    actix_rt::System::new().block_on(run(store.path().to_owned()))
}

async fn run(store_dir: std::path::PathBuf) -> anyhow::Result<()> {
    // 1. A name server and a broker inside this process, on free ports; `start` returns
    //    once the broker is registered.
    let cluster = LocalCluster::start(&store_dir).await?;
    let ns = cluster.namesrv_addr();
    let broker_addr = cluster.broker.addr.to_string();
    println!("name server on {ns}, broker on {broker_addr}");

    // 2. A topic with 4 queues (without it, the first send would create one).
    cluster.create_topic(TOPIC, 4).await?;

    // 3. A push consumer that counts what it gets.
    let client = ClientInstance::start(ClientConfig::new(ns.clone()))?;
    let received = Arc::new(AtomicU64::new(0));
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let (r, s) = (Arc::clone(&received), Arc::clone(&seen));
    let listener = MessageListener::from_fn(move |msgs| {
        for m in msgs {
            if s.lock()
                .map(|mut set| set.insert(m.body().clone()))
                .unwrap_or(false)
            {
                r.fetch_add(1, Ordering::Relaxed);
            }
        }
        ConsumeResult::Success
    });
    let consumer_config = PushConsumerConfig::new("quickstart-consumers")
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFromWhere::FirstOffset);
    let consumer = PushConsumer::start(client.clone(), consumer_config, listener).await?;

    // 4. A producer, with each send mode.
    let producer = Producer::start(client.clone(), ProducerConfig::new("quickstart-producers"));
    let msg = |mode: &str, i: u64| {
        Message::new(TOPIC, format!("{mode}-{i}"))
            .with_tags(mode.to_owned())
            .with_key(format!("{mode}-{i}"))
    };
    let mut sent = 0u64;
    for i in 0..PER_MODE {
        producer.send(msg("sync", i)).await?;
        sent += 1;
    }
    let callbacks = Arc::new(AtomicU64::new(0));
    let failures = Arc::new(AtomicU64::new(0));
    for i in 0..PER_MODE {
        let (c, f) = (Arc::clone(&callbacks), Arc::clone(&failures));
        producer.send_async_with(msg("async", i), move |r| {
            if r.is_err() {
                f.fetch_add(1, Ordering::Relaxed);
            }
            c.fetch_add(1, Ordering::Relaxed);
        });
    }
    for i in 0..PER_MODE {
        producer.send_oneway(msg("oneway", i)).await?;
        sent += 1;
    }
    for i in 0..PER_MODE {
        producer
            .send_orderly(msg("ordered", i), format!("order-{}", i % 10))
            .await?;
        sent += 1;
    }
    while callbacks.load(Ordering::Relaxed) < PER_MODE {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    sent += PER_MODE - failures.load(Ordering::Relaxed);
    println!("sent {sent} messages: {PER_MODE} sync, {PER_MODE} async, {PER_MODE} one-way, {PER_MODE} ordered");

    // 5. Wait for the consumer, showing progress.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_print = Instant::now();
    while received.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        if last_print.elapsed() >= Duration::from_secs(1) {
            println!("received {} of {sent}", received.load(Ordering::Relaxed));
            last_print = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Shutting the consumer down commits its offsets; the broker then shows its progress.
    consumer.shutdown().await?;
    producer.shutdown().await;
    ClientInstance::shutdown(&client).await;
    let mut admin = AdminClient::new(&ns, Duration::from_secs(3));
    let progress = admin
        .consume_stats(&broker_addr, "quickstart-consumers", Some(TOPIC))
        .await?;
    println!(
        "{:<8} {:>14} {:>16} {:>5}",
        "#queue", "broker offset", "consumer offset", "lag"
    );
    for (mq, o) in &progress.offset_table {
        println!(
            "{:<8} {:>14} {:>16} {:>5}",
            mq.queue_id,
            o.broker_offset,
            o.consumer_offset,
            o.broker_offset - o.consumer_offset
        );
    }
    let got = received.load(Ordering::Relaxed);
    println!("sent {sent}, received {got}");
    cluster.shutdown().await;
    anyhow::ensure!(got == sent, "lost {} messages", sent - got);
    Ok(())
}
