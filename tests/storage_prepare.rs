//! `MessageStore::preparation_for` / `prepare`: the disk work an append would do in line
//! (a new queue's folder and file, the next consume-queue segment, the next commit-log
//! segment, a new index file) is spotted before the append and done by `prepare`, so that
//! an append after it creates no file. The broker runs `prepare` on a blocking thread and
//! the append on its event loop; this checks the store's half of that contract on the real
//! store, crossing every kind of file boundary many times.

mod common;

use std::path::Path;

use actimq::internals::storage::MessageStore;
use common::{host, message, small_config};

/// Files of the kinds an append could create: commit-log segments, consume-queue segments
/// of every queue, index files.
fn files(root: &Path) -> usize {
    fn count(dir: &Path, depth: usize) -> usize {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return 0;
        };
        entries
            .flatten()
            .map(|e| {
                let path = e.path();
                match (path.is_dir(), depth) {
                    (true, 0) => 0,
                    (true, _) => count(&path, depth - 1),
                    (false, _) => 1,
                }
            })
            .sum()
    }
    count(&root.join("commitlog"), 0)
        + count(&root.join("consumequeue"), 2)
        + count(&root.join("index"), 0)
}

#[test]
fn an_append_after_prepare_creates_no_file() {
    let dir = tempfile::tempdir().unwrap();
    // 64 KiB log segments, 256-entry queue segments and 6,000-entry index files: 3,000
    // messages of ~600 bytes (3 keys each) over three queues cross each kind of boundary
    // several times.
    let mut config = small_config(dir.path(), 64 * 1024);
    config.mapped_file_size_consume_queue = 20 * 256;
    config.max_index_num = 6_000;
    let store = MessageStore::open(config, host()).unwrap();
    let (mut prepared, mut log_rolls) = (0, 0);
    for seq in 0..3_000u64 {
        let m = message("PrepTopic", (seq % 3) as u32, seq, 512);
        if let Some(prep) = store.preparation_for(std::slice::from_ref(&m)) {
            let before = files(dir.path());
            store.prepare(&prep).unwrap();
            prepared += 1;
            if files(dir.path()) > before {
                log_rolls += 1;
            }
            assert!(
                store.preparation_for(std::slice::from_ref(&m)).is_none(),
                "message {seq}: still needs work after prepare"
            );
        }
        let before = files(dir.path());
        store.append(&m).unwrap();
        assert_eq!(
            files(dir.path()),
            before,
            "message {seq}: the append created a file that preparation_for did not announce"
        );
    }
    assert!(
        std::fs::read_dir(dir.path().join("commitlog"))
            .unwrap()
            .count()
            > 20,
        "the log rolled many times"
    );
    assert!(
        std::fs::read_dir(dir.path().join("consumequeue/PrepTopic/0"))
            .unwrap()
            .count()
            > 0
    );
    assert!(
        prepared >= log_rolls && log_rolls > 20,
        "{prepared} preparations, {log_rolls} created files"
    );
    for q in 0..3 {
        assert_eq!(store.max_offset("PrepTopic", q), 1_000);
        let last = store.read_by_queue_offset("PrepTopic", q, 999).unwrap();
        assert!(last
            .body
            .starts_with(format!("msg-{}-", 2_997 + q as u64).as_bytes()));
    }
    store.shutdown().unwrap();
}

#[test]
fn an_empty_file_left_where_a_queue_segment_goes_is_taken_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config(dir.path(), 64 * 1024);
    config.mapped_file_size_consume_queue = 20 * 4;
    let store = MessageStore::open(config, host()).unwrap();
    for seq in 0..4u64 {
        store.append(&message("Stray", 0, seq, 64)).unwrap();
    }
    // What a creation interrupted after `open` and before any write leaves behind.
    std::fs::File::create(dir.path().join("consumequeue/Stray/0/00000000000000000080")).unwrap();
    let next = message("Stray", 0, 4, 64);
    if let Some(prep) = store.preparation_for(std::slice::from_ref(&next)) {
        store.prepare(&prep).unwrap();
    }
    store.append(&next).unwrap();
    assert_eq!(store.max_offset("Stray", 0), 5);
    assert!(store
        .read_by_queue_offset("Stray", 0, 4)
        .unwrap()
        .body
        .starts_with(b"msg-4-"));
    store.shutdown().unwrap();
}
