//! Restarts: a clean restart keeps everything and reads no old segment (shown by the
//! store's scan counter); an unclean one scans; lookups by key, unique key and message id
//! work after both.

mod common;

use std::sync::atomic::Ordering;

use actimq::internals::storage::{AppendResult, MessageStore};
use common::{host, message, small_config};

const SEGMENT: u64 = 256 * 1024;

fn fill(store: &MessageStore, from: u64, to: u64) -> Vec<AppendResult> {
    (from..to)
        .map(|seq| {
            store
                .append(&message("Restart", (seq % 4) as u32, seq, 300))
                .unwrap()
        })
        .collect()
}

fn check_all(store: &MessageStore, results: &[AppendResult]) {
    for (seq, r) in results.iter().enumerate() {
        let m = store.read_by_physical(r.physical_offset).unwrap();
        assert!(m.body.starts_with(format!("msg-{seq}-").as_bytes()));
        let q = store
            .read_by_queue_offset("Restart", (seq % 4) as u32, r.queue_offset)
            .unwrap();
        assert_eq!(q.raw, m.raw);
    }
}

#[test]
fn clean_restart_keeps_everything_without_scanning() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path(), SEGMENT);
    let mut results;
    {
        let store = MessageStore::open(config.clone(), host()).unwrap();
        results = fill(&store, 0, 5_000);
        store.shutdown().unwrap();
    }
    let segments = std::fs::read_dir(dir.path().join("commitlog"))
        .unwrap()
        .count();
    assert!(segments >= 5);
    let store = MessageStore::open(config.clone(), host()).unwrap();
    assert!(store.stats().opened_clean.load(Ordering::Relaxed));
    assert_eq!(
        store.stats().open_records_scanned.load(Ordering::Relaxed),
        0
    );
    assert_eq!(
        store.stats().open_segments_scanned.load(Ordering::Relaxed),
        0
    );
    check_all(&store, &results);
    // Offsets continue: the next record of queue 0 gets the next queue offset.
    let more = fill(&store, 5_000, 5_004);
    assert_eq!(more[0].queue_offset, 1_250);
    assert_eq!(
        more[0].physical_offset,
        results.last().unwrap().end_offset()
    );
    results.extend(more);
    drop(store); // unclean this time

    let store = MessageStore::open(config, host()).unwrap();
    assert!(!store.stats().opened_clean.load(Ordering::Relaxed));
    assert!(
        store.stats().open_records_scanned.load(Ordering::Relaxed) > 0,
        "an unclean open scans"
    );
    check_all(&store, &results);
}

#[test]
fn lookups_by_key_and_id_survive_restart() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path(), SEGMENT);
    let results;
    {
        let store = MessageStore::open(config.clone(), host()).unwrap();
        results = fill(&store, 0, 3_000);
        store.shutdown().unwrap();
    }
    for clean in [true, false] {
        let store = MessageStore::open(config.clone(), host()).unwrap();
        for seq in [0u64, 1, 777, 2_999] {
            let r = &results[seq as usize];
            let by_key = store
                .query_by_key("Restart", &format!("key-{seq}"), 0, i64::MAX, 10)
                .unwrap();
            assert_eq!(by_key.len(), 1, "key-{seq} (clean={clean})");
            assert_eq!(by_key[0].physical_offset, r.physical_offset);
            let uniq = format!("UNIQ{seq:028X}");
            let by_uniq = store
                .query_by_key("Restart", &uniq, 0, i64::MAX, 10)
                .unwrap();
            assert_eq!(by_uniq.len(), 1);
            let by_id = store
                .read_by_msg_id(&r.msg_id())
                .unwrap()
                .expect("found by id");
            assert_eq!(by_id.physical_offset, r.physical_offset);
            assert_eq!(by_id.offset_msg_id(), r.msg_id());
            // The time window is honoured.
            let before = store
                .query_by_key(
                    "Restart",
                    &format!("key-{seq}"),
                    0,
                    r.store_timestamp - 1,
                    10,
                )
                .unwrap();
            assert!(before.is_empty());
        }
        assert!(store
            .query_by_key("Restart", "key-none", 0, i64::MAX, 10)
            .unwrap()
            .is_empty());
        assert!(store
            .query_by_key("Other", "key-1", 0, i64::MAX, 10)
            .unwrap()
            .is_empty());
        assert!(store.read_by_msg_id("not-an-id").unwrap().is_none());
        if clean {
            store.shutdown().unwrap();
        } else {
            drop(store);
        }
    }
}

#[test]
fn a_second_open_of_the_same_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path(), SEGMENT);
    let _store = MessageStore::open(config.clone(), host()).unwrap();
    let err = MessageStore::open(config, host()).unwrap_err().to_string();
    assert!(err.contains("locked"), "{err}");
}
