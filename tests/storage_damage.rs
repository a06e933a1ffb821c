//! Damage is found, contained and reported, never spread: the three cases a user met, on
//! the real store. A torn last record after a clean stop is cut at the next start; flipped
//! bytes in the middle of the log after a clean stop cost only the record they hit, which
//! a consumer's pull skips; flipped bytes in the first of three segments after a crash are
//! stepped over by recovery, which keeps both later segments. Every case checks that each
//! intact message is still read by a consumer-style pull loop that never stalls, and that
//! the damage is reported with its offsets.

mod common;

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use actimq::internals::storage::damage::{DamageKind, FoundBy};
use actimq::internals::storage::{AppendResult, GetStatus, MessageStore, StoredMessage};
use common::{host, message, small_config};

const TOPIC: &str = "Damage";
const SEGMENT: u64 = 64 * 1024;

fn write_messages(store: &MessageStore, count: u64) -> Vec<AppendResult> {
    (0..count)
        .map(|seq| store.append(&message(TOPIC, 0, seq, 300)).unwrap())
        .collect()
}

fn segment_path(dir: &Path, offset: u64) -> std::path::PathBuf {
    dir.join("commitlog")
        .join(format!("{:020}", offset - offset % SEGMENT))
}

/// Flips `len` bytes at commit-log offset `at`.
fn flip(dir: &Path, at: u64, len: usize) {
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(segment_path(dir, at))
        .unwrap();
    let mut buf = vec![0u8; len];
    f.seek(SeekFrom::Start(at % SEGMENT)).unwrap();
    f.read_exact(&mut buf).unwrap();
    for b in &mut buf {
        *b ^= 0x5A;
    }
    f.seek(SeekFrom::Start(at % SEGMENT)).unwrap();
    f.write_all(&buf).unwrap();
}

/// Pulls the queue from offset 0 to its end the way a consumer does (32 at a time, moving
/// to `next_offset`), with a bound on rounds so a stall fails instead of hanging. Returns
/// the sequence numbers read.
fn consume_all(store: &MessageStore) -> Vec<u64> {
    let mut offset = 0;
    let mut seqs = Vec::new();
    for _ in 0..10_000 {
        let got = store.get_messages(TOPIC, 0, offset, 32, 1 << 20, None);
        match got.status {
            GetStatus::Found | GetStatus::NoMatchedMessage => {}
            GetStatus::OffsetOverflowOne => return seqs,
            other => panic!("pull at {offset} answered {other:?}"),
        }
        assert!(
            got.next_offset > offset,
            "the consumer stalls at queue offset {offset}"
        );
        for raw in got.messages {
            let m = StoredMessage::decode(raw).expect("a pull hands out only valid records");
            let body = String::from_utf8_lossy(&m.body).into_owned();
            let seq = body
                .strip_prefix("msg-")
                .and_then(|b| b.split('-').next())
                .and_then(|n| n.parse().ok())
                .expect("a test message");
            seqs.push(seq);
        }
        offset = got.next_offset;
    }
    panic!("the queue never drained");
}

#[test]
fn a_torn_last_record_after_a_clean_stop_is_cut_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path(), SEGMENT);
    let sent = {
        let store = MessageStore::open(config.clone(), host()).unwrap();
        let sent = write_messages(&store, 100);
        store.shutdown().unwrap();
        sent
    };
    // Cut the file 50 bytes into the last record, as a disk that lost the end of a write.
    let last = sent.last().unwrap();
    let file = OpenOptions::new()
        .write(true)
        .open(segment_path(dir.path(), last.physical_offset))
        .unwrap();
    file.set_len(last.physical_offset % SEGMENT + 50).unwrap();
    drop(file);

    let store = MessageStore::open(config, host()).unwrap();
    assert_eq!(
        store.max_physical_offset(),
        last.physical_offset,
        "the torn record is not counted as stored"
    );
    assert_eq!(consume_all(&store), (0..99).collect::<Vec<_>>());
    let (ranges, _) = store.damage();
    assert!(
        ranges.iter().any(|r| r.from == last.physical_offset
            && r.kind == DamageKind::TornTail
            && r.found_by == FoundBy::Recovery),
        "the torn tail is reported with its offset: {ranges:?}"
    );
    // New sends go where the torn record was, and a consumer reads them.
    let r = store.append(&message(TOPIC, 0, 1000, 300)).unwrap();
    assert_eq!(r.physical_offset, last.physical_offset);
    assert_eq!(r.queue_offset, 99);
    let mut expected: Vec<u64> = (0..99).collect();
    expected.push(1000);
    assert_eq!(consume_all(&store), expected);
    store.shutdown().unwrap();
}

#[test]
fn flipped_bytes_after_a_clean_stop_cost_only_their_record() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path(), SEGMENT);
    let sent = {
        let store = MessageStore::open(config.clone(), host()).unwrap();
        let sent = write_messages(&store, 150);
        store.shutdown().unwrap();
        sent
    };
    let victim = &sent[60];
    flip(dir.path(), victim.physical_offset + 150, 8);

    let store = MessageStore::open(config, host()).unwrap();
    let expected: Vec<u64> = (0..150).filter(|s| *s != 60).collect();
    assert_eq!(consume_all(&store), expected, "every other message arrives");
    assert_eq!(
        consume_all(&store),
        expected,
        "a second consumer is not stuck either"
    );
    let (ranges, _) = store.damage();
    let found: Vec<_> = ranges
        .iter()
        .filter(|r| r.from == victim.physical_offset)
        .collect();
    assert_eq!(found.len(), 1, "reported once, with its offset: {ranges:?}");
    assert_eq!(found[0].to, victim.end_offset());
    assert_eq!(found[0].found_by, FoundBy::Read);
    assert!(
        store
            .stats()
            .damaged_records_skipped
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2,
        "each skip is counted"
    );
    store.shutdown().unwrap();
    // The report survives a restart.
    let store = MessageStore::open(small_config(dir.path(), SEGMENT), host()).unwrap();
    assert!(store
        .damage()
        .0
        .iter()
        .any(|r| r.from == victim.physical_offset));
    store.shutdown().unwrap();
}

#[test]
fn flipped_bytes_in_the_first_of_three_segments_after_a_crash_keep_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path(), SEGMENT);
    let sent = {
        let store = MessageStore::open(config.clone(), host()).unwrap();
        let mut sent = Vec::new();
        let mut seq = 0;
        while sent
            .last()
            .is_none_or(|r: &AppendResult| r.physical_offset < 2 * SEGMENT + SEGMENT / 2)
        {
            sent.push(store.append(&message(TOPIC, 0, seq, 300)).unwrap());
            seq += 1;
        }
        sent
        // Dropped without shutdown: as after kill -9.
    };
    // No checkpoint either, so recovery walks the log from its first segment.
    std::fs::remove_file(dir.path().join("checkpoint")).ok();
    let victim_index = sent
        .iter()
        .position(|r| r.physical_offset > SEGMENT / 2)
        .unwrap();
    let victim = sent[victim_index];
    flip(dir.path(), victim.physical_offset + 100, 8);

    let store = MessageStore::open(config, host()).unwrap();
    assert_eq!(
        store.max_physical_offset(),
        sent.last().unwrap().end_offset(),
        "the later segments are kept"
    );
    for seg in [SEGMENT, 2 * SEGMENT] {
        assert!(segment_path(dir.path(), seg).exists(), "segment {seg} kept");
    }
    let expected: Vec<u64> = (0..sent.len() as u64)
        .filter(|s| *s != victim_index as u64)
        .collect();
    assert_eq!(consume_all(&store), expected);
    let (ranges, _) = store.damage();
    assert!(
        ranges.iter().any(|r| r.from == victim.physical_offset
            && r.to == victim.end_offset()
            && r.kind == DamageKind::Corrupt
            && r.found_by == FoundBy::Recovery),
        "recovery reports the damaged range: {ranges:?}"
    );
    // Appends go on at the end, with the next queue offset.
    let r = store.append(&message(TOPIC, 0, 99_999, 300)).unwrap();
    assert_eq!(r.queue_offset, sent.len() as u64);
    store.shutdown().unwrap();
}
