//! TransactionProducer actor: sends transactional messages for one producer group
//! (RocketMQ's `TransactionMQProducer`).
//!
//! A send in a transaction stores the message on a broker as a *half*, invisible to
//! consumers (`TRAN_MSG=true`, `PGROUP=<group>`: a synchronous send with the producer's
//! usual retries), then runs the application's [`TransactionListener::execute_local_transaction`]
//! and tells the broker the outcome with a one-way END_TRANSACTION: commit (the message is
//! delivered), rollback (it never is) or unknown (the broker asks later). When a half stays
//! unresolved past the broker's `transaction_timeout` (this producer died, or its
//! END_TRANSACTION was lost), the broker sends CHECK_TRANSACTION_STATE to a live producer of
//! the group; the [`ClientInstance`] routes it here, [`TransactionListener::check_local_transaction`]
//! answers, and the answer goes back as END_TRANSACTION marked `from_transaction_check`.
//!
//! Owns the listener and a [`Producer`] of the group (which heartbeats announce, so the
//! brokers know whom to ask). Accepts [`SendInTransaction`], [`CheckTransactionState`] (from
//! the client instance) and a shutdown. No timers. Not supervised: it holds nothing a
//! restart would mend. It never blocks on the network in a handler: sends run in futures;
//! the listener's methods, however, run on this actor's thread (see [`TransactionListener`]).

use std::any::Any;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;

use crate::actors::client::client_instance::{
    CheckTransactionState, ClientInstance, GetLink, GetRoute, RegisterTransactionChecker,
};
use crate::actors::client::producer::{Producer, ProducerConfig};
use crate::actors::remote_link;
use crate::client::{ClientError, Message, MessageExt, SendResult, SendStatus};
use crate::common::properties::{
    property, PROPERTY_PRODUCER_GROUP, PROPERTY_REAL_QUEUE_ID, PROPERTY_REAL_TOPIC,
    PROPERTY_TRANSACTION_PREPARED,
};
use crate::protocol::message::{
    EndTransactionRequestHeader, TRANSACTION_COMMIT_TYPE, TRANSACTION_NOT_TYPE,
    TRANSACTION_ROLLBACK_TYPE,
};
use crate::protocol::{Frame, MessageQueue, RequestCode};
use crate::storage::message_id::decode_offset_msg_id;

/// What the application's local transaction came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocalTransactionState {
    /// Done: the message is delivered.
    CommitMessage,
    /// Undone: the message is dropped, never delivered.
    RollbackMessage,
    /// Not known yet: the broker asks again ([`TransactionListener::check_local_transaction`])
    /// after its `transaction_timeout`, up to `transaction_check_max` times.
    Unknown,
}

impl LocalTransactionState {
    fn wire(self) -> i32 {
        match self {
            LocalTransactionState::CommitMessage => TRANSACTION_COMMIT_TYPE,
            LocalTransactionState::RollbackMessage => TRANSACTION_ROLLBACK_TYPE,
            LocalTransactionState::Unknown => TRANSACTION_NOT_TYPE,
        }
    }
}

/// The application's side of a transaction: runs it, and says later how it ended.
///
/// Used as `Arc<dyn TransactionListener>`, so one listener can serve several producers and
/// hold shared state (a database pool, a map of outcomes). Both methods are synchronous and
/// run on the actix thread of the [`TransactionProducer`]: keep them short, or record the
/// work to do and return [`LocalTransactionState::Unknown`], letting the check-back ask for
/// the outcome later. They must be `Send + Sync` because the producer may be driven from
/// other threads' actors.
pub trait TransactionListener: Send + Sync {
    /// Runs the local transaction bound to `msg`, whose half message the broker has
    /// stored; `arg` is what was passed to [`TransactionProducer::send_in_transaction`]
    /// (downcast it with `arg.downcast_ref::<T>()`).
    fn execute_local_transaction(
        &self,
        msg: &Message,
        arg: &(dyn Any + Send),
    ) -> LocalTransactionState;

    /// Says how the transaction of a half message ended, when the broker asks (its
    /// producer did not say, or its answer was lost). `msg` is the half as stored: its
    /// topic and queue are the real ones, [`MessageExt::msg_id`] is the transaction id.
    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState;
}

/// The outcome of [`TransactionProducer::send_in_transaction`].
#[derive(Debug, Clone)]
pub struct TransactionSendResult {
    /// The send of the half message.
    pub send_result: SendResult,
    /// What the local transaction came to (told to the broker).
    pub local_state: LocalTransactionState,
    /// The transaction id (the message's unique id).
    pub transaction_id: String,
}

/// Sends a message in a transaction (see [`TransactionProducer::send_in_transaction`]).
#[derive(Message)]
#[rtype(result = "Result<TransactionSendResult, ClientError>")]
pub struct SendInTransaction {
    /// The message.
    pub msg: Message,
    /// Handed to the listener's `execute_local_transaction`.
    pub arg: Box<dyn Any + Send>,
}

/// Stops the producer (see [`TransactionProducer::shutdown`]).
#[derive(Message)]
#[rtype(result = "()")]
struct Shutdown;

/// A producer of transactional messages for one group; an actor (see the module doc).
///
/// ```no_run
/// use std::any::Any;
/// use std::sync::Arc;
///
/// use actimq::{
///     ClientConfig, ClientInstance, LocalTransactionState, Message as MqMessage, MessageExt,
///     ProducerConfig, TransactionListener, TransactionProducer,
/// };
///
/// struct Orders;
/// impl TransactionListener for Orders {
///     fn execute_local_transaction(&self, msg: &MqMessage, _arg: &(dyn Any + Send)) -> LocalTransactionState {
///         // Write the order to the database here.
///         LocalTransactionState::CommitMessage
///     }
///     fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
///         // Look the order up by msg.msg_id() or its keys.
///         LocalTransactionState::CommitMessage
///     }
/// }
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # actimq::actix::System::new().block_on(async {
/// let client = ClientInstance::start(ClientConfig::new("127.0.0.1:9876"))?;
/// let producer = TransactionProducer::start(client.clone(), ProducerConfig::new("orders-tx"), Arc::new(Orders));
/// let sent = TransactionProducer::send_in_transaction(&producer, MqMessage::new("Orders", "order 7"), ()).await?;
/// println!("{} ended {:?}", sent.transaction_id, sent.local_state);
/// TransactionProducer::shutdown(&producer).await;
/// ClientInstance::shutdown(&client).await;
/// # Ok(())
/// # })
/// # }
/// ```
pub struct TransactionProducer {
    producer: Producer,
    client: Addr<ClientInstance>,
    listener: Arc<dyn TransactionListener>,
    group: String,
}

impl TransactionProducer {
    /// Starts a transaction producer for `config`'s group on `client`. From its first send
    /// on, the brokers it sent to may ask it about any half message of the group.
    pub fn start(
        client: Addr<ClientInstance>,
        config: ProducerConfig,
        listener: Arc<dyn TransactionListener>,
    ) -> Addr<TransactionProducer> {
        let group = config.producer_group.clone();
        let producer = Producer::start(client.clone(), config);
        let actor = TransactionProducer {
            producer,
            client: client.clone(),
            listener,
            group: group.clone(),
        }
        .start();
        client.do_send(RegisterTransactionChecker {
            group,
            checker: actor.clone().recipient(),
        });
        actor
    }

    /// Sends `msg` as a half message, runs the listener's `execute_local_transaction` with
    /// `arg`, and tells the broker its outcome. Fails when the half could not be stored
    /// (the listener is then not run). A half stored without `SEND_OK` (a slave did not
    /// confirm) is rolled back without running the listener, as RocketMQ does.
    pub async fn send_in_transaction(
        producer: &Addr<TransactionProducer>,
        msg: Message,
        arg: impl Any + Send,
    ) -> Result<TransactionSendResult, ClientError> {
        producer
            .send(SendInTransaction {
                msg,
                arg: Box::new(arg),
            })
            .await
            .map_err(|_| ClientError::Shutdown)?
    }

    /// Stops the producer: sends under way finish, the group leaves the brokers (no check
    /// comes here any more), and the actor stops. The client instance stays up.
    pub async fn shutdown(producer: &Addr<TransactionProducer>) {
        let _ = producer.send(Shutdown).await;
    }
}

impl Actor for TransactionProducer {
    type Context = Context<Self>;
}

/// Where the half of `sent` is: its broker's address (from the route, else the store host
/// in the offset id) and commit-log offset.
async fn half_location(
    client: &Addr<ClientInstance>,
    sent: &SendResult,
) -> Result<(String, u64), ClientError> {
    let (store_host, offset) = decode_offset_msg_id(&sent.offset_msg_id).map_err(|e| {
        ClientError::MessageIllegal(format!("the broker answered an unusable message id: {e}"))
    })?;
    let route = client
        .send(GetRoute {
            topic: sent.message_queue.topic.clone(),
            refresh: false,
        })
        .await
        .map_err(|_| ClientError::Shutdown)?;
    let addr = route
        .ok()
        .and_then(|r| {
            r.broker_datas
                .iter()
                .find(|b| b.broker_name == sent.message_queue.broker_name)
                .and_then(|b| b.master_addr())
                .map(str::to_owned)
        })
        .unwrap_or_else(|| store_host.to_string());
    Ok((addr, offset))
}

/// Sends END_TRANSACTION (one-way) to `broker`.
async fn end_transaction(
    client: &Addr<ClientInstance>,
    broker: &str,
    header: &EndTransactionRequestHeader,
) -> Result<(), ClientError> {
    let link = client
        .send(GetLink(broker.to_owned()))
        .await
        .map_err(|_| ClientError::Shutdown)?;
    let frame = Frame::oneway(RequestCode::EndTransaction, 0, header, Bytes::new())
        .map_err(|e| ClientError::MessageIllegal(e.to_string()))?;
    match link.send(remote_link::Send(frame)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(crate::actors::client::from_link(e)),
        Err(_) => Err(ClientError::Shutdown),
    }
}

impl Handler<SendInTransaction> for TransactionProducer {
    type Result = ResponseFuture<Result<TransactionSendResult, ClientError>>;

    fn handle(&mut self, req: SendInTransaction, _: &mut Context<Self>) -> Self::Result {
        let (producer, client, listener, group) = (
            self.producer.clone(),
            self.client.clone(),
            Arc::clone(&self.listener),
            self.group.clone(),
        );
        Box::pin(async move {
            let SendInTransaction { msg, arg } = req;
            let half = msg
                .clone()
                .with_property(PROPERTY_TRANSACTION_PREPARED, "true")
                .with_property(PROPERTY_PRODUCER_GROUP, group.clone());
            let sent = producer.send(half).await?;
            let local_state = if sent.status == SendStatus::SendOk {
                listener.execute_local_transaction(&msg, arg.as_ref())
            } else {
                LocalTransactionState::RollbackMessage
            };
            let header = EndTransactionRequestHeader {
                producer_group: group,
                tran_state_table_offset: sent.queue_offset as i64,
                commit_log_offset: 0,
                commit_or_rollback: local_state.wire(),
                from_transaction_check: false,
                msg_id: sent.unique_id.clone(),
                transaction_id: Some(sent.unique_id.clone()),
                topic: Some(msg.topic.clone()),
            };
            // The outcome is told once; if that fails the broker asks again later, so the
            // send itself stands.
            match half_location(&client, &sent).await {
                Ok((broker, offset)) => {
                    let header = EndTransactionRequestHeader {
                        commit_log_offset: offset as i64,
                        ..header
                    };
                    if let Err(e) = end_transaction(&client, &broker, &header).await {
                        tracing::warn!(broker = %broker, msg_id = %sent.unique_id, error = %e, "END_TRANSACTION not sent; the broker will check the transaction back");
                    }
                }
                Err(e) => {
                    tracing::warn!(msg_id = %sent.unique_id, error = %e, "END_TRANSACTION not sent; the broker will check the transaction back")
                }
            }
            Ok(TransactionSendResult {
                transaction_id: sent.unique_id.clone(),
                send_result: sent,
                local_state,
            })
        })
    }
}

impl Handler<CheckTransactionState> for TransactionProducer {
    type Result = ();

    fn handle(&mut self, check: CheckTransactionState, _: &mut Context<Self>) {
        let CheckTransactionState {
            broker_addr,
            header,
            mut half,
        } = check;
        // The application sees the message as it was sent: its real topic and queue.
        let real_topic = property(&half.properties, PROPERTY_REAL_TOPIC).map(str::to_owned);
        let real_queue =
            property(&half.properties, PROPERTY_REAL_QUEUE_ID).and_then(|q| q.parse::<u32>().ok());
        if let Some(t) = real_topic {
            half.topic = t;
        }
        if let Some(q) = real_queue {
            half.queue_id = q;
        }
        let msg = MessageExt {
            queue: MessageQueue {
                topic: half.topic.clone(),
                // The header does not name the broker; its address stands in.
                broker_name: broker_addr.clone(),
                queue_id: half.queue_id as i32,
            },
            queue_offset: header.tran_state_table_offset.max(0) as u64,
            reconsume_times: half.reconsume_times.max(0) as u32,
            stored: half,
        };
        let state = self.listener.check_local_transaction(&msg);
        let msg_id = header
            .msg_id
            .clone()
            .or_else(|| msg.unique_id().map(str::to_owned))
            .unwrap_or_default();
        let end = EndTransactionRequestHeader {
            producer_group: self.group.clone(),
            tran_state_table_offset: header.tran_state_table_offset,
            commit_log_offset: header.commit_log_offset,
            commit_or_rollback: state.wire(),
            from_transaction_check: true,
            msg_id,
            transaction_id: header.transaction_id.clone(),
            topic: Some(msg.topic().to_owned()),
        };
        tracing::debug!(broker = %broker_addr, msg_id = %end.msg_id, ?state, "answering a transaction check");
        let client = self.client.clone();
        actix::spawn(async move {
            if let Err(e) = end_transaction(&client, &broker_addr, &end).await {
                tracing::warn!(broker = %broker_addr, msg_id = %end.msg_id, error = %e, "answer to a transaction check not sent; the broker will ask again");
            }
        });
    }
}

impl Handler<Shutdown> for TransactionProducer {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        let producer = self.producer.clone();
        Box::pin(
            async move { producer.shutdown().await }
                .into_actor(self)
                .map(|_, _, ctx| ctx.stop()),
        )
    }
}
