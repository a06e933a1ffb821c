//! The judgement of a `mqbench chaos` run, from what `load` recorded: per consumer group the
//! messages consumed, lost (acknowledged and never delivered), duplicated, delivered out of
//! order, and the longest gap between deliveries. Pure: it reads the ledger and never waits.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use super::load::{Ack, Delivery};

/// One group's verdict.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GroupAudit {
    /// Distinct messages delivered (acknowledged or not: a send that timed out may still
    /// have been stored).
    pub consumed: u64,
    /// Acknowledged messages never delivered.
    pub lost: u64,
    /// Deliveries beyond the first of a message.
    pub duplicated: u64,
    /// First deliveries of an ordered message while an earlier-acknowledged message of the
    /// same key was still undelivered (checked for the orderly group only).
    pub order_violations: u64,
    /// The longest time between two deliveries from the first to the last.
    pub longest_gap: Duration,
    /// Up to ten lost sequence numbers, to look for in the logs.
    pub lost_sample: Vec<u64>,
}

/// Audits one group's deliveries against the acknowledgements.
pub fn audit_group(acks: &[Ack], deliveries: &[Delivery], check_order: bool) -> GroupAudit {
    let mut seen: HashSet<u64> = HashSet::with_capacity(deliveries.len());
    let mut duplicated = 0;
    let mut longest_gap = Duration::ZERO;
    for pair in deliveries.windows(2) {
        longest_gap = longest_gap.max(pair[1].at.saturating_sub(pair[0].at));
    }
    for d in deliveries {
        if !seen.insert(d.seq) {
            duplicated += 1;
        }
    }
    let lost_seqs: Vec<u64> = acks
        .iter()
        .filter(|a| !seen.contains(&a.seq))
        .map(|a| a.seq)
        .collect();
    GroupAudit {
        consumed: seen.len() as u64,
        lost: lost_seqs.len() as u64,
        duplicated,
        order_violations: if check_order {
            order_violations(acks, deliveries)
        } else {
            0
        },
        longest_gap,
        lost_sample: lost_seqs.into_iter().take(10).collect(),
    }
}

/// Counts the queue positions (broker, queue, offset) that delivered two different
/// messages, across all groups: an offset handed out twice, say after a crash, which a
/// consumer that had passed it would never see.
pub fn offset_conflicts<'a>(groups: impl IntoIterator<Item = &'a [Delivery]>) -> u64 {
    let mut at: HashMap<(Arc<str>, i32, u64), u64> = HashMap::new();
    let mut conflicts: HashSet<(Arc<str>, i32, u64)> = HashSet::new();
    for d in groups.into_iter().flatten() {
        let place = (Arc::clone(&d.broker_name), d.queue_id, d.queue_offset);
        match at.get(&place) {
            Some(&seq) if seq != d.seq => {
                conflicts.insert(place);
            }
            Some(_) => {}
            None => {
                at.insert(place, d.seq);
            }
        }
    }
    conflicts.len() as u64
}

/// Counts first deliveries of an ordered message made while a message of the same key
/// acknowledged before it was still undelivered. Redeliveries are duplicates, not
/// violations; sends that were not acknowledged are not in the order.
pub fn order_violations(acks: &[Ack], deliveries: &[Delivery]) -> u64 {
    // Per key, its acknowledged messages in acknowledgement order.
    let mut position: HashMap<u64, (u64, usize)> = HashMap::new();
    let mut per_key: HashMap<u64, Vec<bool>> = HashMap::new();
    for a in acks {
        if let Some(k) = a.order_key {
            let delivered = per_key.entry(k).or_default();
            position.insert(a.seq, (k, delivered.len()));
            delivered.push(false);
        }
    }
    // Per key, the first position not yet delivered.
    let mut lowest: HashMap<u64, usize> = HashMap::new();
    let mut violations = 0;
    for d in deliveries {
        let Some(&(key, pos)) = position.get(&d.seq) else {
            continue;
        };
        let Some(delivered) = per_key.get_mut(&key) else {
            continue;
        };
        if delivered[pos] {
            continue;
        }
        delivered[pos] = true;
        let low = lowest.entry(key).or_insert(0);
        if pos > *low {
            violations += 1;
        }
        while *low < delivered.len() && delivered[*low] {
            *low += 1;
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(seq: u64, key: Option<u64>) -> Ack {
        Ack {
            seq,
            order_key: key,
        }
    }

    fn at(seq: u64, ms: u64) -> Delivery {
        Delivery {
            seq,
            broker_name: Arc::from("broker-a"),
            queue_id: 0,
            queue_offset: seq,
            at: Duration::from_millis(ms),
        }
    }

    #[test]
    fn counts_lost_duplicates_and_the_longest_gap() {
        let acks = [ack(1, None), ack(2, None), ack(3, None)];
        let got = audit_group(&acks, &[at(1, 0), at(3, 10), at(1, 500), at(9, 520)], false);
        assert_eq!(got.consumed, 3);
        assert_eq!(got.lost, 1);
        assert_eq!(got.lost_sample, vec![2]);
        assert_eq!(got.duplicated, 1);
        assert_eq!(got.longest_gap, Duration::from_millis(490));
    }

    #[test]
    fn an_overtaking_first_delivery_is_a_violation_and_a_redelivery_is_not() {
        let acks = [
            ack(1, Some(0)),
            ack(2, Some(0)),
            ack(3, Some(1)),
            ack(4, Some(0)),
        ];
        // In order per key, other keys interleaved, then a redelivery of 1: fine.
        let fine = [at(3, 0), at(1, 1), at(2, 2), at(4, 3), at(1, 4)];
        assert_eq!(order_violations(&acks, &fine), 0);
        // 2 before 1 (1 acknowledged first and still undelivered): one violation.
        let bad = [at(2, 0), at(1, 1), at(4, 2)];
        assert_eq!(order_violations(&acks, &bad), 1);
        // A message delivered before earlier ones that were never acknowledged: fine.
        assert_eq!(order_violations(&[ack(5, Some(2))], &[at(5, 0)]), 0);
    }

    #[test]
    fn one_offset_with_two_messages_is_a_conflict() {
        let a = [at(1, 0), at(2, 1)];
        let mut other = at(3, 2);
        other.queue_offset = 1;
        let b = [at(1, 0), other];
        assert_eq!(offset_conflicts([&a[..], &a[..]]), 0);
        assert_eq!(offset_conflicts([&a[..], &b[..]]), 1);
    }
}
