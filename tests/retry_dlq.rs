//! Consumer retries and dead letters against the real binaries, with the broker's delay
//! levels shortened (`message_delay_level`), so a retry waits 300, 500, then 700 ms.
//!
//! - A listener that always answers `ReconsumeLater` for one message gets it again with
//!   reconsume counts 1, 2, 3, each after its level's delay, while the other 99 messages of
//!   its queue are consumed; then it is in `%DLQ%<group>` (`mqadmin queryDlqMsg`), and is
//!   not delivered again. `mqadmin resendDlqMsg` sends it back, and a fixed listener of the
//!   group consumes it once.
//! - A listener that panics on one message: the consumer keeps running, the message comes
//!   back from the retry topic and is consumed, every other message is consumed once.
//! - An orderly queue retries a failing message in place, then dead-letters it and goes
//!   on in order; a listener running past `consume_timeout` has its message retried.

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actimq::{
    ClientConfig, ClientInstance, ConsumeFromWhere, ConsumeResult, Message, MessageListener,
    Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
};
use common::process::{broker, broker_config, create_topic_on, mqadmin, namesrv, Proc};

/// Every delivery of each body: (reconsume count, when).
type Log = Arc<Mutex<BTreeMap<String, Vec<(u32, Instant)>>>>;

const LEVELS: &str = "message_delay_level = \"100ms 200ms 300ms 500ms 700ms\"";

async fn wait_for(
    log: &Log,
    what: &str,
    pred: impl Fn(&BTreeMap<String, Vec<(u32, Instant)>>) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if pred(&log.lock().unwrap()) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {:?}",
            log.lock().unwrap().keys().collect::<Vec<_>>()
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

fn logging_listener(
    log: &Log,
    fail: impl Fn(&str) -> bool + Send + Sync + 'static,
) -> MessageListener {
    let log = Arc::clone(log);
    MessageListener::from_fn(move |msgs| {
        let mut result = ConsumeResult::Success;
        for m in msgs {
            let body = String::from_utf8_lossy(m.body()).into_owned();
            assert_eq!(
                m.topic(),
                "Flaky",
                "the listener sees the topic it subscribed"
            );
            log.lock()
                .unwrap()
                .entry(body.clone())
                .or_default()
                .push((m.reconsume_times, Instant::now()));
            if fail(&body) {
                result = ConsumeResult::ReconsumeLater;
            }
        }
        result
    })
}

fn cluster(dir: &std::path::Path) -> (Proc, Proc) {
    let ns = namesrv(dir, 3_000);
    let b = broker(&broker_config(dir, "broker-r", LEVELS), &ns.addr);
    create_topic_on(&ns.addr, &b.addr, "Flaky", 1);
    (ns, b)
}

/// Runs mqadmin off the actix thread.
async fn admin(args: Vec<String>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        mqadmin(&args)
    })
    .await
    .unwrap()
}

#[test]
fn a_message_always_failed_is_retried_three_times_then_dead_lettered_and_can_be_resent() {
    let dir = tempfile::tempdir().unwrap();
    let (ns, _b) = cluster(dir.path());
    let ns_addr = ns.addr.clone();
    actix_rt::System::new().block_on(async move {
        let client = ClientInstance::start(ClientConfig::new(ns_addr.clone())).unwrap();
        let producer = Producer::start(client.clone(), ProducerConfig::new("flaky-producers"));
        let log: Log = Default::default();
        let mut config = PushConsumerConfig::new("flaky-readers").subscribe("Flaky", "*");
        config.consume_from_where = ConsumeFromWhere::FirstOffset;
        config.max_reconsume_times = 3;
        let consumer = PushConsumer::start(
            client.clone(),
            config.clone(),
            logging_listener(&log, |body| body == "poison"),
        )
        .await
        .unwrap();

        producer
            .send(Message::new("Flaky", "poison"))
            .await
            .unwrap();
        for i in 0..99 {
            producer
                .send(Message::new("Flaky", format!("ok-{i}")))
                .await
                .unwrap();
        }
        wait_for(&log, "3 retries of the poison message", |l| {
            l.get("poison").is_some_and(|d| d.len() == 4)
        })
        .await;
        // It is dead-lettered: listed by mqadmin, and not delivered again.
        let ns2 = ns_addr.clone();
        let listed = {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let (ok, out, err) = admin(vec![
                    "-n".into(),
                    ns2.clone(),
                    "queryDlqMsg".into(),
                    "-g".into(),
                    "flaky-readers".into(),
                    "--json".into(),
                ])
                .await;
                if ok && out.contains("poison") {
                    break out;
                }
                assert!(
                    Instant::now() < deadline,
                    "the dead letter is not listed: {out}{err}"
                );
                actix_rt::time::sleep(Duration::from_millis(100)).await;
            }
        };
        let letter: serde_json::Value =
            serde_json::from_str(listed.trim()).unwrap_or_else(|e| panic!("{e}: {listed}"));
        assert_eq!(letter["topic"], "%DLQ%flaky-readers", "{letter}");
        assert_eq!(letter["properties"]["RETRY_TOPIC"], "Flaky", "{letter}");
        assert_eq!(letter["reconsume_times"], 3, "{letter}");
        actix_rt::time::sleep(Duration::from_millis(1500)).await;

        let seen = log.lock().unwrap().clone();
        let poison = &seen["poison"];
        let counts: Vec<u32> = poison.iter().map(|(c, _)| *c).collect();
        assert_eq!(
            counts,
            vec![0, 1, 2, 3],
            "reconsume counts of each delivery (then none)"
        );
        for (i, min_ms) in [300u64, 500, 700].into_iter().enumerate() {
            let gap = poison[i + 1].1 - poison[i].1;
            assert!(
                gap >= Duration::from_millis(min_ms),
                "retry {} came after {gap:?}, before its level's {min_ms} ms",
                i + 1
            );
        }
        // The rest of the queue went on meanwhile: every other message once, all before the
        // last retry.
        for i in 0..99 {
            let d = &seen[&format!("ok-{i}")];
            assert_eq!(d.len(), 1, "ok-{i} delivered {} times", d.len());
            assert!(
                d[0].1 < poison[3].1,
                "ok-{i} waited for the failing message"
            );
        }
        consumer.shutdown().await.unwrap();

        // A fixed listener of the same group; the letter is sent back to it.
        let fixed: Log = Default::default();
        let consumer =
            PushConsumer::start(client.clone(), config, logging_listener(&fixed, |_| false))
                .await
                .unwrap();
        let (ok, out, err) = admin(vec![
            "-n".into(),
            ns_addr.clone(),
            "resendDlqMsg".into(),
            "-g".into(),
            "flaky-readers".into(),
        ])
        .await;
        assert!(
            ok && out.contains("resent") && out.contains("SEND_OK"),
            "{out}{err}"
        );
        wait_for(&fixed, "the resent letter", |l| l.contains_key("poison")).await;
        actix_rt::time::sleep(Duration::from_millis(500)).await;
        let fixed = fixed.lock().unwrap().clone();
        assert_eq!(fixed["poison"].len(), 1, "{fixed:?}");
        assert_eq!(
            fixed["poison"][0].0, 0,
            "a resent letter starts its count again"
        );
        assert!(
            fixed.keys().all(|k| k == "poison"),
            "only the letter came again: {fixed:?}"
        );

        consumer.shutdown().await.unwrap();
        producer.shutdown().await;
        ClientInstance::shutdown(&client).await;
    });
}

#[test]
fn a_listener_that_panics_on_one_message_does_not_stop_the_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let (ns, _b) = cluster(dir.path());
    let ns_addr = ns.addr.clone();
    actix_rt::System::new().block_on(async move {
        let client = ClientInstance::start(ClientConfig::new(ns_addr.clone())).unwrap();
        let producer = Producer::start(client.clone(), ProducerConfig::new("boom-producers"));
        let log: Log = Default::default();
        let l = Arc::clone(&log);
        let listener = MessageListener::from_fn(move |msgs| {
            for m in msgs {
                let body = String::from_utf8_lossy(m.body()).into_owned();
                l.lock()
                    .unwrap()
                    .entry(body.clone())
                    .or_default()
                    .push((m.reconsume_times, Instant::now()));
                if body == "boom" && m.reconsume_times == 0 {
                    panic!("the listener cannot handle {body}");
                }
            }
            ConsumeResult::Success
        });
        let mut config = PushConsumerConfig::new("boom-readers").subscribe("Flaky", "*");
        config.consume_from_where = ConsumeFromWhere::FirstOffset;
        let consumer = PushConsumer::start(client.clone(), config, listener)
            .await
            .unwrap();

        for i in 0..25 {
            producer
                .send(Message::new("Flaky", format!("before-{i}")))
                .await
                .unwrap();
        }
        producer.send(Message::new("Flaky", "boom")).await.unwrap();
        for i in 0..25 {
            producer
                .send(Message::new("Flaky", format!("after-{i}")))
                .await
                .unwrap();
        }
        wait_for(&log, "every message, and the retried one", |l| {
            l.len() == 51 && l.get("boom").is_some_and(|d| d.len() == 2)
        })
        .await;
        // Still consuming after the panic.
        producer.send(Message::new("Flaky", "later")).await.unwrap();
        wait_for(&log, "a message sent after the panic", |l| {
            l.contains_key("later")
        })
        .await;
        actix_rt::time::sleep(Duration::from_millis(500)).await;

        let seen = log.lock().unwrap().clone();
        let boom: Vec<u32> = seen["boom"].iter().map(|(c, _)| *c).collect();
        assert_eq!(
            boom,
            vec![0, 1],
            "the panicking message came back once, from the retry topic"
        );
        for (body, d) in &seen {
            if body != "boom" {
                assert_eq!(d.len(), 1, "{body} delivered {} times", d.len());
            }
        }
        consumer.shutdown().await.unwrap();
        producer.shutdown().await;
        ClientInstance::shutdown(&client).await;
    });
}

#[test]
fn an_orderly_queue_retries_in_place_then_dead_letters_and_moves_on_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (ns, _b) = cluster(dir.path());
    let ns_addr = ns.addr.clone();
    actix_rt::System::new().block_on(async move {
        let client = ClientInstance::start(ClientConfig::new(ns_addr.clone())).unwrap();
        let producer = Producer::start(client.clone(), ProducerConfig::new("order-producers"));
        let log: Log = Default::default();
        let mut config = PushConsumerConfig::new("order-readers")
            .subscribe("Flaky", "*")
            .orderly();
        config.consume_from_where = ConsumeFromWhere::FirstOffset;
        config.max_reconsume_times = 2;
        config.suspend_current_queue_time = Duration::from_millis(200);
        let consumer = PushConsumer::start(
            client.clone(),
            config,
            logging_listener(&log, |body| body == "m3"),
        )
        .await
        .unwrap();
        for i in 0..10 {
            producer
                .send(Message::new("Flaky", format!("m{i}")))
                .await
                .unwrap();
        }
        wait_for(&log, "every message", |l| l.len() == 10).await;
        actix_rt::time::sleep(Duration::from_millis(500)).await;
        let seen = log.lock().unwrap().clone();
        let m3: Vec<u32> = seen["m3"].iter().map(|(c, _)| *c).collect();
        assert_eq!(
            m3,
            vec![0, 1, 2],
            "m3 tried in place max_reconsume_times more times"
        );
        for pair in seen["m3"].windows(2) {
            assert!(
                pair[1].1 - pair[0].1 >= Duration::from_millis(200),
                "the queue was not suspended"
            );
        }
        let last_m3 = seen["m3"][2].1;
        for i in 0..10 {
            let d = &seen[&format!("m{i}")];
            if i != 3 {
                assert_eq!(d.len(), 1, "m{i} delivered {} times", d.len());
            }
            if i > 3 {
                assert!(d[0].1 > last_m3, "m{i} overtook the failing m3");
            }
        }
        let (ok, out, err) = admin(vec![
            "-n".into(),
            ns_addr.clone(),
            "queryDlqMsg".into(),
            "-g".into(),
            "order-readers".into(),
        ])
        .await;
        assert!(
            ok && out.contains("m3") && out.contains("1 dead letter"),
            "{out}{err}"
        );
        consumer.shutdown().await.unwrap();
        producer.shutdown().await;
        ClientInstance::shutdown(&client).await;
    });
}

/// A listener actor that takes 2 s over the first delivery of "slow".
struct SlowOnce {
    log: Log,
}

impl actimq::actix::Actor for SlowOnce {
    type Context = actimq::actix::Context<Self>;
}

impl actimq::actix::Handler<actimq::ConsumeMessages> for SlowOnce {
    type Result = actimq::actix::ResponseFuture<ConsumeResult>;

    fn handle(&mut self, batch: actimq::ConsumeMessages, _: &mut Self::Context) -> Self::Result {
        let mut slow = false;
        for m in &batch.0 {
            let body = String::from_utf8_lossy(m.body()).into_owned();
            slow |= body == "slow" && m.reconsume_times == 0;
            self.log
                .lock()
                .unwrap()
                .entry(body)
                .or_default()
                .push((m.reconsume_times, Instant::now()));
        }
        Box::pin(async move {
            if slow {
                actix_rt::time::sleep(Duration::from_secs(2)).await;
            }
            ConsumeResult::Success
        })
    }
}

#[test]
fn a_listener_running_past_consume_timeout_has_its_message_retried() {
    use actimq::actix::Actor;
    let dir = tempfile::tempdir().unwrap();
    let (ns, _b) = cluster(dir.path());
    let ns_addr = ns.addr.clone();
    actix_rt::System::new().block_on(async move {
        let client = ClientInstance::start(ClientConfig::new(ns_addr.clone())).unwrap();
        let producer = Producer::start(client.clone(), ProducerConfig::new("slow-producers"));
        let log: Log = Default::default();
        let listener = SlowOnce {
            log: Arc::clone(&log),
        }
        .start();
        let mut config = PushConsumerConfig::new("slow-readers").subscribe("Flaky", "*");
        config.consume_from_where = ConsumeFromWhere::FirstOffset;
        config.consume_timeout = Duration::from_millis(300);
        let consumer = PushConsumer::start(
            client.clone(),
            config,
            MessageListener::actor(listener.recipient()),
        )
        .await
        .unwrap();
        producer.send(Message::new("Flaky", "slow")).await.unwrap();
        producer.send(Message::new("Flaky", "quick")).await.unwrap();
        wait_for(&log, "the slow message retried", |l| {
            l.get("slow").is_some_and(|d| d.len() == 2) && l.contains_key("quick")
        })
        .await;
        let seen = log.lock().unwrap().clone();
        let slow: Vec<u32> = seen["slow"].iter().map(|(c, _)| *c).collect();
        assert_eq!(
            slow,
            vec![0, 1],
            "timed out once, then consumed from the retry topic"
        );
        assert_eq!(seen["quick"].len(), 1);
        consumer.shutdown().await.unwrap();
        producer.shutdown().await;
        ClientInstance::shutdown(&client).await;
    });
}
