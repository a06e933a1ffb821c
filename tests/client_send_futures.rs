//! `Producer::send_async` returns a future (`SendHandle`): awaited, it gives each send's
//! result; dropped, the send still happens. `send_with_timeout` gives one send its own
//! time budget.

mod support;

use std::time::Duration;

use actimq::{ClientError, Message, Producer, ProducerConfig, SendStatus};
use support::{eventually, max_offsets_on, TestCluster};

#[test]
fn send_async_handles_resolve_to_results_and_dropping_one_does_not_cancel_it() {
    actix_rt::System::new().block_on(async {
        const TOPIC: &str = "Futures";
        let mut cluster = TestCluster::start(1, 1).await;
        cluster.create_topic(TOPIC, 4).await;
        let producer = Producer::start(cluster.client(), ProducerConfig::new("futures"));

        let handles: Vec<_> = (0..100)
            .map(|i| producer.send_async(Message::new(TOPIC, format!("m{i}"))))
            .collect();
        let results = futures_util::future::join_all(handles).await;
        assert_eq!(results.len(), 100);
        for r in &results {
            let r = r.as_ref().expect("every send stored");
            assert_eq!(r.status, SendStatus::SendOk);
        }
        assert_eq!(cluster.stored_count(TOPIC).await, 100);

        // Dropped at once: the send goes on by itself.
        drop(producer.send_async(Message::new(TOPIC, "dropped handle")));
        let brokers = cluster.broker_addrs();
        eventually(Duration::from_secs(10), "the 101st message stored", || {
            let brokers = brokers.clone();
            async move { max_offsets_on(&brokers, TOPIC).await.values().sum::<i64>() == 101 }
        })
        .await;

        // A budget spent before the first attempt: the send reports it, typed.
        match producer
            .send_with_timeout(Message::new(TOPIC, "too late"), Duration::ZERO)
            .await
        {
            Err(ClientError::Exhausted { last: None, .. }) => {}
            other => panic!("expected Exhausted with no attempt, got {other:?}"),
        }
        producer
            .send_with_timeout(Message::new(TOPIC, "in time"), Duration::from_secs(5))
            .await
            .expect("a send within its own budget");
        cluster.shutdown().await;
    });
}
