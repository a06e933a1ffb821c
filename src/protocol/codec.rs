//! tokio-util framing for [`Frame`]s: a 4-byte big-endian length, then the frame's
//! MessagePack.
//!
//! The decoder is the first code to see a peer's bytes, so it is written to be hostile-input
//! safe: a length above the limit is refused before a single byte is buffered for it, partial
//! input is `Ok(None)` (flow control, not failure), and undecodable contents are a typed
//! error. It never panics and never reserves room for bytes that have not arrived: the
//! buffer grows with what the peer actually sends (see [`FrameCodec::decode`]). Connection
//! actors wrap it in `FramedRead`/`FramedWrite`; it knows nothing of memory budgets.

use bytes::{BufMut, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use super::error::{Error, Result};
use super::frame::Frame;

/// Default limit on one frame (16 MiB), RocketMQ's default `frameMaxLength`. A pull response
/// of 32 messages of 4 MiB would not fit, which is why pulls are also bounded by bytes.
pub const DEFAULT_MAX_FRAME_SIZE: usize = 16 * 1024 * 1024;

/// Size of the length prefix in front of every frame.
pub const LENGTH_PREFIX_SIZE: usize = 4;

/// Read buffer of a framed socket. A pipelining peer sends dozens of 1 KiB frames at a
/// time; tokio-util's 8 KiB default took one `recv` per six of them. It is also what a
/// frame in progress starts from: the buffer doubles only when the bytes that arrived fill
/// it, so its capacity stays below twice what arrived plus this.
pub const READ_BUFFER_CAPACITY: usize = 64 * 1024;

/// Room reserved for the envelope keys and small fields when encoding, on top of header,
/// body and remark, so encoding usually needs one allocation at most.
const ENVELOPE_ESTIMATE: usize = 64;

/// Length-prefixed MessagePack framing with a size limit, for both directions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameCodec {
    /// Largest frame (without the length prefix) this codec will read or write. Checked on
    /// the announced length before buffering, so one peer cannot make us buffer more.
    max_frame_size: usize,
}

impl FrameCodec {
    /// A codec refusing frames above `max_frame_size` bytes (capped at `u32::MAX`, the most
    /// the length prefix can announce).
    pub fn new(max_frame_size: usize) -> Self {
        FrameCodec {
            max_frame_size: max_frame_size.min(u32::MAX as usize),
        }
    }

    /// The limit in force.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Appends `frame` (length prefix and MessagePack) to `dst`. On error `dst` is left as
    /// it was, so a refused frame never leaves half a frame in the write buffer.
    fn encode_frame(&self, frame: &Frame, dst: &mut BytesMut) -> Result<()> {
        let max = self.max_frame_size;
        let remark_len = frame.remark.as_ref().map_or(0, String::len);
        // A lower bound of the encoded size: refuse obvious cases before writing anything.
        let estimate = frame
            .header
            .len()
            .saturating_add(frame.body.len())
            .saturating_add(remark_len);
        if estimate > max {
            return Err(Error::FrameTooLarge {
                size: estimate,
                max,
            });
        }

        let start = dst.len();
        dst.reserve(LENGTH_PREFIX_SIZE + estimate + ENVELOPE_ESTIMATE);
        dst.put_u32(0); // patched below once the length is known
        super::direct_codec::write_wire_frame(dst, &frame.wire());

        let size = dst.len() - start - LENGTH_PREFIX_SIZE;
        let announced = match u32::try_from(size) {
            Ok(n) if size <= max => n,
            _ => {
                dst.truncate(start);
                return Err(Error::FrameTooLarge { size, max });
            }
        };
        if let Some(prefix) = dst.get_mut(start..start + LENGTH_PREFIX_SIZE) {
            prefix.copy_from_slice(&announced.to_be_bytes());
        }
        Ok(())
    }
}

impl Default for FrameCodec {
    /// A codec with [`DEFAULT_MAX_FRAME_SIZE`].
    fn default() -> Self {
        FrameCodec::new(DEFAULT_MAX_FRAME_SIZE)
    }
}

impl Decoder for FrameCodec {
    type Item = Frame;
    type Error = Error;

    /// The next whole frame of `src`, or `Ok(None)` until it has arrived.
    ///
    /// A partial frame reserves nothing: room for the announced length would be taken
    /// before the bytes exist, and a peer announcing 16 MiB and sending ten bytes would cost
    /// 16 MiB (500 such sockets took a broker past 1 GB, since the allocator backs the
    /// touched start of each reservation with a 2 MiB transparent huge page). `FramedRead`
    /// reserves one byte before each read, which doubles a full buffer, so a frame that does
    /// arrive costs O(log size) copies.
    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>> {
        let Some(prefix) = src.get(..LENGTH_PREFIX_SIZE) else {
            return Ok(None);
        };
        let mut len_bytes = [0u8; LENGTH_PREFIX_SIZE];
        len_bytes.copy_from_slice(prefix);
        let size = u32::from_be_bytes(len_bytes) as usize;
        if size > self.max_frame_size {
            return Err(Error::FrameTooLarge {
                size,
                max: self.max_frame_size,
            });
        }

        let total = LENGTH_PREFIX_SIZE + size;
        if src.len() < total {
            return Ok(None);
        }

        // Split the frame off (no copy) so header and body can keep pointing into it.
        let mut frame_bytes = src.split_to(total);
        let payload = frame_bytes.split_off(LENGTH_PREFIX_SIZE).freeze();
        if payload.is_empty() {
            return Err(Error::malformed("empty frame (length 0)"));
        }
        Frame::decode_payload(&payload).map(Some)
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(Error::malformed(format!(
                "connection closed in the middle of a frame ({} bytes buffered)",
                src.len()
            ))),
        }
    }
}

impl Encoder<Frame> for FrameCodec {
    type Error = Error;

    fn encode(&mut self, frame: Frame, dst: &mut BytesMut) -> Result<()> {
        self.encode_frame(&frame, dst)
    }
}

impl Encoder<&Frame> for FrameCodec {
    type Error = Error;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<()> {
        self.encode_frame(frame, dst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A length prefix announcing `size` bytes, then `tail`.
    fn prefixed(size: u32, tail: &[u8]) -> BytesMut {
        let mut b = BytesMut::with_capacity(LENGTH_PREFIX_SIZE + tail.len());
        b.put_u32(size);
        b.extend_from_slice(tail);
        b
    }

    #[test]
    fn a_partial_frame_does_not_reserve_its_announced_length() {
        let mut codec = FrameCodec::default();
        let mut src = prefixed(DEFAULT_MAX_FRAME_SIZE as u32 - 1, b"0123456789");
        let before = src.capacity();
        assert!(codec.decode(&mut src).unwrap().is_none());
        assert_eq!(src.len(), LENGTH_PREFIX_SIZE + 10, "nothing consumed");
        assert_eq!(
            src.capacity(),
            before,
            "no room reserved for bytes not yet sent"
        );
        assert!(src.capacity() < 4096, "capacity {}", src.capacity());
    }

    #[test]
    fn a_frame_arriving_byte_by_byte_grows_with_what_arrived() {
        let mut codec = FrameCodec::default();
        let announced = 1024 * 1024;
        let mut src = BytesMut::new();
        src.put_u32(announced);
        for _ in 0..3000 {
            // What FramedRead does before each read, then a one-byte read.
            src.reserve(1);
            src.put_u8(0);
            assert!(codec.decode(&mut src).unwrap().is_none());
        }
        assert!(
            src.capacity() <= 2 * src.len() + READ_BUFFER_CAPACITY,
            "capacity {} for {} bytes",
            src.capacity(),
            src.len()
        );
    }

    #[test]
    fn an_oversized_length_is_refused_before_buffering() {
        let mut codec = FrameCodec::new(4096);
        let mut src = prefixed(4097, b"x");
        let before = src.capacity();
        assert!(matches!(
            codec.decode(&mut src),
            Err(Error::FrameTooLarge {
                size: 4097,
                max: 4096
            })
        ));
        assert_eq!(src.capacity(), before);
    }
}
