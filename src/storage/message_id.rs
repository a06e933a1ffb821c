//! RocketMQ's offset message id: the store host and the commit-log offset, as upper-case hex.
//!
//! The id is self-locating: decoding it gives back the broker address and the record's
//! physical offset, so "fetch by id" needs no index. Parsing never panics on user input.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Why a string is not an offset message id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("'{id}' is not an offset message id: expected 32 (IPv4) or 56 (IPv6) hex characters")]
pub struct BadMessageId {
    /// The rejected input, as given.
    pub id: String,
}

/// The offset message id of the record at `physical_offset` stored by `store_host`.
pub fn offset_msg_id(store_host: &SocketAddr, physical_offset: u64) -> String {
    let mut id = String::with_capacity(56);
    push_offset_msg_id(&mut id, store_host, physical_offset);
    id
}

/// Appends the offset message id of the record at `physical_offset` to `out`. It runs once
/// per acknowledged message (a batch's answer lists every id), so it encodes straight into
/// `out`, with no buffer or check in between.
pub fn push_offset_msg_id(out: &mut String, store_host: &SocketAddr, physical_offset: u64) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut raw = [0u8; 28];
    let ip_len = match store_host.ip() {
        IpAddr::V4(ip) => {
            raw[..4].copy_from_slice(&ip.octets());
            4
        }
        IpAddr::V6(ip) => {
            raw[..16].copy_from_slice(&ip.octets());
            16
        }
    };
    let n = ip_len + 12;
    raw[ip_len..ip_len + 4].copy_from_slice(&i32::from(store_host.port()).to_be_bytes());
    raw[ip_len + 4..n].copy_from_slice(&physical_offset.to_be_bytes());
    let mut text = [0u8; 56];
    for (pair, b) in text.chunks_exact_mut(2).zip(&raw[..n]) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xF)];
    }
    // Only hex digits were written, so this always succeeds.
    if let Ok(hex) = std::str::from_utf8(&text[..2 * n]) {
        out.push_str(hex);
    }
}

/// Splits an offset message id into store host and physical offset.
pub fn decode_offset_msg_id(id: &str) -> Result<(SocketAddr, u64), BadMessageId> {
    let bad = || BadMessageId { id: id.to_owned() };
    let raw = hex::decode(id).map_err(|_| bad())?;
    let (ip, rest): (IpAddr, &[u8]) = match raw.len() {
        16 => {
            let mut a = [0u8; 4];
            a.copy_from_slice(&raw[..4]);
            (IpAddr::V4(Ipv4Addr::from(a)), &raw[4..])
        }
        28 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(&raw[..16]);
            (IpAddr::V6(Ipv6Addr::from(a)), &raw[16..])
        }
        _ => return Err(bad()),
    };
    let mut port = [0u8; 4];
    port.copy_from_slice(&rest[..4]);
    let port = i32::from_be_bytes(port);
    let port = u16::try_from(port).map_err(|_| bad())?;
    let mut off = [0u8; 8];
    off.copy_from_slice(&rest[4..12]);
    Ok((SocketAddr::new(ip, port), u64::from_be_bytes(off)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_v4_and_v6() {
        for host in ["10.0.0.5:10911", "[::1]:10911"] {
            let host: SocketAddr = host.parse().unwrap();
            let id = offset_msg_id(&host, 0x0102_0304_0506);
            assert_eq!(decode_offset_msg_id(&id).unwrap(), (host, 0x0102_0304_0506));
        }
        let id = offset_msg_id(&"10.0.0.5:10911".parse().unwrap(), 16);
        assert_eq!(id, "0A00000500002A9F0000000000000010");
        let id = offset_msg_id(&"[fe80::1]:65535".parse().unwrap(), u64::MAX - 1);
        assert_eq!(
            id,
            "FE8000000000000000000000000000010000FFFFFFFFFFFFFFFFFFFE"
        );
    }

    #[test]
    fn pushes_onto_what_is_there() {
        let host: SocketAddr = "10.0.0.5:10911".parse().unwrap();
        let mut ids = String::from("A,");
        push_offset_msg_id(&mut ids, &host, 16);
        assert_eq!(ids, "A,0A00000500002A9F0000000000000010");
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "zz",
            "0A00000500002A9F00000000000000",
            "0A000005FFFFFFFF0000000000000010",
        ] {
            assert!(decode_offset_msg_id(bad).is_err(), "{bad}");
        }
    }
}
