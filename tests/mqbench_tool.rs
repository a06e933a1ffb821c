//! `mqbench` against real binaries: what it says was acknowledged is what the broker stored,
//! the consumer side receives it all, one-way sends with keys arrive with their keys, a run
//! stops at its duration, consumers of one group share the queues while broadcasting ones
//! each get everything, and a run whose sends fail (no broker, or the broker killed midway)
//! still prints its summary, with nothing it counted as acknowledged lost. `mqbench floor`
//! (no broker) answers every request its schedule makes and refuses a size it cannot echo.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::process::{broker, broker_config, eventually, mqadmin, namesrv, Proc};

/// Runs `mqbench` to the end and returns its JSON summary (the last line).
fn mqbench(args: &[&str]) -> serde_json::Value {
    summary_of(spawn_mqbench(args))
}

/// `mqbench producer` with 128-byte bodies and 64 in flight, plus `extra` flags.
fn produce(ns: &str, topic: &str, extra: &[&str]) -> serde_json::Value {
    let mut args = vec![
        "producer", "-n", ns, "-t", topic, "-s", "128", "-w", "64", "--json",
    ];
    args.extend_from_slice(extra);
    mqbench(&args)
}

/// The JSON summary (last line) of an `mqbench` started with [`spawn_mqbench`].
fn summary_of(child: Child) -> serde_json::Value {
    let out = child.wait_with_output().expect("wait for mqbench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mqbench failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
}

fn spawn_mqbench(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_mqbench"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start mqbench")
}

/// A name server and one broker, with `topic` on 8 queues and its route published.
fn cluster_with_topic(dir: &Path, broker_name: &str, topic: &str) -> (Proc, Proc) {
    let ns = namesrv(dir, 120_000);
    let cfg = broker_config(dir, broker_name, "");
    let b = broker(&cfg, &ns.addr);
    eventually(Duration::from_secs(10), "broker registered", || {
        let (ok, out, _) = mqadmin(&["-n", &ns.addr, "clusterList"]);
        (ok && out.contains(broker_name)).then_some(())
    });
    let (ok, _, err) = mqadmin(&[
        "-n",
        &ns.addr,
        "updateTopic",
        "-c",
        "DefaultCluster",
        "-t",
        topic,
        "-r",
        "8",
        "-w",
        "8",
    ]);
    assert!(ok, "{err}");
    eventually(Duration::from_secs(10), "route", || {
        mqadmin(&["-n", &ns.addr, "topicRoute", "-t", topic])
            .0
            .then_some(())
    });
    (ns, b)
}

/// Messages stored in `topic` (its queues' max offsets), or `None` while no broker answers.
fn try_stored(ns: &str, topic: &str) -> Option<u64> {
    let (ok, out, _) = mqadmin(&["-n", ns, "topicStatus", "-t", topic, "--json"]);
    let rows: serde_json::Value = serde_json::from_str(&out).ok().filter(|_| ok)?;
    rows.as_array()?
        .iter()
        .map(|r| r["max_offset"].as_u64())
        .sum()
}

fn stored(ns: &str, topic: &str) -> u64 {
    let (ok, out, err) = mqadmin(&["-n", ns, "topicStatus", "-t", topic, "--json"]);
    assert!(ok, "{err}");
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["max_offset"].as_u64().unwrap())
        .sum()
}

#[test]
fn acknowledged_equals_stored_and_consumed() {
    let dir = tempfile::tempdir().unwrap();
    let (ns, _b) = cluster_with_topic(dir.path(), "broker-bench", "Bench");

    let mut acked = 0;
    // The last run is open loop: 1,500 sends scheduled at 3,000/s, with the client
    // busy-polling between them.
    for (mode, rate) in [
        ("async", None),
        ("sync", None),
        ("batch", None),
        ("async", Some("3000")),
    ] {
        let mut args = vec![
            "producer",
            "-n",
            &ns.addr,
            "-t",
            "Bench",
            "-s",
            "256",
            "-w",
            "64",
            "--count",
            "1500",
            "--duration",
            "60",
            "--mode",
            mode,
            "--json",
        ];
        if let Some(rate) = rate {
            args.extend(["--rate", rate, "--busy-poll-us", "1000"]);
        }
        let r = mqbench(&args);
        if rate.is_some() {
            // The schedule is kept: the last send is due 0.5 s after the start.
            assert!(
                r["duration_s"].as_f64().unwrap() >= 0.5,
                "open loop ran too fast: {r}"
            );
        }
        for key in [
            "mode",
            "size",
            "inflight",
            "sent",
            "acked",
            "failed",
            "duration_s",
            "tps",
            "mb_s",
            "p50_us",
            "p99_us",
            "p999_us",
            "max_us",
        ] {
            assert!(r.get(key).is_some(), "{mode}: JSON lacks {key}: {r}");
        }
        // The client's own CPU time: positive, and no more than two cores' worth of the run.
        let cpu = r["cpu_s"].as_f64().unwrap_or(-1.0);
        let wall = r["duration_s"].as_f64().unwrap();
        assert!(
            cpu > 0.0 && cpu < 2.0 * wall + 1.0,
            "{mode}: cpu_s {cpu}: {r}"
        );
        assert_eq!(r["failed"], 0, "{mode}: {r}");
        assert!(r["acked"].as_u64().unwrap() >= 1500, "{mode}: {r}");
        acked += r["acked"].as_u64().unwrap();
    }
    assert_eq!(
        stored(&ns.addr, "Bench"),
        acked,
        "what mqbench counted as acknowledged is what the broker stored"
    );

    let c = mqbench(&[
        "consumer",
        "-n",
        &ns.addr,
        "-t",
        "Bench",
        "-g",
        "bench-group",
        "--from-beginning",
        "--count",
        &acked.to_string(),
        "--duration",
        "60",
        "--json",
    ]);
    assert_eq!(c["received"].as_u64().unwrap(), acked, "{c}");
    for key in [
        "received", "tps", "mb_s", "cpu_s", "p50_us", "p99_us", "p999_us", "max_us",
    ] {
        assert!(c.get(key).is_some(), "consumer JSON lacks {key}: {c}");
    }
}

#[test]
fn a_run_without_a_broker_still_prints_its_summary() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 120_000);
    let r = mqbench(&[
        "producer",
        "-n",
        &ns.addr,
        "-t",
        "Nowhere",
        "-w",
        "4",
        "--count",
        "20",
        "--duration",
        "30",
        "--json",
    ]);
    assert_eq!(r["acked"], 0, "{r}");
    assert_eq!(r["failed"], 20, "{r}");
}

#[test]
fn the_floor_answers_every_scheduled_request_and_refuses_empty_ones() {
    // 2,000/s for 1 s: requests are due every 500 µs up to and including the deadline.
    let r = mqbench(&[
        "floor",
        "--rate",
        "2000",
        "--duration",
        "1",
        "-s",
        "256",
        "--json",
    ]);
    assert_eq!(r["mode"], "floor", "{r}");
    assert_eq!(r["sent"], 2000, "{r}");
    assert_eq!(r["acked"], 2000, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    let (p50, max) = (r["p50_us"].as_u64(), r["max_us"].as_u64());
    assert!(
        matches!((p50, max), (Some(p50), Some(max)) if p50 >= 1 && p50 <= max),
        "{r}"
    );
    // --count ends the run before its duration.
    let r = mqbench(&[
        "floor",
        "--rate",
        "5000",
        "--count",
        "300",
        "--duration",
        "30",
        "--json",
    ]);
    assert_eq!(
        (r["sent"].as_u64(), r["acked"].as_u64()),
        (Some(300), Some(300)),
        "{r}"
    );
    assert!(r["duration_s"].as_f64().is_some_and(|d| d < 5.0), "{r}");

    let out = Command::new(env!("CARGO_BIN_EXE_mqbench"))
        .args(["floor", "--size", "0", "--duration", "1"])
        .output()
        .expect("run mqbench");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--size must be at least 1 byte"), "{err}");
}

#[test]
fn oneway_sends_carry_their_keys_and_a_run_stops_at_its_duration() {
    let dir = tempfile::tempdir().unwrap();
    let (ns, _b) = cluster_with_topic(dir.path(), "broker-oneway", "Keys");
    let r = produce(
        &ns.addr,
        "Keys",
        &[
            "--count",
            "500",
            "--duration",
            "60",
            "--mode",
            "oneway",
            "-k",
        ],
    );
    assert_eq!(r["mode"], "oneway", "{r}");
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(r["acked"], 500, "{r}");
    // One-way sends are not answered: wait for the broker to have stored them all.
    eventually(Duration::from_secs(10), "one-way messages stored", || {
        (stored(&ns.addr, "Keys") == 500).then_some(())
    });
    // `-k` gives message i the key `bench-<i>`.
    let (ok, out, err) = mqadmin(&[
        "-n",
        &ns.addr,
        "--json",
        "consumeMessage",
        "-t",
        "Keys",
        "--count",
        "500",
        "--from-beginning",
    ]);
    assert!(ok, "{err}");
    let keys: BTreeSet<String> = serde_json::Deserializer::from_str(&out)
        .into_iter::<serde_json::Value>()
        .map(|m| m.expect("consumeMessage prints JSON"))
        .flat_map(|m| {
            m["keys"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter_map(|k| k.as_str().map(str::to_owned))
        })
        .collect();
    let expected: BTreeSet<String> = (0..500).map(|i| format!("bench-{i}")).collect();
    assert_eq!(keys, expected);

    // With a count it cannot reach, the run ends at its duration.
    let r = produce(
        &ns.addr,
        "Keys",
        &[
            "--count",
            "1000000000",
            "--duration",
            "1",
            "--mode",
            "async",
        ],
    );
    let took = r["duration_s"].as_f64().unwrap();
    assert!((1.0..10.0).contains(&took), "a 1 s run took {took} s: {r}");
    assert!(r["acked"].as_u64().unwrap() > 0, "{r}");
    assert_eq!(r["failed"], 0, "{r}");
}

#[test]
fn consumers_of_one_group_share_the_queues_and_broadcasting_ones_get_everything() {
    let dir = tempfile::tempdir().unwrap();
    let (ns, _b) = cluster_with_topic(dir.path(), "broker-groups", "Shared");
    let consumer = |group: &str, model: &str| {
        spawn_mqbench(&[
            "consumer",
            "-n",
            &ns.addr,
            "-t",
            "Shared",
            "-g",
            group,
            "--model",
            model,
            "--from-beginning",
            "--duration",
            "12",
            "--json",
        ])
    };
    let shared = [
        consumer("share", "clustering"),
        consumer("share", "clustering"),
    ];
    let everyone = [
        consumer("everyone", "broadcasting"),
        consumer("everyone", "broadcasting"),
    ];
    eventually(
        Duration::from_secs(10),
        "both clustering members known",
        || {
            let (ok, out, _) = mqadmin(&["-n", &ns.addr, "consumerConnection", "-g", "share"]);
            (ok && out.matches("queues:").count() >= 2).then_some(())
        },
    );
    // Sent over 3 s, so that both members own queues while messages arrive.
    let r = produce(
        &ns.addr,
        "Shared",
        &["--count", "3000", "--duration", "60", "--rate", "1000"],
    );
    assert_eq!(r["acked"], 3000, "{r}");

    let got: Vec<u64> = shared
        .into_iter()
        .map(|c| summary_of(c)["received"].as_u64().unwrap())
        .collect();
    assert!(
        got.iter().all(|n| *n > 0 && *n < 3000),
        "each member of the group receives a share, not everything: {got:?}"
    );
    // At least once: a queue changing hands may redeliver what was not yet committed.
    assert!(
        got.iter().sum::<u64>() >= 3000,
        "the group got everything: {got:?}"
    );

    for c in everyone {
        let s = summary_of(c);
        assert_eq!(
            s["received"], 3000,
            "a broadcasting member gets every message: {s}"
        );
    }
}

#[test]
fn a_run_whose_broker_dies_reports_what_was_acknowledged_and_none_of_it_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let (ns, mut b) = cluster_with_topic(dir.path(), "broker-dies", "Dies");
    let run = spawn_mqbench(&[
        "producer",
        "-n",
        &ns.addr,
        "-t",
        "Dies",
        "-s",
        "128",
        "-w",
        "16",
        "--count",
        "100000",
        "--duration",
        "4",
        "--rate",
        "500",
        "--json",
    ]);
    eventually(Duration::from_secs(10), "the run under way", || {
        try_stored(&ns.addr, "Dies").filter(|n| *n >= 200)
    });
    b.kill9();
    let r = summary_of(run);
    let (sent, acked, failed) = (
        r["sent"].as_u64().unwrap(),
        r["acked"].as_u64().unwrap(),
        r["failed"].as_u64().unwrap(),
    );
    assert!(
        acked >= 200,
        "what was acknowledged before the kill is reported: {r}"
    );
    assert!(
        failed > 0,
        "sends after the kill are reported as failed: {r}"
    );
    assert_eq!(sent, acked + failed, "{r}");

    // The same store again: every acknowledged message survived the kill.
    let cfg = broker_config(dir.path(), "broker-dies", "");
    let _restarted = broker(&cfg, &ns.addr);
    let now_stored = eventually(Duration::from_secs(20), "restarted broker", || {
        try_stored(&ns.addr, "Dies")
    });
    assert!(
        now_stored >= acked,
        "{acked} acknowledged, {now_stored} stored after a restart"
    );
}
