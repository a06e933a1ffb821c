//! The seeded fault plan of `mqbench chaos`: which process gets which fault, how long it
//! stays down or paused, and how long the cluster settles afterwards. The plan is a pure
//! function of the seed, the cluster's shape and the options, made before the run starts,
//! so one seed gives the same faults on any machine however fast the run goes. This module
//! never touches a process.

use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_xorshift::XorShiftRng;

/// What a process is in the cluster.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    NameServer,
    Master,
    Slave,
}

impl Role {
    pub fn label(self) -> &'static str {
        match self {
            Role::NameServer => "namesrv",
            Role::Master => "master",
            Role::Slave => "slave",
        }
    }
}

/// One process as the planner sees it: its role, and for a broker its group's name (a
/// master and its slaves share it).
#[derive(Clone, Debug)]
pub struct Member {
    pub role: Role,
    pub broker_name: Option<String>,
}

/// The kinds of fault.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// `kill -9`, down for the hold time, then started again.
    Kill,
    /// SIGSTOP for the hold time, then SIGCONT: a hung peer, not a dead one.
    Pause,
    /// SIGTERM (a clean shutdown under load), down for the hold time, then started again.
    Term,
}

impl FaultKind {
    pub fn label(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill -9",
            FaultKind::Pause => "SIGSTOP",
            FaultKind::Term => "SIGTERM",
        }
    }
}

/// One planned fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    /// Indexes into the cluster's members: one process, or a master and its slave together
    /// (only with `allow_pair_loss`).
    pub targets: Vec<usize>,
    /// How long the targets stay down (or paused).
    pub hold: Duration,
    /// How long the cluster runs undisturbed after the targets are back.
    pub settle: Duration,
}

/// The planner's knobs.
#[derive(Clone, Debug)]
pub struct PlanOptions {
    /// How long the run is meant to last.
    pub duration: Duration,
    /// Undisturbed time at the start (clients connect, consumers take their queues).
    pub warmup: Duration,
    /// Undisturbed time at the end, before the drain.
    pub tail: Duration,
    /// Let a master and its slave be down together.
    pub allow_pair_loss: bool,
    /// Kinds to draw from (all three by default).
    pub kinds: Vec<FaultKind>,
}

/// What a restart is assumed to take when laying faults out over the run.
const NOMINAL_RESTART: Duration = Duration::from_millis(700);

/// The faults of a run with `seed`, in order.
pub fn plan(seed: u64, members: &[Member], options: &PlanOptions) -> Vec<Fault> {
    let mut rng = XorShiftRng::seed_from_u64(seed);
    let mut roles: Vec<Role> = members.iter().map(|m| m.role).collect();
    roles.sort();
    roles.dedup();
    let kinds: Vec<(FaultKind, u32)> = [
        (FaultKind::Kill, 65),
        (FaultKind::Pause, 20),
        (FaultKind::Term, 15),
    ]
    .into_iter()
    .filter(|(k, _)| options.kinds.contains(k))
    .collect();
    let total_weight: u32 = kinds.iter().map(|(_, w)| w).sum();
    let mut faults = Vec::new();
    if roles.is_empty() || total_weight == 0 {
        return faults;
    }
    let end = options.duration.saturating_sub(options.tail);
    let mut at = options.warmup;
    loop {
        let mut pick = rng.random_range(0..total_weight);
        let mut kind = kinds[0].0;
        for (k, w) in &kinds {
            if pick < *w {
                kind = *k;
                break;
            }
            pick -= w;
        }
        let role = roles[rng.random_range(0..roles.len())];
        let of_role: Vec<usize> = (0..members.len())
            .filter(|&i| members[i].role == role)
            .collect();
        let target = of_role[rng.random_range(0..of_role.len())];
        let hold = match kind {
            FaultKind::Kill => Duration::from_millis(rng.random_range(500..3000)),
            FaultKind::Pause => Duration::from_millis(rng.random_range(2000..5000)),
            FaultKind::Term => Duration::from_millis(rng.random_range(500..2000)),
        };
        let settle = Duration::from_millis(rng.random_range(2000..5000));
        let mut targets = vec![target];
        // Drawn whatever the options, so that the rest of the plan is the same with and
        // without pair loss.
        let together = rng.random_bool(0.3);
        if options.allow_pair_loss && together && kind == FaultKind::Kill {
            if let Some(name) = &members[target].broker_name {
                targets.extend((0..members.len()).filter(|&i| {
                    i != target && members[i].broker_name.as_deref() == Some(name.as_str())
                }));
            }
        }
        let took = hold + NOMINAL_RESTART + settle;
        if at + took > end {
            break;
        }
        at += took;
        faults.push(Fault {
            kind,
            targets,
            hold,
            settle,
        });
    }
    faults
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster() -> Vec<Member> {
        let broker = |role, name: &str| Member {
            role,
            broker_name: Some(name.to_owned()),
        };
        vec![
            Member {
                role: Role::NameServer,
                broker_name: None,
            },
            Member {
                role: Role::NameServer,
                broker_name: None,
            },
            broker(Role::Master, "broker-a"),
            broker(Role::Slave, "broker-a"),
            broker(Role::Master, "broker-b"),
            broker(Role::Slave, "broker-b"),
        ]
    }

    fn options(secs: u64, allow_pair_loss: bool) -> PlanOptions {
        PlanOptions {
            duration: Duration::from_secs(secs),
            warmup: Duration::from_secs(5),
            tail: Duration::from_secs(10),
            allow_pair_loss,
            kinds: vec![FaultKind::Kill, FaultKind::Pause, FaultKind::Term],
        }
    }

    #[test]
    fn one_seed_gives_one_plan_and_another_seed_another() {
        let a = plan(42, &cluster(), &options(120, false));
        assert_eq!(a, plan(42, &cluster(), &options(120, false)));
        assert_ne!(a, plan(43, &cluster(), &options(120, false)));
        assert!(a.len() >= 5, "{} faults in 120 s", a.len());
    }

    #[test]
    fn a_ten_minute_plan_has_the_kills_and_pauses_the_audit_needs() {
        let faults = plan(7, &cluster(), &options(600, false));
        let kills = faults.iter().filter(|f| f.kind == FaultKind::Kill).count();
        let pauses = faults.iter().filter(|f| f.kind == FaultKind::Pause).count();
        assert!(
            kills >= 50 && pauses >= 10,
            "{kills} kills, {pauses} pauses"
        );
        let members = cluster();
        for role in [Role::NameServer, Role::Master, Role::Slave] {
            assert!(
                faults.iter().any(|f| members[f.targets[0]].role == role),
                "no fault hit a {role:?}"
            );
        }
    }

    #[test]
    fn pairs_go_down_together_only_when_allowed() {
        let members = cluster();
        let strict = plan(9, &members, &options(600, false));
        assert!(strict.iter().all(|f| f.targets.len() == 1));
        let loose = plan(9, &members, &options(600, true));
        let pairs: Vec<&Fault> = loose.iter().filter(|f| f.targets.len() == 2).collect();
        assert!(!pairs.is_empty());
        for f in pairs {
            assert_eq!(f.kind, FaultKind::Kill);
            assert_eq!(
                members[f.targets[0]].broker_name,
                members[f.targets[1]].broker_name
            );
        }
        // The same seed plans the same faults otherwise.
        assert_eq!(strict.len(), loose.len());
    }
}
