//! Transactional messages against the real binaries (`mqnamesrv`, `mqbroker` with
//! `transaction_timeout = 1000`, `transaction_check_interval = 500`):
//!
//! 1. a committed message is consumed exactly once, and a rolled-back one never (checked
//!    once a later half, left unknown, has been checked back: the check-back walks halves
//!    in order, so everything before it was handled, and no check-back was asked for them);
//! 2. a producer that shuts down with its half unresolved: the broker asks another live
//!    producer of the group (CHECK_TRANSACTION_STATE), which commits; consumed once;
//! 3. a half is invisible to a consumer running throughout, across two check-backs that
//!    answer "unknown", until a check-back commits it; a pull of the half topic is refused;
//! 4. after a `kill -9` and a restart of the broker, an unresolved half is checked back
//!    again (the progress is in the commit log and the system group's offsets), and a
//!    committed one is not;
//! 5. a half still unknown after `transaction_check_max` check-backs is given up: no more
//!    checks, a warning naming it, never delivered.

mod common;

use std::any::Any;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actimq::actix::Addr;
use actimq::admin::AdminClient;
use actimq::internals::protocol::message::PullMessageRequestHeader;
use actimq::internals::protocol::{RequestCode, ResponseCode};
use actimq::{
    ClientConfig, ClientInstance, ConsumeFromWhere, LocalTransactionState, Message, MessageExt,
    Producer, ProducerConfig, PushConsumer, PushConsumerConfig, TransactionListener,
    TransactionProducer,
};
use bytes::Bytes;
use common::process::{broker, broker_config, create_topic_on, namesrv, restart_broker_on, Proc};

const TOPIC: &str = "TxTopic";
const TX_GROUP: &str = "tx-producers";

type Seen = common::BodyCounts;

/// A listener whose answers the test sets: `execute` by the body's prefix, `check` from a
/// switch; it records the bodies it was asked to check.
struct Scripted {
    /// Checks answer commit once this is set, unknown before.
    commit_on_check: AtomicBool,
    checked: Mutex<Vec<String>>,
}

impl Scripted {
    fn new(commit_on_check: bool) -> Arc<Scripted> {
        Arc::new(Scripted {
            commit_on_check: AtomicBool::new(commit_on_check),
            checked: Mutex::new(Vec::new()),
        })
    }

    fn checked(&self, body: &str) -> usize {
        self.checked
            .lock()
            .unwrap()
            .iter()
            .filter(|b| *b == body)
            .count()
    }
}

impl TransactionListener for Scripted {
    fn execute_local_transaction(
        &self,
        msg: &Message,
        _arg: &(dyn Any + Send),
    ) -> LocalTransactionState {
        let body = String::from_utf8_lossy(&msg.body);
        if body.starts_with("commit") {
            LocalTransactionState::CommitMessage
        } else if body.starts_with("rollback") {
            LocalTransactionState::RollbackMessage
        } else {
            LocalTransactionState::Unknown
        }
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        assert_eq!(msg.topic(), TOPIC, "a check shows the real topic");
        self.checked
            .lock()
            .unwrap()
            .push(String::from_utf8_lossy(msg.body()).into_owned());
        if self.commit_on_check.load(Ordering::SeqCst) {
            LocalTransactionState::CommitMessage
        } else {
            LocalTransactionState::Unknown
        }
    }
}

/// The config of a broker with quick check-backs.
fn tx_broker_config(dir: &std::path::Path) -> std::path::PathBuf {
    broker_config(
        dir,
        "broker-tx",
        "transaction_timeout = 1000\ntransaction_check_interval = 500",
    )
}

/// A name server and a broker with quick check-backs, and the topic.
fn cluster(dir: &std::path::Path) -> (Proc, Proc) {
    let ns = namesrv(dir, 3_000);
    let b = broker(&tx_broker_config(dir), &ns.addr);
    create_topic_on(&ns.addr, &b.addr, TOPIC, 2);
    (ns, b)
}

/// A push consumer of the topic counting bodies.
async fn consumer(client: &Addr<ClientInstance>, group: &str) -> (PushConsumer, Seen) {
    let (listener, seen) = common::counting_listener();
    let config = PushConsumerConfig::new(group)
        .subscribe(TOPIC, "*")
        .consume_from(ConsumeFromWhere::FirstOffset);
    let consumer = PushConsumer::start(client.clone(), config, listener)
        .await
        .unwrap();
    (consumer, seen)
}

/// Waits (without blocking the actors on this thread) until `pred` holds.
async fn wait_until(what: &str, mut pred: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !pred() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
}

fn count(seen: &Seen, body: &str) -> u32 {
    seen.lock().unwrap().get(body).copied().unwrap_or(0)
}

async fn send(producer: &Addr<TransactionProducer>, body: &str) -> LocalTransactionState {
    TransactionProducer::send_in_transaction(producer, Message::new(TOPIC, body.to_owned()), ())
        .await
        .unwrap_or_else(|e| panic!("send of {body}: {e}"))
        .local_state
}

#[test]
fn a_commit_is_consumed_once_and_a_rollback_never() {
    let dir = tempfile::tempdir().unwrap();
    let (ns, _b) = cluster(dir.path());
    actix_rt::System::new().block_on(async move {
        let client = ClientInstance::start(ClientConfig::new(ns.addr.clone())).unwrap();
        let (consumer, seen) = consumer(&client, "tx-consumers-1").await;
        let listener = Scripted::new(true);
        let producer = TransactionProducer::start(
            client.clone(),
            ProducerConfig::new(TX_GROUP),
            listener.clone(),
        );
        assert_eq!(
            send(&producer, "commit-1").await,
            LocalTransactionState::CommitMessage
        );
        assert_eq!(
            send(&producer, "rollback-1").await,
            LocalTransactionState::RollbackMessage
        );
        assert_eq!(
            send(&producer, "commit-2").await,
            LocalTransactionState::CommitMessage
        );
        // Left unknown: its check-back (halves are checked in order) shows every earlier
        // half was handled by then.
        assert_eq!(
            send(&producer, "probe").await,
            LocalTransactionState::Unknown
        );
        wait_until("the probe checked back and consumed", || {
            count(&seen, "probe") == 1
        })
        .await;
        assert_eq!(count(&seen, "commit-1"), 1, "{:?}", seen.lock().unwrap());
        assert_eq!(count(&seen, "commit-2"), 1, "{:?}", seen.lock().unwrap());
        assert_eq!(count(&seen, "rollback-1"), 0, "{:?}", seen.lock().unwrap());
        assert_eq!(
            *listener.checked.lock().unwrap(),
            vec!["probe".to_owned()],
            "only the unresolved half is checked back"
        );
        consumer.shutdown().await.unwrap();
        TransactionProducer::shutdown(&producer).await;
        ClientInstance::shutdown(&client).await;
    });
}

#[test]
fn a_dead_producers_half_is_checked_back_with_a_live_one() {
    let dir = tempfile::tempdir().unwrap();
    let (ns, _b) = cluster(dir.path());
    actix_rt::System::new().block_on(async move {
        let consuming = ClientInstance::start(ClientConfig::new(ns.addr.clone())).unwrap();
        let (consumer, seen) = consumer(&consuming, "tx-consumers-2").await;

        // The survivor: one transaction, so that its client heartbeats the broker.
        let client_b = ClientInstance::start(ClientConfig::new(ns.addr.clone())).unwrap();
        let survivor = Scripted::new(true);
        let producer_b = TransactionProducer::start(
            client_b.clone(),
            ProducerConfig::new(TX_GROUP),
            survivor.clone(),
        );
        send(&producer_b, "commit-warmup").await;

        // The one that dies with its half unresolved.
        let client_a = ClientInstance::start(ClientConfig::new(ns.addr.clone())).unwrap();
        let dying = Scripted::new(true);
        let producer_a = TransactionProducer::start(
            client_a.clone(),
            ProducerConfig::new(TX_GROUP),
            dying.clone(),
        );
        assert_eq!(
            send(&producer_a, "orphan").await,
            LocalTransactionState::Unknown
        );
        TransactionProducer::shutdown(&producer_a).await;
        ClientInstance::shutdown(&client_a).await;

        wait_until("the orphan committed by the survivor and consumed", || {
            count(&seen, "orphan") >= 1
        })
        .await;
        assert_eq!(survivor.checked("orphan"), 1);
        assert!(dying.checked.lock().unwrap().is_empty());
        // A later committed message consumed: the orphan was not delivered twice meanwhile.
        send(&producer_b, "commit-after").await;
        wait_until("the later message", || count(&seen, "commit-after") == 1).await;
        assert_eq!(count(&seen, "orphan"), 1, "{:?}", seen.lock().unwrap());
        assert_eq!(count(&seen, "commit-warmup"), 1);

        consumer.shutdown().await.unwrap();
        TransactionProducer::shutdown(&producer_b).await;
        ClientInstance::shutdown(&client_b).await;
        ClientInstance::shutdown(&consuming).await;
    });
}

#[test]
fn a_half_message_is_invisible_until_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (ns, b) = cluster(dir.path());
    actix_rt::System::new().block_on(async move {
        let client = ClientInstance::start(ClientConfig::new(ns.addr.clone())).unwrap();
        let (consumer, seen) = consumer(&client, "tx-consumers-3").await;
        let listener = Scripted::new(false);
        let producer = TransactionProducer::start(
            client.clone(),
            ProducerConfig::new(TX_GROUP),
            listener.clone(),
        );
        assert_eq!(
            send(&producer, "held").await,
            LocalTransactionState::Unknown
        );
        // A plain message sent after it arrives: the consumer is live and reading.
        let plain = Producer::start(client.clone(), ProducerConfig::new("plain-producers"));
        plain.send(Message::new(TOPIC, "marker")).await.unwrap();
        wait_until("the marker", || count(&seen, "marker") == 1).await;
        // Asked twice, answered "unknown" twice: still a half, still unseen.
        wait_until("two check-backs of the half", || {
            listener.checked("held") >= 2
        })
        .await;
        assert_eq!(count(&seen, "held"), 0, "a half message was delivered");

        // The half topic itself cannot be read.
        let mut admin = AdminClient::new(&ns.addr, Duration::from_secs(3));
        let header = PullMessageRequestHeader {
            consumer_group: "snoopers".into(),
            topic: "RMQ_SYS_TRANS_HALF_TOPIC".into(),
            queue_id: 0,
            queue_offset: 0,
            max_msg_nums: 32,
            ..Default::default()
        };
        let answer = admin
            .call(&b.addr, RequestCode::PullMessage, &header, Bytes::new())
            .await
            .unwrap();
        assert_eq!(
            answer.response_code(),
            Some(ResponseCode::NoPermission),
            "{:?}",
            answer.remark
        );
        assert!(
            answer
                .remark
                .as_deref()
                .unwrap_or("")
                .contains("system topic"),
            "{:?}",
            answer.remark
        );

        listener.commit_on_check.store(true, Ordering::SeqCst);
        wait_until("the half committed by a check-back", || {
            count(&seen, "held") == 1
        })
        .await;
        plain.send(Message::new(TOPIC, "marker-2")).await.unwrap();
        wait_until("the second marker", || count(&seen, "marker-2") == 1).await;
        assert_eq!(count(&seen, "held"), 1, "{:?}", seen.lock().unwrap());

        consumer.shutdown().await.unwrap();
        plain.shutdown().await;
        TransactionProducer::shutdown(&producer).await;
        ClientInstance::shutdown(&client).await;
    });
}

#[test]
fn an_unresolved_half_is_checked_back_after_a_kill_9_and_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (ns, mut b) = cluster(dir.path());
    let config = tx_broker_config(dir.path());
    let ns_addr = ns.addr.clone();
    actix_rt::System::new().block_on(async move {
        let client = ClientInstance::start(ClientConfig::new(ns_addr.clone())).unwrap();
        let (consumer, seen) = consumer(&client, "tx-consumers-4").await;
        let listener = Scripted::new(false);
        let producer = TransactionProducer::start(
            client.clone(),
            ProducerConfig::new(TX_GROUP),
            listener.clone(),
        );
        send(&producer, "commit-before").await;
        send(&producer, "held").await;
        // Checked once (answered unknown): the check progress past "commit-before" is saved.
        wait_until("a check-back of the half", || listener.checked("held") >= 1).await;

        // Same port, as a real broker restarts: the client's link finds it again.
        let b = tokio::task::spawn_blocking(move || {
            b.kill9();
            restart_broker_on(&config, &ns_addr, &b.addr)
        })
        .await
        .unwrap();
        listener.commit_on_check.store(true, Ordering::SeqCst);
        wait_until(
            "the half committed by a check-back after the restart",
            || count(&seen, "held") >= 1,
        )
        .await;
        assert_eq!(
            listener.checked("commit-before"),
            0,
            "a committed half was checked back after the restart"
        );
        assert!(count(&seen, "commit-before") >= 1);

        consumer.shutdown().await.unwrap();
        TransactionProducer::shutdown(&producer).await;
        ClientInstance::shutdown(&client).await;
        drop(b);
    });
}

#[test]
fn a_half_unknown_after_check_max_checks_is_given_up() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 3_000);
    let b = broker(
        &broker_config(
            dir.path(),
            "broker-tx-max",
            "transaction_timeout = 1000\ntransaction_check_interval = 300\ntransaction_check_max = 2",
        ),
        &ns.addr,
    );
    create_topic_on(&ns.addr, &b.addr, TOPIC, 2);
    actix_rt::System::new().block_on(async move {
        let client = ClientInstance::start(ClientConfig::new(ns.addr.clone())).unwrap();
        let (consumer, seen) = consumer(&client, "tx-consumers-5").await;
        let listener = Scripted::new(false);
        let producer = TransactionProducer::start(
            client.clone(),
            ProducerConfig::new(TX_GROUP),
            listener.clone(),
        );
        send(&producer, "hopeless").await;
        wait_until("the broker giving the half up", || {
            b.log_text()
                .contains("given up, moved to TRANS_CHECK_MAX_TIME_TOPIC")
        })
        .await;
        assert_eq!(listener.checked("hopeless"), 2);
        // Committing from now on changes nothing: nobody is asked any more.
        listener.commit_on_check.store(true, Ordering::SeqCst);
        send(&producer, "commit-later").await;
        wait_until("the later message", || count(&seen, "commit-later") == 1).await;
        assert_eq!(listener.checked("hopeless"), 2);
        assert_eq!(count(&seen, "hopeless"), 0);

        consumer.shutdown().await.unwrap();
        TransactionProducer::shutdown(&producer).await;
        ClientInstance::shutdown(&client).await;
    });
}
