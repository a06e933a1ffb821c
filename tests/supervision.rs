//! Supervision that does something: each actor started under a `Supervisor` is stopped here
//! by its fatal condition, and the test checks that the same address serves again, with the
//! right state. The condition is the real one wherever a test can cause it (a lost socket, a
//! store poisoned by a failed dispatch, an offsets file that does not read, a consumer that
//! never answers); the name server's (route tables that break their invariants) takes a bug,
//! so a hidden hook plants one and the real audit finds it.
//!
//! Real actors on 127.0.0.1 with temporary stores; every wait polls with a deadline.

mod support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actimq::admin::{AdminClient, AdminError, PullOutcome};
use actimq::internals::actors::broker::start_broker;
use actimq::internals::actors::client_instance::RebalanceNow;
use actimq::internals::actors::namesrv::{start_namesrv, CorruptRoutes};
use actimq::internals::actors::rebalancer::allocate::AllocateAveragely;
use actimq::internals::actors::rebalancer::{Assign, Rebalancer};
use actimq::internals::actors::remote_link::{self, LinkConfig, LinkError, RemoteLink};
use actimq::internals::config::{BrokerConfig, NamesrvConfig};
use actimq::internals::protocol::message::{
    GetMaxOffsetRequestHeader, PullMessageRequestHeader, QueryConsumerOffsetRequestHeader,
    SendMessageRequestHeader, SendMessageResponseHeader, UpdateConsumerOffsetRequestHeader,
};
use actimq::internals::protocol::topic::{CreateTopicRequestHeader, PERM_READ_WRITE};
use actimq::internals::protocol::{
    Frame, FrameCodec, RequestCode, ResponseCode, DEFAULT_MAX_FRAME_SIZE,
};
use actimq::internals::storage::StoreConfig;
use actimq::MessageModel;
use actix::prelude::*;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use support::{eventually, TestCluster, ADMIN_TIMEOUT, POLL_EVERY};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;

const TOPIC: &str = "SupervisedTopic";

/// Consume-queue entries per segment file in the store tests: the fifth send to queue 0 is
/// the first entry of its second segment file, so a test knows which file it will need.
const CQ_ENTRIES_PER_SEGMENT: u64 = 4;

/// Polls `attempt` until it answers `Some`, or panics naming `what` after `within`.
async fn until<T, F, Fut>(within: Duration, what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = attempt().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for: {what}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}

// ---------------------------------------------------------------------------------------
// RemoteLink: a lost socket stops it; the restart fails what was in flight and reconnects.

#[test]
fn remote_link_fails_requests_on_a_lost_socket_and_the_same_address_reconnects() {
    actix_rt::System::new().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        actix_rt::spawn(async move {
            // The first connection takes one request and hangs up without answering.
            let (socket, _) = listener.accept().await.unwrap();
            let mut first = Framed::new(socket, FrameCodec::new(DEFAULT_MAX_FRAME_SIZE));
            let _ = first.next().await;
            drop(first);
            // Every later one answers everything with its own body.
            while let Ok((socket, _)) = listener.accept().await {
                actix_rt::spawn(async move {
                    let mut conn = Framed::new(socket, FrameCodec::new(DEFAULT_MAX_FRAME_SIZE));
                    while let Some(Ok(f)) = conn.next().await {
                        let answer =
                            Frame::response(f.opaque, ResponseCode::Success, &(), f.body.clone())
                                .unwrap();
                        if conn.send(answer).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let link = RemoteLink::start(addr.clone(), LinkConfig::default(), None);
        let request = |body: &'static str| {
            Frame::request(
                RequestCode::SendMessage,
                0,
                &(),
                Bytes::from_static(body.as_bytes()),
            )
            .unwrap()
        };
        // In flight when the socket goes: failed by the restart as lost, long before its
        // own 30 s timeout.
        let lost = remote_link::call(&link, &addr, request("lost"), Duration::from_secs(30));
        let lost = tokio::time::timeout(Duration::from_secs(10), lost).await;
        assert!(
            matches!(lost, Ok(Err(LinkError::Lost { .. }))),
            "expected the lost socket to fail the request at once, got {lost:?}"
        );
        // The same address reconnects after its backoff and serves again.
        let answer = until(Duration::from_secs(10), "the link answers again", || {
            let (link, addr) = (link.clone(), addr.clone());
            async move {
                remote_link::call(&link, &addr, request("again"), Duration::from_secs(2))
                    .await
                    .ok()
            }
        })
        .await;
        assert_eq!(&answer.body[..], b"again");
    });
}

// ---------------------------------------------------------------------------------------
// NameServer: tables that break their invariants stop it; the restart starts clean and the
// brokers' registrations refill it.

#[test]
fn name_server_drops_tables_it_cannot_trust_and_brokers_register_again() {
    actix_rt::System::new().block_on(async {
        let store = tempfile::tempdir().unwrap();
        let ns = start_namesrv(NamesrvConfig {
            listen_host: "127.0.0.1".into(),
            listen_port: 0,
            scan_not_active_broker_interval: 100,
            ..NamesrvConfig::default()
        })
        .await
        .unwrap();
        let ns_addr = ns.addr.to_string();
        let broker = start_broker(BrokerConfig {
            broker_name: "broker-a".into(),
            listen_host: "127.0.0.1".into(),
            listen_port: 0,
            namesrv_addr: ns_addr.clone(),
            register_broker_interval: 300,
            store: StoreConfig {
                store_path_root_dir: store.path().to_owned(),
                mapped_file_size_commit_log: 16 << 20,
                warm_mapped_file_enable: false,
                ..StoreConfig::default()
            },
            ..BrokerConfig::default()
        })
        .await
        .unwrap();
        let mut admin = AdminClient::new(&ns_addr, ADMIN_TIMEOUT);
        let header = CreateTopicRequestHeader {
            topic: TOPIC.into(),
            read_queue_nums: 2,
            write_queue_nums: 2,
            perm: PERM_READ_WRITE,
            ..Default::default()
        };
        admin
            .update_topic(&broker.addr.to_string(), &header)
            .await
            .unwrap();
        let routed = || {
            let ns_addr = ns_addr.clone();
            async move {
                let mut admin = AdminClient::new(&ns_addr, ADMIN_TIMEOUT);
                admin.route(TOPIC).await.is_ok()
            }
        };
        eventually(Duration::from_secs(10), "the topic is routed", routed).await;

        // A bug's worth of damage: a topic served by a broker set that does not exist.
        ns.namesrv
            .send(CorruptRoutes {
                ghost_topic: "GHOST".into(),
            })
            .await
            .unwrap();
        // The next audit stops the name server; its restart drops every table (the ghost
        // with them) and the broker's next registration brings the real route back, on the
        // same address.
        eventually(
            Duration::from_secs(10),
            "the ghost topic gone and the real route back",
            || {
                let ns_addr = ns_addr.clone();
                async move {
                    let mut admin = AdminClient::new(&ns_addr, ADMIN_TIMEOUT);
                    let Ok(list) = admin.topic_list().await else {
                        return false;
                    };
                    !list.topic_list.contains("GHOST")
                        && list.topic_list.contains(TOPIC)
                        && admin.route(TOPIC).await.is_ok()
                }
            },
        )
        .await;
        assert!(ns.namesrv.connected());
        broker.shutdown().await;
    });
}

// ---------------------------------------------------------------------------------------
// Broker and MessageQueue: a store poisoned by a failed dispatch stops the broker; its
// restart reopens the store (recovery runs) and hands the new handle to the queue actors.

/// A cluster of one broker whose store lives in the returned folder, with consume-queue
/// segments of [`CQ_ENTRIES_PER_SEGMENT`] entries and one queue of [`TOPIC`].
async fn broker_with_small_queue_segments(
    tweak: impl Fn(&mut BrokerConfig),
) -> (TestCluster, tempfile::TempDir) {
    let store = tempfile::tempdir().unwrap();
    let root = store.path().to_owned();
    let mut cluster = TestCluster::start_with(1, 1, move |_, c| {
        c.store.store_path_root_dir = root.clone();
        c.store.mapped_file_size_consume_queue = CQ_ENTRIES_PER_SEGMENT * 20;
        c.long_polling_timeout = 30_000;
        tweak(c);
    })
    .await;
    cluster.create_topic(TOPIC, 1).await;
    (cluster, store)
}

/// Arms a write failure for the next consume-queue entry of queue 0 in the store at `root`
/// (`disk_faults`: an I/O error such as a failing disk gives). The pattern names this
/// test's own store, so tests running beside it are not touched.
fn poison_next_dispatch(root: &Path) {
    let queue = root.join("consumequeue").join(TOPIC).join("0");
    actimq::internals::common::fs::disk_faults::fail_next(&queue.to_string_lossy());
}

async fn send(
    admin: &mut AdminClient,
    broker: &str,
    body: &str,
) -> Result<SendMessageResponseHeader, AdminError> {
    let header = SendMessageRequestHeader {
        producer_group: "supervision-producer".into(),
        topic: TOPIC.into(),
        queue_id: 0,
        born_timestamp: 1,
        ..Default::default()
    };
    admin
        .send(broker, &header, Bytes::from(body.to_owned()))
        .await
}

fn pull_header(offset: u64, suspend: Duration) -> PullMessageRequestHeader {
    PullMessageRequestHeader {
        consumer_group: "supervision-reader".into(),
        topic: TOPIC.into(),
        queue_id: 0,
        queue_offset: offset as i64,
        max_msg_nums: 64,
        sys_flag: if suspend.is_zero() { 0 } else { 0x2 },
        suspend_timeout_millis: suspend.as_millis() as i64,
        ..Default::default()
    }
}

/// Every body in queue 0, in order.
async fn read_all(admin: &mut AdminClient, broker: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    let mut offset = 0;
    loop {
        let got: PullOutcome = admin
            .pull(broker, &pull_header(offset, Duration::ZERO))
            .await
            .unwrap();
        if got.code != ResponseCode::Success {
            return bodies;
        }
        for m in got.messages {
            bodies.push(String::from_utf8_lossy(&m.body).into_owned());
        }
        offset = got.header.next_begin_offset as u64;
    }
}

/// Sends until one is stored; every refusal meanwhile must be SERVICE_NOT_AVAILABLE with a
/// remark containing `refusal`.
async fn send_until_stored(
    admin: &mut AdminClient,
    broker: &str,
    body: &str,
    refusal: &str,
) -> SendMessageResponseHeader {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match send(admin, broker, body).await {
            Ok(h) => return h,
            Err(AdminError::Refused { code, remark, .. }) => {
                assert!(
                    code.starts_with("SERVICE_NOT_AVAILABLE"),
                    "{code}: {remark}"
                );
                assert!(remark.contains(refusal), "{remark}");
            }
            Err(e) => panic!("send failed: {e}"),
        }
        assert!(Instant::now() < deadline, "no send stored within 20 s");
        tokio::time::sleep(POLL_EVERY).await;
    }
}

async fn runtime(admin: &mut AdminClient, broker: &str, key: &str) -> String {
    let info = admin.broker_runtime_info(broker).await.unwrap();
    info.get(key).cloned().unwrap_or_default()
}

/// Fills queue 0's first segment with acknowledged sends and returns their bodies.
async fn fill_first_segment(admin: &mut AdminClient, broker: &str) -> Vec<String> {
    let mut acked = Vec::new();
    for i in 0..CQ_ENTRIES_PER_SEGMENT {
        let body = format!("before-{i}");
        send(admin, broker, &body).await.unwrap();
        acked.push(body);
    }
    acked
}

#[test]
fn broker_reopens_a_poisoned_store_and_takes_sends_again() {
    actix_rt::System::new().block_on(async {
        let (cluster, store) = broker_with_small_queue_segments(|_| {}).await;
        let broker = cluster.broker_addr(0);
        let mut admin = AdminClient::new("", ADMIN_TIMEOUT);
        assert_eq!(runtime(&mut admin, &broker, "openedClean").await, "true");
        let mut acked = fill_first_segment(&mut admin, &broker).await;

        // The next write into the queue fails (an I/O error): the record reaches the log
        // but not its queue, and the store poisons itself.
        poison_next_dispatch(store.path());
        let failed = send(&mut admin, &broker, "not-acknowledged").await;
        assert!(
            failed.is_err(),
            "the dispatch failure is the send's: {failed:?}"
        );

        // The supervisor reopens the store; sends meanwhile are refused so producers go
        // elsewhere, and once recovery is done they are stored again.
        send_until_stored(&mut admin, &broker, "after-reopen", "reopening").await;
        acked.push("after-reopen".into());
        assert_eq!(runtime(&mut admin, &broker, "writeRefused").await, "false");
        // The reopened store ran recovery (the poisoned one was not closed cleanly).
        assert_eq!(runtime(&mut admin, &broker, "openedClean").await, "false");

        // Everything acknowledged is readable, in order; the record whose dispatch failed
        // was in the log, and recovery made it readable too.
        let bodies = read_all(&mut admin, &broker).await;
        let expected: Vec<&str> = acked[..4]
            .iter()
            .map(String::as_str)
            .chain(["not-acknowledged", "after-reopen"])
            .collect();
        assert_eq!(bodies, expected);
        assert!(cluster.brokers[0].broker.connected());
        cluster.shutdown().await;
    });
}

#[test]
fn broker_stays_read_only_when_its_store_cannot_be_reopened() {
    actix_rt::System::new().block_on(async {
        let (cluster, store) = broker_with_small_queue_segments(|_| {}).await;
        let broker = cluster.broker_addr(0);
        let mut admin = AdminClient::new("", ADMIN_TIMEOUT);
        let acked = fill_first_segment(&mut admin, &broker).await;

        // A write into the queue fails and poisons the store; a folder where another
        // queue's segment file should be (a queue this broker does not use now) makes the
        // fresh open fail, so the reopen fails.
        let other_queue = store.path().join("consumequeue").join(TOPIC).join("1");
        std::fs::create_dir_all(other_queue.join(format!("{:020}", 0))).unwrap();
        poison_next_dispatch(store.path());
        assert!(send(&mut admin, &broker, "poisoner").await.is_err());

        eventually(
            Duration::from_secs(20),
            "the broker reports itself read-only",
            || {
                let broker = broker.clone();
                async move {
                    let mut admin = AdminClient::new("", ADMIN_TIMEOUT);
                    runtime(&mut admin, &broker, "writeRefused")
                        .await
                        .contains("read-only")
                }
            },
        )
        .await;
        match send(&mut admin, &broker, "refused").await {
            Err(AdminError::Refused { code, remark, .. }) => {
                assert!(code.starts_with("SERVICE_NOT_AVAILABLE"), "{code}");
                assert!(
                    remark.contains("read-only") && remark.contains("restart the broker"),
                    "{remark}"
                );
            }
            other => panic!("a read-only broker took a send: {other:?}"),
        }
        // Reads go on from the old handle: every acknowledged message is still there.
        let bodies = read_all(&mut admin, &broker).await;
        assert_eq!(bodies[..acked.len()], acked[..]);
        cluster.shutdown().await;
    });
}

#[test]
fn queue_actor_answers_its_held_pulls_and_reads_the_reopened_store() {
    actix_rt::System::new().block_on(async {
        let (cluster, store) = broker_with_small_queue_segments(|_| {}).await;
        let broker = cluster.broker_addr(0);
        let mut admin = AdminClient::new("", ADMIN_TIMEOUT);
        fill_first_segment(&mut admin, &broker).await;

        // A pull held at the end of the queue, for up to 25 s.
        let link = RemoteLink::start(broker.clone(), LinkConfig::default(), None);
        let held = Frame::request(
            RequestCode::PullMessage,
            0,
            &pull_header(CQ_ENTRIES_PER_SEGMENT, Duration::from_secs(25)),
            Bytes::new(),
        )
        .unwrap();
        let asked = Instant::now();
        let answer = {
            let (link, broker) = (link.clone(), broker.clone());
            actix_rt::spawn(async move {
                let answer = remote_link::call(&link, &broker, held, Duration::from_secs(40)).await;
                (answer, asked.elapsed())
            })
        };
        // The broker handles one connection's requests in order: once this is answered, the
        // pull is in the queue actor's mailbox, ahead of anything the reopen sends it.
        let after = Frame::request(
            RequestCode::GetMaxOffset,
            0,
            &GetMaxOffsetRequestHeader {
                topic: TOPIC.into(),
                queue_id: 0,
                committed: false,
            },
            Bytes::new(),
        )
        .unwrap();
        remote_link::call(&link, &broker, after, ADMIN_TIMEOUT)
            .await
            .unwrap();

        poison_next_dispatch(store.path());
        assert!(send(&mut admin, &broker, "stored-not-acked").await.is_err());

        // The restart answers the held pull at once, from the reopened store, where
        // recovery put the record whose dispatch had failed.
        let (answer, waited) = answer.await.unwrap();
        let answer = answer.unwrap();
        assert!(
            waited < Duration::from_secs(15),
            "the held pull was answered only after {waited:?}"
        );
        assert_eq!(answer.response_code(), Some(ResponseCode::Success));
        let found = actimq::admin::decode_records(&answer.body).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(&found[0].body[..], b"stored-not-acked");

        // And the same actor serves what is appended to the new store.
        let stored = send_until_stored(&mut admin, &broker, "fresh", "reopening").await;
        let got = admin
            .pull(
                &broker,
                &pull_header(stored.queue_offset as u64, Duration::ZERO),
            )
            .await
            .unwrap();
        assert_eq!(got.code, ResponseCode::Success);
        assert_eq!(&got.messages[0].body[..], b"fresh");
        cluster.shutdown().await;
    });
}

// ---------------------------------------------------------------------------------------
// ConsumerGroup: an offsets file it cannot read stops it until a restart reads the file.

async fn query_offset(
    admin: &mut AdminClient,
    broker: &str,
    group: &str,
    queue_id: i32,
) -> Result<i64, AdminError> {
    let h = QueryConsumerOffsetRequestHeader {
        consumer_group: group.into(),
        topic: TOPIC.into(),
        queue_id,
        set_zero_if_not_found: Some(false),
    };
    let f = admin
        .call_ok(broker, RequestCode::QueryConsumerOffset, &h, Bytes::new())
        .await?;
    let h: actimq::internals::protocol::message::OffsetResponseHeader = f.decode_header().unwrap();
    Ok(h.offset)
}

#[test]
fn consumer_group_waits_for_a_readable_offsets_file_and_reloads_it() {
    actix_rt::System::new().block_on(async {
        let (cluster, store) = broker_with_small_queue_segments(|c| {
            c.flush_consumer_offset_interval = 200;
        })
        .await;
        let broker = cluster.broker_addr(0);
        let mut admin = AdminClient::new("", ADMIN_TIMEOUT);
        let group = "supervised-group";
        let file = store
            .path()
            .join("config")
            .join("consumer_offsets")
            .join(format!("{group}.toml"));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "this is = = not toml").unwrap();

        // Unknown offsets are an error, not "never committed" (which would send consumers
        // to consume_from_where).
        match query_offset(&mut admin, &broker, group, 0).await {
            Err(AdminError::Refused { code, remark, .. }) => {
                assert!(code.starts_with("SYSTEM_ERROR"), "{code}");
                assert!(
                    remark.contains("unknown") && remark.contains(&file.display().to_string()),
                    "{remark}"
                );
            }
            other => panic!("offsets of a damaged file were answered: {other:?}"),
        }
        // A commit meanwhile is kept, not written over the damaged file.
        let commit = UpdateConsumerOffsetRequestHeader {
            consumer_group: group.into(),
            topic: TOPIC.into(),
            queue_id: 1,
            commit_offset: 7,
            keep_larger: None,
        };
        admin
            .call_ok(
                &broker,
                RequestCode::UpdateConsumerOffset,
                &commit,
                Bytes::new(),
            )
            .await
            .unwrap();

        // The operator repairs the file; a restart of the group reads it.
        std::fs::write(&file, format!("\"{TOPIC}@0\" = 42\n")).unwrap();
        let offsets = until(
            Duration::from_secs(10),
            "the group answers offsets again",
            || {
                let broker = broker.clone();
                async move {
                    let mut admin = AdminClient::new("", ADMIN_TIMEOUT);
                    let from_file = query_offset(&mut admin, &broker, group, 0).await.ok()?;
                    let committed = query_offset(&mut admin, &broker, group, 1).await.ok()?;
                    Some((from_file, committed))
                }
            },
        )
        .await;
        assert_eq!(offsets, (42, 7));
        // Both are written out at the next flush.
        eventually(
            Duration::from_secs(10),
            "the merged offsets on disk",
            || {
                let text = std::fs::read_to_string(&file).unwrap_or_default();
                async move { text.contains("= 42") && text.contains("= 7") }
            },
        )
        .await;
        cluster.shutdown().await;
    });
}

// ---------------------------------------------------------------------------------------
// Rebalancer: a run stuck on a consumer that never answers stops it; the restart runs anew.

/// A consumer that never answers its first assignment and records the later ones.
struct SilentOnce {
    calls: usize,
    assigned: Arc<Mutex<Vec<Assign>>>,
}

impl Actor for SilentOnce {
    type Context = Context<Self>;
}

impl Handler<Assign> for SilentOnce {
    type Result = ResponseFuture<bool>;

    fn handle(&mut self, msg: Assign, _: &mut Self::Context) -> Self::Result {
        self.calls += 1;
        if self.calls == 1 {
            return Box::pin(std::future::pending());
        }
        self.assigned.lock().unwrap().push(msg);
        Box::pin(std::future::ready(true))
    }
}

#[test]
fn rebalancer_stuck_on_a_silent_consumer_restarts_and_assigns_again() {
    actix_rt::System::new().block_on(async {
        let mut cluster = TestCluster::start(1, 1).await;
        cluster.create_topic(TOPIC, 4).await;
        let client = cluster.client();
        let assigned = Arc::new(Mutex::new(Vec::new()));
        let consumer = SilentOnce {
            calls: 0,
            assigned: Arc::clone(&assigned),
        }
        .start();
        let rebalancer = {
            let target = consumer.recipient();
            // A long interval: only a restart can start the second run.
            Supervisor::start(move |_| {
                Rebalancer::new(
                    client,
                    "supervised-rebalance".into(),
                    "me".into(),
                    MessageModel::Broadcasting,
                    vec![TOPIC.into()],
                    Arc::new(AllocateAveragely),
                    target,
                    Duration::from_secs(3600),
                )
                .with_stall_limit(Duration::from_millis(300))
            })
        };
        let all = cluster.queues_of(TOPIC, 4);
        eventually(
            Duration::from_secs(10),
            "the restarted rebalancer assigns the topic's queues",
            || {
                let assigned = assigned.lock().unwrap();
                let ok = assigned.len() == 1
                    && assigned[0].queues.iter().cloned().collect::<Vec<_>>() == all;
                async move { ok }
            },
        )
        .await;
        // The same address takes requests again.
        rebalancer.send(RebalanceNow).await.unwrap();
        eventually(
            Duration::from_secs(10),
            "a second assignment on request",
            || {
                let n = assigned.lock().unwrap().len();
                async move { n == 2 }
            },
        )
        .await;
        cluster.shutdown().await;
    });
}
