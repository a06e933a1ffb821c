//! The count of bytes one connection has encoded for its socket and the kernel has not taken
//! yet: the length of its actix `FramedWrite` buffer, which actix does not expose. Not an
//! actor: two thin wrappers and the count they share, all on the connection's thread.
//!
//! Owns nothing but that count. [`MeteredEncoder`] wraps the connection's encoder and adds
//! what each frame put in the buffer; [`MeteredWriter`] wraps the socket's write half and
//! takes off what each write handed to the kernel. The connection reads [`WriteMeter::pending`]
//! after every frame it writes and closes a peer that lets it grow past
//! `max_pending_write_bytes` (a reader too slow for its own requests).
//!
//! Why it is needed: actix's writer would pause the actor once its buffer passes its high
//! watermark, but only on a `WouldBlock` error, and tokio sockets report a full socket
//! buffer as `Pending` instead, so the buffer of a peer that never reads grows without
//! limit while the connection goes on reading (and answering) its requests.
//!
//! # Invariant
//! `pending` equals the writer buffer's length: the encoder adds exactly what it appended
//! to the buffer, and the writer takes off exactly what `poll_write` reported written,
//! which actix then splits off the buffer's front.

use std::cell::Cell;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncWrite;
use tokio_util::codec::Encoder;

/// Bytes encoded and not yet written to the socket, shared by the encoder, the writer and
/// the connection. `Rc`, not `Arc`: all three live on the connection's thread, and the
/// count changes once per frame and once per socket write.
#[derive(Debug, Clone, Default)]
pub struct WriteMeter(Rc<Cell<usize>>);

impl WriteMeter {
    /// Bytes waiting in the connection's write buffer.
    pub fn pending(&self) -> usize {
        self.0.get()
    }

    fn add(&self, n: usize) {
        self.0.set(self.0.get().saturating_add(n));
    }

    fn sub(&self, n: usize) {
        self.0.set(self.0.get().saturating_sub(n));
    }
}

/// An encoder that counts what it appends to the write buffer.
pub struct MeteredEncoder<E> {
    inner: E,
    meter: WriteMeter,
}

impl<E> MeteredEncoder<E> {
    /// Wraps `inner`, adding to `meter`.
    pub fn new(inner: E, meter: WriteMeter) -> Self {
        MeteredEncoder { inner, meter }
    }
}

impl<I, E: Encoder<I>> Encoder<I> for MeteredEncoder<E> {
    type Error = E::Error;

    fn encode(&mut self, item: I, dst: &mut BytesMut) -> Result<(), Self::Error> {
        let before = dst.len();
        let result = self.inner.encode(item, dst);
        // Counted whatever the result: a failed encode may still have appended bytes, and
        // they are in the buffer as much as any others.
        self.meter.add(dst.len().saturating_sub(before));
        result
    }
}

/// A socket write half that counts what the kernel took.
pub struct MeteredWriter<W> {
    inner: W,
    meter: WriteMeter,
}

impl<W> MeteredWriter<W> {
    /// Wraps `inner`, taking off `meter`.
    pub fn new(inner: W, meter: WriteMeter) -> Self {
        MeteredWriter { inner, meter }
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for MeteredWriter<W> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.meter.sub(n);
        }
        polled
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sink that takes at most `room` bytes per write, like a socket with little space.
    struct Slow {
        room: usize,
    }

    impl AsyncWrite for Slow {
        fn poll_write(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> Poll<io::Result<usize>> {
            Poll::Ready(Ok(buf.len().min(self.room)))
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    struct Bytes3;

    impl Encoder<u8> for Bytes3 {
        type Error = io::Error;
        fn encode(&mut self, item: u8, dst: &mut BytesMut) -> io::Result<()> {
            dst.extend_from_slice(&[item; 3]);
            Ok(())
        }
    }

    #[test]
    fn pending_follows_encodes_and_partial_writes() {
        let meter = WriteMeter::default();
        let mut enc = MeteredEncoder::new(Bytes3, meter.clone());
        let mut writer = MeteredWriter::new(Slow { room: 4 }, meter.clone());
        let mut buf = BytesMut::new();
        enc.encode(1, &mut buf).unwrap();
        enc.encode(2, &mut buf).unwrap();
        assert_eq!(meter.pending(), 6);
        let waker = futures_util::task::noop_waker();
        let mut cx = Context::from_waker(&waker);
        let Poll::Ready(Ok(n)) = Pin::new(&mut writer).poll_write(&mut cx, &buf) else {
            panic!("the sink is always ready");
        };
        let _ = buf.split_to(n);
        assert_eq!((n, meter.pending()), (4, buf.len()));
        let Poll::Ready(Ok(n)) = Pin::new(&mut writer).poll_write(&mut cx, &buf) else {
            panic!("the sink is always ready");
        };
        let _ = buf.split_to(n);
        assert_eq!(meter.pending(), 0);
        assert!(buf.is_empty());
    }
}
