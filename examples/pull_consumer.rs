//! Reads every queue of `TopicTest` with a pull consumer, committing offsets as it goes.
//!
//! ```sh
//! cargo run --example pull_consumer -- -n 127.0.0.1:9876
//! ```

#[path = "support/setup.rs"]
mod setup;

use actimq::{ClientConfig, ClientInstance, PullConsumer, PullStatus};

fn main() -> anyhow::Result<()> {
    setup::init_logs("warn");
    let ns = setup::namesrv_addr();
    actix_rt::System::new().block_on(async move {
        let client = ClientInstance::start(ClientConfig::new(ns))?;
        let consumer = PullConsumer::new(client, "example-pull-consumers");
        for mq in consumer.fetch_queues("TopicTest").await? {
            let mut offset = consumer.fetch_offset(&mq).await?.unwrap_or(0);
            loop {
                let r = consumer.pull(&mq, "*", offset, 32).await?;
                for m in &r.messages {
                    println!(
                        "{}:{} offset {} body {}",
                        mq.broker_name,
                        mq.queue_id,
                        m.queue_offset,
                        String::from_utf8_lossy(m.body())
                    );
                }
                offset = r.next_begin_offset;
                if r.status != PullStatus::Found {
                    break;
                }
            }
            consumer.commit_offset(&mq, offset).await?;
            println!("{}:{} done at offset {offset}", mq.broker_name, mq.queue_id);
        }
        Ok(())
    })
}
