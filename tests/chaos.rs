//! The short form of the chaos audit: `mqbench chaos` for 60 s on the `config/2m-2s-sync`
//! template (two name servers, two `sync_master` + `sync_flush` masters with a slave each),
//! real processes on loopback, seeded kills, pauses and clean restarts of masters, slaves
//! and name servers under load. It must end with nothing acknowledged lost, no ordered key
//! out of order, every process running, and the fault columns the seed's plan promised.
//!
//! Release only (the timing of a debug build under faults is not what users run):
//! `cargo test --release --test chaos -- --nocapture`. `.ci/run` runs it.

use std::path::Path;
use std::process::Command;

/// Seed 1 plans 7 faults in 60 s: kill -9 of masters and a slave, SIGSTOP of a master,
/// SIGTERM of a slave and of a name server.
const SEED: &str = "1";
const DURATION: &str = "60";

fn mqbench(args: &[&str]) -> (bool, String, String) {
    let bin = env!("CARGO_BIN_EXE_mqbench");
    let bin_dir = Path::new(bin).parent().expect("binary folder");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/2m-2s-sync");
    let out = Command::new(bin)
        .arg("chaos")
        .arg("--config-dir")
        .arg(&config)
        .arg("--bin-dir")
        .arg(bin_dir)
        .args(args)
        .output()
        .expect("run mqbench chaos");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn last_json(stdout: &str) -> serde_json::Value {
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "release only: cargo test --release --test chaos"
)]
fn a_short_chaos_run_loses_nothing_acknowledged_and_keeps_every_key_in_order() {
    let (ok, plan_out, plan_err) =
        mqbench(&["--plan", "--json", "--seed", SEED, "--duration", DURATION]);
    assert!(ok, "the plan failed: {plan_err}");
    let plan = last_json(&plan_out);

    let work = tempfile::tempdir().expect("temp dir");
    let (ok, out, err) = mqbench(&[
        "--json",
        "--seed",
        SEED,
        "--duration",
        DURATION,
        "--work-dir",
        work.path().to_str().expect("utf-8 path"),
    ]);
    println!("{err}\n{out}");
    let audit = last_json(&out);
    assert!(ok, "the audit failed: {audit:#}");
    assert_eq!(audit["passed"], true);
    for group in ["chaos_concurrent", "chaos_orderly"] {
        let g = &audit["groups"][group];
        assert_eq!(g["lost"], 0, "{group} lost acknowledged messages: {g}");
        assert!(g["consumed"].as_u64().unwrap_or(0) > 0, "{group}: {g}");
    }
    assert_eq!(audit["groups"]["chaos_orderly"]["order_violations"], 0);
    assert!(
        audit["acknowledged"].as_u64().unwrap_or(0) > 5_000,
        "too little traffic to judge: {audit}"
    );
    assert_eq!(audit["all_running"], true);
    let faults = &audit["faults"];
    let total = ["kills", "pauses", "terms"]
        .iter()
        .map(|k| faults[k].as_u64().unwrap_or(0))
        .sum::<u64>();
    assert!(total >= 5, "only {total} faults: {faults}");
    // The seed's plan is what ran: one seed, one schedule.
    assert_eq!(faults, &plan["faults"]);
}
