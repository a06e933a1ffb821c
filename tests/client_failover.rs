//! Client-side failover against the real binaries: a producer keeps every send successful
//! while one of two master brokers is killed with SIGKILL (retries land on the live broker,
//! the route drops the dead one), and producers and consumers keep working when the first of
//! two name servers is killed, including a client instance created afterwards with the dead
//! name server first in its list.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actimq::{
    ClientConfig, ClientInstance, ConsumeFromWhere, ConsumeResult, Message, MessageListener,
    Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
};
use common::process::{broker, broker_config, eventually, mqadmin, namesrv};

const TIMEOUT: Duration = Duration::from_secs(15);

/// Polls `check` (an async probe) every 50 ms until it yields `Some`, for at most `limit`,
/// without blocking the actors that share this thread.
async fn wait_for<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `mqadmin topicRoute --json` output, or None when the name server has no route.
fn topic_route(ns: &str, topic: &str) -> Option<String> {
    let (ok, out, _) = mqadmin(&["-n", ns, "topicRoute", "-t", topic, "--json"]);
    ok.then_some(out)
}

/// The same, run off the actix thread so the client actors keep running meanwhile.
async fn topic_route_async(ns: &str, topic: &str) -> Option<String> {
    let (ns, topic) = (ns.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || topic_route(&ns, &topic))
        .await
        .expect("mqadmin thread")
}

fn update_topic(ns: &str, topic: &str) {
    let (ok, out, err) = mqadmin(&[
        "-n",
        ns,
        "updateTopic",
        "-c",
        "DefaultCluster",
        "-t",
        topic,
        "-r",
        "4",
        "-w",
        "4",
    ]);
    assert!(ok, "updateTopic {topic} failed: {out}{err}");
}

fn cluster_lists(ns: &str, needles: &[&str]) -> bool {
    let (ok, out, _) = mqadmin(&["-n", ns, "clusterList"]);
    ok && needles.iter().all(|n| out.contains(n))
}

fn producer_config(group: &str) -> ProducerConfig {
    let mut pc = ProducerConfig::new(group);
    pc.retry_times_when_send_failed = 2;
    pc.send_msg_timeout = Duration::from_secs(3);
    pc
}

#[test]
fn producer_sends_never_fail_when_a_master_broker_is_killed() {
    const TOPIC: &str = "FailoverTopic";
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 3_000);
    let a = broker(&broker_config(dir.path(), "broker-a", ""), &ns.addr);
    let mut b = broker(&broker_config(dir.path(), "broker-b", ""), &ns.addr);
    eventually(TIMEOUT, "both brokers in clusterList", || {
        cluster_lists(&ns.addr, &["broker-a", "broker-b"]).then_some(())
    });
    update_topic(&ns.addr, TOPIC);
    eventually(TIMEOUT, "route listing both brokers", || {
        topic_route(&ns.addr, TOPIC).filter(|r| r.contains(&a.addr) && r.contains(&b.addr))
    });

    let (before, after) = actix_rt::System::new().block_on(async {
        let client = ClientInstance::start(ClientConfig::new(ns.addr.clone())).unwrap();
        let producer = Producer::start(client, producer_config("failover-producers"));
        let mut before: BTreeMap<String, u64> = BTreeMap::new();
        let mut after: BTreeMap<String, u64> = BTreeMap::new();
        let mut slowest_after_kill = Duration::ZERO;
        for i in 0..2_000u32 {
            if i == 500 {
                b.kill9();
            }
            let started = Instant::now();
            let r = producer
                .send(Message::new(TOPIC, format!("failover-{i}")))
                .await
                .unwrap_or_else(|e| panic!("send {i} failed (broker-b killed at 500): {e}"));
            let counts = if i < 500 { &mut before } else { &mut after };
            *counts.entry(r.message_queue.broker_name).or_default() += 1;
            if i >= 500 {
                slowest_after_kill = slowest_after_kill.max(started.elapsed());
            }
        }
        println!("sends before kill -9 of broker-b: {before:?}");
        println!("sends after kill -9 of broker-b: {after:?}; slowest {slowest_after_kill:?}");

        // The name server forgets the dead broker (connection close, or expiry at the latest).
        let dead = b.addr.clone();
        wait_for(TIMEOUT, "route without the killed broker", || {
            let dead = dead.clone();
            let ns = ns.addr.clone();
            async move {
                topic_route_async(&ns, TOPIC)
                    .await
                    .filter(|r| !r.contains(&dead))
            }
        })
        .await;
        (before, after)
    });
    assert_eq!(
        before.keys().map(String::as_str).collect::<Vec<_>>(),
        ["broker-a", "broker-b"],
        "round robin used both brokers before the kill: {before:?}"
    );
    assert_eq!(after.values().sum::<u64>(), 1_500);
    assert_eq!(
        after.keys().map(String::as_str).collect::<Vec<_>>(),
        ["broker-a"],
        "after the kill every send was stored by the live broker: {after:?}"
    );
    let route = topic_route(&ns.addr, TOPIC).expect("route still there");
    assert!(route.contains(&a.addr), "live broker still routed: {route}");
}

type Seen = Arc<Mutex<BTreeSet<String>>>;

fn recording_listener() -> (MessageListener, Seen) {
    let seen: Seen = Arc::default();
    let s = Arc::clone(&seen);
    let listener = MessageListener::from_fn(move |msgs| {
        let mut set = s.lock().unwrap();
        for m in msgs {
            set.insert(String::from_utf8_lossy(m.body()).into_owned());
        }
        ConsumeResult::Success
    });
    (listener, seen)
}

fn has_all(seen: &Seen, prefix: &str, n: u32) -> bool {
    let set = seen.lock().unwrap();
    (0..n).all(|i| set.contains(&format!("{prefix}-{i}")))
}

async fn send_all(producer: &Producer, topic: &str, prefix: &str, n: u32) {
    for i in 0..n {
        producer
            .send(Message::new(topic, format!("{prefix}-{i}")))
            .await
            .unwrap_or_else(|e| panic!("send {prefix}-{i} failed: {e}"));
    }
}

fn client_config(namesrvs: &str) -> ClientConfig {
    let mut cc = ClientConfig::new(namesrvs);
    // Refresh routes often so the dead name server is actually asked.
    cc.poll_name_server_interval = Duration::from_millis(300);
    cc.heartbeat_broker_interval = Duration::from_secs(1);
    cc.namesrv_timeout = Duration::from_secs(2);
    cc
}

fn consumer_config(group: &str, topic: &str) -> PushConsumerConfig {
    let mut c = PushConsumerConfig::new(group).subscribe(topic, "*");
    c.consume_from_where = ConsumeFromWhere::FirstOffset;
    c.rebalance_interval = Duration::from_secs(1);
    c.pull_suspend = Duration::from_secs(2);
    c
}

#[test]
fn clients_survive_kill_9_of_the_first_name_server() {
    const TOPIC: &str = "NsFailoverTopic";
    let dir = tempfile::tempdir().unwrap();
    let mut ns1 = namesrv(dir.path(), 120_000);
    let ns2 = namesrv(dir.path(), 120_000);
    let both = format!("{};{}", ns1.addr, ns2.addr);
    let b = broker(&broker_config(dir.path(), "broker-a", ""), &both);
    for ns in [&ns1.addr, &ns2.addr] {
        eventually(TIMEOUT, "broker in clusterList", || {
            cluster_lists(ns, &["broker-a"]).then_some(())
        });
    }
    update_topic(&ns1.addr, TOPIC);
    for ns in [&ns1.addr, &ns2.addr] {
        eventually(TIMEOUT, "route on both name servers", || {
            topic_route(ns, TOPIC).filter(|r| r.contains(&b.addr))
        });
    }

    actix_rt::System::new().block_on(async {
        let client = ClientInstance::start(client_config(&both)).unwrap();
        let mut pc = producer_config("ns-failover-producers");
        // Ask the name servers for the route again on almost every send after the kill.
        pc.route_ttl = Duration::from_millis(100);
        let producer = Producer::start(client.clone(), pc);
        let (listener, seen) = recording_listener();
        let _consumer = PushConsumer::start(
            client.clone(),
            consumer_config("ns-failover-old", TOPIC),
            listener,
        )
        .await
        .expect("consumer starts");
        send_all(&producer, TOPIC, "before", 200).await;
        wait_for(TIMEOUT, "200 messages before the kill", || async {
            has_all(&seen, "before", 200).then_some(())
        })
        .await;

        ns1.kill9();
        send_all(&producer, TOPIC, "after", 200).await;
        wait_for(TIMEOUT, "200 messages after the kill", || async {
            has_all(&seen, "after", 200).then_some(())
        })
        .await;

        // A new client instance whose list starts with the dead name server.
        let fresh = ClientInstance::start(client_config(&both)).unwrap();
        let fresh_producer = Producer::start(fresh.clone(), producer_config("ns-failover-new"));
        let (listener, fresh_seen) = recording_listener();
        let _fresh_consumer = PushConsumer::start(
            fresh.clone(),
            consumer_config("ns-failover-new", TOPIC),
            listener,
        )
        .await
        .expect("consumer starts with the first name server dead");
        send_all(&fresh_producer, TOPIC, "fresh", 200).await;
        wait_for(TIMEOUT, "the new consumer gets everything", || async {
            (has_all(&fresh_seen, "before", 200)
                && has_all(&fresh_seen, "after", 200)
                && has_all(&fresh_seen, "fresh", 200))
            .then_some(())
        })
        .await;
        wait_for(
            TIMEOUT,
            "the old consumer gets the new messages",
            || async { has_all(&seen, "fresh", 200).then_some(()) },
        )
        .await;
    });
}

/// Counts deliveries per body.
type Deliveries = Arc<Mutex<BTreeMap<String, u32>>>;

fn counting_listener() -> (MessageListener, Deliveries) {
    let deliveries: Deliveries = Arc::default();
    let d = Arc::clone(&deliveries);
    let listener = MessageListener::from_fn(move |msgs| {
        let mut map = d.lock().unwrap();
        for m in msgs {
            *map.entry(String::from_utf8_lossy(m.body()).into_owned())
                .or_default() += 1;
        }
        ConsumeResult::Success
    });
    (listener, deliveries)
}

fn delivered_all(deliveries: &Deliveries, prefix: &str, n: u32) -> bool {
    let map = deliveries.lock().unwrap();
    (0..n).all(|i| map.contains_key(&format!("{prefix}-{i}")))
}

#[test]
fn a_consumer_resumes_from_its_own_offsets_when_a_restarted_broker_lost_them() {
    const TOPIC: &str = "LostOffsetsTopic";
    const GROUP: &str = "lost-offsets-group";
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 2_000);
    // broker-a loses the group's offsets below: its offsets file is removed while it is
    // down (a replaced disk, or a broker of a version that wrote them late).
    let a_config = broker_config(dir.path(), "broker-a", "");
    let a_offsets = dir
        .path()
        .join("broker-a-store/config/consumer_offsets")
        .join(format!("{GROUP}.toml"));
    let mut a = broker(&a_config, &ns.addr);
    let _b = broker(&broker_config(dir.path(), "broker-b", ""), &ns.addr);
    eventually(TIMEOUT, "both brokers in clusterList", || {
        cluster_lists(&ns.addr, &["broker-a", "broker-b"]).then_some(())
    });
    update_topic(&ns.addr, TOPIC);
    let a_addr = a.addr.clone();
    eventually(TIMEOUT, "route listing both brokers", || {
        topic_route(&ns.addr, TOPIC).filter(|r| r.contains("broker-a") && r.contains("broker-b"))
    });

    actix_rt::System::new().block_on(async {
        let client = ClientInstance::start(client_config(&ns.addr)).unwrap();
        let producer = Producer::start(client.clone(), producer_config("lost-offsets-p"));
        let (listener, deliveries) = counting_listener();
        let mut config = consumer_config(GROUP, TOPIC);
        config.persist_consumer_offset_interval = Duration::from_millis(200);
        let consumer = PushConsumer::start(client.clone(), config, listener)
            .await
            .unwrap();
        let owns = |n: usize, on_a: bool| {
            let c = consumer.clone();
            async move {
                let q = c.assignment().await;
                let has_a = q.iter().any(|mq| mq.broker_name == "broker-a");
                (q.len() == n && has_a == on_a).then_some(())
            }
        };
        wait_for(TIMEOUT, "the consumer owns all 8 queues", || owns(8, true)).await;
        send_all(&producer, TOPIC, "before", 40).await;
        wait_for(TIMEOUT, "the first 40 delivered", || async {
            delivered_all(&deliveries, "before", 40).then_some(())
        })
        .await;
        // This member's commits of broker-a's queues are acknowledged at their ends.
        let ns_addr = ns.addr.clone();
        wait_for(TIMEOUT, "broker-a's queues committed at their ends", || {
            let (ns_addr, a_addr, consumer) = (ns_addr.clone(), a_addr.clone(), consumer.clone());
            async move {
                let mut admin = actimq::admin::AdminClient::new(&ns_addr, Duration::from_secs(2));
                let stats = admin
                    .consume_stats(&a_addr, GROUP, Some(TOPIC))
                    .await
                    .ok()?;
                let committed = consumer.committed_offsets().await;
                // The topic's queues (the group's retry queue is committed too).
                let on_a: Vec<_> = committed
                    .iter()
                    .filter(|(mq, _)| mq.broker_name == "broker-a" && mq.topic == TOPIC)
                    .collect();
                (on_a.len() == 4
                    && on_a.iter().all(|(mq, o)| {
                        stats
                            .offset_table
                            .get(*mq)
                            .is_some_and(|s| s.broker_offset == **o as i64)
                    }))
                .then_some(())
            }
        })
        .await;

        a.kill9();
        wait_for(TIMEOUT, "the consumer drops broker-a's queues", || {
            owns(4, false)
        })
        .await;
        std::fs::remove_file(&a_offsets).expect("broker-a wrote the group's offsets");
        a = broker(&a_config, &ns.addr);
        wait_for(
            TIMEOUT,
            "the consumer takes broker-a's queues again",
            || owns(8, true),
        )
        .await;

        send_all(&producer, TOPIC, "after", 40).await;
        wait_for(TIMEOUT, "the next 40 delivered", || async {
            delivered_all(&deliveries, "after", 40).then_some(())
        })
        .await;
        let again: Vec<(String, u32)> = deliveries
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, n)| **n > 1)
            .map(|(b, n)| (b.clone(), *n))
            .collect();
        assert!(
            again.is_empty(),
            "messages consumed and committed before the kill were delivered again: {again:?}"
        );
        consumer.shutdown().await.expect("offsets saved");
        drop(a);
    });
}

#[test]
fn an_acknowledged_offset_commit_survives_a_kill_9_of_its_broker() {
    const TOPIC: &str = "DurableOffsetsTopic";
    const GROUP: &str = "durable-offsets-group";
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 2_000);
    // The periodic offsets write is far away: only the commit path can make them durable.
    let config = broker_config(
        dir.path(),
        "broker-a",
        "flush_consumer_offset_interval = 600000",
    );
    let mut a = broker(&config, &ns.addr);
    eventually(TIMEOUT, "broker-a in clusterList", || {
        cluster_lists(&ns.addr, &["broker-a"]).then_some(())
    });
    update_topic(&ns.addr, TOPIC);
    eventually(TIMEOUT, "route of the topic", || {
        topic_route(&ns.addr, TOPIC)
    });

    actix_rt::System::new().block_on(async {
        let client = ClientInstance::start(client_config(&ns.addr)).unwrap();
        let consumer = actimq::PullConsumer::new(client.clone(), GROUP);
        let queues = consumer.fetch_queues(TOPIC).await.unwrap();
        assert_eq!(queues.len(), 4);
        for (i, mq) in queues.iter().enumerate() {
            consumer.commit_offset(mq, 10 + i as u64).await.unwrap();
        }
        // Every commit was acknowledged: kill at once, before any periodic write.
        a.kill9();
        a = broker(&config, &ns.addr);
        let new_addr = a.addr.clone();
        wait_for(TIMEOUT, "the restarted broker routed", || {
            let (ns, new_addr) = (ns.addr.clone(), new_addr.clone());
            async move {
                topic_route_async(&ns, TOPIC)
                    .await
                    .filter(|r| r.contains(&new_addr))
            }
        })
        .await;
        let fresh = ClientInstance::start(client_config(&ns.addr)).unwrap();
        let after = actimq::PullConsumer::new(fresh, GROUP);
        for (i, mq) in queues.iter().enumerate() {
            assert_eq!(
                after.fetch_offset(mq).await.unwrap(),
                Some(10 + i as u64),
                "the acknowledged commit of {mq:?} was lost with the broker's kill -9"
            );
        }
    });
    drop(a);
}
