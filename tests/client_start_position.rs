//! Where a new consumer group starts on a queue it has no offset for. With the default
//! `LastOffset`, a group receives every message stored after it subscribed, including in
//! queues that appear later (here: a topic created by its first send, after the consumer
//! started, and queues added to a topic or a broker taking it while every member of the
//! group was down), and none of what was stored before it subscribed (a topic with a
//! backlog).

mod support;

use std::time::{Duration, Instant};

use actimq::admin::TopicSpec;
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

/// Waits until the name servers route `topic` with exactly `queues` (broker → read queues).
async fn wait_for_route(cluster: &mut TestCluster, topic: &str, queues: &[(&str, i32)]) {
    let want: Vec<(String, i32)> = queues.iter().map(|(b, n)| (b.to_string(), *n)).collect();
    let deadline = Instant::now() + WAIT;
    loop {
        let got: Vec<(String, i32)> = match cluster.admin.route(topic).await {
            Ok(route) => {
                let mut got: Vec<_> = route
                    .queue_datas
                    .iter()
                    .map(|q| (q.broker_name.clone(), q.read_queue_nums))
                    .collect();
                got.sort();
                got
            }
            Err(_) => Vec::new(),
        };
        if got == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "route of {topic}: {got:?}, want {want:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn a_restarted_group_reads_queues_that_appeared_while_it_was_down() {
    actix_rt::System::new().block_on(async {
        const TOPIC: &str = "GrewWhileDown";
        const GROUP: &str = "returning-group";
        let mut cluster = TestCluster::start(2, 1).await;
        let (a, b) = (cluster.broker_addr(0), cluster.broker_addr(1));
        cluster
            .admin
            .create_topic(&a, &TopicSpec::new(TOPIC).queues(2))
            .await
            .expect("topic on broker-a");
        wait_for_route(&mut cluster, TOPIC, &[("broker-a", 2)]).await;

        // The group subscribes, consumes, and every member stops (offsets committed).
        let inbox = Inbox::new();
        let consumer = PushConsumer::start(
            cluster.client(),
            last_offset_consumer(GROUP, TOPIC),
            inbox.listener(),
        )
        .await
        .expect("start consumer");
        eventually(WAIT, "the consumer owns both queues", || {
            let c = consumer.clone();
            async move { c.assignment().await.len() == 2 }
        })
        .await;
        let producer = Producer::start(cluster.client(), ProducerConfig::new("grow-producer"));
        send_all(
            &producer,
            (0..4).map(|i| Message::new(TOPIC, format!("before{i}"))),
            1,
        )
        .await;
        eventually(WAIT, "the first 4 delivered", || {
            let inbox = inbox.clone();
            async move { inbox.unique() == 4 }
        })
        .await;
        consumer.shutdown().await.expect("offsets saved");

        // While no member runs, the topic grows: two more queues on broker-a, and a broker
        // that never saw the group takes the topic too. Messages land in every queue.
        cluster
            .admin
            .create_topic(&a, &TopicSpec::new(TOPIC).queues(4))
            .await
            .expect("more queues on broker-a");
        cluster
            .admin
            .create_topic(&b, &TopicSpec::new(TOPIC).queues(2))
            .await
            .expect("topic on broker-b");
        wait_for_route(&mut cluster, TOPIC, &[("broker-a", 4), ("broker-b", 2)]).await;
        let grown = Producer::start(cluster.client(), ProducerConfig::new("grown-producer"));
        let results = send_all(
            &grown,
            (0..36).map(|i| Message::new(TOPIC, format!("while-down{i}"))),
            1,
        )
        .await;
        let new_queues: std::collections::BTreeSet<_> = results
            .iter()
            .map(|r| r.message_queue.clone())
            .filter(|q| q.broker_name == "broker-b" || q.queue_id >= 2)
            .collect();
        assert_eq!(new_queues.len(), 4, "every new queue holds messages");
        // The restart must come later than the clock margin a start allows (1 s), or the
        // margin alone would cover these messages.
        let sent_at = Instant::now();
        while sent_at.elapsed() < Duration::from_millis(1_200) {
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }

        // A member comes back: the new queues have no offset, and the group subscribed
        // before their messages were stored, so it gets all of them.
        let consumer = PushConsumer::start(
            cluster.client(),
            last_offset_consumer(GROUP, TOPIC),
            inbox.listener(),
        )
        .await
        .expect("restart consumer");
        eventually(WAIT, "all 40 messages delivered", || {
            let inbox = inbox.clone();
            async move { inbox.unique() == 40 }
        })
        .await;
        consumer.shutdown().await.expect("offsets saved");
        cluster.shutdown().await;
    });
}
