//! MessageQueue actor: one per (topic, queue id) on a broker.
//!
//! Owns the queue's append path and its long-poll waiters. A send is appended through the
//! store and answered with message id, queue id and queue offset (after the flush covers it
//! under `sync_flush`). A pull is answered at once when messages are there; at the end of the
//! queue it is held, up to the smaller of the client's suspend timeout and the broker's
//! `long_polling_timeout`, and answered as soon as a message lands here. It never touches
//! consumer-group state or sockets; answers go back through the connection's `Recipient`.
//!
//! Supervised by the broker: it keeps no state the store does not have, so a restart only
//! answers held pulls with "not found" (the clients pull again).

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};

use crate::actors::connection::Outbound;
use crate::protocol::message::{PullMessageResponseHeader, SendMessageResponseHeader};
use crate::protocol::{Frame, ResponseCode};
use crate::storage::record::tag_hash;
use crate::storage::{self, FlushDiskType, GetStatus, MessageStore, MessageToStore};

/// Largest pull answer body; a pull of many large messages is cut here.
pub const MAX_PULL_BYTES: usize = 4 * 1024 * 1024;

/// Append one message and answer the sender.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Append {
    /// The message.
    pub msg: MessageToStore,
    /// The request's id.
    pub opaque: u32,
    /// Where the answer goes; `None` for one-way sends.
    pub reply: Option<Recipient<Outbound>>,
}

/// Append several messages of this queue under one lock and answer once (SEND_BATCH_MESSAGE):
/// the answer carries every message id, comma-joined, and the first queue offset.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AppendBatch {
    /// The messages, in order.
    pub msgs: Vec<MessageToStore>,
    /// The request's id.
    pub opaque: u32,
    /// Where the answer goes; `None` for one-way sends.
    pub reply: Option<Recipient<Outbound>>,
}

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
}

impl MessageQueue {
    /// A queue actor over `store` (not started).
    pub fn new(topic: String, queue_id: u32, store: Arc<MessageStore>) -> Self {
        MessageQueue {
            topic,
            queue_id,
            store,
            waiters: HashMap::new(),
            next_waiter: 0,
        }
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
        let header = PullMessageResponseHeader {
            suggest_which_broker_id: 0,
            next_begin_offset: got.next_offset as i64,
            min_offset: got.min_offset as i64,
            max_offset: got.max_offset as i64,
        };
        let (code, body) = match got.status {
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
            // Nothing here passes the filter yet: keep holding from past what was scanned.
            GetStatus::NoMatchedMessage if !pull.hold.is_zero() => {
                return Some(Pull {
                    offset: got.next_offset,
                    ..pull
                });
            }
            GetStatus::NoMatchedMessage | GetStatus::MessageWasRemoving => {
                (ResponseCode::PullRetryImmediately, Bytes::new())
            }
            GetStatus::OffsetTooSmall
            | GetStatus::OffsetOverflowBadly
            | GetStatus::NoMessageInQueue
            | GetStatus::OffsetOverflowOne => (ResponseCode::PullOffsetMoved, Bytes::new()),
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
        storage::Error::Closed => ResponseCode::ServiceNotAvailable,
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
        for (_, w) in std::mem::take(&mut self.waiters) {
            let _ = self.try_answer(Pull {
                hold: Duration::ZERO,
                ..w.pull
            });
        }
    }
}

impl Handler<Append> for MessageQueue {
    type Result = ();

    fn handle(&mut self, msg: Append, ctx: &mut Self::Context) {
        let queue_id = self.queue_id as i32;
        match self.store.append(&msg.msg) {
            Ok(r) => {
                if let Some(reply) = msg.reply {
                    let header = SendMessageResponseHeader {
                        msg_id: r.msg_id(),
                        queue_id,
                        queue_offset: r.queue_offset as i64,
                        transaction_id: None,
                        batch_uniq_id: None,
                    };
                    self.acknowledge(reply, msg.opaque, header, r.end_offset());
                }
                self.wake_waiters(ctx);
            }
            Err(e) => {
                tracing::warn!(topic = %self.topic, queue_id, error = %e, "append refused");
                if let Some(reply) = msg.reply {
                    reply.do_send(Outbound(Frame::error(
                        msg.opaque,
                        store_error_code(&e),
                        e.to_string(),
                    )));
                }
            }
        }
    }
}

impl MessageQueue {
    /// Answers a stored send, after the flush covers `end` under sync_flush.
    fn acknowledge(
        &self,
        reply: Recipient<Outbound>,
        opaque: u32,
        header: SendMessageResponseHeader,
        end: u64,
    ) {
        if self.store.config().flush_disk_type == FlushDiskType::SyncFlush {
            self.store.on_durable(
                end,
                Box::new(move |res| match res {
                    Ok(()) => respond(&reply, opaque, ResponseCode::Success, &header, Bytes::new()),
                    Err(e) => reply.do_send(Outbound(Frame::error(
                        opaque,
                        store_error_code(&e),
                        e.to_string(),
                    ))),
                }),
            );
        } else {
            respond(&reply, opaque, ResponseCode::Success, &header, Bytes::new());
        }
    }
}

impl Handler<AppendBatch> for MessageQueue {
    type Result = ();

    fn handle(&mut self, msg: AppendBatch, ctx: &mut Self::Context) {
        match self.store.append_batch(&msg.msgs) {
            Ok(results) => {
                if let (Some(reply), Some(first), Some(last)) =
                    (msg.reply, results.first(), results.last())
                {
                    let header = SendMessageResponseHeader {
                        msg_id: results
                            .iter()
                            .map(|r| r.msg_id())
                            .collect::<Vec<_>>()
                            .join(","),
                        queue_id: self.queue_id as i32,
                        queue_offset: first.queue_offset as i64,
                        transaction_id: None,
                        batch_uniq_id: None,
                    };
                    self.acknowledge(reply, msg.opaque, header, last.end_offset());
                }
                self.wake_waiters(ctx);
            }
            Err(e) => {
                tracing::warn!(topic = %self.topic, queue_id = self.queue_id, error = %e, "batch append refused");
                if let Some(reply) = msg.reply {
                    reply.do_send(Outbound(Frame::error(
                        msg.opaque,
                        store_error_code(&e),
                        e.to_string(),
                    )));
                }
            }
        }
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
