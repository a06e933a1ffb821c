//! Writes the seed corpus (`corpus/<target>/seed-*`) from the crate's own encoders, so the
//! fuzzers start from valid frames, records, queue entries and config files.
//!
//! Run from `fuzz/`: `cargo +nightly run --example make_seeds`.

use std::path::Path;

use actimq::internals::protocol::group::{HeartbeatData, LockBatchRequestBody, ProducerData};
use actimq::internals::protocol::message::{
    CheckTransactionStateRequestHeader, PullMessageRequestHeader, SendMessageRequestHeader,
    SendMessageResponseHeader, UpdateConsumerOffsetRequestHeader,
};
use actimq::internals::protocol::route::{GetRouteInfoRequestHeader, RegisterBrokerRequestHeader};
use actimq::internals::protocol::topic::{TopicConfig, TopicConfigWrapper};
use actimq::internals::protocol::{Frame, FrameCodec, MessageQueue, Request, ResponseCode};
use actimq::internals::storage::record::{blank_marker, body_crc, encode_into, MessageToStore, StoreStamp};
use bytes::{Bytes, BytesMut};
use tokio_util::codec::Encoder;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn encoded(frames: &[Frame]) -> Vec<u8> {
    let mut out = BytesMut::new();
    for frame in frames {
        FrameCodec::default().encode(frame, &mut out).unwrap();
    }
    out.to_vec()
}

fn frames() {
    let send = SendMessageRequestHeader {
        producer_group: "PG".into(),
        topic: "TopicTest".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 1,
        born_timestamp: 1_700_000_000_000,
        properties: "TAGS\u{1}TagA\u{2}KEYS\u{1}k1\u{2}".into(),
        max_reconsume_times: Some(16),
        ..SendMessageRequestHeader::default()
    };
    let mut topics = TopicConfigWrapper::default();
    topics.topic_config_table.insert(
        "TopicTest".into(),
        TopicConfig {
            topic_name: "TopicTest".into(),
            read_queue_nums: 4,
            write_queue_nums: 4,
            perm: 6,
            ..TopicConfig::default()
        },
    );
    let requests = [
        Request::SendMessage(send.clone(), Bytes::from_static(b"hello")),
        Request::SendBatchMessage(
            SendMessageRequestHeader {
                batch: true,
                ..send
            },
            Bytes::from_static(b"batch"),
        ),
        Request::PullMessage(PullMessageRequestHeader {
            consumer_group: "CG".into(),
            topic: "TopicTest".into(),
            max_msg_nums: 32,
            ..PullMessageRequestHeader::default()
        }),
        Request::UpdateConsumerOffset(UpdateConsumerOffsetRequestHeader {
            consumer_group: "CG".into(),
            topic: "TopicTest".into(),
            queue_id: 2,
            commit_offset: 10,
        }),
        Request::HeartBeat(HeartbeatData {
            client_id: "127.0.0.1@1".into(),
            producer_data_set: vec![ProducerData {
                group_name: "PG".into(),
            }],
            ..HeartbeatData::default()
        }),
        Request::LockBatchMq(LockBatchRequestBody {
            consumer_group: "CG".into(),
            client_id: "127.0.0.1@1".into(),
            only_this_broker: true,
            mq_set: [MessageQueue {
                topic: "TopicTest".into(),
                broker_name: "broker-a".into(),
                queue_id: 0,
            }]
            .into_iter()
            .collect(),
        }),
        Request::RegisterBroker(
            RegisterBrokerRequestHeader {
                broker_name: "broker-a".into(),
                broker_addr: "127.0.0.1:10911".into(),
                cluster_name: "DefaultCluster".into(),
                ..RegisterBrokerRequestHeader::default()
            },
            topics,
        ),
        Request::GetRouteInfoByTopic(GetRouteInfoRequestHeader {
            topic: "TopicTest".into(),
        }),
        Request::CheckTransactionState(
            CheckTransactionStateRequestHeader::default(),
            Bytes::from_static(b"half"),
        ),
        Request::GetBrokerClusterInfo,
    ];
    let mut all = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let frame = request.to_frame(i as u32 + 1).unwrap();
        // The first byte is where the target splits the stream.
        let mut seed = vec![(i * 25) as u8];
        seed.extend(encoded(std::slice::from_ref(&frame)));
        write(
            "frame_decode",
            &format!("{:02}-{:?}", i, request.code()),
            &seed,
        );
        all.push(frame);
    }
    let answer = Frame::response(
        1,
        ResponseCode::Success,
        &SendMessageResponseHeader {
            msg_id: "7F00000100002A9F0000000000000000".into(),
            queue_id: 1,
            queue_offset: 5,
            ..SendMessageResponseHeader::default()
        },
        Bytes::new(),
    )
    .unwrap();
    let error = Frame::error(2, ResponseCode::SystemError, "boom");
    all.push(answer.clone());
    all.push(error);
    write(
        "frame_decode",
        "response",
        &[0].into_iter()
            .chain(encoded(&[answer]))
            .collect::<Vec<_>>(),
    );
    let mut stream = vec![128];
    stream.extend(encoded(&all));
    write("frame_decode", "stream", &stream);
}

fn records() {
    let stamp = StoreStamp {
        queue_offset: 7,
        physical_offset: 1234,
        store_timestamp: 1_700_000_000_000,
        store_host: "10.0.0.5:10911".parse().unwrap(),
    };
    let plain = MessageToStore::new("TopicTest", 3, Bytes::from_static(b"hello world"))
        .with_properties([("TAGS", "TagA"), ("KEYS", "k1 k2")]);
    let mut v6 = MessageToStore::new("T", 0, Bytes::new());
    v6.born_host = "[::1]:4000".parse().unwrap();
    let mut bare = MessageToStore::new("TopicTest", 1, Bytes::from_static(b"x"));
    bare.properties = "TAGS\u{1}TagB".into();
    let v6_stamp = StoreStamp {
        store_host: "[fe80::1]:10911".parse().unwrap(),
        ..stamp
    };
    for (name, msg, stamp) in [
        ("v4", &plain, &stamp),
        ("v6", &v6, &v6_stamp),
        ("no-separator", &bare, &stamp),
    ] {
        let mut buf = vec![0u8; msg.encoded_len(&stamp.store_host)];
        encode_into(&mut buf, msg, body_crc(&msg.body), stamp);
        write("record_decode", name, &buf);
    }
    write("record_decode", "blank", &blank_marker(64));
}

fn cq_entries() {
    let mut segment = Vec::new();
    for (offset, size, tag) in [(0u64, 120u32, 0i64), (120, 133, 2_598_919), (253, 90, -1)] {
        segment.extend(offset.to_be_bytes());
        segment.extend(size.to_be_bytes());
        segment.extend(tag.to_be_bytes());
    }
    write("cq_entry_decode", "entries", &segment);
    segment.extend([0u8; 20]);
    write("cq_entry_decode", "unwritten-tail", &segment);
}

fn configs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
    for (name, file) in [
        ("broker", "broker.toml"),
        ("namesrv", "namesrv.toml"),
        ("broker-a", "2m-noslave/broker-a.toml"),
    ] {
        write(
            "config_load",
            name,
            &std::fs::read(root.join(file)).unwrap(),
        );
    }
    write(
        "config_load",
        "small",
        b"broker_name = \"broker-b\"\nbroker_role = \"slave\"\nbroker_id = 1\n\
          namesrv_addr = \"127.0.0.1:9876;[::1]:9876\"\nflush_disk_type = \"sync_flush\"\n\
          delete_when = \"04;16\"\n",
    );
    write(
        "config_load",
        "typo",
        b"brokerClusterName = \"c\"\nlisten_portt = 1\n",
    );
}

fn main() {
    frames();
    records();
    cq_entries();
    configs();
}
