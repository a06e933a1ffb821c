//! Inputs the fuzz targets (`fuzz/`) failed on, replayed without a fuzzer: each file in
//! `tests/fuzz_regressions/` is named `<target>-<what>` and holds the input as the target
//! got it. Every file is replayed through the decoder its target covers and must not
//! panic; the tests below also pin the answer the fix gives.

use std::path::{Path, PathBuf};

use actimq::internals::storage::record::RecordError;
use actimq::internals::storage::record::{self, Verify};
use actimq::internals::storage::StoredMessage;
use bytes::Bytes;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions")
}

fn input(name: &str) -> Vec<u8> {
    std::fs::read(dir().join(name)).unwrap()
}

/// What `record_decode` checks of a record `Strict` accepts: re-encoded from its fields it
/// decodes to the same fields.
fn record_reencodes(data: &[u8]) {
    let Ok(view) = record::decode(data, Verify::Strict) else {
        return;
    };
    if let Some(buf) = record::reencode(&view) {
        assert_eq!(record::decode(&buf, Verify::Strict).unwrap(), view);
    }
}

#[test]
fn every_kept_input_replays() {
    let mut names: Vec<String> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for name in names {
        let data = input(&name);
        match name.split_once('-').map(|(target, _)| target) {
            Some("record_decode") => {
                for v in [Verify::Structure, Verify::Crc, Verify::Strict] {
                    let _ = record::decode(&data, v);
                }
                let _ = StoredMessage::decode(Bytes::from(data.clone()));
                record_reencodes(&data);
            }
            _ => panic!("{name}: no fuzz target of that name"),
        }
    }
}

/// A host port field above 65535 (here 0x0001_0FA0) was cut to 16 bits (port 4000), so the
/// record decoded to fields that re-encode to other bytes. It is refused now.
#[test]
fn record_port_out_of_range_is_refused() {
    let data = input("record_decode-port-out-of-range");
    for v in [Verify::Structure, Verify::Crc, Verify::Strict] {
        assert_eq!(
            record::decode(&data, v),
            Err(RecordError::BadPort(0x0001_0FA0))
        );
    }
    // The same record with port 4000 written as the encoder writes it decodes.
    let mut fixed = data.clone();
    fixed[52..56].copy_from_slice(&4000i32.to_be_bytes());
    let view = record::decode(&fixed, Verify::Structure).unwrap();
    assert_eq!(view.born_host.port(), 4000);
}
