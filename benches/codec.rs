//! Codec micro-benchmarks: encode and decode of a send request (1 KiB body) and of a pull
//! response (32 records of 1 KiB). Run with `cargo bench --bench codec`.
//!
//! Decoding is measured from a pre-encoded buffer that is cloned per iteration (a memcpy
//! of the frame, which a socket read costs anyway); encoding writes into a reused buffer.

use std::time::Duration;

use actimq::internals::protocol::message::{
    PullMessageRequestHeader, PullMessageResponseHeader, SendMessageRequestHeader,
};
use actimq::internals::protocol::{Frame, FrameCodec, Request, ResponseCode};
use bytes::{Bytes, BytesMut};
use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use tokio_util::codec::{Decoder, Encoder};

fn send_frame() -> Frame {
    let header = SendMessageRequestHeader {
        producer_group: "BenchProducerGroup".into(),
        topic: "BenchTopic".into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 3,
        sys_flag: 0,
        born_timestamp: 1_700_000_000_000,
        flag: 0,
        properties: "TAGS\u{1}TagA\u{2}KEYS\u{1}key-1\u{2}UNIQ_KEY\u{1}0A0000010000000000000000000000FF\u{2}"
            .into(),
        reconsume_times: 0,
        batch: false,
        max_reconsume_times: None,
    };
    Request::SendMessage(header, Bytes::from(vec![b'x'; 1024]))
        .to_frame(7)
        .expect("encode send header")
}

fn pull_response_frame() -> Frame {
    let header = PullMessageResponseHeader {
        suggest_which_broker_id: 0,
        next_begin_offset: 1032,
        min_offset: 0,
        max_offset: 4096,
    };
    Frame::response(
        9,
        ResponseCode::Success,
        &header,
        Bytes::from(vec![b'r'; 32 * 1024]),
    )
    .expect("encode pull header")
}

fn pull_request_frame() -> Frame {
    let header = PullMessageRequestHeader {
        consumer_group: "BenchConsumerGroup".into(),
        topic: "BenchTopic".into(),
        queue_id: 3,
        queue_offset: 1000,
        max_msg_nums: 32,
        sys_flag: 0x3,
        commit_offset: 990,
        suspend_timeout_millis: 15_000,
        subscription: Some("*".into()),
        sub_version: 1_700_000_000_000,
        expression_type: Some("TAG".into()),
        max_msg_bytes: None,
    };
    Request::PullMessage(header)
        .to_frame(9)
        .expect("encode pull request")
}

fn bench_frame(c: &mut Criterion, name: &str, frame: &Frame) {
    let mut codec = FrameCodec::default();
    let mut encoded = BytesMut::new();
    codec.encode(frame, &mut encoded).expect("encode");

    let mut group = c.benchmark_group(name);
    group
        .measurement_time(Duration::from_secs(3))
        .throughput(Throughput::Bytes(encoded.len() as u64));

    let mut dst = BytesMut::with_capacity(encoded.len() * 2);
    group.bench_function("encode", |b| {
        b.iter(|| {
            dst.clear();
            codec.encode(black_box(frame), &mut dst).expect("encode");
            black_box(dst.len())
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| {
            let mut src = encoded.clone();
            let frame = codec
                .decode(&mut src)
                .expect("decode")
                .expect("whole frame");
            black_box(frame)
        })
    });
    group.finish();
}

fn codec(c: &mut Criterion) {
    bench_frame(c, "send_1k", &send_frame());
    bench_frame(c, "pull_request", &pull_request_frame());
    bench_frame(c, "pull_response_32x1k", &pull_response_frame());
}

criterion_group!(benches, codec);
criterion_main!(benches);
