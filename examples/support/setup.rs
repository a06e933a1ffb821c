//! What every example needs before it starts: logs on stderr (`RUST_LOG` sets the level)
//! and the name-server address (`-n ADDR`, else `NAMESRV_ADDR`, else `127.0.0.1:9876`,
//! where `mqnamesrv -c config/namesrv.toml` listens). Shared by the examples with
//! `#[path = "support/setup.rs"] mod setup;`; an application does the same its own way.

#![allow(dead_code)]

/// Logs to stderr at `default_level` unless `RUST_LOG` says otherwise.
pub fn init_logs(default_level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The name servers to use: `-n ADDR`, else `NAMESRV_ADDR`, else `127.0.0.1:9876`.
pub fn namesrv_addr() -> String {
    std::env::args()
        .skip_while(|a| a != "-n")
        .nth(1)
        .or_else(|| std::env::var("NAMESRV_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:9876".into())
}
