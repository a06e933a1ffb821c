//! Transactional messages: an embedded name server and broker (check-backs made quick: a
//! half unresolved for 1 s is checked back, looked for every 500 ms), a transaction
//! producer whose local transactions commit 50 messages, roll back 50 and leave one
//! unknown, which the broker then checks back and the listener commits; a push consumer
//! counts what arrives.
//!
//! Run it with `cargo run --example transaction`. It ends with the line
//! `committed 50 consumed 50, rolled back 50 consumed 0, checked back 1` (the counts
//! measured) and exits 0 when they are those.

#[path = "support/setup.rs"]
mod setup;

use std::any::Any;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actimq::server::LocalCluster;
use actimq::{
    ClientConfig, ClientInstance, ConsumeFromWhere, ConsumeResult, LocalTransactionState, Message,
    MessageExt, MessageListener, ProducerConfig, PushConsumer, PushConsumerConfig,
    TransactionListener, TransactionProducer,
};

const TOPIC: &str = "TxOrders";
const EACH: u64 = 50;

/// The application's local transactions: the body says how each ends; one is left
/// unknown, and the check-back commits it.
#[derive(Default)]
struct Orders {
    checked_back: AtomicU64,
}

impl TransactionListener for Orders {
    fn execute_local_transaction(
        &self,
        msg: &Message,
        _arg: &(dyn Any + Send),
    ) -> LocalTransactionState {
        match msg.body.split(|b| *b == b'-').next() {
            Some(b"commit") => LocalTransactionState::CommitMessage,
            Some(b"rollback") => LocalTransactionState::RollbackMessage,
            _ => LocalTransactionState::Unknown,
        }
    }

    fn check_local_transaction(&self, _msg: &MessageExt) -> LocalTransactionState {
        self.checked_back.fetch_add(1, Ordering::Relaxed);
        LocalTransactionState::CommitMessage
    }
}

/// Deliveries by kind of message.
#[derive(Default)]
struct Received {
    commit: AtomicU64,
    rollback: AtomicU64,
    unknown: AtomicU64,
}

fn main() -> anyhow::Result<()> {
    setup::init_logs("warn");
    let store = tempfile::tempdir()?;
    actix_rt::System::new().block_on(run(store.path().to_owned()))
}

async fn run(store_dir: std::path::PathBuf) -> anyhow::Result<()> {
    let cluster = LocalCluster::start_with(&store_dir, |broker| {
        broker.transaction_timeout = 1_000;
        broker.transaction_check_interval = 500;
    })
    .await?;
    cluster.create_topic(TOPIC, 4).await?;
    let client = ClientInstance::start(ClientConfig::new(cluster.namesrv_addr()))?;

    let received = Arc::new(Received::default());
    let r = Arc::clone(&received);
    let listener = MessageListener::from_fn(move |msgs| {
        for m in msgs {
            let counter = match m.body().split(|b| *b == b'-').next() {
                Some(b"commit") => &r.commit,
                Some(b"rollback") => &r.rollback,
                _ => &r.unknown,
            };
            counter.fetch_add(1, Ordering::Relaxed);
        }
        ConsumeResult::Success
    });
    let config = PushConsumerConfig::new("tx-orders-consumers")
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFromWhere::FirstOffset);
    let consumer = PushConsumer::start(client.clone(), config, listener).await?;

    let orders = Arc::new(Orders::default());
    let producer = TransactionProducer::start(
        client.clone(),
        ProducerConfig::new("tx-orders-producers"),
        orders.clone(),
    );
    let (mut committed, mut rolled_back) = (0u64, 0u64);
    for i in 0..EACH {
        for kind in ["commit", "rollback"] {
            let msg = Message::new(TOPIC, format!("{kind}-{i}")).with_key(format!("{kind}-{i}"));
            let sent = TransactionProducer::send_in_transaction(&producer, msg, i).await?;
            match sent.local_state {
                LocalTransactionState::CommitMessage => committed += 1,
                LocalTransactionState::RollbackMessage => rolled_back += 1,
                LocalTransactionState::Unknown => {}
            }
        }
    }
    // Left unknown: the broker checks it back after transaction_timeout. Halves are
    // checked in store order, so once it arrives every earlier half has been handled.
    TransactionProducer::send_in_transaction(&producer, Message::new(TOPIC, "unknown-0"), ())
        .await?;

    let deadline = Instant::now() + Duration::from_secs(30);
    while (received.commit.load(Ordering::Relaxed) < committed
        || received.unknown.load(Ordering::Relaxed) < 1)
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let consumed_committed = received.commit.load(Ordering::Relaxed);
    let consumed_rolled_back = received.rollback.load(Ordering::Relaxed);
    let checked_back = orders.checked_back.load(Ordering::Relaxed);
    let unknown_consumed = received.unknown.load(Ordering::Relaxed);

    consumer.shutdown().await?;
    TransactionProducer::shutdown(&producer).await;
    ClientInstance::shutdown(&client).await;
    cluster.shutdown().await;
    println!(
        "committed {committed} consumed {consumed_committed}, rolled back {rolled_back} consumed {consumed_rolled_back}, checked back {checked_back}"
    );
    anyhow::ensure!(
        consumed_committed == committed
            && consumed_rolled_back == 0
            && checked_back == 1
            && unknown_consumed == 1,
        "expected every commit consumed once, no rollback consumed, one check-back and its \
         message consumed (that one: {unknown_consumed})"
    );
    Ok(())
}
