//! The message store: the commit log plus everything derived from it, behind one handle.
//!
//! Owns appends (one writer at a time), the single dispatch path that derives consume-queue
//! and index entries from records, reads by physical offset, queue offset, key and id, the
//! flush thread, and clean shutdown. It is plain Rust: no actors, no sockets, no async
//! runtime. Callers on an event loop must treat `append` as quick and `wait_durable` and
//! `flush` as blocking.
//!
//! Split by concern: this file opens, appends and shuts down; `write` holds the append and
//! dispatch internals, `read` the lookups, `background` the flush and housekeeping threads,
//! `handover` what replacing a poisoned handle takes.

mod background;
mod confirm;
mod handover;
mod prepare;
mod read;
mod ship;
mod write;

pub use confirm::ConfirmPolicy;
pub use prepare::Preparation;
pub use ship::LogChunk;

use background::{join_quietly, StopSignal};

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::storage::checkpoint::Checkpoint;
use crate::storage::commit_log::CommitLog;
use crate::storage::config::{FlushDiskType, StoreConfig};
use crate::storage::consume_queue::{ConsumeQueue, CqEntry};
use crate::storage::damage::DamageLog;
use crate::storage::error::{Error, MessageIllegal, Result};
use crate::storage::flush::{DurableCallback, FlushQueue, Wake};
use crate::storage::index::IndexService;
use crate::storage::message_id::decode_offset_msg_id;
use crate::storage::queue_files::QueueFiles;
use crate::storage::record::{
    self, body_crc, tag_hash, MessageToStore, RecordView, StoreStamp, StoredMessage, PROPERTY_KEYS,
    PROPERTY_TAGS, PROPERTY_UNIQ_KEY,
};

/// What an append assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendResult {
    /// Where the record starts in the commit log.
    pub physical_offset: u64,
    /// Encoded record size.
    pub size: u32,
    /// The message's offset in its queue.
    pub queue_offset: u64,
    /// When the store accepted it (ms since the epoch).
    pub store_timestamp: i64,
    /// The store's host, part of the message id.
    pub store_host: SocketAddr,
}

impl AppendResult {
    /// First commit-log offset after the record: wait for this to be durable.
    pub fn end_offset(&self) -> u64 {
        self.physical_offset + self.size as u64
    }

    /// RocketMQ's offset message id of the record.
    pub fn msg_id(&self) -> String {
        crate::storage::message_id::offset_msg_id(&self.store_host, self.physical_offset)
    }
}

/// Outcome of a pull-style read from one queue (RocketMQ's `GetMessageStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GetStatus {
    /// Messages were found.
    Found,
    /// Entries were scanned but none passed the filter.
    NoMatchedMessage,
    /// The queue has never held a message.
    NoMessageInQueue,
    /// The offset is below the lowest readable one (retention deleted it).
    OffsetTooSmall,
    /// The offset is exactly the end: nothing new yet.
    OffsetOverflowOne,
    /// The offset is past the end.
    OffsetOverflowBadly,
    /// Entries exist but their records were just deleted by retention.
    MessageWasRemoving,
    /// The offset is past what consumers may see yet but not past what is written: the
    /// records there wait for their flush or their slaves (see `confirm`). Nothing to read
    /// now, and the offset is right; `next_offset` is the offset asked for.
    NotConfirmedYet,
}

/// Result of [`MessageStore::get_messages`].
#[derive(Debug, Clone)]
pub struct GetResult {
    /// What happened.
    pub status: GetStatus,
    /// Stored records as they are on disk (zero-copy), ready to ship.
    pub messages: Vec<Bytes>,
    /// Queue offset to ask for next.
    pub next_offset: u64,
    /// Lowest readable queue offset.
    pub min_offset: u64,
    /// Next queue offset to be written.
    pub max_offset: u64,
}

/// Counters that show what the store did (for tests, metrics and operators).
#[derive(Debug, Default)]
pub struct StoreStats {
    /// Records validated by the recovery scan at open.
    pub open_records_scanned: AtomicU64,
    /// Commit-log segments the recovery scan touched at open.
    pub open_segments_scanned: AtomicU64,
    /// Whether the last open found a clean shutdown.
    pub opened_clean: AtomicBool,
    /// Commit-log flush rounds that wrote something to disk.
    pub commit_log_flushes: AtomicU64,
    /// Records a read for a consumer found damaged and skipped (each is in the damage log).
    pub damaged_records_skipped: AtomicU64,
}

/// Everything a dispatch needs to know about one record, from a fresh append or from
/// bytes read back from the log.
pub(crate) struct Dispatch<'a> {
    pub topic: &'a str,
    pub queue_id: u32,
    pub queue_offset: u64,
    pub physical_offset: u64,
    pub size: u32,
    pub store_timestamp: i64,
    pub properties: &'a str,
    /// The record's consume queue when the caller has already looked it up (a batch
    /// appender resolves each queue once); `None` looks it up by topic and queue id.
    pub queue: Option<&'a ConsumeQueue>,
}

impl<'a> Dispatch<'a> {
    pub(crate) fn from_view(v: &'a RecordView<'a>) -> Self {
        Dispatch {
            topic: v.topic,
            queue_id: v.queue_id,
            queue_offset: v.queue_offset,
            physical_offset: v.physical_offset,
            size: v.total_size as u32,
            store_timestamp: v.store_timestamp,
            properties: v.properties,
            queue: None,
        }
    }
}

type QueueTable = HashMap<String, HashMap<u32, Arc<ConsumeQueue>>>;

/// What the store knows about a "no space left" it is waiting out.
pub(crate) struct OutOfSpace {
    /// The file whose write failed.
    pub path: PathBuf,
    /// When the state was last logged.
    pub logged_at: Instant,
}

pub(crate) struct Shared {
    pub config: StoreConfig,
    pub root: PathBuf,
    pub store_host: SocketAddr,
    pub commit_log: CommitLog,
    pub queues: RwLock<QueueTable>,
    /// Open consume-queue files, at most `max_mapped_queue_files` of them.
    pub queue_files: Arc<QueueFiles>,
    pub index: Option<IndexService>,
    /// Serialises appends and dispatch.
    pub write_lock: Mutex<()>,
    /// Commit-log offset below which every record has its queue and index entries.
    pub dispatched: AtomicU64,
    /// Commit-log offset below which index entries are known flushed.
    pub index_flushed: AtomicU64,
    pub flush_queue: FlushQueue,
    pub poisoned: Mutex<Option<String>>,
    /// Disk use, in percent, when the last check found it above
    /// `disk_space_warning_level_ratio`; 0 while it is below (see [`Shared::check_disk`]).
    pub disk_full_percent: AtomicU32,
    /// Set when a write found no space left on the disk: writes are refused until the
    /// housekeeping thread sees space again and has caught dispatch up (see
    /// [`Shared::write_failed`]). The flag is what the write path reads; the state beside it
    /// says which file and when it was last logged.
    pub out_of_space: AtomicBool,
    pub out_of_space_state: Mutex<Option<OutOfSpace>>,
    /// When a disk-short warning was last logged, so it repeats once a minute, not per write.
    pub disk_warned_at: Mutex<Option<Instant>>,
    pub stats: StoreStats,
    /// Damaged log ranges found so far, kept in `damage.json`.
    pub damage: DamageLog,
    pub closed: AtomicBool,
    /// Serialises derived-data flushes, so two checkpoint writes never race, and holds the
    /// positions (commit log, queues, index) the last checkpoint written records: an idle
    /// store does not write and sync the same checkpoint again every second.
    pub derived_lock: Mutex<Option<[u64; 3]>>,
    /// Serialises retention runs.
    pub retention_lock: Mutex<()>,
    /// Wakes and stops the housekeeping thread.
    housekeeping: StopSignal,
    /// What a record needs before consumers may see it (see `confirm`).
    pub confirmation: confirm::Confirmation,
    /// Holds the advisory lock for the store's lifetime.
    lock_file: File,
}

/// A broker's message store. Cheap to share behind an `Arc`; every method takes `&self`.
pub struct MessageStore {
    shared: Arc<Shared>,
    /// Commit-log flushes and durability answers; nothing slow runs here.
    flusher: Mutex<Option<JoinHandle<()>>>,
    /// Consume-queue, index and checkpoint flushes, and retention.
    housekeeper: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for MessageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStore")
            .field("root", &self.shared.root)
            .finish()
    }
}

pub(crate) use crate::common::clock::now_ms;

fn abort_path(root: &Path) -> PathBuf {
    root.join("abort")
}

impl MessageStore {
    /// Opens the store at `config.store_path_root_dir`, recovering from an unclean stop if
    /// the abort marker says so, and starts the flush thread. `store_host` is the broker's
    /// address as it appears in records and message ids.
    pub fn open(config: StoreConfig, store_host: SocketAddr) -> Result<Self> {
        config.validate()?;
        let root = config.store_path_root_dir.clone();
        std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        let lock_path = root.join("lock");
        let lock_file = File::create(&lock_path).map_err(|e| Error::io(&lock_path, e))?;
        if lock_file.try_lock().is_err() {
            return Err(Error::Locked { path: lock_path });
        }
        let commit_log = CommitLog::open(
            &root.join("commitlog"),
            config.mapped_file_size_commit_log as usize,
            config.warm_mapped_file_enable,
        )?;
        let index = if config.message_index_enable {
            Some(IndexService::open(
                &root.join("index"),
                config.max_hash_slot_num,
                config.max_index_num,
            )?)
        } else {
            None
        };
        let shared = Shared {
            store_host,
            commit_log,
            queues: RwLock::new(HashMap::new()),
            queue_files: QueueFiles::new(config.max_mapped_queue_files),
            index,
            write_lock: Mutex::new(()),
            dispatched: AtomicU64::new(0),
            index_flushed: AtomicU64::new(0),
            flush_queue: FlushQueue::default(),
            poisoned: Mutex::new(None),
            disk_full_percent: AtomicU32::new(0),
            out_of_space: AtomicBool::new(false),
            out_of_space_state: Mutex::new(None),
            disk_warned_at: Mutex::new(None),
            stats: StoreStats::default(),
            damage: DamageLog::load(&root),
            closed: AtomicBool::new(false),
            derived_lock: Mutex::new(None),
            retention_lock: Mutex::new(()),
            housekeeping: StopSignal::default(),
            confirmation: confirm::Confirmation::new(ConfirmPolicy {
                flushed: config.flush_disk_type == FlushDiskType::SyncFlush,
                replicated: false,
            }),
            lock_file,
            root,
            config,
        };
        shared.check_disk_or_warn();
        shared.load_queues()?;
        let clean = !abort_path(&shared.root).exists();
        crate::storage::recovery::recover(&shared, clean)?;
        shared.commit_log.prepare_next();
        File::create(abort_path(&shared.root))
            .map_err(|e| Error::io(abort_path(&shared.root), e))?;
        crate::storage::mapped_file::sync_dir(&shared.root)?;
        let shared = Arc::new(shared);
        let spawn = |name: &str, run: fn(&Shared)| {
            let s = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || run(&s))
                .map_err(|e| Error::io(&shared.root, e))
        };
        let flusher = spawn("actimq-flush", Shared::flush_loop)?;
        let housekeeper = spawn("actimq-housekeeping", Shared::housekeeping_loop)?;
        Ok(MessageStore {
            shared,
            flusher: Mutex::new(Some(flusher)),
            housekeeper: Mutex::new(Some(housekeeper)),
        })
    }

    /// Damaged commit-log ranges found so far (by start-up checks and by reads), oldest
    /// first, and how many older ones no longer fit the damage log.
    pub fn damage(&self) -> (Vec<crate::storage::damage::DamagedRange>, u64) {
        self.shared.damage.snapshot()
    }

    /// Why appends are refused right now (disk full, out of space, poisoned, closed), or
    /// `None` while the store accepts them. For operators' status views: an append checks
    /// for itself, under the write lock.
    pub fn write_refusal(&self) -> Option<String> {
        self.shared.writable().err().map(|e| e.to_string())
    }

    /// The configuration the store runs with.
    pub fn config(&self) -> &StoreConfig {
        &self.shared.config
    }

    /// The store host written into records.
    pub fn store_host(&self) -> SocketAddr {
        self.shared.store_host
    }

    /// Counters describing what the store did.
    pub fn stats(&self) -> &StoreStats {
        &self.shared.stats
    }

    /// Consume-queue files open now (bounded by `max_mapped_queue_files`), and how many of
    /// them are mapped for reading.
    pub fn open_queue_files(&self) -> (usize, usize) {
        let files = &self.shared.queue_files;
        (files.open_files(), files.mapped_files())
    }

    /// Appends one message and derives its queue and index entries. Returns as soon as the
    /// record is in the mapped log; with `sync_flush`, call [`MessageStore::wait_durable`]
    /// or [`MessageStore::on_durable`] with [`AppendResult::end_offset`] before acknowledging.
    pub fn append(&self, msg: &MessageToStore) -> Result<AppendResult> {
        let len = self.shared.check_message(msg)?;
        self.prefetch_index_slot(msg);
        let crc = body_crc(&msg.body);
        let _w = self.shared.write_lock.lock();
        // Checked again under the lock: a shutdown may have finished while we waited.
        self.shared.writable()?;
        self.shared
            .append_one_locked(msg, len, crc)
            .map_err(|e| self.shared.write_failed(e))
    }

    /// The producer's unique key is indexed for every message: starts loading its index slot
    /// before the record is encoded and written, so the load overlaps that work.
    fn prefetch_index_slot(&self, msg: &MessageToStore) {
        if let Some(index) = &self.shared.index {
            if let Some(key) = record::property(&msg.properties, PROPERTY_UNIQ_KEY) {
                index.prefetch(&msg.topic, key);
            }
        }
    }

    /// Checks that `msg` could be appended now (store open and writable, message valid and
    /// not too large) without appending it; returns its encoded size.
    pub fn check(&self, msg: &MessageToStore) -> Result<usize> {
        self.shared.check_message(msg)
    }

    /// Appends several messages under one lock, encoded into one buffer and written with one
    /// write per segment they touch (consecutive offsets when they share a queue). All are
    /// validated first: either none is written or all are attempted.
    pub fn append_batch(&self, msgs: &[MessageToStore]) -> Result<Vec<AppendResult>> {
        match self.append_batch_partial(msgs) {
            (results, None) => Ok(results),
            (_, Some(e)) => Err(e),
        }
    }

    /// [`Self::append_batch`] for messages of independent requests: when a write fails
    /// part-way, returns the results of the messages stored before the failure (a prefix
    /// of `msgs`, which are readable and will be acknowledged by their senders) together
    /// with the error that stopped the rest. A message that fails validation stores none.
    pub fn append_batch_partial(
        &self,
        msgs: &[MessageToStore],
    ) -> (Vec<AppendResult>, Option<Error>) {
        match self.prepare_batch(msgs) {
            Ok(prepared) => {
                let mut results = Vec::with_capacity(msgs.len());
                let _w = self.shared.write_lock.lock();
                let outcome = self.shared.writable().and_then(|()| {
                    self.shared
                        .append_locked_into(msgs, &prepared, &mut results)
                });
                (results, outcome.err().map(|e| self.shared.write_failed(e)))
            }
            Err(e) => (Vec::new(), Some(e)),
        }
    }

    /// Validates each message and computes its size and body CRC (outside the lock).
    fn prepare_batch(&self, msgs: &[MessageToStore]) -> Result<Vec<(usize, u32)>> {
        msgs.iter()
            .map(|m| {
                let len = self.shared.check_message(m)?;
                self.prefetch_index_slot(m);
                Ok((len, body_crc(&m.body)))
            })
            .collect::<Result<Vec<_>>>()
    }

    /// Appends records already encoded by another store (a master's log shipped to a slave),
    /// starting exactly at this log's end. Records are validated (magic, length, both CRCs,
    /// offset) before anything is written and dispatched like local appends; a blank marker
    /// rolls to the next segment as it did on the master. A torn record at the end of `data`
    /// is left for the next call. Returns the new end of the log. Refused, like any write,
    /// while the disk is over `disk_space_warning_level_ratio`.
    pub fn append_encoded(&self, start: u64, data: &[u8]) -> Result<u64> {
        let _w = self.shared.write_lock.lock();
        self.shared.writable()?;
        let log = &self.shared.commit_log;
        let end = log.max_offset();
        if start != end {
            return Err(Error::NotAtEnd {
                expected: end,
                got: start,
            });
        }
        let seg_size = log.segment_size() as u64;
        let (mut offset, mut pos) = (start, 0usize);
        while pos < data.len() {
            let rest = &data[pos..];
            let seg_left = seg_size - offset % seg_size;
            let corrupt = |source| Error::CorruptRecord { offset, source };
            match record::peek(rest) {
                Ok(record::Peek::Blank) => {
                    let declared = record::peek_total_size(rest).map_err(corrupt)?;
                    if declared as u64 != seg_left {
                        return Err(corrupt(record::RecordError::BadLength {
                            declared,
                            actual: seg_left as usize,
                        }));
                    }
                    log.roll()?;
                    offset += seg_left;
                    pos = pos.saturating_add(seg_left as usize);
                }
                Ok(record::Peek::Message(len)) if len <= rest.len() => {
                    let view =
                        record::decode(&rest[..len], record::Verify::Strict).map_err(corrupt)?;
                    if view.physical_offset != offset {
                        return Err(Error::NotAtEnd {
                            expected: offset,
                            got: view.physical_offset,
                        });
                    }
                    if len as u64 + record::END_FILE_MIN_BLANK_LENGTH as u64 > seg_left {
                        return Err(Error::BadFile {
                            path: self.shared.root.join("commitlog"),
                            reason: format!(
                                "record at {offset} does not fit its segment: master and slave \
                                 must use the same mapped_file_size_commit_log"
                            ),
                        });
                    }
                    log.append_chunk(&[len], |_, buf, _| buf.copy_from_slice(&rest[..len]))
                        .map_err(|e| self.shared.write_failed(e))?;
                    if let Err(e) = self
                        .shared
                        .dispatch(&Dispatch::from_view(&view), true, false)
                    {
                        if e.is_no_space() {
                            // In the log but not yet in its queue: the housekeeping thread
                            // dispatches it once there is space again.
                            return Err(self.shared.write_failed(e));
                        }
                        self.shared
                            .poison(format!("dispatch of replicated record at {offset}: {e}"));
                        return Err(e);
                    }
                    offset += len as u64;
                    self.shared.dispatched.store(offset, Ordering::Release);
                    pos += len;
                }
                Ok(record::Peek::Message(_)) | Err(record::RecordError::Truncated { .. }) => break,
                Err(source) => return Err(corrupt(source)),
            }
        }
        Ok(offset)
    }

    /// Calls `cb` once the commit log is durable up to `offset` (at once if it already is).
    /// With `async_flush` this is the next timed flush.
    pub fn on_durable(&self, offset: u64, cb: DurableCallback) {
        let poisoned = self.shared.poisoned.lock().clone();
        if let Some(why) = poisoned {
            cb(Err(Error::Poisoned(why)));
            return;
        }
        if self.shared.commit_log.flushed_offset() >= offset {
            cb(Ok(()));
            return;
        }
        self.shared.flush_queue.push(offset, cb);
    }

    /// Blocks until the commit log is durable up to `offset`, at most `sync_flush_timeout`.
    pub fn wait_durable(&self, offset: u64) -> Result<()> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.on_durable(
            offset,
            Box::new(move |r| {
                let _ = tx.send(r);
            }),
        );
        let timeout_ms = self.shared.config.sync_flush_timeout;
        match rx.recv_timeout(Duration::from_millis(timeout_ms)) {
            Ok(r) => r,
            Err(_) => Err(Error::FlushTimeout { offset, timeout_ms }),
        }
    }

    /// Flushes the commit log, queues and index and writes the checkpoint, now, on the
    /// calling thread.
    pub fn flush(&self) -> Result<()> {
        self.shared.flush_commit_log()?;
        self.shared.flush_derived()
    }

    /// Everything below this commit-log offset is on disk.
    pub fn flushed_offset(&self) -> u64 {
        self.shared.commit_log.flushed_offset()
    }

    /// Lowest readable commit-log offset.
    pub fn min_physical_offset(&self) -> u64 {
        self.shared.commit_log.min_offset()
    }

    /// Next commit-log offset to be written.
    pub fn max_physical_offset(&self) -> u64 {
        self.shared.commit_log.max_offset()
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Deletes expired data now if it is time (see `delete_when`) or the disk is too full.
    /// `now` is a parameter so operators' tools and tests can ask "what if it were then".
    pub fn clean_expired(
        &self,
        now: SystemTime,
    ) -> Result<crate::storage::retention::RetentionReport> {
        self.shared.retention_round(now)
    }

    /// Clean shutdown: stops the flush thread, flushes everything, writes the checkpoint and
    /// removes the abort marker so the next open skips the recovery scan.
    pub fn shutdown(&self) -> Result<()> {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        self.stop_threads();
        {
            // Appends that were waiting for the lock see `closed` once they get it.
            let _w = self.shared.write_lock.lock();
            self.shared.flush_commit_log()?;
            self.shared.flush_derived()?;
        }
        self.shared.flush_queue.close();
        self.shared.commit_log.discard_prepared()?;
        if self.shared.poisoned.lock().is_none() {
            let abort = abort_path(&self.shared.root);
            std::fs::remove_file(&abort).map_err(|e| Error::io(&abort, e))?;
            crate::storage::mapped_file::sync_dir(&self.shared.root)?;
        }
        // Another process may take the store over now.
        if let Err(e) = self.shared.lock_file.unlock() {
            tracing::warn!(error = %e, "could not release the store lock");
        }
        Ok(())
    }

    fn stop_threads(&self) {
        self.shared.flush_queue.stop();
        self.shared.housekeeping.stop();
        join_quietly(self.flusher.lock().take(), "flush");
        join_quietly(self.housekeeper.lock().take(), "housekeeping");
    }
}

impl Drop for MessageStore {
    /// Dropping without [`MessageStore::shutdown`] behaves like a crash of the process: the
    /// abort marker stays, and the next open runs the recovery scan.
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::Release);
        self.stop_threads();
        self.shared.flush_queue.close();
        if let Err(e) = self.shared.commit_log.discard_prepared() {
            tracing::warn!(error = %e, "could not remove the pre-allocated segment");
        }
    }
}
