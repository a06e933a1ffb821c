//! `mqadmin brokerStatus` against the real binaries: a healthy broker reports no damage and
//! accepts writes; after bytes of one stored message are flipped while the broker is down,
//! the restarted broker skips that message (every other one arrives, the consumer never
//! stalls) and `brokerStatus` names the damaged range, its kind and the skip count.

mod common;

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use actimq::admin::AdminClient;
use actimq::internals::protocol::message::{PullMessageRequestHeader, SendMessageRequestHeader};
use actimq::internals::protocol::topic::{CreateTopicRequestHeader, PERM_READ_WRITE};
use actimq::internals::protocol::ResponseCode;
use actimq::internals::storage::StoredMessage;
use bytes::Bytes;
use common::process::{broker, broker_config, mqadmin, namesrv};

const TIMEOUT: Duration = Duration::from_secs(10);
const TOPIC: &str = "Status";
const MESSAGES: usize = 20;
const VICTIM: usize = 10;

fn send_header() -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "status-producer".into(),
        topic: TOPIC.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 1,
        queue_id: 0,
        born_timestamp: 1,
        ..Default::default()
    }
}

fn body(i: usize) -> Bytes {
    let mut b = format!("status-{i}-").into_bytes();
    // Long enough that the middle of the record is body bytes, which only the CRC guards.
    b.resize(400, b'a' + (i % 26) as u8);
    Bytes::from(b)
}

/// Pulls queue 0 from offset 0 the way a consumer does (32 at a time, moving to the
/// answer's next offset) until it is caught up; a round that does not move forward fails
/// the test instead of hanging it.
async fn consume_all(admin: &mut AdminClient, broker: &str) -> Vec<StoredMessage> {
    let mut offset = 0u64;
    let mut out = Vec::new();
    for _ in 0..1_000 {
        let r = admin
            .pull(
                broker,
                &PullMessageRequestHeader {
                    consumer_group: "status-consumer".into(),
                    topic: TOPIC.into(),
                    queue_id: 0,
                    queue_offset: offset as i64,
                    max_msg_nums: 32,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        match r.code {
            ResponseCode::PullNotFound => return out,
            ResponseCode::Success | ResponseCode::PullRetryImmediately => {}
            other => panic!("pull at {offset} answered {other}"),
        }
        let next = r.header.next_begin_offset as u64;
        assert!(
            next > offset,
            "the consumer stalls at queue offset {offset}"
        );
        out.extend(r.messages);
        offset = next;
    }
    panic!("the queue never drained");
}

/// Flips `len` bytes at `at` in the first commit-log segment of the store at `store`.
fn flip(store: &Path, at: u64, len: usize) {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(store.join("commitlog").join("00000000000000000000"))
        .unwrap();
    let mut buf = vec![0u8; len];
    f.seek(SeekFrom::Start(at)).unwrap();
    f.read_exact(&mut buf).unwrap();
    for b in &mut buf {
        *b ^= 0x5A;
    }
    f.seek(SeekFrom::Start(at)).unwrap();
    f.write_all(&buf).unwrap();
    f.sync_all().unwrap();
}

/// The `key : value` lines of `brokerStatus` output (the damage lines after them have no
/// " : ").
fn table(out: &str) -> BTreeMap<String, String> {
    out.lines()
        .filter_map(|l| l.split_once(" : "))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn broker_status_reports_commit_log_damage_a_consumer_stepped_over() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 120_000);
    let cfg = broker_config(dir.path(), "broker-st", "");
    let mut b = broker(&cfg, &ns.addr);

    let system = actix_rt::System::new();
    let victim = system.block_on(async {
        let mut admin = AdminClient::new(&ns.addr, TIMEOUT);
        let topic = CreateTopicRequestHeader {
            topic: TOPIC.into(),
            default_topic: "TBW102".into(),
            read_queue_nums: 1,
            write_queue_nums: 1,
            perm: PERM_READ_WRITE,
            topic_sys_flag: 0,
            order: false,
        };
        admin.update_topic(&b.addr, &topic).await.unwrap();
        for i in 0..MESSAGES {
            admin.send(&b.addr, &send_header(), body(i)).await.unwrap();
        }
        let stored = consume_all(&mut admin, &b.addr).await;
        assert_eq!(stored.len(), MESSAGES);
        let info = admin.broker_runtime_info(&b.addr).await.unwrap();
        assert_eq!(info["damagedRanges"], "0", "{info:?}");
        assert_eq!(info["writeRefused"], "false", "{info:?}");
        assert_eq!(info["brokerName"], "broker-st");
        assert_eq!(
            info["commitLogMaxOffset"],
            (stored[MESSAGES - 1].physical_offset + stored[MESSAGES - 1].raw.len() as u64)
                .to_string()
        );
        stored[VICTIM].clone()
    });

    let (ok, out, err) = mqadmin(&["brokerStatus", "-b", &b.addr]);
    assert!(ok, "brokerStatus failed: {out}{err}");
    let before = table(&out);
    assert_eq!(before["damagedRanges"], "0", "{out}");
    assert!(!out.contains("COMMIT-LOG DAMAGE"), "{out}");
    let keys: Vec<_> = before.keys().cloned().collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "keys are printed sorted:\n{out}");

    let status = b.terminate();
    assert!(status.success(), "mqbroker exit {status:?}");
    drop(b);

    let from = victim.physical_offset;
    let to = from + victim.raw.len() as u64;
    flip(
        &dir.path().join("broker-st-store"),
        from + victim.raw.len() as u64 / 2,
        8,
    );

    let b = broker(&cfg, &ns.addr);
    system.block_on(async {
        let mut admin = AdminClient::new(&ns.addr, TIMEOUT);
        let got: Vec<Bytes> = consume_all(&mut admin, &b.addr)
            .await
            .into_iter()
            .map(|m| m.body)
            .collect();
        let expected: Vec<Bytes> = (0..MESSAGES).filter(|i| *i != VICTIM).map(body).collect();
        assert_eq!(got, expected, "every other message arrives, in order");
    });

    let (ok, out, err) = mqadmin(&["brokerStatus", "-b", &b.addr]);
    assert!(ok, "brokerStatus failed: {out}{err}");
    let after = table(&out);
    assert_eq!(after["damagedRanges"], "1", "{out}");
    let skipped: u64 = after["damagedRecordsSkipped"].parse().unwrap();
    assert!(skipped >= 1, "the skip is counted:\n{out}");
    assert_eq!(after["openedClean"], "true", "{out}");
    assert!(out.contains("COMMIT-LOG DAMAGE"), "{out}");
    let line = out
        .lines()
        .find(|l| {
            l.trim_start()
                .starts_with(&format!("offsets {from}..{to} "))
        })
        .unwrap_or_else(|| panic!("a line names the damaged range {from}..{to}:\n{out}"));
    assert!(line.contains("corrupt"), "{line}");
    assert!(line.contains(&format!("{} bytes", to - from)), "{line}");
    assert!(line.contains("found by read"), "{line}");

    let (ok, json, err) = mqadmin(&["brokerStatus", "-b", &b.addr, "--json"]);
    assert!(ok, "brokerStatus --json failed: {json}{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let damage: serde_json::Value =
        serde_json::from_str(v["damage"].as_str().expect("damage is a string")).unwrap();
    assert_eq!(damage[0]["from"], from);
    assert_eq!(damage[0]["to"], to);
    assert_eq!(damage[0]["kind"], "corrupt");
    assert_eq!(damage[0]["found_by"], "read");
}
