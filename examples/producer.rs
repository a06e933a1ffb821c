//! Sends messages to a running cluster, synchronously, and prints where each went.
//!
//! ```sh
//! mqnamesrv -c config/namesrv.toml &
//! mqbroker -c config/broker.toml &
//! cargo run --example producer -- -n 127.0.0.1:9876 [COUNT]
//! ```
//! The name server comes from `-n` or `NAMESRV_ADDR`, as with RocketMQ's tools.

#[path = "support/setup.rs"]
mod setup;

use actimq::{ClientConfig, ClientInstance, Message, Producer, ProducerConfig};

fn namesrv_and_rest() -> (String, Vec<String>) {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let ns = match args.iter().position(|a| a == "-n") {
        Some(i) if i + 1 < args.len() => {
            let v = args.remove(i + 1);
            args.remove(i);
            v
        }
        _ => std::env::var("NAMESRV_ADDR").unwrap_or_else(|_| "127.0.0.1:9876".into()),
    };
    (ns, args)
}

fn main() -> anyhow::Result<()> {
    setup::init_logs("warn");
    let (ns, rest) = namesrv_and_rest();
    let count: u64 = rest.first().map(|c| c.parse()).transpose()?.unwrap_or(10);
    actix_rt::System::new().block_on(async move {
        let client = ClientInstance::start(ClientConfig::new(ns))?;
        let producer = Producer::start(client, ProducerConfig::new("example-producers"));
        for i in 0..count {
            let msg = Message::new("TopicTest", format!("Hello actimq {i}"))
                .with_tags("TagA")
                .with_key(format!("order-{i}"));
            let r = producer.send(msg).await?;
            println!(
                "{:?} offset_msg_id={} queue={}:{} offset={}",
                r.status,
                r.offset_msg_id,
                r.message_queue.broker_name,
                r.message_queue.queue_id,
                r.queue_offset
            );
        }
        Ok(())
    })
}
