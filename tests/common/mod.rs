//! Helpers shared by the integration tests: small store configs, deterministic messages and
//! a tiny seeded random generator (tests must be reproducible from their seed).

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::Path;

use actimq::internals::storage::{MessageToStore, StoreConfig};
use bytes::Bytes;

/// The store host used by every storage test.
pub fn host() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10911))
}

/// A store config with small files so tests cross segment boundaries often.
pub fn small_config(dir: &Path, commit_log_segment: u64) -> StoreConfig {
    StoreConfig {
        store_path_root_dir: dir.to_owned(),
        mapped_file_size_commit_log: commit_log_segment,
        mapped_file_size_consume_queue: 20 * 1024,
        max_message_size: 32 * 1024,
        max_hash_slot_num: 4096,
        max_index_num: 40_000,
        warm_mapped_file_enable: false,
        flush_interval_commit_log: 50,
        flush_interval_consume_queue: 100,
        clean_resource_interval: 3_600_000,
        ..StoreConfig::default()
    }
}

/// xorshift64*: small, seedable, good enough to pick test inputs.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo)
    }
}

/// Message number `seq` of a test: its body, key and tag are derived from `seq`, so a
/// reader can tell exactly which message it got.
pub fn message(topic: &str, queue_id: u32, seq: u64, body_len: usize) -> MessageToStore {
    let mut body = format!("msg-{seq}-").into_bytes();
    body.resize(body_len.max(body.len()), b'a' + (seq % 26) as u8);
    let key = format!("key-{seq}");
    let uniq = format!("UNIQ{seq:028X}");
    let tag = format!("Tag{}", seq % 3);
    MessageToStore::new(topic, queue_id, Bytes::from(body)).with_properties([
        ("TAGS", tag.as_str()),
        ("KEYS", key.as_str()),
        ("UNIQ_KEY", uniq.as_str()),
    ])
}

pub mod process;

/// Deliveries per body, as text.
pub type BodyCounts = std::sync::Arc<std::sync::Mutex<std::collections::BTreeMap<String, u32>>>;

/// A listener that counts each body it receives and accepts everything, and its counts.
pub fn counting_listener() -> (actimq::MessageListener, BodyCounts) {
    let counts: BodyCounts = Default::default();
    let c = std::sync::Arc::clone(&counts);
    let listener = actimq::MessageListener::from_fn(move |msgs| {
        let mut map = c.lock().unwrap();
        for m in msgs {
            *map.entry(String::from_utf8_lossy(m.body()).into_owned())
                .or_default() += 1;
        }
        actimq::ConsumeResult::Success
    });
    (listener, counts)
}
