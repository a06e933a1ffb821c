//! TransactionCheck actor: the master's check-back of half messages left unresolved (their
//! producer never ended the transaction, or its END_TRANSACTION was lost).
//!
//! Every `transaction_check_interval` it reads the op records from its op offset (each
//! names a resolved half's queue offset), then walks the halves from its half offset: a
//! resolved one is passed; an unresolved one stored less than `transaction_timeout` ago
//! ends the round (halves are in store-time order); an older one is given up when it was
//! checked `transaction_check_max` times (a warning, and it moves to
//! `TRANS_CHECK_MAX_TIME_TOPIC`), else stored again as a fresh half with its check count
//! plus one, and that record is sent as CHECK_TRANSACTION_STATE to one live producer of its
//! group, which answers with END_TRANSACTION. A fresh record is itself checked again after
//! `transaction_timeout` if nothing resolves it, so a producer that is down is simply asked
//! later.
//!
//! Owns the check progress: the half and op offsets, persisted as the offsets of the system
//! group `CID_RMQ_SYS_TRANS` (durable, and copied to slaves like any group's), and in memory
//! only the resolved halves at or past the half offset. Everything else is in the commit
//! log, so a restart (clean or `kill -9`) resumes from the persisted offsets; an offset is
//! persisted only past what is fully handled (stored again, moved, or resolved).
//!
//! It must never store anything but through the broker's send path (`StoreInternal`), and
//! never run on a slave. Not supervised: it has no fatal condition; a round that fails (the
//! broker refused a store) stops there and the next one resumes from the same half. Started
//! by the `Broker` of a master, which holds its address; it holds the broker weakly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix::WeakAddr;
use bytes::Bytes;

use crate::actors::server::broker::{store_one, AskProducer, Broker, CurrentStore, OP_REMOVE_TAG};
use crate::actors::server::consumer_group::{CommitOffset, ConsumerGroup, QueryOffset};
use crate::common::clock::now_ms;
use crate::common::names::{TRANS_CHECK_MAX_TIME_TOPIC, TRANS_HALF_TOPIC, TRANS_OP_HALF_TOPIC};
use crate::common::properties::{
    property, PROPERTY_PRODUCER_GROUP, PROPERTY_REAL_TOPIC, PROPERTY_TRANSACTION_CHECK_TIMES,
    PROPERTY_TRANSACTION_ID,
};
use crate::protocol::message::CheckTransactionStateRequestHeader;
use crate::protocol::{Frame, RequestCode};
use crate::storage::message_id::decode_offset_msg_id;
use crate::storage::record::{PROPERTY_TAGS, PROPERTY_UNIQ_KEY};
use crate::storage::{MessageStore, StoredMessage};

/// The system group whose offsets hold the check progress.
pub const TRANSACTION_CHECK_GROUP: &str = "CID_RMQ_SYS_TRANS";
/// Most halves checked (stored again or moved) in one round: a backlog is worked off over
/// several rounds rather than in one long one.
const MAX_CHECKS_PER_ROUND: usize = 256;
/// Most resolved halves remembered ahead of the half offset; more ops are read once the
/// halves catch up.
const MAX_RESOLVED: usize = 100_000;
/// Records read per store call.
const READ_BATCH: usize = 64;
/// Bytes read per store call.
const READ_BYTES: usize = 1 << 20;

/// Why a half could not be handled this round.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The broker did not store the re-put or moved half.
    #[error("the broker did not store it: {0}")]
    NotStored(String),
    /// The record just stored could not be read back.
    #[error("cannot read back the half stored again at {msg_id}: {reason}")]
    ReadBack {
        /// Its offset message id.
        msg_id: String,
        /// What failed.
        reason: String,
    },
}

/// The check settings (the broker config's `transaction_*` keys).
#[derive(Debug, Clone, Copy)]
pub struct CheckSettings {
    /// A half younger than this (by store time) is not checked yet.
    pub timeout: Duration,
    /// Checks of one half before it is given up.
    pub check_max: u32,
    /// How often a round runs.
    pub interval: Duration,
}

/// What a round reads and moves.
#[derive(Default)]
struct Progress {
    /// Offsets read from the system group (once per actor).
    loaded: bool,
    /// Next half (queue offset in the half topic) not yet handled.
    half_offset: u64,
    /// Next op record to read.
    op_next: u64,
    /// Resolved halves at or past `half_offset` → the op record that resolved each.
    resolved: BTreeMap<u64, u64>,
    /// Offsets last persisted (half, op), so an idle round writes nothing.
    persisted: Option<(u64, u64)>,
}

impl Progress {
    /// The op offset safe to persist: every op before it names a half before
    /// `half_offset`, so a restart that reads ops from there misses nothing it needs.
    fn op_offset(&self) -> u64 {
        self.resolved
            .values()
            .min()
            .copied()
            .unwrap_or(self.op_next)
            .min(self.op_next)
    }

    /// Reads op records up to the op queue's end (or until `MAX_RESOLVED` are held).
    fn read_ops(&mut self, store: &MessageStore) {
        while self.resolved.len() < MAX_RESOLVED {
            let got = store.get_messages(
                TRANS_OP_HALF_TOPIC,
                0,
                self.op_next,
                READ_BATCH,
                READ_BYTES,
                None,
            );
            if got.messages.is_empty() {
                if got.next_offset > self.op_next {
                    // Removed by retention: nothing to read there.
                    self.op_next = got.next_offset;
                    continue;
                }
                return;
            }
            for raw in got.messages {
                let op = match StoredMessage::decode(raw) {
                    Ok(op) => op,
                    Err(e) => {
                        tracing::warn!(offset = self.op_next, error = %e, "skipping an unreadable transaction op record");
                        self.op_next += 1;
                        continue;
                    }
                };
                self.op_next = op.queue_offset + 1;
                if property(&op.properties, PROPERTY_TAGS) != Some(OP_REMOVE_TAG) {
                    continue;
                }
                let half = std::str::from_utf8(&op.body)
                    .ok()
                    .and_then(|b| b.trim().parse::<u64>().ok());
                match half {
                    Some(h) if h >= self.half_offset => {
                        self.resolved.entry(h).or_insert(op.queue_offset);
                    }
                    Some(_) => {}
                    None => {
                        tracing::warn!(
                            op = op.queue_offset,
                            "transaction op record without a half offset; ignored"
                        )
                    }
                }
            }
        }
    }
}

/// The check-back actor (see the module doc).
pub struct TransactionCheck {
    broker: WeakAddr<Broker>,
    group: Addr<ConsumerGroup>,
    settings: CheckSettings,
    /// `None` while a round has it.
    progress: Option<Progress>,
}

impl TransactionCheck {
    /// A check-back for the broker at `broker`, keeping its progress in `group` (the
    /// broker's actor of [`TRANSACTION_CHECK_GROUP`]).
    pub fn new(
        broker: WeakAddr<Broker>,
        group: Addr<ConsumerGroup>,
        settings: CheckSettings,
    ) -> Self {
        TransactionCheck {
            broker,
            group,
            settings,
            progress: Some(Progress::default()),
        }
    }

    fn start_round(&mut self, ctx: &mut Context<Self>) {
        // A round still running (a slow store) is not overlapped; this tick is skipped.
        let Some(progress) = self.progress.take() else {
            return;
        };
        let Some(broker) = self.broker.upgrade() else {
            self.progress = Some(progress);
            ctx.stop();
            return;
        };
        let (group, settings) = (self.group.clone(), self.settings);
        let round = async move {
            let mut progress = progress;
            round(&mut progress, &broker, &group, settings).await;
            progress
        };
        ctx.spawn(round.into_actor(self).map(|progress, act, _| {
            act.progress = Some(progress);
        }));
    }
}

/// The committed offset of `topic` queue 0 in the check group, `None` when unknown (the
/// group's file cannot be read: the round waits, rather than starting from scratch).
async fn load_offset(group: &Addr<ConsumerGroup>, topic: &str) -> Option<Option<i64>> {
    match group
        .send(QueryOffset {
            topic: topic.to_owned(),
            queue_id: 0,
        })
        .await
    {
        Ok(Ok(answer)) => Some(answer.offset),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "transaction check progress unreadable; checking later");
            None
        }
        Err(_) => None,
    }
}

async fn persist(group: &Addr<ConsumerGroup>, topic: &str, offset: u64) -> bool {
    let commit = CommitOffset {
        topic: topic.to_owned(),
        queue_id: 0,
        offset: offset as i64,
        keep_larger: false,
    };
    match group.send(commit).await {
        Ok(Ok(())) => true,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "transaction check progress not saved; retried next round");
            false
        }
        Err(_) => false,
    }
}

/// One round (see the module doc).
async fn round(
    progress: &mut Progress,
    broker: &Addr<Broker>,
    group: &Addr<ConsumerGroup>,
    settings: CheckSettings,
) {
    let Ok(Some(store)) = broker.send(CurrentStore).await else {
        return;
    };
    if !progress.loaded {
        let (Some(half), Some(op)) = (
            load_offset(group, TRANS_HALF_TOPIC).await,
            load_offset(group, TRANS_OP_HALF_TOPIC).await,
        ) else {
            return;
        };
        progress.half_offset = half.unwrap_or(0).max(0) as u64;
        progress.op_next = op.unwrap_or(0).max(0) as u64;
        progress.persisted = Some((progress.half_offset, progress.op_next));
        progress.loaded = true;
    }
    progress.read_ops(&store);
    let mut checked = 0;
    'halves: while checked < MAX_CHECKS_PER_ROUND {
        let got = store.get_messages(
            TRANS_HALF_TOPIC,
            0,
            progress.half_offset,
            READ_BATCH,
            READ_BYTES,
            None,
        );
        if got.messages.is_empty() {
            if got.next_offset > progress.half_offset {
                progress.half_offset = got.next_offset;
                continue;
            }
            break;
        }
        for raw in got.messages {
            let half = match StoredMessage::decode(raw) {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(offset = progress.half_offset, error = %e, "skipping an unreadable half message");
                    progress.half_offset += 1;
                    continue;
                }
            };
            let q = half.queue_offset;
            if progress.resolved.remove(&q).is_none() {
                if now_ms().saturating_sub(half.store_timestamp)
                    < settings.timeout.as_millis() as i64
                {
                    break 'halves;
                }
                // Ops stored since the round began may resolve it: look before asking.
                progress.read_ops(&store);
                if progress.resolved.remove(&q).is_none() {
                    if let Err(e) = check_one(&half, broker, &store, settings).await {
                        tracing::warn!(half = q, error = %e, "transaction check stopped; retried next round");
                        break 'halves;
                    }
                    checked += 1;
                }
            }
            progress.half_offset = q + 1;
        }
    }
    // Resolutions of halves now passed are no longer needed.
    let passed = progress.half_offset;
    progress.resolved = progress.resolved.split_off(&passed);
    let now = (progress.half_offset, progress.op_offset());
    if progress.persisted != Some(now)
        && persist(group, TRANS_HALF_TOPIC, now.0).await
        && persist(group, TRANS_OP_HALF_TOPIC, now.1).await
    {
        progress.persisted = Some(now);
    }
}

/// Checks one unresolved half: gives it up past `check_max`, else stores it again with its
/// count plus one and asks a producer of its group about that record.
async fn check_one(
    half: &StoredMessage,
    broker: &Addr<Broker>,
    store: &Arc<MessageStore>,
    settings: CheckSettings,
) -> Result<(), CheckError> {
    let times = property(&half.properties, PROPERTY_TRANSACTION_CHECK_TIMES)
        .and_then(|t| t.parse::<u32>().ok())
        .unwrap_or(0);
    let group = property(&half.properties, PROPERTY_PRODUCER_GROUP)
        .unwrap_or("")
        .to_owned();
    let uniq = property(&half.properties, PROPERTY_UNIQ_KEY).map(str::to_owned);
    let real_topic = property(&half.properties, PROPERTY_REAL_TOPIC).map(str::to_owned);
    if times >= settings.check_max {
        tracing::warn!(
            msg_id = ?uniq, group = %group, topic = ?real_topic, checks = times,
            "transaction never resolved after {times} check-backs: given up, moved to {TRANS_CHECK_MAX_TIME_TOPIC}"
        );
        let moved = crate::storage::MessageToStore::rebuilt_from(
            half,
            TRANS_CHECK_MAX_TIME_TOPIC,
            0,
            &[],
            &[],
        );
        store_one(broker, moved)
            .await
            .map_err(CheckError::NotStored)?;
        return Ok(());
    }
    let next = (times + 1).to_string();
    let again = crate::storage::MessageToStore::rebuilt_from(
        half,
        TRANS_HALF_TOPIC,
        0,
        &[PROPERTY_TRANSACTION_CHECK_TIMES],
        &[(PROPERTY_TRANSACTION_CHECK_TIMES, next.as_str())],
    );
    let stored = store_one(broker, again)
        .await
        .map_err(CheckError::NotStored)?;
    let read_back = |reason: String| CheckError::ReadBack {
        msg_id: stored.msg_id.clone(),
        reason,
    };
    let (_, offset) = decode_offset_msg_id(&stored.msg_id).map_err(|e| read_back(e.to_string()))?;
    let raw: Bytes = store
        .read_raw(offset)
        .map_err(|e| read_back(e.to_string()))?;
    let transaction_id = property(&half.properties, PROPERTY_TRANSACTION_ID)
        .map(str::to_owned)
        .or_else(|| uniq.clone());
    let header = CheckTransactionStateRequestHeader {
        tran_state_table_offset: stored.queue_offset,
        commit_log_offset: offset as i64,
        msg_id: uniq.clone(),
        transaction_id,
        offset_msg_id: Some(stored.msg_id.clone()),
        topic: real_topic,
    };
    let frame = Frame::oneway(RequestCode::CheckTransactionState, 0, &header, raw)
        .map_err(|e| read_back(e.to_string()))?;
    let asked = broker
        .send(AskProducer {
            group: group.clone(),
            frame,
        })
        .await
        .unwrap_or(false);
    if asked {
        tracing::debug!(msg_id = ?uniq, group = %group, check = times + 1, "asked a producer to check a transaction");
    } else {
        // The record just stored is checked again after transaction_timeout.
        tracing::debug!(msg_id = ?uniq, group = %group, "no live producer of the group to check a transaction with; asking again later");
    }
    Ok(())
}

impl Actor for TransactionCheck {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.settings.interval, |act, ctx| act.start_round(ctx));
    }
}

/// Stops the check-back (the broker shuts down).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopChecking;

impl Handler<StopChecking> for TransactionCheck {
    type Result = ();
    fn handle(&mut self, _: StopChecking, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
