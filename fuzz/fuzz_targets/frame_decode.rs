//! Frame decoder and typed request headers, fed arbitrary bytes as a socket would.
//!
//! Input: one byte choosing where to split, then the stream. The stream is fed to
//! `FrameCodec::decode` in two reads (split at that point) and, separately, in one read.
//! Checks:
//! - neither panics, and both yield the same frames and the same error-or-not;
//! - the end of the stream is handled by `decode_eof` without a frame appearing from nowhere;
//! - each frame agrees with a plain serde decode of its envelope (the direct envelope reader
//!   must never accept what serde rejects or read it differently);
//! - each frame re-encodes and decodes to the same frame, and the re-encoding is canonical;
//! - `decode_request` on each frame: a typed request re-encodes to a frame that decodes to
//!   the same request; a send header read by the direct reader equals serde's reading of
//!   it; an error gives an error reply for requests only;
//! - a send's answer header read by the direct reader equals serde's reading of it.

#![no_main]

use actimq::internals::protocol::message::{SendMessageRequestHeader, SendMessageResponseHeader};
use actimq::internals::protocol::{decode_request, Frame, FrameCodec, FrameKind, Request};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use tokio_util::codec::{Decoder, Encoder};

/// The frame envelope as serde reads it: a copy of the crate's private `WireFrame`.
#[derive(Deserialize)]
struct WireFrame<'a> {
    version: u16,
    kind: u8,
    opaque: u32,
    code: i32,
    #[serde(default, borrow)]
    remark: Option<&'a str>,
    #[serde(default, borrow, with = "serde_bytes")]
    header: &'a [u8],
    #[serde(default, borrow, with = "serde_bytes")]
    body: &'a [u8],
}

/// The frames decoded from `chunks` read one after the other, with the stream offset each
/// one started at, and whether the stream ended in an error.
fn feed(chunks: &[&[u8]]) -> (Vec<(usize, Frame)>, bool) {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut consumed = 0;
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    frames.push((consumed, frame));
                    consumed += before - buf.len();
                }
                Ok(None) => {
                    assert_eq!(buf.len(), before, "a partial frame consumed bytes");
                    break;
                }
                Err(_) => return (frames, true),
            }
        }
    }
    match codec.decode_eof(&mut buf) {
        Ok(Some(_)) => panic!("decode_eof found a frame that decode did not"),
        Ok(None) => {
            assert!(buf.is_empty(), "decode_eof accepted leftover bytes");
            (frames, false)
        }
        Err(_) => (frames, true),
    }
}

/// The envelope of the frame starting at `at` in `stream`, as serde reads it, compared with
/// what the codec decoded.
fn check_envelope(stream: &[u8], at: usize, frame: &Frame) {
    let prefix: [u8; 4] = stream[at..at + 4].try_into().unwrap();
    let len = u32::from_be_bytes(prefix) as usize;
    let payload = &stream[at + 4..at + 4 + len];
    let mut de = rmp_serde::Deserializer::from_read_ref(payload);
    de.set_max_depth(8);
    let wire = match WireFrame::deserialize(&mut de) {
        Ok(wire) => wire,
        Err(e) => panic!("the codec decoded a frame serde rejects ({e}): {frame:?}"),
    };
    assert_eq!(wire.version, frame.version);
    assert_eq!(wire.opaque, frame.opaque);
    assert_eq!(wire.code, frame.code);
    assert_eq!(wire.remark, frame.remark.as_deref());
    assert_eq!(wire.header, &frame.header[..]);
    assert_eq!(wire.body, &frame.body[..]);
    let kind = match frame.kind {
        FrameKind::Request => 0,
        FrameKind::Response => 1,
        FrameKind::Oneway => 2,
    };
    assert_eq!(wire.kind, kind);
}

/// Encodes `frame` with a codec that takes any size (a frame read under one limit must
/// re-encode whatever its encoding was).
fn encode(frame: &Frame) -> BytesMut {
    let mut out = BytesMut::new();
    FrameCodec::new(usize::MAX)
        .encode(frame, &mut out)
        .expect("a decoded frame re-encodes");
    out
}

fn check_round_trip(frame: &Frame) {
    let mut bytes = encode(frame);
    let encoded = bytes.clone();
    let again = FrameCodec::new(usize::MAX)
        .decode(&mut bytes)
        .expect("a re-encoded frame decodes")
        .expect("a re-encoded frame is whole");
    assert!(bytes.is_empty(), "re-encoding left extra bytes");
    assert_eq!(&again, frame);
    assert_eq!(encode(&again), encoded, "re-encoding is not canonical");
}

fn check_request(frame: &Frame) {
    match decode_request(frame) {
        Ok(request) => {
            assert!(frame.kind != FrameKind::Response);
            assert_eq!(request.code().as_i32(), frame.code);
            if let Request::SendMessage(h, _) | Request::SendBatchMessage(h, _) = &request {
                let serde: SendMessageRequestHeader = frame
                    .decode_header()
                    .expect("serde reads a send header the direct reader took");
                assert_eq!(&serde, h);
            }
            let again = request.to_frame(frame.opaque).expect("a request encodes");
            assert_eq!(again.code, frame.code);
            let decoded = decode_request(&again).expect("a re-encoded request decodes");
            assert_eq!(decoded, request);
        }
        Err(e) => {
            let _ = e.to_string();
            let _ = e.response_code();
            match frame.error_reply(&e) {
                Some(reply) => {
                    assert_eq!(frame.kind, FrameKind::Request);
                    assert_eq!(reply.opaque, frame.opaque);
                    assert!(reply.is_response());
                    check_round_trip(&reply);
                }
                None => assert_ne!(frame.kind, FrameKind::Request),
            }
        }
    }
}

fn check_send_answer(frame: &Frame) {
    let direct = SendMessageResponseHeader::from_frame(frame);
    let serde = frame.decode_header::<SendMessageResponseHeader>();
    match (direct, serde) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(_), Err(_)) => {}
        (a, b) => panic!("direct and serde readings differ: {a:?} vs {b:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    let cut = usize::from(split) * stream.len() / 255;
    let (first, second) = stream.split_at(cut);

    let whole = feed(&[stream]);
    let split = feed(&[first, second]);
    assert_eq!(
        whole.1, split.1,
        "one read and two reads disagree on an error"
    );
    assert_eq!(
        whole.0, split.0,
        "one read and two reads give different frames"
    );

    for (at, frame) in &whole.0 {
        check_envelope(stream, *at, frame);
        check_round_trip(frame);
        check_request(frame);
        check_send_answer(frame);
    }
});
