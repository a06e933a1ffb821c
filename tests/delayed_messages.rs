//! Delayed messages against the real binaries, through a `kill -9` of the broker.
//!
//! The broker's `message_delay_level` is shortened to `1s 3s`. A running consumer gets:
//! - batch A (level 1), delivered before the kill: never delivered a second time after the
//!   restart (the delivery offset was persisted);
//! - batch B (level 2), acknowledged and still waiting when the broker is killed: every
//!   message delivered after the restart, once, none before its time;
//! - batch C (level 1), acknowledged just before the kill and due while the broker is down:
//!   delivered after the restart.
//!
//! "Once" counts stored copies (offset ids) per message, so a consumer that re-reads the
//! same record after the restart (its offset commit was older) is not taken for a second
//! delivery. "None before its time": received no earlier than the send began plus the
//! level's delay (the store time is later than that), and no earlier than the due time the
//! broker stamps (`TIMER_DELIVER_MS`).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actimq::{
    ClientConfig, ClientInstance, ConsumeFromWhere, ConsumeResult, Message, MessageListener,
    Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
};
use common::process::{broker, broker_config, create_topic_on, namesrv};

const TOPIC: &str = "Later";
const LEVEL_MS: [i64; 2] = [1_000, 3_000];

/// What the consumer saw of one message (by body).
#[derive(Default, Debug, Clone)]
struct Seen {
    /// Offset ids of the stored copies received.
    copies: BTreeSet<String>,
    /// Earliest receipt (ms since the epoch).
    first_received_ms: i64,
    /// The due time the broker stamped.
    due_ms: Option<i64>,
}

type SeenMap = Arc<Mutex<BTreeMap<String, Seen>>>;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn wait_for(
    seen: &SeenMap,
    what: &str,
    limit: Duration,
    pred: impl Fn(&BTreeMap<String, Seen>) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        if pred(&seen.lock().unwrap()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; seen {} messages",
            seen.lock().unwrap().len()
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

fn received(map: &BTreeMap<String, Seen>, prefix: &str) -> usize {
    map.keys().filter(|k| k.starts_with(prefix)).count()
}

#[test]
fn delayed_messages_survive_a_kill_9_of_the_broker_and_none_arrives_early() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 3_000);
    let config = broker_config(dir.path(), "broker-d", "message_delay_level = \"1s 3s\"");
    let b = broker(&config, &ns.addr);
    create_topic_on(&ns.addr, &b.addr, TOPIC, 2);
    let system = actix_rt::System::new();
    let ns_addr = ns.addr.clone();
    let b = Arc::new(Mutex::new(b));
    system.block_on(async move {
        let client = ClientInstance::start(ClientConfig::new(ns_addr.clone())).unwrap();
        let producer = Producer::start(client.clone(), ProducerConfig::new("later-producers"));
        let seen: SeenMap = Default::default();
        let s = Arc::clone(&seen);
        let listener = MessageListener::from_fn(move |msgs| {
            let now = now_ms();
            let mut map = s.lock().unwrap();
            for m in msgs {
                let e = map
                    .entry(String::from_utf8_lossy(m.body()).into_owned())
                    .or_insert_with(|| Seen {
                        first_received_ms: now,
                        ..Seen::default()
                    });
                e.copies.insert(m.offset_msg_id());
                e.due_ms = m.property("TIMER_DELIVER_MS").and_then(|v| v.parse().ok());
            }
            ConsumeResult::Success
        });
        let mut cc = PushConsumerConfig::new("later-readers").subscribe(TOPIC, "*");
        cc.consume_from_where = ConsumeFromWhere::FirstOffset;
        let consumer = PushConsumer::start(client.clone(), cc, listener)
            .await
            .unwrap();

        // send start time per body, and its level
        let mut sent: BTreeMap<String, (i64, usize)> = BTreeMap::new();
        let send = |body: String, level: u32| {
            let producer = producer.clone();
            async move {
                let start = now_ms();
                producer
                    .send(Message::new(TOPIC, body.clone()).with_delay_level(level))
                    .await
                    .unwrap_or_else(|e| panic!("send {body}: {e}"));
                (body, start)
            }
        };
        for i in 0..20 {
            let (body, start) = send(format!("A-{i}"), 1).await;
            sent.insert(body, (start, 0));
        }
        wait_for(&seen, "batch A", Duration::from_secs(20), |m| {
            received(m, "A-") == 20
        })
        .await;
        // Nothing of A was early: sends took at least the level's delay to arrive.
        for i in 0..40 {
            let (body, start) = send(format!("B-{i}"), 2).await;
            sent.insert(body, (start, 1));
        }
        for i in 0..20 {
            let (body, start) = send(format!("C-{i}"), 1).await;
            sent.insert(body, (start, 0));
        }
        // B is mid-delay and C not due yet: no B arrived so far.
        assert_eq!(received(&seen.lock().unwrap(), "B-"), 0);
        b.lock().unwrap().kill9();
        // Down until C came due (and B is still waiting).
        let c_due = sent
            .iter()
            .filter(|(k, _)| k.starts_with("C-"))
            .map(|(_, (start, _))| start + LEVEL_MS[0])
            .max()
            .unwrap();
        while now_ms() < c_due + 200 {
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        let restarted = {
            let (config, ns_addr) = (config.clone(), ns_addr.clone());
            tokio::task::spawn_blocking(move || broker(&config, &ns_addr))
                .await
                .unwrap()
        };
        *b.lock().unwrap() = restarted;

        wait_for(
            &seen,
            "batches B and C after the restart",
            Duration::from_secs(30),
            |m| received(m, "B-") == 40 && received(m, "C-") == 20,
        )
        .await;
        // Let a late second delivery show up, if there were one: it would come with the
        // next step of a delivery, within its poll.
        actix_rt::time::sleep(Duration::from_millis(500)).await;
        let map = seen.lock().unwrap().clone();
        assert_eq!(map.len(), 80, "unexpected bodies: {:?}", map.keys());
        for (body, s) in &map {
            let (start, level) = sent[body];
            assert_eq!(
                s.copies.len(),
                1,
                "{body} delivered {} times: {:?}",
                s.copies.len(),
                s.copies
            );
            let earliest = start + LEVEL_MS[level];
            assert!(
                s.first_received_ms >= earliest,
                "{body} arrived {} ms early (sent at {start}, level {})",
                earliest - s.first_received_ms,
                level + 1
            );
            let due = s
                .due_ms
                .unwrap_or_else(|| panic!("{body} has no TIMER_DELIVER_MS"));
            assert!(
                due >= earliest,
                "{body}: due {due} before send + delay {earliest}"
            );
            assert!(
                s.first_received_ms >= due,
                "{body} arrived before its due time"
            );
        }

        consumer.shutdown().await.unwrap();
        producer.shutdown().await;
        ClientInstance::shutdown(&client).await;
    });
}
