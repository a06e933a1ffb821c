//! `mqbench chaos`: a reliability audit anyone can re-run. It starts a cluster of real
//! processes on loopback from a config folder used as a template, sends numbered messages
//! at a steady rate while two consumer groups consume them, kills, pauses and restarts
//! processes on a seeded schedule, drains, and prints an audit: every acknowledged message
//! must be consumed, and every ordered key consumed in order. Exits non-zero otherwise.
//!
//! The parts: `schedule` plans the faults from the seed, `cluster` owns the processes,
//! `faults` carries the plan out, `load` sends and records, `audit` judges. This module
//! wires them together and prints; it must never leave a process running (the cluster
//! kills its children when dropped).

mod audit;
mod cluster;
mod faults;
mod load;
mod schedule;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actimq::admin::{AdminClient, TopicSpec};
use clap::ValueEnum;

use audit::{audit_group, GroupAudit};
use faults::FaultReport;
use load::{Consumers, Ledger, LoadSettings, CONCURRENT_GROUP, ORDERLY_GROUP, TOPIC, VERIFY_GROUP};
use schedule::{FaultKind, PlanOptions, Role};

/// A kind of fault to draw, on the command line.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum FaultArg {
    /// `kill -9` and restart.
    Kill,
    /// SIGSTOP, then SIGCONT.
    Pause,
    /// SIGTERM and restart.
    Term,
}

/// `mqbench chaos` options.
#[derive(clap::Args, Debug)]
pub struct ChaosArgs {
    /// Folder of config files the cluster is made from (ports, stores and name-server
    /// addresses are rewritten; a file without `broker_name` is a name server).
    #[arg(long = "config-dir", default_value = "config/2m-2s-sync")]
    config_dir: PathBuf,
    /// Seconds of load and faults (the drain comes after).
    #[arg(long, default_value_t = 120)]
    duration: u64,
    /// Seed of the fault schedule (printed when drawn at random).
    #[arg(long)]
    seed: Option<u64>,
    /// Messages per second, synchronous, asynchronous and ordered sends together.
    #[arg(long, default_value_t = 300)]
    rate: u64,
    /// Body size in bytes.
    #[arg(short = 's', long = "size", default_value_t = 128)]
    size: usize,
    /// Let a master and its slave be killed together (by default at most one broker of a
    /// pair is down at a time).
    #[arg(long = "allow-pair-loss")]
    allow_pair_loss: bool,
    /// Kinds of fault to draw from.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [FaultArg::Kill, FaultArg::Pause, FaultArg::Term])]
    faults: Vec<FaultArg>,
    /// Seconds to wait, after the load stops, for consumers to receive what they missed.
    #[arg(long = "drain-timeout", default_value_t = 90)]
    drain_timeout: u64,
    /// Where mqnamesrv and mqbroker are (default: beside this program).
    #[arg(long = "bin-dir")]
    bin_dir: Option<PathBuf>,
    /// Folder for configs, stores and logs (default: a new one under the temp folder,
    /// removed after a passing run).
    #[arg(long = "work-dir")]
    work_dir: Option<PathBuf>,
    /// Keep the work folder after a passing run too.
    #[arg(long)]
    keep: bool,
    /// Print the fault plan for the seed and exit, starting nothing.
    #[arg(long)]
    plan: bool,
    /// Print one JSON object as the last line.
    #[arg(long)]
    json: bool,
}

const WARMUP: Duration = Duration::from_secs(5);
const TAIL: Duration = Duration::from_secs(10);

pub async fn run_chaos(args: ChaosArgs) -> Result<(), String> {
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64 % 1_000_000)
            .unwrap_or(1)
    });
    let work_dir = args.work_dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("mqbench-chaos-{}", std::process::id()))
    });
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|p| p.to_owned()))
            .ok_or("cannot tell where mqbench is; pass --bin-dir")?,
    };
    let mut cluster = cluster::from_template(&args.config_dir, &work_dir, &bin_dir)?;
    let options = PlanOptions {
        duration: Duration::from_secs(args.duration),
        warmup: WARMUP,
        tail: TAIL,
        allow_pair_loss: args.allow_pair_loss,
        kinds: args
            .faults
            .iter()
            .map(|f| match f {
                FaultArg::Kill => FaultKind::Kill,
                FaultArg::Pause => FaultKind::Pause,
                FaultArg::Term => FaultKind::Term,
            })
            .collect(),
    };
    let members = cluster.members();
    let plan = schedule::plan(seed, &members, &options);
    let mode = cluster.mode();
    if args.plan {
        let _ = std::fs::remove_dir_all(&work_dir);
        let mut counts = FaultReport::default();
        for f in &plan {
            for &i in &f.targets {
                *counts.done.entry((f.kind, members[i].role)).or_default() += 1;
            }
            if !args.json {
                let names: Vec<&str> = f
                    .targets
                    .iter()
                    .map(|&i| cluster.nodes[i].name.as_str())
                    .collect();
                println!(
                    "{} {} for {:.1} s, then {:.1} s to settle",
                    f.kind.label(),
                    names.join(" and "),
                    f.hold.as_secs_f64(),
                    f.settle.as_secs_f64()
                );
            }
        }
        let v = serde_json::json!({"mode": mode, "seed": seed, "faults": fault_columns(&counts)});
        println!(
            "{}",
            if args.json {
                v.to_string()
            } else {
                fault_line(&counts)
            }
        );
        return Ok(());
    }
    eprintln!(
        "chaos: {mode}, seed {seed}, {} s, {} faults planned; work folder {}",
        args.duration,
        plan.len(),
        work_dir.display()
    );
    let outcome = run(&args, &mut cluster, plan, seed, &mode).await;
    // Stops every process before judging the folder.
    drop(cluster);
    match outcome {
        Ok(true) => {
            if !args.keep {
                let _ = std::fs::remove_dir_all(&work_dir);
            }
            Ok(())
        }
        Ok(false) => Err(format!(
            "the audit failed; logs and stores are kept in {}",
            work_dir.display()
        )),
        Err(e) => Err(format!("{e}; logs are in {}", work_dir.display())),
    }
}

/// Runs the load and the faults, drains, prints the audit; `Ok(passed)`.
async fn run(
    args: &ChaosArgs,
    cluster: &mut cluster::Cluster,
    plan: Vec<schedule::Fault>,
    seed: u64,
    mode: &str,
) -> Result<bool, String> {
    let started_cluster = Instant::now();
    // Blocking waits for ports: nothing else runs on this loop yet.
    cluster.start_all()?;
    create_topic(&cluster.namesrv_addr, &cluster.masters()).await?;
    eprintln!(
        "chaos: cluster up and topic {TOPIC} created in {:.1} s",
        started_cluster.elapsed().as_secs_f64()
    );
    let start = Instant::now();
    let ledger = Ledger::new(start);
    let consumers = Consumers::start(&cluster.namesrv_addr, &ledger).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let producing = actix_rt::spawn(load::produce(
        LoadSettings {
            namesrv_addr: cluster.namesrv_addr.clone(),
            rate: args.rate,
            size: args.size,
        },
        ledger.clone(),
        Arc::clone(&stop),
    ));
    // The executor takes the cluster to its own thread and gives it back at the end.
    let mut taken = cluster::Cluster {
        nodes: std::mem::take(&mut cluster.nodes),
        namesrv_addr: cluster.namesrv_addr.clone(),
        work_dir: cluster.work_dir.clone(),
    };
    let executor = std::thread::spawn(move || {
        let report = faults::execute(&mut taken, &plan, start, WARMUP);
        (taken, report)
    });
    let duration = Duration::from_secs(args.duration);
    while !executor.is_finished() || start.elapsed() < duration {
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
    let (taken, report) = executor
        .join()
        .map_err(|_| "the fault executor panicked".to_string())?;
    cluster.nodes = taken.nodes;
    stop.store(true, Ordering::Relaxed);
    let load_time = start.elapsed();
    match producing.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => return Err(format!("producers: {e}")),
        Err(_) => return Err("the producers' task failed".into()),
    }
    eprintln!(
        "chaos: [{:>6.1} s] load stopped; draining (up to {} s)",
        start.elapsed().as_secs_f64(),
        args.drain_timeout
    );
    let drain_deadline = Instant::now() + Duration::from_secs(args.drain_timeout);
    wait_drained(&ledger, drain_deadline, false).await;
    let drained_in = start.elapsed().saturating_sub(load_time);
    consumers.shutdown().await;
    // What the stores hold: a group that never ran reads everything from the start. It
    // finds what the consumers saw before a crash but the stores no longer have.
    let verifier = Consumers::start_verifier(&cluster.namesrv_addr, &ledger).await?;
    wait_drained(
        &ledger,
        drain_deadline.max(Instant::now() + Duration::from_secs(30)),
        true,
    )
    .await;
    verifier.shutdown().await;
    let audits = audit_now(&ledger, true);
    let all_running = cluster.nodes.iter_mut().all(|n| n.alive());
    let sends = ledger
        .sends
        .lock()
        .map_err(|_| "the send ledger's lock was poisoned".to_string())?;
    let conflicts = {
        let logs: Vec<Vec<load::Delivery>> = [&ledger.concurrent, &ledger.orderly, &ledger.verify]
            .iter()
            .map(|l| l.lock().map(|l| l.clone()).unwrap_or_default())
            .collect();
        audit::offset_conflicts(logs.iter().map(|l| l.as_slice()))
    };
    let violations: u64 = audits.values().map(|a| a.order_violations).sum();
    let lost: u64 = audits.values().map(|a| a.lost).sum();
    let passed = lost == 0
        && violations == 0
        && conflicts == 0
        && all_running
        && report.unexpected_exits.is_empty()
        && report.unclean_stops.is_empty()
        && report.errors.is_empty()
        && !sends.acks.is_empty()
        && audits.values().all(|a| a.consumed > 0);
    let summary = serde_json::json!({
        "mode": mode,
        "seed": seed,
        "duration_s": load_time.as_secs_f64(),
        "drain_s": drained_in.as_secs_f64(),
        "rate": args.rate,
        "sent": sends.sent,
        "acknowledged": sends.acks.len(),
        "not_ok": sends.not_ok,
        "errors": sends.errors,
        "ordered_refused": sends.ordered_refused,
        "groups": audits.iter().map(|(g, a)| (g.to_string(), serde_json::json!({
            "consumed": a.consumed, "lost": a.lost, "duplicated": a.duplicated,
            "order_violations": a.order_violations,
            "longest_gap_ms": a.longest_gap.as_millis() as u64, "lost_sample": a.lost_sample,
        }))).collect::<BTreeMap<_, _>>(),
        "offset_conflicts": conflicts,
        "faults": fault_columns(&report),
        "unexpected_exits": report.unexpected_exits,
        "unclean_stops": report.unclean_stops,
        "fault_errors": report.errors,
        "all_running": all_running,
        "passed": passed,
    });
    if args.json {
        println!("{summary}");
    } else {
        print_table(&summary, &audits, &report, all_running, passed, mode, seed);
    }
    Ok(passed)
}

/// Creates the topic on every master and waits until the route shows them all.
async fn create_topic(namesrv: &str, masters: &BTreeMap<String, String>) -> Result<(), String> {
    let mut admin = AdminClient::new(namesrv, Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(30);
    for addr in masters.values() {
        // A master may not have registered yet: retry until the deadline.
        loop {
            match admin
                .create_topic(addr, &TopicSpec::new(TOPIC).queues(4))
                .await
            {
                Ok(()) => break,
                Err(e) if Instant::now() >= deadline => {
                    return Err(format!("cannot create {TOPIC} on {addr}: {e}"))
                }
                Err(_) => actix_rt::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }
    loop {
        if let Ok(route) = admin.route(TOPIC).await {
            if masters
                .keys()
                .all(|m| route.queue_datas.iter().any(|q| &q.broker_name == m))
            {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "the route of {TOPIC} did not show every master within 30 s"
            ));
        }
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits until no running group misses an acknowledged message, or `deadline`.
async fn wait_drained(ledger: &Ledger, deadline: Instant, verifying: bool) {
    loop {
        let audits = audit_now(ledger, verifying);
        if audits.values().all(|a| a.lost == 0) || Instant::now() >= deadline {
            return;
        }
        actix_rt::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The groups' audits so far (the verifying group's once it has started).
fn audit_now(ledger: &Ledger, verifying: bool) -> BTreeMap<&'static str, GroupAudit> {
    let acks = ledger
        .sends
        .lock()
        .map(|s| s.acks.clone())
        .unwrap_or_default();
    let mut out = BTreeMap::new();
    for (group, log, orderly) in [
        (CONCURRENT_GROUP, &ledger.concurrent, false),
        (ORDERLY_GROUP, &ledger.orderly, true),
        (VERIFY_GROUP, &ledger.verify, false),
    ] {
        let deliveries = log.lock().map(|l| l.clone()).unwrap_or_default();
        if group == VERIFY_GROUP && !verifying {
            continue;
        }
        out.insert(group, audit_group(&acks, &deliveries, orderly));
    }
    out
}

/// The fault columns: counts by kind and role (restarts are kills plus SIGTERMs).
fn fault_columns(report: &FaultReport) -> serde_json::Value {
    let mut by_kind: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    let mut restarts: BTreeMap<&str, u64> = BTreeMap::new();
    for ((kind, role), n) in &report.done {
        *by_kind
            .entry(kind.label())
            .or_default()
            .entry(role.label())
            .or_default() += n;
        if *kind != FaultKind::Pause {
            *restarts.entry(role.label()).or_default() += n;
        }
    }
    let total = |k: FaultKind| -> u64 {
        report
            .done
            .iter()
            .filter(|((kind, _), _)| *kind == k)
            .map(|(_, n)| n)
            .sum()
    };
    serde_json::json!({
        "kills": total(FaultKind::Kill),
        "pauses": total(FaultKind::Pause),
        "terms": total(FaultKind::Term),
        "by_kind_and_role": by_kind,
        "restarts_by_role": restarts,
    })
}

fn fault_line(report: &FaultReport) -> String {
    let mut parts = Vec::new();
    for kind in [FaultKind::Kill, FaultKind::Pause, FaultKind::Term] {
        let roles: Vec<String> = [Role::Master, Role::Slave, Role::NameServer]
            .iter()
            .filter_map(|r| {
                let n = report.done.get(&(kind, *r)).copied().unwrap_or(0);
                (n > 0).then(|| format!("{} {n}", r.label()))
            })
            .collect();
        if !roles.is_empty() {
            parts.push(format!("{}: {}", kind.label(), roles.join(", ")));
        }
    }
    if parts.is_empty() {
        "faults: none".into()
    } else {
        format!("faults: {}", parts.join("; "))
    }
}

fn print_table(
    summary: &serde_json::Value,
    audits: &BTreeMap<&'static str, GroupAudit>,
    report: &FaultReport,
    all_running: bool,
    passed: bool,
    mode: &str,
    seed: u64,
) {
    let get = |k: &str| summary.get(k).cloned().unwrap_or_default();
    println!("chaos audit: {mode}, seed {seed}");
    println!(
        "sent {}, acknowledged (SEND_OK) {}, stored without SEND_OK {}, failed {}, ordered sends refused while their master was away {}",
        get("sent"),
        get("acknowledged"),
        get("not_ok"),
        get("errors"),
        get("ordered_refused")
    );
    println!(
        "{:<18} {:>10} {:>6} {:>11} {:>14} {:>12}",
        "group", "consumed", "lost", "duplicated", "out of order", "longest gap"
    );
    for (group, a) in audits {
        println!(
            "{:<18} {:>10} {:>6} {:>11} {:>14} {:>10.1} s",
            group,
            a.consumed,
            a.lost,
            a.duplicated,
            if *group == ORDERLY_GROUP {
                a.order_violations.to_string()
            } else {
                "-".into()
            },
            a.longest_gap.as_secs_f64()
        );
        if a.lost > 0 {
            println!("  lost, first ones: {:?}", a.lost_sample);
        }
    }
    println!(
        "queue offsets that delivered two different messages: {}",
        get("offset_conflicts")
    );
    println!("{}", fault_line(report));
    for (what, list) in [
        ("exited unbidden", &report.unexpected_exits),
        ("unclean SIGTERM stops", &report.unclean_stops),
        ("fault errors", &report.errors),
    ] {
        if !list.is_empty() {
            println!("{what}: {}", list.join("; "));
        }
    }
    println!(
        "every process running at the end: {}",
        if all_running { "yes" } else { "NO" }
    );
    println!("verdict: {}", if passed { "PASS" } else { "FAIL" });
}
