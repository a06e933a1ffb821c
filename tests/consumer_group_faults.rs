//! Two consumer-group faults that failover leans on, with an embedded name server and
//! broker: with a tag filter, a queue whose messages are all filtered out still has its
//! offset committed while the consumer runs (a caught-up consumer shows no lag there, and a
//! restart does not read those messages again); and `consumerConnection` shows the queues
//! members hold, not a split recomputed from committed offsets.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use actimq::server::LocalCluster;
use actimq::{
    ClientConfig, ClientInstance, ConsumeFromWhere, ConsumeResult, Message, MessageListener,
    MessageQueue, Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
};

#[actix_rt::test]
async fn offsets_of_queues_with_only_filtered_messages_are_committed() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path()).await.unwrap();
    cluster.create_topic("Tags", 4).await.unwrap();
    let client = ClientInstance::start(ClientConfig::new(cluster.namesrv_addr())).unwrap();
    let producer = Producer::start(client.clone(), ProducerConfig::new("tag-producers"));
    let queues = producer.queues("Tags").await.unwrap();
    assert_eq!(queues.len(), 4);
    // Queues 0 and 1 hold only tag B; queues 2 and 3 only tag A.
    let mut ends: BTreeMap<MessageQueue, u64> = BTreeMap::new();
    for (i, q) in queues.iter().enumerate() {
        let tag = if i < 2 { "B" } else { "A" };
        for n in 0..25 {
            let mut m = Message::new("Tags", format!("{tag}-{i}-{n}"));
            m.tags = Some(tag.to_owned());
            let r = producer.send_to_queue(m, q.clone()).await.unwrap();
            ends.insert(q.clone(), r.queue_offset + 1);
        }
    }
    let mut config = PushConsumerConfig::new("tag-group").subscribe("Tags", "A");
    config.consume_from_where = ConsumeFromWhere::FirstOffset;
    config.persist_consumer_offset_interval = Duration::from_millis(500);
    // The default long poll (15 s): a queue whose messages are all filtered out must not
    // wait for the hold to end before its offset moves.
    let consumer = PushConsumer::start(
        client.clone(),
        config,
        MessageListener::from_fn(|_| ConsumeResult::Success),
    )
    .await
    .unwrap();
    // Every queue's committed offset reaches its end, filtered-out queues included, well
    // before a long poll would have ended.
    let deadline = Instant::now() + Duration::from_secs(8);
    loop {
        let committed = consumer.committed_offsets().await;
        if ends.iter().all(|(q, end)| committed.get(q) == Some(end)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "committed {committed:?}, queue ends {ends:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
    consumer.shutdown().await.unwrap();
    producer.shutdown().await;
    ClientInstance::shutdown(&client).await;
    cluster.shutdown().await;
}

/// `mqadmin consumerConnection` shows the queues members hold (reported in their
/// heartbeats), not a split recomputed from committed offsets: with nothing committed yet
/// (an empty topic, offsets persisted only once a minute) it already shows 4 + 4 of 8.
#[actix_rt::test]
async fn consumer_connection_shows_the_queues_members_hold() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path()).await.unwrap();
    cluster.create_topic("Held", 8).await.unwrap();
    let start = || async {
        let client = ClientInstance::start(ClientConfig::new(cluster.namesrv_addr())).unwrap();
        let mut config = PushConsumerConfig::new("held-group").subscribe("Held", "*");
        config.persist_consumer_offset_interval = Duration::from_secs(60);
        config.rebalance_interval = Duration::from_secs(1);
        let consumer = PushConsumer::start(
            client.clone(),
            config,
            MessageListener::from_fn(|_| ConsumeResult::Success),
        )
        .await
        .unwrap();
        (client, consumer)
    };
    let (c1, p1) = start().await;
    let (c2, p2) = start().await;
    wait_until_two_members_hold_4_each(&cluster, "held-group", "Held").await;
    for (client, consumer) in [(c1, p1), (c2, p2)] {
        let _ = consumer.shutdown().await;
        ClientInstance::shutdown(&client).await;
    }
    cluster.shutdown().await;
}

/// The same for lite-pull consumers: `consumerConnection` shows the queues each member
/// was given, before anything was committed.
#[actix_rt::test]
async fn consumer_connection_shows_the_queues_lite_pull_members_hold() {
    use actimq::{LitePullConsumer, LitePullConsumerConfig};
    let dir = tempfile::tempdir().unwrap();
    let cluster = LocalCluster::start(dir.path()).await.unwrap();
    cluster.create_topic("LiteHeld", 8).await.unwrap();
    let start = || async {
        let client = ClientInstance::start(ClientConfig::new(cluster.namesrv_addr())).unwrap();
        let mut config = LitePullConsumerConfig::new("lite-held").subscribe("LiteHeld", "*");
        config.persist_consumer_offset_interval = Duration::from_secs(60);
        config.rebalance_interval = Duration::from_secs(1);
        let consumer = LitePullConsumer::start(client.clone(), config)
            .await
            .unwrap();
        (client, consumer)
    };
    let (c1, p1) = start().await;
    let (c2, p2) = start().await;
    wait_until_two_members_hold_4_each(&cluster, "lite-held", "LiteHeld").await;
    for (client, consumer) in [(c1, p1), (c2, p2)] {
        consumer.shutdown().await;
        ClientInstance::shutdown(&client).await;
    }
    cluster.shutdown().await;
}

/// Waits until `mqadmin consumerConnection` shows two members of `group` holding 4 of the
/// 8 queues of `topic` each (a push consumer's share of its group's retry queue is shown
/// too, and not counted).
async fn wait_until_two_members_hold_4_each(cluster: &LocalCluster, group: &str, topic: &str) {
    let mut admin =
        actimq::admin::AdminClient::new(&cluster.namesrv_addr(), Duration::from_secs(5));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let members = admin.consumer_connection(group).await.unwrap_or_default();
        let held: Vec<usize> = members
            .iter()
            .map(|m| m.queues.iter().filter(|q| q.topic == topic).count())
            .collect();
        let all: std::collections::BTreeSet<_> = members
            .iter()
            .flat_map(|m| m.queues.iter().filter(|q| q.topic == topic).cloned())
            .collect();
        if held == [4, 4] && all.len() == 8 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "consumerConnection shows {members:?}"
        );
        actix_rt::time::sleep(Duration::from_millis(100)).await;
    }
}
