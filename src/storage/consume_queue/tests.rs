//! Unit tests of the consume queue: file growth, old-format files, open cost, the file
//! cache's bound, and a full disk.

use super::*;

const SEG: usize = 100 * CQ_STORE_UNIT_SIZE;

fn entry(i: u64) -> CqEntry {
    CqEntry {
        physical_offset: 1000 + i * 100,
        size: 100,
        tags_code: i as i64 - 7,
    }
}

fn open(dir: &Path, files: &Arc<QueueFiles>) -> ConsumeQueue {
    ConsumeQueue::open(dir.to_owned(), "T", 0, SEG, Arc::clone(files)).unwrap()
}

fn seg_len(dir: &Path, start: u64) -> u64 {
    std::fs::metadata(dir.join(segment_name(start)))
        .unwrap()
        .len()
}

#[test]
fn entry_bytes_round_trip_and_zero_is_unwritten() {
    let e = entry(3);
    assert_eq!(CqEntry::from_bytes(&e.to_bytes()), Some(e));
    assert_eq!(CqEntry::from_bytes(&[0u8; 20]), None);
    assert_eq!(CqEntry::from_bytes(&e.to_bytes()[..19]), None);
}

#[test]
fn files_grow_with_their_entries() {
    let dir = tempfile::tempdir().unwrap();
    let files = QueueFiles::new(8);
    let cq = open(dir.path(), &files);
    for i in 0..130 {
        assert!(cq.put(i, entry(i), false).unwrap());
        // Readable as soon as `put` returns.
        assert_eq!(cq.get(i), Some(entry(i)));
    }
    // Writing into the second segment wrote the first one out.
    assert_eq!(seg_len(dir.path(), 0), SEG as u64, "first segment full");
    assert_eq!(
        seg_len(dir.path(), SEG as u64),
        0,
        "newest entries still pending"
    );
    cq.flush().unwrap();
    assert_eq!(
        seg_len(dir.path(), SEG as u64),
        30 * CQ_STORE_UNIT_SIZE as u64
    );
    drop(cq);
    let cq = open(dir.path(), &files);
    assert_eq!((cq.min_offset(), cq.max_offset()), (0, 130));
    assert_eq!(cq.get(129), Some(entry(129)));
    assert!(cq.put(130, entry(130), false).unwrap());
    cq.flush().unwrap();
    assert_eq!(
        seg_len(dir.path(), SEG as u64),
        31 * CQ_STORE_UNIT_SIZE as u64
    );
}

/// Writes a file the way earlier versions did: full segment size, zero-filled, entries
/// `from..to` in place.
fn old_format_file(dir: &Path, start: u64, from: u64, to: u64) {
    let mut buf = vec![0u8; SEG];
    for i in from..to {
        let at = (i * CQ_STORE_UNIT_SIZE as u64 - start) as usize;
        buf[at..at + CQ_STORE_UNIT_SIZE].copy_from_slice(&entry(i).to_bytes());
    }
    std::fs::write(dir.join(segment_name(start)), buf).unwrap();
}

#[test]
fn old_full_size_files_open_with_their_end_found_by_binary_search() {
    for written in [0u64, 1, 37, 99, 100] {
        let dir = tempfile::tempdir().unwrap();
        old_format_file(dir.path(), 0, 0, written);
        let files = QueueFiles::new(8);
        let cq = open(dir.path(), &files);
        assert_eq!(cq.max_offset(), written, "{written} entries");
        // O(log n) probes (two for the ends, then the search), not one per entry.
        if written > 0 {
            assert!(files.probe_reads() <= 10, "{} reads", files.probe_reads());
        }
        assert_eq!(cq.min_offset(), 0);
        for i in 0..written {
            assert_eq!(cq.get(i), Some(entry(i)));
        }
        // Appends continue in place; the file keeps its size.
        if written < 100 {
            cq.put(written, entry(written), false).unwrap();
            assert_eq!(cq.get(written), Some(entry(written)));
            assert_eq!(seg_len(dir.path(), 0), SEG as u64);
        }
    }
}

#[test]
fn old_files_of_a_queue_that_began_mid_segment() {
    let dir = tempfile::tempdir().unwrap();
    old_format_file(dir.path(), 0, 40, 60);
    let files = QueueFiles::new(8);
    let cq = open(dir.path(), &files);
    assert_eq!((cq.min_offset(), cq.max_offset()), (40, 60));
    assert_eq!(cq.get(40), Some(entry(40)));
    assert_eq!(cq.get(39), None);
}

#[test]
fn open_reads_no_entry_and_opens_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let files = QueueFiles::new(8);
    {
        let cq = open(dir.path(), &files);
        for i in 0..250 {
            cq.put(i, entry(i), false).unwrap();
        }
        cq.flush().unwrap();
    }
    let files = QueueFiles::new(8);
    let cq = open(dir.path(), &files);
    assert_eq!(cq.max_offset(), 250);
    assert_eq!(files.probe_reads(), 0, "no entry read at open");
    assert_eq!(files.opened_total(), 0, "no file opened at open");
    assert_eq!(files.mapped_files(), 0);
    // A pending commit-log minimum is applied on first use, not before.
    cq.set_log_min(entry(120).physical_offset);
    assert_eq!(files.opened_total(), 0);
    assert_eq!(cq.min_offset(), 120);
    assert_eq!(cq.get(119), None);
    assert_eq!(cq.get(120), Some(entry(120)));
    assert!(files.mapped_files() >= 1, "reads map the file");
}

#[test]
fn open_files_stay_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let files = QueueFiles::new(4);
    let queues: Vec<ConsumeQueue> = (0..20u32)
        .map(|q| {
            ConsumeQueue::open(
                dir.path().join(q.to_string()),
                "T",
                q,
                SEG,
                Arc::clone(&files),
            )
            .unwrap()
        })
        .collect();
    for round in 0..3u64 {
        for cq in &queues {
            cq.put(round, entry(round), false).unwrap();
            assert!(files.open_files() <= 4, "{} open", files.open_files());
        }
    }
    for cq in &queues {
        for round in 0..3 {
            assert_eq!(cq.get(round), Some(entry(round)));
        }
        assert!(files.open_files() <= 4 && files.mapped_files() <= 4);
        cq.flush().unwrap();
    }
    assert!(files.opened_total() > 20, "files were closed and reopened");
}

#[test]
fn truncation_and_retention_cut_files() {
    let dir = tempfile::tempdir().unwrap();
    let files = QueueFiles::new(8);
    let cq = open(dir.path(), &files);
    for i in 0..250 {
        cq.put(i, entry(i), false).unwrap();
    }
    cq.truncate_from_physical(entry(230).physical_offset)
        .unwrap();
    assert_eq!(cq.max_offset(), 230);
    cq.flush().unwrap();
    assert_eq!(
        seg_len(dir.path(), 2 * SEG as u64),
        30 * CQ_STORE_UNIT_SIZE as u64
    );
    cq.truncate_from_physical(entry(150).physical_offset)
        .unwrap();
    assert!(!dir.path().join(segment_name(2 * SEG as u64)).exists());
    assert_eq!(cq.get(149), Some(entry(149)));
    cq.put(150, entry(150), false).unwrap();
    assert_eq!(
        cq.delete_below_physical(entry(120).physical_offset)
            .unwrap(),
        1
    );
    assert_eq!((cq.min_offset(), cq.max_offset()), (120, 151));
    assert!(!dir.path().join(segment_name(0)).exists());
    // A replayed entry that disagrees replaces the tail.
    assert!(cq.put(140, entry(999), true).unwrap());
    assert_eq!((cq.get(140), cq.max_offset()), (Some(entry(999)), 141));
}

#[test]
fn a_full_disk_is_an_io_error_not_a_fault() {
    let dir = tempfile::tempdir().unwrap();
    // /dev/full answers every write with ENOSPC, as a full file system does.
    if std::os::unix::fs::symlink("/dev/full", dir.path().join(segment_name(0))).is_err()
        || !Path::new("/dev/full").exists()
    {
        eprintln!("no /dev/full here: nothing to check");
        return;
    }
    let files = QueueFiles::new(8);
    let cq = open(dir.path(), &files);
    // The entry waits in memory; writing it out fails as the disk is full.
    cq.put(0, entry(0), false).unwrap();
    let err = cq.flush().unwrap_err();
    match &err {
        Error::Io { path, source } => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{err}");
            assert!(path.ends_with(segment_name(0)), "{err}");
        }
        other => panic!("expected an I/O error, got {other}"),
    }
    assert_eq!(
        cq.get(0),
        Some(entry(0)),
        "still readable, and pending for a retry"
    );
}

#[test]
fn a_busy_queue_writes_a_page_of_entries_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let files = QueueFiles::new(8);
    let big = 10 * PENDING_MAX;
    let cq = ConsumeQueue::open(dir.path().to_owned(), "T", 0, big, Arc::clone(&files)).unwrap();
    let per_page = (PENDING_MAX / CQ_STORE_UNIT_SIZE) as u64;
    for i in 0..per_page {
        cq.put(i, entry(i), false).unwrap();
    }
    assert_eq!(seg_len(dir.path(), 0), 0);
    cq.put(per_page, entry(per_page), false).unwrap();
    assert_eq!(seg_len(dir.path(), 0), PENDING_MAX as u64);
    for i in 0..=per_page {
        assert_eq!(cq.get(i), Some(entry(i)));
    }
}
