//! Consume-queue entry decoder, fed arbitrary bytes as a torn or garbled queue file would.
//!
//! The input is read as a queue segment: `CqEntry::from_bytes` at every 20-byte slot and at
//! the unaligned tail. Checks, besides never panicking: input shorter than an entry is
//! `None`; a slot with size 0 (never written) is `None`; any other slot decodes to exactly
//! its big-endian fields (offset u64, size u32, tag hash i64), whatever follows it.

#![no_main]

use actimq::internals::storage::consume_queue::{CqEntry, CQ_STORE_UNIT_SIZE};
use libfuzzer_sys::fuzz_target;

fn expected(slot: &[u8]) -> Option<CqEntry> {
    let slot: &[u8; CQ_STORE_UNIT_SIZE] = slot.get(..CQ_STORE_UNIT_SIZE)?.try_into().ok()?;
    let size = u32::from_be_bytes(slot[8..12].try_into().unwrap());
    (size > 0).then(|| CqEntry {
        physical_offset: u64::from_be_bytes(slot[0..8].try_into().unwrap()),
        size,
        tags_code: i64::from_be_bytes(slot[12..20].try_into().unwrap()),
    })
}

fuzz_target!(|data: &[u8]| {
    // Every offset, so slots are read with and without bytes after them.
    for start in 0..data.len().min(4 * CQ_STORE_UNIT_SIZE) + 1 {
        let rest = &data[start..];
        let got = CqEntry::from_bytes(rest);
        assert_eq!(got, expected(rest), "at byte {start}");
        if rest.len() < CQ_STORE_UNIT_SIZE {
            assert_eq!(got, None);
        }
        if let Some(e) = got {
            assert!(e.size > 0);
            // Only the first entry's bytes matter.
            assert_eq!(CqEntry::from_bytes(&rest[..CQ_STORE_UNIT_SIZE]), Some(e));
        }
    }
    for slot in data.chunks(CQ_STORE_UNIT_SIZE) {
        assert_eq!(CqEntry::from_bytes(slot), expected(slot));
    }
});
