//! Carries out a `mqbench chaos` fault plan on the cluster's processes, on a thread of its
//! own (it blocks on process waits; the clients' event loop must not). While it waits it
//! watches every process that should be running: one that exits unbidden is a failure of
//! the run, recorded and started again. It never decides what to do: `schedule` did.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::cluster::Cluster;
use super::schedule::{Fault, FaultKind, Role};

/// What the executor did and saw.
#[derive(Default, Debug)]
pub struct FaultReport {
    /// Faults carried out, by kind and role of the process.
    pub done: BTreeMap<(FaultKind, Role), u64>,
    /// Processes that exited without being told to.
    pub unexpected_exits: Vec<String>,
    /// SIGTERM stops that were not clean (a non-zero exit, no exit in time, or a store
    /// left marked as aborted).
    pub unclean_stops: Vec<String>,
    /// Restarts that failed.
    pub errors: Vec<String>,
}

/// How long a clean stop may take.
const TERM_LIMIT: Duration = Duration::from_secs(30);
/// How long a start may take.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Runs `plan` on `cluster`, starting after `warmup`, and returns when the last fault's
/// settle time has passed.
pub fn execute(
    cluster: &mut Cluster,
    plan: &[Fault],
    start: Instant,
    warmup: Duration,
) -> FaultReport {
    let mut report = FaultReport::default();
    let mut down: Vec<bool> = vec![false; cluster.nodes.len()];
    watch(cluster, &down, warmup, &mut report);
    for (n, fault) in plan.iter().enumerate() {
        let names: Vec<String> = fault
            .targets
            .iter()
            .map(|&i| {
                let node = &cluster.nodes[i];
                format!("{} {}", node.role.label(), node.name)
            })
            .collect();
        eprintln!(
            "chaos: [{:>6.1} s] fault {}/{}: {} {} for {:.1} s",
            start.elapsed().as_secs_f64(),
            n + 1,
            plan.len(),
            fault.kind.label(),
            names.join(" and "),
            fault.hold.as_secs_f64()
        );
        for &i in &fault.targets {
            let node = &mut cluster.nodes[i];
            *report.done.entry((fault.kind, node.role)).or_default() += 1;
            match fault.kind {
                FaultKind::Kill => {
                    down[i] = true;
                    node.kill9();
                }
                FaultKind::Pause => {
                    if let Err(e) = node.pause() {
                        report.errors.push(e);
                    }
                }
                FaultKind::Term => {
                    down[i] = true;
                    match node.terminate(TERM_LIMIT) {
                        Ok(status) if !status.success() => report
                            .unclean_stops
                            .push(format!("{} exited with {status} after SIGTERM", node.name)),
                        Ok(_) if !node.store_is_clean() => report.unclean_stops.push(format!(
                            "{} stopped on SIGTERM but left its store marked as aborted",
                            node.name
                        )),
                        Ok(_) => {}
                        Err(e) => report.unclean_stops.push(e),
                    }
                }
            }
        }
        watch(cluster, &down, fault.hold, &mut report);
        for &i in &fault.targets {
            let node = &mut cluster.nodes[i];
            match fault.kind {
                FaultKind::Pause => {
                    if let Err(e) = node.resume() {
                        report.errors.push(e);
                    }
                }
                FaultKind::Kill | FaultKind::Term => {
                    if let Err(e) = node.start(START_LIMIT) {
                        report.errors.push(e);
                    }
                    down[i] = false;
                }
            }
        }
        watch(cluster, &down, fault.settle, &mut report);
    }
    report
}

/// Waits `span`, checking every 100 ms that each process not taken down is running; one
/// that is not is recorded and started again.
fn watch(cluster: &mut Cluster, down: &[bool], span: Duration, report: &mut FaultReport) {
    let until = Instant::now() + span;
    loop {
        for (i, node) in cluster.nodes.iter_mut().enumerate() {
            if !down[i] && !node.alive() {
                report
                    .unexpected_exits
                    .push(format!("{} {}", node.role.label(), node.name));
                eprintln!(
                    "chaos: {} {} exited without being told to; starting it again",
                    node.role.label(),
                    node.name
                );
                if let Err(e) = node.start(START_LIMIT) {
                    report.errors.push(e);
                }
            }
        }
        let now = Instant::now();
        if now >= until {
            return;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(100)));
    }
}
