//! Disk work an append would otherwise do in line, split off so that a caller on an event
//! loop can have it done on a blocking thread first: creating a new queue's folder, a
//! consume-queue segment, an index file, or waiting for the next commit-log segment.
//!
//! [`MessageStore::preparation_for`] says, without a system call, whether appending some
//! messages now needs any of that; [`MessageStore::prepare`] does it. An append that finds
//! everything prepared only writes into files that exist (`pwrite` into the page cache).
//! Nothing here appends or changes what readers see.

use super::*;

/// Index entries a file must have room for beyond the batch's own keys, so that keys
/// counted roughly (a message may carry several) rarely find the file full mid-append.
const INDEX_ROOM_MARGIN: usize = 4096;
/// Bytes of a record beyond its body, topic and properties (fixed fields, hosts), rounded
/// up: the estimate only has to err towards preparing a little early.
const RECORD_OVERHEAD_BOUND: usize = 128;

/// What must exist on disk before some messages can be appended without blocking.
#[derive(Debug, Default)]
pub struct Preparation {
    /// Queues that are new (`None`) or whose next entries need a new segment (the last
    /// queue offset the messages will take).
    queues: Vec<(String, u32, Option<u64>)>,
    /// The newest index file is (nearly) full.
    index_file: bool,
    /// The messages do not fit in the active commit-log segment and the next is not ready.
    log_segment: bool,
}

impl Preparation {
    fn is_empty(&self) -> bool {
        self.queues.is_empty() && !self.index_file && !self.log_segment
    }
}

impl MessageStore {
    /// What appending `msgs` now would have to create or wait for on disk; `None` when the
    /// append would only write into existing files (almost always). Makes no system call.
    pub fn preparation_for(&self, msgs: &[MessageToStore]) -> Option<Preparation> {
        let shared = &self.shared;
        let mut prep = Preparation::default();
        let mut per_queue: Vec<(&str, u32, u64)> = Vec::new();
        let mut bytes = 0;
        for m in msgs {
            bytes += m.body.len() + m.topic.len() + m.properties.len() + RECORD_OVERHEAD_BOUND;
            match per_queue
                .iter_mut()
                .find(|(t, q, _)| *t == m.topic.as_str() && *q == m.queue_id)
            {
                Some(known) => known.2 += 1,
                None => per_queue.push((m.topic.as_str(), m.queue_id, 1)),
            }
        }
        for (topic, queue_id, count) in per_queue {
            match shared.queue(topic, queue_id) {
                None => prep.queues.push((topic.to_owned(), queue_id, None)),
                Some(cq) => {
                    let last = cq.max_offset() + count - 1;
                    if cq.needs_segment_for(last) {
                        prep.queues.push((topic.to_owned(), queue_id, Some(last)));
                    }
                }
            }
        }
        if let Some(index) = &shared.index {
            prep.index_file = index.needs_new_file(msgs.len() + INDEX_ROOM_MARGIN);
        }
        prep.log_segment = shared.commit_log.roll_would_block(bytes);
        (!prep.is_empty()).then_some(prep)
    }

    /// Creates what `prep` lists. Blocking: run it on a blocking thread, and not while an
    /// append is under way (it takes the write lock). A failed index file is logged and
    /// skipped (keys go unindexed a while, as in line); any other failure is returned, and
    /// a full disk turns the store to refusing writes as a failed append would.
    pub fn prepare(&self, prep: &Preparation) -> Result<()> {
        let shared = &self.shared;
        let _w = shared.write_lock.lock();
        shared.writable()?;
        let done = (|| {
            for (topic, queue_id, last) in &prep.queues {
                let cq = shared.queue_for_write(topic, *queue_id)?;
                let last = last.unwrap_or_else(|| cq.max_offset());
                cq.create_segments_for(last)?;
            }
            if prep.log_segment {
                shared.commit_log.prepare_next_segment()?;
            }
            Ok(())
        })();
        if prep.index_file {
            if let Some(index) = &shared.index {
                if let Err(e) = index.add_file() {
                    tracing::error!(error = %e, "cannot create an index file; keys go unindexed for a while");
                }
            }
        }
        done.map_err(|e| shared.write_failed(e))
    }
}
