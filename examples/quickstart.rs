//! The pub/sub demo: an embedded NameServer and Broker on free loopback ports with a
//! temporary store, a producer using all four send modes, and a push consumer.
//!
//! Run it with `cargo run --release --example quickstart`. It ends with a line like
//! `sent 1000, received 1000` and exits 0 when every message arrived.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actimq::admin::{AdminClient, TopicSpec};
use actimq::server::{start_broker, start_namesrv, BrokerConfig, NamesrvConfig, StoreConfig};
use actimq::{
    ClientConfig, ClientInstance, ConsumeFromWhere, ConsumeResult, Message, MessageListener,
    Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
};

const TOPIC: &str = "QuickstartTopic";
const PER_MODE: u64 = 250;

fn main() -> anyhow::Result<()> {
    actimq::internals::cli::init_tracing_with_default("warn");
    let store = tempfile::tempdir()?;
    actix_rt::System::new().block_on(run(store.path().to_owned()))
}

async fn run(store_dir: std::path::PathBuf) -> anyhow::Result<()> {
    // 1. A name server and a broker inside this process.
    let namesrv = start_namesrv(NamesrvConfig {
        listen_host: "127.0.0.1".into(),
        listen_port: 0,
        ..NamesrvConfig::default()
    })
    .await?;
    let ns = namesrv.addr.to_string();
    let broker = start_broker(BrokerConfig {
        listen_host: "127.0.0.1".into(),
        listen_port: 0,
        namesrv_addr: ns.clone(),
        store: StoreConfig {
            store_path_root_dir: store_dir,
            mapped_file_size_commit_log: 64 << 20,
            ..StoreConfig::default()
        },
        ..BrokerConfig::default()
    })
    .await?;
    println!("name server on {ns}, broker on {}", broker.addr);

    // 2. A topic with 4 queues, once the broker has registered.
    let mut admin = AdminClient::new(&ns, Duration::from_secs(3));
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin
        .cluster_info()
        .await
        .map(|c| c.broker_addr_table.is_empty())
        .unwrap_or(true)
    {
        anyhow::ensure!(Instant::now() < deadline, "the broker did not register");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    admin
        .create_topic(&broker.addr.to_string(), &TopicSpec::new(TOPIC).queues(4))
        .await?;

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
    let mut consumer_config = PushConsumerConfig::new("quickstart-consumers").subscribe(TOPIC, "*");
    consumer_config.consume_from_where = ConsumeFromWhere::FirstOffset;
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
    let progress = admin
        .consume_stats(
            &broker.addr.to_string(),
            "quickstart-consumers",
            Some(TOPIC),
        )
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
    broker.shutdown().await;
    anyhow::ensure!(got == sent, "lost {} messages", sent - got);
    Ok(())
}
