//! Stored-record decoder, fed arbitrary bytes as a torn or garbled commit log would.
//!
//! Checks, besides never panicking:
//! - a decoded record lies inside the input, its body is the bytes at `body_range`, and the
//!   levels nest: what `Strict` accepts `Crc` accepts, and what `Crc` accepts `Structure`
//!   accepts, with the same fields;
//! - `peek` and `peek_total_size` agree with a decoded record's size and magic;
//! - `StoredMessage::decode` succeeds exactly when `record::decode` with `Verify::Crc` does,
//!   with the same fields;
//! - a record `Strict` accepts, re-encoded from its fields with the crate's encoder, decodes
//!   to the same fields (the encoder and decoder agree on the layout and the record CRC).
//!
//! A mutation almost always breaks a record's CRCs, so each input is checked as it is and
//! again with its body CRC and record CRC recomputed, which lets mutated records reach the
//! checks behind `Crc` and `Strict`.

#![no_main]

use actimq::internals::storage::record::{
    self, body_crc, Peek, RecordView, Verify, NAME_VALUE_SEPARATOR, PROPERTY_RECORD_CRC,
    PROPERTY_SEPARATOR, RECORD_CRC_SUFFIX_LEN,
};
use actimq::internals::storage::StoredMessage;
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

fn check_view(data: &[u8], view: &RecordView<'_>) {
    assert!(view.total_size <= data.len());
    assert!(view.body_range.end <= view.total_size);
    assert_eq!(&data[view.body_range.clone()], view.body);
    assert!(view.topic.len() <= 255);
    assert_eq!(record::peek(data), Ok(Peek::Message(view.total_size)));
    assert_eq!(record::peek_total_size(data), Ok(view.total_size));
}

fn check_stored(data: &[u8], view: &RecordView<'_>, stored: &StoredMessage) {
    assert_eq!(&stored.raw[..], data);
    assert_eq!(&stored.body[..], view.body);
    assert_eq!(stored.topic, view.topic);
    assert_eq!(stored.properties, view.properties);
    assert_eq!(stored.queue_id, view.queue_id);
    assert_eq!(stored.queue_offset, view.queue_offset);
    assert_eq!(stored.physical_offset, view.physical_offset);
    assert_eq!(stored.flag, view.flag);
    assert_eq!(stored.sys_flag, view.sys_flag);
    assert_eq!(stored.born_timestamp, view.born_timestamp);
    assert_eq!(stored.born_host, view.born_host);
    assert_eq!(stored.store_timestamp, view.store_timestamp);
    assert_eq!(stored.store_host, view.store_host);
    assert_eq!(stored.reconsume_times, view.reconsume_times);
    let _ = stored.keys().count();
    let _ = stored.offset_msg_id();
}

/// Re-encodes a record `Strict` accepted and checks it decodes to the same fields.
fn check_reencode(view: &RecordView<'_>) {
    // `None`: the encoder would add a separator before the CRC, a different record.
    if let Some(buf) = record::reencode(view) {
        let again = record::decode(&buf, Verify::Strict).expect("a re-encoded record decodes");
        assert_eq!(&again, view);
    }
}

/// `data` with the body CRC and, when the record ends with a record-CRC property, the
/// record CRC made right for its bytes; `None` when `data` is no record or is already right.
fn with_crcs_fixed(data: &[u8]) -> Option<Vec<u8>> {
    let view = record::decode(data, Verify::Structure).ok()?;
    let (n, body) = (view.total_size, view.body_range.clone());
    let mut fixed = data.to_vec();
    fixed[8..12].copy_from_slice(&body_crc(&data[body]).to_be_bytes());
    let name_at = n.checked_sub(RECORD_CRC_SUFFIX_LEN)?;
    let mut suffix = PROPERTY_RECORD_CRC.as_bytes().to_vec();
    suffix.push(NAME_VALUE_SEPARATOR as u8);
    if fixed[name_at..n - 11] == suffix[..] && fixed[n - 1] == PROPERTY_SEPARATOR as u8 {
        let mut crc = crc32fast::hash(&fixed[..n - 11]);
        for d in fixed[n - 11..n - 1].iter_mut().rev() {
            *d = b'0' + (crc % 10) as u8;
            crc /= 10;
        }
    }
    (fixed != data).then_some(fixed)
}

fuzz_target!(|data: &[u8]| {
    check(data);
    if let Some(fixed) = with_crcs_fixed(data) {
        check(&fixed);
    }
});

fn check(data: &[u8]) {
    let structure = record::decode(data, Verify::Structure);
    let crc = record::decode(data, Verify::Crc);
    let strict = record::decode(data, Verify::Strict);
    let _ = record::peek(data);
    let _ = record::peek_total_size(data);

    if let Ok(view) = &structure {
        check_view(data, view);
        let _ = view.tags_code();
    }
    if let Ok(view) = &crc {
        assert_eq!(
            structure.as_ref(),
            Ok(view),
            "Crc accepted what Structure refused"
        );
    }
    if let Ok(view) = &strict {
        assert_eq!(crc.as_ref(), Ok(view), "Strict accepted what Crc refused");
        check_reencode(view);
    }
    for e in [&structure, &crc, &strict]
        .into_iter()
        .filter_map(|r| r.as_ref().err())
    {
        let _ = e.to_string();
    }

    match (StoredMessage::decode(Bytes::copy_from_slice(data)), &crc) {
        (Ok(stored), Ok(view)) => check_stored(data, view, &stored),
        (Err(a), Err(b)) => assert_eq!(&a, b),
        (a, b) => panic!("StoredMessage::decode and decode(Crc) disagree: {a:?} vs {b:?}"),
    }
}
