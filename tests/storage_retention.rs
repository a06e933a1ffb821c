//! Retention: old segments go at the `delete_when` hour, or (only with the `delete_oldest`
//! policy, and never younger than its floor) at once when the disk is too full; consume
//! queues and index follow; reads below the new minimum get "offset moved".
//! A disk over its warning level refuses writes and still serves reads.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actimq::internals::storage::{
    AppendResult, DiskFullPolicy, Error, GetStatus, MessageStore, StoreConfig,
};
use common::{host, message, small_config};

const SEGMENT: u64 = 64 * 1024;

/// The first moment at least `after` from now whose UTC hour is `hour`.
fn next_hour(after: Duration, hour: u64) -> SystemTime {
    let t = SystemTime::now() + after;
    let secs = t.duration_since(UNIX_EPOCH).unwrap().as_secs();
    let start_of_hour = secs - secs % 3600;
    let mut h = start_of_hour;
    while (h / 3600) % 24 != hour || h < secs {
        h += 3600;
    }
    UNIX_EPOCH + Duration::from_secs(h + 60)
}

fn fill(store: &MessageStore) -> Vec<AppendResult> {
    (0..3_000)
        .map(|seq| {
            store
                .append(&message("Ret", (seq % 2) as u32, seq, 200))
                .unwrap()
        })
        .collect()
}

fn files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

fn config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        // Only the tests that want a "full disk" may see one, whatever this machine's use.
        disk_max_used_space_ratio: 100,
        disk_space_warning_level_ratio: 100,
        delete_file_batch_max: 1000,
        mapped_file_size_consume_queue: 20 * 64,
        max_index_num: 500,
        max_hash_slot_num: 64,
        ..small_config(dir, SEGMENT)
    }
}

#[test]
fn expired_segments_go_at_the_delete_hour_and_reads_below_get_offset_moved() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path()), host()).unwrap();
    let sent = fill(&store);
    let segments_before = files(&dir.path().join("commitlog"));
    let cq_before = files(&dir.path().join("consumequeue/Ret/0"));
    let index_before = files(&dir.path().join("index"));
    assert!(segments_before >= 8 && cq_before >= 5 && index_before >= 3);

    // Not yet expired, even at the delete hour.
    let report = store.clean_expired(next_hour(Duration::ZERO, 4)).unwrap();
    assert!(report.due);
    assert_eq!(report.deleted_segments, 0);
    // Expired but not the delete hour: nothing either.
    let report = store
        .clean_expired(next_hour(Duration::from_secs(73 * 3600), 5))
        .unwrap();
    assert!(!report.due && report.deleted_segments == 0);
    // Expired at the delete hour: every segment but the active one goes.
    let report = store
        .clean_expired(next_hour(Duration::from_secs(73 * 3600), 4))
        .unwrap();
    assert_eq!(report.deleted_segments, segments_before - 1);
    let min = store.min_physical_offset();
    assert_eq!(report.min_offset, min);
    assert!(min > 0);
    assert!(
        files(&dir.path().join("consumequeue/Ret/0")) < cq_before,
        "consume queue follows"
    );
    assert!(
        files(&dir.path().join("index")) < index_before,
        "index follows"
    );

    match store.read_by_physical(0) {
        Err(Error::OffsetMoved {
            requested: 0,
            min: m,
        }) => assert_eq!(m, min),
        other => panic!("expected offset moved, got {other:?}"),
    }
    let q_min = store.min_offset("Ret", 0);
    assert!(q_min > 0);
    match store.read_by_queue_offset("Ret", 0, 0) {
        Err(Error::OffsetMoved { min: m, .. }) => assert_eq!(m, q_min),
        other => panic!("expected offset moved, got {other:?}"),
    }
    let r = store.get_messages("Ret", 0, 0, 32, 1 << 20, None);
    assert_eq!(r.status, GetStatus::OffsetTooSmall);
    assert_eq!(r.next_offset, q_min);
    // Everything at or above the new minimum is still there.
    for s in sent.iter().filter(|s| s.physical_offset >= min) {
        store.read_by_physical(s.physical_offset).unwrap();
    }
    let first_kept = store.read_by_queue_offset("Ret", 0, q_min).unwrap();
    assert!(first_kept.physical_offset >= min);
    // Keys of deleted messages are gone; kept ones still resolve.
    assert!(store
        .query_by_key("Ret", "key-0", 0, i64::MAX, 4)
        .unwrap()
        .is_empty());
    assert_eq!(
        store
            .query_by_key("Ret", "key-2999", 0, i64::MAX, 4)
            .unwrap()
            .len(),
        1
    );
    store.shutdown().unwrap();

    // The new minimum survives a restart.
    let store = MessageStore::open(config(dir.path()), host()).unwrap();
    assert_eq!(store.min_physical_offset(), min);
    assert_eq!(store.min_offset("Ret", 0), q_min);
    assert!(matches!(
        store.read_by_physical(0),
        Err(Error::OffsetMoved { .. })
    ));
    assert_eq!(
        store
            .append(&message("Ret", 0, 9, 10))
            .unwrap()
            .queue_offset,
        1_500
    );
}

#[test]
fn a_too_full_disk_deletes_nothing_early_by_default() {
    let dir = tempfile::tempdir().unwrap();
    // Any real disk is more than 1 % used, so this store is always "too full".
    let cfg = StoreConfig {
        disk_max_used_space_ratio: 1,
        delete_file_batch_max: 3,
        ..config(dir.path())
    };
    assert_eq!(cfg.disk_full_policy, DiskFullPolicy::RefuseWrites);
    let store = MessageStore::open(cfg, host()).unwrap();
    fill(&store);
    let before = files(&dir.path().join("commitlog"));
    let report = store.clean_expired(next_hour(Duration::ZERO, 10)).unwrap();
    assert!(!report.forced && !report.due);
    assert_eq!(report.deleted_segments, 0);
    assert_eq!(files(&dir.path().join("commitlog")), before);
    assert_eq!(store.min_physical_offset(), 0);
}

#[test]
fn delete_oldest_never_deletes_a_segment_younger_than_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = StoreConfig {
        disk_max_used_space_ratio: 1,
        disk_full_policy: DiskFullPolicy::DeleteOldest,
        delete_file_batch_max: 3,
        ..config(dir.path())
    };
    assert_eq!(cfg.forced_retention_floor_minutes, 60);
    let store = MessageStore::open(cfg, host()).unwrap();
    fill(&store);
    let before = files(&dir.path().join("commitlog"));
    // Half an hour later every segment is still younger than the floor.
    let soon = SystemTime::now() + Duration::from_secs(30 * 60);
    let report = store.clean_expired(soon).unwrap();
    assert!(report.forced);
    assert_eq!(report.deleted_segments, 0, "nothing younger than the floor");
    assert_eq!(files(&dir.path().join("commitlog")), before);
    // Past the floor they go, oldest first.
    let later = SystemTime::now() + Duration::from_secs(61 * 60);
    assert_eq!(store.clean_expired(later).unwrap().deleted_segments, 3);
    assert_eq!(store.min_physical_offset(), 3 * SEGMENT);
}

#[test]
fn a_full_disk_deletes_the_oldest_segments_at_once_with_delete_oldest() {
    let dir = tempfile::tempdir().unwrap();
    // Any real disk is more than 1 % used, so this store is always "too full".
    let cfg = StoreConfig {
        disk_max_used_space_ratio: 1,
        disk_full_policy: DiskFullPolicy::DeleteOldest,
        forced_retention_floor_minutes: 0,
        delete_file_batch_max: 3,
        ..config(dir.path())
    };
    let store = MessageStore::open(cfg, host()).unwrap();
    fill(&store);
    let before = files(&dir.path().join("commitlog"));
    let report = store.clean_expired(next_hour(Duration::ZERO, 10)).unwrap();
    assert!(report.forced && !report.due);
    assert_eq!(
        report.deleted_segments, 3,
        "batch limit honoured, fresh files deleted anyway"
    );
    assert_eq!(files(&dir.path().join("commitlog")), before - 3);
    assert_eq!(store.min_physical_offset(), 3 * SEGMENT);
}

#[test]
fn a_disk_over_its_warning_level_refuses_writes_and_serves_reads() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(config(dir.path()), host()).unwrap();
    let stored: Vec<AppendResult> = (0..10)
        .map(|seq| store.append(&message("Full", 0, seq, 100)).unwrap())
        .collect();
    store.shutdown().unwrap();

    // Any real disk is more than 1 % used: reopened with that warning level, it is "full".
    let full = StoreConfig {
        disk_space_warning_level_ratio: 1,
        ..config(dir.path())
    };
    let store = MessageStore::open(full, host()).unwrap();
    let refused = store.append(&message("Full", 0, 10, 100));
    let Err(Error::DiskFull {
        used_percent,
        limit: 1,
    }) = refused
    else {
        panic!("expected a disk-full refusal, got {refused:?}");
    };
    assert!(used_percent >= 1);
    let text = Error::DiskFull {
        used_percent,
        limit: 1,
    }
    .to_string();
    assert!(
        text.contains("disk_space_warning_level_ratio") && text.contains("frees space"),
        "{text}"
    );
    assert!(matches!(
        store.check(&message("Full", 0, 10, 100)),
        Err(Error::DiskFull { .. })
    ));
    assert!(matches!(
        store.append_batch(&[message("Full", 1, 11, 100)]),
        Err(Error::DiskFull { .. })
    ));
    // A retention run measures again and still finds it full.
    store.clean_expired(SystemTime::now()).unwrap();
    assert!(matches!(
        store.append(&message("Full", 0, 10, 100)),
        Err(Error::DiskFull { .. })
    ));
    // Reads go on, and nothing was written.
    let got = store.get_messages("Full", 0, 0, 32, 1 << 20, None);
    assert_eq!(got.status, GetStatus::Found);
    assert_eq!(got.messages.len(), stored.len());
    assert_eq!(store.max_offset("Full", 0), 10);
    assert_eq!(store.max_offset("Full", 1), 0);
    store.shutdown().unwrap();

    // Under the limit again, writes are accepted and continue the queue.
    let store = MessageStore::open(config(dir.path()), host()).unwrap();
    let next = store.append(&message("Full", 0, 10, 100)).unwrap();
    assert_eq!(next.queue_offset, 10);
}
