//! An actor as a push consumer's listener, written the obvious way: its handler says
//! `type Result = ConsumeResult;` and returns the verdict, with actix taken from
//! `actimq::actix` so its version always matches the client's. Another message asks the
//! actor what it counted, as a web handler would.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use actimq::actix::prelude::*;
use actimq::{
    ConsumeFromWhere, ConsumeMessages, ConsumeResult, Message as MqMessage, MessageListener,
    Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
};
use support::{eventually, send_all, TestCluster};

/// Counts messages per tag.
#[derive(Default)]
struct TagCounter {
    counts: HashMap<String, usize>,
}

impl Actor for TagCounter {
    type Context = Context<Self>;
}

impl Handler<ConsumeMessages> for TagCounter {
    type Result = ConsumeResult;

    fn handle(&mut self, msg: ConsumeMessages, _: &mut Context<Self>) -> ConsumeResult {
        for m in msg.0 {
            *self
                .counts
                .entry(m.tags().unwrap_or("").to_owned())
                .or_default() += 1;
        }
        ConsumeResult::Success
    }
}

/// How many messages of each tag the counter has seen.
#[derive(Message)]
#[rtype(result = "HashMap<String, usize>")]
struct Counts;

impl Handler<Counts> for TagCounter {
    type Result = MessageResult<Counts>;

    fn handle(&mut self, _: Counts, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.counts.clone())
    }
}

#[test]
fn an_actor_listener_returns_consume_result_directly() {
    actix_rt::System::new().block_on(async {
        const TOPIC: &str = "Orders";
        let mut cluster = TestCluster::start(1, 1).await;
        cluster.create_topic(TOPIC, 2).await;
        let counter = TagCounter::default().start();
        let mut config = PushConsumerConfig::new("counting-group").subscribe(TOPIC, "*");
        config.consume_from_where = ConsumeFromWhere::FirstOffset;
        let consumer = PushConsumer::start(
            cluster.client(),
            config,
            MessageListener::actor(counter.clone().recipient()),
        )
        .await
        .expect("start consumer");
        let producer = Producer::start(cluster.client(), ProducerConfig::new("orders"));
        send_all(
            &producer,
            (0..30).map(|i| {
                MqMessage::new(TOPIC, format!("order-{i}")).with_tags(if i % 3 == 0 {
                    "Paid"
                } else {
                    "Created"
                })
            }),
            8,
        )
        .await;
        eventually(
            Duration::from_secs(20),
            "10 Paid and 20 Created counted",
            || {
                let counter = counter.clone();
                async move {
                    let counts = counter.send(Counts).await.unwrap_or_default();
                    counts.get("Paid") == Some(&10) && counts.get("Created") == Some(&20)
                }
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
