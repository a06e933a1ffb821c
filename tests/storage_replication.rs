//! The raw-append path a slave uses: a master's log bytes, shipped in chunks of any size,
//! rebuild the same log, queues and index on another store; damaged or misplaced bytes are
//! refused before anything is written.

mod common;

use actimq::internals::storage::{Error, MessageStore};
use common::{host, message, small_config, Rng};

const SEGMENT: u64 = 64 * 1024;

#[test]
fn shipped_log_rebuilds_an_identical_store() {
    let master_dir = tempfile::tempdir().unwrap();
    let slave_dir = tempfile::tempdir().unwrap();
    let master = MessageStore::open(small_config(master_dir.path(), SEGMENT), host()).unwrap();
    let slave = MessageStore::open(small_config(slave_dir.path(), SEGMENT), host()).unwrap();
    let mut rng = Rng::new(3);
    let sent: Vec<_> = (0..2_000u64)
        .map(|seq| {
            let m = message(
                "Repl",
                rng.range(0, 4) as u32,
                seq,
                rng.range(10, 900) as usize,
            );
            master.append(&m).unwrap()
        })
        .collect();
    let end = master.max_physical_offset();
    let mut offset = 0;
    let mut rounds = 0;
    while offset < end {
        // Chunks of odd sizes: records and blank markers get split across calls.
        let chunk = master
            .read_log(offset, rng.range(1, 5_000) as usize)
            .unwrap();
        offset = slave.append_encoded(offset, &chunk).unwrap();
        rounds += 1;
        assert!(
            rounds < 100_000,
            "replication makes no progress at {offset}"
        );
    }
    assert_eq!(slave.max_physical_offset(), end);
    for (seq, r) in sent.iter().enumerate() {
        let a = master.read_by_physical(r.physical_offset).unwrap();
        let b = slave.read_by_physical(r.physical_offset).unwrap();
        assert_eq!(a.raw, b.raw);
        let q = slave
            .read_by_queue_offset("Repl", a.queue_id, a.queue_offset)
            .unwrap();
        assert_eq!(q.raw, a.raw, "slave queue entry for message {seq}");
    }
    for q in 0..4 {
        assert_eq!(slave.max_offset("Repl", q), master.max_offset("Repl", q));
    }
    let hits = slave
        .query_by_key("Repl", "key-1234", 0, i64::MAX, 4)
        .unwrap();
    assert_eq!(hits.len(), 1);
    // New appends on the slave (after a failover) continue the same sequence.
    let next = slave.append(&message("Repl", 0, 5_000, 10)).unwrap();
    assert_eq!(next.queue_offset, master.max_offset("Repl", 0));
}

#[test]
fn damaged_or_misplaced_bytes_are_refused_without_writing() {
    let master_dir = tempfile::tempdir().unwrap();
    let slave_dir = tempfile::tempdir().unwrap();
    let master = MessageStore::open(small_config(master_dir.path(), SEGMENT), host()).unwrap();
    let slave = MessageStore::open(small_config(slave_dir.path(), SEGMENT), host()).unwrap();
    for seq in 0..10 {
        master.append(&message("Repl", 0, seq, 100)).unwrap();
    }
    let bytes = master.read_log(0, 100_000).unwrap();
    assert!(matches!(
        slave.append_encoded(5, &bytes),
        Err(Error::NotAtEnd {
            expected: 0,
            got: 5
        })
    ));
    let mut bad = bytes.to_vec();
    bad[60] ^= 0xFF;
    assert!(matches!(
        slave.append_encoded(0, &bad),
        Err(Error::CorruptRecord { offset: 0, .. })
    ));
    assert_eq!(slave.max_physical_offset(), 0, "nothing written");
    assert_eq!(slave.max_offset("Repl", 0), 0);
    // A torn tail is left for the next call.
    let first_len = master.read_raw(0).unwrap().len();
    let consumed = slave.append_encoded(0, &bytes[..first_len + 10]).unwrap();
    assert_eq!(consumed, first_len as u64);
}

#[test]
fn a_damaged_record_on_the_master_is_never_shipped() {
    use actimq::internals::storage::damage::FoundBy;
    use std::io::{Read, Seek, SeekFrom, Write};
    let master_dir = tempfile::tempdir().unwrap();
    let slave_dir = tempfile::tempdir().unwrap();
    let config = small_config(master_dir.path(), SEGMENT);
    let sent: Vec<_> = {
        let master = MessageStore::open(config.clone(), host()).unwrap();
        let sent = (0..40)
            .map(|seq| master.append(&message("Repl", 0, seq, 200)).unwrap())
            .collect();
        master.shutdown().unwrap();
        sent
    };
    // Flip bytes inside the body of record 25 (the log's middle: recovery keeps it).
    let victim = sent[25];
    let at = victim.physical_offset + 150;
    let path = master_dir
        .path()
        .join("commitlog")
        .join(format!("{:020}", at - at % SEGMENT));
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut buf = [0u8; 8];
    f.seek(SeekFrom::Start(at % SEGMENT)).unwrap();
    f.read_exact(&mut buf).unwrap();
    buf.iter_mut().for_each(|b| *b ^= 0x5A);
    f.seek(SeekFrom::Start(at % SEGMENT)).unwrap();
    f.write_all(&buf).unwrap();
    drop(f);

    let master = MessageStore::open(config, host()).unwrap();
    let slave = MessageStore::open(small_config(slave_dir.path(), SEGMENT), host()).unwrap();
    let end = master.max_physical_offset();
    let mut offset = 0;
    let stopped_at = loop {
        match master.ship_chunk(offset, end, 1_000) {
            Ok(chunk) if chunk.next > offset => {
                offset = slave.append_encoded(chunk.start, &chunk.bytes).unwrap();
                assert_eq!(offset, chunk.next);
            }
            Ok(chunk) => panic!("no progress at {offset}: {chunk:?}"),
            Err(Error::CorruptRecord { offset, .. }) => break offset,
            Err(e) => panic!("unexpected error: {e}"),
        }
    };
    // Shipping stops exactly at the damaged record; everything before it is on the slave.
    assert_eq!(stopped_at, victim.physical_offset);
    assert_eq!(slave.max_physical_offset(), victim.physical_offset);
    for r in &sent[..25] {
        assert_eq!(
            slave.read_by_physical(r.physical_offset).unwrap().raw,
            master.read_by_physical(r.physical_offset).unwrap().raw
        );
    }
    let (ranges, _) = master.damage();
    assert!(
        ranges
            .iter()
            .any(|r| r.from == victim.physical_offset && r.found_by == FoundBy::Replication),
        "the damaged range is reported: {ranges:?}"
    );
}
