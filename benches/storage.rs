//! Storage micro-benchmarks: appending records of 128 B, 1 KiB and 16 KiB, and batches of
//! 32 × 1 KiB, with async flush, and sequential pull-style reads. Run with `cargo bench --bench storage`; figures and the
//! machine they came from are in docs/BENCHMARKS.md.

use std::net::SocketAddr;
use std::time::Duration;

use actimq::internals::storage::{MessageStore, MessageToStore, StoreConfig};
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn host() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10911))
}

fn config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        store_path_root_dir: dir.to_owned(),
        // Big enough that rolls are rare, small enough that a run does not fill the disk.
        mapped_file_size_commit_log: 256 << 20,
        ..StoreConfig::default()
    }
}

fn message(size: usize, seq: u64) -> MessageToStore {
    let key = format!("key-{seq}");
    MessageToStore::new(
        "BenchTopic",
        (seq % 8) as u32,
        Bytes::from(vec![b'x'; size]),
    )
    .with_properties([
        ("TAGS", "TagA"),
        ("KEYS", key.as_str()),
        ("UNIQ_KEY", "0A0000010000000000000000000000FF"),
    ])
}

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group
        .measurement_time(Duration::from_secs(4))
        .sample_size(20);
    for size in [128usize, 1024, 16 * 1024] {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = MessageStore::open(config(dir.path()), host()).expect("open store");
        let msgs: Vec<MessageToStore> = (0..64).map(|i| message(size, i)).collect();
        let mut i = 0usize;
        group.throughput(Throughput::Elements(1));
        group.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                i = i.wrapping_add(1);
                store.append(&msgs[i % msgs.len()]).expect("append")
            })
        });
        store.shutdown().expect("shutdown");
    }
    // A batch of 32 × 1 KiB to one queue (SEND_BATCH_MESSAGE's shape): one encode pass and
    // one write per segment touched.
    let dir = tempfile::tempdir().expect("temp dir");
    let store = MessageStore::open(config(dir.path()), host()).expect("open store");
    let batch: Vec<MessageToStore> = (0..32)
        .map(|i| {
            let mut m = message(1024, i);
            m.queue_id = 0;
            m
        })
        .collect();
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("batch_32x1KiB", |b| {
        b.iter(|| store.append_batch(&batch).expect("append batch"))
    });
    store.shutdown().expect("shutdown");
    group.finish();
}

fn read(c: &mut Criterion) {
    let mut group = c.benchmark_group("read");
    group
        .measurement_time(Duration::from_secs(4))
        .sample_size(20);
    let dir = tempfile::tempdir().expect("temp dir");
    let store = MessageStore::open(config(dir.path()), host()).expect("open store");
    let n = 200_000u64;
    for seq in 0..n {
        store.append(&message(1024, seq)).expect("fill");
    }
    let per_queue = n / 8;
    // One pull: 32 records of ~1 KiB from one queue, as a consumer would ask.
    group.throughput(Throughput::Elements(32));
    let mut offset = 0u64;
    group.bench_function("pull_32x1KiB", |b| {
        b.iter(|| {
            offset = (offset + 32) % (per_queue - 32);
            let r =
                store.get_messages("BenchTopic", (offset % 8) as u32, offset, 32, 1 << 20, None);
            assert_eq!(r.messages.len(), 32);
            r
        })
    });
    group.throughput(Throughput::Elements(1));
    let mut phys = Vec::new();
    for q in 0..8u32 {
        for o in (0..per_queue).step_by(97) {
            phys.push(
                store
                    .read_by_queue_offset("BenchTopic", q, o)
                    .expect("read")
                    .physical_offset,
            );
        }
    }
    let mut k = 0usize;
    group.bench_function("read_by_physical_1KiB", |b| {
        b.iter(|| {
            k = (k + 1) % phys.len();
            store.read_by_physical(phys[k]).expect("read")
        })
    });
    group.finish();
    store.shutdown().expect("shutdown");
}

criterion_group!(benches, append, read);
criterion_main!(benches);
