//! Direct readers for the shapes every send carries (the frame envelope, the send request
//! header and its answer's header) and a direct writer for the envelope. The serde decoders spend most of
//! a send's decoding time on generic machinery: every map key is UTF-8-checked and
//! matched as a string. These read the MessagePack map with `rmp` and compare keys as
//! bytes; the writer produces exactly the bytes serde would.
//!
//! The readers accept only the exact shape this crate's encoder writes (a map with string keys,
//! known fields once each, values of the expected MessagePack types) and return `None`
//! for anything else, which the caller then hands to the serde decoder. So they must never
//! accept input that the serde decoder would reject or read differently; the tests below
//! compare the two on encoded values and on arbitrary bytes.

use bytes::BufMut;
use rmp::decode::{read_bin_len, read_bool, read_int, read_map_len, read_str_len};
use rmp::Marker;

use super::frame::WireFrame;
use super::message::{SendMessageRequestHeader, SendMessageResponseHeader};

/// Splits `n` bytes off the front of `rd`.
fn take<'a>(rd: &mut &'a [u8], n: u32) -> Option<&'a [u8]> {
    let n = usize::try_from(n).ok()?;
    if rd.len() < n {
        return None;
    }
    let (head, tail) = rd.split_at(n);
    *rd = tail;
    Some(head)
}

fn str_value<'a>(rd: &mut &'a [u8]) -> Option<&'a str> {
    let n = read_str_len(rd).ok()?;
    std::str::from_utf8(take(rd, n)?).ok()
}

/// Records field `bit` as seen; `None` if it already was (serde refuses duplicates).
fn first_time(seen: &mut u32, bit: u32) -> Option<()> {
    let mask = 1 << bit;
    if *seen & mask != 0 {
        return None;
    }
    *seen |= mask;
    Some(())
}

fn peek_nil(rd: &mut &[u8]) -> bool {
    if rd.first() == Some(&Marker::Null.to_u8()) {
        *rd = &rd[1..];
        return true;
    }
    false
}

/// The frame envelope, as [`WireFrame`]'s serde decoder reads it, or `None`.
pub(crate) fn wire_frame(payload: &[u8]) -> Option<WireFrame<'_>> {
    let rd = &mut &payload[..];
    let entries = read_map_len(rd).ok()?;
    let mut seen = 0u32;
    let (mut version, mut kind, mut opaque, mut code) = (None, None, None, None);
    let (mut remark, mut header, mut body): (Option<&str>, &[u8], &[u8]) = (None, &[], &[]);
    for _ in 0..entries {
        let key_len = read_str_len(rd).ok()?;
        match take(rd, key_len)? {
            b"version" => {
                first_time(&mut seen, 0)?;
                version = Some(read_int(rd).ok()?);
            }
            b"kind" => {
                first_time(&mut seen, 1)?;
                kind = Some(read_int(rd).ok()?);
            }
            b"opaque" => {
                first_time(&mut seen, 2)?;
                opaque = Some(read_int(rd).ok()?);
            }
            b"code" => {
                first_time(&mut seen, 3)?;
                code = Some(read_int(rd).ok()?);
            }
            b"remark" => {
                first_time(&mut seen, 4)?;
                remark = if peek_nil(rd) {
                    None
                } else {
                    Some(str_value(rd)?)
                };
            }
            b"header" => {
                first_time(&mut seen, 5)?;
                let n = read_bin_len(rd).ok()?;
                header = take(rd, n)?;
            }
            b"body" => {
                first_time(&mut seen, 6)?;
                let n = read_bin_len(rd).ok()?;
                body = take(rd, n)?;
            }
            _ => return None,
        }
    }
    Some(WireFrame {
        version: version?,
        kind: kind?,
        opaque: opaque?,
        code: code?,
        remark,
        header,
        body,
    })
}

/// A send request header, as its serde decoder reads it, or `None`.
pub(crate) fn send_header(bytes: &[u8]) -> Option<SendMessageRequestHeader> {
    let rd = &mut &bytes[..];
    let entries = read_map_len(rd).ok()?;
    let mut seen = 0u32;
    let (mut producer_group, mut topic, mut queue_id, mut sys_flag) = (None, None, None, None);
    let (mut born_timestamp, mut flag) = (None, None);
    let mut h = SendMessageRequestHeader::default();
    for _ in 0..entries {
        let key_len = read_str_len(rd).ok()?;
        match take(rd, key_len)? {
            b"producer_group" => {
                first_time(&mut seen, 0)?;
                producer_group = Some(str_value(rd)?.to_owned());
            }
            b"topic" => {
                first_time(&mut seen, 1)?;
                topic = Some(str_value(rd)?.to_owned());
            }
            b"default_topic" => {
                first_time(&mut seen, 2)?;
                h.default_topic = str_value(rd)?.to_owned();
            }
            b"default_topic_queue_nums" => {
                first_time(&mut seen, 3)?;
                h.default_topic_queue_nums = read_int(rd).ok()?;
            }
            b"queue_id" => {
                first_time(&mut seen, 4)?;
                queue_id = Some(read_int(rd).ok()?);
            }
            b"sys_flag" => {
                first_time(&mut seen, 5)?;
                sys_flag = Some(read_int(rd).ok()?);
            }
            b"born_timestamp" => {
                first_time(&mut seen, 6)?;
                born_timestamp = Some(read_int(rd).ok()?);
            }
            b"flag" => {
                first_time(&mut seen, 7)?;
                flag = Some(read_int(rd).ok()?);
            }
            b"properties" => {
                first_time(&mut seen, 8)?;
                h.properties = str_value(rd)?.to_owned();
            }
            b"reconsume_times" => {
                first_time(&mut seen, 9)?;
                h.reconsume_times = read_int(rd).ok()?;
            }
            b"batch" => {
                first_time(&mut seen, 10)?;
                h.batch = read_bool(rd).ok()?;
            }
            b"max_reconsume_times" => {
                first_time(&mut seen, 11)?;
                h.max_reconsume_times = if peek_nil(rd) {
                    None
                } else {
                    Some(read_int(rd).ok()?)
                };
            }
            _ => return None,
        }
    }
    h.producer_group = producer_group?;
    h.topic = topic?;
    h.queue_id = queue_id?;
    h.sys_flag = sys_flag?;
    h.born_timestamp = born_timestamp?;
    h.flag = flag?;
    Some(h)
}

/// A send's answer header, as its serde decoder reads it, or `None`.
pub(crate) fn send_response_header(bytes: &[u8]) -> Option<SendMessageResponseHeader> {
    let rd = &mut &bytes[..];
    let entries = read_map_len(rd).ok()?;
    let mut seen = 0u32;
    let (mut msg_id, mut queue_id, mut queue_offset) = (None, None, None);
    let mut h = SendMessageResponseHeader::default();
    let optional_str = |rd: &mut &[u8]| -> Option<Option<String>> {
        if peek_nil(rd) {
            Some(None)
        } else {
            Some(Some(str_value(rd)?.to_owned()))
        }
    };
    for _ in 0..entries {
        let key_len = read_str_len(rd).ok()?;
        match take(rd, key_len)? {
            b"msg_id" => {
                first_time(&mut seen, 0)?;
                msg_id = Some(str_value(rd)?.to_owned());
            }
            b"queue_id" => {
                first_time(&mut seen, 1)?;
                queue_id = Some(read_int(rd).ok()?);
            }
            b"queue_offset" => {
                first_time(&mut seen, 2)?;
                queue_offset = Some(read_int(rd).ok()?);
            }
            b"transaction_id" => {
                first_time(&mut seen, 3)?;
                h.transaction_id = optional_str(rd)?;
            }
            b"batch_uniq_id" => {
                first_time(&mut seen, 4)?;
                h.batch_uniq_id = optional_str(rd)?;
            }
            _ => return None,
        }
    }
    h.msg_id = msg_id?;
    h.queue_id = queue_id?;
    h.queue_offset = queue_offset?;
    Some(h)
}

/// Writes `w` exactly as `rmp_serde::encode::write_named` does (the tests compare the
/// bytes), straight into the buffer: every frame in both directions goes through here,
/// and serde's path through `io::Write` cost about 900 instructions a frame.
pub(crate) fn write_wire_frame(out: &mut impl BufMut, w: &WireFrame<'_>) {
    let present = |b: bool| u32::from(b);
    let fields = 4
        + present(w.remark.is_some())
        + present(!w.header.is_empty())
        + present(!w.body.is_empty());
    put_map_len(out, fields);
    put_str(out, "version");
    put_uint(out, u64::from(w.version));
    put_str(out, "kind");
    put_uint(out, u64::from(w.kind));
    put_str(out, "opaque");
    put_uint(out, u64::from(w.opaque));
    put_str(out, "code");
    put_sint(out, i64::from(w.code));
    if let Some(remark) = w.remark {
        put_str(out, "remark");
        put_str(out, remark);
    }
    if !w.header.is_empty() {
        put_str(out, "header");
        put_bin(out, w.header);
    }
    if !w.body.is_empty() {
        put_str(out, "body");
        put_bin(out, w.body);
    }
}

// MessagePack's most compact forms, as `rmp::encode` chooses them. Lengths come from
// buffers the frame-size check has already bounded, far below `u32::MAX`.

fn put_map_len(out: &mut impl BufMut, n: u32) {
    match n {
        0..=15 => out.put_u8(0x80 | n as u8),
        16..=0xFFFF => {
            out.put_u8(0xDE);
            out.put_u16(n as u16);
        }
        _ => {
            out.put_u8(0xDF);
            out.put_u32(n);
        }
    }
}

/// A length after the marker for its width: `markers` are the u8, u16 and u32 forms.
fn put_len(out: &mut impl BufMut, n: usize, markers: [u8; 3]) {
    if let Ok(n) = u8::try_from(n) {
        out.put_u8(markers[0]);
        out.put_u8(n);
    } else if let Ok(n) = u16::try_from(n) {
        out.put_u8(markers[1]);
        out.put_u16(n);
    } else {
        out.put_u8(markers[2]);
        out.put_u32(n as u32);
    }
}

fn put_str(out: &mut impl BufMut, s: &str) {
    match s.len() {
        n @ 0..=31 => out.put_u8(0xA0 | n as u8),
        n => put_len(out, n, [0xD9, 0xDA, 0xDB]),
    }
    out.put_slice(s.as_bytes());
}

fn put_bin(out: &mut impl BufMut, b: &[u8]) {
    put_len(out, b.len(), [0xC4, 0xC5, 0xC6]);
    out.put_slice(b);
}

fn put_uint(out: &mut impl BufMut, v: u64) {
    match v {
        0..=0x7F => out.put_u8(v as u8),
        0x80..=0xFF => {
            out.put_u8(0xCC);
            out.put_u8(v as u8);
        }
        0x100..=0xFFFF => {
            out.put_u8(0xCD);
            out.put_u16(v as u16);
        }
        0x1_0000..=0xFFFF_FFFF => {
            out.put_u8(0xCE);
            out.put_u32(v as u32);
        }
        _ => {
            out.put_u8(0xCF);
            out.put_u64(v);
        }
    }
}

fn put_sint(out: &mut impl BufMut, v: i64) {
    match v {
        0.. => put_uint(out, v as u64),
        -32..=-1 => out.put_i8(v as i8),
        -128..=-33 => {
            out.put_u8(0xD0);
            out.put_i8(v as i8);
        }
        -32768..=-129 => {
            out.put_u8(0xD1);
            out.put_i16(v as i16);
        }
        -2_147_483_648..=-32769 => {
            out.put_u8(0xD2);
            out.put_i32(v as i32);
        }
        _ => {
            out.put_u8(0xD3);
            out.put_i64(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A frame envelope's fields, comparable.
    type Fields = (u16, u8, u32, i32, Option<String>, Vec<u8>, Vec<u8>);

    fn fields(w: &WireFrame<'_>) -> Fields {
        (
            w.version,
            w.kind,
            w.opaque,
            w.code,
            w.remark.map(str::to_owned),
            w.header.to_vec(),
            w.body.to_vec(),
        )
    }

    fn serde_frame(bytes: &[u8]) -> Option<Fields> {
        rmp_serde::from_slice::<WireFrame<'_>>(bytes)
            .ok()
            .map(|w| fields(&w))
    }

    fn serde_header(bytes: &[u8]) -> Option<SendMessageRequestHeader> {
        rmp_serde::from_slice(bytes).ok()
    }

    fn header_strategy() -> impl Strategy<Value = SendMessageRequestHeader> {
        (
            (".{0,12}", ".{0,12}", ".{0,8}", any::<i32>()),
            (any::<i32>(), any::<i32>(), any::<i64>(), any::<i32>()),
            (".{0,40}", any::<i32>(), any::<bool>(), any::<Option<i32>>()),
        )
            .prop_map(|(a, b, c)| SendMessageRequestHeader {
                producer_group: a.0,
                topic: a.1,
                default_topic: a.2,
                default_topic_queue_nums: a.3,
                queue_id: b.0,
                sys_flag: b.1,
                born_timestamp: b.2,
                flag: b.3,
                properties: c.0,
                reconsume_times: c.1,
                batch: c.2,
                max_reconsume_times: c.3,
            })
    }

    /// Arbitrary edits of `bytes`: a byte replaced, a cut, a byte inserted.
    fn mutate(mut bytes: Vec<u8>, at: usize, byte: u8, how: u8) -> Vec<u8> {
        if bytes.is_empty() {
            return vec![byte];
        }
        let at = at % bytes.len();
        match how % 3 {
            0 => bytes[at] = byte,
            1 => bytes.truncate(at),
            _ => bytes.insert(at, byte),
        }
        bytes
    }

    proptest! {
        #[test]
        fn frames_as_encoded_decode_as_serde_does(
            version in any::<u16>(), kind in any::<u8>(), opaque in any::<u32>(),
            code in any::<i32>(), remark in proptest::option::of(".{0,40}"),
            header in proptest::collection::vec(any::<u8>(), 0..40),
            body in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let wire = WireFrame {
                version, kind, opaque, code,
                remark: remark.as_deref(),
                header: &header,
                body: &body,
            };
            let bytes = rmp_serde::to_vec_named(&wire).unwrap();
            let mut direct = Vec::new();
            write_wire_frame(&mut direct, &wire);
            prop_assert_eq!(&direct, &bytes, "the direct encoder writes serde's bytes");
            let fast = wire_frame(&bytes).map(|w| fields(&w));
            prop_assert!(fast.is_some(), "the encoder's own output takes the direct path");
            prop_assert_eq!(fast, serde_frame(&bytes));
        }

        #[test]
        fn damaged_frames_are_read_as_serde_reads_them_or_left_to_it(
            remark in proptest::option::of(".{0,8}"),
            body in proptest::collection::vec(any::<u8>(), 0..20),
            at in any::<usize>(), byte in any::<u8>(), how in any::<u8>(),
        ) {
            let wire = WireFrame {
                version: 1, kind: 0, opaque: 7, code: 10,
                remark: remark.as_deref(), header: b"\x80", body: &body,
            };
            let bytes = mutate(rmp_serde::to_vec_named(&wire).unwrap(), at, byte, how);
            if let Some(fast) = wire_frame(&bytes) {
                prop_assert_eq!(Some(fields(&fast)), serde_frame(&bytes));
            }
        }

        #[test]
        fn send_headers_as_encoded_decode_as_serde_does(h in header_strategy()) {
            let bytes = crate::protocol::frame::encode_header(&h).unwrap();
            prop_assert_eq!(send_header(&bytes), Some(h.clone()));
            prop_assert_eq!(serde_header(&bytes), Some(h));
        }

        #[test]
        fn damaged_send_headers_are_read_as_serde_reads_them_or_left_to_it(
            h in header_strategy(), at in any::<usize>(), byte in any::<u8>(), how in any::<u8>(),
        ) {
            let bytes = crate::protocol::frame::encode_header(&h).unwrap();
            let bytes = mutate(bytes.to_vec(), at, byte, how);
            if let Some(fast) = send_header(&bytes) {
                prop_assert_eq!(Some(fast), serde_header(&bytes));
            }
        }

        #[test]
        fn send_answers_decode_as_serde_does(
            msg_id in ".{0,70}", queue_id in any::<i32>(), queue_offset in any::<i64>(),
            transaction_id in proptest::option::of(".{0,10}"),
            batch_uniq_id in proptest::option::of(".{0,10}"),
            at in any::<usize>(), byte in any::<u8>(), how in any::<u8>(),
        ) {
            let h = SendMessageResponseHeader {
                msg_id, queue_id, queue_offset, transaction_id, batch_uniq_id,
            };
            let bytes = crate::protocol::frame::encode_header(&h).unwrap();
            prop_assert_eq!(send_response_header(&bytes), Some(h.clone()));
            let damaged = mutate(bytes.to_vec(), at, byte, how);
            if let Some(fast) = send_response_header(&damaged) {
                prop_assert_eq!(Some(fast), rmp_serde::from_slice(&damaged).ok());
            }
        }

        #[test]
        fn arbitrary_bytes_never_disagree(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Some(fast) = wire_frame(&bytes) {
                prop_assert_eq!(Some(fields(&fast)), serde_frame(&bytes));
            }
            if let Some(fast) = send_header(&bytes) {
                prop_assert_eq!(Some(fast), serde_header(&bytes));
            }
            if let Some(fast) = send_response_header(&bytes) {
                prop_assert_eq!(Some(fast), rmp_serde::from_slice(&bytes).ok());
            }
        }
    }

    #[test]
    fn shapes_it_does_not_take_are_left_to_serde() {
        let h = SendMessageRequestHeader {
            producer_group: "g".into(),
            topic: "t".into(),
            ..Default::default()
        };
        // Positional (array) encoding, which serde reads and this decoder does not.
        let array = rmp_serde::to_vec(&h).unwrap();
        assert_eq!(send_header(&array), None);
        assert_eq!(serde_header(&array), Some(h.clone()));
        // An unknown key: serde ignores it, this decoder steps aside.
        #[derive(serde::Serialize)]
        struct WithExtra<'a> {
            #[serde(flatten)]
            h: &'a SendMessageRequestHeader,
            future_field: u8,
        }
        let extra = rmp_serde::to_vec_named(&WithExtra {
            h: &h,
            future_field: 1,
        })
        .unwrap();
        assert_eq!(send_header(&extra), None);
        assert_eq!(serde_header(&extra), Some(h.clone()));
        // A key twice: serde refuses it, and so does this decoder.
        let mut twice = Vec::new();
        rmp::encode::write_map_len(&mut twice, 7).unwrap();
        for (key, value) in [("producer_group", "g"), ("topic", "t"), ("topic", "u")] {
            rmp::encode::write_str(&mut twice, key).unwrap();
            rmp::encode::write_str(&mut twice, value).unwrap();
        }
        for key in ["queue_id", "sys_flag", "born_timestamp", "flag"] {
            rmp::encode::write_str(&mut twice, key).unwrap();
            rmp::encode::write_sint(&mut twice, 0).unwrap();
        }
        assert_eq!(send_header(&twice), None);
        assert_eq!(serde_header(&twice), None);
    }
}
