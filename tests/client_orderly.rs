//! Orderly consumption: two push consumers of one group with `orderly = true` share a
//! 4-queue topic; messages sent with `send_orderly` for 20 sharding keys arrive, for every
//! key, in send order — per consumer and overall — even though the listener is slow for
//! some messages, several queues are consumed at once, batches hold several messages and
//! some batches are answered `ReconsumeLater` once; and a member joining mid-stream takes
//! its queues over where the old owner stopped, never consuming a queue alongside it.

mod support;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actimq::{
    ConsumeFromWhere, ConsumeMessages, ConsumeResult, Message, MessageExt, MessageListener,
    MessageQueue, Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
};
use actix::prelude::*;
use support::{eventually, eventually_sync, is_partition, TestCluster};

const TOPIC: &str = "OrderlyTopic";
const GROUP: &str = "orderly-consumers";
const KEYS: u32 = 20;
const PER_KEY: u32 = 100;

/// What the listeners saw, shared by both consumers' listeners and the test.
#[derive(Default)]
struct Log {
    /// Consumer → key → sequence numbers in consumption order.
    per_consumer: [BTreeMap<u32, Vec<u32>>; 2],
    /// Key → sequence numbers in consumption order, both consumers together.
    overall: BTreeMap<u32, Vec<u32>>,
    /// Key → queues its messages came from.
    queues_of_key: BTreeMap<u32, BTreeSet<MessageQueue>>,
    /// Listener calls running now, per consumer and per queue.
    running: [usize; 2],
    running_per_queue: HashMap<MessageQueue, usize>,
    /// Highest values the two counters above reached.
    max_running: [usize; 2],
    max_running_per_queue: usize,
    /// Batches answered ReconsumeLater, and redelivered messages consumed.
    reconsume_later: u32,
    redelivered: BTreeSet<(u32, u32)>,
}

fn parse(m: &MessageExt) -> (u32, u32) {
    let body = std::str::from_utf8(m.body()).expect("utf-8 body");
    let (key, seq) = body.split_once(':').expect("key:seq body");
    (key.parse().expect("key"), seq.parse().expect("seq"))
}

/// A listener actor that is slow for some messages (an async sleep, so the actor serves
/// other queues meanwhile) and asks for one redelivery of message 50 of every fifth key.
struct SlowListener {
    consumer: usize,
    log: Arc<Mutex<Log>>,
    /// Milliseconds to spend on message (key, seq).
    delay: fn(u32, u32) -> u64,
    /// Whether to answer ReconsumeLater once for message 50 of every fifth key.
    retry: bool,
}

impl Actor for SlowListener {
    type Context = Context<Self>;
}

impl Handler<ConsumeMessages> for SlowListener {
    type Result = ResponseFuture<ConsumeResult>;

    fn handle(&mut self, msg: ConsumeMessages, _: &mut Self::Context) -> Self::Result {
        let (me, log, delay, retry) =
            (self.consumer, Arc::clone(&self.log), self.delay, self.retry);
        Box::pin(async move {
            let msgs = msg.0;
            let queue = msgs[0].queue.clone();
            {
                let mut l = log.lock().unwrap();
                l.running[me] += 1;
                l.max_running[me] = l.max_running[me].max(l.running[me]);
                let q = l.running_per_queue.entry(queue.clone()).or_default();
                *q += 1;
                let q = *q;
                l.max_running_per_queue = l.max_running_per_queue.max(q);
            }
            let parsed: Vec<(u32, u32)> = msgs.iter().map(parse).collect();
            let delay_ms = parsed
                .iter()
                .map(|&(key, seq)| delay(key, seq))
                .max()
                .unwrap_or(0);
            if delay_ms > 0 {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            } else {
                tokio::task::yield_now().await;
            }
            let retry = retry
                && msgs
                    .iter()
                    .zip(&parsed)
                    .any(|(m, (key, seq))| key % 5 == 0 && *seq == 50 && m.reconsume_times == 0);
            let mut l = log.lock().unwrap();
            l.running[me] -= 1;
            *l.running_per_queue.get_mut(&queue).expect("counted") -= 1;
            if retry {
                l.reconsume_later += 1;
                return ConsumeResult::ReconsumeLater;
            }
            for (m, (key, seq)) in msgs.iter().zip(parsed) {
                assert_eq!(m.queue, queue, "one batch, one queue");
                if m.reconsume_times > 0 {
                    l.redelivered.insert((key, seq));
                }
                l.per_consumer[me].entry(key).or_default().push(seq);
                l.overall.entry(key).or_default().push(seq);
                l.queues_of_key
                    .entry(key)
                    .or_default()
                    .insert(m.queue.clone());
            }
            ConsumeResult::Success
        })
    }
}

fn strictly_increasing(v: &[u32]) -> bool {
    v.windows(2).all(|w| w[0] < w[1])
}

#[test]
fn orderly_consumers_see_every_key_in_send_order() {
    actix_rt::System::new().block_on(async {
        let mut cluster = TestCluster::start(1, 1).await;
        cluster.create_topic(TOPIC, 4).await;
        let all_queues = cluster.queues_of(TOPIC, 4);

        let log = Arc::new(Mutex::new(Log::default()));
        let mut consumers = Vec::new();
        for i in 0..2 {
            let mut config = PushConsumerConfig::new(GROUP).subscribe(TOPIC, "*");
            config.orderly = true;
            config.consume_from_where = ConsumeFromWhere::FirstOffset;
            config.consume_message_batch_max_size = 3;
            config.rebalance_interval = Duration::from_secs(2);
            config.reconsume_delay = Duration::from_millis(50);
            let listener = SlowListener {
                consumer: i,
                log: Arc::clone(&log),
                delay: |key, seq| if seq % 3 == 0 { u64::from(key % 3 + 1) } else { 0 },
                retry: true,
            }
            .start();
            let consumer = PushConsumer::start(
                cluster.client(),
                config,
                MessageListener::actor(listener.recipient()),
            )
            .await
            .expect("consumer starts");
            consumers.push(consumer);
        }
        let assignments = || async {
            let mut a = Vec::new();
            for c in &consumers {
                a.push(c.assignment().await);
            }
            a
        };
        eventually(
            Duration::from_secs(15),
            "disjoint assignments covering the 4 queues",
            || async { is_partition(&assignments().await, &all_queues, 2..=2) },
        )
        .await;
        let owners = assignments().await;
        println!("assignments: {owners:?}");

        let producer = Producer::start(cluster.client(), ProducerConfig::new("orderly-producers"));
        let senders: Vec<_> = (0..KEYS)
            .map(|key| {
                let producer = producer.clone();
                actix_rt::spawn(async move {
                    let mut placed = Vec::new();
                    for seq in 0..PER_KEY {
                        let r = producer
                            .send_orderly(
                                Message::new(TOPIC, format!("{key}:{seq}")),
                                format!("order-{key}"),
                            )
                            .await
                            .unwrap_or_else(|e| panic!("send {key}:{seq} failed: {e}"));
                        placed.push((r.message_queue, r.queue_offset));
                    }
                    placed
                })
            })
            .collect();
        let mut queue_of_key = BTreeMap::new();
        for (key, sender) in (0..KEYS).zip(senders) {
            let placed = sender.await.expect("sender task");
            let queues: BTreeSet<_> = placed.iter().map(|(q, _)| q.clone()).collect();
            assert_eq!(queues.len(), 1, "key {key} went to one queue: {queues:?}");
            let offsets: Vec<u64> = placed.iter().map(|(_, o)| *o).collect();
            assert!(
                offsets.windows(2).all(|w| w[0] < w[1]),
                "key {key} stored in send order"
            );
            queue_of_key.insert(key, placed[0].0.clone());
        }

        eventually_sync(
            Duration::from_secs(30),
            "all 2,000 messages consumed",
            || {
                let l = log.lock().unwrap();
                l.overall.values().map(Vec::len).sum::<usize>() >= (KEYS * PER_KEY) as usize
            },
        )
        .await;
        assert_eq!(
            owners,
            assignments().await,
            "assignment stayed put while consuming"
        );
        for c in &consumers {
            c.shutdown().await.expect("offsets saved at shutdown");
        }
        cluster.shutdown().await;

        let l = log.lock().unwrap();
        let expected: Vec<u32> = (0..PER_KEY).collect();
        for key in 0..KEYS {
            let q = &queue_of_key[&key];
            let owner = owners.iter().position(|a| a.contains(q)).expect("owned");
            assert_eq!(
                l.queues_of_key[&key],
                BTreeSet::from([q.clone()]),
                "key {key} consumed from the queue it was sent to"
            );
            for (i, per) in l.per_consumer.iter().enumerate() {
                let seqs = per.get(&key).map(Vec::as_slice).unwrap_or_default();
                assert!(
                    strictly_increasing(seqs),
                    "consumer {i}, key {key}: out of order: {seqs:?}"
                );
                if i != owner {
                    assert!(seqs.is_empty(), "key {key} consumed by non-owner {i}");
                }
            }
            assert_eq!(
                l.overall[&key], expected,
                "key {key}: every message once, in order"
            );
        }
        let per_consumer: Vec<usize> = l
            .per_consumer
            .iter()
            .map(|m| m.values().map(Vec::len).sum())
            .collect();
        println!(
            "consumed per consumer {per_consumer:?}; max concurrent listener calls {:?}, per queue {}; \
             ReconsumeLater answers {}, redelivered {:?}",
            l.max_running, l.max_running_per_queue, l.reconsume_later, l.redelivered
        );
        assert_eq!(
            l.max_running_per_queue, 1,
            "orderly: one batch at a time per queue"
        );
        assert!(
            l.max_running.iter().any(|&n| n >= 2),
            "queues were consumed concurrently: {:?}",
            l.max_running
        );
        let retried: BTreeSet<(u32, u32)> = (0..KEYS).filter(|k| k % 5 == 0).map(|k| (k, 50)).collect();
        // A batch may hold message 50 of two such keys (same queue): one answer covers both.
        assert!(
            (1..=4).contains(&l.reconsume_later),
            "ReconsumeLater answers: {}",
            l.reconsume_later
        );
        assert!(
            retried.is_subset(&l.redelivered),
            "redelivered: {:?}",
            l.redelivered
        );
    });
}

/// Starts an orderly consumer of `topic` in `group` on a new client instance of `cluster`.
async fn orderly_consumer(
    cluster: &TestCluster,
    group: &str,
    topic: &str,
    listener: SlowListener,
) -> PushConsumer {
    let mut config = PushConsumerConfig::new(group).subscribe(topic, "*");
    config.orderly = true;
    config.consume_from_where = ConsumeFromWhere::FirstOffset;
    config.rebalance_interval = Duration::from_secs(2);
    config.reconsume_delay = Duration::from_millis(50);
    PushConsumer::start(
        cluster.client(),
        config,
        MessageListener::actor(listener.start().recipient()),
    )
    .await
    .expect("consumer starts")
}

/// A member joining while an orderly consumer is busy: the queues handed over must not be
/// consumed by both members at once, and the new owner must go on where the old one stopped
/// (RocketMQ locks each queue on the broker for this).
#[test]
fn orderly_handover_to_a_joining_member_keeps_each_key_in_order() {
    const TOPIC: &str = "OrderlyHandover";
    const GROUP: &str = "orderly-handover";
    actix_rt::System::new().block_on(async {
        let mut cluster = TestCluster::start(1, 1).await;
        cluster.create_topic(TOPIC, 4).await;
        let all_queues = cluster.queues_of(TOPIC, 4);
        let producer = Producer::start(cluster.client(), ProducerConfig::new("handover-producers"));
        for seq in 0..PER_KEY {
            for key in 0..KEYS {
                producer
                    .send_orderly(
                        Message::new(TOPIC, format!("{key}:{seq}")),
                        format!("order-{key}"),
                    )
                    .await
                    .unwrap_or_else(|e| panic!("send {key}:{seq} failed: {e}"));
            }
        }

        let log = Arc::new(Mutex::new(Log::default()));
        let listener = |consumer| SlowListener {
            consumer,
            log: Arc::clone(&log),
            delay: |_, _| 2,
            retry: false,
        };
        let first = orderly_consumer(&cluster, GROUP, TOPIC, listener(0)).await;
        let consumed = || {
            let l = log.lock().unwrap();
            l.overall.values().map(Vec::len).sum::<usize>()
        };
        eventually_sync(Duration::from_secs(15), "the first member busy", || {
            consumed() >= 200
        })
        .await;
        let second = orderly_consumer(&cluster, GROUP, TOPIC, listener(1)).await;
        eventually(
            Duration::from_secs(15),
            "the queues shared between both members",
            || async {
                is_partition(
                    &[first.assignment().await, second.assignment().await],
                    &all_queues,
                    2..=2,
                )
            },
        )
        .await;
        eventually_sync(
            Duration::from_secs(30),
            "every message consumed",
            || {
                let l = log.lock().unwrap();
                (0..KEYS).all(|k| {
                    l.overall
                        .get(&k)
                        .is_some_and(|v| v.iter().collect::<BTreeSet<_>>().len() == PER_KEY as usize)
                })
            },
        )
        .await;
        first.shutdown().await.expect("offsets saved at shutdown");
        second.shutdown().await.expect("offsets saved at shutdown");
        cluster.shutdown().await;

        let total = consumed();
        let l = log.lock().unwrap();
        let per_consumer: Vec<usize> = l
            .per_consumer
            .iter()
            .map(|m| m.values().map(Vec::len).sum())
            .collect();
        println!(
            "handover: consumed per member {per_consumer:?}, {} in all; max concurrent calls on one queue (both members) {}",
            total, l.max_running_per_queue
        );
        for (i, per) in l.per_consumer.iter().enumerate() {
            for (key, seqs) in per {
                assert!(
                    strictly_increasing(seqs),
                    "member {i}, key {key}: out of order: {seqs:?}"
                );
            }
        }
        let mut broken = Vec::new();
        for (key, seqs) in &l.overall {
            if !strictly_increasing(seqs) {
                let at = seqs.windows(2).position(|w| w[0] >= w[1]).unwrap_or(0);
                broken.push(format!("key {key}: ...{:?}...", &seqs[at.saturating_sub(2)..(at + 4).min(seqs.len())]));
            }
        }
        assert!(
            broken.is_empty() && l.max_running_per_queue == 1,
            "orderly handover broke: {} key(s) consumed again or out of order {broken:?}; \
             at most {} listener calls at once on one queue (both members together; must be 1)",
            broken.len(),
            l.max_running_per_queue
        );
    });
}
