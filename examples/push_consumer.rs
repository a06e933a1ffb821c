//! Consumes `TopicTest` with a push consumer in clustering mode until Ctrl-C.
//!
//! ```sh
//! cargo run --example push_consumer -- -n 127.0.0.1:9876
//! ```
//! Start it twice to see the group share the queues; `mqadmin consumerProgress -g
//! example-consumers` shows its lag.

#[path = "support/setup.rs"]
mod setup;

use actimq::{
    ClientConfig, ClientInstance, ConsumeFromWhere, ConsumeResult, MessageListener, PushConsumer,
    PushConsumerConfig,
};

fn main() -> anyhow::Result<()> {
    setup::init_logs("warn");
    let ns = setup::namesrv_addr();
    actix_rt::System::new().block_on(async move {
        let client = ClientInstance::start(ClientConfig::new(ns))?;
        let mut config = PushConsumerConfig::new("example-consumers").subscribe("TopicTest", "*");
        config.consume_from_where = ConsumeFromWhere::FirstOffset;
        let listener = MessageListener::from_fn(|msgs| {
            for m in msgs {
                println!(
                    "queue {}:{} offset {} body {}",
                    m.queue.broker_name,
                    m.queue.queue_id,
                    m.queue_offset,
                    String::from_utf8_lossy(m.body())
                );
            }
            ConsumeResult::Success
        });
        let consumer = PushConsumer::start(client, config, listener).await?;
        println!("consuming; Ctrl-C to stop");
        let _ = tokio::signal::ctrl_c().await;
        consumer.shutdown().await?;
        Ok(())
    })
}
