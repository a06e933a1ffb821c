//! The storage layer's error type: every failure a caller of `storage` can see.
//!
//! Each variant names the file, offset or limit involved so an operator can act on it.
//! This module must never depend on sockets, actors or wire codes: the broker maps these
//! to response codes at its own boundary.

use std::io;
use std::path::PathBuf;

use crate::storage::record::RecordError;

/// Storage-layer result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call on a store file failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: io::Error,
    },
    /// A stored record failed validation (torn write, bit rot, or not a record at all).
    #[error("corrupt record at commit-log offset {offset}: {source}")]
    CorruptRecord {
        /// Physical offset of the bad record.
        offset: u64,
        /// What was wrong with it.
        #[source]
        source: RecordError,
    },
    /// A message does not fit the encoding or the configured limits.
    #[error("message rejected: {0}")]
    MessageIllegal(#[from] MessageIllegal),
    /// A read asked for data that retention has already deleted.
    #[error(
        "offset {requested} was deleted by retention; the lowest readable offset is now {min}"
    )]
    OffsetMoved {
        /// The offset that was asked for.
        requested: u64,
        /// The lowest offset still readable.
        min: u64,
    },
    /// A read asked for data that has not been written yet.
    #[error("offset {requested} is at or past the end ({max})")]
    OffsetBeyondEnd {
        /// The offset that was asked for.
        requested: u64,
        /// The next offset to be written.
        max: u64,
    },
    /// Raw records were offered at an offset other than the log's end.
    #[error("raw append must start at the commit-log end {expected}, not at {got}")]
    NotAtEnd {
        /// The current end of the commit log.
        expected: u64,
        /// The offset the caller offered.
        got: u64,
    },
    /// A flush failed earlier: the store no longer knows what is durable and refuses writes
    /// until it is reopened (see "fsyncgate": retrying a failed fsync can silently lose data).
    #[error("store is poisoned by an earlier write or flush failure ({0}); it refuses writes until it is reopened (a broker reopens it by itself; a failed reopen needs the cause fixed and a restart)")]
    Poisoned(String),
    /// Waiting for a flush took longer than `sync_flush_timeout`.
    #[error("flush did not reach offset {offset} within {timeout_ms} ms")]
    FlushTimeout {
        /// The offset the caller waited for.
        offset: u64,
        /// The configured limit.
        timeout_ms: u64,
    },
    /// Another process (or another store in this process) already has this store open.
    #[error("store directory {path} is locked by another process; stop it or use another store_path_root_dir")]
    Locked {
        /// The store's lock file.
        path: PathBuf,
    },
    /// A configuration value is unusable.
    #[error("invalid store configuration: {key}: {reason}")]
    Config {
        /// The configuration key, as it is spelled in TOML.
        key: &'static str,
        /// Why it is unusable.
        reason: String,
    },
    /// A file in the store does not look like ours (wrong name, size or layout).
    #[error("unexpected store file {path}: {reason}")]
    BadFile {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The store's file system is at least `disk_space_warning_level_ratio` full: writes
    /// are refused until space is freed (reads go on).
    #[error(
        "the store's disk is {used_percent} % full, at or above disk_space_warning_level_ratio \
         ({limit} %): writes are refused until retention or an operator frees space"
    )]
    DiskFull {
        /// Disk use seen at the last check, percent.
        used_percent: u32,
        /// The configured limit, percent.
        limit: u32,
    },
    /// A write found no space left on the store's disk. Writes are refused until space is
    /// freed; they resume by themselves, and nothing acknowledged was deleted.
    #[error(
        "no space left on the store's disk (writing {path}): writes are refused until space \
         is freed (delete other files, grow the disk, or set disk_full_policy = \
         \"delete_oldest\"); reads go on and writes resume by themselves"
    )]
    NoSpace {
        /// The file the failed write was for.
        path: PathBuf,
    },
    /// The store has been shut down.
    #[error("store is shut down")]
    Closed,
}

/// Why a message was refused before anything was written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MessageIllegal {
    /// The encoded record exceeds `max_message_size`.
    #[error("encoded size {size} bytes exceeds max_message_size {max} bytes")]
    TooLarge {
        /// Encoded record size.
        size: usize,
        /// The configured limit.
        max: usize,
    },
    /// Topic names must be 1..=127 bytes (RocketMQ stores the length in a signed byte).
    #[error("topic length {len} is outside 1..=127 bytes")]
    TopicLength {
        /// The offending length.
        len: usize,
    },
    /// Topic names may hold only letters, digits, `%`, `|`, `_` and `-` (RocketMQ's rule;
    /// it also keeps them safe as folder names).
    #[error("topic '{topic}' has characters other than letters, digits, %, |, _ and -")]
    TopicChars {
        /// The offending topic.
        topic: String,
    },
    /// The properties string is not well formed (see
    /// [`crate::common::properties::check_encoded`]).
    #[error("properties are malformed: {0}")]
    Properties(String),
    /// The properties string must fit a signed 16-bit length.
    #[error("properties are {len} bytes; at most 32767 are allowed")]
    PropertiesTooLong {
        /// The offending length.
        len: usize,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// Whether this is the file system saying it has no space left (or the user's quota
    /// is used up): a state that passes once space is freed, not damage.
    pub fn is_no_space(&self) -> bool {
        match self {
            Error::NoSpace { .. } => true,
            Error::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(libc::ENOSPC) | Some(libc::EDQUOT)
            ),
            _ => false,
        }
    }
}
