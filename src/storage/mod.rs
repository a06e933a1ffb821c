//! The durable storage engine: commit log, consume queues, index, checkpoint and recovery.
//!
//! Plain Rust with a synchronous API: no actix, no sockets, no async runtime, so it can be
//! proven correct and measured on its own. Actors wrap [`MessageStore`]; they never reach
//! into the files directly.
//!
//! # Layout on disk (under `store_path_root_dir`)
//! - `commitlog/00000000000000000000`, ...: the log, segments named by start offset
//! - `consumequeue/<topic>/<queue id>/<segment>`: 20-byte entries per queue
//! - `index/<sequence>`: key and unique-id hash index files
//! - `checkpoint`: how far each part is known flushed
//! - `damage.json`: commit-log ranges found damaged and skipped (see [`damage`])
//! - `abort`: present while the store is open; found at open it means an unclean stop
//! - `lock`: advisory lock so two processes never share one store
//!
//! # Modules
//! - [`record`]: the stored-message layout (RocketMQ's, byte for byte)
//! - [`message_id`]: offset message ids
//! - `mapped_file`, [`commit_log`], [`consume_queue`], [`index`]: the files; `warmer` keeps
//!   the segment being written faulted in ahead of the writer; [`queue_files`] bounds the
//!   consume-queue files open at once
//! - [`store`]: appends, the dispatch path, reads, flushing; `recovery`, `retention`

#![deny(missing_docs)]

pub mod checkpoint;
pub mod commit_log;
pub mod config;
pub mod consume_queue;
pub mod damage;
mod error;
pub mod flush;
pub mod index;
pub mod mapped_file;
pub mod message_id;
pub mod queue_files;
mod reader;
pub mod record;
mod recovery;
pub mod retention;
pub mod store;
mod warmer;

pub use config::{DiskFullPolicy, FlushDiskType, StoreConfig};
pub use error::{Error, MessageIllegal, Result};
pub use record::{MessageToStore, StoredMessage};
pub use retention::RetentionReport;
pub use store::{
    AppendResult, ConfirmPolicy, GetResult, GetStatus, LogChunk, MessageStore, Preparation,
    StoreStats,
};
