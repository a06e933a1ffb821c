//! Broadcasting: two consumers of one group both receive every message (offsets are kept
//! on each client, not on the broker).
//!
//! ```sh
//! cargo run --example broadcast -- -n 127.0.0.1:9876
//! ```

#[path = "support/setup.rs"]
mod setup;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actimq::{
    ClientConfig, ClientInstance, ConsumeFromWhere, ConsumeResult, Message, MessageListener,
    MessageModel, Producer, ProducerConfig, PushConsumer, PushConsumerConfig,
};

fn main() -> anyhow::Result<()> {
    setup::init_logs("warn");
    let ns = setup::namesrv_addr();
    actix_rt::System::new().block_on(async move {
        let mut consumers = Vec::new();
        let mut counts = Vec::new();
        for i in 0..2 {
            let client = ClientInstance::start(ClientConfig::new(ns.clone()))?;
            let count = Arc::new(AtomicUsize::new(0));
            let c = Arc::clone(&count);
            let mut config =
                PushConsumerConfig::new("example-broadcast").subscribe("BroadcastTopic", "*");
            config.message_model = MessageModel::Broadcasting;
            // Broadcasting offsets live on the client: each consumer keeps its own file.
            config.offset_store_dir =
                std::env::temp_dir().join(format!("actimq-broadcast-example-{i}"));
            config.consume_from_where = ConsumeFromWhere::FirstOffset;
            let listener = MessageListener::from_fn(move |msgs| {
                for m in msgs {
                    println!("consumer {i} got {}", String::from_utf8_lossy(m.body()));
                }
                c.fetch_add(msgs.len(), Ordering::Relaxed);
                ConsumeResult::Success
            });
            consumers.push(PushConsumer::start(client, config, listener).await?);
            counts.push(count);
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let producer = Producer::start(
            ClientInstance::start(ClientConfig::new(ns))?,
            ProducerConfig::new("example-broadcast-producers"),
        );
        for i in 0..10 {
            producer
                .send(Message::new("BroadcastTopic", format!("news {i}")))
                .await?;
        }
        for _ in 0..100 {
            if counts.iter().all(|c| c.load(Ordering::Relaxed) >= 10) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for c in &consumers {
            c.shutdown().await?;
        }
        println!(
            "received: {:?}",
            counts
                .iter()
                .map(|c| c.load(Ordering::Relaxed))
                .collect::<Vec<_>>()
        );
        Ok(())
    })
}
