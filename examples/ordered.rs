//! Ordered messages: each order's steps share a sharding key, so they land in one queue and
//! an orderly consumer sees them in the order they were sent.
//!
//! ```sh
//! cargo run --example ordered -- -n 127.0.0.1:9876
//! ```

#[path = "support/setup.rs"]
mod setup;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actimq::{
    ClientConfig, ClientInstance, ConsumeFromWhere, ConsumeResult, Message, MessageListener,
    Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
};

const STEPS: [&str; 3] = ["created", "paid", "shipped"];

fn main() -> anyhow::Result<()> {
    setup::init_logs("warn");
    let ns = setup::namesrv_addr();
    actix_rt::System::new().block_on(async move {
        let client = ClientInstance::start(ClientConfig::new(ns))?;
        let seen = Arc::new(AtomicUsize::new(0));
        let s = Arc::clone(&seen);
        let mut config =
            PushConsumerConfig::new("example-ordered-consumers").subscribe("OrderedTopic", "*");
        config.orderly = true;
        config.consume_from_where = ConsumeFromWhere::FirstOffset;
        let consumer = PushConsumer::start(
            client.clone(),
            config,
            MessageListener::from_fn(move |msgs| {
                for m in msgs {
                    println!(
                        "queue {} {}",
                        m.queue.queue_id,
                        String::from_utf8_lossy(m.body())
                    );
                    s.fetch_add(1, Ordering::Relaxed);
                }
                ConsumeResult::Success
            }),
        )
        .await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let producer = Producer::start(client, ProducerConfig::new("example-ordered-producers"));
        for order in 0..5 {
            for step in STEPS {
                let msg = Message::new("OrderedTopic", format!("order {order}: {step}"));
                producer.send_orderly(msg, format!("order-{order}")).await?;
            }
        }
        let want = 5 * STEPS.len();
        for _ in 0..100 {
            if seen.load(Ordering::Relaxed) >= want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        consumer.shutdown().await?;
        println!("received {} of {want}", seen.load(Ordering::Relaxed));
        Ok(())
    })
}
