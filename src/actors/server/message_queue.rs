//! MessageQueue actor: one per (topic, queue id) on a broker.
//!
//! Owns the queue's read path and its long-poll waiters. A pull is answered at once when
//! messages are there; at the end of the queue it is held, up to the smaller of the client's
//! suspend timeout and the broker's `long_polling_timeout`, and answered as soon as the
//! broker says that messages landed here ([`Appended`]). Appends are not made here: the
//! broker appends the sends of a whole connection read together, with one commit-log write.
//! It never touches consumer-group state or sockets; answers go back through the
//! connection's `Recipient`.
//!
//! Supervised: it keeps no state the store does not have. Its fatal path is the broker
//! reopening a poisoned store ([`StoreReopened`]): the pulls it holds wait on the old
//! handle's queue and their deadline timers live in its context, so it takes the new handle
//! and stops. The restart answers every held pull at once from the new store (what recovery
//! made readable, else "not found", and the clients pull again) and drops the old timers
//! with the old context.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};

use crate::actors::server::connection::Outbound;
use crate::protocol::message::PullMessageResponseHeader;
use crate::protocol::{Frame, ResponseCode};
use crate::storage::record::tag_hash;
use crate::storage::{self, GetStatus, MessageStore};

/// Largest pull answer body; a pull of many large messages is cut here.
pub const MAX_PULL_BYTES: usize = 4 * 1024 * 1024;

/// The broker appended messages to this queue: answer the pulls held here that they serve.
/// At most one is queued at a time (see [`MessageQueue::wake_flag`]).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Appended;

/// The broker reopened its poisoned store: read from this handle from now on. Stops the
/// actor, whose restart answers the pulls it held (see the module doc).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StoreReopened(pub Arc<MessageStore>);

/// Read messages and answer the puller, possibly after holding the request.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Pull {
    /// First queue offset wanted.
    pub offset: u64,
    /// At most this many messages.
    pub max_msgs: usize,
    /// Tag hashes accepted; `None` = every message.
    pub tag_filter: Option<BTreeSet<i64>>,
    /// Hold the request this long when nothing is there (0 = answer at once).
    pub hold: Duration,
    /// Largest answer body (kept below the connection's frame limit).
    pub max_bytes: usize,
    /// The request's id.
    pub opaque: u32,
    /// Where the answer goes.
    pub reply: Recipient<Outbound>,
}

/// Parses a RocketMQ subscription expression (`*`, `TagA`, `TagA || TagB`) into the tag
/// hashes a consume-queue entry may carry; `None` means every message.
pub fn tag_filter(expression: Option<&str>) -> Option<BTreeSet<i64>> {
    let expr = expression.map(str::trim).unwrap_or("");
    if expr.is_empty() || expr == "*" {
        return None;
    }
    Some(
        expr.split("||")
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(tag_hash)
            .collect(),
    )
}

struct Waiter {
    pull: Pull,
    deadline: SpawnHandle,
}

/// One queue of one topic.
pub struct MessageQueue {
    topic: String,
    queue_id: u32,
    store: Arc<MessageStore>,
    waiters: HashMap<u64, Waiter>,
    next_waiter: u64,
    /// Set by the broker when it sends [`Appended`], cleared here when that is handled: a
    /// busy queue gets one wake-up message per turn instead of one per socket read, so
    /// wake-ups never fill the mailbox that pulls need.
    wake_pending: Arc<AtomicBool>,
    /// Whether a pull past this queue's end is told where the end is (a master), or left
    /// where it is (a slave: it may just be behind its master; RocketMQ's slaves do not
    /// correct offsets either, and a correction would send the consumer back to consume
    /// again what the master already gave it).
    corrects_offsets: bool,
}

impl MessageQueue {
    /// A queue actor over `store` (not started); `on_slave` for a slave's queue.
    pub fn new(topic: String, queue_id: u32, store: Arc<MessageStore>, on_slave: bool) -> Self {
        MessageQueue {
            topic,
            queue_id,
            store,
            waiters: HashMap::new(),
            next_waiter: 0,
            wake_pending: Arc::new(AtomicBool::new(false)),
            corrects_offsets: !on_slave,
        }
    }

    /// The flag to swap to `true` before sending [`Appended`]: when it was already `true`,
    /// a wake-up is queued and will see the new messages, so none need be sent.
    pub fn wake_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.wake_pending)
    }

    /// Answers `pull` if there is anything to say now; gives it back if it should wait.
    fn try_answer(&self, pull: Pull) -> Option<Pull> {
        let filter = pull.tag_filter.as_ref();
        let accept = |h: i64| filter.is_none_or(|f| f.contains(&h));
        let got = self.store.get_messages(
            &self.topic,
            self.queue_id,
            pull.offset,
            pull.max_msgs,
            pull.max_bytes,
            Some(&accept),
        );
        // Nothing to read yet at an offset that is not wrong: records not confirmed yet,
        // or a slave behind its master. Waits like a pull at the end, offset unchanged.
        let keep_offset = match got.status {
            GetStatus::NotConfirmedYet => true,
            GetStatus::OffsetOverflowBadly | GetStatus::NoMessageInQueue => {
                !self.corrects_offsets && pull.offset > got.max_offset
            }
            _ => false,
        };
        let header = PullMessageResponseHeader {
            suggest_which_broker_id: 0,
            next_begin_offset: if keep_offset {
                pull.offset as i64
            } else {
                got.next_offset as i64
            },
            min_offset: got.min_offset as i64,
            max_offset: got.max_offset as i64,
        };
        let (code, body) = match got.status {
            _ if keep_offset => {
                if !pull.hold.is_zero() {
                    return Some(pull);
                }
                (ResponseCode::PullNotFound, Bytes::new())
            }
            GetStatus::Found => {
                let mut body = BytesMut::with_capacity(got.messages.iter().map(Bytes::len).sum());
                for m in &got.messages {
                    body.extend_from_slice(m);
                }
                (ResponseCode::Success, body.freeze())
            }
            GetStatus::OffsetOverflowOne | GetStatus::NoMessageInQueue
                if pull.offset == got.max_offset =>
            {
                if !pull.hold.is_zero() {
                    return Some(pull);
                }
                (ResponseCode::PullNotFound, Bytes::new())
            }
            // Nothing new here passes the filter, and the scan moved on: say so at once (as
            // RocketMQ's PULL_RETRY_IMMEDIATELY does), so that the consumer's offset moves
            // past what it will never consume instead of waiting for the hold to end.
            // Without progress (a held pull woken by messages it filters out), keep holding.
            GetStatus::NoMatchedMessage
                if !pull.hold.is_zero() && got.next_offset == pull.offset =>
            {
                return Some(pull);
            }
            GetStatus::NoMatchedMessage | GetStatus::MessageWasRemoving => {
                (ResponseCode::PullRetryImmediately, Bytes::new())
            }
            GetStatus::OffsetTooSmall
            | GetStatus::OffsetOverflowBadly
            | GetStatus::NoMessageInQueue
            | GetStatus::OffsetOverflowOne
            | GetStatus::NotConfirmedYet => (ResponseCode::PullOffsetMoved, Bytes::new()),
        };
        respond(&pull.reply, pull.opaque, code, &header, body);
        None
    }

    fn wake_waiters(&mut self, ctx: &mut Context<Self>) {
        if self.waiters.is_empty() {
            return;
        }
        for (id, w) in std::mem::take(&mut self.waiters) {
            match self.try_answer(w.pull) {
                None => {
                    ctx.cancel_future(w.deadline);
                }
                Some(pull) => {
                    self.waiters.insert(
                        id,
                        Waiter {
                            pull,
                            deadline: w.deadline,
                        },
                    );
                }
            }
        }
    }
}

/// Sends a response frame (or the error that encoding it raised) to `reply`.
fn respond<H: serde::Serialize>(
    reply: &Recipient<Outbound>,
    opaque: u32,
    code: ResponseCode,
    header: &H,
    body: Bytes,
) {
    let frame = Frame::response(opaque, code, header, body)
        .unwrap_or_else(|e| Frame::error(opaque, ResponseCode::SystemError, e.to_string()));
    reply.do_send(Outbound(frame));
}

/// The wire answer for a store error.
pub fn store_error_code(e: &storage::Error) -> ResponseCode {
    match e {
        storage::Error::MessageIllegal(_) => ResponseCode::MessageIllegal,
        storage::Error::FlushTimeout { .. } => ResponseCode::FlushDiskTimeout,
        // A poisoned store is reopened by the broker: the producer should go elsewhere
        // meanwhile, as for the states that pass by themselves.
        storage::Error::Closed
        | storage::Error::Poisoned(_)
        | storage::Error::DiskFull { .. }
        | storage::Error::NoSpace { .. } => ResponseCode::ServiceNotAvailable,
        _ => ResponseCode::SystemError,
    }
}

impl Actor for MessageQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(4096);
    }
}

impl Supervised for MessageQueue {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // Their deadline timers went with the old context: answer them now rather than
        // never (the clients pull again on a "not found").
        for (_, w) in std::mem::take(&mut self.waiters) {
            let _ = self.try_answer(Pull {
                hold: Duration::ZERO,
                ..w.pull
            });
        }
    }
}

impl Handler<StoreReopened> for MessageQueue {
    type Result = ();

    fn handle(&mut self, msg: StoreReopened, ctx: &mut Self::Context) {
        self.store = msg.0;
        ctx.stop();
    }
}

impl Handler<Appended> for MessageQueue {
    type Result = ();

    fn handle(&mut self, _: Appended, ctx: &mut Self::Context) {
        // Cleared before reading the store, so an append after this read sends a new one.
        self.wake_pending.store(false, Ordering::Release);
        self.wake_waiters(ctx);
    }
}

impl Handler<Pull> for MessageQueue {
    type Result = ();

    fn handle(&mut self, msg: Pull, ctx: &mut Self::Context) {
        if let Some(pull) = self.try_answer(msg) {
            let id = self.next_waiter;
            self.next_waiter += 1;
            let deadline = ctx.run_later(pull.hold, move |act, _| {
                if let Some(w) = act.waiters.remove(&id) {
                    let _ = act.try_answer(Pull {
                        hold: Duration::ZERO,
                        ..w.pull
                    });
                }
            });
            self.waiters.insert(id, Waiter { pull, deadline });
        }
    }
}
