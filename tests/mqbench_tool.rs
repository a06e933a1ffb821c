//! `mqbench` against real binaries: what it says was acknowledged is what the broker stored,
//! the consumer side receives it all, and a run whose sends all fail still prints its summary.

mod common;

use std::process::Command;
use std::time::Duration;

use common::process::{broker, broker_config, eventually, mqadmin, namesrv};

fn mqbench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_mqbench"))
        .args(args)
        .output()
        .expect("run mqbench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "mqbench failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("last line is not JSON ({e}): {last}"))
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
    let ns = namesrv(dir.path(), 120_000);
    let cfg = broker_config(dir.path(), "broker-bench", "");
    let _b = broker(&cfg, &ns.addr);
    eventually(Duration::from_secs(10), "broker registered", || {
        let (ok, out, _) = mqadmin(&["-n", &ns.addr, "clusterList"]);
        (ok && out.contains("broker-bench")).then_some(())
    });
    let (ok, _, err) = mqadmin(&[
        "-n",
        &ns.addr,
        "updateTopic",
        "-c",
        "DefaultCluster",
        "-t",
        "Bench",
        "-r",
        "8",
        "-w",
        "8",
    ]);
    assert!(ok, "{err}");
    eventually(Duration::from_secs(10), "route", || {
        mqadmin(&["-n", &ns.addr, "topicRoute", "-t", "Bench"])
            .0
            .then_some(())
    });

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
