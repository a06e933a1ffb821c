//! Sends that arrive together: the broker appends the sends of one socket read together, so
//! these tests pipeline many requests in one write on a raw connection and check that each
//! still gets its own answer, in queue order, that a bad send fails alone, and that a pull
//! held at the end of the queue is answered by a send that lands in such a burst.

mod support;

use std::time::Duration;

use actimq::internals::protocol::batch::{encode_batch, BatchEntry};
use actimq::internals::protocol::message::{
    PullMessageRequestHeader, SendMessageRequestHeader, SendMessageResponseHeader,
};
use actimq::internals::protocol::{Frame, FrameCodec, RequestCode, ResponseCode};
use actimq::internals::storage::record::{self, encode_properties, Verify};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use support::TestCluster;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_util::codec::{Encoder, FramedRead};

const TOPIC: &str = "Bursts";
const WAIT: Duration = Duration::from_secs(10);

type Reader = FramedRead<tokio::net::tcp::OwnedReadHalf, FrameCodec>;
type Writer = tokio::net::tcp::OwnedWriteHalf;

/// One broker with the test topic (one queue).
async fn cluster() -> TestCluster {
    let mut cluster = TestCluster::start(1, 1).await;
    cluster.create_topic(TOPIC, 1).await;
    cluster
}

/// A raw connection to the broker.
async fn connect(cluster: &TestCluster) -> (Writer, Reader) {
    let stream = TcpStream::connect(cluster.broker_addr(0)).await.unwrap();
    let (r, w) = stream.into_split();
    (w, FramedRead::new(r, FrameCodec::default()))
}

fn send_header(properties: String) -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "burst-producers".into(),
        topic: TOPIC.into(),
        queue_id: 0,
        properties,
        ..Default::default()
    }
}

fn send(opaque: u32, body: &str) -> Frame {
    let props = encode_properties([("UNIQ_KEY", body)]);
    Frame::request(
        RequestCode::SendMessage,
        opaque,
        &send_header(props),
        Bytes::from(body.to_owned()),
    )
    .unwrap()
}

/// Pipelines `frames` in one write and returns the answers, in arrival order.
async fn burst(
    write: &mut Writer,
    read: &mut Reader,
    frames: &[Frame],
    answers: usize,
) -> Vec<Frame> {
    let mut out = BytesMut::new();
    let mut codec = FrameCodec::default();
    for f in frames {
        codec.encode(f, &mut out).unwrap();
    }
    write.write_all(&out).await.unwrap();
    let mut got = Vec::new();
    while got.len() < answers {
        let next = tokio::time::timeout(WAIT, read.next())
            .await
            .expect("answers within the deadline")
            .expect("connection open")
            .expect("decodable answer");
        got.push(next);
    }
    got
}

/// The bodies stored in queue 0 from `offset` on, read with one pull.
async fn stored_bodies(
    write: &mut Writer,
    read: &mut Reader,
    opaque: u32,
    offset: i64,
) -> Vec<String> {
    let pull = Frame::request(
        RequestCode::PullMessage,
        opaque,
        &pull_header(offset, 0, 0),
        Bytes::new(),
    )
    .unwrap();
    let answer = burst(write, read, &[pull], 1).await.remove(0);
    assert_eq!(
        answer.response_code(),
        Some(ResponseCode::Success),
        "{answer:?}"
    );
    bodies(&answer.body)
}

fn pull_header(offset: i64, sys_flag: i32, suspend_ms: i64) -> PullMessageRequestHeader {
    PullMessageRequestHeader {
        consumer_group: "burst-readers".into(),
        topic: TOPIC.into(),
        queue_id: 0,
        queue_offset: offset,
        max_msg_nums: 1000,
        sys_flag,
        suspend_timeout_millis: suspend_ms,
        ..Default::default()
    }
}

fn bodies(mut buf: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let view = record::decode(buf, Verify::Crc).expect("a whole record");
        out.push(String::from_utf8_lossy(view.body).into_owned());
        buf = &buf[view.total_size as usize..];
    }
    out
}

#[test]
fn a_pipelined_burst_is_stored_in_order_and_a_bad_send_fails_alone() {
    actix_rt::System::new().block_on(async {
        let cluster = cluster().await;
        let (mut w, mut r) = connect(&cluster).await;

        // 40 sends, one of them with properties too long to store, one one-way, and one
        // batch request of three: all in one write.
        let mut frames = Vec::new();
        let mut expected = Vec::new();
        for i in 0..40u32 {
            let body = format!("m{i}");
            let frame = match i {
                13 => {
                    let huge = encode_properties([("P", "x".repeat(40_000).as_str())]);
                    Frame::request(
                        RequestCode::SendMessage,
                        i,
                        &send_header(huge),
                        Bytes::from(body),
                    )
                    .unwrap()
                }
                21 => {
                    expected.push(body.clone());
                    Frame::oneway(
                        RequestCode::SendMessage,
                        i,
                        &send_header(String::new()),
                        Bytes::from(body),
                    )
                    .unwrap()
                }
                30 => {
                    let entries: Vec<BatchEntry> = (0..3)
                        .map(|k| {
                            let b = format!("m{i}.{k}");
                            expected.push(b.clone());
                            BatchEntry {
                                flag: 0,
                                body: Bytes::from(b),
                                properties: String::new(),
                            }
                        })
                        .collect();
                    let header = SendMessageRequestHeader {
                        batch: true,
                        ..send_header(String::new())
                    };
                    Frame::request(
                        RequestCode::SendBatchMessage,
                        i,
                        &header,
                        encode_batch(&entries),
                    )
                    .unwrap()
                }
                _ => {
                    expected.push(body.clone());
                    send(i, &body)
                }
            };
            frames.push(frame);
        }
        let answers = burst(&mut w, &mut r, &frames, 39).await;

        let mut offsets = Vec::new();
        for a in &answers {
            if a.opaque == 13 {
                assert_eq!(
                    a.response_code(),
                    Some(ResponseCode::MessageIllegal),
                    "{a:?}"
                );
                continue;
            }
            assert_eq!(a.response_code(), Some(ResponseCode::Success), "{a:?}");
            let h: SendMessageResponseHeader = a.decode_header().unwrap();
            assert_eq!(h.queue_id, 0);
            if a.opaque == 30 {
                assert_eq!(h.msg_id.split(',').count(), 3, "one id per batched message");
            }
            offsets.push((a.opaque, h.queue_offset));
        }
        assert!(
            answers.iter().all(|a| a.opaque != 21),
            "no answer to one-way"
        );
        // Answers come in request order, with queue offsets in that order too.
        let mut sorted = offsets.clone();
        sorted.sort();
        assert_eq!(offsets, sorted);
        assert!(offsets.windows(2).all(|w| w[0].1 < w[1].1));

        let stored = stored_bodies(&mut w, &mut r, 1000, 0).await;
        assert_eq!(stored, expected);
        cluster.shutdown().await;
    });
}

#[test]
fn a_held_pull_is_answered_by_a_send_in_a_burst() {
    actix_rt::System::new().block_on(async {
        let cluster = cluster().await;
        let (mut w, mut r) = connect(&cluster).await;
        let (mut ow, mut or) = connect(&cluster).await;

        // A pull at the end of the empty queue, allowed to wait 15 s, then one that may not
        // wait: the queue actor takes them in order, so once the second is answered ("not
        // found") the first is being held.
        let held_pull = Frame::request(
            RequestCode::PullMessage,
            1,
            &pull_header(0, 0x2, 15_000),
            Bytes::new(),
        )
        .unwrap();
        let quick_pull = Frame::request(
            RequestCode::PullMessage,
            2,
            &pull_header(0, 0, 0),
            Bytes::new(),
        )
        .unwrap();
        let quick = burst(&mut ow, &mut or, &[held_pull, quick_pull], 1).await;
        assert_eq!(quick[0].opaque, 2, "the held pull must not be answered yet");
        assert_eq!(quick[0].response_code(), Some(ResponseCode::PullNotFound));

        let sends: Vec<Frame> = (0..5).map(|i| send(10 + i, &format!("late{i}"))).collect();
        let answers = burst(&mut w, &mut r, &sends, 5).await;
        assert!(answers
            .iter()
            .all(|a| a.response_code() == Some(ResponseCode::Success)));

        let held = tokio::time::timeout(WAIT, or.next())
            .await
            .expect("the held pull is answered well before its 15 s hold ends")
            .unwrap()
            .unwrap();
        assert_eq!(held.opaque, 1);
        assert_eq!(
            held.response_code(),
            Some(ResponseCode::Success),
            "{held:?}"
        );
        assert!(!bodies(&held.body).is_empty());
        assert!(bodies(&held.body)[0].starts_with("late"));
        cluster.shutdown().await;
    });
}

#[test]
fn sends_before_a_broken_frame_are_answered_before_the_connection_closes() {
    actix_rt::System::new().block_on(async {
        let cluster = cluster().await;
        let (mut w, mut r) = connect(&cluster).await;

        // Three sends, then a frame that cannot be decoded, all in one write.
        let mut out = BytesMut::new();
        let mut codec = FrameCodec::default();
        for i in 0..3 {
            codec
                .encode(&send(i, &format!("before{i}")), &mut out)
                .unwrap();
        }
        out.extend_from_slice(&[0, 0, 0, 12]);
        out.extend_from_slice(b"hello world!");
        w.write_all(&out).await.unwrap();

        let mut answered = Vec::new();
        loop {
            match tokio::time::timeout(WAIT, r.next()).await {
                Ok(Some(Ok(f))) => answered.push(f),
                Ok(None) | Ok(Some(Err(_))) => break,
                Err(_) => panic!("the broken connection was not closed within {WAIT:?}"),
            }
        }
        let codes: Vec<_> = answered
            .iter()
            .map(|f| (f.opaque, f.response_code()))
            .collect();
        assert_eq!(
            codes,
            (0..3)
                .map(|i| (i, Some(ResponseCode::Success)))
                .collect::<Vec<_>>(),
            "every send executed before the bad frame is answered, then the connection closes"
        );

        let (mut ow, mut or) = connect(&cluster).await;
        assert_eq!(
            stored_bodies(&mut ow, &mut or, 9, 0).await,
            ["before0", "before1", "before2"]
        );
        cluster.shutdown().await;
    });
}
