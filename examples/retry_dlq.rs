//! Retries and dead letters: a listener that cannot handle one message. The broker brings
//! the message back from the group's retry topic, each time later (the broker's delay levels
//! 3, 4, 5: shortened here to 300, 400 and 500 ms; 10 s, 30 s and 1 min by default), while
//! the rest of its queue is consumed; after `max_reconsume_times` (3 here, 16 by default) it
//! goes to the group's dead-letter topic `%DLQ%<group>`, where `mqadmin queryDlqMsg` lists
//! it and `mqadmin resendDlqMsg` sends it back once the listener is fixed.
//!
//! Run it with `cargo run --example retry_dlq`. It ends with
//! `dead-lettered 1 after 3 retries, consumed 99 others`.

#[path = "support/setup.rs"]
mod setup;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actimq::admin::AdminClient;
use actimq::server::LocalCluster;
use actimq::{
    ClientConfig, ClientInstance, ConsumeFromWhere, ConsumeResult, Message, MessageListener,
    Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
};

const TOPIC: &str = "Orders";
const GROUP: &str = "order-handlers";
const BAD: &str = "order-42";

fn main() -> anyhow::Result<()> {
    setup::init_logs("error");
    let store = tempfile::tempdir()?;
    actix_rt::System::new().block_on(run(store.path().to_owned()))
}

async fn run(store_dir: std::path::PathBuf) -> anyhow::Result<()> {
    let cluster = LocalCluster::start_with(&store_dir, |broker| {
        broker.message_delay_level = "100ms 200ms 300ms 400ms 500ms".into();
    })
    .await?;
    let ns = cluster.namesrv_addr();
    cluster.create_topic(TOPIC, 4).await?;
    let client = ClientInstance::start(ClientConfig::new(ns.clone()))?;

    // Deliveries per body, with the highest reconsume count seen.
    let deliveries: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let d = Arc::clone(&deliveries);
    let listener = MessageListener::from_fn(move |msgs| {
        let mut result = ConsumeResult::Success;
        for m in msgs {
            let body = String::from_utf8_lossy(m.body()).into_owned();
            if let Ok(mut d) = d.lock() {
                let count = d.entry(body.clone()).or_default();
                *count = (*count).max(m.reconsume_times);
            }
            if body == BAD {
                // This listener cannot handle it: ask for it again later.
                result = ConsumeResult::ReconsumeLater;
            }
        }
        result
    });
    let mut config = PushConsumerConfig::new(GROUP)
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFromWhere::FirstOffset);
    config.max_reconsume_times = 3;
    let consumer = PushConsumer::start(client.clone(), config, listener).await?;

    let producer = Producer::start(client.clone(), ProducerConfig::new("order-producers"));
    for i in 0..100 {
        producer
            .send(Message::new(TOPIC, format!("order-{i}")))
            .await?;
    }

    // Wait for the dead letter, as an operator would look for it.
    let mut admin = AdminClient::new(&ns, Duration::from_secs(3));
    let deadline = Instant::now() + Duration::from_secs(30);
    let letters = loop {
        if let Ok(letters) = admin.query_dlq(GROUP, 10).await {
            if !letters.is_empty() {
                break letters;
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "no dead letter within 30 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for l in &letters {
        println!(
            "dead letter {} of topic {}: {:?}, {} retries",
            l.msg_id,
            l.original_topic(),
            String::from_utf8_lossy(&l.body),
            l.reconsume_times
        );
    }
    consumer.shutdown().await?;
    producer.shutdown().await;
    ClientInstance::shutdown(&client).await;
    cluster.shutdown().await;

    let d = deliveries
        .lock()
        .map_err(|_| anyhow::anyhow!("a listener panicked"))?
        .clone();
    let others = d.keys().filter(|k| *k != BAD).count();
    let retries = d.get(BAD).copied().unwrap_or(0);
    println!(
        "dead-lettered {} after {retries} retries, consumed {others} others",
        letters.len()
    );
    anyhow::ensure!(
        letters.len() == 1 && retries == 3 && others == 99,
        "unexpected outcome"
    );
    Ok(())
}
