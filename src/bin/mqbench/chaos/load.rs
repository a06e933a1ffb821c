//! The traffic of `mqbench chaos` and its ledger: producers sending numbered messages at a
//! steady rate (synchronous, asynchronous and ordered by key), recording every answer; and
//! two consumer groups (concurrent and orderly, two members each) recording every delivery
//! in the order it happened. It records; judging is `audit`'s. It never retries a send on
//! its own: the client's retries are part of what is tested.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actimq::actix::Addr;
use actimq::{
    ClientConfig, ClientError, ClientInstance, ConsumeFromWhere, ConsumeResult, Message,
    MessageListener, Producer, ProducerConfig, PushConsumer, PushConsumerConfig, SendResult,
    SendStatus,
};

/// The topic every run sends to.
pub const TOPIC: &str = "ChaosTest";
/// The concurrent consumer group.
pub const CONCURRENT_GROUP: &str = "chaos_concurrent";
/// The orderly consumer group.
pub const ORDERLY_GROUP: &str = "chaos_orderly";
/// The group started after the load, reading every queue from its first message: what the
/// stores hold at the end, whatever the other groups saw on the way.
pub const VERIFY_GROUP: &str = "chaos_verify";
/// How many order keys the ordered sends cycle through.
pub const ORDER_KEYS: u64 = 16;
/// Asynchronous sends under way at most; a tick finding more skips its send.
const MAX_ASYNC_IN_FLIGHT: u64 = 2_000;

/// One acknowledged message, in the order acknowledgements came.
#[derive(Clone, Copy, Debug)]
pub struct Ack {
    pub seq: u64,
    /// The order key of an ordered send.
    pub order_key: Option<u64>,
}

/// One delivery to a consumer, in the order deliveries happened in the group.
#[derive(Clone, Debug)]
pub struct Delivery {
    pub seq: u64,
    /// Where it was read: broker name and queue id, and the offset in that queue.
    pub broker_name: Arc<str>,
    pub queue_id: i32,
    pub queue_offset: u64,
    /// Since the run's start.
    pub at: Duration,
}

/// A group's deliveries, in order.
pub type DeliveryLog = Arc<Mutex<Vec<Delivery>>>;

/// What the producers saw.
#[derive(Default)]
pub struct SendLedger {
    pub sent: u64,
    pub acks: Vec<Ack>,
    /// Answers other than `SEND_OK` (stored, not acknowledged), by status.
    pub not_ok: BTreeMap<String, u64>,
    /// Failed sends, by error kind.
    pub errors: BTreeMap<String, u64>,
    /// Ordered sends refused at once because their queue's master was away.
    pub ordered_refused: u64,
}

/// Everything a run recorded, shared between the tasks and the listeners.
#[derive(Clone)]
pub struct Ledger {
    pub start: Instant,
    pub sends: Arc<Mutex<SendLedger>>,
    pub concurrent: DeliveryLog,
    pub orderly: DeliveryLog,
    pub verify: DeliveryLog,
}

impl Ledger {
    pub fn new(start: Instant) -> Self {
        Ledger {
            start,
            sends: Arc::default(),
            concurrent: Arc::default(),
            orderly: Arc::default(),
            verify: Arc::default(),
        }
    }

    fn answer(&self, seq: u64, order_key: Option<u64>, result: Result<SendResult, ClientError>) {
        let Ok(mut l) = self.sends.lock() else { return };
        match result {
            Ok(r) if r.status == SendStatus::SendOk => l.acks.push(Ack { seq, order_key }),
            Ok(r) => *l.not_ok.entry(r.status.to_string()).or_default() += 1,
            Err(ClientError::BrokerUnavailable { .. }) if order_key.is_some() => {
                l.ordered_refused += 1
            }
            Err(e) => *l.errors.entry(error_kind(&e)).or_default() += 1,
        }
    }
}

/// A short name for an error (its variant).
fn error_kind(e: &ClientError) -> String {
    let debug = format!("{e:?}");
    debug
        .split(|c: char| !c.is_alphanumeric())
        .next()
        .unwrap_or("Error")
        .to_owned()
}

/// A body: `chaos <seq> <order key or ->`, padded with dots to `size`.
fn body(seq: u64, order_key: Option<u64>, size: usize) -> Vec<u8> {
    let mut b = match order_key {
        Some(k) => format!("chaos {seq} {k}"),
        None => format!("chaos {seq} -"),
    }
    .into_bytes();
    if b.len() < size {
        b.resize(size, b'.');
    }
    b
}

/// The sequence number a body carries.
pub fn seq_of(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body.get(..body.len().min(64))?).ok()?;
    let mut words = text.split(' ');
    (words.next()? == "chaos").then_some(())?;
    words.next()?.parse().ok()
}

/// The producers' settings.
pub struct LoadSettings {
    pub namesrv_addr: String,
    /// Messages per second, over the three kinds of send together.
    pub rate: u64,
    pub size: usize,
}

/// Runs the producers until `stop` is set, then waits for the asynchronous sends under
/// way (each ends within the producer's send timeout).
pub async fn produce(
    settings: LoadSettings,
    ledger: Ledger,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let client = ClientInstance::start(client_config(&settings.namesrv_addr, "chaos-producer"))
        .map_err(|e| e.to_string())?;
    let producer = Producer::start(client.clone(), ProducerConfig::new("chaos_producer"));
    let next_seq = Arc::new(AtomicU64::new(0));
    let per_kind = (settings.rate / 3).max(1);
    let period = Duration::from_secs_f64(1.0 / per_kind as f64);
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for kind in 0..3u8 {
        let (producer, ledger, stop, next_seq, in_flight) = (
            producer.clone(),
            ledger.clone(),
            Arc::clone(&stop),
            Arc::clone(&next_seq),
            Arc::clone(&in_flight),
        );
        let size = settings.size;
        tasks.push(actix_rt::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut ordered_n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                if kind == 1 && in_flight.load(Ordering::Relaxed) >= MAX_ASYNC_IN_FLIGHT {
                    continue;
                }
                let seq = next_seq.fetch_add(1, Ordering::Relaxed);
                let order_key = (kind == 2).then(|| {
                    ordered_n += 1;
                    ordered_n % ORDER_KEYS
                });
                let msg = Message::new(TOPIC, body(seq, order_key, size))
                    .with_key(format!("chaos-{seq}"));
                if let Ok(mut l) = ledger.sends.lock() {
                    l.sent += 1;
                }
                match (kind, order_key) {
                    (0, _) => ledger.answer(seq, None, producer.send(msg).await),
                    (2, Some(k)) => ledger.answer(
                        seq,
                        Some(k),
                        producer.send_orderly(msg, format!("key-{k}")).await,
                    ),
                    _ => {
                        in_flight.fetch_add(1, Ordering::Relaxed);
                        let (ledger, in_flight) = (ledger.clone(), Arc::clone(&in_flight));
                        producer.send_async_with(msg, move |result| {
                            ledger.answer(seq, None, result);
                            in_flight.fetch_sub(1, Ordering::Relaxed);
                        });
                    }
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    // Waits for the asynchronous sends under way.
    producer.shutdown().await;
    ClientInstance::shutdown(&client).await;
    Ok(())
}

fn client_config(namesrv_addr: &str, instance: &str) -> ClientConfig {
    let mut c = ClientConfig::new(namesrv_addr);
    c.instance_name = instance.to_owned();
    c
}

/// The consumers: two members of each group, each on its own client (as two processes
/// would be).
pub struct Consumers {
    members: Vec<(Addr<ClientInstance>, PushConsumer)>,
}

impl Consumers {
    /// The concurrent and orderly groups, two members each.
    pub async fn start(namesrv_addr: &str, ledger: &Ledger) -> Result<Consumers, String> {
        Self::start_groups(
            namesrv_addr,
            ledger,
            &[
                (CONCURRENT_GROUP, false, &ledger.concurrent, 2),
                (ORDERLY_GROUP, true, &ledger.orderly, 2),
            ],
        )
        .await
    }

    /// The verifying group, one member.
    pub async fn start_verifier(namesrv_addr: &str, ledger: &Ledger) -> Result<Consumers, String> {
        Self::start_groups(
            namesrv_addr,
            ledger,
            &[(VERIFY_GROUP, false, &ledger.verify, 1)],
        )
        .await
    }

    async fn start_groups(
        namesrv_addr: &str,
        ledger: &Ledger,
        groups: &[(&str, bool, &DeliveryLog, usize)],
    ) -> Result<Consumers, String> {
        let mut members = Vec::new();
        for &(group, orderly, log, count) in groups {
            for member in 0..count {
                let client = ClientInstance::start(client_config(
                    namesrv_addr,
                    &format!("{group}-{member}"),
                ))
                .map_err(|e| e.to_string())?;
                let mut config = PushConsumerConfig::new(group).subscribe(TOPIC, "*");
                if orderly {
                    config = config.orderly();
                }
                config.consume_from_where = ConsumeFromWhere::FirstOffset;
                config.persist_consumer_offset_interval = Duration::from_secs(1);
                let (log, start) = (Arc::clone(log), ledger.start);
                config.consume_message_batch_max_size = 32;
                let listener = MessageListener::from_fn(move |msgs| {
                    let at = start.elapsed();
                    if let Ok(mut l) = log.lock() {
                        for m in msgs {
                            if let Some(seq) = seq_of(m.body()) {
                                l.push(Delivery {
                                    seq,
                                    broker_name: Arc::from(m.queue.broker_name.as_str()),
                                    queue_id: m.queue.queue_id,
                                    queue_offset: m.queue_offset,
                                    at,
                                });
                            }
                        }
                    }
                    ConsumeResult::Success
                });
                let consumer = PushConsumer::start(client.clone(), config, listener)
                    .await
                    .map_err(|e| e.to_string())?;
                members.push((client, consumer));
            }
        }
        Ok(Consumers { members })
    }

    pub async fn shutdown(self) {
        for (client, consumer) in self.members {
            if let Err(e) = consumer.shutdown().await {
                eprintln!("chaos: consumer shutdown: {e}");
            }
            ClientInstance::shutdown(&client).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_their_sequence_number() {
        assert_eq!(seq_of(&body(42, Some(3), 256)), Some(42));
        assert_eq!(seq_of(&body(7, None, 4)), Some(7));
        assert_eq!(body(1, None, 256).len(), 256);
        assert_eq!(seq_of(b"something else"), None);
    }
}
