//! The broker's send and pull paths: topic checks (and auto-creation) for a send, the choice
//! of queue, and the append. The sends of one connection read are collected while its
//! requests are routed and appended at the end with one commit-log write
//! ([`Broker::append_pending`]); each is answered (after the flush under `sync_flush`) and
//! the queue actors of the touched queues are told, to answer pulls they hold. Pulls go to
//! the queue actor, which answers them.

use super::*;
use crate::storage::message_id::push_offset_msg_id;
use crate::storage::FlushDiskType;

/// What a send needs to know of its topic (copied out rather than cloning the config).
pub(super) struct SendTarget {
    perm: i32,
    write_queue_nums: i32,
}

impl SendTarget {
    fn of(t: &crate::protocol::topic::TopicConfig) -> Self {
        SendTarget {
            perm: t.perm,
            write_queue_nums: t.write_queue_nums,
        }
    }
}

/// One send request waiting for the batch's append: its messages are
/// `msgs[first..first + count]` of [`PendingSends`].
struct PendingSend {
    opaque: u32,
    /// `None` for one-way sends.
    reply: Option<Arc<Recipient<Outbound>>>,
    /// The same connection, for answers sent together.
    replies: Arc<Recipient<OutboundBatch>>,
    queue_id: u32,
    first: usize,
    count: usize,
    /// A SEND_BATCH_MESSAGE request (one answer listing every id).
    batch: bool,
}

/// The SUCCESS answer to a stored send.
fn stored_answer(opaque: u32, header: &SendMessageResponseHeader) -> Frame {
    Frame::response(opaque, ResponseCode::Success, header, Bytes::new())
        .unwrap_or_else(|e| Frame::error(opaque, ResponseCode::SystemError, e.to_string()))
}

/// Answers collected for one connection at a time, sent as one [`OutboundBatch`].
#[derive(Default)]
struct Answers {
    to: Option<Arc<Recipient<OutboundBatch>>>,
    frames: Vec<Frame>,
}

impl Answers {
    fn push(&mut self, to: &Arc<Recipient<OutboundBatch>>, frame: Frame) {
        if self.to.as_ref().is_some_and(|t| !Arc::ptr_eq(t, to)) {
            self.send();
        }
        self.to.get_or_insert_with(|| Arc::clone(to));
        self.frames.push(frame);
    }

    fn send(&mut self) {
        if let Some(to) = self.to.take() {
            if !self.frames.is_empty() {
                to.do_send(OutboundBatch(std::mem::take(&mut self.frames)));
            }
        }
    }
}

/// The validated sends of the batch being handled.
#[derive(Default)]
pub(super) struct PendingSends {
    pub(super) msgs: Vec<MessageToStore>,
    sends: Vec<PendingSend>,
}

impl PendingSends {
    /// Adds a message the broker stores on its own behalf (see `internal_store`): one
    /// request of one message, answered to `reply`.
    pub(super) fn push_internal(
        &mut self,
        msg: MessageToStore,
        opaque: u32,
        reply: Arc<Recipient<Outbound>>,
        replies: Arc<Recipient<OutboundBatch>>,
    ) {
        let first = self.msgs.len();
        let queue_id = msg.queue_id;
        self.msgs.push(msg);
        self.sends.push(PendingSend {
            opaque,
            reply: Some(reply),
            replies,
            queue_id,
            first,
            count: 1,
            batch: false,
        });
    }

    /// Answers every send that wants an answer with `code` and `why` (nothing was stored).
    pub(super) fn fail_all(self, code: ResponseCode, why: &str) {
        let mut answers = Answers::default();
        for s in &self.sends {
            if s.reply.is_some() {
                answers.push(&s.replies, Frame::error(s.opaque, code, why.to_owned()));
            }
        }
        answers.send();
    }
}

impl Broker {
    pub(super) fn topic_for_send(
        &mut self,
        h: &SendMessageRequestHeader,
        ctx: &mut Context<Self>,
    ) -> Result<SendTarget, (ResponseCode, String)> {
        validate_topic_name(&h.topic).map_err(|e| (ResponseCode::MessageIllegal, e))?;
        if let Some(t) = self.topics.get(&h.topic) {
            return Ok(SendTarget::of(t));
        }
        if !self.config.auto_create_topic_enable {
            return Err((
                ResponseCode::TopicNotExist,
                format!("topic '{}' does not exist on broker {} and auto_create_topic_enable is off; create it with mqadmin updateTopic", h.topic, self.config.broker_name),
            ));
        }
        let queues = if h.default_topic_queue_nums > 0 {
            h.default_topic_queue_nums
                .min(self.config.default_topic_queue_nums as i32)
        } else {
            self.config.default_topic_queue_nums as i32
        };
        let t = self.topics.auto_create(&h.topic, queues);
        // Saved off the event loop before any send to it is answered (see `deferred`).
        self.topics_unsaved = true;
        tracing::info!(topic = %h.topic, queues, "topic created on first send");
        self.register_all(ctx);
        Ok(SendTarget::of(&t))
    }

    pub(super) fn on_send(
        &mut self,
        inb: Inbound,
        mut h: SendMessageRequestHeader,
        body: Bytes,
        batch: bool,
        ctx: &mut Context<Self>,
    ) {
        if self.shutting_down {
            return inb.fail(ResponseCode::ServiceNotAvailable, "broker is shutting down");
        }
        if let Some(why) = self.write_side.refusal() {
            return inb.fail(ResponseCode::ServiceNotAvailable, why.to_owned());
        }
        if !self.config.is_master() {
            return inb.fail(
                ResponseCode::ServiceNotAvailable,
                "this broker is a slave and does not accept sends",
            );
        }
        if crate::common::names::is_internal_topic(&h.topic) {
            return inb.fail(
                ResponseCode::NoPermission,
                format!(
                    "topic '{}' is kept by the broker itself (delays, transactions); send to \
                     your topic, with a delay level or as a transaction",
                    h.topic
                ),
            );
        }
        let topic = match self.topic_for_send(&h, ctx) {
            Ok(t) => t,
            Err((code, why)) => return inb.fail(code, why),
        };
        if !is_writeable(topic.perm) {
            return inb.fail(
                ResponseCode::NoPermission,
                format!(
                    "topic '{}' is not writeable on broker {}",
                    h.topic, self.config.broker_name
                ),
            );
        }
        let writable = topic.write_queue_nums.max(1) as u32;
        let queue_id = if h.queue_id < 0 {
            self.next_queue = self.next_queue.wrapping_add(1);
            self.next_queue % writable
        } else if (h.queue_id as u32) < writable {
            h.queue_id as u32
        } else {
            return inb.fail(
                ResponseCode::MessageIllegal,
                format!(
                    "queue id {} is illegal: topic '{}' has {} write queues",
                    h.queue_id, h.topic, writable
                ),
            );
        };
        let reply = (!inb.oneway).then(|| inb.reply.clone());
        let stamp = |topic: String, body: Bytes, flag: i32, properties: String| MessageToStore {
            topic,
            queue_id,
            flag,
            sys_flag: h.sys_flag,
            born_timestamp: h.born_timestamp,
            born_host: inb.peer,
            reconsume_times: h.reconsume_times,
            prepared_transaction_offset: 0,
            body,
            properties,
        };
        let mut msgs: Vec<MessageToStore> = if batch {
            let entries = match crate::protocol::batch::decode_batch(&body) {
                Ok(e) if !e.is_empty() => e,
                Ok(_) => return inb.fail(ResponseCode::MessageIllegal, "empty batch"),
                Err(e) => {
                    return inb.fail(ResponseCode::MessageIllegal, format!("bad batch body: {e}"))
                }
            };
            entries
                .into_iter()
                .map(|e| stamp(h.topic.clone(), e.body, e.flag, e.properties))
                .collect()
        } else {
            let (topic, properties) = (
                std::mem::take(&mut h.topic),
                std::mem::take(&mut h.properties),
            );
            vec![stamp(topic, body, h.flag, properties)]
        };
        // A transactional send is stored as its half, where no consumer reads it; a
        // delayed one waits in the schedule topic (a delayed half is delayed on commit).
        if let Err(why) = transactions::make_halves(&mut msgs, batch)
            .and_then(|()| self.schedule_delayed(&mut msgs, batch))
        {
            return inb.fail(ResponseCode::MessageIllegal, why);
        }
        // Checked one request at a time, so a bad message fails its own request only (a
        // batch request as a whole) and the batch's append meets no invalid message.
        if let Some(e) = msgs.iter().find_map(|m| self.store.check(m).err()) {
            // A full or closing store refuses every send; the store logs that state once.
            if matches!(
                e,
                crate::storage::Error::DiskFull { .. }
                    | crate::storage::Error::NoSpace { .. }
                    | crate::storage::Error::Closed
            ) {
                tracing::debug!(queue_id, error = %e, "send refused");
            } else {
                tracing::warn!(queue_id, error = %e, "send refused");
            }
            return inb.fail(message_queue::store_error_code(&e), e.to_string());
        }
        let first = self.pending.msgs.len();
        let count = msgs.len();
        self.pending.msgs.extend(msgs);
        self.pending.sends.push(PendingSend {
            opaque: inb.opaque,
            reply,
            replies: Arc::clone(&inb.replies),
            queue_id,
            first,
            count,
            batch,
        });
    }

    /// Hands the sends collected from one batch of requests to the append, now or after
    /// the disk work they need (see `deferred`).
    pub(super) fn append_pending(&mut self, ctx: &mut Context<Self>) {
        if self.pending.sends.is_empty() {
            return;
        }
        let sends = std::mem::take(&mut self.pending);
        self.append_or_defer(sends, ctx);
    }

    /// Appends the sends with one store call (one commit-log write per segment touched),
    /// answers each, and tells the queue actors of the touched queues so that they answer
    /// the pulls they hold.
    pub(super) fn append_now(&mut self, pending: PendingSends) {
        let PendingSends { msgs, sends } = pending;
        // A failure part-way (a write error) stores a prefix: the requests wholly in it are
        // stored and answered as such; only the others get the error.
        let (results, failure) = self.store.append_batch_partial(&msgs);
        if let Some(e) = &failure {
            tracing::warn!(messages = msgs.len(), stored = results.len(), error = %e, "append failed");
        }
        let sync_flush = self.store.config().flush_disk_type == FlushDiskType::SyncFlush;
        let sync_master = self.config.broker_role == crate::config::BrokerRole::SyncMaster;
        let slaves_in_sync = self.ha.state().in_sync() >= self.config.min_in_sync_replicas;
        let slave_timeout = Duration::from_millis(self.store.config().sync_flush_timeout);
        // Answers due now go back to their connection together, one message per run of
        // sends from the same connection (a batch comes from one, so one message).
        let mut answers = Answers::default();
        for s in &sends {
            let Some(reply) = &s.reply else { continue };
            let mine = results.get(s.first..s.first + s.count).unwrap_or(&[]);
            let (Some(first), Some(last)) = (mine.first(), mine.last()) else {
                let (code, why) = failure.as_ref().map_or(
                    (ResponseCode::SystemError, "message not stored".to_owned()),
                    |e| (message_queue::store_error_code(e), e.to_string()),
                );
                answers.push(&s.replies, Frame::error(s.opaque, code, why));
                continue;
            };
            let msg_id = if s.batch {
                // RocketMQ answers a batch with its ids joined by commas.
                let mut ids = String::with_capacity(mine.len() * 33);
                for (i, r) in mine.iter().enumerate() {
                    if i > 0 {
                        ids.push(',');
                    }
                    push_offset_msg_id(&mut ids, &r.store_host, r.physical_offset);
                }
                ids
            } else {
                first.msg_id()
            };
            let header = SendMessageResponseHeader {
                msg_id,
                queue_id: s.queue_id as i32,
                queue_offset: first.queue_offset as i64,
                transaction_id: None,
                batch_uniq_id: None,
            };
            let opaque = s.opaque;
            if sync_master {
                if slaves_in_sync {
                    // Answered when the slaves hold it (see `replication`).
                    self.ha.await_slaves(
                        last.end_offset(),
                        slave_timeout,
                        opaque,
                        header,
                        Arc::clone(reply),
                    );
                } else {
                    // Stored here, not acknowledged: RocketMQ's SLAVE_NOT_AVAILABLE status.
                    let frame = Frame::response(
                        opaque,
                        ResponseCode::SlaveNotAvailable,
                        &header,
                        Bytes::new(),
                    )
                    .unwrap_or_else(|e| {
                        Frame::error(opaque, ResponseCode::SystemError, e.to_string())
                    });
                    answers.push(&s.replies, frame);
                }
            } else if sync_flush {
                let reply = Arc::clone(reply);
                self.store.on_durable(
                    last.end_offset(),
                    Box::new(move |res| {
                        let frame = match res {
                            Ok(()) => stored_answer(opaque, &header),
                            Err(e) => Frame::error(
                                opaque,
                                message_queue::store_error_code(&e),
                                e.to_string(),
                            ),
                        };
                        reply.do_send(Outbound(frame));
                    }),
                );
            } else {
                answers.push(&s.replies, stored_answer(opaque, &header));
            }
        }
        answers.send();
        // Records of a request stored in part are readable too, once confirmed: held pulls
        // are woken when they are (flushed, or held by the slaves), not at the append.
        let stored = sends.iter().filter(|s| s.first < results.len());
        let Some(batch_end) = results.last().map(|r| r.end_offset()) else {
            return;
        };
        if !sync_master && !sync_flush {
            // Confirmed at the append: wake at once, with no list to build.
            self.each_touched_queue(&msgs, stored, |addr, flag| {
                replication::wake_one(addr, flag)
            });
            self.ha.log_grew();
            return;
        }
        let mut wakes = Vec::new();
        self.each_touched_queue(&msgs, stored, |addr, flag| {
            wakes.push((addr.clone(), Arc::clone(flag)))
        });
        let acceptor = self.ha.acceptor_if_slaves();
        if sync_master {
            self.ha
                .wake_when_replicated(batch_end, std::mem::take(&mut wakes));
        }
        if sync_flush {
            // Slaves are shipped flushed bytes only: tell them after the flush too.
            if !wakes.is_empty() || acceptor.is_some() {
                self.store.on_durable(
                    batch_end,
                    Box::new(move |_| {
                        replication::wake(&wakes);
                        if let Some(a) = acceptor {
                            a.do_send(crate::actors::server::ha::LogGrew);
                        }
                    }),
                );
            }
        }
    }

    /// Calls `f` once for each queue actor (those that exist: pulls start them) of the
    /// queues these sends touched, to wake it once its records are confirmed.
    fn each_touched_queue<'a>(
        &self,
        msgs: &[MessageToStore],
        sends: impl Iterator<Item = &'a PendingSend>,
        mut f: impl FnMut(&Addr<MessageQueue>, &Arc<std::sync::atomic::AtomicBool>),
    ) {
        let mut told: Vec<(&str, u32)> = Vec::new();
        for s in sends {
            // The stored queue, which a delayed message's rewrite may have changed from
            // the one asked for.
            let (topic, queue_id) = (msgs[s.first].topic.as_str(), msgs[s.first].queue_id);
            if told.contains(&(topic, queue_id)) {
                continue;
            }
            told.push((topic, queue_id));
            if let Some(q) = self.queues.get(topic).and_then(|t| t.get(&queue_id)) {
                f(&q.addr, &q.wake_pending);
            }
        }
    }

    pub(super) fn on_pull(&mut self, inb: Inbound, h: PullMessageRequestHeader) {
        // Half messages, op records, delayed messages: the broker's own bookkeeping, which
        // a consumer must never see (a half would be delivered before its commit).
        if crate::common::names::is_internal_topic(&h.topic) {
            return inb.fail(
                ResponseCode::NoPermission,
                format!(
                    "topic '{}' is a system topic of the broker: consumers cannot pull it",
                    h.topic
                ),
            );
        }
        let known = self.topics.get(&h.topic).cloned();
        let Some(topic) = known.or_else(|| self.replicated_topic(&h.topic)) else {
            return inb.fail(
                ResponseCode::TopicNotExist,
                format!(
                    "topic '{}' does not exist on broker {}",
                    h.topic, self.config.broker_name
                ),
            );
        };
        if !is_readable(topic.perm) {
            return inb.fail(
                ResponseCode::NoPermission,
                format!("topic '{}' is not readable", h.topic),
            );
        }
        if h.queue_id < 0 || h.queue_id >= topic.read_queue_nums {
            return inb.fail(
                ResponseCode::InvalidParameter,
                format!("queue id {} is illegal for topic '{}'", h.queue_id, h.topic),
            );
        }
        if h.sys_flag & PULL_FLAG_COMMIT_OFFSET != 0
            && h.commit_offset >= 0
            && !h.consumer_group.is_empty()
        {
            if let Ok(g) = self.group(&h.consumer_group) {
                g.do_send(consumer_group::CommitOffset {
                    topic: h.topic.clone(),
                    queue_id: h.queue_id,
                    offset: h.commit_offset,
                    keep_larger: false,
                });
            }
        }
        let hold = if h.sys_flag & PULL_FLAG_SUSPEND != 0 && !self.shutting_down {
            Duration::from_millis(
                (h.suspend_timeout_millis.max(0) as u64).min(self.config.long_polling_timeout),
            )
        } else {
            Duration::ZERO
        };
        let pull = Pull {
            offset: h.queue_offset.max(0) as u64,
            max_msgs: h.max_msg_nums.clamp(1, 1024) as usize,
            tag_filter: tag_filter(h.subscription.as_deref()),
            hold,
            max_bytes: message_queue::MAX_PULL_BYTES
                .min(self.config.max_frame_size.saturating_sub(64 * 1024)),
            opaque: inb.opaque,
            reply: (*inb.reply).clone(),
        };
        if self
            .queue(&h.topic, h.queue_id as u32)
            .try_send(pull)
            .is_err()
        {
            inb.fail(ResponseCode::SystemBusy, "broker busy, retry later");
        }
    }

    /// On a slave, a topic its log holds but its copy of the master's topic table does not
    /// list yet (the copy runs every few seconds): readable, with the queues the log has, so
    /// that consumers failing over right after the topic was created find its messages.
    fn replicated_topic(&self, topic: &str) -> Option<crate::protocol::topic::TopicConfig> {
        if self.config.is_master() {
            return None;
        }
        let (_, queues) = self.store.topics().into_iter().find(|(t, _)| t == topic)?;
        let count = queues.iter().max().map_or(0, |q| q + 1) as i32;
        Some(crate::protocol::topic::TopicConfig {
            topic_name: topic.to_owned(),
            read_queue_nums: count,
            write_queue_nums: 0,
            perm: crate::protocol::topic::PERM_READ,
            topic_sys_flag: 0,
            order: false,
        })
    }

    pub(super) fn topic_stats(&self, topic: &str) -> TopicStatsTable {
        let mut offset_table = BTreeMap::new();
        let queues = self
            .topics
            .get(topic)
            .map(|t| t.read_queue_nums.max(t.write_queue_nums))
            .unwrap_or(0);
        for q in 0..queues.max(0) as u32 {
            let (min, max) = (
                self.store.min_offset(topic, q),
                self.store.max_offset(topic, q),
            );
            let last = if max > 0 {
                self.store
                    .read_by_queue_offset(topic, q, max - 1)
                    .map(|m| m.store_timestamp)
                    .unwrap_or(0)
            } else {
                0
            };
            offset_table.insert(
                Mq {
                    topic: topic.to_owned(),
                    broker_name: self.config.broker_name.clone(),
                    queue_id: q as i32,
                },
                TopicOffset {
                    min_offset: min as i64,
                    max_offset: max as i64,
                    last_update_timestamp: last,
                },
            );
        }
        TopicStatsTable { offset_table }
    }
}
