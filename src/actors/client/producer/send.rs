//! The producer's send path: the publish view of a topic, the queue choice (round robin
//! avoiding brokers that failed recently, sharding key, chosen queue), the attempts and
//! retries within the time budget, and the checks a message must pass before it is sent.
//! It runs in the caller's task over the state shared with the actor; it never sends the
//! actor a message.

use super::*;

fn validate(msg: &Message, max: usize) -> Result<(), ClientError> {
    crate::common::names::validate_topic_name(&msg.topic).map_err(ClientError::MessageIllegal)?;
    if msg.body.is_empty() {
        return Err(ClientError::MessageIllegal(format!(
            "message to '{}' has an empty body",
            msg.topic
        )));
    }
    if msg.body.len() > max {
        return Err(ClientError::MessageTooLarge {
            size: msg.body.len(),
            max,
        });
    }
    use crate::common::properties::check_property;
    use crate::storage::record::{
        PROPERTY_KEYS, PROPERTY_RECORD_CRC, PROPERTY_TAGS, PROPERTY_UNIQ_KEY,
    };
    // The broker applies the same rule to what it receives (`check_encoded`); checking here
    // names the field the caller set.
    if let Some(tags) = &msg.tags {
        check_property(PROPERTY_TAGS, tags).map_err(|e| {
            ClientError::MessageIllegal(format!("tag {tags:?} is not allowed: {e}"))
        })?;
        if tags.contains("||") {
            return Err(ClientError::MessageIllegal(format!(
                "tag {tags:?} contains \"||\", which separates tags in subscriptions: no consumer could select it"
            )));
        }
    }
    for key in &msg.keys {
        check_property(PROPERTY_KEYS, key)
            .map_err(|e| ClientError::MessageIllegal(format!("key {key:?} is not allowed: {e}")))?;
        if key.is_empty() || key.contains(' ') {
            return Err(ClientError::MessageIllegal(format!(
                "key {key:?} is empty or contains a space, which separates keys: add each key with with_key"
            )));
        }
    }
    for (name, value) in &msg.properties {
        // A second TAGS, KEYS or UNIQ_KEY would shadow the one the producer writes (lookups
        // take the first), as RocketMQ refuses user properties with system names.
        if [
            PROPERTY_TAGS,
            PROPERTY_KEYS,
            PROPERTY_UNIQ_KEY,
            PROPERTY_RECORD_CRC,
        ]
        .contains(&name.as_str())
        {
            return Err(ClientError::MessageIllegal(format!(
                "property '{name}' is reserved: set tags with with_tags and keys with with_key"
            )));
        }
        check_property(name, value).map_err(ClientError::MessageIllegal)?;
    }
    Ok(())
}

/// `prefix` followed by the low 48 bits of `n` as 12 upper-case hex digits (RocketMQ's
/// UNIQ_KEY shape). Written by hand because it runs once per send and `format!` cost more
/// than the rest of building the message's properties.
fn unique_id(prefix: &str, n: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut id = String::with_capacity(prefix.len() + 12);
    id.push_str(prefix);
    for shift in (0..12).rev() {
        id.push(HEX[((n >> (shift * 4)) & 0xF) as usize] as char);
    }
    id
}

use crate::common::clock::now_ms;

/// How long a publish view listing a broker whose master is away is trusted.
const MASTERLESS_TTL: Duration = Duration::from_secs(1);

impl Shared {
    /// Why `topic` has no route now: never known (create it), or known before and now
    /// without a live broker (they are down).
    fn no_route(&self, topic: &str) -> ClientError {
        let routes = self.routes.lock();
        let Some(known) = routes.get(topic).filter(|p| !p.targets.is_empty()) else {
            return ClientError::NoRoute {
                topic: topic.to_owned(),
            };
        };
        let mut brokers: Vec<String> = known
            .targets
            .iter()
            .map(|t| format!("{} ({})", t.queue.broker_name, t.broker_addr))
            .collect();
        brokers.dedup();
        ClientError::TopicUnavailable {
            topic: topic.to_owned(),
            brokers: brokers.join(", "),
        }
    }

    fn unique_id(&self) -> String {
        let n = self.uniq_counter.fetch_add(1, Ordering::Relaxed);
        unique_id(&self.uniq_prefix, n)
    }

    /// The publish view of `topic`: the cached one while younger than `route_ttl` at `now`,
    /// else (or with `refresh`) a fresh one from the name servers.
    pub(super) async fn publish(
        &self,
        topic: &str,
        refresh: bool,
        now: Instant,
    ) -> Result<Arc<[Target]>, ClientError> {
        if !refresh {
            if let Some(p) = self.routes.lock().get(topic) {
                let age = now.saturating_duration_since(p.fetched);
                // A view with a broker whose master is away is asked for again after a
                // second: the master's return should reach sends (ordered ones wait for it)
                // at once. Younger views skip that lookup: it is on every send's path.
                let fresh = age < self.config.route_ttl.min(MASTERLESS_TTL)
                    || (age < self.config.route_ttl
                        && self
                            .masterless
                            .lock()
                            .get(topic)
                            .is_none_or(|away| away.is_empty()));
                if fresh && !p.targets.is_empty() {
                    return Ok(Arc::clone(&p.targets));
                }
            }
        }
        let get = |t: &str| GetRoute {
            topic: t.to_owned(),
            refresh: true,
        };
        let targets = match self
            .client
            .send(get(topic))
            .await
            .map_err(|_| ClientError::Shutdown)?
        {
            Ok(route) => {
                self.masterless
                    .lock()
                    .insert(topic.to_owned(), masterless_sets(&route).into());
                publish_info(&route, topic, None)
            }
            // No route yet: send where brokers create topics on first use.
            Err(ClientError::NoRoute { .. }) => match self
                .client
                .send(get(AUTO_CREATE_TOPIC_KEY))
                .await
                .map_err(|_| ClientError::Shutdown)?
            {
                Ok(route) => publish_info(&route, topic, Some(4)),
                Err(_) => return Err(self.no_route(topic)),
            },
            Err(e) => return Err(e),
        };
        let targets: Arc<[Target]> = targets.into();
        if targets.is_empty() {
            return Err(self.no_route(topic));
        }
        self.routes.lock().insert(
            topic.to_owned(),
            PublishInfo {
                targets: Arc::clone(&targets),
                fetched: Instant::now(),
            },
        );
        Ok(targets)
    }

    async fn link(&self, addr: &str) -> Result<Addr<RemoteLink>, ClientError> {
        if let Some(l) = self.links.lock().get(addr) {
            return Ok(l.clone());
        }
        let l = self
            .client
            .send(GetLink(addr.to_owned()))
            .await
            .map_err(|_| ClientError::Shutdown)?;
        self.links.lock().insert(addr.to_owned(), l.clone());
        Ok(l)
    }

    fn mark_faulty(&self, broker: &str) {
        self.faults.lock().insert(
            broker.to_owned(),
            Instant::now() + self.config.not_available_duration,
        );
    }

    /// Picks the queue for attempt `attempt`, avoiding brokers that failed recently and the
    /// one the previous attempt used.
    fn pick<'t>(
        &self,
        targets: &'t [Target],
        placement: &Placement,
        avoid: Option<&str>,
    ) -> Result<&'t Target, ClientError> {
        match placement {
            Placement::Queue(q) => targets.iter().find(|t| &t.queue == q).ok_or_else(|| {
                ClientError::MessageIllegal(format!(
                    "queue {}:{}:{} is not writable",
                    q.topic, q.broker_name, q.queue_id
                ))
            }),
            Placement::ShardingKey(key) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut h);
                let hash = h.finish();
                let by_hash = |n: usize| (hash % n as u64) as usize;
                let away = targets
                    .first()
                    .and_then(|t| self.masterless.lock().get(&t.queue.topic).cloned())
                    .unwrap_or_else(|| Arc::from([]));
                if away.is_empty() {
                    return Ok(&targets[by_hash(targets.len())]);
                }
                // The key maps onto the queues as when every master is up; one whose master
                // is away fails (strict order) rather than moving to another queue.
                let mut slots: Vec<(&str, i32, Option<&Target>)> = targets
                    .iter()
                    .map(|t| (t.queue.broker_name.as_str(), t.queue.queue_id, Some(t)))
                    .collect();
                for (broker, n) in away.iter() {
                    slots.extend((0..*n).map(|id| (broker.as_str(), id, None)));
                }
                slots.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
                match slots[by_hash(slots.len())] {
                    (_, _, Some(t)) => Ok(t),
                    _ if self.config.rehash_orderly_when_broker_down => {
                        Ok(&targets[by_hash(targets.len())])
                    }
                    (broker, queue_id, None) => Err(ClientError::BrokerUnavailable {
                        broker: broker.to_owned(),
                        reason: format!(
                            "the master of {broker}, which holds this key's queue {queue_id}, \
                             is down: ordered sends of this key fail until it returns, to keep \
                             their order (set ProducerConfig::rehash_orderly_when_broker_down \
                             to send them to another queue instead)"
                        ),
                    }),
                }
            }
            Placement::RoundRobin => {
                let turn = self.next.fetch_add(1, Ordering::Relaxed) as usize;
                let not_avoided = |t: &Target| avoid != Some(t.queue.broker_name.as_str());
                let faults = self.faults.lock();
                if faults.is_empty() && avoid.is_none() {
                    return Ok(&targets[turn % targets.len()]);
                }
                let now = Instant::now();
                let healthy = |t: &Target| {
                    faults
                        .get(&t.queue.broker_name)
                        .is_none_or(|until| *until <= now)
                };
                Ok(round_robin(targets, turn, |t| not_avoided(t) && healthy(t))
                    .or_else(|| round_robin(targets, turn, not_avoided))
                    .unwrap_or(&targets[turn % targets.len()]))
            }
        }
    }

    async fn attempt(
        &self,
        target: &Target,
        header: &SendMessageRequestHeader,
        code: RequestCode,
        body: Bytes,
        oneway: bool,
        (left, deadline): (Duration, Instant),
    ) -> Result<Option<(SendStatus, SendMessageResponseHeader)>, ClientError> {
        let link = self.link(&target.broker_addr).await?;
        if oneway {
            let frame = Frame::oneway(code, 0, header, body)
                .map_err(|e| ClientError::MessageIllegal(e.to_string()))?;
            return match link.send(remote_link::Send(frame)).await {
                Ok(Ok(())) => Ok(None),
                Ok(Err(e)) => Err(crate::actors::client::from_link(e)),
                Err(_) => Err(ClientError::Shutdown),
            };
        }
        let frame = Frame::request(code, 0, header, body)
            .map_err(|e| ClientError::MessageIllegal(e.to_string()))?;
        let answer = remote_link::call_until(&link, &target.broker_addr, frame, left, deadline)
            .await
            .map_err(crate::actors::client::from_link)?;
        // Stored on the broker; only SUCCESS is an acknowledgement (RocketMQ's statuses).
        let stored = match answer.response_code() {
            Some(ResponseCode::Success) => Some(SendStatus::SendOk),
            Some(ResponseCode::FlushDiskTimeout) => Some(SendStatus::FlushDiskTimeout),
            Some(ResponseCode::FlushSlaveTimeout) => Some(SendStatus::FlushSlaveTimeout),
            Some(ResponseCode::SlaveNotAvailable) => Some(SendStatus::SlaveNotAvailable),
            _ => None,
        };
        if let Some(status) = stored {
            if let Ok(h) = SendMessageResponseHeader::from_frame(&answer) {
                return Ok(Some((status, h)));
            }
        }
        match answer.response_code() {
            Some(ResponseCode::Success) => Err(ClientError::Broker {
                broker: target.broker_addr.clone(),
                code: "SUCCESS".into(),
                remark: "undecodable send answer".into(),
            }),
            Some(ResponseCode::MessageIllegal) => Err(ClientError::MessageIllegal(
                answer.remark.unwrap_or_default(),
            )),
            Some(ResponseCode::NoPermission) => Err(ClientError::NoPermission {
                broker: target.broker_addr.clone(),
                topic: header.topic.clone(),
                remark: answer.remark.unwrap_or_default(),
            }),
            other => Err(ClientError::Broker {
                broker: target.broker_addr.clone(),
                code: other
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| answer.code.to_string()),
                remark: answer.remark.unwrap_or_default(),
            }),
        }
    }

    async fn send(
        self: Arc<Self>,
        out: Outgoing,
        placement: Placement,
        oneway: bool,
        budget: Option<Duration>,
    ) -> Result<SendResult, ClientError> {
        let Outgoing {
            topic,
            body,
            batch,
            flag,
            properties,
            mut unique_id,
        } = out;
        let started = Instant::now();
        let budget = budget.unwrap_or(self.config.send_msg_timeout);
        let attempts = match placement {
            Placement::RoundRobin if !oneway => 1 + self.config.retry_times_when_send_failed,
            _ => 1,
        };
        let mut last: Option<ClientError> = None;
        let mut avoid: Option<String> = None;
        // Built once: attempts differ only in queue and birth time.
        let mut header = SendMessageRequestHeader {
            producer_group: self.config.producer_group.clone(),
            topic,
            default_topic: AUTO_CREATE_TOPIC_KEY.to_owned(),
            default_topic_queue_nums: 4,
            flag,
            properties,
            batch,
            ..Default::default()
        };
        let code = if batch {
            RequestCode::SendBatchMessage
        } else {
            RequestCode::SendMessage
        };
        let mut made = 0;
        // A send stored without SEND_OK, kept in case no other broker does better.
        let mut not_ok: Option<SendResult> = None;
        for n in 0..attempts {
            // The clock is read once per send; a retry reads it again.
            let (now, left) = if n == 0 {
                (started, budget)
            } else {
                let now = Instant::now();
                (now, budget.saturating_sub(now - started))
            };
            if left.is_zero() {
                break;
            }
            made += 1;
            let targets = match self.publish(&header.topic, n > 0, now).await {
                Ok(t) => t,
                // No route to start from (none known, no name server): retrying at once
                // would only ask again, so the cause itself is the answer (as RocketMQ's
                // "No route info of this topic").
                Err(e) if n == 0 => return Err(e),
                // A retry found no other broker to try: stop, with that as the last cause.
                Err(e) => {
                    last = Some(e);
                    break;
                }
            };
            // Borrowed from the view, not cloned: this runs for every send.
            let fresh: Arc<[Target]>;
            let target = match self.pick(&targets, &placement, avoid.as_deref()) {
                Ok(t) => t,
                // An ordered send whose queue's master looked away in a cached view: the
                // master may be back already; ask once before failing.
                Err(ClientError::BrokerUnavailable { .. }) if n == 0 => {
                    fresh = self.publish(&header.topic, true, now).await?;
                    self.pick(&fresh, &placement, avoid.as_deref())?
                }
                Err(e) => return Err(e),
            };
            header.queue_id = target.queue.queue_id;
            header.born_timestamp = now_ms();
            match self
                .attempt(
                    target,
                    &header,
                    code,
                    body.clone(),
                    oneway,
                    (left, now + left),
                )
                .await
            {
                Ok(answer) => {
                    let (status, offset_msg_id, queue_offset) = answer
                        .map(|(s, a)| (s, a.msg_id, a.queue_offset.max(0) as u64))
                        .unwrap_or((SendStatus::SendOk, String::new(), 0));
                    let last_try = status == SendStatus::SendOk
                        || !self.config.retry_another_broker_when_not_store_ok
                        || n + 1 >= attempts;
                    let result = SendResult {
                        status,
                        offset_msg_id,
                        // Moved, not cloned, when this answer is the send's result.
                        unique_id: if last_try {
                            std::mem::take(&mut unique_id)
                        } else {
                            unique_id.clone()
                        },
                        message_queue: target.queue.clone(),
                        queue_offset,
                    };
                    if last_try {
                        return Ok(result);
                    }
                    tracing::debug!(broker = %target.broker_addr, %status, attempt = n + 1, "stored without SEND_OK; trying another broker");
                    avoid = Some(target.queue.broker_name.clone());
                    not_ok = Some(result);
                }
                Err(e) if !e.is_retryable() => return Err(e),
                Err(e) => {
                    tracing::debug!(broker = %target.broker_addr, error = %e, attempt = n + 1, "send failed; trying another broker");
                    self.mark_faulty(&target.queue.broker_name);
                    avoid = Some(target.queue.broker_name.clone());
                    last = Some(e);
                }
            }
        }
        if let Some(result) = not_ok {
            return Ok(result);
        }
        Err(ClientError::Exhausted {
            what: format!("send to topic '{}'", header.topic),
            attempts: made,
            elapsed_ms: started.elapsed().as_millis() as u64,
            last: last.map(Box::new),
        })
    }
}

impl Shared {
    /// Sends one message (validated and given its unique id here).
    pub(super) async fn send_one(
        self: Arc<Self>,
        msg: Message,
        placement: Placement,
        oneway: bool,
        budget: Option<Duration>,
    ) -> Result<SendResult, ClientError> {
        let shared = self;
        validate(&msg, shared.config.max_message_size)?;
        let unique_id = shared.unique_id();
        let properties = msg.encoded_properties(&unique_id);
        let Message {
            topic, body, flag, ..
        } = msg;
        let out = Outgoing {
            topic,
            body,
            batch: false,
            flag,
            properties,
            unique_id,
        };
        shared.send(out, placement, oneway, budget).await
    }

    /// Sends messages of one topic as one batch request.
    pub(super) async fn send_many(
        self: Arc<Self>,
        msgs: Vec<Message>,
    ) -> Result<SendResult, ClientError> {
        let shared = self;
        let Some(first) = msgs.first() else {
            return Err(ClientError::MessageIllegal("empty batch".into()));
        };
        let topic = first.topic.clone();
        let mut entries = Vec::with_capacity(msgs.len());
        let mut total = 0;
        let mut ids = String::new();
        for m in &msgs {
            validate(m, shared.config.max_message_size)?;
            if m.topic != topic {
                return Err(ClientError::MessageIllegal(format!(
                    "a batch must have one topic; found '{}' and '{}'",
                    topic, m.topic
                )));
            }
            let id = shared.unique_id();
            if !ids.is_empty() {
                ids.push(',');
            }
            ids.push_str(&id);
            total += m.body.len();
            entries.push(BatchEntry {
                flag: m.flag,
                body: m.body.clone(),
                properties: m.encoded_properties(&id),
            });
        }
        if total > shared.config.max_message_size {
            return Err(ClientError::MessageTooLarge {
                size: total,
                max: shared.config.max_message_size,
            });
        }
        let out = Outgoing {
            topic,
            body: encode_batch(&entries),
            batch: true,
            flag: 0,
            properties: String::new(),
            unique_id: ids,
        };
        shared.send(out, Placement::RoundRobin, false, None).await
    }
}

/// The `turn`-th of the targets that are `usable`, counting round: each usable target gets
/// an equal share of the turns. (Taking the first usable one after position `turn` instead
/// gave the first queue after a dead broker's block every turn that fell in that block:
/// with one of two masters down, one queue of the other took five in eight sends.)
fn round_robin(
    targets: &[Target],
    turn: usize,
    usable: impl Fn(&Target) -> bool,
) -> Option<&Target> {
    let count = targets.iter().filter(|t| usable(t)).count();
    if count == 0 {
        return None;
    }
    targets.iter().filter(|t| usable(t)).nth(turn % count)
}

#[cfg(test)]
mod tests {
    use super::{round_robin, unique_id, validate, Target};
    use crate::protocol::MessageQueue;

    #[test]
    fn round_robin_spreads_evenly_over_the_queues_of_the_brokers_left() {
        let targets: Vec<Target> = ["broker-a", "broker-b"]
            .iter()
            .flat_map(|b| {
                (0..4).map(move |q| Target {
                    queue: MessageQueue {
                        topic: "T".into(),
                        broker_name: (*b).into(),
                        queue_id: q,
                    },
                    broker_addr: format!("{b}:1"),
                })
            })
            .collect();
        let mut per_queue = std::collections::BTreeMap::new();
        for turn in 0..800 {
            let t = round_robin(&targets, turn, |t| t.queue.broker_name != "broker-a")
                .expect("broker-b is usable");
            *per_queue.entry(t.queue.clone()).or_insert(0) += 1;
        }
        assert_eq!(per_queue.len(), 4, "{per_queue:?}");
        assert!(
            per_queue.values().all(|n| *n == 200),
            "sends piled onto one queue: {per_queue:?}"
        );
        assert!(round_robin(&targets, 3, |_| false).is_none());
    }
    use crate::client::{ClientError, Message};

    #[test]
    fn user_properties_may_not_shadow_system_ones_or_break_the_format() {
        let ok = Message::new("T", "b").with_property("color", "red");
        assert!(validate(&ok, 1024).is_ok());
        for bad in [
            Message::new("T", "b").with_property("UNIQ_KEY", "mine"),
            Message::new("T", "b").with_property("KEYS", "k"),
            Message::new("T", "b").with_property("TAGS", "t"),
            Message::new("T", "b").with_property("a\u{2}b", "v"),
            Message::new("T", "b").with_property("a", "v\u{1}w"),
            Message::new("T", "b").with_property("", "v"),
        ] {
            assert!(
                matches!(validate(&bad, 1024), Err(ClientError::MessageIllegal(_))),
                "{:?} must be refused",
                bad.properties
            );
        }
    }

    #[test]
    fn unique_ids_are_the_prefix_and_48_bits_in_hex() {
        for n in [
            0u64,
            1,
            0xABC,
            0xFFFF_FFFF_FFFF,
            0x1_0000_0000_0001,
            u64::MAX,
        ] {
            assert_eq!(
                unique_id("PFX", n),
                format!("PFX{:012X}", n & 0xFFFF_FFFF_FFFF)
            );
        }
    }
}
