//! `mqadmin queryMsgByKey`, `queryMsgById`, `queryMsgByUniqueKey` and `queryMsgByOffset`
//! against the real binaries: each finds the message `sendMessage` stored, with its body,
//! properties, store time, born host and reconsume count, before and after a clean
//! restart of the broker and after a `kill -9`; a lookup that finds nothing says so and
//! exits non-zero.

mod common;

use std::time::Duration;

use common::process::{
    broker, broker_config, create_topic_on, eventually, mqadmin, namesrv, restart_broker_on, Proc,
};
use serde_json::Value;

const TOPIC: &str = "QueryTopic";

fn admin_json(ns: &str, args: &[&str]) -> Value {
    let mut all = vec!["-n", ns, "--json"];
    all.extend_from_slice(args);
    let (ok, out, err) = mqadmin(&all);
    assert!(ok, "mqadmin {args:?} failed: {out}{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The single JSON object a lookup printed (one message found).
fn found_one(ns: &str, args: &[&str]) -> Value {
    let mut all = vec!["-n", ns, "--json"];
    all.extend_from_slice(args);
    let (ok, out, err) = mqadmin(&all);
    assert!(ok, "mqadmin {args:?} failed: {out}{err}");
    let mut stream = serde_json::Deserializer::from_str(&out).into_iter::<Value>();
    let first = stream
        .next()
        .unwrap_or_else(|| panic!("nothing printed by {args:?}"))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert!(stream.next().is_none(), "more than one message: {out}");
    first
}

/// Checks that `m` is the message `sent` describes.
fn is_the_message(m: &Value, sent: &Value, body: &str, key: &str) {
    assert_eq!(m["body"], body, "{m:#}");
    assert_eq!(m["msg_id"], sent["msg_id"]);
    assert_eq!(m["offset_msg_id"], sent["offset_msg_id"]);
    assert_eq!(m["queue_id"], sent["queue_id"]);
    assert_eq!(m["queue_offset"], sent["queue_offset"]);
    assert_eq!(m["topic"], TOPIC);
    assert_eq!(m["tags"], "TagQ");
    assert!(
        m["keys"].as_array().unwrap().iter().any(|k| k == key),
        "{m:#}"
    );
    assert!(
        m["properties"]["KEYS"].as_str().unwrap().contains(key),
        "{m:#}"
    );
    assert_eq!(m["reconsume_times"], 0);
    assert!(
        m["store_timestamp"].as_i64().unwrap() > 1_700_000_000_000,
        "{m:#}"
    );
    assert!(
        m["born_host"].as_str().unwrap().starts_with("127.0.0.1:"),
        "{m:#}"
    );
}

fn check_every_lookup(ns: &str, sent: &[(Value, String, String)]) {
    for (s, body, key) in sent {
        let by_key = found_one(ns, &["queryMsgByKey", "-t", TOPIC, "-k", key]);
        is_the_message(&by_key, s, body, key);
        let by_id = found_one(
            ns,
            &["queryMsgById", "-i", s["offset_msg_id"].as_str().unwrap()],
        );
        is_the_message(&by_id, s, body, key);
        let by_unique = found_one(
            ns,
            &[
                "queryMsgByUniqueKey",
                "-t",
                TOPIC,
                "-i",
                s["msg_id"].as_str().unwrap(),
            ],
        );
        is_the_message(&by_unique, s, body, key);
        let qid = s["queue_id"].to_string();
        let offset = s["queue_offset"].to_string();
        let by_offset = found_one(
            ns,
            &[
                "queryMsgByOffset",
                "-t",
                TOPIC,
                "-b",
                s["broker_name"].as_str().unwrap(),
                "-i",
                &qid,
                "-o",
                &offset,
            ],
        );
        is_the_message(&by_offset, s, body, key);
    }
    // Nothing found is an error that says what was looked for.
    let (ok, out, err) = mqadmin(&["-n", ns, "queryMsgByKey", "-t", TOPIC, "-k", "no-such-key"]);
    assert!(!ok, "{out}");
    assert!(err.contains("no-such-key"), "{err}");
}

fn wait_registered(ns: &str, b: &Proc) {
    eventually(Duration::from_secs(30), "the broker in the route", || {
        let (ok, out, _) = mqadmin(&["-n", ns, "topicRoute", "-t", TOPIC]);
        (ok && out.contains(&b.addr)).then_some(())
    });
}

#[test]
fn every_query_command_finds_the_message_before_and_after_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 3_000);
    let config = broker_config(dir.path(), "broker-q", "");
    let mut b = broker(&config, &ns.addr);
    create_topic_on(&ns.addr, &b.addr, TOPIC, 2);
    let mut sent = Vec::new();
    for i in 0..6 {
        let body = format!("query body {i}");
        let key = format!("order-{i}");
        let s = admin_json(
            &ns.addr,
            &[
                "sendMessage",
                "-t",
                TOPIC,
                "-p",
                &body,
                "-k",
                &key,
                "-c",
                "TagQ",
            ],
        );
        assert_eq!(s["status"], "SEND_OK");
        sent.push((s, body, key));
    }
    check_every_lookup(&ns.addr, &sent);

    // Restarts keep the port, as a real broker's does: offset ids name it.
    let old_addr = b.addr.clone();
    let restart = || restart_broker_on(&config, &ns.addr, &old_addr);
    // A clean restart: the index and the queues come back from disk.
    assert!(b.terminate().success());
    let mut b = restart();
    wait_registered(&ns.addr, &b);
    check_every_lookup(&ns.addr, &sent);

    // A crash: recovery rebuilds what was not flushed.
    b.kill9();
    let b = restart();
    wait_registered(&ns.addr, &b);
    check_every_lookup(&ns.addr, &sent);
}
