//! Durability: with `sync_flush` an append is reported durable only after a flush covering
//! it, and concurrent writers share flushes (group commit); with `async_flush` a flush can
//! be forced from a thread other than the appender's. A checkpoint is written when what it
//! records moves, and not again while the store is idle.

mod common;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Barrier};

use actimq::internals::storage::{FlushDiskType, MessageStore, StoreConfig};
use common::{host, message, small_config};

fn config(dir: &std::path::Path, flush: FlushDiskType, interval_ms: u64) -> StoreConfig {
    StoreConfig {
        flush_disk_type: flush,
        flush_interval_commit_log: interval_ms,
        ..small_config(dir, 1 << 20)
    }
}

#[test]
fn sync_flush_reports_durable_only_after_a_covering_flush() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        MessageStore::open(config(dir.path(), FlushDiskType::SyncFlush, 500), host()).unwrap(),
    );
    let r = store.append(&message("Sync", 0, 0, 200)).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let s2 = Arc::clone(&store);
    store.on_durable(
        r.end_offset(),
        Box::new(move |res| {
            tx.send((res.is_ok(), s2.flushed_offset())).unwrap();
        }),
    );
    let (ok, flushed_at_callback) = rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    assert!(ok);
    assert!(
        flushed_at_callback >= r.end_offset(),
        "callback before the flush covered the record"
    );
    assert!(store.stats().commit_log_flushes.load(Ordering::Relaxed) >= 1);
}

#[test]
fn concurrent_sync_writers_share_fsyncs() {
    const WRITERS: usize = 32;
    const EACH: u64 = 20;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        MessageStore::open(config(dir.path(), FlushDiskType::SyncFlush, 500), host()).unwrap(),
    );
    let start = Barrier::new(WRITERS);
    let start = Arc::new(start);
    let threads: Vec<_> = (0..WRITERS)
        .map(|w| {
            let store = Arc::clone(&store);
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                for i in 0..EACH {
                    let r = store
                        .append(&message("Sync", (w % 4) as u32, i, 200))
                        .unwrap();
                    store.wait_durable(r.end_offset()).unwrap();
                    assert!(store.flushed_offset() >= r.end_offset());
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let appends = WRITERS as u64 * EACH;
    let fsyncs = store.stats().commit_log_flushes.load(Ordering::Relaxed);
    println!("{appends} durable appends took {fsyncs} flushes");
    assert!(fsyncs >= 1);
    assert!(
        fsyncs < appends,
        "no group commit: {fsyncs} flushes for {appends} appends"
    );
}

#[test]
fn async_flush_waits_for_the_timer_or_an_explicit_flush_from_another_thread() {
    let dir = tempfile::tempdir().unwrap();
    // A timer far in the future: only the explicit flush can make the record durable.
    let store = Arc::new(
        MessageStore::open(
            config(dir.path(), FlushDiskType::AsyncFlush, 600_000),
            host(),
        )
        .unwrap(),
    );
    let r = store.append(&message("Async", 0, 0, 200)).unwrap();
    assert!(store.flushed_offset() < r.end_offset());
    let s2 = Arc::clone(&store);
    std::thread::spawn(move || s2.flush().unwrap())
        .join()
        .unwrap();
    assert!(store.flushed_offset() >= r.end_offset());
    store.wait_durable(r.end_offset()).unwrap();
}

#[test]
fn an_idle_store_does_not_rewrite_its_checkpoint() {
    use actimq::internals::storage::checkpoint::Checkpoint;
    let dir = tempfile::tempdir().unwrap();
    // Housekeeping every 20 ms, so an idle store gets many chances to rewrite it.
    let cfg = StoreConfig {
        flush_interval_consume_queue: 20,
        ..config(dir.path(), FlushDiskType::AsyncFlush, 20)
    };
    let store = MessageStore::open(cfg, host()).unwrap();
    let r = store.append(&message("Idle", 0, 0, 100)).unwrap();
    store.flush().unwrap();
    let first = Checkpoint::load(dir.path()).expect("a checkpoint after a flush");
    assert!(first.commit_log >= r.physical_offset + r.size as u64);
    std::thread::sleep(std::time::Duration::from_millis(300));
    store.flush().unwrap();
    assert_eq!(
        Checkpoint::load(dir.path()),
        Some(first),
        "nothing moved, yet the checkpoint was written again"
    );
    // Something new moves it, and it is written.
    let r = store.append(&message("Idle", 0, 1, 100)).unwrap();
    store.flush().unwrap();
    let second = Checkpoint::load(dir.path()).expect("a checkpoint after the second flush");
    assert!(second.commit_log >= r.physical_offset + r.size as u64);
    assert!(second.written_at >= first.written_at);
    assert_ne!(second, first);
}
