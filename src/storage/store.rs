//! The message store: the commit log plus everything derived from it, behind one handle.
//!
//! Owns appends (one writer at a time), the single dispatch path that derives consume-queue
//! and index entries from records, reads by physical offset, queue offset, key and id, the
//! flush thread, and clean shutdown. It is plain Rust: no actors, no sockets, no async
//! runtime. Callers on an event loop must treat `append` as quick and `wait_durable` and
//! `flush` as blocking.

use std::collections::HashMap;
use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use parking_lot::{Mutex, RwLock};

use crate::storage::checkpoint::Checkpoint;
use crate::storage::commit_log::CommitLog;
use crate::storage::config::{FlushDiskType, StoreConfig};
use crate::storage::consume_queue::{ConsumeQueue, CqEntry};
use crate::storage::error::{Error, MessageIllegal, Result};
use crate::storage::flush::{DurableCallback, FlushQueue, Wake};
use crate::storage::index::IndexService;
use crate::storage::message_id::decode_offset_msg_id;
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
        }
    }
}

type QueueTable = HashMap<String, HashMap<u32, Arc<ConsumeQueue>>>;

pub(crate) struct Shared {
    pub config: StoreConfig,
    pub root: PathBuf,
    pub store_host: SocketAddr,
    pub commit_log: CommitLog,
    pub queues: RwLock<QueueTable>,
    pub index: Option<IndexService>,
    /// Serialises appends and dispatch.
    pub write_lock: Mutex<()>,
    /// Commit-log offset below which every record has its queue and index entries.
    pub dispatched: AtomicU64,
    /// Commit-log offset below which index entries are known flushed.
    pub index_flushed: AtomicU64,
    pub flush_queue: FlushQueue,
    pub poisoned: Mutex<Option<String>>,
    pub stats: StoreStats,
    pub closed: AtomicBool,
    /// Serialises derived-data flushes, so two checkpoint writes never race.
    pub derived_lock: Mutex<()>,
    /// Serialises retention runs.
    pub retention_lock: Mutex<()>,
    /// Wakes and stops the housekeeping thread.
    housekeeping: crate::storage::store::StopSignal,
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

/// A stop flag a background thread can sleep on.
#[derive(Default)]
pub(crate) struct StopSignal {
    stopped: Mutex<bool>,
    cv: parking_lot::Condvar,
}

impl StopSignal {
    /// Sleeps up to `d`; returns true once stopped.
    fn sleep(&self, d: Duration) -> bool {
        let mut s = self.stopped.lock();
        if !*s {
            self.cv.wait_for(&mut s, d);
        }
        *s
    }

    fn stop(&self) {
        *self.stopped.lock() = true;
        self.cv.notify_all();
    }
}

/// Joins a background thread unless it is the calling thread (a callback running on the
/// flush thread may drop the last handle to the store).
fn join_quietly(handle: Option<JoinHandle<()>>, name: &str) {
    if let Some(h) = handle {
        if h.thread().id() == std::thread::current().id() {
            return;
        }
        if h.join().is_err() {
            tracing::error!(thread = name, "store thread panicked");
        }
    }
}

impl std::fmt::Debug for MessageStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageStore")
            .field("root", &self.shared.root)
            .finish()
    }
}

/// The index is flushed on every this-many housekeeping rounds (see `flush_derived_with`).
const INDEX_FLUSH_EVERY: u64 = 10;

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

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
            index,
            write_lock: Mutex::new(()),
            dispatched: AtomicU64::new(0),
            index_flushed: AtomicU64::new(0),
            flush_queue: FlushQueue::default(),
            poisoned: Mutex::new(None),
            stats: StoreStats::default(),
            closed: AtomicBool::new(false),
            derived_lock: Mutex::new(()),
            retention_lock: Mutex::new(()),
            housekeeping: StopSignal::default(),
            lock_file,
            root,
            config,
        };
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

    /// Appends one message and derives its queue and index entries. Returns as soon as the
    /// record is in the mapped log; with `sync_flush`, call [`MessageStore::wait_durable`]
    /// or [`MessageStore::on_durable`] with [`AppendResult::end_offset`] before acknowledging.
    pub fn append(&self, msg: &MessageToStore) -> Result<AppendResult> {
        let len = self.shared.check_message(msg)?;
        let crc = body_crc(&msg.body);
        let _w = self.shared.write_lock.lock();
        // Checked again under the lock: a shutdown may have finished while we waited.
        self.shared.writable()?;
        let mut results = self
            .shared
            .append_locked(std::slice::from_ref(msg), &[(len, crc)])?;
        results.pop().ok_or(Error::Closed)
    }

    /// Appends several messages under one lock, encoded into one buffer and written with one
    /// write per segment they touch (consecutive offsets when they share a queue). All are
    /// validated first: either none is written or all are attempted.
    pub fn append_batch(&self, msgs: &[MessageToStore]) -> Result<Vec<AppendResult>> {
        let prepared = msgs
            .iter()
            .map(|m| Ok((self.shared.check_message(m)?, body_crc(&m.body))))
            .collect::<Result<Vec<_>>>()?;
        let _w = self.shared.write_lock.lock();
        self.shared.writable()?;
        self.shared.append_locked(msgs, &prepared)
    }

    /// Appends records already encoded by another store (a master's log shipped to a slave),
    /// starting exactly at this log's end. Records are validated (magic, length, both CRCs,
    /// offset) before anything is written and dispatched like local appends; a blank marker
    /// rolls to the next segment as it did on the master. A torn record at the end of `data`
    /// is left for the next call. Returns the new end of the log.
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
                    log.append_chunk(&[len], |_, buf, _| buf.copy_from_slice(&rest[..len]))?;
                    if let Err(e) = self
                        .shared
                        .dispatch(&Dispatch::from_view(&view), true, false)
                    {
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

    /// Zero-copy bytes of the whole record at `offset`.
    pub fn read_raw(&self, offset: u64) -> Result<Bytes> {
        self.shared.commit_log.read_record(offset)
    }

    /// Zero-copy commit-log bytes (for shipping the log to a slave).
    /// Up to `len` bytes, fewer at a segment end or the log end (empty there).
    pub fn read_log(&self, offset: u64, len: usize) -> Result<Bytes> {
        self.shared.commit_log.read_available(offset, len)
    }

    /// The record at commit-log `offset`, decoded and CRC-checked.
    pub fn read_by_physical(&self, offset: u64) -> Result<StoredMessage> {
        let raw = self.read_raw(offset)?;
        StoredMessage::decode(raw).map_err(|source| Error::CorruptRecord { offset, source })
    }

    /// The message at `queue_offset` of a queue.
    pub fn read_by_queue_offset(
        &self,
        topic: &str,
        queue_id: u32,
        queue_offset: u64,
    ) -> Result<StoredMessage> {
        let cq = self.shared.queue(topic, queue_id);
        let (min, max) = cq
            .as_ref()
            .map(|q| (q.min_offset(), q.max_offset()))
            .unwrap_or((0, 0));
        if queue_offset < min {
            return Err(Error::OffsetMoved {
                requested: queue_offset,
                min,
            });
        }
        let entry = cq
            .and_then(|q| q.get(queue_offset))
            .ok_or(Error::OffsetBeyondEnd {
                requested: queue_offset,
                max,
            })?;
        match self.read_by_physical(entry.physical_offset) {
            Err(Error::OffsetMoved { .. }) => Err(Error::OffsetMoved {
                requested: queue_offset,
                min: self.min_offset(topic, queue_id),
            }),
            other => other,
        }
    }

    /// The message named by an offset message id (see [`AppendResult::msg_id`]).
    pub fn read_by_msg_id(&self, msg_id: &str) -> Result<Option<StoredMessage>> {
        let Ok((host, offset)) = decode_offset_msg_id(msg_id) else {
            return Ok(None);
        };
        if host != self.shared.store_host {
            return Ok(None);
        }
        match self.read_by_physical(offset) {
            Ok(m) => Ok(Some(m)),
            Err(Error::OffsetBeyondEnd { .. }) | Err(Error::CorruptRecord { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Messages of `topic` whose `KEYS` contain `key` or whose `UNIQ_KEY` is `key`, stored
    /// between `begin` and `end` (ms, inclusive), newest first, at most `max`.
    pub fn query_by_key(
        &self,
        topic: &str,
        key: &str,
        begin: i64,
        end: i64,
        max: usize,
    ) -> Result<Vec<StoredMessage>> {
        let Some(index) = &self.shared.index else {
            return Ok(Vec::new());
        };
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        // Over-fetch: hash collisions and stale entries are filtered below.
        for phys in index.query(topic, key, begin, end, max.saturating_mul(4).max(32)) {
            if out.len() >= max || !seen.insert(phys) {
                continue;
            }
            let Ok(m) = self.read_by_physical(phys) else {
                continue;
            };
            let matches = m.topic == topic
                && (m.keys().any(|k| k == key) || m.property(PROPERTY_UNIQ_KEY) == Some(key))
                && (begin..=end).contains(&m.store_timestamp);
            if matches {
                out.push(m);
            }
        }
        Ok(out)
    }

    /// Lowest readable offset of a queue.
    pub fn min_offset(&self, topic: &str, queue_id: u32) -> u64 {
        self.shared
            .queue(topic, queue_id)
            .map(|q| q.min_offset())
            .unwrap_or(0)
    }

    /// Next offset to be written in a queue.
    pub fn max_offset(&self, topic: &str, queue_id: u32) -> u64 {
        self.shared
            .queue(topic, queue_id)
            .map(|q| q.max_offset())
            .unwrap_or(0)
    }

    /// First queue offset stored at or after `timestamp` (ms).
    pub fn offset_for_timestamp(&self, topic: &str, queue_id: u32, timestamp: i64) -> u64 {
        let Some(cq) = self.shared.queue(topic, queue_id) else {
            return 0;
        };
        cq.offset_for_timestamp(timestamp, |phys| self.shared.store_timestamp_at(phys))
    }

    /// Topics with at least one queue, and their queue ids.
    pub fn topics(&self) -> Vec<(String, Vec<u32>)> {
        let q = self.shared.queues.read();
        let mut v: Vec<_> = q
            .iter()
            .map(|(t, qs)| {
                let mut ids: Vec<u32> = qs.keys().copied().collect();
                ids.sort_unstable();
                (t.clone(), ids)
            })
            .collect();
        v.sort();
        v
    }

    /// Reads up to `max_msgs` messages (and about `max_bytes`) from a queue starting at
    /// `offset`, skipping entries whose tag hash `filter` rejects.
    pub fn get_messages(
        &self,
        topic: &str,
        queue_id: u32,
        offset: u64,
        max_msgs: usize,
        max_bytes: usize,
        filter: Option<&dyn Fn(i64) -> bool>,
    ) -> GetResult {
        crate::storage::reader::get_messages(
            self, topic, queue_id, offset, max_msgs, max_bytes, filter,
        )
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
        crate::storage::retention::clean(&self.shared, now)
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

impl Shared {
    fn writable(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if let Some(why) = self.poisoned.lock().clone() {
            return Err(Error::Poisoned(why));
        }
        Ok(())
    }

    /// Validates a message and returns its encoded size.
    fn check_message(&self, msg: &MessageToStore) -> Result<usize> {
        self.writable()?;
        msg.validate()?;
        let len = msg.encoded_len(&self.store_host);
        if len > self.config.max_message_size {
            return Err(MessageIllegal::TooLarge {
                size: len,
                max: self.config.max_message_size,
            }
            .into());
        }
        Ok(len)
    }

    /// Appends `msgs` (each with its encoded length and body CRC in `prepared`) with the
    /// write lock held: one commit-log write per segment touched, then each record's queue
    /// and index entries in order.
    fn append_locked(
        &self,
        msgs: &[MessageToStore],
        prepared: &[(usize, u32)],
    ) -> Result<Vec<AppendResult>> {
        let store_host = self.store_host;
        let mut results = Vec::with_capacity(msgs.len());
        while results.len() < msgs.len() {
            let done = results.len();
            let (rest, rest_prepared) = (&msgs[done..], &prepared[done..]);
            // A record's queue offset counts the records before it in this call that go to
            // the same queue (their entries are not written yet).
            let mut next: Vec<(&str, u32, u64)> = Vec::new();
            let mut queue_offsets = Vec::with_capacity(rest.len());
            for m in rest {
                let known = next
                    .iter_mut()
                    .find(|(t, q, _)| *t == m.topic.as_str() && *q == m.queue_id);
                let offset = match known {
                    Some((_, _, n)) => {
                        *n += 1;
                        *n - 1
                    }
                    None => {
                        let at = self.queue_for_write(&m.topic, m.queue_id)?.max_offset();
                        next.push((m.topic.as_str(), m.queue_id, at + 1));
                        at
                    }
                };
                queue_offsets.push(offset);
            }
            let lens: Vec<usize> = rest_prepared.iter().map(|p| p.0).collect();
            let store_timestamp = now_ms();
            let written = self.commit_log.append_chunk(&lens, |i, buf, phys| {
                let stamp = StoreStamp {
                    queue_offset: queue_offsets[i],
                    physical_offset: phys,
                    store_timestamp,
                    store_host,
                };
                record::encode_into(buf, &rest[i], rest_prepared[i].1, &stamp);
            })?;
            for (i, physical_offset) in written.into_iter().enumerate() {
                let (msg, len) = (&rest[i], lens[i]);
                let d = Dispatch {
                    topic: &msg.topic,
                    queue_id: msg.queue_id,
                    queue_offset: queue_offsets[i],
                    physical_offset,
                    size: len as u32,
                    store_timestamp,
                    properties: &msg.properties,
                };
                if let Err(e) = self.dispatch(&d, true, false) {
                    // The log holds a record its queue does not know: refuse further writes
                    // rather than hand out offsets that disagree. Recovery re-derives it.
                    self.poison(format!(
                        "dispatch failed after append at {physical_offset}: {e}"
                    ));
                    return Err(e);
                }
                self.dispatched
                    .store(physical_offset + len as u64, Ordering::Release);
                results.push(AppendResult {
                    physical_offset,
                    size: len as u32,
                    queue_offset: queue_offsets[i],
                    store_timestamp,
                    store_host,
                });
            }
        }
        Ok(results)
    }

    /// The one path that derives consume-queue and index entries from a record.
    /// With `replay` (recovery) an existing queue entry that disagrees with the log is
    /// replaced, because the log is the truth; otherwise a disagreement is an error.
    pub(crate) fn dispatch(&self, d: &Dispatch<'_>, with_index: bool, replay: bool) -> Result<()> {
        let cq = self.queue_for_write(d.topic, d.queue_id)?;
        let tags_code = record::property(d.properties, PROPERTY_TAGS)
            .map(tag_hash)
            .unwrap_or(0);
        cq.put(
            d.queue_offset,
            CqEntry {
                physical_offset: d.physical_offset,
                size: d.size,
                tags_code,
            },
            replay,
        )?;
        if let (Some(index), true) = (&self.index, with_index) {
            for (name, value) in record::parse_properties(d.properties) {
                if name == PROPERTY_KEYS {
                    for key in value.split(' ').filter(|k| !k.is_empty()) {
                        index.put(d.topic, key, d.physical_offset, d.store_timestamp)?;
                    }
                } else if name == PROPERTY_UNIQ_KEY && !value.is_empty() {
                    index.put(d.topic, value, d.physical_offset, d.store_timestamp)?;
                }
            }
        }
        Ok(())
    }

    pub(crate) fn queue(&self, topic: &str, queue_id: u32) -> Option<Arc<ConsumeQueue>> {
        self.queues.read().get(topic)?.get(&queue_id).cloned()
    }

    fn queue_for_write(&self, topic: &str, queue_id: u32) -> Result<Arc<ConsumeQueue>> {
        if let Some(q) = self.queue(topic, queue_id) {
            return Ok(q);
        }
        let dir = self
            .root
            .join("consumequeue")
            .join(topic)
            .join(queue_id.to_string());
        let cq = Arc::new(ConsumeQueue::open(
            dir,
            topic,
            queue_id,
            self.config.mapped_file_size_consume_queue as usize,
        )?);
        // Make the new folders durable before entries in them are counted as flushed.
        let base = self.root.join("consumequeue");
        crate::storage::mapped_file::sync_dir(&base.join(topic))?;
        crate::storage::mapped_file::sync_dir(&base)?;
        crate::storage::mapped_file::sync_dir(&self.root)?;
        self.queues
            .write()
            .entry(topic.to_owned())
            .or_default()
            .insert(queue_id, Arc::clone(&cq));
        Ok(cq)
    }

    /// Opens every consume queue found on disk.
    fn load_queues(&self) -> Result<()> {
        let base = self.root.join("consumequeue");
        if !base.exists() {
            return Ok(());
        }
        let mut table = QueueTable::new();
        for topic in std::fs::read_dir(&base).map_err(|e| Error::io(&base, e))? {
            let topic = topic.map_err(|e| Error::io(&base, e))?;
            let Some(name) = topic.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            for q in std::fs::read_dir(topic.path()).map_err(|e| Error::io(topic.path(), e))? {
                let q = q.map_err(|e| Error::io(topic.path(), e))?;
                let Some(id) = q.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                    continue;
                };
                let cq = ConsumeQueue::open(
                    q.path(),
                    &name,
                    id,
                    self.config.mapped_file_size_consume_queue as usize,
                )?;
                table
                    .entry(name.clone())
                    .or_default()
                    .insert(id, Arc::new(cq));
            }
        }
        *self.queues.write() = table;
        Ok(())
    }

    pub(crate) fn all_queues(&self) -> Vec<Arc<ConsumeQueue>> {
        self.queues
            .read()
            .values()
            .flat_map(|m| m.values().cloned())
            .collect()
    }

    pub(crate) fn store_timestamp_at(&self, phys: u64) -> Option<i64> {
        let raw = self.commit_log.read_record(phys).ok()?;
        record::decode(&raw, record::Verify::Structure)
            .ok()
            .map(|v| v.store_timestamp)
    }

    /// Refuses writes from now on. Waiters are failed by the flush thread, never here:
    /// this may run under the write lock, and callbacks must not.
    fn poison(&self, why: String) {
        tracing::error!(reason = %why, "message store poisoned; refusing writes until restart");
        self.poisoned.lock().get_or_insert(why);
        self.flush_queue.kick();
    }

    /// Flushes the commit log and answers durability waiters.
    fn flush_commit_log(&self) -> Result<u64> {
        let before = self.commit_log.flushed_offset();
        match self.commit_log.flush() {
            Ok(durable) => {
                if durable > before {
                    self.stats
                        .commit_log_flushes
                        .fetch_add(1, Ordering::Relaxed);
                }
                self.flush_queue.complete(durable);
                Ok(durable)
            }
            Err(e) => {
                self.poison(e.to_string());
                Err(e)
            }
        }
    }

    /// Flushes derived data and records how far it goes in the checkpoint.
    fn flush_derived(&self) -> Result<()> {
        self.flush_derived_with(true)
    }

    /// Flushes consume queues and, with `with_index`, the index, then writes the checkpoint.
    /// The index's msync walks a large random-access mapping and interrupts the appender
    /// (TLB shootdowns), so the housekeeping timer flushes it less often; the checkpoint
    /// keeps the index's own position, and recovery re-indexes from there.
    fn flush_derived_with(&self, with_index: bool) -> Result<()> {
        let _serial = self.derived_lock.lock();
        let dispatched = self.dispatched.load(Ordering::Acquire);
        for cq in self.all_queues() {
            cq.flush()?;
        }
        let index_flushed = match &self.index {
            Some(index) if with_index => {
                index.flush()?;
                self.index_flushed.store(dispatched, Ordering::Release);
                dispatched
            }
            Some(_) => self.index_flushed.load(Ordering::Acquire),
            None => dispatched,
        };
        let cp = Checkpoint {
            commit_log: self.commit_log.flushed_offset(),
            consume_queue: dispatched,
            index: index_flushed,
            written_at: now_ms(),
        };
        cp.store(&self.root)
    }

    fn flush_loop(&self) {
        let interval = match self.config.flush_disk_type {
            FlushDiskType::AsyncFlush => {
                Duration::from_millis(self.config.flush_interval_commit_log)
            }
            // With waiters the thread wakes at once; the timer only bounds idle sleep.
            FlushDiskType::SyncFlush => {
                Duration::from_millis(self.config.flush_interval_commit_log.min(10))
            }
        };
        let mut progressed = false;
        loop {
            if self.flush_queue.wait(interval, progressed) == Wake::Stop {
                return;
            }
            let poisoned = self.poisoned.lock().clone();
            if let Some(why) = poisoned {
                self.flush_queue.poison(why);
                progressed = false;
                continue;
            }
            let before = self.commit_log.flushed_offset();
            progressed = matches!(self.flush_commit_log(), Ok(after) if after > before);
        }
    }

    fn housekeeping_loop(&self) {
        let derived_every = Duration::from_millis(self.config.flush_interval_consume_queue);
        let clean_every = Duration::from_millis(self.config.clean_resource_interval);
        let tick = derived_every.min(clean_every);
        let mut last_clean = Instant::now();
        let mut round = 0u64;
        while !self.housekeeping.sleep(tick) {
            if self.poisoned.lock().is_some() {
                continue;
            }
            round += 1;
            if let Err(e) = self.flush_derived_with(round.is_multiple_of(INDEX_FLUSH_EVERY)) {
                self.poison(format!("flushing queues, index or checkpoint: {e}"));
                continue;
            }
            if last_clean.elapsed() >= clean_every {
                last_clean = Instant::now();
                if let Err(e) = crate::storage::retention::clean(self, SystemTime::now()) {
                    tracing::warn!(error = %e, "retention run failed");
                }
            }
        }
    }
}
