//! Queue allocation for the rebalancer: which of a topic's queues one consumer of a group
//! should own, given every queue and every consumer id.
//!
//! Modelled on RocketMQ's `AllocateMessageQueueAveragely` and
//! `AllocateMessageQueueAveragelyByCircle` (client, `consumer.rebalance`). This file owns
//! only the strategies: a pure function of (queues, clients) with no actors, no I/O, no
//! clock and no panics. The rebalancer actor gathers the inputs and applies the result.
//!
//! Every consumer runs the same strategy on the same inputs independently, so the inputs
//! are sorted and deduplicated here: callers may pass them in any order and all members of
//! a group still agree.
//!
//! # Invariant
//! For fixed inputs, the shares of all listed clients partition the queues: each queue has
//! exactly one owner (one owner per queue per group) and share sizes differ by at most one.
//! A client that is not listed gets nothing.

use crate::protocol::MessageQueue;

/// A way of dividing a topic's queues among the consumers of one group.
///
/// Implementations must be deterministic and agree across clients: the shares computed by
/// every id in `all_client_ids` must partition `all_queues`.
pub trait AllocateStrategy: Send + Sync {
    /// Stable name of the strategy, as RocketMQ spells it (`AVG`, `AVG_BY_CIRCLE`).
    fn name(&self) -> &'static str;

    /// The queues `current_client_id` should own. Inputs may be unsorted and contain
    /// duplicates; the result is sorted. Empty when there are no queues, no clients, or
    /// `current_client_id` is not among `all_client_ids`.
    fn allocate(
        &self,
        consumer_group: &str,
        current_client_id: &str,
        all_queues: &[MessageQueue],
        all_client_ids: &[String],
    ) -> Vec<MessageQueue>;
}

/// Contiguous blocks in sorted order: with `q` queues and `n` consumers, each gets `q / n`
/// and the first `q % n` consumers get one more (RocketMQ `AllocateMessageQueueAveragely`).
/// With more consumers than queues, the consumers past the last queue get nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocateAveragely;

/// Round robin in sorted order: queue `i` goes to consumer `i % n`
/// (RocketMQ `AllocateMessageQueueAveragelyByCircle`). Spreads each broker's queues over
/// more consumers than [`AllocateAveragely`] does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AllocateAveragelyByCircle;

/// The sorted, deduplicated queues and the current client's index among the sorted,
/// deduplicated client ids, or `None` when there is nothing to allocate.
fn prepare(
    current_client_id: &str,
    all_queues: &[MessageQueue],
    all_client_ids: &[String],
) -> Option<(Vec<MessageQueue>, usize, usize)> {
    if all_queues.is_empty() || all_client_ids.is_empty() {
        return None;
    }
    let mut clients: Vec<&str> = all_client_ids.iter().map(String::as_str).collect();
    clients.sort_unstable();
    clients.dedup();
    let index = clients.binary_search(&current_client_id).ok()?;
    let mut queues = all_queues.to_vec();
    queues.sort_unstable();
    queues.dedup();
    Some((queues, index, clients.len()))
}

impl AllocateStrategy for AllocateAveragely {
    fn name(&self) -> &'static str {
        "AVG"
    }

    fn allocate(
        &self,
        _consumer_group: &str,
        current_client_id: &str,
        all_queues: &[MessageQueue],
        all_client_ids: &[String],
    ) -> Vec<MessageQueue> {
        let Some((queues, index, clients)) = prepare(current_client_id, all_queues, all_client_ids)
        else {
            return Vec::new();
        };
        let base = queues.len() / clients;
        let extra = queues.len() % clients;
        // The first `extra` consumers take `base + 1`; the rest take `base`, shifted past
        // the extra queues handed out before them.
        let (start, len) = if index < extra {
            (index * (base + 1), base + 1)
        } else {
            (index * base + extra, base)
        };
        queues.into_iter().skip(start).take(len).collect()
    }
}

impl AllocateStrategy for AllocateAveragelyByCircle {
    fn name(&self) -> &'static str {
        "AVG_BY_CIRCLE"
    }

    fn allocate(
        &self,
        _consumer_group: &str,
        current_client_id: &str,
        all_queues: &[MessageQueue],
        all_client_ids: &[String],
    ) -> Vec<MessageQueue> {
        let Some((queues, index, clients)) = prepare(current_client_id, all_queues, all_client_ids)
        else {
            return Vec::new();
        };
        queues.into_iter().skip(index).step_by(clients).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;

    fn mq(broker: &str, id: i32) -> MessageQueue {
        MessageQueue {
            topic: "T".to_string(),
            broker_name: broker.to_string(),
            queue_id: id,
        }
    }

    /// `n` queues spread over two brokers, sorted.
    fn queues(n: usize) -> Vec<MessageQueue> {
        let mut v: Vec<MessageQueue> = (0..n)
            .map(|i| mq(if i % 2 == 0 { "a" } else { "b" }, i as i32))
            .collect();
        v.sort();
        v
    }

    fn clients(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("cid-{i:02}")).collect()
    }

    fn strategies() -> [&'static dyn AllocateStrategy; 2] {
        [&AllocateAveragely, &AllocateAveragelyByCircle]
    }

    /// Every listed client's share, in sorted client order.
    fn shares(
        s: &dyn AllocateStrategy,
        qs: &[MessageQueue],
        cids: &[String],
    ) -> Vec<Vec<MessageQueue>> {
        let mut sorted: Vec<String> = cids.to_vec();
        sorted.sort();
        sorted.dedup();
        sorted
            .iter()
            .map(|c| s.allocate("G", c, qs, cids))
            .collect()
    }

    /// Union is every queue, shares are disjoint, sizes differ by at most one.
    fn assert_partition(
        s: &dyn AllocateStrategy,
        qs: &[MessageQueue],
        cids: &[String],
    ) -> Result<(), String> {
        let all = shares(s, qs, cids);
        let expected: BTreeSet<MessageQueue> = qs.iter().cloned().collect();
        let mut seen = BTreeSet::new();
        for share in &all {
            for q in share {
                if !seen.insert(q.clone()) {
                    return Err(format!("{}: {q:?} owned twice", s.name()));
                }
            }
        }
        if seen != expected {
            return Err(format!("{}: union differs from the queue set", s.name()));
        }
        let min = all.iter().map(Vec::len).min().unwrap_or(0);
        let max = all.iter().map(Vec::len).max().unwrap_or(0);
        if max - min > 1 {
            return Err(format!("{}: share sizes {min}..{max}", s.name()));
        }
        Ok(())
    }

    #[test]
    fn partition_for_small_counts() {
        for q in 0..=20 {
            for c in 1..=10 {
                let qs = queues(q);
                let cids = clients(c);
                for s in strategies() {
                    assert_partition(s, &qs, &cids).unwrap();
                }
                // Averagely: the first `q % c` clients get one extra, and the shares,
                // concatenated in client order, are the sorted queues.
                let avg = shares(&AllocateAveragely, &qs, &cids);
                let sizes: Vec<usize> = avg.iter().map(Vec::len).collect();
                let want: Vec<usize> = (0..c).map(|i| q / c + usize::from(i < q % c)).collect();
                assert_eq!(sizes, want, "q={q} c={c}");
                let concat: Vec<MessageQueue> = avg.into_iter().flatten().collect();
                assert_eq!(concat, qs, "q={q} c={c}");
                // Circle: queue i goes to client i % c.
                for (i, share) in shares(&AllocateAveragelyByCircle, &qs, &cids)
                    .iter()
                    .enumerate()
                {
                    let want: Vec<MessageQueue> = qs.iter().skip(i).step_by(c).cloned().collect();
                    assert_eq!(share, &want, "q={q} c={c} i={i}");
                }
            }
        }
    }

    #[test]
    fn eight_queues_three_consumers_is_3_3_2() {
        let qs = queues(8);
        let cids = clients(3);
        let avg = shares(&AllocateAveragely, &qs, &cids);
        assert_eq!(avg.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 2]);
        assert_eq!(avg[0], qs[0..3]);
        assert_eq!(avg[1], qs[3..6]);
        assert_eq!(avg[2], qs[6..8]);
        let circle = shares(&AllocateAveragelyByCircle, &qs, &cids);
        assert_eq!(circle.iter().map(Vec::len).collect::<Vec<_>>(), [3, 3, 2]);
        assert_eq!(circle[2], vec![qs[2].clone(), qs[5].clone()]);
    }

    #[test]
    fn input_order_and_duplicates_do_not_matter() {
        let qs = queues(11);
        let cids = clients(4);
        let mut shuffled_qs: Vec<MessageQueue> = qs.iter().rev().cloned().collect();
        shuffled_qs.rotate_left(5);
        shuffled_qs.push(qs[3].clone());
        let mut shuffled_cids = vec![
            cids[2].clone(),
            cids[0].clone(),
            cids[3].clone(),
            cids[1].clone(),
            cids[0].clone(),
        ];
        for s in strategies() {
            for c in &cids {
                let want = s.allocate("G", c, &qs, &cids);
                assert_eq!(s.allocate("G", c, &shuffled_qs, &shuffled_cids), want);
                assert!(want.windows(2).all(|w| w[0] < w[1]), "result is sorted");
            }
            assert_partition(s, &shuffled_qs, &shuffled_cids).unwrap();
        }
        shuffled_cids.reverse();
        assert_eq!(
            AllocateAveragely.allocate("G", &cids[1], &shuffled_qs, &shuffled_cids),
            qs[3..6]
        );
    }

    #[test]
    fn unknown_client_and_empty_inputs_get_nothing() {
        let qs = queues(8);
        let cids = clients(3);
        for s in strategies() {
            assert!(s.allocate("G", "stranger", &qs, &cids).is_empty());
            assert!(s.allocate("G", "", &qs, &cids).is_empty());
            assert!(s.allocate("G", &cids[0], &[], &cids).is_empty());
            assert!(s.allocate("G", &cids[0], &qs, &[]).is_empty());
        }
    }

    #[test]
    fn more_consumers_than_queues_leaves_the_rest_idle() {
        let qs = queues(3);
        let cids = clients(5);
        for s in strategies() {
            let sizes: Vec<usize> = shares(s, &qs, &cids).iter().map(Vec::len).collect();
            assert_eq!(sizes, [1, 1, 1, 0, 0], "{}", s.name());
        }
    }

    #[test]
    fn names_match_rocketmq() {
        assert_eq!(AllocateAveragely.name(), "AVG");
        assert_eq!(AllocateAveragelyByCircle.name(), "AVG_BY_CIRCLE");
    }

    fn arb_queue() -> impl Strategy<Value = MessageQueue> {
        ("[ab]", "broker-[0-3]", 0i32..16).prop_map(|(topic, broker_name, queue_id)| MessageQueue {
            topic,
            broker_name,
            queue_id,
        })
    }

    proptest! {
        #[test]
        fn shares_partition_the_queues(
            qs in prop::collection::vec(arb_queue(), 0..60),
            cids in prop::collection::vec("c[0-9]{1,2}", 1..15),
        ) {
            for s in strategies() {
                prop_assert_eq!(assert_partition(s, &qs, &cids), Ok(()));
            }
        }
    }
}
