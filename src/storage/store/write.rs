//! The store's write internals: validating and appending records under the write lock,
//! and the one dispatch path that derives consume-queue and index entries from a record
//! (fresh appends, replicated records and recovery all go through it). Data flushes belong
//! to `background`; the only sync here makes a new queue's folder durable.

use super::*;

/// How often a disk that stays full is logged again.
const DISK_LOG_EVERY: Duration = Duration::from_secs(60);

impl Shared {
    pub(super) fn writable(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        if let Some(why) = self.poisoned.lock().clone() {
            return Err(Error::Poisoned(why));
        }
        if self.out_of_space.load(Ordering::Acquire) {
            let path = self
                .out_of_space_state
                .lock()
                .as_ref()
                .map(|s| s.path.clone())
                .unwrap_or_else(|| self.root.clone());
            return Err(Error::NoSpace { path });
        }
        let used_percent = self.disk_full_percent.load(Ordering::Relaxed);
        if used_percent != 0 {
            return Err(Error::DiskFull {
                used_percent,
                limit: self.config.disk_space_warning_level_ratio,
            });
        }
        Ok(())
    }

    /// One retention run, then a fresh look at the disk, which runs even when the retention
    /// run failed: writes must not stay refused (or allowed) on a stale reading.
    pub(crate) fn retention_round(
        &self,
        now: std::time::SystemTime,
    ) -> Result<crate::storage::retention::RetentionReport> {
        let report = crate::storage::retention::clean(self, now);
        self.check_disk_or_warn();
        report
    }

    /// [`Shared::check_disk`], where a file system that cannot report its use (some FUSE
    /// and network ones) only costs a warning: writes keep their previous state.
    pub(crate) fn check_disk_or_warn(&self) {
        if let Err(e) = self.check_disk() {
            tracing::warn!(error = %e, "cannot measure the store's disk use; writes keep their previous state");
        }
    }

    /// Measures the store's disk use and refuses or allows writes by it, logging when that
    /// changes; returns the use in percent.
    pub(crate) fn check_disk(&self) -> Result<u32> {
        let used = crate::storage::retention::disk_used_percent(&self.root)?;
        let limit = self.config.disk_space_warning_level_ratio;
        // At or above: the reading is rounded up, and `limit` is at least 1, so a full disk
        // always reads as a non-zero percent.
        let full = if used >= limit { used } else { 0 };
        let was = self.disk_full_percent.swap(full, Ordering::Relaxed);
        if full != 0 && was == 0 {
            tracing::error!(
                used_percent = used,
                limit,
                path = %self.root.display(),
                "disk nearly full: refusing writes until space is freed"
            );
        } else if full == 0 && was != 0 {
            tracing::warn!(
                used_percent = used,
                limit,
                "disk use back under the limit: writes accepted again"
            );
        }
        Ok(used)
    }

    /// What a failed write means for the caller: "no space left" becomes
    /// [`Error::NoSpace`] and refuses writes until the housekeeping thread sees space again
    /// (see [`Shared::retry_after_no_space`]); any other error passes through unchanged.
    pub(crate) fn write_failed(&self, e: Error) -> Error {
        if !e.is_no_space() {
            return e;
        }
        let path = match &e {
            Error::Io { path, .. } | Error::NoSpace { path } => path.clone(),
            _ => self.root.clone(),
        };
        let mut state = self.out_of_space_state.lock();
        if state.is_none() {
            tracing::error!(
                path = %path.display(),
                "disk full: no space left on the store's disk; refusing writes until space is \
                 freed (reads go on, nothing is deleted, writes resume by themselves)"
            );
            *state = Some(OutOfSpace {
                path: path.clone(),
                logged_at: Instant::now(),
            });
        }
        self.out_of_space.store(true, Ordering::Release);
        Error::NoSpace { path }
    }

    /// Run by the housekeeping thread while writes are refused for lack of space: once the
    /// disk has room for a few messages again, dispatches whatever reached the log but not
    /// its queue, then accepts writes again. Logs the state once a minute until then.
    pub(crate) fn retry_after_no_space(&self) {
        if !self.out_of_space.load(Ordering::Acquire) {
            return;
        }
        let margin = (self.config.max_message_size as u64)
            .saturating_mul(2)
            .max(1 << 20);
        let available = fs4::available_space(&self.root).unwrap_or(0);
        let resumed = available >= margin && {
            let _w = self.write_lock.lock();
            match self.catch_up_dispatch() {
                Ok(()) => true,
                Err(e) if e.is_no_space() => false,
                Err(e) => {
                    self.poison(format!(
                        "dispatching records written before the disk filled: {e}"
                    ));
                    false
                }
            }
        };
        let mut state = self.out_of_space_state.lock();
        if resumed {
            *state = None;
            self.out_of_space.store(false, Ordering::Release);
            tracing::warn!(available, "disk has space again: writes accepted again");
        } else if let Some(s) = state.as_mut() {
            if s.logged_at.elapsed() >= DISK_LOG_EVERY {
                s.logged_at = Instant::now();
                tracing::error!(
                    path = %s.path.display(),
                    available,
                    needed = margin,
                    "disk full: still refusing writes until space is freed"
                );
            }
        }
    }

    /// Dispatches the records between `dispatched` and the log's end (those a write put
    /// in the log before a dispatch ran out of space). Call with the write lock held.
    fn catch_up_dispatch(&self) -> Result<()> {
        let log = &self.commit_log;
        let seg_size = log.segment_size() as u64;
        let mut at = self.dispatched.load(Ordering::Acquire);
        let end = log.max_offset();
        while at < end {
            let in_segment = at - log.segment_start(at);
            let head = if in_segment + record::END_FILE_MIN_BLANK_LENGTH as u64 <= seg_size {
                Some(log.read(at, record::END_FILE_MIN_BLANK_LENGTH)?)
            } else {
                None
            };
            let len = match head.as_deref().map(record::peek) {
                Some(Ok(record::Peek::Message(len))) => len,
                // A blank marker, or too little room left for one: the next segment.
                None | Some(Ok(record::Peek::Blank)) => {
                    at = log.segment_start(at) + seg_size;
                    continue;
                }
                Some(Err(source)) => return Err(Error::CorruptRecord { offset: at, source }),
            };
            let raw = log.read(at, len)?;
            let view = record::decode(&raw, record::Verify::Structure)
                .map_err(|source| Error::CorruptRecord { offset: at, source })?;
            self.dispatch(&Dispatch::from_view(&view), true, true)?;
            at += len as u64;
            self.dispatched.store(at, Ordering::Release);
        }
        Ok(())
    }

    /// Logs, at most once a minute, that the disk is over `disk_max_used_space_ratio` while
    /// the policy forbids deleting early.
    pub(crate) fn warn_disk_short(&self, used_percent: u32) {
        let mut last = self.disk_warned_at.lock();
        if last.is_some_and(|t| t.elapsed() < DISK_LOG_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        tracing::warn!(
            used_percent,
            limit = self.config.disk_max_used_space_ratio,
            "disk nearly full: disk_full_policy = \"refuse_writes\" deletes nothing early; \
             writes will be refused when the disk is full unless space is freed"
        );
    }

    /// Logs, at most once a minute, that writes are still refused for the warning level.
    pub(super) fn remind_disk_full(&self) {
        let mut last = self.disk_warned_at.lock();
        if last.is_some_and(|t| t.elapsed() < DISK_LOG_EVERY) {
            return;
        }
        *last = Some(Instant::now());
        tracing::error!(
            used_percent = self.disk_full_percent.load(Ordering::Relaxed),
            limit = self.config.disk_space_warning_level_ratio,
            path = %self.root.display(),
            "disk nearly full: still refusing writes until space is freed"
        );
    }

    /// Validates a message and returns its encoded size.
    pub(super) fn check_message(&self, msg: &MessageToStore) -> Result<usize> {
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

    /// Appends one message with the write lock held (the common case, without the batch
    /// path's bookkeeping).
    pub(super) fn append_one_locked(
        &self,
        msg: &MessageToStore,
        len: usize,
        crc: u32,
    ) -> Result<AppendResult> {
        let queue = self.queue_for_write(&msg.topic, msg.queue_id)?;
        let queue_offset = queue.max_offset();
        let store_timestamp = now_ms();
        let store_host = self.store_host;
        let physical_offset = self.commit_log.append_one(len, |buf, phys| {
            let stamp = StoreStamp {
                queue_offset,
                physical_offset: phys,
                store_timestamp,
                store_host,
            };
            record::encode_into(buf, msg, crc, &stamp);
        })?;
        self.dispatch_appended(
            msg,
            Some(&queue),
            queue_offset,
            physical_offset,
            len,
            store_timestamp,
        )
    }

    /// Derives the queue and index entries of a record just appended. `queue` is the
    /// record's consume queue if the caller has it at hand.
    fn dispatch_appended(
        &self,
        msg: &MessageToStore,
        queue: Option<&ConsumeQueue>,
        queue_offset: u64,
        physical_offset: u64,
        len: usize,
        store_timestamp: i64,
    ) -> Result<AppendResult> {
        let d = Dispatch {
            topic: &msg.topic,
            queue_id: msg.queue_id,
            queue_offset,
            physical_offset,
            size: len as u32,
            store_timestamp,
            properties: &msg.properties,
            queue,
        };
        if let Err(e) = self.dispatch(&d, true, false) {
            if e.is_no_space() {
                // The record is in the log but not (wholly) in its queue and index: writes
                // stop until the housekeeping thread, once there is space, has dispatched
                // it. The sender gets an error, so it is not acknowledged; if it retries,
                // consumers may see it twice, never not at all.
                return Err(self.write_failed(e));
            }
            // The log holds a record its queue does not know: refuse further writes rather
            // than hand out offsets that disagree. Recovery re-derives it.
            self.poison(format!(
                "dispatch failed after append at {physical_offset}: {e}"
            ));
            return Err(e);
        }
        self.dispatched
            .store(physical_offset + len as u64, Ordering::Release);
        Ok(AppendResult {
            physical_offset,
            size: len as u32,
            queue_offset,
            store_timestamp,
            store_host: self.store_host,
        })
    }

    /// Appends `msgs` (each with its encoded length and body CRC in `prepared`) with the
    /// write lock held: one commit-log write per segment touched, then each record's queue
    /// and index entries in order. Each record's result is pushed to `results` as it is
    /// stored, so that after a failure part-way the results pushed say which messages (a
    /// prefix of `msgs`) are stored.
    pub(super) fn append_locked_into(
        &self,
        msgs: &[MessageToStore],
        prepared: &[(usize, u32)],
        results: &mut Vec<AppendResult>,
    ) -> Result<()> {
        let store_host = self.store_host;
        let base = results.len();
        while results.len() - base < msgs.len() {
            let done = results.len() - base;
            let (rest, rest_prepared) = (&msgs[done..], &prepared[done..]);
            // A record's queue offset counts the records before it in this call that go to
            // the same queue (their entries are not written yet). Each queue is looked up
            // once per call: a batch's records usually share one.
            let mut queues: Vec<(&str, u32, u64, Arc<ConsumeQueue>)> = Vec::new();
            let mut queue_of = Vec::with_capacity(rest.len());
            let mut queue_offsets = Vec::with_capacity(rest.len());
            for m in rest {
                let known = queues
                    .iter_mut()
                    .position(|(t, q, _, _)| *t == m.topic.as_str() && *q == m.queue_id);
                let (at, offset) = match known {
                    Some(at) => {
                        queues[at].2 += 1;
                        (at, queues[at].2 - 1)
                    }
                    None => {
                        let cq = self.queue_for_write(&m.topic, m.queue_id)?;
                        let first = cq.max_offset();
                        queues.push((m.topic.as_str(), m.queue_id, first + 1, cq));
                        (queues.len() - 1, first)
                    }
                };
                queue_of.push(at);
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
                results.push(self.dispatch_appended(
                    &rest[i],
                    Some(&queues[queue_of[i]].3),
                    queue_offsets[i],
                    physical_offset,
                    lens[i],
                    store_timestamp,
                )?);
            }
        }
        Ok(())
    }

    /// The one path that derives consume-queue and index entries from a record.
    /// With `replay` (recovery) an existing queue entry that disagrees with the log is
    /// replaced, because the log is the truth; otherwise a disagreement is an error.
    pub(crate) fn dispatch(&self, d: &Dispatch<'_>, with_index: bool, replay: bool) -> Result<()> {
        let looked_up;
        let cq = match d.queue {
            Some(q) => q,
            None => {
                looked_up = self.queue_for_write(d.topic, d.queue_id)?;
                &looked_up
            }
        };
        // One pass over the properties finds the tag and the keys to index.
        let (mut tags, mut keys, mut uniq) = (None, None, None);
        for (name, value) in record::parse_properties(d.properties) {
            match name {
                PROPERTY_TAGS if tags.is_none() => tags = Some(value),
                // First occurrence wins, as in `record::property`, which lookups use.
                PROPERTY_KEYS if keys.is_none() => keys = Some(value),
                PROPERTY_UNIQ_KEY if uniq.is_none() => uniq = Some(value),
                _ => {}
            }
        }
        cq.put(
            d.queue_offset,
            CqEntry {
                physical_offset: d.physical_offset,
                size: d.size,
                tags_code: tags.map(tag_hash).unwrap_or(0),
            },
            replay,
        )?;
        if let (Some(index), true) = (&self.index, with_index) {
            let keys = keys.into_iter().flat_map(|k| k.split(' '));
            for key in keys.chain(uniq).filter(|k| !k.is_empty()) {
                // A missing index file (a full disk) costs lookups by key, not the store:
                // the record and its queue entry are written, so failing here would poison
                // the store and make the producer send a duplicate.
                if let Err(e) = index.put(d.topic, key, d.physical_offset, d.store_timestamp) {
                    tracing::error!(error = %e, "cannot create an index file; keys go unindexed for a while");
                }
            }
        }
        Ok(())
    }

    pub(crate) fn queue(&self, topic: &str, queue_id: u32) -> Option<Arc<ConsumeQueue>> {
        self.queues.read().get(topic)?.get(&queue_id).cloned()
    }

    pub(super) fn queue_for_write(&self, topic: &str, queue_id: u32) -> Result<Arc<ConsumeQueue>> {
        if let Some(q) = self.queue(topic, queue_id) {
            return Ok(q);
        }
        let base = self.root.join("consumequeue");
        let topic_dir = base.join(topic);
        // Folders that are new get their parents synced; checked before they are created.
        let new_parents: Vec<PathBuf> = [(&base, &self.root), (&topic_dir, &base)]
            .into_iter()
            .filter(|(d, _)| !d.exists())
            .map(|(_, parent)| parent.clone())
            .collect();
        let cq = Arc::new(ConsumeQueue::open(
            topic_dir.join(queue_id.to_string()),
            topic,
            queue_id,
            self.config.mapped_file_size_consume_queue as usize,
            Arc::clone(&self.queue_files),
        )?);
        // The new folders must be durable before entries in them count as flushed; the
        // queue's next flush syncs them, off the append path (a broker creating thousands of
        // queues would otherwise wait for several directory syncs per queue under the lock).
        for dir in new_parents.into_iter().chain([topic_dir]) {
            cq.sync_dir_on_flush(dir);
        }
        self.queues
            .write()
            .entry(topic.to_owned())
            .or_default()
            .insert(queue_id, Arc::clone(&cq));
        Ok(cq)
    }

    /// Opens every consume queue found on disk: a folder listing and a file length each,
    /// no file opened and no entry read (see `ConsumeQueue::open`).
    pub(super) fn load_queues(&self) -> Result<()> {
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
                    Arc::clone(&self.queue_files),
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
    pub(super) fn poison(&self, why: String) {
        tracing::error!(reason = %why, "message store poisoned; refusing writes until it is reopened");
        self.poisoned.lock().get_or_insert(why);
        self.flush_queue.kick();
    }
}
