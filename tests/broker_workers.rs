//! `server_worker_threads`: a broker whose connections run on worker threads serves sends,
//! pulls and a push consumer like one whose connections share its own thread. Three
//! clients make three connections, spread over two workers, and every message sent
//! through them is stored once and delivered.

mod support;

use std::time::Duration;

use actimq::{
    ConsumeFromWhere, Message, Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
};
use support::{eventually, send_all, Inbox, TestCluster};

const TOPIC: &str = "WorkerTopic";
const PER_PRODUCER: usize = 500;

#[test]
fn connections_on_worker_threads_send_and_consume_every_message() {
    actix_rt::System::new().block_on(async {
        let mut cluster = TestCluster::start_with(1, 1, |_, c| c.server_worker_threads = 2).await;
        cluster.create_topic(TOPIC, 4).await;

        let inbox = Inbox::new();
        let mut config = PushConsumerConfig::new("worker-group").subscribe(TOPIC, "*");
        config.consume_from_where = ConsumeFromWhere::FirstOffset;
        let consumer = PushConsumer::start(cluster.client(), config, inbox.listener())
            .await
            .expect("start consumer");

        // One client instance each: three connections to the broker.
        let producers: Vec<Producer> = (0..3)
            .map(|i| {
                Producer::start(
                    cluster.client(),
                    ProducerConfig::new(format!("worker-p{i}")),
                )
            })
            .collect();
        let sends = producers.iter().enumerate().map(|(p, producer)| {
            send_all(
                producer,
                (0..PER_PRODUCER).map(move |i| Message::new(TOPIC, format!("p{p}-{i}"))),
                32,
            )
        });
        let results = futures_util::future::join_all(sends).await;
        assert_eq!(
            results.iter().map(Vec::len).sum::<usize>(),
            3 * PER_PRODUCER
        );
        assert_eq!(cluster.stored_count(TOPIC).await, 3 * PER_PRODUCER as i64);

        eventually(
            Duration::from_secs(20),
            "every message delivered to the consumer",
            || {
                let inbox = inbox.clone();
                async move { inbox.unique() == 3 * PER_PRODUCER }
            },
        )
        .await;
        consumer
            .shutdown()
            .await
            .expect("offsets saved at shutdown");
        cluster.shutdown().await;
    });
}
