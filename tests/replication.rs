//! Master/slave replication with the real binaries: a slave's log becomes byte-identical to
//! its master's and its queues serve the same messages; the operator's views report the
//! lag and its return to 0; a slave refuses sends and topic updates; a slave killed with
//! SIGKILL, or a master restarted under its slave, resumes with no gap and no byte twice;
//! a divergent slave refuses to replicate and says why; a `sync_master` acknowledges only
//! what its slave holds (SIGSTOP the slave: FLUSH_SLAVE_TIMEOUT, and consumers see nothing
//! new), and after a SIGKILL of the master every acknowledged message is on the slave; with
//! two masters and two slaves, consumers read from a slave while its master is down and go
//! back to the master without a redelivery, producers spread over the other master, and
//! ordered sends of a key whose queue is on the dead master fail instead of moving.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actimq::internals::actors::remote_link::{self, LinkConfig, RemoteLink};
use actimq::internals::protocol::message::SendMessageRequestHeader;
use actimq::internals::protocol::{Frame, RequestCode, ResponseCode};
use actimq::internals::storage::{MessageStore, StoreConfig};
use actimq::{ClientConfig, ClientInstance, Message, Producer, ProducerConfig, SendStatus};
use bytes::Bytes;
use common::process::{create_topic_on, eventually, mqadmin, spawn, Proc};

const WAIT: Duration = Duration::from_secs(60);
const SEGMENT: u64 = 8 * 1024 * 1024;

/// A broker config: `broker-a`, its own store under `dir/<file>-store`, small segments.
fn config(dir: &Path, file: &str, extra: &str) -> PathBuf {
    config_named(dir, file, "broker-a", extra)
}

/// The same for broker name `name`.
fn config_named(dir: &Path, file: &str, name: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{file}.toml"));
    let store = dir.join(format!("{file}-store"));
    std::fs::write(
        &path,
        format!(
            "broker_name = \"{name}\"\nlisten_host = \"127.0.0.1\"\nregister_broker_interval = 500\n\
             store_path_root_dir = \"{}\"\nmapped_file_size_commit_log = {SEGMENT}\n\
             warm_mapped_file_enable = false\nauto_create_topic_enable = true\n{extra}\n",
            store.display()
        ),
    )
    .unwrap();
    path
}

/// A push consumer of `group` on `topic` (every tag) from the first offset, rebalancing
/// every second and long-polling 2 s, so failovers show within a test's patience.
fn push_config(group: &str, topic: &str) -> actimq::PushConsumerConfig {
    let mut c = actimq::PushConsumerConfig::new(group).subscribe(topic, "*");
    c.consume_from_where = actimq::ConsumeFromWhere::FirstOffset;
    c.rebalance_interval = Duration::from_secs(1);
    c.pull_suspend = Duration::from_secs(2);
    c
}

const SLAVE: &str = "broker_id = 1\nbroker_role = \"slave\"";

fn start(config: &Path, ns: &str) -> Proc {
    spawn(
        "mqbroker",
        &[
            "-c",
            config.to_str().unwrap(),
            "-n",
            ns,
            "--listen-port",
            "0",
        ],
    )
}

/// `mqadmin brokerStatus` as a map (empty when the broker does not answer).
fn status(ns: &str, addr: &str) -> BTreeMap<String, String> {
    let (ok, out, _) = mqadmin(&["-n", ns, "brokerStatus", "-b", addr, "--json"]);
    if !ok {
        return BTreeMap::new();
    }
    serde_json::from_str(&out).unwrap_or_default()
}

fn num(m: &BTreeMap<String, String>, key: &str) -> Option<u64> {
    m.get(key)?.parse().ok()
}

/// Waits until the slave's log ends where the master's does and its lag reads 0; returns
/// that offset.
fn wait_caught_up(ns: &str, master: &str, slave: &str) -> u64 {
    eventually(WAIT, "the slave to catch up with its master", || {
        let (m, s) = (status(ns, master), status(ns, slave));
        let end = num(&m, "commitLogMaxOffset")?;
        (end > 0
            && num(&s, "commitLogMaxOffset")? == end
            && num(&s, "haLagBytes")? == 0
            && num(&m, "haLagBytes")? == 0)
            .then_some(end)
    })
}

/// CRC of the commit log's bytes below `end` (segments in order).
fn log_crc(store: &Path, end: u64) -> u32 {
    let mut files: Vec<_> = std::fs::read_dir(store.join("commitlog"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut hasher = crc32fast::Hasher::new();
    let mut left = end;
    for f in files {
        if left == 0 {
            break;
        }
        let bytes = std::fs::read(&f).unwrap();
        let take = (bytes.len() as u64).min(left) as usize;
        hasher.update(&bytes[..take]);
        left -= take as u64;
    }
    assert_eq!(
        left,
        0,
        "the log in {} is shorter than {end}",
        store.display()
    );
    hasher.finalize()
}

/// Checks that the stopped master's and slave's logs (under `dir`) hold the same bytes below
/// `end`, then opens both stores for closer comparison.
fn same_logs_below(dir: &Path, end: u64) -> (MessageStore, MessageStore) {
    let (mdir, sdir) = (dir.join("master-store"), dir.join("slave-store"));
    assert_eq!(
        log_crc(&mdir, end),
        log_crc(&sdir, end),
        "logs differ below {end}"
    );
    (open_store(&mdir), open_store(&sdir))
}

fn open_store(dir: &Path) -> MessageStore {
    let config = StoreConfig {
        store_path_root_dir: dir.to_owned(),
        mapped_file_size_commit_log: SEGMENT,
        warm_mapped_file_enable: false,
        ..StoreConfig::default()
    };
    MessageStore::open(config, "127.0.0.1:1".parse().unwrap()).unwrap()
}

/// Sends `batches` batches of `per_batch` messages to `topic`; returns what SEND_OK'd.
async fn send_batches(ns: &str, topic: &str, batches: usize, per_batch: usize) -> usize {
    let client = ClientInstance::start(ClientConfig::new(ns.to_owned())).unwrap();
    let producer = Producer::start(client.clone(), ProducerConfig::new("repl-producers"));
    let mut ok = 0;
    for b in 0..batches {
        let msgs = (0..per_batch)
            .map(|i| Message::new(topic, format!("message {b}-{i} {}", "x".repeat(i % 200))))
            .collect();
        let r = producer.send_batch(msgs).await.expect("batch send");
        assert_eq!(r.status, SendStatus::SendOk);
        ok += per_batch;
    }
    producer.shutdown().await;
    ClientInstance::shutdown(&client).await;
    ok
}

/// A SEND_MESSAGE straight to `addr` (no route): the answer's code and remark.
async fn raw_send(addr: &str) -> (Option<ResponseCode>, String) {
    let link = RemoteLink::start(addr, LinkConfig::default(), None);
    let header = SendMessageRequestHeader {
        producer_group: "raw".into(),
        topic: "Repl".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 1,
        queue_id: 0,
        born_timestamp: 1,
        ..Default::default()
    };
    let frame = Frame::request(
        RequestCode::SendMessage,
        0,
        &header,
        Bytes::from_static(b"x"),
    )
    .unwrap();
    let answer = remote_link::call(&link, addr, frame, Duration::from_secs(5))
        .await
        .unwrap();
    (answer.response_code(), answer.remark.unwrap_or_default())
}

#[test]
fn a_slave_holds_a_byte_identical_log_and_the_same_queues() {
    let dir = tempfile::tempdir().unwrap();
    let ns = common::process::namesrv(dir.path(), 3_000);
    let mut master = start(&config(dir.path(), "master", ""), &ns.addr);
    let mut slave = start(&config(dir.path(), "slave", SLAVE), &ns.addr);
    // The master makes the topic; the slave copies it.
    create_topic_on(&ns.addr, &master.addr, "Repl", 8);

    // A slave refuses sends and topic updates, with a reason.
    let (ok, out, err) = mqadmin(&[
        "-n",
        &ns.addr,
        "updateTopic",
        "-b",
        &slave.addr,
        "-t",
        "Other",
        "-r",
        "1",
        "-w",
        "1",
    ]);
    assert!(!ok, "updateTopic on a slave succeeded: {out}");
    assert!(err.contains("is a slave"), "unclear refusal: {err}");
    let (code, remark) = actix_rt::System::new().block_on(raw_send(&slave.addr));
    assert_eq!(code, Some(ResponseCode::ServiceNotAvailable), "{remark}");
    assert!(remark.contains("slave"), "unclear refusal: {remark}");

    let sent = actix_rt::System::new().block_on(send_batches(&ns.addr, "Repl", 1_000, 100));
    assert_eq!(sent, 100_000);
    let end = wait_caught_up(&ns.addr, &master.addr, &slave.addr);

    // The operator's views: clusterList lists both with lag 0, haStatus names the slave.
    let (ok, list, _) = mqadmin(&["-n", &ns.addr, "clusterList", "--json"]);
    assert!(ok);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(rows.len(), 2, "{list}");
    for r in &rows {
        assert_eq!(r["max_offset"], end, "{list}");
        assert_eq!(r["ha_lag_bytes"], 0, "{list}");
    }
    let (ok, ha, _) = mqadmin(&["-n", &ns.addr, "haStatus", "-b", &master.addr]);
    assert!(ok);
    assert!(
        ha.contains("streaming") && ha.contains("1 slave(s), 1 in sync"),
        "{ha}"
    );
    // topicRoute lists the slave with read-only permission (4), the master read-write (6).
    let (ok, route, _) = mqadmin(&["-n", &ns.addr, "topicRoute", "-t", "Repl"]);
    assert!(ok);
    let perm_of = |addr: &str| {
        route
            .lines()
            .find(|l| l.contains(addr))
            .and_then(|l| l.split_whitespace().last())
            .map(str::to_owned)
    };
    assert_eq!(perm_of(&master.addr).as_deref(), Some("6"), "{route}");
    assert_eq!(perm_of(&slave.addr).as_deref(), Some("4"), "{route}");

    master.terminate();
    slave.terminate();
    let (m, s) = same_logs_below(dir.path(), end);
    assert_eq!(s.max_physical_offset(), end);
    let mut messages = 0;
    for q in 0..8 {
        let max = m.max_offset("Repl", q);
        assert_eq!(s.max_offset("Repl", q), max, "queue {q}");
        for o in 0..max {
            let (a, b) = (
                m.read_by_queue_offset("Repl", q, o).unwrap(),
                s.read_by_queue_offset("Repl", q, o).unwrap(),
            );
            assert_eq!(a.raw, b.raw, "queue {q} offset {o}");
            messages += 1;
        }
    }
    assert_eq!(messages, 100_000);
    m.shutdown().unwrap();
    s.shutdown().unwrap();
}

/// Sends `n` single messages one by one; returns the bodies answered SEND_OK and counts
/// the other statuses. Errors (a broker gone) are counted apart.
async fn send_each(
    producer: &Producer,
    topic: &str,
    from: usize,
    n: usize,
) -> (Vec<String>, BTreeMap<String, usize>) {
    let mut ok = Vec::new();
    let mut other: BTreeMap<String, usize> = BTreeMap::new();
    for i in from..from + n {
        let body = format!("numbered-{i}");
        match producer.send(Message::new(topic, body.clone())).await {
            Ok(r) if r.status == SendStatus::SendOk => ok.push(body),
            Ok(r) => *other.entry(r.status.to_string()).or_default() += 1,
            Err(_) => *other.entry("error".into()).or_default() += 1,
        }
    }
    (ok, other)
}

/// Sends `numbered-from..from+n` to `topic` from a client of its own; returns how many were
/// answered SEND_OK.
async fn produce(ns: &str, topic: &str, from: usize, n: usize) -> usize {
    let client = ClientInstance::start(ClientConfig::new(ns.to_owned())).unwrap();
    let producer = Producer::start(client.clone(), ProducerConfig::new("repl-producers"));
    let (sent, _) = send_each(&producer, topic, from, n).await;
    producer.shutdown().await;
    ClientInstance::shutdown(&client).await;
    sent.len()
}

/// Every message body stored in `topic` (queues 0..queues) of the store at `dir`.
fn bodies_in_store(dir: &Path, topic: &str, queues: u32) -> std::collections::HashSet<String> {
    let store = open_store(dir);
    let mut out = std::collections::HashSet::new();
    for q in 0..queues {
        for o in store.min_offset(topic, q)..store.max_offset(topic, q) {
            let m = store.read_by_queue_offset(topic, q, o).unwrap();
            out.insert(String::from_utf8_lossy(&m.body).into_owned());
        }
    }
    store.shutdown().unwrap();
    out
}

#[test]
fn a_sync_master_acknowledges_only_what_its_slave_holds() {
    let dir = tempfile::tempdir().unwrap();
    let ns = common::process::namesrv(dir.path(), 3_000);
    let sync = "broker_role = \"sync_master\"\nflush_disk_type = \"sync_flush\"\nsync_flush_timeout = 1000";
    let mut master = start(&config(dir.path(), "master", sync), &ns.addr);
    let mut slave = start(&config(dir.path(), "slave", SLAVE), &ns.addr);
    create_topic_on(&ns.addr, &master.addr, "Sync", 2);
    eventually(WAIT, "the slave in sync", || {
        status(&ns.addr, &master.addr)
            .get("haState")
            .filter(|s| s.contains("1 in sync"))
            .cloned()
    });
    let visible = |ns: &str, addr: &str| {
        let (ok, out, _) = mqadmin(&["-n", ns, "topicStatus", "-t", "Sync", "--json"]);
        assert!(ok);
        let _ = addr;
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|q| q["max_offset"].as_u64().unwrap_or(0))
            .sum::<u64>()
    };

    let pid = slave.child.id().to_string();
    let master_pid = master.child.id().to_string();
    let (acked, during_stop, stopped_statuses, seen_while_stopped, seen_after) =
        actix_rt::System::new().block_on(async {
            let client = ClientInstance::start(ClientConfig::new(ns.addr.clone())).unwrap();
            let producer = Producer::start(client.clone(), ProducerConfig::new("sync-producers"));
            let (mut acked, other) = send_each(&producer, "Sync", 0, 200).await;
            assert!(other.is_empty(), "statuses with the slave up: {other:?}");
            let before = visible(&ns.addr, &master.addr);
            assert_eq!(before, 200);

            // A hung slave: no acknowledgement, so no SEND_OK and nothing new for consumers.
            // (3 sends of 1 s each: shorter than the 5 s after which the master drops a
            // silent slave, so the same session resumes.)
            std::process::Command::new("kill")
                .args(["-STOP", &pid])
                .status()
                .unwrap();
            let (during, statuses) = send_each(&producer, "Sync", 200, 3).await;
            let seen_while_stopped = visible(&ns.addr, &master.addr);
            std::process::Command::new("kill")
                .args(["-CONT", &pid])
                .status()
                .unwrap();
            let seen_after = {
                let deadline = std::time::Instant::now() + WAIT;
                loop {
                    let v = visible(&ns.addr, &master.addr);
                    if v == 203 || std::time::Instant::now() > deadline {
                        break v;
                    }
                    actix_rt::time::sleep(Duration::from_millis(100)).await;
                }
            };
            let (more, other) = send_each(&producer, "Sync", 203, 100).await;
            assert!(other.is_empty(), "statuses after SIGCONT: {other:?}");
            acked.extend(more);
            // kill -9 of the master in the middle of a send loop.
            let (more, _) = send_each(&producer, "Sync", 303, 50).await;
            acked.extend(more);
            std::process::Command::new("kill")
                .args(["-KILL", &master_pid])
                .status()
                .unwrap();
            let (more, _) = send_each(&producer, "Sync", 353, 50).await;
            acked.extend(more);
            producer.shutdown().await;
            ClientInstance::shutdown(&client).await;
            (acked, during, statuses, seen_while_stopped, seen_after)
        });
    assert!(
        during_stop.is_empty(),
        "SEND_OK while the only slave was stopped: {during_stop:?}"
    );
    assert_eq!(
        stopped_statuses.get("FLUSH_SLAVE_TIMEOUT"),
        Some(&3),
        "{stopped_statuses:?}"
    );
    assert_eq!(
        seen_while_stopped, 200,
        "consumers saw unreplicated messages"
    );
    assert_eq!(seen_after, 203, "the stored messages never became visible");

    // After the kill -9 of the master, a consumer group that never ran reads every
    // acknowledged message from the slave.
    master.kill9();
    let (listener, deliveries) = counting_listener();
    actix_rt::System::new().block_on(async {
        let client = ClientInstance::start(ClientConfig::new(ns.addr.clone())).unwrap();
        let mut c = actimq::PushConsumerConfig::new("never-ran").subscribe("Sync", "*");
        c.consume_from_where = actimq::ConsumeFromWhere::FirstOffset;
        c.rebalance_interval = Duration::from_secs(1);
        let consumer = actimq::PushConsumer::start(client.clone(), c, listener)
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let missing = {
                let map = deliveries.lock().unwrap();
                acked.iter().filter(|b| !map.contains_key(*b)).count()
            };
            if missing == 0 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{missing} acknowledged messages never delivered from the slave"
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = consumer.shutdown().await;
        ClientInstance::shutdown(&client).await;
    });
    // And they are in the slave's log.
    slave.terminate();
    let on_slave = bodies_in_store(&dir.path().join("slave-store"), "Sync", 2);
    let missing: Vec<_> = acked.iter().filter(|b| !on_slave.contains(*b)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged but not on the slave: {missing:?}"
    );
    assert!(acked.len() >= 350, "only {} acknowledged", acked.len());
}

#[test]
fn a_killed_slave_and_a_restarted_master_resume_with_no_gap_and_no_byte_twice() {
    let dir = tempfile::tempdir().unwrap();
    let ns = common::process::namesrv(dir.path(), 3_000);
    let master_config = config(dir.path(), "master", "");
    let slave_config = config(dir.path(), "slave", SLAVE);
    let mut master = start(&master_config, &ns.addr);
    let mut slave = start(&slave_config, &ns.addr);
    create_topic_on(&ns.addr, &master.addr, "Resume", 4);
    let system = actix_rt::System::new();
    system.block_on(send_batches(&ns.addr, "Resume", 200, 100));
    // SIGKILL the slave while it is (or may be) mid-stream, write more, start it again.
    slave.kill9();
    system.block_on(send_batches(&ns.addr, "Resume", 200, 100));
    let mut slave = start(&slave_config, &ns.addr);
    let end = wait_caught_up(&ns.addr, &master.addr, &slave.addr);
    // Restart the master under its connected slave (a new HA port: the slave follows the
    // name servers' route to it) and write more.
    master.terminate();
    let mut master = start(&master_config, &ns.addr);
    eventually(WAIT, "the restarted master in the route", || {
        let (ok, out, _) = mqadmin(&["-n", &ns.addr, "topicRoute", "-t", "Resume", "--json"]);
        (ok && out.contains(&master.addr)).then_some(())
    });
    let more = system.block_on(send_batches(&ns.addr, "Resume", 100, 100));
    assert_eq!(more, 10_000);
    let end2 = wait_caught_up(&ns.addr, &master.addr, &slave.addr);
    assert!(end2 > end);
    master.terminate();
    slave.terminate();
    let (m, s) = same_logs_below(dir.path(), end2);
    assert_eq!(
        s.max_physical_offset(),
        end2,
        "the slave holds bytes twice or misses some"
    );
    for q in 0..4 {
        assert_eq!(
            s.max_offset("Resume", q),
            m.max_offset("Resume", q),
            "queue {q}"
        );
    }
    m.shutdown().unwrap();
    s.shutdown().unwrap();
}

#[test]
fn a_divergent_slave_refuses_to_replicate_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let ns = common::process::namesrv(dir.path(), 3_000);
    // The slave's store holds more than the master's: bytes the master never had.
    let slave_store = dir.path().join("slave-store");
    {
        let store = open_store(&slave_store);
        for i in 0..50u64 {
            store
                .append(&common::message("Elsewhere", 0, i, 300))
                .unwrap();
        }
        store.shutdown().unwrap();
    }
    let before = std::fs::read(slave_store.join("commitlog").join("00000000000000000000")).unwrap();
    let master = start(&config(dir.path(), "master", ""), &ns.addr);
    let slave = start(&config(dir.path(), "slave", SLAVE), &ns.addr);
    let state = eventually(WAIT, "the slave to report the refusal", || {
        status(&ns.addr, &slave.addr)
            .get("haState")
            .filter(|s| s.starts_with("refused"))
            .cloned()
    });
    assert!(state.contains("divergent"), "{state}");
    let (ok, ha, _) = mqadmin(&["-n", &ns.addr, "haStatus", "-b", &slave.addr]);
    assert!(ok && ha.contains("divergent"), "{ha}");
    // The master keeps serving; a send there does not reach the slave's log.
    let (ok, out, err) = mqadmin(&["-n", &ns.addr, "sendMessage", "-t", "Fresh", "-p", "hello"]);
    assert!(ok, "{out}{err}");
    assert!(
        slave.log_text().contains("divergent"),
        "not in the slave's log"
    );
    drop((master, slave));
    let after = std::fs::read(slave_store.join("commitlog").join("00000000000000000000")).unwrap();
    assert!(before == after, "the divergent slave's log was changed");
}

type Deliveries = std::sync::Arc<std::sync::Mutex<BTreeMap<String, u32>>>;

fn counting_listener() -> (actimq::MessageListener, Deliveries) {
    let deliveries: Deliveries = Default::default();
    let d = deliveries.clone();
    let listener = actimq::MessageListener::from_fn(move |msgs| {
        let mut map = d.lock().unwrap();
        for m in msgs {
            *map.entry(String::from_utf8_lossy(m.body()).into_owned())
                .or_default() += 1;
        }
        actimq::ConsumeResult::Success
    });
    (listener, deliveries)
}

/// Waits (without blocking the actors on this thread) until every `numbered-i`, i < n,
/// arrived.
async fn wait_delivered(deliveries: &Deliveries, n: usize, what: &str) {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        let got = {
            let map = deliveries.lock().unwrap();
            (0..n)
                .filter(|i| map.contains_key(&format!("numbered-{i}")))
                .count()
        };
        if got == n {
            return;
        }
        if std::time::Instant::now() >= deadline {
            let map = deliveries.lock().unwrap();
            let missing: Vec<usize> = (0..n)
                .filter(|i| !map.contains_key(&format!("numbered-{i}")))
                .collect();
            panic!("{what}: {got} of {n} delivered; missing {missing:?}");
        }
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs a blocking probe (mqadmin) off the actix thread.
async fn off_thread<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

#[test]
fn consumers_read_from_the_slave_while_the_master_is_down_and_go_back_without_redelivery() {
    let dir = tempfile::tempdir().unwrap();
    let ns = common::process::namesrv(dir.path(), 3_000);
    let a_config = config_named(dir.path(), "a", "broker-a", "");
    let mut master_a = start(&a_config, &ns.addr);
    let slave_a = start(
        &config_named(dir.path(), "a-s", "broker-a", SLAVE),
        &ns.addr,
    );
    let master_b = start(&config_named(dir.path(), "b", "broker-b", ""), &ns.addr);
    let _slave_b = start(
        &config_named(dir.path(), "b-s", "broker-b", SLAVE),
        &ns.addr,
    );
    let route = |ns: &str| {
        let (ok, out, _) = mqadmin(&["-n", ns, "topicRoute", "-t", "Fo", "--json"]);
        ok.then_some(out)
    };
    eventually(WAIT, "both masters in clusterList", || {
        let (ok, out, _) = mqadmin(&["-n", &ns.addr, "clusterList"]);
        (ok && out.contains(&master_a.addr) && out.contains(&master_b.addr)).then_some(())
    });
    let (ok, out, err) = mqadmin(&[
        "-n",
        &ns.addr,
        "updateTopic",
        "-c",
        "DefaultCluster",
        "-t",
        "Fo",
        "-r",
        "4",
        "-w",
        "4",
    ]);
    assert!(ok, "{out}{err}");
    eventually(WAIT, "the route of Fo", || {
        route(&ns.addr).filter(|r| r.contains(&master_a.addr) && r.contains(&master_b.addr))
    });

    let system = actix_rt::System::new();
    let client = system.block_on(async {
        let mut cc = ClientConfig::new(ns.addr.clone());
        cc.poll_name_server_interval = Duration::from_millis(500);
        ClientInstance::start(cc).unwrap()
    });
    let producer = system
        .block_on(async { Producer::start(client.clone(), ProducerConfig::new("fo-producers")) });
    // 400 messages over both masters, copied to the slaves; then broker-a's master dies.
    let (first, _) = system.block_on(send_each(&producer, "Fo", 0, 400));
    assert_eq!(first.len(), 400);
    let _ = wait_caught_up(&ns.addr, &master_a.addr, &slave_a.addr);
    master_a.kill9();
    let dead = master_a.addr.clone();
    eventually(WAIT, "the route without broker-a's master", || {
        route(&ns.addr).filter(|r| !r.contains(&dead) && r.contains(&slave_a.addr))
    });

    let (listener, deliveries) = counting_listener();
    let mut by_queue: BTreeMap<(String, i32), u32> = BTreeMap::new();
    let consumer = system.block_on(async {
        let c = push_config("fo-group", "Fo");
        let consumer = actimq::PushConsumer::start(client.clone(), c, listener)
            .await
            .unwrap();
        // Meanwhile producers go to broker-b, spread over its queues.
        for i in 400..800 {
            let r = producer
                .send(Message::new("Fo", format!("numbered-{i}")))
                .await
                .unwrap_or_else(|e| panic!("send {i} with broker-a's master down: {e}"));
            assert_eq!(r.status, SendStatus::SendOk);
            *by_queue
                .entry((r.message_queue.broker_name, r.message_queue.queue_id))
                .or_default() += 1;
        }
        // broker-a's share of the first 400 comes from its slave.
        wait_delivered(&deliveries, 800, "with broker-a's master down").await;
        // Ordered sends keep each key on its queue: a key whose queue is on broker-a fails
        // (strict order) instead of moving to broker-b.
        let mut failed_keys = Vec::new();
        for k in 0..40 {
            let key = format!("key-{k}");
            match producer
                .send_orderly(Message::new("Fo", format!("ordered-{k}")), key.clone())
                .await
            {
                Ok(r) => assert_eq!(r.message_queue.broker_name, "broker-b", "{key} moved"),
                Err(e) => {
                    let text = e.to_string();
                    assert!(
                        text.contains("broker-a") && text.contains("order"),
                        "unclear error for {key}: {text}"
                    );
                    failed_keys.push(key);
                }
            }
        }
        assert!(
            !failed_keys.is_empty(),
            "no key mapped onto broker-a's queues"
        );
        (consumer, failed_keys)
    });
    let (consumer, failed_keys) = consumer;
    assert!(
        by_queue.keys().all(|(b, _)| b == "broker-b") && by_queue.len() == 4,
        "{by_queue:?}"
    );
    assert!(
        by_queue.values().all(|&n| (80..=120).contains(&n)),
        "sends piled up: {by_queue:?}"
    );

    // The master comes back (at a new address): the consumer goes back to it.
    let master_a = start(&a_config, &ns.addr);
    let back = master_a.addr.clone();
    let ns_addr = ns.addr.clone();
    system.block_on(async {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let (n, b) = (ns_addr.clone(), back.clone());
            let r = off_thread(move || {
                let (ok, out, _) = mqadmin(&["-n", &n, "topicRoute", "-t", "Fo", "--json"]);
                ok && out.contains(&b)
            })
            .await;
            if r {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "broker-a's master not back in the route"
            );
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        let (more, other) = send_each(&producer, "Fo", 800, 400).await;
        assert_eq!(more.len(), 400, "{other:?}");
        // The keys that failed go to broker-a again, now that its master is back.
        for key in &failed_keys {
            let r = producer
                .send_orderly(
                    Message::new("Fo", format!("ordered-again-{key}")),
                    key.clone(),
                )
                .await
                .unwrap_or_else(|e| panic!("{key} with broker-a's master back: {e}"));
            assert_eq!(r.message_queue.broker_name, "broker-a", "{key}");
        }
        wait_delivered(&deliveries, 1200, "after broker-a's master returned").await;
        consumer
            .shutdown()
            .await
            .expect("offsets saved on the masters");
        producer.shutdown().await;
        ClientInstance::shutdown(&client).await;
    });
    let map = deliveries.lock().unwrap();
    let twice: Vec<_> = map.iter().filter(|(_, &n)| n > 1).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");
    assert_eq!(
        map.keys().filter(|k| k.starts_with("numbered-")).count(),
        1200
    );
    drop(master_a);
}

/// The offsets `group` has committed on the broker at `addr` for `topic`'s queues 0..n
/// (asked directly, no route): the sum, and whether every queue has one.
async fn committed_on(addr: &str, group: &str, topic: &str, queues: i32) -> (i64, bool) {
    use actimq::internals::protocol::message::{
        OffsetResponseHeader, QueryConsumerOffsetRequestHeader,
    };
    let link = RemoteLink::start(addr, LinkConfig::default(), None);
    let (mut sum, mut all) = (0, true);
    for q in 0..queues {
        let header = QueryConsumerOffsetRequestHeader {
            consumer_group: group.into(),
            topic: topic.into(),
            queue_id: q,
            set_zero_if_not_found: None,
        };
        let frame =
            Frame::request(RequestCode::QueryConsumerOffset, 0, &header, Bytes::new()).unwrap();
        match remote_link::call(&link, addr, frame, Duration::from_secs(5)).await {
            Ok(f) if f.response_code() == Some(ResponseCode::Success) => {
                sum += f.decode_header::<OffsetResponseHeader>().unwrap().offset;
            }
            _ => all = false,
        }
    }
    (sum, all)
}

#[test]
fn a_new_member_resumes_from_the_offsets_the_slave_copied_from_its_master() {
    let dir = tempfile::tempdir().unwrap();
    let ns = common::process::namesrv(dir.path(), 3_000);
    let mut master = start(&config(dir.path(), "master", ""), &ns.addr);
    let slave = start(&config(dir.path(), "slave", SLAVE), &ns.addr);
    create_topic_on(&ns.addr, &master.addr, "Copy", 4);
    let consumer_config = || push_config("copy-group", "Copy");
    let system = actix_rt::System::new();
    let (listener, first) = counting_listener();
    let slave_addr = slave.addr.clone();
    system.block_on(async {
        let client = ClientInstance::start(ClientConfig::new(ns.addr.clone())).unwrap();
        let producer = Producer::start(client.clone(), ProducerConfig::new("copy-producers"));
        let (sent, _) = send_each(&producer, "Copy", 0, 200).await;
        assert_eq!(sent.len(), 200);
        // One member consumes all 200 and leaves, committing its offsets on the master.
        let consumer = actimq::PushConsumer::start(client.clone(), consumer_config(), listener)
            .await
            .unwrap();
        wait_delivered(&first, 200, "the first member").await;
        consumer.shutdown().await.expect("offsets committed");
        // 100 more that nobody consumed yet.
        let (sent, _) = send_each(&producer, "Copy", 200, 100).await;
        assert_eq!(sent.len(), 100);
        producer.shutdown().await;
        ClientInstance::shutdown(&client).await;
        // The slave's copy of the group's offsets catches up (every 3 s).
        let deadline = std::time::Instant::now() + WAIT;
        while committed_on(&slave_addr, "copy-group", "Copy", 4).await != (200, true) {
            assert!(
                std::time::Instant::now() < deadline,
                "the slave never copied the offsets"
            );
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // The master dies; a new member of the group, in a new client, reads from the slave
    // from the copied offsets: the 100 new messages, none of the 200 consumed before.
    master.kill9();
    let (listener, second) = counting_listener();
    system.block_on(async {
        let client = ClientInstance::start(ClientConfig::new(ns.addr.clone())).unwrap();
        let consumer = actimq::PushConsumer::start(client.clone(), consumer_config(), listener)
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let got = {
                let map = second.lock().unwrap();
                (200..300)
                    .filter(|i| map.contains_key(&format!("numbered-{i}")))
                    .count()
            };
            if got == 100 {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{got} of the 100 new messages"
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = consumer.shutdown().await;
        ClientInstance::shutdown(&client).await;
    });
    let map = second.lock().unwrap();
    let again: Vec<_> = (0..200)
        .filter(|i| map.contains_key(&format!("numbered-{i}")))
        .collect();
    assert!(
        again.is_empty(),
        "consumed before, delivered again from the slave: {again:?}"
    );
}

#[test]
fn offsets_committed_on_the_slave_while_the_master_was_away_reach_the_master() {
    let dir = tempfile::tempdir().unwrap();
    let ns = common::process::namesrv(dir.path(), 3_000);
    let master_config = config(dir.path(), "master", "");
    let mut master = start(&master_config, &ns.addr);
    let slave = start(&config(dir.path(), "slave", SLAVE), &ns.addr);
    create_topic_on(&ns.addr, &master.addr, "Away", 4);
    let consumer_config = || push_config("away-group", "Away");
    let system = actix_rt::System::new();
    assert_eq!(system.block_on(produce(&ns.addr, "Away", 0, 200)), 200);
    wait_caught_up(&ns.addr, &master.addr, &slave.addr);
    // The master dies; a consumer reads everything from the slave, commits there, leaves.
    master.kill9();
    let (listener, first) = counting_listener();
    system.block_on(async {
        let client = ClientInstance::start(ClientConfig::new(ns.addr.clone())).unwrap();
        let consumer = actimq::PushConsumer::start(client.clone(), consumer_config(), listener)
            .await
            .unwrap();
        wait_delivered(&first, 200, "from the slave").await;
        consumer
            .shutdown()
            .await
            .expect("offsets committed on the slave");
        ClientInstance::shutdown(&client).await;
    });
    // The master comes back: the slave pushes what was committed on it, and the master
    // keeps it.
    let master = start(&master_config, &ns.addr);
    let master_addr = master.addr.clone();
    system.block_on(async {
        let deadline = std::time::Instant::now() + WAIT;
        while committed_on(&master_addr, "away-group", "Away", 4).await != (200, true) {
            assert!(
                std::time::Instant::now() < deadline,
                "the master never got the offsets committed on its slave"
            );
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    });
}

#[test]
fn a_stored_but_unacknowledged_send_goes_to_another_broker_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let ns = common::process::namesrv(dir.path(), 3_000);
    // broker-a: a sync_master with no slave (SLAVE_NOT_AVAILABLE); broker-b: async.
    let a = start(
        &config_named(dir.path(), "a", "broker-a", "broker_role = \"sync_master\""),
        &ns.addr,
    );
    let b = start(&config_named(dir.path(), "b", "broker-b", ""), &ns.addr);
    let (ok, out, err) = mqadmin(&[
        "-n",
        &ns.addr,
        "updateTopic",
        "-c",
        "DefaultCluster",
        "-t",
        "Retry",
        "-r",
        "2",
        "-w",
        "2",
    ]);
    assert!(ok, "{out}{err}");
    eventually(WAIT, "the route of Retry", || {
        let (ok, out, _) = mqadmin(&["-n", &ns.addr, "topicRoute", "-t", "Retry", "--json"]);
        (ok && out.contains(&a.addr) && out.contains(&b.addr)).then_some(())
    });
    let (plain, retrying) = actix_rt::System::new().block_on(async {
        let client = ClientInstance::start(ClientConfig::new(ns.addr.clone())).unwrap();
        let plain = Producer::start(client.clone(), ProducerConfig::new("plain"));
        let mut config = ProducerConfig::new("retrying");
        config.retry_another_broker_when_not_store_ok = true;
        let retrying = Producer::start(client.clone(), config);
        let mut results = (Vec::new(), Vec::new());
        for i in 0..20 {
            let r = plain
                .send(Message::new("Retry", format!("p-{i}")))
                .await
                .unwrap();
            results.0.push((r.status, r.message_queue.broker_name));
            let r = retrying
                .send(Message::new("Retry", format!("r-{i}")))
                .await
                .unwrap();
            results.1.push((r.status, r.message_queue.broker_name));
        }
        ClientInstance::shutdown(&client).await;
        results
    });
    // Without the option, broker-a's answers come back as they are: stored, not SEND_OK.
    assert!(
        plain
            .iter()
            .any(|(s, b)| *s == SendStatus::SlaveNotAvailable && b == "broker-a"),
        "{plain:?}"
    );
    // With it, each such send is retried on broker-b and acknowledged there.
    assert!(
        retrying
            .iter()
            .all(|(s, b)| *s == SendStatus::SendOk && b == "broker-b"),
        "{retrying:?}"
    );
}

#[test]
fn an_orderly_consumer_waits_for_the_master_while_a_concurrent_one_reads_the_slave() {
    let dir = tempfile::tempdir().unwrap();
    let ns = common::process::namesrv(dir.path(), 3_000);
    let master_config = config(dir.path(), "master", "");
    let mut master = start(&master_config, &ns.addr);
    let slave = start(&config(dir.path(), "slave", SLAVE), &ns.addr);
    create_topic_on(&ns.addr, &master.addr, "Ord", 2);
    let system = actix_rt::System::new();
    assert_eq!(system.block_on(produce(&ns.addr, "Ord", 0, 100)), 100);
    wait_caught_up(&ns.addr, &master.addr, &slave.addr);
    master.kill9();
    let killed = std::time::Instant::now();
    let group = |name: &str, orderly: bool| {
        let c = push_config(name, "Ord");
        if orderly {
            c.orderly()
        } else {
            c
        }
    };
    let (concurrent_listener, concurrent) = counting_listener();
    let (orderly_listener, ordered) = counting_listener();
    let client = system.block_on(async {
        let client = ClientInstance::start(ClientConfig::new(ns.addr.clone())).unwrap();
        let c1 =
            actimq::PushConsumer::start(client.clone(), group("ord-c", false), concurrent_listener)
                .await
                .unwrap();
        let c2 =
            actimq::PushConsumer::start(client.clone(), group("ord-o", true), orderly_listener)
                .await
                .unwrap();
        // The concurrent group reads everything from the slave...
        wait_delivered(&concurrent, 100, "the concurrent group, from the slave").await;
        println!(
            "a concurrent group started after the kill had all 100 messages from the slave {} ms after the kill",
            killed.elapsed().as_millis()
        );
        (client, c1, c2)
    });
    // ...while the orderly one, which needs the master's lock, has read nothing.
    assert!(
        ordered.lock().unwrap().is_empty(),
        "an orderly consumer read from a slave"
    );
    let restarted = std::time::Instant::now();
    let _master = start(&master_config, &ns.addr);
    let (client, c1, c2) = client;
    system.block_on(async {
        wait_delivered(&ordered, 100, "the orderly group, once the master is back").await;
        println!(
            "the orderly group had all 100 messages {} ms after the master restarted",
            restarted.elapsed().as_millis()
        );
        let _ = c1.shutdown().await;
        let _ = c2.shutdown().await;
        ClientInstance::shutdown(&client).await;
    });
}

/// A pull without hold on `addr`: the answer's code and `next_begin_offset`.
async fn raw_pull(addr: &str, topic: &str, queue_id: i32, offset: u64) -> (ResponseCode, i64) {
    use actimq::internals::protocol::message::{
        PullMessageRequestHeader, PullMessageResponseHeader,
    };
    let link = RemoteLink::start(addr, LinkConfig::default(), None);
    let header = PullMessageRequestHeader {
        consumer_group: "raw-puller".into(),
        topic: topic.into(),
        queue_id,
        queue_offset: offset as i64,
        max_msg_nums: 32,
        ..Default::default()
    };
    let frame = Frame::request(RequestCode::PullMessage, 0, &header, Bytes::new()).unwrap();
    let answer = remote_link::call(&link, addr, frame, Duration::from_secs(5))
        .await
        .unwrap();
    let code = answer.response_code().unwrap();
    let next = answer
        .decode_header::<PullMessageResponseHeader>()
        .map(|h| h.next_begin_offset)
        .unwrap_or(-1);
    (code, next)
}

/// Found by `mqbench chaos`: a `sync_master` restarted while its slave was down confirmed
/// nothing until the slave came back, so every queue looked empty and each pull was told
/// "offset moved" to 0; the consumers went back to the start and consumed everything again.
/// A pull past the confirmed end, but not past the written one, now waits. And a slave
/// behind a consumer (it missed the master's last records) leaves the offset where it is,
/// as RocketMQ's slaves do, instead of sending the consumer back to its own end.
#[test]
fn no_broker_sends_a_consumer_back_for_records_it_has_not_confirmed_or_not_copied_yet() {
    let dir = tempfile::tempdir().unwrap();
    let ns = common::process::namesrv(dir.path(), 3_000);
    let sync = "broker_role = \"sync_master\"\nflush_disk_type = \"sync_flush\"\nsync_flush_timeout = 1000";
    let master_config = config(dir.path(), "master", sync);
    let mut master = start(&master_config, &ns.addr);
    let mut slave = start(&config(dir.path(), "slave", SLAVE), &ns.addr);
    create_topic_on(&ns.addr, &master.addr, "Rewind", 1);
    eventually(WAIT, "the slave in sync", || {
        status(&ns.addr, &master.addr)
            .get("haState")
            .filter(|s| s.contains("1 in sync"))
            .cloned()
    });
    let system = actix_rt::System::new();
    let acked = system.block_on(produce(&ns.addr, "Rewind", 0, 50));
    assert_eq!(acked, 50);
    wait_caught_up(&ns.addr, &master.addr, &slave.addr);

    // The slave is behind a consumer that read the master's end plus what comes next.
    let on_slave = system.block_on(raw_pull(&slave.addr, "Rewind", 0, 60));
    assert_ne!(
        on_slave.0,
        ResponseCode::PullOffsetMoved,
        "the slave moved the offset to {}",
        on_slave.1
    );
    assert_eq!(on_slave.1, 60, "the slave changed the offset");

    // The master restarts with its slave gone: nothing is confirmed until it returns.
    slave.kill9();
    master.kill9();
    let master = start(&master_config, &ns.addr);
    let (code, next) = system.block_on(raw_pull(&master.addr, "Rewind", 0, 30));
    assert_ne!(
        code,
        ResponseCode::PullOffsetMoved,
        "the restarted master moved offset 30 to {next}"
    );
    assert_eq!(next, 30);
}

/// Delayed messages on a master with a slave: the messages the master delivered and its
/// delivery offsets (system group `SCHEDULE_DELIVERY`) reach the slave, so a group that
/// never ran reads every delivered message from the slave once the master is gone, and the
/// slave knows how far delivery got.
#[test]
fn delivered_delayed_messages_and_the_delivery_offsets_reach_the_slave() {
    let dir = tempfile::tempdir().unwrap();
    let ns = common::process::namesrv(dir.path(), 3_000);
    let levels = "message_delay_level = \"200ms 400ms\"";
    let mut master = start(&config(dir.path(), "master", levels), &ns.addr);
    let slave = start(
        &config(dir.path(), "slave", &format!("{SLAVE}\n{levels}")),
        &ns.addr,
    );
    create_topic_on(&ns.addr, &master.addr, "Later", 2);
    let system = actix_rt::System::new();
    let slave_addr = slave.addr.clone();
    system.block_on(async {
        let client = ClientInstance::start(ClientConfig::new(ns.addr.clone())).unwrap();
        let producer = Producer::start(client.clone(), ProducerConfig::new("later-producers"));
        let (listener, first) = counting_listener();
        let consumer =
            actimq::PushConsumer::start(client.clone(), push_config("later-a", "Later"), listener)
                .await
                .unwrap();
        for i in 0..20 {
            producer
                .send(Message::new("Later", format!("numbered-{i}")).with_delay_level(1))
                .await
                .unwrap();
        }
        wait_delivered(&first, 20, "the delayed messages").await;
        // The slave's copy of the delivery offset of level 1 (queue 0) reaches 20.
        let deadline = std::time::Instant::now() + WAIT;
        while committed_on(&slave_addr, "SCHEDULE_DELIVERY", "SCHEDULE_TOPIC_XXXX", 1).await
            != (20, true)
        {
            assert!(
                std::time::Instant::now() < deadline,
                "the slave never copied the delivery offsets"
            );
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = consumer.shutdown().await;
        producer.shutdown().await;
        ClientInstance::shutdown(&client).await;
    });
    master.kill9();
    let (listener, second) = counting_listener();
    system.block_on(async {
        let client = ClientInstance::start(ClientConfig::new(ns.addr.clone())).unwrap();
        let consumer =
            actimq::PushConsumer::start(client.clone(), push_config("later-b", "Later"), listener)
                .await
                .unwrap();
        wait_delivered(&second, 20, "the delivered messages, from the slave").await;
        let _ = consumer.shutdown().await;
        ClientInstance::shutdown(&client).await;
    });
}

/// A message failed while its master is away (the consumer reads from the slave, which
/// takes no send-back): it is not lost and not sent anywhere; the consumer keeps it and
/// consumes it again after `reconsume_delay`, with its count raised, and the queue's offset
/// stays below it until then.
#[test]
fn a_message_that_cannot_be_sent_back_is_consumed_again_by_its_consumer() {
    let dir = tempfile::tempdir().unwrap();
    let ns = common::process::namesrv(dir.path(), 3_000);
    let mut master = start(&config(dir.path(), "master", ""), &ns.addr);
    let slave = start(&config(dir.path(), "slave", SLAVE), &ns.addr);
    create_topic_on(&ns.addr, &master.addr, "Back", 1);
    let system = actix_rt::System::new();
    assert_eq!(system.block_on(produce(&ns.addr, "Back", 0, 10)), 10);
    wait_caught_up(&ns.addr, &master.addr, &slave.addr);
    master.kill9();
    // Every delivery of each body: (reconsume count, when); numbered-3 fails once.
    type Log = Arc<Mutex<BTreeMap<String, Vec<(u32, std::time::Instant)>>>>;
    let log: Log = Default::default();
    let l = Arc::clone(&log);
    let listener = actimq::MessageListener::from_fn(move |msgs| {
        let mut result = actimq::ConsumeResult::Success;
        let mut log = l.lock().unwrap();
        for m in msgs {
            let body = String::from_utf8_lossy(m.body()).into_owned();
            let seen = log.entry(body.clone()).or_default();
            if body == "numbered-3" && seen.is_empty() {
                result = actimq::ConsumeResult::ReconsumeLater;
            }
            seen.push((m.reconsume_times, std::time::Instant::now()));
        }
        result
    });
    system.block_on(async {
        let client = ClientInstance::start(ClientConfig::new(ns.addr.clone())).unwrap();
        let mut config = push_config("back-group", "Back");
        config.reconsume_delay = Duration::from_millis(500);
        let consumer = actimq::PushConsumer::start(client.clone(), config, listener)
            .await
            .unwrap();
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let done = {
                let log = log.lock().unwrap();
                log.len() == 10 && log["numbered-3"].len() == 2
            };
            if done {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "deliveries so far: {:?}",
                log.lock().unwrap()
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = consumer.shutdown().await;
        ClientInstance::shutdown(&client).await;
    });
    let log = log.lock().unwrap();
    let again = &log["numbered-3"];
    assert_eq!(
        again.iter().map(|(c, _)| *c).collect::<Vec<_>>(),
        vec![0, 1],
        "consumed again here, its count raised"
    );
    assert!(
        again[1].1 - again[0].1 >= Duration::from_millis(500),
        "consumed again before reconsume_delay"
    );
    for (body, d) in log.iter() {
        if body != "numbered-3" {
            assert_eq!(d.len(), 1, "{body} delivered {} times", d.len());
        }
    }
}
