//! Push consumers on an in-process cluster: clustering (queues shared out without overlap,
//! every message consumed once, a member leaving hands its queues over without loss),
//! broadcasting (every member gets everything), and a group restart resuming from the
//! committed offsets.

mod support;

use std::time::{Duration, Instant};

use actimq::{
    ConsumeFromWhere, Message, MessageModel, Producer, ProducerConfig, PushConsumer,
    PushConsumerConfig,
};
use support::{eventually, is_partition, send_all, Inbox, TestCluster};

const WAIT: Duration = Duration::from_secs(20);

/// A consumer config with test-speed timers that starts from the first offset when the
/// group has none committed.
fn consumer_config(group: &str, topic: &str) -> PushConsumerConfig {
    let mut c = PushConsumerConfig::new(group).subscribe(topic, "*");
    c.consume_from_where = ConsumeFromWhere::FirstOffset;
    c.rebalance_interval = Duration::from_secs(1);
    c.persist_consumer_offset_interval = Duration::from_millis(500);
    c
}

async fn assignments(consumers: &[PushConsumer]) -> Vec<Vec<actimq::MessageQueue>> {
    let mut out = Vec::new();
    for c in consumers {
        out.push(c.assignment().await);
    }
    out
}

#[test]
fn clustering_shares_queues_and_consumes_each_message_once() {
    actix_rt::System::new().block_on(async {
        const TOPIC: &str = "ClusterTopic";
        const GROUP: &str = "cluster-group";
        const FIRST: usize = 30_000;
        const SECOND: usize = 3_000;
        let started = Instant::now();
        // 2 brokers x 4 queues = 8 queues.
        let mut cluster = TestCluster::start(2, 1).await;
        cluster.create_topic(TOPIC, 4).await;
        let all = cluster.queues_of(TOPIC, 4);
        assert_eq!(all.len(), 8);

        let inbox = Inbox::new();
        let mut consumers = Vec::new();
        for _ in 0..3 {
            consumers.push(
                PushConsumer::start(
                    cluster.client(),
                    consumer_config(GROUP, TOPIC),
                    inbox.listener(),
                )
                .await
                .expect("start consumer"),
            );
        }
        eventually(
            WAIT,
            "3 consumers own disjoint sets of 2-3 queues covering all 8",
            || {
                let (cs, all) = (consumers.clone(), all.clone());
                async move { is_partition(&assignments(&cs).await, &all, 2..=3) }
            },
        )
        .await;

        let producer = Producer::start(cluster.client(), ProducerConfig::new("cluster-producer"));
        let results = send_all(
            &producer,
            (0..FIRST).map(|i| Message::new(TOPIC, format!("first-{i}"))),
            64,
        )
        .await;
        assert_eq!(results.len(), FIRST);
        assert_eq!(cluster.stored_count(TOPIC).await, FIRST as i64);
        eventually(WAIT, format!("{FIRST} distinct messages consumed"), || {
            let inbox = inbox.clone();
            async move { inbox.unique() == FIRST }
        })
        .await;
        assert_eq!(
            inbox.deliveries(),
            FIRST as u64,
            "with a stable group every message is delivered exactly once"
        );
        for i in 0..FIRST {
            assert_eq!(inbox.count(format!("first-{i}").as_bytes()), 1, "first-{i}");
        }
        println!(
            "phase 1: {FIRST} messages consumed exactly once ({:?} since start)",
            started.elapsed()
        );

        // One member leaves: the other two take over all 8 queues.
        let leaving = consumers.pop().expect("3 consumers");
        leaving.shutdown().await.expect("offsets saved at shutdown");
        assert!(
            leaving.assignment().await.is_empty(),
            "a shut-down consumer owns nothing"
        );
        eventually(
            WAIT,
            "the 2 remaining consumers own 4 queues each, covering all 8",
            || {
                let (cs, all) = (consumers.clone(), all.clone());
                async move { is_partition(&assignments(&cs).await, &all, 4..=4) }
            },
        )
        .await;
        send_all(
            &producer,
            (0..SECOND).map(|i| Message::new(TOPIC, format!("second-{i}"))),
            64,
        )
        .await;
        eventually(
            WAIT,
            format!("all {} messages consumed", FIRST + SECOND),
            || {
                let inbox = inbox.clone();
                async move { inbox.unique() == FIRST + SECOND }
            },
        )
        .await;
        for i in 0..SECOND {
            assert!(
                inbox.count(format!("second-{i}").as_bytes()) >= 1,
                "second-{i} lost"
            );
        }
        let dups = inbox.duplicates();
        println!(
            "phase 2: {} distinct, {} deliveries, {dups} duplicates around the member change ({:?} since start)",
            inbox.unique(),
            inbox.deliveries(),
            started.elapsed()
        );
        assert!(dups < 1_000, "{dups} duplicates after one member left");

        for c in &consumers {
            c.shutdown().await.expect("offsets saved at shutdown");
        }
        cluster.shutdown().await;
    });
}

#[test]
fn broadcasting_delivers_every_message_to_every_member() {
    actix_rt::System::new().block_on(async {
        const TOPIC: &str = "BroadcastTopic";
        const COUNT: usize = 2_000;
        let mut cluster = TestCluster::start(1, 1).await;
        cluster.create_topic(TOPIC, 4).await;
        let all = cluster.queues_of(TOPIC, 4);

        let mut consumers = Vec::new();
        let mut inboxes = Vec::new();
        for i in 0..3 {
            let mut config = consumer_config("broadcast-group", TOPIC);
            config.message_model = MessageModel::Broadcasting;
            config.offset_store_dir = cluster.scratch_dir(&format!("broadcast-{i}"));
            let inbox = Inbox::new();
            consumers.push(
                PushConsumer::start(cluster.client(), config, inbox.listener())
                    .await
                    .expect("start consumer"),
            );
            inboxes.push(inbox);
        }
        for (i, c) in consumers.iter().enumerate() {
            eventually(
                WAIT,
                format!("broadcast consumer {i} owns every queue"),
                || {
                    let (c, all) = (c.clone(), all.clone());
                    async move { c.assignment().await == all }
                },
            )
            .await;
        }

        let producer = Producer::start(cluster.client(), ProducerConfig::new("bc-producer"));
        send_all(
            &producer,
            (0..COUNT).map(|i| Message::new(TOPIC, format!("bc-{i}"))),
            32,
        )
        .await;
        for (i, inbox) in inboxes.iter().enumerate() {
            eventually(
                WAIT,
                format!("broadcast consumer {i} received all {COUNT}"),
                || {
                    let inbox = inbox.clone();
                    async move { inbox.unique() == COUNT }
                },
            )
            .await;
        }
        for (i, inbox) in inboxes.iter().enumerate() {
            assert_eq!(
                inbox.deliveries(),
                COUNT as u64,
                "consumer {i} got duplicates"
            );
        }
        for c in &consumers {
            c.shutdown().await.expect("offsets saved at shutdown");
        }
        cluster.shutdown().await;
    });
}

#[test]
fn restarted_group_resumes_after_the_last_commit() {
    actix_rt::System::new().block_on(async {
        const TOPIC: &str = "RestartTopic";
        const GROUP: &str = "restart-group";
        const N: usize = 400;
        const M: usize = 300;
        let mut cluster = TestCluster::start(1, 1).await;
        cluster.create_topic(TOPIC, 4).await;
        let all = cluster.queues_of(TOPIC, 4);
        let producer = Producer::start(cluster.client(), ProducerConfig::new("restart-producer"));

        // First life of the group.
        let first = Inbox::new();
        // No periodic commit during the test: only shutdown() commits.
        let mut config = consumer_config(GROUP, TOPIC);
        config.persist_consumer_offset_interval = Duration::from_secs(600);
        let a = PushConsumer::start(cluster.client(), config, first.listener())
            .await
            .expect("start consumer");
        eventually(WAIT, "the first consumer owns every queue", || {
            let (a, all) = (a.clone(), all.clone());
            async move { a.assignment().await == all }
        })
        .await;
        send_all(
            &producer,
            (0..N).map(|i| Message::new(TOPIC, format!("before-{i}"))),
            32,
        )
        .await;
        eventually(WAIT, format!("the first consumer received {N}"), || {
            let first = first.clone();
            async move { first.unique() == N }
        })
        .await;
        a.shutdown().await.expect("offsets saved at shutdown");

        // Shutdown committed everything consumed.
        let broker = cluster.broker_addr(0);
        let stats = cluster
            .admin
            .consume_stats(&broker, GROUP, Some(TOPIC))
            .await
            .expect("consume stats");
        assert_eq!(stats.offset_table.len(), 4, "{stats:?}");
        for (mq, o) in &stats.offset_table {
            assert_eq!(
                o.consumer_offset, o.broker_offset,
                "queue {} not fully committed at shutdown",
                mq.queue_id
            );
        }

        // Second life: a new client instance in the same group. It starts from the
        // committed offsets, so FirstOffset would only matter if nothing was committed.
        let second = Inbox::new();
        let b = PushConsumer::start(
            cluster.client(),
            consumer_config(GROUP, TOPIC),
            second.listener(),
        )
        .await
        .expect("start consumer");
        eventually(WAIT, "the restarted consumer owns every queue", || {
            let (b, all) = (b.clone(), all.clone());
            async move { b.assignment().await == all }
        })
        .await;
        send_all(
            &producer,
            (0..M).map(|i| Message::new(TOPIC, format!("after-{i}"))),
            32,
        )
        .await;
        // Each queue is consumed in offset order, so once every new message arrived any
        // redelivered old one would have arrived before it.
        eventually(WAIT, format!("the restarted consumer received {M}"), || {
            let second = second.clone();
            async move { second.unique() >= M }
        })
        .await;
        let counts = second.counts();
        let old: Vec<_> = counts
            .keys()
            .filter(|b| b.starts_with(b"before-"))
            .collect();
        assert!(
            old.is_empty(),
            "{} messages committed before the restart were redelivered, e.g. {:?}",
            old.len(),
            old.first()
        );
        for i in 0..M {
            assert_eq!(
                second.count(format!("after-{i}").as_bytes()),
                1,
                "after-{i}"
            );
        }
        assert_eq!(second.deliveries(), M as u64);
        b.shutdown().await.expect("offsets saved at shutdown");
        cluster.shutdown().await;
    });
}
