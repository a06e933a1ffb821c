//! A slow disk stalls only the request waiting for it: while one disk operation the broker
//! moved off its event loop is held for 2 s on purpose (the topic-table write of an
//! `updateTopic`; the folder and file creation of a new queue's first send), requests the
//! broker serves itself (a consumer heartbeat, a pull on another topic, GET_MAX_OFFSET) are
//! answered before the hold ends. The assertions are about order, not time: each answer
//! must arrive while the hold is still on and the held request still unanswered.
//!
//! The hold is `actimq::internals::common::fs::disk_faults`, a test hook that sleeps on the thread doing
//! the operation. Were that thread the broker's event loop, nothing else would be answered
//! until it woke.

mod support;

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use actimq::internals::actors::remote_link::{self, LinkConfig, RemoteLink};
use actimq::internals::common::fs::disk_faults;
use actimq::internals::protocol::group::{ConsumerData, HeartbeatData, SubscriptionData};
use actimq::internals::protocol::message::{
    GetMaxOffsetRequestHeader, PullMessageRequestHeader, SendMessageRequestHeader,
};
use actimq::internals::protocol::topic::{CreateTopicRequestHeader, PERM_READ_WRITE};
use actimq::internals::protocol::{encode_body, Frame, NoHeader, RequestCode, ResponseCode};
use actix::Addr;
use bytes::Bytes;
use support::{eventually, TestCluster};

const HOLD: Duration = Duration::from_secs(2);
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

struct Broker {
    addr: String,
    link: Addr<RemoteLink>,
}

impl Broker {
    fn new(addr: String) -> Self {
        let link = RemoteLink::start(addr.clone(), LinkConfig::default(), None);
        Broker { addr, link }
    }

    async fn call<H: serde::Serialize>(&self, code: RequestCode, header: &H, body: Bytes) -> Frame {
        let frame = Frame::request(code, 0, header, body).unwrap();
        remote_link::call(&self.link, &self.addr, frame, CALL_TIMEOUT)
            .await
            .unwrap_or_else(|e| panic!("{code:?} to {}: {e}", self.addr))
    }

    async fn send(&self, topic: &str, body: &'static [u8]) -> Frame {
        let header = SendMessageRequestHeader {
            producer_group: "slow-disk-producer".into(),
            topic: topic.into(),
            default_topic: "TBW102".into(),
            default_topic_queue_nums: 1,
            queue_id: 0,
            born_timestamp: 1,
            ..Default::default()
        };
        self.call(RequestCode::SendMessage, &header, Bytes::from_static(body))
            .await
    }

    /// The three requests the broker answers itself, each checked against the hold.
    async fn served_during_hold(&self, held_request_done: &Cell<bool>, holds_ended_before: u64) {
        let heartbeat = encode_body(&HeartbeatData {
            client_id: "slow-disk-consumer".into(),
            consumer_data_set: vec![ConsumerData {
                group_name: "SlowDiskGroup".into(),
                subscription_data_set: vec![SubscriptionData {
                    topic: "Existing".into(),
                    sub_string: "*".into(),
                    sub_version: 1,
                    expression_type: "TAG".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        })
        .unwrap();
        let answers = [
            (
                "heartbeat",
                self.call(RequestCode::HeartBeat, &NoHeader {}, heartbeat)
                    .await,
            ),
            (
                "pull on another topic",
                self.call(
                    RequestCode::PullMessage,
                    &PullMessageRequestHeader {
                        consumer_group: "SlowDiskGroup".into(),
                        topic: "Existing".into(),
                        queue_id: 0,
                        queue_offset: 0,
                        max_msg_nums: 32,
                        ..Default::default()
                    },
                    Bytes::new(),
                )
                .await,
            ),
            (
                "GET_MAX_OFFSET",
                self.call(
                    RequestCode::GetMaxOffset,
                    &GetMaxOffsetRequestHeader {
                        topic: "Existing".into(),
                        queue_id: 0,
                        ..Default::default()
                    },
                    Bytes::new(),
                )
                .await,
            ),
        ];
        for (what, answer) in answers {
            assert_eq!(
                answer.response_code(),
                Some(ResponseCode::Success),
                "{what}: {answer:?}"
            );
            assert!(
                !held_request_done.get(),
                "{what} was answered only after the held request: the disk work ran on the event loop"
            );
            assert_eq!(
                disk_faults::holds_ended(),
                holds_ended_before,
                "{what} was answered only after the hold ended"
            );
        }
    }
}

/// Waits until the hold armed last has begun on some thread.
async fn hold_begun(after: u64) {
    eventually(
        Duration::from_secs(10),
        "the held disk operation begins",
        || async move { disk_faults::holds_begun() > after },
    )
    .await;
}

/// A cluster of one broker with topic `Existing` holding one message in queue 0.
async fn cluster_with_existing_topic() -> (TestCluster, Broker) {
    let mut cluster = TestCluster::start(1, 1).await;
    cluster.create_topic("Existing", 1).await;
    let broker = Broker::new(cluster.broker_addr(0));
    let sent = broker.send("Existing", b"already here").await;
    assert_eq!(
        sent.response_code(),
        Some(ResponseCode::Success),
        "{sent:?}"
    );
    (cluster, broker)
}

/// Holds the topic-table write of an `updateTopic`.
async fn held_topic_table_write(broker: &Broker) {
    {
        let begun = disk_faults::holds_begun();
        let ended = disk_faults::holds_ended();
        disk_faults::hold_next("topics.toml", HOLD);

        let done = Rc::new(Cell::new(false));
        let update = {
            let (done, link, addr) = (Rc::clone(&done), broker.link.clone(), broker.addr.clone());
            actix_rt::spawn(async move {
                let header = CreateTopicRequestHeader {
                    topic: "HeldTopic".into(),
                    read_queue_nums: 2,
                    write_queue_nums: 2,
                    perm: PERM_READ_WRITE,
                    ..Default::default()
                };
                let frame =
                    Frame::request(RequestCode::UpdateAndCreateTopic, 0, &header, Bytes::new())
                        .unwrap();
                let answer = remote_link::call(&link, &addr, frame, CALL_TIMEOUT).await;
                done.set(true);
                answer
            })
        };
        hold_begun(begun).await;
        let started = Instant::now();
        broker.served_during_hold(&done, ended).await;
        let answer = update.await.unwrap().unwrap();
        assert_eq!(
            answer.response_code(),
            Some(ResponseCode::Success),
            "{answer:?}"
        );
        assert!(disk_faults::holds_ended() > ended);
        eprintln!(
            "served during the hold; updateTopic answered {:?} later",
            started.elapsed()
        );
    }
}

/// Holds the folder and file creation of a new queue's first send.
async fn held_queue_creation(broker: &Broker, namesrv: &str) {
    {
        let mut admin = actimq::admin::AdminClient::new(namesrv, CALL_TIMEOUT);
        let header = CreateTopicRequestHeader {
            topic: "NewQueueTopic".into(),
            read_queue_nums: 1,
            write_queue_nums: 1,
            perm: PERM_READ_WRITE,
            ..Default::default()
        };
        admin
            .call_ok(
                &broker.addr,
                RequestCode::UpdateAndCreateTopic,
                &header,
                Bytes::new(),
            )
            .await
            .unwrap();
        let begun = disk_faults::holds_begun();
        let ended = disk_faults::holds_ended();
        // The first send to the topic creates `consumequeue/NewQueueTopic/0` and its file.
        disk_faults::hold_next("NewQueueTopic", HOLD);

        let done = Rc::new(Cell::new(false));
        let send = {
            let (done, link, addr) = (Rc::clone(&done), broker.link.clone(), broker.addr.clone());
            actix_rt::spawn(async move {
                let b = Broker { addr, link };
                let answer = b.send("NewQueueTopic", b"first of its queue").await;
                done.set(true);
                answer
            })
        };
        hold_begun(begun).await;
        broker.served_during_hold(&done, ended).await;
        let answer = send.await.unwrap();
        assert_eq!(
            answer.response_code(),
            Some(ResponseCode::Success),
            "{answer:?}"
        );
        assert!(disk_faults::holds_ended() > ended);
    }
}

/// One test, so that no other test of this binary arms or ends a hold meanwhile.
#[test]
fn a_slow_disk_stalls_only_the_request_waiting_for_it() {
    actix_rt::System::new().block_on(async {
        let (cluster, broker) = cluster_with_existing_topic().await;
        held_topic_table_write(&broker).await;
        held_queue_creation(&broker, &cluster.namesrv_addr()).await;
        cluster.shutdown().await;
    });
}
