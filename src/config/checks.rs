//! Checks of single values (durations, frame sizes, names, hosts) shared by the configs'
//! `validate()`, each failing with the key it was given.

use super::*;

pub(super) fn positive(key: &str, ms: u64) -> Result<(), ConfigError> {
    if ms == 0 {
        return Err(invalid(key, "must be at least 1 ms"));
    }
    Ok(())
}

pub(super) fn check_frame_size(size: usize) -> Result<(), ConfigError> {
    if !(4096..=u32::MAX as usize).contains(&size) {
        return Err(invalid(
            "max_frame_size",
            format!(
                "{size} bytes is outside 4096..={} (a u32 length prefix)",
                u32::MAX
            ),
        ));
    }
    Ok(())
}

/// The budget for incomplete frames must hold one whole frame of the largest size, or a
/// legitimate peer sending one would be cut.
pub(super) fn check_incomplete_budget(
    budget: usize,
    max_frame_size: usize,
) -> Result<(), ConfigError> {
    if budget < max_frame_size {
        return Err(invalid(
            "max_incomplete_frame_bytes",
            format!(
                "{budget} bytes cannot hold one frame of max_frame_size ({max_frame_size} bytes)"
            ),
        ));
    }
    Ok(())
}

/// The bound of unread answers per connection must hold one answer of the largest size, or
/// every reader of a large pull would be cut however fast it reads.
pub(super) fn check_pending_write_bound(
    bound: usize,
    max_frame_size: usize,
) -> Result<(), ConfigError> {
    if bound < max_frame_size {
        return Err(invalid(
            "max_pending_write_bytes",
            format!(
                "{bound} bytes cannot hold one answer of max_frame_size ({max_frame_size} bytes)"
            ),
        ));
    }
    Ok(())
}

pub(super) fn check_name(key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = (1..=127).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if !ok {
        return Err(invalid(
            key,
            format!("'{name}' must be 1 to 127 letters, digits, '-', '_' or '.'"),
        ));
    }
    Ok(())
}

/// An IP address (IPv6 without brackets) or a host name.
pub(super) fn check_host(
    key: &str,
    host: &str,
    may_be_unspecified: bool,
) -> Result<(), ConfigError> {
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_unspecified() && !may_be_unspecified => Err(invalid(
            key,
            format!("'{host}' cannot be advertised; give the address clients reach this host at"),
        )),
        Ok(_) => Ok(()),
        Err(_) if is_host_name(host) => Ok(()),
        Err(_) => Err(invalid(
            key,
            format!("'{host}' is neither an IP address nor a host name"),
        )),
    }
}

pub(super) fn is_host_name(host: &str) -> bool {
    (1..=253).contains(&host.len())
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// `host:port` with a non-zero port; IPv6 hosts in brackets.
pub(super) fn check_host_port(addr: &str) -> Result<(), String> {
    let Some((host, port)) = addr.rsplit_once(':') else {
        return Err("expected host:port".to_owned());
    };
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => return Err(format!("'{port}' is not a port in 1..=65535")),
    }
    let host_ok = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => host.parse::<std::net::Ipv4Addr>().is_ok() || is_host_name(host),
    };
    if !host_ok {
        return Err(format!(
            "'{host}' is not an IPv4 address, a [IPv6] address or a host name"
        ));
    }
    Ok(())
}

pub(super) fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
