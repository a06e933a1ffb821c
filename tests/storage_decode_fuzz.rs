//! Property tests: the record decoder, the peek at a log position and the message-id parser
//! never panic and never read past their input, whatever bytes they get.

use actimq::internals::storage::message_id::decode_offset_msg_id;
use actimq::internals::storage::record::{
    self, body_crc, encode_into, MessageToStore, StoreStamp, Verify,
};
use actimq::internals::storage::StoredMessage;
use bytes::Bytes;
use proptest::prelude::*;

fn valid_record(body: &[u8], topic_len: usize, props: &str) -> Vec<u8> {
    let msg = MessageToStore::new(
        "T".repeat(topic_len.clamp(1, 127)),
        1,
        Bytes::copy_from_slice(body),
    )
    .with_properties([("TAGS", props)]);
    let stamp = StoreStamp {
        queue_offset: 3,
        physical_offset: 99,
        store_timestamp: 5,
        store_host: "127.0.0.1:10911".parse().unwrap(),
    };
    let mut buf = vec![0u8; msg.encoded_len(&stamp.store_host)];
    encode_into(&mut buf, &msg, body_crc(&msg.body), &stamp);
    buf
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048)) {
        for v in [Verify::Structure, Verify::Crc, Verify::Strict] {
            if let Ok(view) = record::decode(&data, v) {
                prop_assert!(view.total_size <= data.len());
            }
        }
        let _ = record::peek(&data);
        let _ = StoredMessage::decode(Bytes::from(data));
    }

    #[test]
    fn mutated_records_never_panic(
        body in proptest::collection::vec(any::<u8>(), 0..300),
        topic_len in 1usize..127,
        props in "[a-zA-Z0-9]{0,40}",
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..8),
        cut in any::<usize>(),
    ) {
        let mut buf = valid_record(&body, topic_len, &props);
        prop_assert!(record::decode(&buf, Verify::Strict).is_ok());
        for (at, x) in flips {
            let i = at % buf.len();
            buf[i] ^= x;
        }
        let cut = cut % (buf.len() + 1);
        for v in [Verify::Structure, Verify::Crc, Verify::Strict] {
            let _ = record::decode(&buf[..cut], v);
            let _ = record::decode(&buf, v);
        }
    }

    #[test]
    fn strict_decoding_rejects_every_single_byte_change(
        body in proptest::collection::vec(any::<u8>(), 0..200),
        at in any::<usize>(),
        x in 1u8..=255,
    ) {
        let mut buf = valid_record(&body, 5, "TagA");
        let i = at % buf.len();
        buf[i] ^= x;
        prop_assert!(record::decode(&buf, Verify::Strict).is_err(), "change at byte {} accepted", i);
    }

    #[test]
    fn message_ids_never_panic(s in "\\PC{0,80}") {
        let _ = decode_offset_msg_id(&s);
    }
}
