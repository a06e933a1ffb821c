//! The one entry point for running a name server and a broker inside a process: what the
//! `mqnamesrv` and `mqbroker` binaries do, for tests, examples and applications that embed
//! them. Both must run inside an actix system (`actix_rt::System`); each returns a handle
//! with the address it bound (ask for port 0 to get a free one) and a graceful `shutdown`.
//!
//! ```no_run
//! use actimq::server::{start_broker, start_namesrv, BrokerConfig, NamesrvConfig, StoreConfig};
//!
//! # async fn run() -> anyhow::Result<()> {
//! let namesrv = start_namesrv(NamesrvConfig {
//!     listen_host: "127.0.0.1".into(),
//!     listen_port: 0,
//!     ..NamesrvConfig::default()
//! })
//! .await?;
//! let broker = start_broker(BrokerConfig {
//!     listen_host: "127.0.0.1".into(),
//!     listen_port: 0,
//!     namesrv_addr: namesrv.addr.to_string(),
//!     store: StoreConfig {
//!         store_path_root_dir: "/tmp/actimq-store".into(),
//!         ..StoreConfig::default()
//!     },
//!     ..BrokerConfig::default()
//! })
//! .await?;
//! // ... clients connect to namesrv.addr ...
//! broker.shutdown().await;
//! namesrv.stop_accepting();
//! # Ok(())
//! # }
//! ```
//!
//! This module re-exports only; it owns no behaviour.

pub use crate::actors::server::broker::{start_broker, BrokerError, BrokerHandle};
pub use crate::actors::server::namesrv::{start_namesrv, NamesrvHandle};
pub use crate::config::{BrokerConfig, BrokerRole, NamesrvConfig};
pub use crate::storage::{DiskFullPolicy, FlushDiskType, StoreConfig};
