//! Many queues: 1,000 topics × 8 queues with one message each, a clean restart, and what
//! the process holds meanwhile (open files, mappings, disk blocks, bytes read at reopen),
//! read from `/proc/self`. Open files and mappings must follow the queues in use, not the
//! number of queues, and a clean reopen must not read the queues.
//!
//! The ignored variant runs 10,000 topics and prints its figures for docs/BENCHMARKS.md:
//! `cargo test --release --test storage_many_queues -- --ignored --nocapture`.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

use actimq::internals::storage::{MessageStore, StoreConfig};
use common::{host, message, Rng};

const QUEUES_PER_TOPIC: u32 = 8;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .count()
}

/// `field` of a `/proc/self/<file>` line such as `read_bytes: 123` or `VmRSS: 12 kB`.
fn proc_field(file: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/self/{file}"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim_start_matches(':').split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Allocated bytes (as `du` counts them) of every file under `dir`, except `skip`.
fn allocated(dir: &Path, skip: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path == skip {
            continue;
        }
        let meta = std::fs::symlink_metadata(&path).unwrap();
        total += meta.blocks() * 512;
        if meta.is_dir() {
            total += allocated(&path, skip);
        }
    }
    total
}

/// Drops the cached pages of every consume-queue file, so that what a reopen reads from
/// them shows in `read_bytes`.
fn evict_queue_pages(dir: &Path) {
    use std::os::fd::AsRawFd;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            evict_queue_pages(&path);
        } else if let Ok(f) = std::fs::File::open(&path) {
            // SAFETY: only advice about the file's cached pages.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
    }
}

fn topic(t: u32) -> String {
    format!("ManyQueues{t:05}")
}

/// What one run measured (printed with `Debug`, and checked).
#[derive(Debug)]
#[allow(dead_code)]
struct Figures {
    write_time: Duration,
    fds_while_writing: usize,
    maps_while_writing: usize,
    reopen_time: Duration,
    reopen_read_bytes: u64,
    fds_after_reads: usize,
    maps_after_reads: usize,
    rss_kib: u64,
    allocated_beyond_log: u64,
}

fn config(dir: &Path) -> StoreConfig {
    StoreConfig {
        store_path_root_dir: dir.to_owned(),
        mapped_file_size_commit_log: 64 << 20,
        max_hash_slot_num: 100_000,
        max_index_num: 400_000,
        warm_mapped_file_enable: false,
        flush_interval_consume_queue: 200,
        clean_resource_interval: 3_600_000,
        // The default consume-queue segment size (6 MB): the size every queue's file had
        // up front before files grew with their entries.
        ..StoreConfig::default()
    }
}

fn run(topics: u32) -> Figures {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let (base_fds, base_maps) = (open_fds(), mappings());
    let started = Instant::now();
    let mut fds_while_writing = 0;
    let mut maps_while_writing = 0;
    {
        let store = MessageStore::open(config.clone(), host()).unwrap();
        for t in 0..topics {
            for q in 0..QUEUES_PER_TOPIC {
                let seq = (t * QUEUES_PER_TOPIC + q) as u64;
                let r = store.append(&message(&topic(t), q, seq, 100)).unwrap();
                assert_eq!(r.queue_offset, 0);
            }
            if t % 100 == 99 {
                fds_while_writing = fds_while_writing.max(open_fds() - base_fds);
                maps_while_writing = maps_while_writing.max(mappings() - base_maps);
            }
        }
        store.shutdown().unwrap();
    }
    let write_time = started.elapsed();
    evict_queue_pages(&dir.path().join("consumequeue"));

    let read_before = proc_field("io", "read_bytes");
    let started = Instant::now();
    let store = MessageStore::open(config, host()).unwrap();
    let reopen_time = started.elapsed();
    let reopen_read_bytes = proc_field("io", "read_bytes").saturating_sub(read_before);

    let mut rng = Rng::new(topics as u64);
    let total = topics * QUEUES_PER_TOPIC;
    let samples = (0..100)
        .map(|_| rng.range(0, total as u64) as u32)
        .chain([0, total - 1]);
    for n in samples {
        let (t, q) = (n / QUEUES_PER_TOPIC, n % QUEUES_PER_TOPIC);
        let m = store.read_by_queue_offset(&topic(t), q, 0).unwrap();
        assert!(
            m.body.starts_with(format!("msg-{n}-").as_bytes()),
            "queue {n}"
        );
        let got = store.get_messages(&topic(t), q, 0, 32, 1 << 20, None);
        assert_eq!(got.messages.len(), 1, "queue {n}");
        assert_eq!((got.min_offset, got.max_offset), (0, 1), "queue {n}");
    }
    let figures = Figures {
        write_time,
        fds_while_writing,
        maps_while_writing,
        reopen_time,
        reopen_read_bytes,
        fds_after_reads: open_fds() - base_fds,
        maps_after_reads: mappings() - base_maps,
        rss_kib: proc_field("status", "VmRSS"),
        allocated_beyond_log: allocated(dir.path(), &dir.path().join("commitlog")),
    };
    store.shutdown().unwrap();
    eprintln!("{topics} topics × {QUEUES_PER_TOPIC} queues: {figures:#?}");
    figures
}

#[test]
fn a_thousand_topics_hold_few_files_and_reopen_without_reading_queues() {
    let f = run(1_000);
    assert!(f.fds_while_writing <= 2_000, "{f:?}");
    assert!(f.maps_while_writing <= 10_000, "{f:?}");
    assert!(f.fds_after_reads <= 2_000, "{f:?}");
    assert!(f.maps_after_reads <= 10_000, "{f:?}");
    assert!(f.allocated_beyond_log <= 2 << 30, "{f:?}");
    // 64 KiB per 1,000 queues, plus 1 MiB for the commit log's tail check and the rest of
    // the open (checkpoint, index headers).
    assert!(f.reopen_read_bytes <= 8 * (64 << 10) + (1 << 20), "{f:?}");
}

#[test]
#[ignore = "large: 80,000 queues; run by hand for docs/BENCHMARKS.md"]
fn ten_thousand_topics_figures() {
    let f = run(10_000);
    assert!(f.fds_after_reads <= 2_000, "{f:?}");
    assert!(f.maps_after_reads <= 10_000, "{f:?}");
}
