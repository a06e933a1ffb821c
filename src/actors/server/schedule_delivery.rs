//! ScheduleDelivery actor: one per delay level on a master. It moves the delayed messages
//! of its level, queue `level - 1` of [`SCHEDULE_TOPIC`], to their real topic and queue
//! once each comes due (its store time plus the level's delay), in queue order.
//!
//! Owns the level's delivery offset: the next schedule-queue offset to deliver. The offset
//! is committed to the broker's system group [`DELIVERY_OFFSETS_GROUP`] (written to disk
//! like any consumer offset, and copied to slaves with them) after each delivered batch is
//! stored, so a restart, clean or `kill -9`, resumes there: at worst the last batch, stored
//! but not yet committed, is delivered twice; nothing is skipped. A message that came due
//! while the broker was down is delivered right after start.
//!
//! It never writes the store itself: delivered messages go through the broker's send path
//! ([`StoreInternal`]), so they are flushed, replicated and wake held pulls as any send.
//! Not supervised: it has no fatal condition (a failed read or store is retried after
//! [`RETRY_AFTER`]).

use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;

use crate::actors::server::broker::{Broker, ReadQueue, StoreInternal};
use crate::actors::server::consumer_group::{CommitOffset, ConsumerGroup, QueryOffset};
use crate::common::names::SCHEDULE_TOPIC;
use crate::common::properties::{
    property, PROPERTY_DELAY, PROPERTY_DUE_MS, PROPERTY_REAL_QUEUE_ID, PROPERTY_REAL_TOPIC,
};
use crate::storage::record::StoredMessage;
use crate::storage::{GetStatus, MessageToStore};

/// The system group whose offsets are the delivery offsets (topic [`SCHEDULE_TOPIC`],
/// queue `level - 1`).
pub const DELIVERY_OFFSETS_GROUP: &str = "SCHEDULE_DELIVERY";
/// Messages read, and delivered together, per step.
const BATCH: usize = 64;
/// How often an empty level looks for new messages. A new message is due one delay (at
/// least a level's delay) after it is stored, so this only bounds how late its timer is
/// set, not how late it is delivered, for delays longer than this.
const POLL: Duration = Duration::from_millis(100);
/// Wait after a failed read, store or offset query.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Rewrites a message sent with a delay level into its schedule form: topic
/// [`SCHEDULE_TOPIC`], queue `level - 1` (the last level for a larger one), and its real
/// topic and queue in properties.
pub fn to_schedule(msg: &mut MessageToStore, level: u32, levels: usize) {
    let level = (level as usize).clamp(1, levels.max(1));
    msg.park(SCHEDULE_TOPIC, (level - 1) as u32);
}

/// The delay level a message asks for, if any (`DELAY` > 0).
pub fn delay_level(properties: &str) -> Option<u32> {
    property(properties, PROPERTY_DELAY)
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|l| *l > 0)
        .map(|l| l.min(u32::MAX as i64) as u32)
}

/// The message a stored schedule record becomes when it comes due at `due_ms`: its real
/// topic and queue, the delay and bookkeeping properties dropped, `TIMER_DELIVER_MS` set.
pub fn restore(stored: &StoredMessage, due_ms: i64) -> Result<MessageToStore, String> {
    let topic = stored
        .property(PROPERTY_REAL_TOPIC)
        .ok_or("it has no REAL_TOPIC property")?
        .to_owned();
    let queue_id: u32 = stored
        .property(PROPERTY_REAL_QUEUE_ID)
        .and_then(|q| q.parse().ok())
        .ok_or("it has no valid REAL_QID property")?;
    let due = due_ms.to_string();
    Ok(MessageToStore::rebuilt_from(
        stored,
        &topic,
        queue_id,
        &[
            PROPERTY_DELAY,
            PROPERTY_REAL_TOPIC,
            PROPERTY_REAL_QUEUE_ID,
            PROPERTY_DUE_MS,
        ],
        &[(PROPERTY_DUE_MS, due.as_str())],
    ))
}

/// Now, in ms since the epoch.
fn now_ms() -> i64 {
    crate::common::clock::now_ms()
}

/// Moves one level's due messages to their topics.
pub struct ScheduleDelivery {
    level: u32,
    delay_ms: i64,
    broker: Addr<Broker>,
    offsets: Addr<ConsumerGroup>,
    /// Next schedule-queue offset to deliver; `None` until read from the offsets.
    next_offset: Option<u64>,
    /// A step (read, store, commit) is under way.
    busy: bool,
    /// The timer of the next step.
    timer: Option<SpawnHandle>,
}

impl ScheduleDelivery {
    /// The delivery of `level` (1-based), whose messages wait `delay`.
    pub fn new(
        level: u32,
        delay: Duration,
        broker: Addr<Broker>,
        offsets: Addr<ConsumerGroup>,
    ) -> Self {
        ScheduleDelivery {
            level,
            delay_ms: delay.as_millis().min(i64::MAX as u128) as i64,
            broker,
            offsets,
            next_offset: None,
            busy: false,
            timer: None,
        }
    }

    fn queue_id(&self) -> u32 {
        self.level - 1
    }

    fn step_after(&mut self, after: Duration, ctx: &mut Context<Self>) {
        if let Some(t) = self.timer.take() {
            ctx.cancel_future(t);
        }
        self.timer = Some(ctx.run_later(after, |act, ctx| {
            act.timer = None;
            act.step(ctx);
        }));
    }

    fn load_offset(&mut self, ctx: &mut Context<Self>) {
        let query = QueryOffset {
            topic: SCHEDULE_TOPIC.to_owned(),
            queue_id: self.queue_id() as i32,
        };
        ctx.spawn(self.offsets.send(query).into_actor(self).map(|res, act, ctx| {
            match res {
                Ok(Ok(answer)) => {
                    act.next_offset = Some(answer.offset.unwrap_or(0).max(0) as u64);
                    act.step(ctx);
                }
                other => {
                    tracing::warn!(level = act.level, answer = ?other.err(), "delivery offset of a delay level unreadable; retrying");
                    ctx.run_later(RETRY_AFTER, |act, ctx| act.load_offset(ctx));
                }
            }
        }));
    }

    fn step(&mut self, ctx: &mut Context<Self>) {
        let Some(offset) = self.next_offset else {
            return;
        };
        if self.busy {
            return;
        }
        self.busy = true;
        let read = ReadQueue {
            topic: SCHEDULE_TOPIC.to_owned(),
            queue_id: self.queue_id(),
            offset,
            max_msgs: BATCH,
        };
        ctx.spawn(
            self.broker
                .send(read)
                .into_actor(self)
                .map(move |res, act, ctx| {
                    let Ok(got) = res else {
                        act.busy = false;
                        return act.step_after(RETRY_AFTER, ctx);
                    };
                    match got.status {
                        GetStatus::Found => act.deliver(offset, got.messages, ctx),
                        GetStatus::OffsetTooSmall | GetStatus::OffsetOverflowBadly => {
                            // Retention removed what it had not delivered (it keeps the log for
                            // days), or the log lost its tail: go on from what there is.
                            tracing::warn!(
                                level = act.level,
                                from = offset,
                                to = got.next_offset,
                                "schedule queue offset out of range; moving on"
                            );
                            act.next_offset = Some(got.next_offset);
                            act.busy = false;
                            act.step(ctx);
                        }
                        _ => {
                            act.busy = false;
                            act.step_after(POLL, ctx);
                        }
                    }
                }),
        );
    }

    /// Stores the due prefix of `records` (read from `offset` on) in their topics, then
    /// commits the offset past them.
    fn deliver(&mut self, offset: u64, records: Vec<Bytes>, ctx: &mut Context<Self>) {
        let now = now_ms();
        let mut due = Vec::new();
        let mut next = offset;
        let mut wait = None;
        for raw in records {
            let stored = match StoredMessage::decode(raw) {
                Ok(m) => m,
                Err(e) => {
                    // A single copy with a damaged record: that record is lost, and said so.
                    tracing::error!(level = self.level, queue_offset = next, error = %e, "damaged delayed message skipped");
                    next += 1;
                    continue;
                }
            };
            let due_ms = stored.store_timestamp.saturating_add(self.delay_ms);
            if due_ms > now {
                wait = Some(Duration::from_millis((due_ms - now) as u64));
                break;
            }
            match restore(&stored, due_ms) {
                Ok(m) => due.push((stored.queue_offset, m)),
                Err(why) => {
                    tracing::error!(level = self.level, queue_offset = stored.queue_offset, %why, "delayed message cannot be delivered; skipped")
                }
            }
            next = stored.queue_offset + 1;
        }
        if due.is_empty() {
            self.busy = false;
            if next != offset {
                self.next_offset = Some(next);
                self.commit(next, ctx);
            }
            return self.step_after(wait.unwrap_or(Duration::ZERO), ctx);
        }
        let offsets: Vec<u64> = due.iter().map(|(o, _)| *o).collect();
        let msgs = due.into_iter().map(|(_, m)| m).collect();
        ctx.spawn(
            self.broker
                .send(StoreInternal(msgs))
                .into_actor(self)
                .map(move |res, act, ctx| {
                    act.busy = false;
                    let results = res.unwrap_or_default();
                    // Delivered up to the first failure; the rest is tried again.
                    let stored = results.iter().take_while(|r| r.is_ok()).count();
                    let mut delivered_to = if stored == offsets.len() {
                        next
                    } else {
                        offsets.get(stored).copied().unwrap_or(offset)
                    };
                    delivered_to = delivered_to.max(offset);
                    if delivered_to > offset {
                        act.next_offset = Some(delivered_to);
                        act.commit(delivered_to, ctx);
                    }
                    if stored < offsets.len() {
                        let why = results
                            .iter()
                            .find_map(|r| r.as_ref().err().cloned())
                            .unwrap_or_else(|| "the broker did not answer".to_owned());
                        tracing::warn!(level = act.level, %why, "delayed messages not delivered; retrying in 1 s");
                        act.step_after(RETRY_AFTER, ctx);
                    } else {
                        act.step_after(wait.unwrap_or(Duration::ZERO), ctx);
                    }
                }),
        );
    }

    fn commit(&self, offset: u64, _ctx: &mut Context<Self>) {
        // Not awaited: the group writes commits in order, and a lost last commit only means
        // its batch is delivered again after a crash.
        self.offsets.do_send(CommitOffset {
            topic: SCHEDULE_TOPIC.to_owned(),
            queue_id: self.queue_id() as i32,
            offset: offset as i64,
            keep_larger: false,
        });
    }
}

impl Actor for ScheduleDelivery {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.load_offset(ctx);
    }
}
