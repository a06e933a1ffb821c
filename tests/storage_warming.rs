//! Segment warming on: a background thread per segment reads pages into the page cache
//! ahead of the writer while appends land in the same files. Records written across many
//! segments must read back intact, before and after a clean restart, and closing must leave
//! no stray segment.

mod common;

use actimq::internals::storage::{AppendResult, MessageStore};
use common::{host, message, small_config};

const SEGMENT: u64 = 1024 * 1024;

fn check(store: &MessageStore, results: &[AppendResult]) {
    for (seq, r) in results.iter().enumerate() {
        let m = store.read_by_physical(r.physical_offset).unwrap();
        assert!(
            m.body.starts_with(format!("msg-{seq}-").as_bytes()),
            "record {seq} damaged"
        );
    }
}

#[test]
fn appends_into_warmed_segments_read_back_across_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config(dir.path(), SEGMENT);
    config.warm_mapped_file_enable = true;
    let results: Vec<AppendResult>;
    {
        let store = MessageStore::open(config.clone(), host()).unwrap();
        results = (0..6_000)
            .map(|seq| {
                store
                    .append(&message("Warm", (seq % 3) as u32, seq, 1_000))
                    .unwrap()
            })
            .collect();
        check(&store, &results);
        store.shutdown().unwrap();
    }
    let end = results.last().unwrap().end_offset();
    let segments = std::fs::read_dir(dir.path().join("commitlog"))
        .unwrap()
        .count() as u64;
    assert!(
        segments >= 6,
        "6 MB of records span at least six 1 MiB segments"
    );
    // The segment prepared ahead of the writer is removed at shutdown.
    assert_eq!(segments, end.div_ceil(SEGMENT));

    let store = MessageStore::open(config, host()).unwrap();
    check(&store, &results);
    let more = store.append(&message("Warm", 0, 6_000, 1_000)).unwrap();
    assert_eq!(more.physical_offset, end);
    store.shutdown().unwrap();
}
