//! Where a new consumer group starts on a queue it has no offset for. With the default
//! `LastOffset`, a group receives every message stored after it subscribed, including in
//! queues that appear later (here: a topic created by its first send, after the consumer
//! started), and none of what was stored before (a topic with a backlog).

mod support;

use std::time::{Duration, Instant};

use actimq::{
    ConsumeFromWhere, Message, Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
};
use support::{eventually, send_all, Inbox, TestCluster};

const WAIT: Duration = Duration::from_secs(20);

fn last_offset_consumer(group: &str, topic: &str) -> PushConsumerConfig {
    let mut c = PushConsumerConfig::new(group).subscribe(topic, "*");
    assert_eq!(
        c.consume_from_where,
        ConsumeFromWhere::LastOffset,
        "the default"
    );
    c.rebalance_interval = Duration::from_secs(1);
    c
}

#[test]
fn a_group_started_before_its_topic_existed_gets_every_message_sent_after() {
    actix_rt::System::new().block_on(async {
        const TOPIC: &str = "CreatedLater";
        const SENT: usize = 30;
        let cluster = TestCluster::start(1, 1).await;
        let inbox = Inbox::new();
        let consumer = PushConsumer::start(
            cluster.client(),
            last_offset_consumer("early-group", TOPIC),
            inbox.listener(),
        )
        .await
        .expect("start consumer");

        // The topic is created by its first send (auto_create_topic_enable), after the
        // consumer subscribed; its queues appear with messages already in them.
        let producer = Producer::start(cluster.client(), ProducerConfig::new("late-producer"));
        send_all(
            &producer,
            (0..SENT).map(|i| Message::new(TOPIC, format!("m{i}"))),
            1,
        )
        .await;
        eventually(WAIT, format!("all {SENT} messages delivered"), || {
            let inbox = inbox.clone();
            async move { inbox.unique() == SENT }
        })
        .await;
        consumer
            .shutdown()
            .await
            .expect("offsets saved at shutdown");
        cluster.shutdown().await;
    });
}

#[test]
fn a_new_group_does_not_replay_what_was_stored_before_it_subscribed() {
    actix_rt::System::new().block_on(async {
        const TOPIC: &str = "WithBacklog";
        let mut cluster = TestCluster::start(1, 1).await;
        cluster.create_topic(TOPIC, 2).await;
        let producer = Producer::start(cluster.client(), ProducerConfig::new("backlog-producer"));
        send_all(
            &producer,
            (0..20).map(|i| Message::new(TOPIC, format!("old{i}"))),
            4,
        )
        .await;
        // The backlog must be older than the start margin the consumer allows for clock
        // differences (`SUBSCRIBE_CLOCK_MARGIN_MS`, 1 s).
        let sent_at = Instant::now();
        while sent_at.elapsed() < Duration::from_millis(1_200) {
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }

        let inbox = Inbox::new();
        let consumer = PushConsumer::start(
            cluster.client(),
            last_offset_consumer("new-group", TOPIC),
            inbox.listener(),
        )
        .await
        .expect("start consumer");
        eventually(WAIT, "the consumer owns both queues", || {
            let c = consumer.clone();
            async move { c.assignment().await.len() == 2 }
        })
        .await;
        send_all(
            &producer,
            (0..10).map(|i| Message::new(TOPIC, format!("new{i}"))),
            4,
        )
        .await;
        eventually(WAIT, "the 10 new messages delivered", || {
            let inbox = inbox.clone();
            async move { inbox.unique() >= 10 }
        })
        .await;
        let bodies: Vec<String> = inbox
            .messages()
            .iter()
            .map(|m| String::from_utf8_lossy(m.body()).into_owned())
            .collect();
        assert!(
            bodies.iter().all(|b| b.starts_with("new")),
            "the backlog stored before the group subscribed was replayed: {bodies:?}"
        );
        consumer
            .shutdown()
            .await
            .expect("offsets saved at shutdown");
        cluster.shutdown().await;
    });
}
