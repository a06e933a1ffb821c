//! Consumer groups on a real `mqbroker`: membership built from HEART_BEATs on separate
//! connections (GET_CONSUMER_LIST_BY_GROUP, sorted), members dropped when their connection
//! closes or when they fall silent for `channel_expired_timeout`, NOTIFY_CONSUMER_IDS_CHANGED
//! pushed to the remaining member, committed offsets (QUERY/UPDATE_CONSUMER_OFFSET,
//! GET_CONSUME_STATS) surviving a SIGTERM restart, and mqadmin `topicList`/`deleteTopic`.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use actimq::admin::{AdminClient, AdminError};
use actimq::internals::protocol::group::{
    ConsumerData, GetConsumerListByGroupRequestHeader, GetConsumerListByGroupResponseBody,
    HeartbeatData, NotifyConsumerIdsChangedRequestHeader, SubscriptionData,
};
use actimq::internals::protocol::message::{
    OffsetResponseHeader, PullMessageRequestHeader, QueryConsumerOffsetRequestHeader,
    SendMessageRequestHeader, UpdateConsumerOffsetRequestHeader,
};
use actimq::internals::protocol::topic::{
    ConsumeStats, CreateTopicRequestHeader, GetConsumeStatsRequestHeader, PERM_READ_WRITE,
};
use actimq::internals::protocol::{
    encode_body, Frame, FrameCodec, MessageQueue, NoHeader, RequestCode, ResponseCode,
};
use actix_rt::SystemRunner;
use bytes::{Bytes, BytesMut};
use common::process::{broker, broker_config, eventually, mqadmin, namesrv};
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder};

const TIMEOUT: Duration = Duration::from_secs(10);

/// A member of a group on its own raw TCP connection: writes requests, reads answers, and
/// keeps every one-way frame the broker pushes (NOTIFY_CONSUMER_IDS_CHANGED) in `notices`.
struct RawClient {
    stream: TcpStream,
    codec: FrameCodec,
    buf: BytesMut,
    next_opaque: u32,
    notices: Vec<Frame>,
}

impl RawClient {
    fn connect(addr: &str) -> Self {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        RawClient {
            stream,
            codec: FrameCodec::default(),
            buf: BytesMut::new(),
            next_opaque: 1,
            notices: Vec::new(),
        }
    }

    /// The next frame, or `None` once `deadline` has passed. Panics if the broker closes.
    fn read_frame(&mut self, deadline: Instant) -> Option<Frame> {
        let mut chunk = [0u8; 64 * 1024];
        loop {
            if let Some(f) = self.codec.decode(&mut self.buf).expect("decodable frame") {
                return Some(f);
            }
            if Instant::now() >= deadline {
                return None;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("the broker closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Sends a request and returns its response; one-way frames met on the way are kept.
    fn request<H: Serialize>(&mut self, code: RequestCode, header: &H, body: Bytes) -> Frame {
        let opaque = self.next_opaque;
        self.next_opaque += 1;
        let frame = Frame::request(code, opaque, header, body).unwrap();
        let mut out = BytesMut::new();
        self.codec.encode(&frame, &mut out).unwrap();
        self.stream.write_all(&out).unwrap();
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let f = self
                .read_frame(deadline)
                .unwrap_or_else(|| panic!("no answer to {code:?} within {TIMEOUT:?}"));
            if f.is_response() && f.opaque == opaque {
                return f;
            }
            if f.is_oneway() {
                self.notices.push(f);
            }
        }
    }

    fn heartbeat(&mut self, client_id: &str, group: &str) {
        let f = self.request(
            RequestCode::HeartBeat,
            &NoHeader {},
            heartbeat_body(client_id, group),
        );
        assert_eq!(f.response_code(), Some(ResponseCode::Success), "{f:?}");
    }

    /// GET_CONSUMER_LIST_BY_GROUP on this connection. Because the broker pushes a change
    /// notice before it answers a later list request, every notice for a change this list
    /// reflects has been read (into `notices`) when this returns.
    fn members(&mut self, group: &str) -> Result<Vec<String>, ResponseCode> {
        let header = GetConsumerListByGroupRequestHeader {
            consumer_group: group.into(),
        };
        let f = self.request(RequestCode::GetConsumerListByGroup, &header, Bytes::new());
        list_answer(&f)
    }

    /// Waits for a NOTIFY_CONSUMER_IDS_CHANGED naming `group` (kept or arriving).
    fn wait_notice(&mut self, group: &str, limit: Duration) -> Frame {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(i) = self.notices.iter().position(|f| is_notice_for(f, group)) {
                return self.notices.remove(i);
            }
            match self.read_frame(deadline) {
                Some(f) if f.is_oneway() => self.notices.push(f),
                Some(_) => {}
                None => panic!("no NOTIFY_CONSUMER_IDS_CHANGED for {group} within {limit:?}"),
            }
        }
    }

    fn notices_for(&self, group: &str) -> usize {
        self.notices
            .iter()
            .filter(|f| is_notice_for(f, group))
            .count()
    }
}

fn is_notice_for(f: &Frame, group: &str) -> bool {
    f.is_oneway()
        && f.request_code() == Some(RequestCode::NotifyConsumerIdsChanged)
        && f.decode_header::<NotifyConsumerIdsChangedRequestHeader>()
            .is_ok_and(|h| h.consumer_group == group)
}

fn heartbeat_body(client_id: &str, group: &str) -> Bytes {
    encode_body(&HeartbeatData {
        client_id: client_id.into(),
        consumer_data_set: vec![ConsumerData {
            group_name: group.into(),
            subscription_data_set: vec![SubscriptionData {
                topic: "GroupTopic".into(),
                sub_string: "*".into(),
                sub_version: 1,
                expression_type: "TAG".into(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    })
    .unwrap()
}

fn list_answer(f: &Frame) -> Result<Vec<String>, ResponseCode> {
    match f.response_code() {
        Some(ResponseCode::Success) => Ok(f
            .decode_body::<GetConsumerListByGroupResponseBody>()
            .expect("consumer list body")
            .consumer_id_list),
        other => Err(other.unwrap_or(ResponseCode::SystemError)),
    }
}

/// GET_CONSUMER_LIST_BY_GROUP through an [`AdminClient`] (a connection of its own).
fn admin_members(
    system: &SystemRunner,
    admin: &mut AdminClient,
    broker: &str,
    group: &str,
) -> Result<Vec<String>, ResponseCode> {
    let header = GetConsumerListByGroupRequestHeader {
        consumer_group: group.into(),
    };
    let f = system
        .block_on(admin.call(
            broker,
            RequestCode::GetConsumerListByGroup,
            &header,
            Bytes::new(),
        ))
        .expect("consumer list call");
    list_answer(&f)
}

fn cluster_has(ns: &str, needle: &str) -> bool {
    let (ok, out, _) = mqadmin(&["-n", ns, "clusterList"]);
    ok && out.contains(needle)
}

fn topic_listed(ns: &str, topic: &str) -> bool {
    let (ok, out, err) = mqadmin(&["-n", ns, "topicList"]);
    assert!(ok, "topicList failed: {out}{err}");
    out.lines().any(|l| l.trim() == topic)
}

#[test]
fn members_join_on_heartbeat_and_leave_when_their_connection_closes() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 120_000);
    let cfg = broker_config(dir.path(), "broker-g", "");
    let b = broker(&cfg, &ns.addr);
    let system = actix_rt::System::new();
    let mut admin = AdminClient::new(&ns.addr, TIMEOUT);

    // RocketMQ answers SYSTEM_ERROR for a group without members.
    assert_eq!(
        admin_members(&system, &mut admin, &b.addr, "G1"),
        Err(ResponseCode::SystemError)
    );

    // Joined in reverse order of their ids, on two connections.
    let mut stays = RawClient::connect(&b.addr);
    let mut leaves = RawClient::connect(&b.addr);
    leaves.heartbeat("127.0.0.1@zulu", "G1");
    stays.heartbeat("127.0.0.1@alpha", "G1");
    let both = vec!["127.0.0.1@alpha".to_owned(), "127.0.0.1@zulu".to_owned()];
    assert_eq!(
        admin_members(&system, &mut admin, &b.addr, "G1").as_ref(),
        Ok(&both),
        "both members, sorted"
    );
    // A second heartbeat from the same client on the same connection changes nothing.
    leaves.heartbeat("127.0.0.1@zulu", "G1");
    // Barrier: every notice about the joins is now read on the staying member's connection.
    assert_eq!(stays.members("G1").as_ref(), Ok(&both));
    assert!(
        stays.notices_for("G1") >= 1,
        "the staying member was told about the other's arrival"
    );
    stays.notices.clear();

    drop(leaves);
    eventually(TIMEOUT, "the closed member to leave the list", || {
        (admin_members(&system, &mut admin, &b.addr, "G1")
            == Ok(vec!["127.0.0.1@alpha".to_owned()]))
        .then_some(())
    });
    let notice = stays.wait_notice("G1", TIMEOUT);
    assert_eq!(
        notice
            .decode_header::<NotifyConsumerIdsChangedRequestHeader>()
            .unwrap()
            .consumer_group,
        "G1"
    );
    // The remaining member is still served on its connection.
    assert_eq!(stays.members("G1"), Ok(vec!["127.0.0.1@alpha".to_owned()]));
}

#[test]
fn committed_offsets_are_answered_counted_and_survive_a_sigterm_restart() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 120_000);
    // Periodic offset flushes are pushed out of reach: only the shutdown can persist them.
    let cfg = broker_config(
        dir.path(),
        "broker-o",
        "flush_consumer_offset_interval = 3600000",
    );
    let mut b = broker(&cfg, &ns.addr);
    let (topic, group) = ("OffsetTopic", "G2");
    let query = |g: &str| QueryConsumerOffsetRequestHeader {
        consumer_group: g.into(),
        topic: topic.into(),
        queue_id: 1,
        set_zero_if_not_found: Some(false),
    };
    let stats_header = GetConsumeStatsRequestHeader {
        consumer_group: group.into(),
        topic: Some(topic.into()),
    };
    let mq = |broker_name: &str| MessageQueue {
        topic: topic.into(),
        broker_name: broker_name.into(),
        queue_id: 1,
    };
    let system = actix_rt::System::new();
    system.block_on(async {
        let mut admin = AdminClient::new(&ns.addr, TIMEOUT);
        let create = CreateTopicRequestHeader {
            topic: topic.into(),
            default_topic: "TBW102".into(),
            read_queue_nums: 4,
            write_queue_nums: 4,
            perm: PERM_READ_WRITE,
            ..Default::default()
        };
        admin.update_topic(&b.addr, &create).await.unwrap();
        for (queue_id, count) in [(1, 7), (0, 3)] {
            for i in 0..count {
                let h = SendMessageRequestHeader {
                    producer_group: "P".into(),
                    topic: topic.into(),
                    default_topic: "TBW102".into(),
                    default_topic_queue_nums: 4,
                    queue_id,
                    born_timestamp: 1,
                    ..Default::default()
                };
                let r = admin
                    .send(&b.addr, &h, Bytes::from(format!("m{i}")))
                    .await
                    .unwrap();
                assert_eq!((r.queue_id, r.queue_offset), (queue_id, i));
            }
        }

        let f = admin
            .call(
                &b.addr,
                RequestCode::QueryConsumerOffset,
                &query(group),
                Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(
            f.response_code(),
            Some(ResponseCode::QueryNotFound),
            "never committed: {f:?}"
        );
        // RocketMQ's rule for clients that do not opt out: a group that never committed on
        // a queue that still holds its first message starts at 0.
        let mut lenient = query(group);
        lenient.set_zero_if_not_found = None;
        let f = admin
            .call(
                &b.addr,
                RequestCode::QueryConsumerOffset,
                &lenient,
                Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(f.response_code(), Some(ResponseCode::Success));
        let zero: actimq::internals::protocol::message::OffsetResponseHeader =
            f.decode_header().unwrap();
        assert_eq!(zero.offset, 0);

        let update = UpdateConsumerOffsetRequestHeader {
            consumer_group: group.into(),
            topic: topic.into(),
            queue_id: 1,
            commit_offset: 42,
            keep_larger: None,
        };
        let f = admin
            .call(
                &b.addr,
                RequestCode::UpdateConsumerOffset,
                &update,
                Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(f.response_code(), Some(ResponseCode::Success), "{f:?}");

        let f = admin
            .call(
                &b.addr,
                RequestCode::QueryConsumerOffset,
                &query(group),
                Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(f.response_code(), Some(ResponseCode::Success), "{f:?}");
        assert_eq!(
            f.decode_header::<OffsetResponseHeader>().unwrap().offset,
            42
        );

        // Offsets belong to their group.
        let f = admin
            .call(
                &b.addr,
                RequestCode::QueryConsumerOffset,
                &query("OtherGroup"),
                Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(f.response_code(), Some(ResponseCode::QueryNotFound));

        let f = admin
            .call(
                &b.addr,
                RequestCode::GetConsumeStats,
                &stats_header,
                Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(f.response_code(), Some(ResponseCode::Success), "{f:?}");
        let stats: ConsumeStats = f.decode_body().unwrap();
        let q1 = stats
            .offset_table
            .get(&mq("broker-o"))
            .unwrap_or_else(|| panic!("queue 1 in consume stats: {stats:?}"));
        assert_eq!((q1.broker_offset, q1.consumer_offset), (7, 42));
    });

    let status = b.terminate();
    assert!(
        status.success(),
        "mqbroker exit {status:?}; log:\n{}",
        b.log_text()
    );
    drop(b);

    let b = broker(&cfg, &ns.addr);
    system.block_on(async {
        let mut admin = AdminClient::new(&ns.addr, TIMEOUT);
        let f = admin
            .call(
                &b.addr,
                RequestCode::QueryConsumerOffset,
                &query(group),
                Bytes::new(),
            )
            .await
            .unwrap();
        assert_eq!(
            f.response_code(),
            Some(ResponseCode::Success),
            "offset lost over the restart: {f:?}\nlog:\n{}",
            b.log_text()
        );
        assert_eq!(
            f.decode_header::<OffsetResponseHeader>().unwrap().offset,
            42
        );

        let f = admin
            .call(
                &b.addr,
                RequestCode::GetConsumeStats,
                &stats_header,
                Bytes::new(),
            )
            .await
            .unwrap();
        let stats: ConsumeStats = f.decode_body().unwrap();
        let q1 = stats
            .offset_table
            .get(&mq("broker-o"))
            .unwrap_or_else(|| panic!("queue 1 in consume stats after restart: {stats:?}"));
        assert_eq!((q1.broker_offset, q1.consumer_offset), (7, 42));
    });
}

#[test]
fn a_silent_member_expires_while_its_connection_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 120_000);
    let cfg = broker_config(dir.path(), "broker-e", "channel_expired_timeout = 1000");
    let b = broker(&cfg, &ns.addr);

    let mut alive = RawClient::connect(&b.addr);
    let mut silent = RawClient::connect(&b.addr);
    silent.heartbeat("127.0.0.1@silent", "G3");
    alive.heartbeat("127.0.0.1@alive", "G3");
    assert_eq!(
        alive.members("G3"),
        Ok(vec![
            "127.0.0.1@alive".to_owned(),
            "127.0.0.1@silent".to_owned()
        ])
    );
    alive.notices.clear();

    // The live member keeps heartbeating; the silent one sends no heartbeat but keeps its
    // connection busy with other requests (any byte keeps a connection open, only a
    // heartbeat keeps a membership).
    let started = Instant::now();
    eventually(TIMEOUT, "the silent member to expire", || {
        alive.heartbeat("127.0.0.1@alive", "G3");
        let _ = silent.members("G3");
        (alive.members("G3") == Ok(vec!["127.0.0.1@alive".to_owned()])).then_some(())
    });
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "expired long before channel_expired_timeout"
    );
    assert!(
        alive.notices_for("G3") >= 1,
        "the live member was not told that the silent one expired"
    );
    // The silent member's connection is still open and usable.
    assert_eq!(silent.members("G3"), Ok(vec!["127.0.0.1@alive".to_owned()]));
}

#[test]
fn mqadmin_delete_topic_removes_it_from_topic_list_and_route() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 120_000);
    let cfg = broker_config(dir.path(), "broker-d", "");
    let b = broker(&cfg, &ns.addr);
    eventually(TIMEOUT, "broker in clusterList", || {
        cluster_has(&ns.addr, "broker-d").then_some(())
    });
    let topic = "DoomedTopic";

    let (ok, out, err) = mqadmin(&[
        "-n",
        &ns.addr,
        "updateTopic",
        "-c",
        "DefaultCluster",
        "-t",
        topic,
        "-r",
        "2",
        "-w",
        "2",
    ]);
    assert!(ok, "updateTopic failed: {out}{err}");
    eventually(TIMEOUT, "topic in topicList", || {
        topic_listed(&ns.addr, topic).then_some(())
    });
    let (ok, out, err) = mqadmin(&["-n", &ns.addr, "topicRoute", "-t", topic]);
    assert!(ok && out.contains(&b.addr), "topicRoute: {out}{err}");

    let (ok, out, err) = mqadmin(&[
        "-n",
        &ns.addr,
        "deleteTopic",
        "-c",
        "DefaultCluster",
        "-t",
        topic,
    ]);
    assert!(ok, "deleteTopic failed: {out}{err}");
    assert!(!topic_listed(&ns.addr, topic), "still in topicList");
    let (ok, out, _) = mqadmin(&["-n", &ns.addr, "topicRoute", "-t", topic]);
    assert!(!ok, "topicRoute still answers after deleteTopic:\n{out}");

    // The broker forgot it too.
    let system = actix_rt::System::new();
    system.block_on(async {
        let mut admin = AdminClient::new(&ns.addr, TIMEOUT);
        let pull = PullMessageRequestHeader {
            consumer_group: "G4".into(),
            topic: topic.into(),
            queue_id: 0,
            max_msg_nums: 1,
            ..Default::default()
        };
        match admin.pull(&b.addr, &pull).await {
            Err(AdminError::Refused { code, .. }) => {
                assert_eq!(code, ResponseCode::TopicNotExist.to_string())
            }
            other => panic!("pull from a deleted topic: {other:?}"),
        }
    });
    assert!(!topic_listed(&ns.addr, topic), "topic came back");
}
