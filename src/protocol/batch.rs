//! The body of SEND_BATCH_MESSAGE: several messages of one topic packed back to back, in
//! RocketMQ's batch layout (per entry: total size i32, magic i32 = 0, body CRC i32 = 0,
//! since the broker computes its own, flag i32, body length i32 + body, properties length
//! i16 + properties; big-endian).
//!
//! Decoding never panics and never reads past its input.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::{Error, Result};

/// One message inside a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchEntry {
    /// User flag.
    pub flag: i32,
    /// Payload (a slice of the batch body when decoded).
    pub body: Bytes,
    /// RocketMQ properties string.
    pub properties: String,
}

/// Packs entries into a batch body.
pub fn encode_batch(entries: &[BatchEntry]) -> Bytes {
    let size: usize = entries
        .iter()
        .map(|e| 22 + e.body.len() + e.properties.len())
        .sum();
    let mut out = BytesMut::with_capacity(size);
    for e in entries {
        let total = 22 + e.body.len() + e.properties.len();
        out.put_i32(total as i32);
        out.put_i32(0);
        // BODYCRC: 0, as RocketMQ's clients send it. The broker computes every body's CRC
        // itself before storing, so one computed here would only cost the sender.
        out.put_i32(0);
        out.put_i32(e.flag);
        out.put_i32(e.body.len() as i32);
        out.put_slice(&e.body);
        out.put_i16(e.properties.len() as i16);
        out.put_slice(e.properties.as_bytes());
    }
    out.freeze()
}

fn bad(reason: impl Into<String>) -> Error {
    Error::Malformed {
        reason: reason.into(),
    }
}

fn int(buf: &[u8], at: usize) -> Result<i32> {
    buf.get(at..at + 4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| bad(format!("batch truncated at byte {at}")))
}

/// Unpacks a batch body; bodies are zero-copy slices of `body`.
pub fn decode_batch(body: &Bytes) -> Result<Vec<BatchEntry>> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while pos < body.len() {
        let total =
            usize::try_from(int(body, pos)?).map_err(|_| bad("negative batch entry size"))?;
        let end = pos
            .checked_add(total)
            .filter(|e| *e <= body.len() && total >= 22);
        let end = end.ok_or_else(|| bad(format!("batch entry at {pos} claims {total} bytes")))?;
        let flag = int(body, pos + 12)?;
        let body_len =
            usize::try_from(int(body, pos + 16)?).map_err(|_| bad("negative body length"))?;
        let body_start = pos + 20;
        let body_end = body_start
            .checked_add(body_len)
            .filter(|e| *e + 2 <= end)
            .ok_or_else(|| bad("batch body overruns its entry"))?;
        let props_len = body
            .get(body_end..body_end + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| bad("batch entry truncated"))?;
        let props_len =
            usize::try_from(props_len).map_err(|_| bad("negative properties length"))?;
        let props_end = body_end + 2 + props_len;
        if props_end != end {
            return Err(bad(format!("batch entry at {pos}: sizes do not add up")));
        }
        let properties = std::str::from_utf8(&body[body_end + 2..props_end])
            .map_err(|_| bad("batch properties are not UTF-8"))?
            .to_owned();
        out.push(BatchEntry {
            flag,
            body: body.slice(body_start..body_end),
            properties,
        });
        pos = end;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let entries = vec![
            BatchEntry {
                flag: 1,
                body: Bytes::from_static(b"one"),
                properties: "A\u{1}1\u{2}".into(),
            },
            BatchEntry {
                flag: 2,
                body: Bytes::new(),
                properties: String::new(),
            },
        ];
        let body = encode_batch(&entries);
        assert_eq!(decode_batch(&body).unwrap(), entries);
        // RocketMQ's layout: size, magic 0, body CRC 0 (the broker computes it), flag.
        assert_eq!(
            &body[..16],
            &[0, 0, 0, 29, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
        );
        for cut in 1..body.len() {
            let _ = decode_batch(&body.slice(..cut));
        }
        assert!(decode_batch(&Bytes::from_static(&[0xFF; 30])).is_err());
    }
}
