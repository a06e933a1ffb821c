//! Pull consumers on an in-process cluster: the plain `PullConsumer` (queues, pull, tag
//! filter, offsets) and the lite pull consumer, whose `poll()` gets its queues by rebalance
//! and commits what it returned.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use actimq::{
    ConsumeFromWhere, LitePullConsumer, LitePullConsumerConfig, Message, Producer, ProducerConfig,
    PullConsumer, PullStatus,
};
use support::{send_all, TestCluster};

#[test]
fn plain_pull_reads_filters_and_commits() {
    actix_rt::System::new().block_on(async {
        let mut cluster = TestCluster::start(1, 1).await;
        cluster.create_topic("Pulled", 2).await;
        let producer = Producer::start(cluster.client(), ProducerConfig::new("pull-producers"));
        let msgs = (0..60).map(|i| {
            Message::new("Pulled", format!("m{i}")).with_tags(if i % 3 == 0 {
                "TagA"
            } else {
                "TagB"
            })
        });
        send_all(&producer, msgs, 8).await;

        let consumer = PullConsumer::new(cluster.client(), "pull-group");
        let queues = consumer.fetch_queues("Pulled").await.unwrap();
        assert_eq!(queues.len(), 2);
        let (mut all, mut tag_a) = (0, 0);
        for mq in &queues {
            assert_eq!(
                consumer.fetch_offset(mq).await.unwrap(),
                None,
                "never committed"
            );
            let mut offset = 0;
            loop {
                let r = consumer.pull(mq, "*", offset, 7).await.unwrap();
                if r.status != PullStatus::Found {
                    assert_eq!(r.status, PullStatus::NoNewMessage);
                    break;
                }
                assert!(r.messages.len() <= 7);
                all += r.messages.len();
                offset = r.next_begin_offset;
            }
            consumer.commit_offset(mq, offset).await.unwrap();
            assert_eq!(consumer.fetch_offset(mq).await.unwrap(), Some(offset));
            let r = consumer.pull(mq, "TagA", 0, 1000).await.unwrap();
            assert!(r.messages.iter().all(|m| m.tags() == Some("TagA")));
            tag_a += r.messages.len();
            let past = consumer.pull(mq, "*", offset + 100, 1).await.unwrap();
            assert_eq!(past.status, PullStatus::OffsetIllegal);
            assert_eq!(
                past.next_begin_offset, offset,
                "told where the queue really ends"
            );
        }
        assert_eq!(all, 60);
        assert_eq!(tag_a, 20);
    });
}

#[test]
fn lite_pull_consumers_share_queues_and_get_every_message_once() {
    actix_rt::System::new().block_on(async {
        let mut cluster = TestCluster::start(1, 1).await;
        cluster.create_topic("Lite", 4).await;
        let config = || {
            let mut c = LitePullConsumerConfig::new("lite-group").subscribe("Lite", "*");
            c.consume_from_where = ConsumeFromWhere::FirstOffset;
            c.rebalance_interval = Duration::from_secs(1);
            c.persist_consumer_offset_interval = Duration::from_millis(200);
            c
        };
        let a = LitePullConsumer::start(cluster.client(), config())
            .await
            .unwrap();
        let b = LitePullConsumer::start(cluster.client(), config())
            .await
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (qa, qb) = (a.assignment().await, b.assignment().await);
            if qa.len() == 2 && qb.len() == 2 && qa.iter().all(|q| !qb.contains(q)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "lite consumers did not split the queues: {qa:?} {qb:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let producer = Producer::start(cluster.client(), ProducerConfig::new("lite-producers"));
        send_all(
            &producer,
            (0..400).map(|i| Message::new("Lite", format!("l{i}"))),
            16,
        )
        .await;

        let mut seen = BTreeSet::new();
        let mut per_member = [0usize; 2];
        let deadline = Instant::now() + Duration::from_secs(20);
        while seen.len() < 400 {
            assert!(
                Instant::now() < deadline,
                "only {} of 400 polled",
                seen.len()
            );
            for (i, c) in [&a, &b].into_iter().enumerate() {
                for m in c.poll(Duration::from_millis(100)).await.unwrap() {
                    assert!(
                        seen.insert(m.body().clone()),
                        "polled twice: {:?}",
                        m.body()
                    );
                    per_member[i] += 1;
                }
            }
        }
        assert!(
            per_member.iter().all(|n| *n > 0),
            "both members polled: {per_member:?}"
        );
        // What was returned is committed: a new member of the group starts after it.
        a.shutdown().await;
        b.shutdown().await;
        let c = LitePullConsumer::start(cluster.client(), config())
            .await
            .unwrap();
        let mut again = 0;
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            again += c.poll(Duration::from_millis(100)).await.unwrap().len();
        }
        assert_eq!(
            again, 0,
            "a restarted group polled {again} messages it had already returned"
        );
    });
}
