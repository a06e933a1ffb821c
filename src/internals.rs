//! The machinery under the public API: storage, protocol, actors, configs, the binaries'
//! helpers.
//!
//! Public only so that this repository's binaries, tests, benches and fuzz targets can
//! reach it; it is not API, has no stability promise and is left out of the docs
//! (`#[doc(hidden)]` at the crate root). Applications use the crate root,
//! [`crate::server`] and [`crate::admin`]. The folders stay where they were (`src/storage/`,
//! ...); only their place in the module tree is here.

#[path = "actors/mod.rs"]
pub mod actors;
#[path = "cli.rs"]
pub mod cli;
#[path = "client/mod.rs"]
pub mod client;
#[path = "common/mod.rs"]
pub mod common;
#[path = "config/mod.rs"]
pub mod config;
#[path = "protocol/mod.rs"]
pub mod protocol;
#[path = "storage/mod.rs"]
pub mod storage;
