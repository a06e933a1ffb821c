//! Transactional messages on the broker: the half message a producer sends, and
//! END_TRANSACTION, which commits it (the real message is stored, then an op record) or
//! rolls it back (an op record only). The check-back of halves left unresolved is the
//! `TransactionCheck` actor's (`crate::actors::server::transaction_check`); this module
//! answers what it asks of the broker ([`CurrentStore`], [`AskProducer`]).
//!
//! A half lives in `RMQ_SYS_TRANS_HALF_TOPIC` queue 0 with its real topic and queue in
//! `REAL_TOPIC`/`REAL_QID`: no consumer reads that topic (pulls of system topics are
//! refused), so it stays invisible until committed. An op record lives in
//! `RMQ_SYS_TRANS_OP_HALF_TOPIC` queue 0, tag `d`, its body the half's queue offset in
//! decimal (RocketMQ's layout), and marks the half resolved.
//!
//! It must never store anything but through the send path (`StoreInternal`), never store
//! an op record before the real message it resolves is stored (a crash between the two then
//! costs at worst a second commit after a check-back, never a lost commit), and never act on
//! a slave.

use super::requests::response;
use super::*;
use crate::common::names::{TRANS_HALF_TOPIC, TRANS_OP_HALF_TOPIC};
use crate::common::properties::{
    property, PROPERTY_PRODUCER_GROUP, PROPERTY_REAL_QUEUE_ID, PROPERTY_REAL_TOPIC,
    PROPERTY_TRANSACTION_CHECK_TIMES, PROPERTY_TRANSACTION_PREPARED,
};
use crate::protocol::message::{
    EndTransactionRequestHeader, TRANSACTION_COMMIT_TYPE, TRANSACTION_NOT_TYPE,
    TRANSACTION_ROLLBACK_TYPE,
};
use crate::storage::record::PROPERTY_TAGS;
use crate::storage::StoredMessage;

/// Sys-flag bits holding a message's transaction type.
const SYS_FLAG_TRANSACTION_MASK: i32 = 0xC;
/// Sys-flag transaction type of a half (prepared) message.
const SYS_FLAG_TRANSACTION_PREPARED: i32 = 0x4;
/// Tag of an op record (RocketMQ's `REMOVETAG`).
pub const OP_REMOVE_TAG: &str = "d";

/// The broker's current store, for the check-back's reads (a reopen replaces it); `None`
/// while the broker shuts down or is a slave, when nothing is to be checked.
#[derive(Message)]
#[rtype(result = "Option<Arc<MessageStore>>")]
pub struct CurrentStore;

/// Sends `frame` (a CHECK_TRANSACTION_STATE) to one live connection of a producer group;
/// answers whether there was one.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct AskProducer {
    /// The producer group (the half's `PGROUP`).
    pub group: String,
    /// The one-way frame to send.
    pub frame: Frame,
}

/// Whether a message's properties mark it a transactional half (`TRAN_MSG=true`). The
/// substring test first: this runs on every send, and almost none are transactional.
fn is_prepared(properties: &str) -> bool {
    properties.contains(PROPERTY_TRANSACTION_PREPARED)
        && property(properties, PROPERTY_TRANSACTION_PREPARED) == Some("true")
}

/// Rewrites a transactional send into its half message, in place. Refuses one inside a
/// batch (RocketMQ does too: a batch has one answer, a transaction needs one per message).
pub(super) fn make_halves(msgs: &mut [MessageToStore], batch: bool) -> Result<(), String> {
    if !msgs.iter().any(|m| is_prepared(&m.properties)) {
        return Ok(());
    }
    if batch {
        return Err(
            "a transactional message (TRAN_MSG=true) cannot be sent in a batch: send each \
             with a transaction producer"
                .to_owned(),
        );
    }
    for m in msgs.iter_mut() {
        m.park(TRANS_HALF_TOPIC, 0);
        m.sys_flag = (m.sys_flag & !SYS_FLAG_TRANSACTION_MASK) | SYS_FLAG_TRANSACTION_PREPARED;
    }
    Ok(())
}

/// The op record marking the half at `half_queue_offset` resolved.
fn op_record(half_queue_offset: u64, born_host: std::net::SocketAddr) -> MessageToStore {
    let mut op = MessageToStore::new(
        TRANS_OP_HALF_TOPIC,
        0,
        Bytes::from(half_queue_offset.to_string()),
    )
    .with_properties([(PROPERTY_TAGS, OP_REMOVE_TAG)]);
    op.born_host = born_host;
    op.born_timestamp = crate::common::clock::now_ms();
    op
}

/// The real message a committed half becomes: its topic and queue, the commit type, the
/// half's offset as its prepared-transaction offset.
fn committed(half: &StoredMessage) -> Result<MessageToStore, String> {
    let topic = property(&half.properties, PROPERTY_REAL_TOPIC)
        .filter(|t| !t.is_empty())
        .ok_or("the half message has no REAL_TOPIC property")?
        .to_owned();
    let queue_id = property(&half.properties, PROPERTY_REAL_QUEUE_ID)
        .and_then(|q| q.parse::<u32>().ok())
        .ok_or("the half message has no valid REAL_QID property")?;
    let mut real = MessageToStore::rebuilt_from(
        half,
        &topic,
        queue_id,
        &[
            PROPERTY_TRANSACTION_PREPARED,
            PROPERTY_REAL_TOPIC,
            PROPERTY_REAL_QUEUE_ID,
            PROPERTY_TRANSACTION_CHECK_TIMES,
        ],
        &[],
    );
    real.sys_flag = (real.sys_flag & !SYS_FLAG_TRANSACTION_MASK) | TRANSACTION_COMMIT_TYPE;
    real.prepared_transaction_offset = half.physical_offset as i64;
    Ok(real)
}

/// Stores one message through the send path; the error says why it was not stored.
pub async fn store_one(
    broker: &Addr<Broker>,
    msg: MessageToStore,
) -> Result<StoredInternally, String> {
    broker
        .send(StoreInternal(vec![msg]))
        .await
        .map_err(|_| "the broker stopped".to_owned())?
        .into_iter()
        .next()
        .unwrap_or_else(|| Err("the broker gave no answer".to_owned()))
}

impl Broker {
    /// END_TRANSACTION: checks the half named (it is one, of this producer group, at this
    /// queue offset), then commits or rolls it back. An "unknown" end does nothing: the
    /// check-back asks again.
    pub(super) fn end_transaction(
        &mut self,
        inb: Inbound,
        h: EndTransactionRequestHeader,
        ctx: &mut Context<Self>,
    ) {
        if !self.config.is_master() {
            return inb.fail(
                ResponseCode::ServiceNotAvailable,
                format!(
                    "broker {} id {} is a slave: END_TRANSACTION goes to the master",
                    self.config.broker_name, self.config.broker_id
                ),
            );
        }
        let commit = match h.commit_or_rollback {
            TRANSACTION_COMMIT_TYPE => true,
            TRANSACTION_ROLLBACK_TYPE => false,
            TRANSACTION_NOT_TYPE => {
                tracing::debug!(msg_id = %h.msg_id, group = %h.producer_group, from_check = h.from_transaction_check, "transaction state unknown; it will be checked back");
                return response(&inb, ResponseCode::Success, &NoHeader {}, Bytes::new());
            }
            other => {
                let why = format!(
                    "commit_or_rollback {other}: expected 0 unknown, 8 commit, 12 rollback"
                );
                return inb.fail(ResponseCode::InvalidParameter, why);
            }
        };
        let half = match self.check_half(&h) {
            Ok(half) => half,
            Err(why) => {
                tracing::warn!(msg_id = %h.msg_id, group = %h.producer_group, offset = h.commit_log_offset, peer = %inb.peer, "END_TRANSACTION refused: {why}");
                return inb.fail(ResponseCode::SystemError, why);
            }
        };
        let op = op_record(half.queue_offset, inb.peer);
        let mut to_store = Vec::with_capacity(2);
        if commit {
            match committed(&half) {
                Ok(mut real) => {
                    // A delayed transactional message waits from its commit on.
                    if let Some(level) =
                        crate::actors::server::schedule_delivery::delay_level(&real.properties)
                    {
                        crate::actors::server::schedule_delivery::to_schedule(
                            &mut real,
                            level,
                            self.delay_level_count,
                        );
                    }
                    to_store.push(real)
                }
                Err(why) => {
                    tracing::warn!(msg_id = %h.msg_id, offset = h.commit_log_offset, "cannot commit: {why}");
                    return inb.fail(ResponseCode::SystemError, why);
                }
            }
        }
        to_store.push(op);
        tracing::debug!(msg_id = %h.msg_id, group = %h.producer_group, commit, from_check = h.from_transaction_check, "ending transaction");
        let broker = ctx.address();
        // One at a time: the op record only once the real message is stored.
        actix::spawn(async move {
            for msg in to_store {
                if let Err(why) = store_one(&broker, msg).await {
                    tracing::warn!(msg_id = %h.msg_id, commit, "END_TRANSACTION not applied ({why}); the half will be checked back");
                    return inb.fail(ResponseCode::SystemError, why);
                }
            }
            response(&inb, ResponseCode::Success, &NoHeader {}, Bytes::new());
        });
    }

    /// The half message an END_TRANSACTION names, if it is one and the request matches it.
    fn check_half(&self, h: &EndTransactionRequestHeader) -> Result<StoredMessage, String> {
        let offset = u64::try_from(h.commit_log_offset)
            .map_err(|_| format!("commit-log offset {} is negative", h.commit_log_offset))?;
        let half = self
            .store
            .read_by_physical(offset)
            .map_err(|e| format!("no half message at commit-log offset {offset}: {e}"))?;
        if half.topic != TRANS_HALF_TOPIC {
            return Err(format!(
                "the message at commit-log offset {offset} is in topic '{}', not a half message",
                half.topic
            ));
        }
        let group = property(&half.properties, PROPERTY_PRODUCER_GROUP).unwrap_or("");
        if group != h.producer_group {
            return Err(format!(
                "the half message at commit-log offset {offset} belongs to producer group '{group}', not '{}'",
                h.producer_group
            ));
        }
        if half.queue_offset as i64 != h.tran_state_table_offset {
            return Err(format!(
                "the half message at commit-log offset {offset} has queue offset {}, not {}",
                half.queue_offset, h.tran_state_table_offset
            ));
        }
        Ok(half)
    }
}

impl Handler<CurrentStore> for Broker {
    type Result = Option<Arc<MessageStore>>;
    fn handle(&mut self, _: CurrentStore, _: &mut Context<Self>) -> Self::Result {
        (!self.shutting_down && self.config.is_master()).then(|| Arc::clone(&self.store))
    }
}

impl Handler<AskProducer> for Broker {
    type Result = bool;
    fn handle(&mut self, msg: AskProducer, _: &mut Context<Self>) -> bool {
        match self.producers.pick(&msg.group) {
            Some(conn) => {
                conn.do_send(Outbound(msg.frame));
                true
            }
            None => false,
        }
    }
}
