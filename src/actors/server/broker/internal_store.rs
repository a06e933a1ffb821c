//! Messages the broker stores on its own behalf: a delayed message coming due, a consumer's
//! retry or dead letter, a committed transaction. They take the send path (the same checks,
//! the same batch append, the same wake-ups of held pulls and of slaves) and are answered
//! when a producer's send would be: after the flush under `sync_flush`, once the slaves hold
//! them under `sync_master`.
//!
//! Owns [`StoreInternal`], its answer, and [`InternalAnswers`], the actor that stands where
//! a connection would and turns the send path's answer frames into those answers. It must
//! never answer before the send path does: a caller moves its own progress (a delivery
//! offset, a consumer's offset) on the answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::*;

/// Stores messages the broker itself produced. Each gets its own answer, in order.
#[derive(Message)]
#[rtype(result = "Vec<Result<StoredInternally, String>>")]
pub struct StoreInternal(pub Vec<MessageToStore>);

/// Where an internally stored message landed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredInternally {
    /// The offset message id (store host and commit-log offset).
    pub msg_id: String,
    /// Its offset in its queue.
    pub queue_offset: i64,
}

type Waiting =
    Arc<Mutex<HashMap<u32, tokio::sync::oneshot::Sender<Result<StoredInternally, String>>>>>;

/// Receives the send path's answers to internal messages, as a connection would, and hands
/// each to whoever waits for it (by the request's opaque).
#[derive(Default)]
pub struct InternalAnswers {
    waiting: Waiting,
}

impl Actor for InternalAnswers {
    type Context = Context<Self>;
}

impl InternalAnswers {
    fn answer(&self, frame: Frame) {
        let Some(tx) = self
            .waiting
            .lock()
            .ok()
            .and_then(|mut w| w.remove(&frame.opaque))
        else {
            return;
        };
        let code = ResponseCode::from_i32(frame.code);
        // Stored in this broker's log is what an internal message needs: a slave missing
        // or late (SLAVE_NOT_AVAILABLE, FLUSH_SLAVE_TIMEOUT) gets the record when it
        // returns, and consumers see it only then. Storing it again would duplicate it.
        let stored = matches!(
            code,
            Some(
                ResponseCode::Success
                    | ResponseCode::SlaveNotAvailable
                    | ResponseCode::FlushSlaveTimeout
            )
        );
        let answer = if stored {
            frame
                .decode_header::<SendMessageResponseHeader>()
                .map(|h| StoredInternally {
                    msg_id: h.msg_id,
                    queue_offset: h.queue_offset,
                })
                .map_err(|e| format!("unreadable answer of the send path: {e}"))
        } else {
            Err(format!(
                "not stored (code {}): {}",
                frame.code,
                frame.remark.as_deref().unwrap_or("")
            ))
        };
        let _ = tx.send(answer);
    }
}

impl Handler<Outbound> for InternalAnswers {
    type Result = ();
    fn handle(&mut self, msg: Outbound, _: &mut Context<Self>) {
        self.answer(msg.0);
    }
}

impl Handler<OutboundBatch> for InternalAnswers {
    type Result = ();
    fn handle(&mut self, msg: OutboundBatch, _: &mut Context<Self>) {
        for frame in msg.0 {
            self.answer(frame);
        }
    }
}

/// The broker's end of [`InternalAnswers`]: the recipients the send path answers to, and
/// the table of waiting callers.
pub(super) struct InternalStore {
    reply: Arc<Recipient<Outbound>>,
    replies: Arc<Recipient<OutboundBatch>>,
    waiting: Waiting,
    next_opaque: u32,
}

impl InternalStore {
    fn start() -> Self {
        let actor = InternalAnswers::default();
        let waiting = Arc::clone(&actor.waiting);
        let addr = actor.start();
        InternalStore {
            reply: Arc::new(addr.clone().recipient()),
            replies: Arc::new(addr.recipient()),
            waiting,
            next_opaque: 0,
        }
    }
}

impl Broker {
    /// Queues one internal message into the batch being built; the receiver gets its
    /// answer. Refused at once (as a producer's send would be) by a slave, a closing broker
    /// or a store that cannot take it.
    pub(super) fn queue_internal(
        &mut self,
        msg: MessageToStore,
    ) -> tokio::sync::oneshot::Receiver<Result<StoredInternally, String>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let refusal = if self.shutting_down {
            Some("broker is shutting down".to_owned())
        } else if let Some(why) = self.write_side.refusal() {
            Some(why.to_owned())
        } else if !self.config.is_master() {
            Some("a slave stores nothing of its own".to_owned())
        } else {
            self.store.check(&msg).err().map(|e| e.to_string())
        };
        if let Some(why) = refusal {
            let _ = tx.send(Err(why));
            return rx;
        }
        let internal = self.internal.get_or_insert_with(InternalStore::start);
        internal.next_opaque = internal.next_opaque.wrapping_add(1);
        let opaque = internal.next_opaque;
        if let Ok(mut w) = internal.waiting.lock() {
            w.insert(opaque, tx);
        }
        let (reply, replies) = (Arc::clone(&internal.reply), Arc::clone(&internal.replies));
        self.pending.push_internal(msg, opaque, reply, replies);
        rx
    }
}

impl Handler<StoreInternal> for Broker {
    type Result = ResponseFuture<Vec<Result<StoredInternally, String>>>;

    fn handle(&mut self, msg: StoreInternal, ctx: &mut Context<Self>) -> Self::Result {
        let answers: Vec<_> = msg.0.into_iter().map(|m| self.queue_internal(m)).collect();
        self.append_pending(ctx);
        Box::pin(async move {
            let mut out = Vec::with_capacity(answers.len());
            for rx in answers {
                out.push(rx.await.unwrap_or_else(|_| {
                    Err(
                        "the broker dropped the message before storing it (a store reopen)"
                            .to_owned(),
                    )
                }));
            }
            out
        })
    }
}
