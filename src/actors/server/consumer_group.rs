//! ConsumerGroup actor: one per consumer group on a broker.
//!
//! Owns the group's members (from client heartbeats: client id, connection, subscriptions,
//! message model), its committed offsets per queue, and when it first subscribed each topic
//! on this broker (the anchor of `LastOffset` for queues it has no offset for; kept for good,
//! so that a restarted group does not skip queues that appeared while it was down). Members silent for
//! `channel_expired_timeout`, or whose connection closed, are dropped; every membership change
//! sends NOTIFY_CONSUMER_IDS_CHANGED to each remaining member so they rebalance at once.
//! Offsets are written to `<store root>/config/consumer_offsets/<group>.toml` (keys
//! `<topic>@<queue id>`, and `<topic>@subscribed_since` for the anchors: a reader that
//! knows only offsets skips those) every
//! `flush_consumer_offset_interval` and when the broker stops. It never reads messages.
//!
//! Supervised. Its fatal path is an offsets file it cannot read (damaged, or a read error
//! other than "not found"): the group's committed offsets are then unknown, so it answers
//! offset queries with an error (consumers wait instead of starting from the wrong place)
//! and writes nothing (the file is the operator's to repair), and it stops itself every
//! `flush_consumer_offset_interval`. Each restart reloads the file, merging under it the
//! offsets committed meanwhile, and the group serves again once the file reads (see
//! `reload`). Members and queue locks live in the struct and survive a restart.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use actix::prelude::*;
use bytes::Bytes;

use crate::actors::server::connection::{ConnId, Outbound};
use crate::common::fs::{Snapshot, SnapshotFile};
use crate::protocol::group::{ConsumerData, NotifyConsumerIdsChangedRequestHeader};
use crate::protocol::{Frame, MessageQueue, RequestCode};

mod reload;
pub use reload::OffsetsUnavailable;

/// A client's heartbeat for this group.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Heartbeat {
    /// The client's id (`ip@instance`).
    pub client_id: String,
    /// Its connection.
    pub conn: ConnId,
    /// Where notifications to it go.
    pub notify: Recipient<Outbound>,
    /// Its subscriptions and mode.
    pub data: ConsumerData,
}

/// A client left the group (UNREGISTER_CLIENT).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Leave {
    /// The client's id.
    pub client_id: String,
}

/// A connection closed: drop the members that used it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ConnectionGone(pub ConnId);

/// The committed offset of a queue, if any, and when the group first subscribed the topic
/// here; an error while the offsets file cannot be read.
#[derive(Message)]
#[rtype(result = "Result<OffsetAnswer, OffsetsUnavailable>")]
pub struct QueryOffset {
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
}

/// What [`QueryOffset`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetAnswer {
    /// The committed offset, if the group committed one for the queue.
    pub offset: Option<i64>,
    /// When the group first subscribed the topic on this broker (ms since the epoch).
    pub subscribed_since_ms: Option<i64>,
}

/// Commits an offset; answered once it is on disk, so that a committed offset survives the
/// broker's `kill -9`. Commits that arrive while a write is under way go together in the
/// next one (group commit: a burst from many consumers costs one write per write time). While the offsets
/// file cannot be read the offset is kept in memory only and answered at once, as before
/// the file is repaired nothing can be written.
#[derive(Message)]
#[rtype(result = "Result<(), OffsetsNotWritten>")]
pub struct CommitOffset {
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: i32,
    /// Next offset to consume.
    pub offset: i64,
    /// Keep the group's offset if it is already larger (a slave's push, see
    /// `UpdateConsumerOffsetRequestHeader::keep_larger`).
    pub keep_larger: bool,
}

/// A commit that could not be made durable.
#[derive(Debug, Clone, thiserror::Error)]
#[error("consumer offsets of group '{group}' could not be written: {reason}")]
pub struct OffsetsNotWritten {
    /// The group.
    pub group: String,
    /// Why.
    pub reason: String,
}

/// The ids of the live members, sorted.
#[derive(Message)]
#[rtype(result = "Vec<String>")]
pub struct ListMembers;

/// All committed offsets of the group.
#[derive(Message)]
#[rtype(result = "BTreeMap<(String, i32), i64>")]
pub struct ListOffsets;

/// Locks queues for one member (orderly consumption): a queue locked by another live member
/// stays with it until it unlocks or its lock expires. Answers the queues now held.
#[derive(Message)]
#[rtype(result = "BTreeSet<MessageQueue>")]
pub struct LockQueues {
    /// The member asking.
    pub client_id: String,
    /// The queues it wants.
    pub queues: BTreeSet<MessageQueue>,
}

/// Releases queues a member held.
#[derive(Message)]
#[rtype(result = "()")]
pub struct UnlockQueues {
    /// The member releasing.
    pub client_id: String,
    /// The queues.
    pub queues: BTreeSet<MessageQueue>,
}

/// How long a queue lock lives without renewal (RocketMQ's `rebalanceLockMaxLiveTime`).
pub const QUEUE_LOCK_LIFETIME: Duration = Duration::from_secs(60);

/// Sends a one-way frame to every connected member (a reset of its offsets).
#[derive(Message)]
#[rtype(result = "()")]
pub struct TellMembers(pub Frame);

/// Writes offsets to disk now (shutdown).
#[derive(Message)]
#[rtype(result = "()")]
pub struct PersistOffsets;

struct Member {
    conn: ConnId,
    notify: Recipient<Outbound>,
    data: ConsumerData,
    last_seen: Instant,
}

/// Timings of a group, from the broker config.
#[derive(Debug, Clone, Copy)]
pub struct GroupTimings {
    /// Drop a member silent this long.
    pub channel_expired_timeout: Duration,
    /// Persist offsets this often.
    pub flush_consumer_offset_interval: Duration,
}

/// The queues each member reported holding in its last heartbeat (members that report none
/// are left out).
#[derive(Message)]
#[rtype(result = "BTreeMap<String, Vec<crate::protocol::group::MessageQueue>>")]
pub struct ListAssignments;

/// Offsets copied from the master (a slave's metadata copy): each queue keeps the larger of
/// its own and the copy's, so the copy never lowers what a consumer committed here while the
/// master was away. Persisted with the group's next periodic write. Answers the queues
/// where this group is ahead of the copy (committed here while the master was away), which
/// the slave pushes to the master.
#[derive(Message)]
#[rtype(result = "Vec<((String, i32), i64)>")]
pub struct MergeOffsets(pub BTreeMap<(String, i32), i64>);

/// The committed offsets in a group's offsets file (`None` if it is missing or damaged),
/// for a group whose actor is not running; anchors are left out.
pub fn read_offsets_file(
    store_root: &std::path::Path,
    group: &str,
) -> Option<BTreeMap<(String, i32), i64>> {
    let path = offsets_path(store_root, group);
    let text = std::fs::read_to_string(path).ok()?;
    let map = toml::from_str::<BTreeMap<String, i64>>(&text).ok()?;
    Some(
        map.into_iter()
            .filter_map(|(k, v)| {
                let (topic, q) = k.rsplit_once('@')?;
                Some(((topic.to_owned(), q.parse().ok()?), v))
            })
            .collect(),
    )
}

/// The groups that have an offsets file under `store_root`.
pub fn groups_on_disk(store_root: &std::path::Path) -> Vec<String> {
    let dir = store_root.join("config").join("consumer_offsets");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".toml").map(str::to_owned)
        })
        .collect()
}

fn offsets_path(store_root: &std::path::Path, group: &str) -> std::path::PathBuf {
    store_root
        .join("config")
        .join("consumer_offsets")
        .join(format!("{group}.toml"))
}

/// One consumer group.
pub struct ConsumerGroup {
    name: String,
    file: SnapshotFile,
    timings: GroupTimings,
    members: HashMap<String, Member>,
    offsets: BTreeMap<(String, i32), i64>,
    /// Topic → when a member first subscribed it here (ms), persisted with the offsets.
    subscribed_since: BTreeMap<String, i64>,
    dirty: bool,
    /// Orderly consumption: which member holds which queue, and since when.
    locks: HashMap<MessageQueue, (String, Instant)>,
    /// Why the offsets file could not be read. While set, the committed offsets are unknown:
    /// none is answered and none is written (see the module doc).
    damaged: Option<String>,
    /// Commits waiting for the write that makes them durable.
    waiting: Vec<tokio::sync::oneshot::Sender<Result<(), OffsetsNotWritten>>>,
    /// A write started for waiting commits has not landed yet.
    commit_write_in_flight: bool,
}

fn offset_key(topic: &str, queue_id: i32) -> String {
    format!("{topic}@{queue_id}")
}

/// The key suffix of a topic's subscription anchor in the offsets file. `@` cannot occur
/// in a topic name, and the suffix is not a queue id, so readers that know only offsets
/// skip the entry.
const SUBSCRIBED_SINCE: &str = "subscribed_since";

impl ConsumerGroup {
    /// A group whose offsets live under `store_root` (not started).
    pub fn new(name: String, store_root: &std::path::Path, timings: GroupTimings) -> Self {
        let file = offsets_path(store_root, &name);
        let mut g = ConsumerGroup {
            name,
            file: SnapshotFile::new(file),
            timings,
            members: HashMap::new(),
            offsets: BTreeMap::new(),
            subscribed_since: BTreeMap::new(),
            dirty: false,
            locks: HashMap::new(),
            damaged: None,
            waiting: Vec::new(),
            commit_write_in_flight: false,
        };
        g.load();
        g
    }

    /// Reads the offsets file. Offsets already in memory are newer than the file (committed
    /// while it could not be read) and win. A file that cannot be read marks the group
    /// damaged; a missing one is a group that never persisted.
    fn load(&mut self) {
        let text = match std::fs::read_to_string(self.file.path()) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.loaded(),
            Err(e) => return self.unreadable(format!("cannot read it: {e}")),
        };
        match toml::from_str::<BTreeMap<String, i64>>(&text) {
            Ok(map) => {
                for (k, v) in map {
                    let Some((topic, q)) = k.rsplit_once('@') else {
                        continue;
                    };
                    if q == SUBSCRIBED_SINCE {
                        // The earlier time wins: the file's, or one recorded meanwhile.
                        let since = self.subscribed_since.entry(topic.to_owned()).or_insert(v);
                        *since = (*since).min(v);
                        continue;
                    }
                    let Ok(q) = q.parse() else { continue };
                    self.offsets.entry((topic.to_owned(), q)).or_insert(v);
                }
                self.loaded();
            }
            Err(e) => self.unreadable(format!("it is damaged: {e}")),
        }
    }

    /// The offsets as they are now, if they changed since the last snapshot (which marks
    /// them clean; a failed write marks them changed again).
    fn offsets_snapshot(&mut self) -> Option<Snapshot> {
        if !self.dirty || self.damaged.is_some() {
            return None;
        }
        let map: BTreeMap<String, i64> = self
            .offsets
            .iter()
            .map(|((t, q), o)| (offset_key(t, *q), *o))
            .chain(
                self.subscribed_since
                    .iter()
                    .map(|(t, since)| (format!("{t}@{SUBSCRIBED_SINCE}"), *since)),
            )
            .collect();
        match toml::to_string(&map) {
            Ok(text) => {
                self.dirty = false;
                Some(self.file.snapshot(text.into_bytes()))
            }
            Err(e) => {
                tracing::error!(group = %self.name, error = %e, "cannot serialise consumer offsets");
                None
            }
        }
    }

    /// Writes changed offsets on a blocking thread (never on the event loop: a slow disk
    /// must not stall the broker's other actors), and answers the commits it holds once
    /// written. A commit waiting with nothing to write was taken by a write still under way:
    /// it is answered when the next write (or this one's successor) lands.
    fn persist(&mut self, ctx: &mut Context<Self>) {
        ctx.spawn(self.write_answering_commits());
    }

    /// The write of the changed offsets, answering the commits waiting for it when it lands.
    /// With nothing to write, a commit still waiting cannot be made durable (the file turned
    /// unreadable, or the offsets cannot be serialised): it is answered with the error.
    fn write_answering_commits(&mut self) -> ResponseActFuture<Self, ()> {
        let Some(snapshot) = self.offsets_snapshot() else {
            if !self.waiting.is_empty() {
                let reason = self
                    .damaged
                    .clone()
                    .unwrap_or_else(|| "the offsets could not be serialised".into());
                let waiting = std::mem::take(&mut self.waiting);
                self.answer(waiting, Err(reason));
            }
            return Box::pin(actix::fut::ready(()));
        };
        let waiting = std::mem::take(&mut self.waiting);
        Box::pin(
            snapshot
                .write_off_thread()
                .into_actor(self)
                .map(move |written, act, _| {
                    let answer = written.as_ref().map(|_| ()).map_err(|e| e.to_string());
                    act.answer(waiting, answer);
                    act.after_write(written);
                }),
        )
    }

    fn answer(
        &self,
        waiting: Vec<tokio::sync::oneshot::Sender<Result<(), OffsetsNotWritten>>>,
        answer: Result<(), String>,
    ) {
        let answer = answer.map_err(|reason| OffsetsNotWritten {
            group: self.name.clone(),
            reason,
        });
        for w in waiting {
            // The asker may have gone (its connection closed).
            let _ = w.send(answer.clone());
        }
    }

    /// Starts the write that makes waiting commits durable, unless one is under way: then
    /// they go in the write that starts when it lands.
    fn sync_commits(&mut self, ctx: &mut Context<Self>) {
        if self.commit_write_in_flight || self.waiting.is_empty() {
            return;
        }
        self.commit_write_in_flight = true;
        ctx.spawn(self.write_answering_commits().map(|(), act, ctx| {
            act.commit_write_in_flight = false;
            act.sync_commits(ctx);
        }));
    }

    /// Writes changed offsets on a blocking thread that outlives this actor (stop, restart).
    fn persist_detached(&mut self) {
        if let Some(snapshot) = self.offsets_snapshot() {
            let name = self.name.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = snapshot.write() {
                    tracing::error!(group = %name, error = %e, "cannot persist consumer offsets");
                }
            });
        }
    }

    fn after_write(&mut self, written: std::io::Result<()>) {
        if let Err(e) = written {
            self.dirty = true;
            tracing::error!(group = %self.name, error = %e, "cannot persist consumer offsets; retrying at the next interval");
        }
    }

    /// Frees the queues of members that are gone, so others can lock them at once.
    fn release_orphan_locks(&mut self) {
        let members = &self.members;
        self.locks
            .retain(|_, (owner, _)| members.contains_key(owner));
    }

    fn membership_changed(&mut self) {
        self.release_orphan_locks();
        let header = NotifyConsumerIdsChangedRequestHeader {
            consumer_group: self.name.clone(),
        };
        let Ok(frame) = Frame::oneway(
            RequestCode::NotifyConsumerIdsChanged,
            0,
            &header,
            Bytes::new(),
        ) else {
            return;
        };
        for m in self.members.values() {
            m.notify.do_send(Outbound(frame.clone()));
        }
    }

    fn expire(&mut self) {
        let limit = self.timings.channel_expired_timeout;
        let before = self.members.len();
        self.members.retain(|id, m| {
            let keep = m.last_seen.elapsed() < limit;
            if !keep {
                tracing::info!(client = %id, "consumer expired after silence");
            }
            keep
        });
        if self.members.len() != before {
            self.membership_changed();
        }
    }
}

impl Actor for ConsumerGroup {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.timings.flush_consumer_offset_interval, |act, ctx| {
            act.persist(ctx)
        });
        // A restart drops a write under way: its commits are answered with an error (their
        // consumers commit again); those still waiting start a write now.
        self.commit_write_in_flight = false;
        self.sync_commits(ctx);
        let scan = (self.timings.channel_expired_timeout / 4).max(Duration::from_millis(50));
        ctx.run_interval(scan, |act, _| act.expire());
        self.stop_to_reload_if_damaged(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.persist_detached();
    }
}

impl Handler<Heartbeat> for ConsumerGroup {
    type Result = ();

    fn handle(&mut self, msg: Heartbeat, _ctx: &mut Self::Context) {
        let now = crate::common::clock::now_ms();
        for sub in &msg.data.subscription_data_set {
            if !self.subscribed_since.contains_key(&sub.topic) {
                self.subscribed_since.insert(sub.topic.clone(), now);
                self.dirty = true;
            }
        }
        let changed = match self.members.get_mut(&msg.client_id) {
            Some(m) => {
                let moved = m.conn != msg.conn;
                m.conn = msg.conn;
                m.notify = msg.notify;
                m.data = msg.data;
                m.last_seen = Instant::now();
                moved
            }
            None => {
                tracing::info!(group = %self.name, client = %msg.client_id, "consumer joined");
                self.members.insert(
                    msg.client_id,
                    Member {
                        conn: msg.conn,
                        notify: msg.notify,
                        data: msg.data,
                        last_seen: Instant::now(),
                    },
                );
                true
            }
        };
        if changed {
            self.membership_changed();
        }
    }
}

impl Handler<Leave> for ConsumerGroup {
    type Result = ();

    fn handle(&mut self, msg: Leave, _ctx: &mut Self::Context) {
        if self.members.remove(&msg.client_id).is_some() {
            tracing::info!(group = %self.name, client = %msg.client_id, "consumer left");
            self.membership_changed();
        }
    }
}

impl Handler<ConnectionGone> for ConsumerGroup {
    type Result = ();

    fn handle(&mut self, msg: ConnectionGone, _ctx: &mut Self::Context) {
        let before = self.members.len();
        self.members.retain(|_, m| m.conn != msg.0);
        if self.members.len() != before {
            self.membership_changed();
        }
    }
}

impl Handler<QueryOffset> for ConsumerGroup {
    type Result = Result<OffsetAnswer, OffsetsUnavailable>;

    fn handle(&mut self, msg: QueryOffset, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(e) = self.unavailable() {
            return Err(e);
        }
        Ok(OffsetAnswer {
            subscribed_since_ms: self.subscribed_since.get(&msg.topic).copied(),
            offset: self.offsets.get(&(msg.topic, msg.queue_id)).copied(),
        })
    }
}

impl Handler<CommitOffset> for ConsumerGroup {
    type Result = ResponseFuture<Result<(), OffsetsNotWritten>>;

    fn handle(&mut self, msg: CommitOffset, ctx: &mut Self::Context) -> Self::Result {
        let key = (msg.topic, msg.queue_id);
        if msg.keep_larger && self.offsets.get(&key).is_some_and(|o| *o >= msg.offset) {
            return Box::pin(async { Ok(()) });
        }
        self.offsets.insert(key, msg.offset);
        self.dirty = true;
        if self.damaged.is_some() {
            // Nothing can be written until the file reads again (see the module doc).
            return Box::pin(async { Ok(()) });
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.waiting.push(tx);
        self.sync_commits(ctx);
        let group = self.name.clone();
        Box::pin(async move {
            rx.await.unwrap_or_else(|_| {
                Err(OffsetsNotWritten {
                    group,
                    reason: "the group stopped before the write".into(),
                })
            })
        })
    }
}

impl Handler<TellMembers> for ConsumerGroup {
    type Result = ();

    fn handle(&mut self, msg: TellMembers, _: &mut Self::Context) {
        for m in self.members.values() {
            m.notify.do_send(Outbound(msg.0.clone()));
        }
    }
}

impl Handler<ListMembers> for ConsumerGroup {
    type Result = Vec<String>;

    fn handle(&mut self, _msg: ListMembers, _ctx: &mut Self::Context) -> Self::Result {
        let mut ids: Vec<String> = self.members.keys().cloned().collect();
        ids.sort();
        ids
    }
}

impl Handler<ListAssignments> for ConsumerGroup {
    type Result = MessageResult<ListAssignments>;

    fn handle(&mut self, _: ListAssignments, _: &mut Self::Context) -> Self::Result {
        MessageResult(
            self.members
                .iter()
                .filter_map(|(id, m)| Some((id.clone(), m.data.assigned_queues.clone()?)))
                .collect(),
        )
    }
}

impl Handler<MergeOffsets> for ConsumerGroup {
    type Result = MessageResult<MergeOffsets>;

    fn handle(&mut self, msg: MergeOffsets, _ctx: &mut Self::Context) -> Self::Result {
        let ahead = self
            .offsets
            .iter()
            .filter(|(q, o)| msg.0.get(*q).is_none_or(|theirs| *o > theirs))
            .map(|(q, o)| (q.clone(), *o))
            .collect();
        for (queue, offset) in msg.0 {
            let ours = self.offsets.entry(queue).or_insert(-1);
            if offset > *ours {
                *ours = offset;
                self.dirty = true;
            }
        }
        MessageResult(ahead)
    }
}

impl Handler<ListOffsets> for ConsumerGroup {
    type Result = MessageResult<ListOffsets>;

    fn handle(&mut self, _msg: ListOffsets, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.offsets.clone())
    }
}

impl Handler<LockQueues> for ConsumerGroup {
    type Result = MessageResult<LockQueues>;

    fn handle(&mut self, msg: LockQueues, _: &mut Self::Context) -> Self::Result {
        let now = Instant::now();
        let mut held = BTreeSet::new();
        for mq in msg.queues {
            let free = match self.locks.get(&mq) {
                None => true,
                Some((owner, at)) => *owner == msg.client_id || at.elapsed() >= QUEUE_LOCK_LIFETIME,
            };
            if free {
                self.locks.insert(mq.clone(), (msg.client_id.clone(), now));
                held.insert(mq);
            }
        }
        MessageResult(held)
    }
}

impl Handler<UnlockQueues> for ConsumerGroup {
    type Result = ();

    fn handle(&mut self, msg: UnlockQueues, _: &mut Self::Context) {
        for mq in msg.queues {
            if self
                .locks
                .get(&mq)
                .is_some_and(|(owner, _)| *owner == msg.client_id)
            {
                self.locks.remove(&mq);
            }
        }
    }
}

impl Handler<PersistOffsets> for ConsumerGroup {
    type Result = ResponseActFuture<Self, ()>;

    /// Answers once the offsets are written (the broker's shutdown waits for it).
    fn handle(&mut self, _msg: PersistOffsets, _ctx: &mut Self::Context) -> Self::Result {
        self.write_answering_commits()
    }
}
