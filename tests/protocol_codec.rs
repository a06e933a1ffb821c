//! Protocol codec tests through the public API: round trips of every header and body,
//! partial and oversized input, garbage, unknown codes, zero-copy decoding, and a real
//! `Framed` pipe.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use actimq::internals::protocol::group::{
    ConsumeFromWhere, ConsumeType, ConsumerData, GetConsumerListByGroupRequestHeader,
    GetConsumerListByGroupResponseBody, HeartbeatData, LockBatchRequestBody, LockBatchResponseBody,
    MessageModel, NotifyConsumerIdsChangedRequestHeader, ProducerData, SubscriptionData,
    UnlockBatchRequestBody, UnregisterClientRequestHeader,
};
use actimq::internals::protocol::message::{
    BoundaryType, CheckTransactionStateRequestHeader, ConsumerSendMsgBackRequestHeader,
    EndTransactionRequestHeader, GetEarliestMsgStoretimeRequestHeader,
    GetEarliestMsgStoretimeResponseHeader, GetMaxOffsetRequestHeader, GetMinOffsetRequestHeader,
    OffsetResponseHeader, PullMessageRequestHeader, PullMessageResponseHeader,
    QueryConsumerOffsetRequestHeader, QueryMessageRequestHeader, QueryMessageResponseHeader,
    SearchOffsetRequestHeader, SendMessageRequestHeader, SendMessageResponseHeader,
    UpdateConsumerOffsetRequestHeader, ViewMessageRequestHeader, PULL_FLAG_SUSPEND,
    TRANSACTION_COMMIT_TYPE,
};
use actimq::internals::protocol::route::{
    BrokerData, ClusterInfo, GetRouteInfoRequestHeader, QueueData, RegisterBrokerRequestHeader,
    RegisterBrokerResponseHeader, TopicList, TopicRouteData, UnregisterBrokerRequestHeader,
};
use actimq::internals::protocol::topic::{
    ConsumeStats, CreateTopicRequestHeader, DataVersion, DeleteTopicFromNamesrvRequestHeader,
    DeleteTopicRequestHeader, GetConsumeStatsRequestHeader, GetTopicStatsInfoRequestHeader,
    KvTable, OffsetWrapper, TopicConfig, TopicConfigWrapper, TopicOffset, TopicStatsTable,
    PERM_READ_WRITE,
};
use actimq::internals::protocol::{
    decode_request, encode_body, Error, Frame, FrameCodec, FrameKind, MessageQueue, NoHeader,
    Request, RequestCode, ResponseCode, DEFAULT_MAX_FRAME_SIZE, PROTOCOL_VERSION,
};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::codec::{Decoder, Encoder, FramedRead, FramedWrite};

// ---------------------------------------------------------------------------------------
// helpers

fn encode(frame: &Frame) -> BytesMut {
    let mut buf = BytesMut::new();
    FrameCodec::default().encode(frame, &mut buf).unwrap();
    buf
}

/// Encodes and decodes one frame, checking nothing is left over.
fn round_trip(frame: &Frame) -> Frame {
    let mut buf = encode(frame);
    let out = FrameCodec::default().decode(&mut buf).unwrap().unwrap();
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    out
}

/// A length prefix announcing `len` bytes, followed by `payload`.
fn prefixed(len: u32, payload: &[u8]) -> BytesMut {
    let mut buf = BytesMut::with_capacity(64);
    buf.put_u32(len);
    buf.put_slice(payload);
    buf
}

fn response_round_trip<H>(header: &H, body: Bytes) -> (H, Frame)
where
    H: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let frame = Frame::response(42, ResponseCode::Success, header, body).unwrap();
    let out = round_trip(&frame);
    assert_eq!(out, frame);
    assert!(out.is_response());
    assert_eq!(out.response_code(), Some(ResponseCode::Success));
    let decoded: H = out.decode_header().unwrap();
    assert_eq!(&decoded, header);
    (decoded, out)
}

fn body_round_trip<B>(body: &B)
where
    B: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug,
{
    let frame = Frame::response(
        7,
        ResponseCode::Success,
        &NoHeader {},
        encode_body(body).unwrap(),
    )
    .unwrap();
    assert!(
        frame.header.is_empty(),
        "NoHeader must encode to an empty header"
    );
    let out = round_trip(&frame);
    assert_eq!(&out.decode_body::<B>().unwrap(), body);
}

fn mq(topic: &str, queue_id: i32) -> MessageQueue {
    MessageQueue {
        topic: topic.into(),
        broker_name: "broker-a".into(),
        queue_id,
    }
}

fn send_header() -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "pg".into(),
        topic: "TopicTest".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: -1,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        flag: 0,
        properties: "TAGS\u{1}TagA\u{2}KEYS\u{1}k1\u{2}".into(),
        reconsume_times: 0,
        batch: false,
        max_reconsume_times: Some(16),
    }
}

fn pull_header() -> PullMessageRequestHeader {
    PullMessageRequestHeader {
        consumer_group: "cg".into(),
        topic: "TopicTest".into(),
        queue_id: 3,
        queue_offset: 1234,
        max_msg_nums: 32,
        sys_flag: PULL_FLAG_SUSPEND,
        commit_offset: 1200,
        suspend_timeout_millis: 15_000,
        subscription: Some("TagA || TagB".into()),
        sub_version: 1_700_000_000_000,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
    }
}

fn broker_data() -> BrokerData {
    BrokerData {
        cluster: "DefaultCluster".into(),
        broker_name: "broker-a".into(),
        broker_addrs: BTreeMap::from([(0, "10.0.0.5:10911".into()), (1, "10.0.0.6:10911".into())]),
    }
}

fn topic_config_wrapper() -> TopicConfigWrapper {
    TopicConfigWrapper {
        topic_config_table: HashMap::from([(
            "TopicTest".to_string(),
            TopicConfig {
                topic_name: "TopicTest".into(),
                read_queue_nums: 4,
                write_queue_nums: 4,
                perm: PERM_READ_WRITE,
                topic_sys_flag: 0,
                order: false,
            },
        )]),
        data_version: DataVersion {
            counter: 3,
            timestamp: 1_700_000_000_000,
        },
    }
}

/// One request of every supported code.
fn every_request() -> Vec<Request> {
    let heartbeat = HeartbeatData {
        client_id: "192.168.1.7@12345".into(),
        producer_data_set: vec![ProducerData {
            group_name: "pg".into(),
        }],
        consumer_data_set: vec![ConsumerData {
            group_name: "cg".into(),
            consume_type: ConsumeType::ConsumePassively,
            message_model: MessageModel::Clustering,
            consume_from_where: ConsumeFromWhere::FirstOffset,
            subscription_data_set: vec![SubscriptionData {
                topic: "TopicTest".into(),
                sub_string: "TagA || TagB".into(),
                tags_set: BTreeSet::from(["TagA".into(), "TagB".into()]),
                code_set: BTreeSet::from([2_598_919, 2_598_920]),
                sub_version: 1_700_000_000_000,
                expression_type: "TAG".into(),
            }],
            assigned_queues: Some(vec![MessageQueue {
                topic: "TopicTest".into(),
                broker_name: "broker-a".into(),
                queue_id: 3,
            }]),
        }],
    };
    let lock = LockBatchRequestBody {
        consumer_group: "cg".into(),
        client_id: "c1".into(),
        only_this_broker: true,
        mq_set: BTreeSet::from([mq("T", 0), mq("T", 1)]),
    };
    vec![
        Request::SendMessage(send_header(), Bytes::from_static(b"hello")),
        Request::SendBatchMessage(
            SendMessageRequestHeader {
                batch: true,
                ..send_header()
            },
            Bytes::from_static(b"\0\0\0\x10batch-of-one"),
        ),
        Request::PullMessage(pull_header()),
        Request::QueryMessage(QueryMessageRequestHeader {
            topic: "T".into(),
            key: "order-1".into(),
            max_num: 32,
            begin_timestamp: 0,
            end_timestamp: i64::MAX,
            unique_key: true,
        }),
        Request::QueryConsumerOffset(QueryConsumerOffsetRequestHeader {
            consumer_group: "cg".into(),
            topic: "T".into(),
            queue_id: 1,
            set_zero_if_not_found: Some(false),
        }),
        Request::UpdateConsumerOffset(UpdateConsumerOffsetRequestHeader {
            consumer_group: "cg".into(),
            topic: "T".into(),
            queue_id: 1,
            commit_offset: 99,
            keep_larger: Some(true),
        }),
        Request::UpdateAndCreateTopic(CreateTopicRequestHeader {
            topic: "T".into(),
            default_topic: "TBW102".into(),
            read_queue_nums: 8,
            write_queue_nums: 8,
            perm: PERM_READ_WRITE,
            topic_sys_flag: 0,
            order: true,
        }),
        Request::GetAllTopicConfig,
        Request::GetAllConsumerOffset,
        Request::WatchRoutes(
            actimq::internals::protocol::route::WatchRoutesRequestHeader {
                known_version: 7,
                hold_ms: 20_000,
            },
        ),
        Request::InvokeBrokerToResetOffset(
            actimq::internals::protocol::group::ResetOffsetRequestHeader {
                topic: "T".into(),
                group: "G".into(),
                timestamp: 1_700_000_000_000,
                is_force: true,
            },
        ),
        Request::ResetConsumerClientOffset(
            actimq::internals::protocol::group::ResetOffsetRequestHeader {
                topic: "T".into(),
                group: "G".into(),
                timestamp: 1_700_000_000_000,
                is_force: true,
            },
            actimq::internals::protocol::group::ResetOffsetBody {
                offset_table: vec![(
                    MessageQueue {
                        topic: "T".into(),
                        broker_name: "broker-a".into(),
                        queue_id: 1,
                    },
                    42,
                )],
            },
        ),
        Request::GetBrokerRuntimeInfo,
        Request::SearchOffsetByTimestamp(SearchOffsetRequestHeader {
            topic: "T".into(),
            queue_id: 0,
            timestamp: 1_700_000_000_000,
            boundary_type: BoundaryType::Upper,
        }),
        Request::GetMaxOffset(GetMaxOffsetRequestHeader {
            topic: "T".into(),
            queue_id: 2,
            committed: true,
        }),
        Request::GetMinOffset(GetMinOffsetRequestHeader {
            topic: "T".into(),
            queue_id: 2,
        }),
        Request::GetEarliestMsgStoretime(GetEarliestMsgStoretimeRequestHeader {
            topic: "T".into(),
            queue_id: 2,
        }),
        Request::ViewMessageById(ViewMessageRequestHeader {
            offset: 4096,
            topic: None,
        }),
        Request::HeartBeat(heartbeat),
        Request::UnregisterClient(UnregisterClientRequestHeader {
            client_id: "c1".into(),
            producer_group: None,
            consumer_group: Some("cg".into()),
        }),
        Request::ConsumerSendMsgBack(ConsumerSendMsgBackRequestHeader {
            offset: 8192,
            group: "cg".into(),
            delay_level: 0,
            origin_msg_id: Some("0A00000100002A9F0000000000001000".into()),
            origin_topic: Some("T".into()),
            max_reconsume_times: Some(16),
        }),
        Request::EndTransaction(EndTransactionRequestHeader {
            producer_group: "pg".into(),
            tran_state_table_offset: 5,
            commit_log_offset: 4096,
            commit_or_rollback: TRANSACTION_COMMIT_TYPE,
            from_transaction_check: false,
            msg_id: "AB".into(),
            transaction_id: Some("tx-1".into()),
            topic: Some("T".into()),
        }),
        Request::GetConsumerListByGroup(GetConsumerListByGroupRequestHeader {
            consumer_group: "cg".into(),
        }),
        Request::CheckTransactionState(
            CheckTransactionStateRequestHeader {
                tran_state_table_offset: 5,
                commit_log_offset: 4096,
                msg_id: Some("AB".into()),
                transaction_id: Some("tx-1".into()),
                offset_msg_id: None,
                topic: Some("T".into()),
            },
            Bytes::from_static(b"stored half message"),
        ),
        Request::NotifyConsumerIdsChanged(NotifyConsumerIdsChangedRequestHeader {
            consumer_group: "cg".into(),
        }),
        Request::LockBatchMq(lock.clone()),
        Request::UnlockBatchMq(UnlockBatchRequestBody {
            consumer_group: lock.consumer_group,
            client_id: lock.client_id,
            only_this_broker: false,
            mq_set: lock.mq_set,
        }),
        Request::RegisterBroker(
            RegisterBrokerRequestHeader {
                broker_name: "broker-a".into(),
                broker_addr: "10.0.0.5:10911".into(),
                cluster_name: "DefaultCluster".into(),
                ha_server_addr: "10.0.0.5:10912".into(),
                broker_id: 0,
                heartbeat_timeout_millis: Some(120_000),
            },
            topic_config_wrapper(),
        ),
        Request::UnregisterBroker(UnregisterBrokerRequestHeader {
            broker_name: "broker-a".into(),
            broker_addr: "10.0.0.5:10911".into(),
            cluster_name: "DefaultCluster".into(),
            broker_id: 1,
        }),
        Request::GetRouteInfoByTopic(GetRouteInfoRequestHeader {
            topic: "TopicTest".into(),
        }),
        Request::GetBrokerClusterInfo,
        Request::GetTopicStatsInfo(GetTopicStatsInfoRequestHeader { topic: "T".into() }),
        Request::GetAllTopicListFromNameserver,
        Request::GetConsumeStats(GetConsumeStatsRequestHeader {
            consumer_group: "cg".into(),
            topic: None,
        }),
        Request::DeleteTopicInBroker(DeleteTopicRequestHeader { topic: "T".into() }),
        Request::DeleteTopicInNamesrv(DeleteTopicFromNamesrvRequestHeader {
            topic: "T".into(),
            cluster_name: Some("DefaultCluster".into()),
        }),
    ]
}

// ---------------------------------------------------------------------------------------
// round trips

#[test]
fn every_request_round_trips_through_codec() {
    let requests = every_request();
    let codes: HashSet<RequestCode> = requests.iter().map(Request::code).collect();
    let all: HashSet<RequestCode> = RequestCode::ALL.iter().copied().collect();
    assert_eq!(codes, all, "every request code needs a sample request");

    for (i, request) in requests.into_iter().enumerate() {
        let opaque = i as u32 + 1;
        let frame = request.to_frame(opaque).unwrap();
        assert_eq!(frame.request_code(), Some(request.code()));
        let out = round_trip(&frame);
        assert_eq!(out, frame);
        assert!(out.is_request());
        assert_eq!(out.opaque, opaque);
        assert_eq!(decode_request(&out).unwrap(), request, "{}", request.code());

        let oneway = round_trip(&request.to_oneway_frame(opaque).unwrap());
        assert!(oneway.is_oneway());
        assert_eq!(Request::try_from(&oneway).unwrap(), request);
    }
}

#[test]
fn every_response_header_round_trips_through_codec() {
    response_round_trip(
        &SendMessageResponseHeader {
            msg_id: "0A00000100002A9F0000000000001000".into(),
            queue_id: 3,
            queue_offset: 77,
            transaction_id: None,
            batch_uniq_id: Some("b".into()),
        },
        Bytes::new(),
    );
    response_round_trip(
        &PullMessageResponseHeader {
            suggest_which_broker_id: 0,
            next_begin_offset: 10,
            min_offset: 0,
            max_offset: 10,
        },
        Bytes::from_static(b"records"),
    );
    response_round_trip(
        &OffsetResponseHeader {
            offset: -1,
            subscribed_since_ms: None,
        },
        Bytes::new(),
    );
    response_round_trip(
        &OffsetResponseHeader {
            offset: -1,
            subscribed_since_ms: Some(1_733_450_000_000),
        },
        Bytes::new(),
    );
    response_round_trip(
        &QueryMessageResponseHeader {
            index_last_update_timestamp: 1,
            index_last_update_phyoffset: 2,
        },
        Bytes::from_static(b"stored"),
    );
    response_round_trip(
        &GetEarliestMsgStoretimeResponseHeader { timestamp: 5 },
        Bytes::new(),
    );
    response_round_trip(
        &RegisterBrokerResponseHeader {
            master_addr: Some("10.0.0.5:10911".into()),
            ha_server_addr: Some("10.0.0.5:10912".into()),
        },
        Bytes::new(),
    );
    // A response header whose optional fields are all absent still decodes.
    let (empty, frame) =
        response_round_trip(&RegisterBrokerResponseHeader::default(), Bytes::new());
    assert_eq!(empty.master_addr, None);
    assert!(!frame.header.is_empty());
}

#[test]
fn every_response_body_round_trips_through_codec() {
    body_round_trip(&TopicRouteData {
        broker_datas: vec![broker_data()],
        queue_datas: vec![QueueData {
            broker_name: "broker-a".into(),
            read_queue_nums: 4,
            write_queue_nums: 4,
            perm: PERM_READ_WRITE,
            topic_sys_flag: 0,
        }],
    });
    body_round_trip(&ClusterInfo {
        broker_addr_table: HashMap::from([("broker-a".to_string(), broker_data())]),
        cluster_addr_table: HashMap::from([(
            "DefaultCluster".to_string(),
            BTreeSet::from(["broker-a".to_string()]),
        )]),
    });
    body_round_trip(&TopicList {
        topic_list: BTreeSet::from(["A".to_string(), "B".to_string()]),
    });
    body_round_trip(&GetConsumerListByGroupResponseBody {
        consumer_id_list: vec!["c1".into(), "c2".into()],
        assignments: [(
            "c1".to_owned(),
            vec![MessageQueue {
                topic: "T".into(),
                broker_name: "broker-a".into(),
                queue_id: 0,
            }],
        )]
        .into(),
    });
    body_round_trip(&LockBatchResponseBody {
        lock_ok_mq_set: BTreeSet::from([mq("T", 0)]),
    });
    body_round_trip(&topic_config_wrapper());
    body_round_trip(&TopicStatsTable {
        offset_table: BTreeMap::from([(
            mq("T", 1),
            TopicOffset {
                min_offset: 0,
                max_offset: 9,
                last_update_timestamp: 3,
            },
        )]),
    });
    body_round_trip(&ConsumeStats {
        offset_table: BTreeMap::from([(
            mq("T", 1),
            OffsetWrapper {
                broker_offset: 9,
                consumer_offset: 4,
                last_timestamp: 3,
            },
        )]),
        consume_tps: 12.5,
    });
    body_round_trip(&KvTable {
        table: BTreeMap::from([
            ("commitLogMaxOffset".to_string(), "4096".to_string()),
            ("writeRefused".to_string(), "false".to_string()),
            (
                "damage".to_string(),
                r#"[{"from":100,"to":400,"kind":"corrupt"}]"#.to_string(),
            ),
        ]),
    });
    assert_eq!(broker_data().master_addr(), Some("10.0.0.5:10911"));
}

#[test]
fn error_response_round_trips_with_remark() {
    let frame = Frame::error(9, ResponseCode::TopicNotExist, "No topic route info for T");
    let out = round_trip(&frame);
    assert_eq!(out.response_code(), Some(ResponseCode::TopicNotExist));
    assert_eq!(out.remark.as_deref(), Some("No topic route info for T"));
    assert_eq!(out.opaque, 9);
    assert_eq!(out.version, PROTOCOL_VERSION);
}

fn arb_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_%-]{0,24}"
}

prop_compose! {
    fn arb_send_header()(
        producer_group in arb_name(),
        topic in arb_name(),
        queue_id in -1i32..64,
        sys_flag in any::<i32>(),
        born_timestamp in any::<i64>(),
        flag in any::<i32>(),
        properties in "\\PC{0,48}",
        reconsume_times in any::<i32>(),
        batch in any::<bool>(),
        max_reconsume_times in proptest::option::of(any::<i32>()),
    ) -> SendMessageRequestHeader {
        SendMessageRequestHeader {
            producer_group, topic, default_topic: String::new(), default_topic_queue_nums: 0,
            queue_id, sys_flag, born_timestamp, flag, properties, reconsume_times, batch,
            max_reconsume_times,
        }
    }
}

prop_compose! {
    fn arb_pull_header()(
        consumer_group in arb_name(),
        topic in arb_name(),
        queue_id in any::<i32>(),
        queue_offset in any::<i64>(),
        max_msg_nums in any::<i32>(),
        sys_flag in any::<i32>(),
        commit_offset in any::<i64>(),
        suspend_timeout_millis in any::<i64>(),
        subscription in proptest::option::of("\\PC{0,32}"),
        sub_version in any::<i64>(),
        expression_type in proptest::option::of(arb_name()),
        max_msg_bytes in proptest::option::of(any::<i32>()),
    ) -> PullMessageRequestHeader {
        PullMessageRequestHeader {
            consumer_group, topic, queue_id, queue_offset, max_msg_nums, sys_flag,
            commit_offset, suspend_timeout_millis, subscription, sub_version, expression_type,
            max_msg_bytes,
        }
    }
}

proptest! {
    #[test]
    fn send_frames_round_trip(
        header in arb_send_header(),
        body in proptest::collection::vec(any::<u8>(), 0..2048),
        opaque in any::<u32>(),
        code in any::<i32>(),
        oneway in any::<bool>(),
    ) {
        // Known code through the helper ...
        let frame = Frame::request(RequestCode::SendMessage, opaque, &header, Bytes::from(body.clone())).unwrap();
        let out = round_trip(&frame);
        prop_assert_eq!(&out, &frame);
        match decode_request(&out).unwrap() {
            Request::SendMessage(h, b) => {
                prop_assert_eq!(h, header.clone());
                prop_assert_eq!(&b[..], &body[..]);
            }
            other => prop_assert!(false, "decoded as {:?}", other.code()),
        }
        // ... and any raw code, which must survive the frame layer untouched.
        let kind = if oneway { FrameKind::Oneway } else { FrameKind::Request };
        let raw = Frame {
            header: actimq::internals::protocol::encode_header(&header).unwrap(),
            body: Bytes::from(body),
            ..Frame::new(kind, opaque, code)
        };
        let out = round_trip(&raw);
        prop_assert_eq!(&out, &raw);
        prop_assert_eq!(out.decode_header::<SendMessageRequestHeader>().unwrap(), header);
    }

    #[test]
    fn pull_frames_round_trip(
        request in arb_pull_header(),
        opaque in any::<u32>(),
        next_begin_offset in any::<i64>(),
        min_offset in any::<i64>(),
        max_offset in any::<i64>(),
        suggest_which_broker_id in any::<u64>(),
        records in proptest::collection::vec(any::<u8>(), 0..4096),
        code in any::<i32>(),
    ) {
        let frame = Request::PullMessage(request.clone()).to_frame(opaque).unwrap();
        let out = round_trip(&frame);
        prop_assert_eq!(decode_request(&out).unwrap(), Request::PullMessage(request));

        let header = PullMessageResponseHeader { suggest_which_broker_id, next_begin_offset, min_offset, max_offset };
        let response = Frame {
            header: actimq::internals::protocol::encode_header(&header).unwrap(),
            body: Bytes::from(records),
            ..Frame::new(FrameKind::Response, opaque, code)
        };
        let out = round_trip(&response);
        prop_assert_eq!(&out, &response);
        prop_assert_eq!(out.decode_header::<PullMessageResponseHeader>().unwrap(), header);
    }

    /// Arbitrary bytes never panic the decoder; it either waits, yields frames or errs.
    /// Half the inputs start with a small length prefix so the payload path is exercised.
    #[test]
    fn decoder_never_panics_on_arbitrary_bytes(
        small_len in proptest::option::of(0u32..600),
        tail in proptest::collection::vec(any::<u8>(), 0..512),
    ) {
        let mut bytes = small_len.map(|n| n.to_be_bytes().to_vec()).unwrap_or_default();
        bytes.extend_from_slice(&tail);
        let mut codec = FrameCodec::new(1024);
        let mut buf = BytesMut::from(&bytes[..]);
        for _ in 0..bytes.len() + 1 {
            match codec.decode(&mut buf) {
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => break,
            }
        }
        let _ = codec.decode_eof(&mut buf);
    }

    /// A complete frame of garbage (correct length prefix) is a frame or a typed error,
    /// never "need more input" and never a panic.
    #[test]
    fn garbage_payload_is_frame_or_error(payload in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut buf = prefixed(payload.len() as u32, &payload);
        match FrameCodec::default().decode(&mut buf) {
            Ok(Some(_)) => {}
            Ok(None) => prop_assert!(false, "complete frame reported as partial"),
            Err(Error::Malformed { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
        prop_assert!(buf.is_empty(), "a delimited frame is always consumed");
    }

    /// Valid frames with a few bytes of the payload overwritten (realistic corruption that
    /// gets deep into the MessagePack) decode, or fail with a typed error, and the typed
    /// request layer never panics on what does decode.
    #[test]
    fn corrupted_frames_never_panic(
        which in 0usize..31,
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let requests = every_request();
        let request = &requests[which % requests.len()];
        let encoded = encode(&request.to_frame(1).unwrap());
        let mut bytes = encoded.to_vec();
        for (index, value) in edits {
            // Keep the length prefix intact so the corruption lands in the payload.
            let i = 4 + index.index(bytes.len() - 4);
            bytes[i] = value;
        }
        let mut buf = BytesMut::from(&bytes[..]);
        match FrameCodec::default().decode(&mut buf) {
            Ok(Some(frame)) => {
                let _ = decode_request(&frame);
            }
            Ok(None) => prop_assert!(false, "complete frame reported as partial"),
            Err(Error::Malformed { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}

// ---------------------------------------------------------------------------------------
// partial input and framing

#[test]
fn byte_at_a_time_yields_none_until_last_byte() {
    let frame = Request::SendMessage(send_header(), Bytes::from(vec![7u8; 300]))
        .to_frame(5)
        .unwrap();
    let encoded = encode(&frame);
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    for (i, byte) in encoded.iter().enumerate() {
        buf.put_u8(*byte);
        let result = codec.decode(&mut buf).unwrap();
        if i + 1 < encoded.len() {
            assert!(
                result.is_none(),
                "frame yielded after {} of {} bytes",
                i + 1,
                encoded.len()
            );
        } else {
            assert_eq!(result, Some(frame.clone()));
        }
    }
    assert!(buf.is_empty());
    assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
}

#[test]
fn two_frames_in_one_buffer_decode_as_two() {
    let a = Request::PullMessage(pull_header()).to_frame(1).unwrap();
    let b = Frame::error(1, ResponseCode::SystemBusy, "busy");
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    codec.encode(&a, &mut buf).unwrap();
    codec.encode(b.clone(), &mut buf).unwrap();
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(a));
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(b));
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    assert!(buf.is_empty());
}

#[test]
fn partial_frame_reserves_nothing_for_bytes_not_yet_sent() {
    let frame = Frame::request(
        RequestCode::SendMessage,
        1,
        &send_header(),
        Bytes::from(vec![0u8; 10_000]),
    )
    .unwrap();
    let encoded = encode(&frame);
    let mut buf = BytesMut::from(&encoded[..100]);
    let before = buf.capacity();
    let mut codec = FrameCodec::default();
    assert_eq!(codec.decode(&mut buf).unwrap(), None);
    // A peer that announces a length and stops must cost what it sent, not what it
    // announced; the buffer grows as the rest arrives.
    assert_eq!(
        buf.capacity(),
        before,
        "no room reserved for bytes not yet sent"
    );
    for chunk in encoded[100..].chunks(1000) {
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(chunk);
    }
    assert_eq!(codec.decode(&mut buf).unwrap(), Some(frame));
}

// ---------------------------------------------------------------------------------------
// limits

#[test]
fn two_gib_length_is_rejected_without_allocating() {
    let mut buf = prefixed(0x8000_0000, b"\x85abc");
    let capacity = buf.capacity();
    match FrameCodec::default().decode(&mut buf) {
        Err(Error::FrameTooLarge { size, max }) => {
            assert_eq!(size, 0x8000_0000);
            assert_eq!(max, DEFAULT_MAX_FRAME_SIZE);
        }
        other => panic!("expected FrameTooLarge, got {other:?}"),
    }
    assert_eq!(
        buf.capacity(),
        capacity,
        "decoder reserved memory for a refused frame"
    );
    assert!(buf.capacity() <= 64);
}

#[test]
fn max_plus_one_is_rejected_without_allocating() {
    for max in [1024usize, DEFAULT_MAX_FRAME_SIZE] {
        let mut buf = prefixed(max as u32 + 1, &[]);
        let capacity = buf.capacity();
        match FrameCodec::new(max).decode(&mut buf) {
            Err(Error::FrameTooLarge { size, max: m }) => {
                assert_eq!((size, m), (max + 1, max));
            }
            other => panic!("expected FrameTooLarge, got {other:?}"),
        }
        assert_eq!(buf.capacity(), capacity);
    }
}

#[test]
fn max_frame_size_is_inclusive() {
    let frame = Frame::request(
        RequestCode::SendMessage,
        3,
        &send_header(),
        Bytes::from(vec![1u8; 500]),
    )
    .unwrap();
    let encoded = encode(&frame);
    let size = encoded.len() - 4;

    let mut exact = FrameCodec::new(size);
    assert_eq!(
        exact.decode(&mut encoded.clone()).unwrap(),
        Some(frame.clone())
    );
    let mut out = BytesMut::new();
    exact.encode(&frame, &mut out).unwrap();
    assert_eq!(out, encoded);

    let mut small = FrameCodec::new(size - 1);
    assert!(matches!(
        small.decode(&mut encoded.clone()),
        Err(Error::FrameTooLarge { .. })
    ));
}

#[test]
fn encoder_refuses_frame_above_max_and_leaves_buffer_intact() {
    let mut codec = FrameCodec::new(1024);
    let mut buf = BytesMut::new();
    let ok = Frame::error(1, ResponseCode::Success, "ok");
    codec.encode(&ok, &mut buf).unwrap();
    let before = buf.clone();

    // Body alone exceeds the limit: refused before writing.
    let big = Frame::request(
        RequestCode::SendMessage,
        2,
        &send_header(),
        Bytes::from(vec![0u8; 2000]),
    )
    .unwrap();
    assert!(matches!(
        codec.encode(&big, &mut buf),
        Err(Error::FrameTooLarge { max: 1024, .. })
    ));
    assert_eq!(buf, before);

    // Body fits, envelope pushes it over: refused after writing, and rolled back.
    let edge = Frame::request(
        RequestCode::SendMessage,
        2,
        &NoHeader {},
        Bytes::from(vec![0u8; 1020]),
    )
    .unwrap();
    assert!(matches!(
        codec.encode(&edge, &mut buf),
        Err(Error::FrameTooLarge { .. })
    ));
    assert_eq!(buf, before);
}

// ---------------------------------------------------------------------------------------
// malformed input

#[test]
fn garbage_after_valid_length_prefix_is_malformed() {
    let garbage: &[&[u8]] = &[
        b"\xc1\xc1\xc1\xc1",     // reserved MessagePack marker
        b"hello, world",         // text (positive fixints, wrong shape)
        b"\x85\xa7version",      // map cut short
        b"\xdf\xff\xff\xff\xff", // map announcing 4 billion entries
        b"\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x90", // deep nesting
        b"\x80",                 // empty map: required fields missing
    ];
    for bytes in garbage {
        let mut buf = prefixed(bytes.len() as u32, bytes);
        match FrameCodec::default().decode(&mut buf) {
            Err(e @ Error::Malformed { .. }) => assert!(e.is_fatal()),
            other => panic!("{bytes:?}: expected Malformed, got {other:?}"),
        }
    }
}

#[test]
fn zero_length_and_unknown_kind_are_malformed() {
    let mut buf = prefixed(0, &[]);
    assert!(matches!(
        FrameCodec::default().decode(&mut buf),
        Err(Error::Malformed { .. })
    ));

    #[derive(Serialize)]
    struct Envelope {
        version: u16,
        kind: u8,
        opaque: u32,
        code: i32,
    }
    let payload = rmp_serde::to_vec_named(&Envelope {
        version: 1,
        kind: 9,
        opaque: 1,
        code: 10,
    })
    .unwrap();
    let mut buf = prefixed(payload.len() as u32, &payload);
    match FrameCodec::default().decode(&mut buf) {
        Err(Error::Malformed { reason }) => assert!(reason.contains("kind 9"), "{reason}"),
        other => panic!("expected Malformed, got {other:?}"),
    }
}

#[test]
fn connection_closed_mid_frame_is_malformed() {
    let encoded = encode(&Frame::error(1, ResponseCode::SystemError, "x"));
    let mut buf = BytesMut::from(&encoded[..encoded.len() - 1]);
    assert!(matches!(
        FrameCodec::default().decode_eof(&mut buf),
        Err(Error::Malformed { .. })
    ));
}

#[test]
fn unknown_envelope_keys_are_ignored() {
    // A newer peer may add keys; this build must still read the frame.
    #[derive(Serialize)]
    struct NewerEnvelope<'a> {
        version: u16,
        kind: u8,
        opaque: u32,
        code: i32,
        trace_id: &'a str,
        #[serde(with = "serde_bytes")]
        body: &'a [u8],
    }
    let payload = rmp_serde::to_vec_named(&NewerEnvelope {
        version: 1,
        kind: 1,
        opaque: 8,
        code: 0,
        trace_id: "abc",
        body: b"payload",
    })
    .unwrap();
    let frame = FrameCodec::default()
        .decode(&mut prefixed(payload.len() as u32, &payload))
        .unwrap()
        .unwrap();
    assert_eq!(frame.opaque, 8);
    assert_eq!(frame.response_code(), Some(ResponseCode::Success));
    assert_eq!(&frame.body[..], b"payload");
}

// ---------------------------------------------------------------------------------------
// request-level errors

#[test]
fn unknown_code_decodes_at_frame_level_and_is_answerable() {
    let frame = Frame::request(RequestCode::SendMessage, 77, &send_header(), Bytes::new()).unwrap();
    let frame = Frame {
        code: 9999,
        ..frame
    };
    let out = round_trip(&frame);
    assert_eq!(out.opaque, 77);
    assert_eq!(out.code, 9999);
    assert_eq!(out.request_code(), None);

    let err = decode_request(&out).unwrap_err();
    assert!(matches!(err, Error::UnknownCode(9999)), "{err:?}");
    assert!(!err.is_fatal());
    let reply = out.error_reply(&err).unwrap();
    assert_eq!(reply.opaque, 77);
    assert_eq!(
        reply.response_code(),
        Some(ResponseCode::RequestCodeNotSupported)
    );
    assert!(reply.remark.unwrap().contains("9999"));

    // One-way requests are never answered, not even with an error.
    let oneway = Frame {
        kind: FrameKind::Oneway,
        ..out
    };
    assert!(oneway.error_reply(&err).is_none());
}

#[test]
fn bad_header_names_code_and_type() {
    // A pull header sent under the send code.
    let frame = Frame::request(RequestCode::SendMessage, 1, &pull_header(), Bytes::new()).unwrap();
    let err = decode_request(&round_trip(&frame)).unwrap_err();
    match &err {
        Error::BadHeader {
            code,
            type_name,
            reason,
        } => {
            assert_eq!(*code, 10);
            assert_eq!(*type_name, "SendMessageRequestHeader");
            assert!(reason.contains("producer_group"), "{reason}");
        }
        other => panic!("expected BadHeader, got {other:?}"),
    }
    assert_eq!(err.response_code(), ResponseCode::InvalidParameter);

    // A heartbeat with a body that is not a HeartbeatData.
    let frame = Frame::request(
        RequestCode::HeartBeat,
        2,
        &NoHeader {},
        Bytes::from_static(b"\x01"),
    )
    .unwrap();
    assert!(matches!(
        decode_request(&frame),
        Err(Error::BadBody { code: 34, .. })
    ));
}

#[test]
fn responses_and_unsupported_versions_are_not_requests() {
    let response = Frame::error(3, ResponseCode::Success, "");
    assert!(matches!(
        decode_request(&response),
        Err(Error::NotARequest { opaque: 3, .. })
    ));
    assert!(response.error_reply(&Error::UnknownCode(1)).is_none());

    let future = Frame {
        version: PROTOCOL_VERSION + 1,
        ..Request::GetBrokerClusterInfo.to_frame(4).unwrap()
    };
    let err = decode_request(&round_trip(&future)).unwrap_err();
    assert!(matches!(err, Error::VersionNotSupported { .. }), "{err:?}");
    assert_eq!(err.response_code(), ResponseCode::VersionNotSupported);
}

// ---------------------------------------------------------------------------------------
// zero copy and wire shape

#[test]
fn decoded_body_and_header_point_into_the_receive_buffer() {
    let frame = Request::SendMessage(send_header(), Bytes::from(vec![0xAB; 4096]))
        .to_frame(1)
        .unwrap();
    let mut buf = encode(&frame);
    let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
    let out = FrameCodec::default().decode(&mut buf).unwrap().unwrap();
    for (name, part) in [("body", &out.body), ("header", &out.header)] {
        let start = part.as_ptr() as usize;
        assert!(
            range.contains(&start) && start + part.len() <= range.end,
            "{name} was copied out of the receive buffer"
        );
    }
    assert_eq!(out.body, frame.body);
}

#[test]
fn wire_format_is_a_named_map_with_binary_body() {
    let frame = Frame::request(
        RequestCode::SendMessage,
        0x0102_0304,
        &send_header(),
        Bytes::from_static(b"BODYBYTES"),
    )
    .unwrap();
    let encoded = encode(&frame);
    let len = u32::from_be_bytes(encoded[..4].try_into().unwrap()) as usize;
    assert_eq!(len, encoded.len() - 4);
    let map: HashMap<String, serde::de::IgnoredAny> = rmp_serde::from_slice(&encoded[4..]).unwrap();
    for key in ["version", "kind", "opaque", "code", "header", "body"] {
        assert!(map.contains_key(key), "missing key {key}");
    }
    // The body is a MessagePack bin (0xc4, length, bytes), not an array of numbers.
    let needle = [&[0xc4, 9][..], b"BODYBYTES"].concat();
    assert!(encoded.windows(needle.len()).any(|w| w == needle));
}

// ---------------------------------------------------------------------------------------
// through a real async pipe

#[tokio::test]
async fn frames_cross_a_framed_pipe() {
    let (client, server) = tokio::io::duplex(64);
    let mut writer = FramedWrite::new(client, FrameCodec::default());
    let mut reader = FramedRead::new(server, FrameCodec::default());
    let frames: Vec<Frame> = every_request()
        .iter()
        .enumerate()
        .map(|(i, r)| r.to_frame(i as u32).unwrap())
        .collect();
    let sent = frames.clone();
    let send = tokio::spawn(async move {
        for frame in sent {
            writer.send(frame).await.unwrap();
        }
        SinkExt::<Frame>::close(&mut writer).await.unwrap();
    });
    let mut received = Vec::new();
    while let Some(frame) = reader.next().await {
        received.push(frame.unwrap());
    }
    send.await.unwrap();
    assert_eq!(received, frames);
}
