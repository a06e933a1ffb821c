//! 100,000 messages over many commit-log segments, three topics and four queues each: every
//! one reads back by physical offset and by queue offset with equal bytes, and queue offsets
//! are dense from 0.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use actimq::internals::storage::{GetStatus, MessageStore};
use common::{host, message, small_config, Rng};

#[test]
fn hundred_thousand_messages_read_back_every_way() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(small_config(dir.path(), 1 << 20), host()).unwrap();
    let topics = ["TopicA", "TopicB", "TopicC"];
    let mut rng = Rng::new(7);
    let mut sent = Vec::new();
    let mut next_in_queue: HashMap<(usize, u32), u64> = HashMap::new();
    for seq in 0..100_000u64 {
        let t = rng.range(0, 3) as usize;
        let q = rng.range(0, 4) as u32;
        let msg = message(topics[t], q, seq, rng.range(40, 400) as usize);
        let r = store.append(&msg).unwrap();
        let expect = next_in_queue.entry((t, q)).or_insert(0);
        assert_eq!(r.queue_offset, *expect, "queue offsets are dense from 0");
        *expect += 1;
        sent.push((t, q, msg, r));
    }
    let segments = std::fs::read_dir(dir.path().join("commitlog"))
        .unwrap()
        .count();
    assert!(segments >= 5, "only {segments} segments");

    for (t, q, msg, r) in &sent {
        let by_phys = store.read_by_physical(r.physical_offset).unwrap();
        assert_eq!(by_phys.body, msg.body);
        assert_eq!(by_phys.topic, topics[*t]);
        assert_eq!(by_phys.queue_id, *q);
        assert_eq!(by_phys.queue_offset, r.queue_offset);
        assert_eq!(by_phys.store_timestamp, r.store_timestamp);
        assert_eq!(by_phys.property("KEYS"), msg.body_key().as_deref());
        let by_queue = store
            .read_by_queue_offset(topics[*t], *q, r.queue_offset)
            .unwrap();
        assert_eq!(by_queue.raw, by_phys.raw, "same stored bytes both ways");
        assert_eq!(by_queue.raw.len(), r.size as usize);
    }

    // A pull-style walk of every queue sees each message once, in order.
    for (t, topic) in topics.iter().enumerate() {
        for q in 0..4u32 {
            let want: Vec<_> = sent.iter().filter(|s| s.0 == t && s.1 == q).collect();
            assert_eq!(store.max_offset(topic, q), want.len() as u64);
            let mut offset = 0;
            let mut got = 0;
            loop {
                let r = store.get_messages(topic, q, offset, 32, 1 << 20, None);
                if r.status != GetStatus::Found {
                    assert_eq!(r.status, GetStatus::OffsetOverflowOne);
                    break;
                }
                for raw in &r.messages {
                    assert_eq!(raw.len(), want[got].3.size as usize);
                    got += 1;
                }
                offset = r.next_offset;
            }
            assert_eq!(got, want.len());
        }
    }
    store.shutdown().unwrap();
}

#[test]
fn tag_filter_and_time_search() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(small_config(dir.path(), 1 << 20), host()).unwrap();
    let mut results = Vec::new();
    for seq in 0..300u64 {
        results.push(store.append(&message("T", 0, seq, 100)).unwrap());
    }
    let tag1 = actimq::internals::storage::record::tag_hash("Tag1");
    let only_tag1 = |h: i64| h == tag1;
    let r = store.get_messages("T", 0, 0, 1000, 1 << 20, Some(&only_tag1));
    assert_eq!(r.status, GetStatus::Found);
    assert_eq!(r.messages.len(), 100);
    let none = |_h: i64| false;
    let r = store.get_messages("T", 0, 0, 32, 1 << 20, Some(&none));
    assert_eq!(r.status, GetStatus::NoMatchedMessage);
    assert_eq!(
        r.next_offset, 300,
        "filtered-out entries still advance the offset"
    );

    for probe in [0usize, 57, 299] {
        let ts = results[probe].store_timestamp;
        let off = store.offset_for_timestamp("T", 0, ts);
        assert!(off <= probe as u64);
        assert_eq!(
            results[off as usize].store_timestamp, ts,
            "first message stored at that time"
        );
    }
    assert_eq!(store.offset_for_timestamp("T", 0, i64::MAX), 300);
    assert_eq!(store.offset_for_timestamp("T", 0, 0), 0);
}

#[test]
fn oversized_and_illegal_messages_are_refused_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = MessageStore::open(small_config(dir.path(), 1 << 20), host()).unwrap();
    let err = store
        .append(&message("T", 0, 0, 40 * 1024))
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_message_size"), "{err}");
    let err = store
        .append(&message("bad/topic", 0, 0, 10))
        .unwrap_err()
        .to_string();
    assert!(err.contains("bad/topic"), "{err}");
    let err = store
        .append(&message(&"x".repeat(128), 0, 0, 10))
        .unwrap_err()
        .to_string();
    assert!(err.contains("127"), "{err}");
    assert_eq!(store.max_physical_offset(), 0, "nothing was written");
}

trait KeyOf {
    fn body_key(&self) -> Option<String>;
}

impl KeyOf for actimq::internals::storage::MessageToStore {
    fn body_key(&self) -> Option<String> {
        actimq::internals::storage::record::property(&self.properties, "KEYS").map(str::to_owned)
    }
}

#[test]
fn batches_mixing_queues_and_crossing_segments_read_back_in_order() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: most batches of ~40 KB cross a segment end and are written in two parts.
    let store = MessageStore::open(small_config(dir.path(), 128 * 1024), host()).unwrap();
    let mut rng = Rng::new(11);
    let mut next_in_queue = [0u64; 3];
    let mut sent = Vec::new();
    let mut seq = 0u64;
    for _ in 0..200 {
        let batch: Vec<_> = (0..rng.range(1, 64))
            .map(|_| {
                seq += 1;
                message(
                    "Batched",
                    rng.range(0, 3) as u32,
                    seq,
                    rng.range(100, 1_200) as usize,
                )
            })
            .collect();
        let results = store.append_batch(&batch).unwrap();
        assert_eq!(results.len(), batch.len());
        for (m, r) in batch.into_iter().zip(results) {
            let q = m.queue_id as usize;
            assert_eq!(
                r.queue_offset, next_in_queue[q],
                "dense queue offsets within and across batches"
            );
            next_in_queue[q] += 1;
            sent.push((m, r));
        }
    }
    let segments = std::fs::read_dir(dir.path().join("commitlog"))
        .unwrap()
        .count();
    assert!(
        segments > 20,
        "batches crossed many segment ends ({segments} segments)"
    );
    let check = |store: &MessageStore| {
        for (m, r) in &sent {
            let by_phys = store.read_by_physical(r.physical_offset).unwrap();
            assert_eq!(by_phys.body, m.body);
            let by_queue = store
                .read_by_queue_offset("Batched", m.queue_id, r.queue_offset)
                .unwrap();
            assert_eq!(by_queue.raw, by_phys.raw);
        }
    };
    check(&store);
    // An unclean stop: recovery walks the log the batches wrote and finds every record.
    drop(store);
    let store = MessageStore::open(small_config(dir.path(), 128 * 1024), host()).unwrap();
    check(&store);
}

#[test]
fn a_batch_cut_short_reports_the_messages_it_stored() {
    let dir = tempfile::tempdir().unwrap();
    let config = actimq::internals::storage::StoreConfig {
        // 50 entries per consume-queue segment.
        mapped_file_size_consume_queue: 20 * 50,
        ..small_config(dir.path(), 1024 * 1024)
    };
    let store = MessageStore::open(config, host()).unwrap();
    for seq in 0..40 {
        store.append(&message("Cut", 0, seq, 200)).unwrap();
    }
    // The queue's next segment cannot be created: a file already has its name.
    let queue_dir = dir.path().join("consumequeue/Cut/0");
    std::fs::write(queue_dir.join(format!("{:020}", 20 * 50)), b"in the way").unwrap();

    let batch: Vec<_> = (40..60).map(|seq| message("Cut", 0, seq, 200)).collect();
    let (stored, failure) = store.append_batch_partial(&batch);
    assert!(failure.is_some(), "the batch cannot be stored whole");
    assert_eq!(stored.len(), 10, "the prefix that fit the first segment");
    for (m, r) in batch.iter().zip(&stored) {
        let read = store
            .read_by_queue_offset("Cut", 0, r.queue_offset)
            .unwrap();
        assert_eq!(read.body, m.body, "what is reported stored reads back");
    }
    assert!(
        store.append_batch(&batch[..1]).is_err(),
        "after a failed dispatch the store refuses writes until restart"
    );
}

#[test]
fn an_index_file_that_cannot_be_created_does_not_stop_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let config = actimq::internals::storage::StoreConfig {
        max_index_num: 100,
        ..small_config(dir.path(), 1024 * 1024)
    };
    let store = MessageStore::open(config, host()).unwrap();
    // Each message has two index keys (KEYS and UNIQ_KEY): 50 of them fill the first file.
    for seq in 0..50 {
        store.append(&message("Idx", 0, seq, 200)).unwrap();
    }
    // The next index file cannot be created (as on a full disk): its folder is a file.
    let index_dir = dir.path().join("index");
    let moved = dir.path().join("index-moved");
    std::fs::rename(&index_dir, &moved).unwrap();
    std::fs::write(&index_dir, b"not a folder").unwrap();
    for seq in 50..60 {
        let r = store.append(&message("Idx", 0, seq, 200)).unwrap();
        let read = store
            .read_by_queue_offset("Idx", 0, r.queue_offset)
            .unwrap();
        assert!(read.body.starts_with(format!("msg-{seq}-").as_bytes()));
    }
    // Once the folder is back, a later append creates the file and keys are indexed again.
    std::fs::remove_file(&index_dir).unwrap();
    std::fs::rename(&moved, &index_dir).unwrap();
    std::thread::sleep(
        actimq::internals::storage::index::RETRY_CREATE_AFTER + Duration::from_millis(100),
    );
    store.append(&message("Idx", 0, 60, 200)).unwrap();
    let found = store
        .query_by_key("Idx", "key-60", 0, i64::MAX, 10)
        .unwrap();
    assert_eq!(found.len(), 1, "indexed after the retry");
    store.shutdown().unwrap();
}
