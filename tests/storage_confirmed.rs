//! The confirmed offset: a consumer never sees a record before it is as safe as the
//! broker's role promises. Under `sync_flush` a record is invisible (pulls, queue ends,
//! lookups by key and id) while its flush is held on purpose; with the replicated policy of
//! a `sync_master` it is invisible until the slaves' position passes it. Own test binary:
//! the disk hold is process-wide.

mod common;

use std::time::{Duration, Instant};

use actimq::internals::common::fs::disk_faults;
use actimq::internals::storage::{ConfirmPolicy, FlushDiskType, GetStatus, MessageStore};
use common::{host, message, small_config};

fn visible(store: &MessageStore) -> (u64, GetStatus, usize) {
    let got = store.get_messages("Confirm", 0, 0, 32, 1 << 20, None);
    (
        store.max_offset("Confirm", 0),
        got.status,
        store
            .query_by_key("Confirm", "key-0", 0, i64::MAX, 8)
            .unwrap()
            .len(),
    )
}

#[test]
fn under_sync_flush_a_record_is_invisible_until_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = small_config(dir.path(), 1 << 20);
    config.flush_disk_type = FlushDiskType::SyncFlush;
    let store = MessageStore::open(config, host()).unwrap();
    // A first record creates the segment (a hold must catch the flush, not the creation).
    let first = store.append(&message("Other", 0, 0, 100)).unwrap();
    store.wait_durable(first.end_offset()).unwrap();
    disk_faults::hold_next("commitlog/00000000000000000000", Duration::from_secs(2));
    let r = store.append(&message("Confirm", 0, 0, 100)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while disk_faults::holds_begun() == 0 {
        assert!(Instant::now() < deadline, "the flush never started");
        std::thread::sleep(Duration::from_millis(5));
    }
    // The flush is held: written, not durable, so not shown.
    let while_held = visible(&store);
    let by_id = store.read_by_msg_id(&r.msg_id()).unwrap();
    assert_eq!(
        disk_faults::holds_ended(),
        0,
        "the hold ended before the reads; the test proves nothing"
    );
    assert_eq!(store.written_max_offset("Confirm", 0), 1);
    assert_eq!(while_held.0, 0, "queue end shows an unflushed record");
    assert_ne!(
        while_held.1,
        GetStatus::Found,
        "a pull got an unflushed record"
    );
    assert_eq!(while_held.2, 0, "a key lookup found an unflushed record");
    assert!(by_id.is_none(), "an id lookup found an unflushed record");
    store.wait_durable(r.end_offset()).unwrap();
    assert_eq!(visible(&store), (1, GetStatus::Found, 1));
    store.shutdown().unwrap();
}

#[test]
fn with_the_replicated_policy_a_record_is_invisible_until_the_slaves_hold_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(small_config(dir.path(), 1 << 20), host()).unwrap();
    store.set_confirm_policy(ConfirmPolicy {
        flushed: false,
        replicated: true,
    });
    let first = store.append(&message("Confirm", 0, 0, 100)).unwrap();
    let second = store.append(&message("Confirm", 0, 1, 100)).unwrap();
    assert_eq!(visible(&store).0, 0);
    store.set_replicated(first.end_offset());
    let got = store.get_messages("Confirm", 0, 0, 32, 1 << 20, None);
    assert_eq!((store.max_offset("Confirm", 0), got.messages.len()), (1, 1));
    // A pull at the confirmed end is "caught up", so a held pull waits there.
    let at_end = store.get_messages("Confirm", 0, 1, 32, 1 << 20, None);
    assert_eq!(at_end.status, GetStatus::OffsetOverflowOne);
    store.set_replicated(second.end_offset());
    assert_eq!(store.max_offset("Confirm", 0), 2);
    store.shutdown().unwrap();
}
