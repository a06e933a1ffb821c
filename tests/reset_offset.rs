//! `mqadmin resetOffsetByTime` against the real binaries: a running push consumer group
//! that consumed everything receives again, within seconds, exactly the messages stored
//! at or after the time given, and none of those stored before it; then a reset to `now`
//! moves the group past everything, and a message sent afterwards arrives once.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actimq::{
    ClientConfig, ClientInstance, ConsumeFromWhere, Message, Producer, ProducerConfig,
    PushConsumer, PushConsumerConfig,
};
use common::process::{broker, broker_config, create_topic_on, mqadmin, namesrv};

const TOPIC: &str = "Rewind";
const GROUP: &str = "rewinders";

type Seen = common::BodyCounts;

/// Waits (without blocking the actors on this thread) until `pred` holds on the counts.
async fn wait_for(seen: &Seen, what: &str, pred: impl Fn(&BTreeMap<String, u32>) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if pred(&seen.lock().unwrap()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            seen.lock().unwrap()
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

fn count(seen: &BTreeMap<String, u32>, prefix: &str, times: u32) -> usize {
    seen.iter()
        .filter(|(k, n)| k.starts_with(prefix) && **n == times)
        .count()
}

/// `mqadmin resetOffsetByTime`, off the actix thread.
async fn reset(ns: String, at: String) -> String {
    tokio::task::spawn_blocking(move || {
        let (ok, out, err) = mqadmin(&[
            "-n",
            &ns,
            "resetOffsetByTime",
            "-g",
            GROUP,
            "-t",
            TOPIC,
            "-s",
            &at,
        ]);
        assert!(ok, "resetOffsetByTime failed: {out}{err}");
        out
    })
    .await
    .unwrap()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn a_running_group_receives_again_what_was_stored_after_the_time() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 3_000);
    let b = broker(&broker_config(dir.path(), "broker-r", ""), &ns.addr);
    create_topic_on(&ns.addr, &b.addr, TOPIC, 2);
    let system = actix_rt::System::new();
    let ns_addr = ns.addr.clone();
    system.block_on(async move {
        let client = ClientInstance::start(ClientConfig::new(ns_addr.clone())).unwrap();
        let producer = Producer::start(client.clone(), ProducerConfig::new("rewind-producers"));
        let (listener, seen) = common::counting_listener();
        let mut config = PushConsumerConfig::new(GROUP).subscribe(TOPIC, "*");
        config.consume_from_where = ConsumeFromWhere::FirstOffset;
        let consumer = PushConsumer::start(client.clone(), config, listener)
            .await
            .unwrap();

        for i in 0..20 {
            producer
                .send(Message::new(TOPIC, format!("early-{i}")))
                .await
                .unwrap();
        }
        wait_for(&seen, "the early messages", |m| count(m, "early-", 1) == 20).await;
        // Store times have millisecond resolution: leave a clear gap around the time.
        actix_rt::time::sleep(Duration::from_millis(30)).await;
        let at = now_ms();
        actix_rt::time::sleep(Duration::from_millis(30)).await;
        for i in 0..20 {
            producer
                .send(Message::new(TOPIC, format!("late-{i}")))
                .await
                .unwrap();
        }
        wait_for(&seen, "the late messages", |m| count(m, "late-", 1) == 20).await;

        let printed = reset(ns_addr.clone(), at.to_string()).await;
        assert!(printed.contains(TOPIC), "{printed}");
        wait_for(&seen, "the late messages again", |m| {
            count(m, "late-", 2) == 20
        })
        .await;
        // Nothing stored before the time came again.
        actix_rt::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(count(&seen.lock().unwrap(), "early-", 1), 20);

        // Forward: to now, past everything; only what is sent afterwards arrives.
        reset(ns_addr.clone(), "now".into()).await;
        producer.send(Message::new(TOPIC, "after-0")).await.unwrap();
        wait_for(&seen, "the message sent after the reset", |m| {
            m.get("after-0") == Some(&1)
        })
        .await;
        let map = seen.lock().unwrap().clone();
        assert_eq!(count(&map, "early-", 1), 20, "{map:?}");
        assert_eq!(count(&map, "late-", 2), 20, "{map:?}");

        consumer.shutdown().await.unwrap();
        producer.shutdown().await;
        ClientInstance::shutdown(&client).await;
    });
}
