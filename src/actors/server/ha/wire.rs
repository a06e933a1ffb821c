//! The replication socket's frames: a length prefix (tokio-util's length-delimited codec),
//! then one tag byte. Slave to master: `Hello` (once; MessagePack) and `Ack`; master to
//! slave: `Data` (records, possibly none as a heartbeat) and `Refused`. Never trusts a
//! length: the codec refuses frames over its limit, and every field is read with checks.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

const TAG_HELLO: u8 = 1;
const TAG_ACK: u8 = 2;
const TAG_DATA: u8 = 3;
const TAG_REFUSED: u8 = 4;

/// What a slave says first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Hello {
    pub broker_name: String,
    pub broker_id: u64,
    /// The end of the slave's log: where the master starts shipping.
    pub max_offset: u64,
    /// Start and CRC of the slave's last record, for the prefix check.
    pub last_record: Option<(u64, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum HaFrame {
    Hello(Hello),
    /// The slave holds every byte below this offset.
    Ack(u64),
    /// Records starting at `start`; `master_end` is the end of what the master can ship.
    Data {
        start: u64,
        master_end: u64,
        bytes: Bytes,
    },
    /// The master will not replicate to this slave, and why.
    Refused(String),
}

/// A frame that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("bad replication frame: {0}")]
pub(super) struct WireError(String);

/// The codec, refusing frames longer than `max_frame`.
pub(super) fn codec(max_frame: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(max_frame)
        .new_codec()
}

impl HaFrame {
    pub(super) fn encode(&self) -> Result<Bytes, WireError> {
        let mut out = BytesMut::new();
        match self {
            HaFrame::Hello(h) => {
                out.put_u8(TAG_HELLO);
                let body = rmp_serde::to_vec_named(h).map_err(|e| WireError(e.to_string()))?;
                out.extend_from_slice(&body);
            }
            HaFrame::Ack(o) => {
                out.put_u8(TAG_ACK);
                out.put_u64(*o);
            }
            HaFrame::Data {
                start,
                master_end,
                bytes,
            } => {
                out.reserve(17 + bytes.len());
                out.put_u8(TAG_DATA);
                out.put_u64(*start);
                out.put_u64(*master_end);
                out.extend_from_slice(bytes);
            }
            HaFrame::Refused(why) => {
                out.put_u8(TAG_REFUSED);
                out.extend_from_slice(why.as_bytes());
            }
        }
        Ok(out.freeze())
    }

    pub(super) fn decode(frame: BytesMut) -> Result<HaFrame, WireError> {
        let mut b = frame.freeze();
        if b.is_empty() {
            return Err(WireError("empty frame".into()));
        }
        let tag = b.get_u8();
        let u64_at = |b: &mut Bytes, what: &str| {
            if b.remaining() < 8 {
                return Err(WireError(format!("{what} cut short")));
            }
            Ok(b.get_u64())
        };
        match tag {
            TAG_HELLO => rmp_serde::from_slice(&b)
                .map(HaFrame::Hello)
                .map_err(|e| WireError(format!("hello: {e}"))),
            TAG_ACK => Ok(HaFrame::Ack(u64_at(&mut b, "ack")?)),
            TAG_DATA => {
                let start = u64_at(&mut b, "data start")?;
                let master_end = u64_at(&mut b, "data end")?;
                Ok(HaFrame::Data {
                    start,
                    master_end,
                    bytes: b,
                })
            }
            TAG_REFUSED => Ok(HaFrame::Refused(String::from_utf8_lossy(&b).into_owned())),
            other => Err(WireError(format!("unknown tag {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let frames = [
            HaFrame::Hello(Hello {
                broker_name: "broker-a".into(),
                broker_id: 1,
                max_offset: 42,
                last_record: Some((10, 7)),
            }),
            HaFrame::Ack(u64::MAX),
            HaFrame::Data {
                start: 5,
                master_end: 9,
                bytes: Bytes::from_static(b"abcd"),
            },
            HaFrame::Refused("why".into()),
        ];
        for f in frames {
            let bytes = f.encode().unwrap();
            assert_eq!(HaFrame::decode(BytesMut::from(&bytes[..])).unwrap(), f);
        }
        for bad in [
            &b""[..],
            &[9u8][..],
            &[TAG_ACK, 1, 2][..],
            &[TAG_DATA, 0][..],
        ] {
            assert!(HaFrame::decode(BytesMut::from(bad)).is_err(), "{bad:?}");
        }
    }
}
