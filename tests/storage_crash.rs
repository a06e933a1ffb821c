//! Crash safety: 240 seeded cases. Each writes a random log, "crashes" (drops the store
//! without shutdown), damages the active commit-log segment at a random byte (truncating the
//! file there, or garbling a run of bytes), reopens, and checks that every record the damage
//! did not touch reads back intact (a truncation loses the tail; a garbled run only the
//! records it overlaps), no damaged record is returned, the consume queues agree with the
//! log, and new appends continue at the right offsets.
//!
//! Reproduce one case with `CRASH_SEED=<n> cargo test --test storage_crash`.

mod common;

use std::collections::HashMap;
use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};

use actimq::internals::storage::{AppendResult, Error, MessageStore, MessageToStore};
use common::{host, message, small_config, Rng};

const SEGMENT: u64 = 64 * 1024;
const QUEUES: u32 = 3;

struct Sent {
    msg: MessageToStore,
    result: AppendResult,
}

fn run_case(seed: u64) {
    let mut rng = Rng::new(seed);
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path(), SEGMENT);
    let mut sent: Vec<Sent> = Vec::new();
    {
        let store = MessageStore::open(config.clone(), host()).unwrap();
        let count = rng.range(20, 700);
        let flush_at = rng.range(0, count + 1);
        for seq in 0..count {
            if seq == flush_at {
                // Sometimes a checkpoint lies ahead of the damage point.
                store.flush().unwrap();
            }
            let msg = message(
                "Crash",
                rng.range(0, QUEUES as u64) as u32,
                seq,
                rng.range(10, 600) as usize,
            );
            let result = store.append(&msg).unwrap();
            sent.push(Sent { msg, result });
        }
        // Dropped without shutdown: the abort marker stays, as after a crash.
    }
    let end = sent.last().map(|s| s.result.end_offset()).unwrap_or(0);
    let active_start = end - (end % SEGMENT);
    let active_start = if end == active_start && end > 0 {
        end - SEGMENT
    } else {
        active_start
    };
    let written_in_active = end - active_start;
    assert!(
        written_in_active > 0,
        "seed {seed}: nothing in the active segment"
    );
    let path = dir
        .path()
        .join("commitlog")
        .join(format!("{active_start:020}"));
    let at = rng.range(0, written_in_active);
    let damage_at = active_start + at;
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let garbled_to = if rng.next().is_multiple_of(2) {
        file.set_len(at).unwrap();
        end
    } else {
        let len = rng.range(1, 64).min(SEGMENT - at);
        let mut buf = vec![0u8; len as usize];
        file.seek(SeekFrom::Start(at)).unwrap();
        file.read_exact(&mut buf).unwrap();
        for b in buf.iter_mut() {
            *b ^= rng.range(1, 256) as u8;
        }
        file.seek(SeekFrom::Start(at)).unwrap();
        file.write_all(&buf).unwrap();
        damage_at + len
    };
    drop(file);

    let truncated = garbled_to == end;
    let hit = |s: &Sent| s.result.end_offset() > damage_at && s.result.physical_offset < garbled_to;
    let damaged = sent
        .iter()
        .position(hit)
        .unwrap_or_else(|| panic!("seed {seed}: damage at {damage_at} hit no record"));
    // A truncation loses everything from the damaged record on; a garbled run only the
    // records it overlaps, since recovery finds the next valid record after it.
    let lost: Vec<bool> = sent
        .iter()
        .enumerate()
        .map(|(i, s)| if truncated { i >= damaged } else { hit(s) })
        .collect();

    let store = MessageStore::open(config, host()).unwrap();
    let mut queue_len: HashMap<u32, u64> = HashMap::new();
    for (s, lost) in sent.iter().zip(&lost) {
        if *lost {
            assert!(
                store.read_by_physical(s.result.physical_offset).is_err(),
                "seed {seed}: a damaged record was returned: {} len {} damage {damage_at}..{garbled_to} truncated {truncated}", s.result.physical_offset, s.result.size
            );
            continue;
        }
        let got = store
            .read_by_physical(s.result.physical_offset)
            .unwrap_or_else(|e| panic!("seed {seed}: an intact record was lost: {e}"));
        assert_eq!(got.body, s.msg.body, "seed {seed}");
        let by_queue = store
            .read_by_queue_offset("Crash", s.msg.queue_id, s.result.queue_offset)
            .unwrap_or_else(|e| panic!("seed {seed}: queue entry lost: {e}"));
        assert_eq!(
            by_queue.physical_offset, s.result.physical_offset,
            "seed {seed}"
        );
        let len = queue_len.entry(s.msg.queue_id).or_default();
        *len = (*len).max(s.result.queue_offset + 1);
    }
    // The log ends after the last intact record.
    let cut = match lost.iter().rposition(|l| !l) {
        Some(i) if i + 1 == sent.len() => end,
        Some(i) => sent[i + 1].result.physical_offset,
        None => sent[0].result.physical_offset,
    };
    assert_eq!(
        store.max_physical_offset(),
        cut,
        "seed {seed}: log ends after the last intact record"
    );
    for q in 0..QUEUES {
        let n = queue_len.get(&q).copied().unwrap_or(0);
        assert_eq!(
            store.max_offset("Crash", q),
            n,
            "seed {seed}: queue {q} length"
        );
        assert!(
            matches!(
                store.read_by_queue_offset("Crash", q, n),
                Err(Error::OffsetBeyondEnd { .. })
            ),
            "seed {seed}: queue {q} has an entry past the log"
        );
    }
    if !truncated && lost.iter().any(|l| *l) {
        let (ranges, _) = store.damage();
        assert!(
            ranges
                .iter()
                .any(|r| r.from == sent[damaged].result.physical_offset && r.to > r.from),
            "seed {seed}: the damage is not reported: {ranges:?}"
        );
    }

    // New appends continue where the good log ends, with dense queue offsets.
    let q = sent[damaged].msg.queue_id;
    let msg = message("Crash", q, 999_999, 100);
    let r = store.append(&msg).unwrap();
    let fits = cut % SEGMENT + r.size as u64 + 8 <= SEGMENT;
    let expect_phys = if fits {
        cut
    } else {
        cut - cut % SEGMENT + SEGMENT
    };
    assert_eq!(r.physical_offset, expect_phys, "seed {seed}");
    assert_eq!(
        r.queue_offset,
        queue_len.get(&q).copied().unwrap_or(0),
        "seed {seed}"
    );
    assert_eq!(
        store.read_by_physical(r.physical_offset).unwrap().body,
        msg.body
    );
    store.shutdown().unwrap();
}

#[test]
fn recovery_survives_torn_and_garbled_tails() {
    if let Some(seed) = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        run_case(seed);
        return;
    }
    for seed in 1..=240 {
        run_case(seed);
    }
}
