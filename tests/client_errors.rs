//! The causes a send reports are typed, and their advice fits the case: with the only
//! broker of a topic stopped, a send ends in `Exhausted` whose `last` is the broker (or the
//! topic) being unavailable, never the "create the topic" advice of a topic nobody knows.
//! Tags, keys and properties are checked by the producer and the broker with one rule: a
//! separator inside one is refused, never silently cut.

mod support;

use std::time::Duration;

use actimq::admin::AdminClient;
use actimq::internals::protocol::message::SendMessageRequestHeader;
use actimq::{ClientError, Message, Producer, ProducerConfig};
use bytes::Bytes;
use support::{eventually, TestCluster};

#[test]
fn a_send_to_a_topic_whose_only_broker_is_down_names_the_broker_not_the_topic() {
    actix_rt::System::new().block_on(async {
        const TOPIC: &str = "Orders";
        let mut cluster = TestCluster::start(1, 1).await;
        cluster.create_topic(TOPIC, 2).await;
        let mut config = ProducerConfig::new("errors-producer");
        config.send_msg_timeout = Duration::from_secs(2);
        let producer = Producer::start(cluster.client(), config);
        producer
            .send(Message::new(TOPIC, "while the broker is up"))
            .await
            .expect("the broker is up");

        let broker = cluster.brokers[0].clone();
        broker.shutdown().await;
        // The broker stopped accepting and unregistered: the send below meets it down,
        // whether or not the name server has dropped its route yet.
        let err = producer
            .send(Message::new(TOPIC, "while the broker is down"))
            .await
            .expect_err("the only broker is down");
        let ClientError::Exhausted { last, attempts, .. } = &err else {
            panic!("expected Exhausted, got {err:?}");
        };
        assert!(*attempts >= 1);
        let cause = last.as_deref().expect("a cause is kept");
        assert!(
            matches!(
                cause,
                ClientError::TopicUnavailable { .. } | ClientError::BrokerUnavailable { .. }
            ),
            "the cause is typed and says the broker is unavailable: {cause:?}"
        );
        let text = err.to_string();
        assert!(
            !text.contains("create it"),
            "a known topic whose broker is down must not get the create-topic advice: {text}"
        );
        // Once the name servers have dropped the broker, the cause names the topic's
        // brokers as unreachable, still without the create-topic advice.
        eventually(
            Duration::from_secs(15),
            "a send's cause is TopicUnavailable naming broker-a",
            || {
                let producer = producer.clone();
                async move {
                    // Directly when no route is left to start from, or as the last
                    // cause after the cached route's broker failed.
                    let cause = match producer.send(Message::new(TOPIC, "again")).await {
                        Err(ClientError::Exhausted { last: Some(cause), .. }) => *cause,
                        Err(e) => e,
                        Ok(_) => return false,
                    };
                    matches!(&cause, ClientError::TopicUnavailable { brokers, .. } if brokers.contains("broker-a"))
                }
            },
        )
        .await;
    });
}

#[test]
fn tags_keys_and_properties_with_separators_are_refused_by_producer_and_broker() {
    actix_rt::System::new().block_on(async {
        const TOPIC: &str = "Checked";
        let mut cluster = TestCluster::start(1, 1).await;
        cluster.create_topic(TOPIC, 1).await;
        let producer = Producer::start(cluster.client(), ProducerConfig::new("checked-producer"));
        let refused = [
            Message::new(TOPIC, "x").with_tags("A\u{2}B"),
            Message::new(TOPIC, "x").with_tags("A\u{1}B"),
            Message::new(TOPIC, "x").with_tags("A||B"),
            Message::new(TOPIC, "x").with_key("k\u{2}"),
            Message::new(TOPIC, "x").with_key("two keys"),
            Message::new(TOPIC, "x").with_key(""),
            Message::new(TOPIC, "x").with_property("p", "v\u{2}w"),
        ];
        for m in refused {
            let what = format!("{:?} {:?} {:?}", m.tags, m.keys, m.properties);
            match producer.send(m).await {
                Err(ClientError::MessageIllegal(why)) => {
                    assert!(!why.is_empty(), "{what}");
                }
                other => panic!("{what}: expected MessageIllegal, got {other:?}"),
            }
        }
        producer
            .send(Message::new(TOPIC, "x").with_tags("TagA").with_key("k1"))
            .await
            .expect("a clean message is sent");

        // A client that skips the check: the broker refuses what the producer would have.
        let mut admin = AdminClient::new(&cluster.namesrv_addr(), Duration::from_secs(5));
        let header = SendMessageRequestHeader {
            producer_group: "raw".into(),
            topic: TOPIC.into(),
            queue_id: 0,
            born_timestamp: 1,
            properties: "TAGS\u{1}A\u{2}B\u{2}".into(),
            ..Default::default()
        };
        let err = admin
            .send(&cluster.broker_addr(0), &header, Bytes::from_static(b"raw"))
            .await
            .expect_err("the broker refuses a malformed properties string");
        assert!(err.to_string().contains("MESSAGE_ILLEGAL"), "{err}");
        assert_eq!(
            cluster.stored_count(TOPIC).await,
            1,
            "only the clean message is stored"
        );
        cluster.shutdown().await;
    });
}

#[test]
fn starting_the_client_outside_an_actix_system_is_an_error_not_a_panic() {
    let err = actimq::ClientInstance::start(actimq::ClientConfig::new("127.0.0.1:9876"))
        .expect_err("no actix system runs on this thread");
    assert_eq!(err, ClientError::NoActixSystem);
    assert!(
        err.to_string()
            .contains("actimq::actix::System::new().block_on"),
        "the error says how to run a system: {err}"
    );
}

#[test]
fn a_push_consumer_reports_offsets_it_could_not_save_at_shutdown() {
    actix_rt::System::new().block_on(async {
        use actimq::{ConsumeFromWhere, MessageListener, PushConsumer, PushConsumerConfig};
        const TOPIC: &str = "Unsaved";
        let mut cluster = TestCluster::start(1, 1).await;
        cluster.create_topic(TOPIC, 1).await;
        let producer = Producer::start(cluster.client(), ProducerConfig::new("unsaved-producer"));
        for i in 0..5 {
            producer
                .send(Message::new(TOPIC, format!("m{i}")))
                .await
                .unwrap();
        }
        let consumed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = consumed.clone();
        let mut config = PushConsumerConfig::new("unsaved-group").subscribe(TOPIC, "*");
        config.consume_from_where = ConsumeFromWhere::FirstOffset;
        // No periodic commit before the shutdown's own.
        config.persist_consumer_offset_interval = Duration::from_secs(600);
        let consumer = PushConsumer::start(
            cluster.client(),
            config,
            MessageListener::from_fn(move |msgs| {
                seen.fetch_add(msgs.len(), std::sync::atomic::Ordering::SeqCst);
                actimq::ConsumeResult::Success
            }),
        )
        .await
        .unwrap();
        eventually(Duration::from_secs(20), "5 messages consumed", || {
            let consumed = consumed.clone();
            async move { consumed.load(std::sync::atomic::Ordering::SeqCst) == 5 }
        })
        .await;
        // The broker goes away before the consumer can commit where it got to.
        cluster.brokers[0].shutdown().await;
        match consumer.shutdown().await {
            Err(ClientError::OffsetsNotSaved { group, queues }) => {
                assert_eq!(group, "unsaved-group");
                // The topic's queue, and the group's retry queue (never committed either).
                assert_eq!(queues, 2);
            }
            other => panic!("expected OffsetsNotSaved, got {other:?}"),
        }
    });
}
