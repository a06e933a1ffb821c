//! The producer's send modes end to end on an in-process cluster: sync, async (callback
//! exactly once) and one-way sends all arrive; a listener's ReconsumeLater brings the
//! message back from the group's retry topic; bad sends fail with typed errors that name what is wrong; a batch lands
//! in one queue with consecutive offsets.

mod support;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actimq::{
    ClientError, ClientInstance, ConsumeFromWhere, ConsumeResult, Message, MessageListener,
    Producer, ProducerConfig, PushConsumer, PushConsumerConfig, SendResult,
};
use bytes::Bytes;
use support::{
    dead_addr, eventually, eventually_sync, max_offsets_on, send_all, Inbox, TestCluster,
};

const WAIT: Duration = Duration::from_secs(20);

type SendOutcome = Result<SendResult, ClientError>;

fn consumer_config(group: &str, topic: &str) -> PushConsumerConfig {
    let mut c = PushConsumerConfig::new(group).subscribe(topic, "*");
    c.consume_from_where = ConsumeFromWhere::FirstOffset;
    c.rebalance_interval = Duration::from_secs(1);
    c.persist_consumer_offset_interval = Duration::from_millis(500);
    c
}

/// Starts a consumer and waits until it owns every queue of `topic`.
async fn consumer_owning_all(
    cluster: &TestCluster,
    config: PushConsumerConfig,
    listener: MessageListener,
    topic: &str,
    queues: i32,
) -> PushConsumer {
    let c = PushConsumer::start(cluster.client(), config, listener)
        .await
        .expect("start consumer");
    let all = cluster.queues_of(topic, queues);
    eventually(
        WAIT,
        format!("the consumer owns every queue of {topic}"),
        || {
            let (c, all) = (c.clone(), all.clone());
            async move { c.assignment().await == all }
        },
    )
    .await;
    c
}

#[test]
fn sync_async_and_oneway_sends_all_arrive() {
    actix_rt::System::new().block_on(async {
        const TOPIC: &str = "SendModes";
        const N: usize = 300;
        let mut cluster = TestCluster::start(2, 1).await;
        cluster.create_topic(TOPIC, 2).await;
        let inbox = Inbox::keeping();
        let consumer = consumer_owning_all(
            &cluster,
            consumer_config("modes-group", TOPIC),
            inbox.listener(),
            TOPIC,
            2,
        )
        .await;
        let producer = Producer::start(cluster.client(), ProducerConfig::new("modes-producer"));

        let mut sync_ids = Vec::new();
        for i in 0..N {
            let r = producer
                .send(Message::new(TOPIC, format!("sync-{i}")))
                .await
                .unwrap_or_else(|e| panic!("sync send {i}: {e}"));
            sync_ids.push(r.unique_id);
        }

        // Callbacks, by the index of the send they belong to.
        let callbacks: Arc<Mutex<HashMap<usize, Vec<SendOutcome>>>> = Arc::default();
        for i in 0..N {
            let cb = Arc::clone(&callbacks);
            producer.send_async_with(Message::new(TOPIC, format!("async-{i}")), move |r| {
                cb.lock().unwrap().entry(i).or_default().push(r);
            });
        }

        for i in 0..N {
            producer
                .send_oneway(Message::new(TOPIC, format!("oneway-{i}")))
                .await
                .unwrap_or_else(|e| panic!("one-way send {i}: {e}"));
        }

        eventually_sync(WAIT, format!("{N} async callbacks"), || {
            callbacks
                .lock()
                .unwrap()
                .values()
                .map(Vec::len)
                .sum::<usize>()
                >= N
        })
        .await;
        eventually(
            WAIT,
            format!("{} messages stored (topic stats)", 3 * N),
            || {
                let brokers = cluster.broker_addrs();
                async move {
                    max_offsets_on(&brokers, TOPIC).await.values().sum::<i64>() == (3 * N) as i64
                }
            },
        )
        .await;
        eventually_sync(WAIT, format!("{} messages consumed", 3 * N), || {
            inbox.unique() == 3 * N
        })
        .await;
        assert_eq!(inbox.deliveries(), (3 * N) as u64, "duplicates delivered");
        for mode in ["sync", "async", "oneway"] {
            for i in 0..N {
                assert_eq!(
                    inbox.count(format!("{mode}-{i}").as_bytes()),
                    1,
                    "{mode}-{i}"
                );
            }
        }

        // Every async callback fired once, successfully, with its own message id, and
        // still only once now that everything has been consumed.
        let cbs = callbacks.lock().unwrap().clone();
        assert_eq!(cbs.len(), N);
        let mut async_ids = BTreeSet::new();
        for i in 0..N {
            let calls = &cbs[&i];
            assert_eq!(
                calls.len(),
                1,
                "callback of async-{i} fired {} times",
                calls.len()
            );
            let r = calls[0]
                .as_ref()
                .unwrap_or_else(|e| panic!("async send {i}: {e}"));
            assert!(
                async_ids.insert(r.unique_id.clone()),
                "duplicate id {}",
                r.unique_id
            );
        }
        // The ids the producer reported are the ones the consumer sees.
        let seen: BTreeSet<String> = inbox
            .messages()
            .iter()
            .filter_map(|m| m.unique_id().map(str::to_owned))
            .collect();
        assert_eq!(seen.len(), 3 * N, "every message has its own unique id");
        for id in sync_ids.iter().chain(async_ids.iter()) {
            assert!(
                seen.contains(id),
                "id {id} reported by a send was never consumed"
            );
        }

        consumer
            .shutdown()
            .await
            .expect("offsets saved at shutdown");
        cluster.shutdown().await;
    });
}

#[test]
fn reconsume_later_redelivers_from_the_retry_topic_with_reconsume_times() {
    actix_rt::System::new().block_on(async {
        const TOPIC: &str = "ReconsumeTopic";
        const N: usize = 20;
        // A first retry waits delay level 3: 300 ms here.
        let mut cluster = TestCluster::start_with(1, 1, |_, c| {
            c.message_delay_level = "100ms 200ms 300ms 400ms".into()
        })
        .await;
        cluster.create_topic(TOPIC, 2).await;

        // Every delivery: (reconsume_times, when). The first delivery of a body is refused.
        type Log = Arc<Mutex<HashMap<Bytes, Vec<(u32, Instant)>>>>;
        let log: Log = Arc::default();
        let l = Arc::clone(&log);
        let listener = MessageListener::from_fn(move |msgs| {
            let mut log = l.lock().unwrap();
            let mut result = ConsumeResult::Success;
            for m in msgs {
                let seen = log.entry(m.body().clone()).or_default();
                if seen.is_empty() {
                    result = ConsumeResult::ReconsumeLater;
                }
                seen.push((m.reconsume_times, Instant::now()));
            }
            result
        });
        let config = consumer_config("reconsume-group", TOPIC);
        let consumer = consumer_owning_all(&cluster, config, listener, TOPIC, 2).await;
        let producer = Producer::start(cluster.client(), ProducerConfig::new("reconsume-prod"));

        let delivered_twice = |prefix: &'static str| {
            let log = Arc::clone(&log);
            move || {
                let log = log.lock().unwrap();
                (0..N).all(|i| {
                    log.get(format!("{prefix}-{i}").as_bytes())
                        .is_some_and(|d| d.len() >= 2)
                })
            }
        };
        send_all(
            &producer,
            (0..N).map(|i| Message::new(TOPIC, format!("first-{i}"))),
            8,
        )
        .await;
        eventually_sync(
            WAIT,
            "every refused message delivered again",
            delivered_twice("first"),
        )
        .await;
        // A second round gives any unwanted third delivery of the first round time to show.
        send_all(
            &producer,
            (0..N).map(|i| Message::new(TOPIC, format!("second-{i}"))),
            8,
        )
        .await;
        eventually_sync(
            WAIT,
            "second round delivered again",
            delivered_twice("second"),
        )
        .await;

        let log = log.lock().unwrap().clone();
        for i in 0..N {
            let d = &log[format!("first-{i}").as_bytes()];
            let times: Vec<u32> = d.iter().map(|(t, _)| *t).collect();
            assert_eq!(
                times,
                vec![0, 1],
                "first-{i}: reconsume_times of each delivery (refused once, then accepted)"
            );
            let gap = d[1].1 - d[0].1;
            assert!(
                gap >= Duration::from_millis(300),
                "first-{i} came back after {gap:?}, before delay level 3 (300 ms)"
            );
        }
        consumer
            .shutdown()
            .await
            .expect("offsets saved at shutdown");
        cluster.shutdown().await;
    });
}

#[test]
fn producer_errors_are_typed_and_name_the_cause() {
    actix_rt::System::new().block_on(async {
        const TOPIC: &str = "ErrorTopic";
        let mut cluster = TestCluster::start(1, 1).await;
        cluster.create_topic(TOPIC, 1).await;
        let mut config = ProducerConfig::new("error-producer");
        config.max_message_size = 1024;
        let producer = Producer::start(cluster.client(), config);

        match producer.send(Message::new(TOPIC, Bytes::new())).await {
            Err(ClientError::MessageIllegal(why)) => {
                assert!(
                    why.contains(TOPIC),
                    "empty body error names the topic: {why}"
                )
            }
            other => panic!("empty body: expected MessageIllegal, got {other:?}"),
        }
        match producer.send(Message::new(TOPIC, vec![b'x'; 1025])).await {
            Err(ClientError::MessageTooLarge { size, max }) => {
                assert_eq!((size, max), (1025, 1024))
            }
            other => panic!("oversized body: expected MessageTooLarge, got {other:?}"),
        }
        match producer.send(Message::new("bad/topic", "x")).await {
            Err(ClientError::MessageIllegal(why)) => {
                assert!(why.contains("bad/topic"), "names the topic: {why}")
            }
            other => panic!("topic with '/': expected MessageIllegal, got {other:?}"),
        }
        match producer.send_batch(Vec::new()).await {
            Err(ClientError::MessageIllegal(_)) => {}
            other => panic!("empty batch: expected MessageIllegal, got {other:?}"),
        }
        // The async path reports the same error, once.
        let calls: Arc<Mutex<Vec<SendOutcome>>> = Arc::default();
        let c = Arc::clone(&calls);
        producer.send_async_with(Message::new(TOPIC, Bytes::new()), move |r| {
            c.lock().unwrap().push(r)
        });
        eventually_sync(WAIT, "the failed async send's callback", || {
            !calls.lock().unwrap().is_empty()
        })
        .await;
        assert!(matches!(
            calls.lock().unwrap()[..],
            [Err(ClientError::MessageIllegal(_))]
        ));

        // None of those reached the broker, and the producer still works.
        assert_eq!(cluster.stored_count(TOPIC).await, 0);
        producer
            .send(Message::new(TOPIC, vec![b'x'; 1024]))
            .await
            .expect("a message of exactly max_message_size is accepted");
        assert_eq!(cluster.stored_count(TOPIC).await, 1);

        // A name server address where nothing listens: the error names it.
        let dead = dead_addr();
        let lonely = Producer::start(
            ClientInstance::start(actimq::ClientConfig::new(dead.clone())).unwrap(),
            ProducerConfig::new("lonely-producer"),
        );
        let t0 = Instant::now();
        let err = lonely
            .send(Message::new(TOPIC, "hello"))
            .await
            .expect_err("no name server listens");
        assert!(
            matches!(
                err,
                ClientError::NamesrvUnreachable { .. } | ClientError::Exhausted { .. }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&dead),
            "the error names the name server {dead}: {err}"
        );
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "failing took {:?}",
            t0.elapsed()
        );
        cluster.shutdown().await;
    });
}

#[test]
fn batch_lands_in_one_queue_with_consecutive_offsets() {
    actix_rt::System::new().block_on(async {
        const TOPIC: &str = "BatchTopic";
        const QUEUES: i32 = 4;
        const BATCH: usize = 32;
        let mut cluster = TestCluster::start(1, 1).await;
        cluster.create_topic(TOPIC, QUEUES).await;
        let inbox = Inbox::keeping();
        let consumer = consumer_owning_all(
            &cluster,
            consumer_config("batch-group", TOPIC),
            inbox.listener(),
            TOPIC,
            QUEUES,
        )
        .await;
        let producer = Producer::start(cluster.client(), ProducerConfig::new("batch-producer"));
        // Some single messages first, so the batch does not start at offset 0.
        send_all(
            &producer,
            (0..7).map(|i| Message::new(TOPIC, format!("single-{i}"))),
            1,
        )
        .await;
        let before = cluster.max_offsets(TOPIC).await;

        let batch: Vec<Message> = (0..BATCH)
            .map(|i| Message::new(TOPIC, format!("batch-{i}")).with_key(format!("k{i}")))
            .collect();
        let r = producer.send_batch(batch).await.expect("batch send");
        let after = cluster.max_offsets(TOPIC).await;
        let q = &r.message_queue;
        let first = before[q] as u64;
        assert_eq!(
            r.queue_offset, first,
            "the result names the batch's first offset"
        );
        assert_eq!(
            after[q] - before[q],
            BATCH as i64,
            "the whole batch in {q:?}"
        );
        for (mq, o) in &after {
            if mq != q {
                assert_eq!(*o, before[mq], "the batch touched {mq:?}");
            }
        }
        let ids: Vec<&str> = r.offset_msg_id.split(',').collect();
        assert_eq!(
            ids.len(),
            BATCH,
            "offset_msg_id lists every message: {}",
            r.offset_msg_id
        );

        eventually_sync(WAIT, "the batch consumed", || {
            (0..BATCH).all(|i| inbox.count(format!("batch-{i}").as_bytes()) >= 1)
        })
        .await;
        for i in 0..BATCH {
            assert_eq!(inbox.count(format!("batch-{i}").as_bytes()), 1, "batch-{i}");
        }
        let got: HashMap<Bytes, (actimq::MessageQueue, u64)> = inbox
            .messages()
            .into_iter()
            .map(|m| (m.body().clone(), (m.queue.clone(), m.queue_offset)))
            .collect();
        for i in 0..BATCH {
            let (mq, offset) = &got[format!("batch-{i}").as_bytes()];
            assert_eq!(mq, q, "batch-{i} consumed from another queue");
            assert_eq!(*offset, first + i as u64, "batch-{i} offset");
        }
        // The answer's ids are the stored records' own, in the batch's order.
        let stored_ids: HashMap<Bytes, String> = inbox
            .messages()
            .into_iter()
            .map(|m| (m.body().clone(), m.offset_msg_id()))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(
                stored_ids[format!("batch-{i}").as_bytes()],
                *id,
                "batch-{i}'s id in the answer"
            );
        }
        consumer
            .shutdown()
            .await
            .expect("offsets saved at shutdown");
        cluster.shutdown().await;
    });
}
