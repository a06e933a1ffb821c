//! The broker's request router: one arm per request code, each handing the request to the
//! actor that owns its state or answering from the topic table and the store's metadata.
//! It never waits on the network or on a flush inside a handler; what it answers itself
//! comes from memory or from page-cache reads of the store.

use super::*;
use crate::actors::server::consumer_group::OffsetAnswer;
use crate::config::BrokerRole;
use crate::protocol::topic::KvTable;

pub(super) fn response<H: serde::Serialize>(
    inb: &Inbound,
    code: ResponseCode,
    header: &H,
    body: Bytes,
) {
    match Frame::response(inb.opaque, code, header, body) {
        Ok(f) => inb.respond(f),
        Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
    }
}

pub(super) fn ok_body<B: serde::Serialize>(inb: &Inbound, body: &B) {
    match encode_body(body) {
        Ok(b) => response(inb, ResponseCode::Success, &NoHeader {}, b),
        Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
    }
}

pub(super) fn offset_answer(inb: &Inbound, offset: u64) {
    response(
        inb,
        ResponseCode::Success,
        &OffsetResponseHeader {
            offset: offset as i64,
            subscribed_since_ms: None,
        },
        Bytes::new(),
    );
}

impl Broker {
    pub(super) fn handle_request(&mut self, mut inb: Inbound, ctx: &mut Context<Self>) {
        // The request moves into its handler; what stays in `inb` is only used to answer.
        let request = std::mem::replace(&mut inb.request, Request::GetAllTopicConfig);
        match request {
            Request::SendMessage(h, body) => self.on_send(inb, h, body, false, ctx),
            Request::SendBatchMessage(h, body) => self.on_send(inb, h, body, true, ctx),
            Request::PullMessage(h) => self.on_pull(inb, h),
            Request::HeartBeat(data) => {
                let internal = data
                    .consumer_data_set
                    .iter()
                    .flat_map(|c| c.subscription_data_set.iter())
                    .find(|s| crate::common::names::is_internal_topic(&s.topic));
                if let Some(s) = internal {
                    return inb.fail(
                        ResponseCode::NoPermission,
                        format!(
                            "topic '{}' is a system topic of the broker: consumers cannot subscribe to it",
                            s.topic
                        ),
                    );
                }
                for producer in &data.producer_data_set {
                    self.producers.heartbeat(
                        &producer.group_name,
                        &data.client_id,
                        inb.conn,
                        &inb.reply,
                    );
                }
                for consumer in data.consumer_data_set {
                    self.on_consumer_heartbeat(&consumer, ctx);
                    let name = consumer.group_name.clone();
                    self.conn_groups
                        .entry(inb.conn)
                        .or_default()
                        .insert(name.clone());
                    let group = match self.group(&name) {
                        Ok(g) => g,
                        Err(e) => return inb.fail(ResponseCode::InvalidParameter, e),
                    };
                    group.do_send(consumer_group::Heartbeat {
                        client_id: data.client_id.clone(),
                        conn: inb.conn,
                        notify: (*inb.reply).clone(),
                        data: consumer,
                    });
                }
                response(&inb, ResponseCode::Success, &NoHeader {}, Bytes::new());
            }
            Request::UnregisterClient(h) => {
                if let Some(g) = h.producer_group.as_deref() {
                    self.producers.unregister(g, &h.client_id);
                }
                if let Some(g) = h.consumer_group.as_deref().filter(|g| !g.is_empty()) {
                    if let Ok(g) = self.group(g) {
                        g.do_send(consumer_group::Leave {
                            client_id: h.client_id,
                        });
                    }
                }
                response(&inb, ResponseCode::Success, &NoHeader {}, Bytes::new());
            }
            Request::QueryConsumerOffset(h) => {
                let group = match self.group(&h.consumer_group) {
                    Ok(g) => g,
                    Err(e) => return inb.fail(ResponseCode::InvalidParameter, e),
                };
                let queue_starts_at_zero =
                    self.store.min_offset(&h.topic, h.queue_id.max(0) as u32) == 0;
                actix::spawn(async move {
                    match group
                        .send(consumer_group::QueryOffset {
                            topic: h.topic.clone(),
                            queue_id: h.queue_id,
                        })
                        .await
                    {
                        Ok(Ok(OffsetAnswer {
                            offset: Some(o),
                            subscribed_since_ms,
                        })) => response(
                            &inb,
                            ResponseCode::Success,
                            &OffsetResponseHeader {
                                offset: o,
                                subscribed_since_ms,
                            },
                            Bytes::new(),
                        ),
                        // RocketMQ answers 0 for a group that never committed while the queue
                        // still holds its first message, unless the client asks otherwise.
                        Ok(Ok(OffsetAnswer {
                            offset: None,
                            subscribed_since_ms,
                        })) if h.set_zero_if_not_found != Some(false) && queue_starts_at_zero => {
                            response(
                                &inb,
                                ResponseCode::Success,
                                &OffsetResponseHeader {
                                    offset: 0,
                                    subscribed_since_ms,
                                },
                                Bytes::new(),
                            )
                        }
                        Ok(Ok(OffsetAnswer {
                            offset: None,
                            subscribed_since_ms,
                        })) => {
                            let header = OffsetResponseHeader {
                                offset: -1,
                                subscribed_since_ms,
                            };
                            match Frame::response(
                                inb.opaque,
                                ResponseCode::QueryNotFound,
                                &header,
                                Bytes::new(),
                            ) {
                                Ok(mut f) => {
                                    f.remark = Some(format!(
                                        "group '{}' has no committed offset for {}:{}",
                                        h.consumer_group, h.topic, h.queue_id
                                    ));
                                    inb.respond(f)
                                }
                                Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
                            }
                        }
                        // Not "not found": the consumer must wait, not start elsewhere.
                        Ok(Err(e)) => inb.fail(ResponseCode::SystemError, e.to_string()),
                        Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
                    }
                });
            }
            Request::UpdateConsumerOffset(h) => {
                if self.shutting_down {
                    return inb.fail(ResponseCode::ServiceNotAvailable, "broker is shutting down");
                }
                let group = match self.group(&h.consumer_group) {
                    Ok(g) => g,
                    Err(e) => return inb.fail(ResponseCode::InvalidParameter, e),
                };
                let commit = group.send(consumer_group::CommitOffset {
                    topic: h.topic,
                    queue_id: h.queue_id,
                    offset: h.commit_offset,
                    keep_larger: h.keep_larger == Some(true),
                });
                // Answered once durable: an acknowledged commit survives a kill -9.
                actix::spawn(async move {
                    match commit.await {
                        Ok(Ok(())) => {
                            response(&inb, ResponseCode::Success, &NoHeader {}, Bytes::new())
                        }
                        Ok(Err(e)) => inb.fail(ResponseCode::SystemError, e.to_string()),
                        Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
                    }
                });
            }
            Request::InvokeBrokerToResetOffset(h) => self.reset_offsets(inb, h),
            Request::ConsumerSendMsgBack(h) => self.send_back(inb, h, ctx),
            Request::EndTransaction(h) => self.end_transaction(inb, h, ctx),
            Request::GetConsumerListByGroup(h) => {
                let group = match self.group(&h.consumer_group) {
                    Ok(g) => g,
                    Err(e) => return inb.fail(ResponseCode::InvalidParameter, e),
                };
                actix::spawn(async move {
                    match group.send(consumer_group::ListMembers).await {
                        Ok(ids) if !ids.is_empty() => {
                            let assignments = group
                                .send(consumer_group::ListAssignments)
                                .await
                                .unwrap_or_default();
                            ok_body(
                                &inb,
                                &GetConsumerListByGroupResponseBody {
                                    consumer_id_list: ids,
                                    assignments,
                                },
                            )
                        }
                        Ok(_) => inb.fail(
                            ResponseCode::SystemError,
                            format!("no consumer for this group, {}", h.consumer_group),
                        ),
                        Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
                    }
                });
            }
            Request::GetConsumeStats(h) => {
                let group = match self.group(&h.consumer_group) {
                    Ok(g) => g,
                    Err(e) => return inb.fail(ResponseCode::InvalidParameter, e),
                };
                let store = Arc::clone(&self.store);
                let broker_name = self.config.broker_name.clone();
                actix::spawn(async move {
                    let Ok(offsets) = group.send(consumer_group::ListOffsets).await else {
                        return inb.fail(ResponseCode::SystemError, "consumer group actor is gone");
                    };
                    let mut stats = ConsumeStats::default();
                    for ((topic, q), consumer_offset) in offsets {
                        if h.topic.as_deref().is_some_and(|t| t != topic) {
                            continue;
                        }
                        let broker_offset = store.max_offset(&topic, q as u32) as i64;
                        stats.offset_table.insert(
                            Mq {
                                topic,
                                broker_name: broker_name.clone(),
                                queue_id: q,
                            },
                            OffsetWrapper {
                                broker_offset,
                                consumer_offset,
                                last_timestamp: 0,
                            },
                        );
                    }
                    ok_body(&inb, &stats);
                });
            }
            Request::GetMaxOffset(h) => offset_answer(
                &inb,
                self.store.max_offset(&h.topic, h.queue_id.max(0) as u32),
            ),
            Request::GetMinOffset(h) => offset_answer(
                &inb,
                self.store.min_offset(&h.topic, h.queue_id.max(0) as u32),
            ),
            Request::SearchOffsetByTimestamp(h) => offset_answer(
                &inb,
                self.store
                    .offset_for_timestamp(&h.topic, h.queue_id.max(0) as u32, h.timestamp),
            ),
            Request::GetEarliestMsgStoretime(h) => {
                let q = h.queue_id.max(0) as u32;
                let min = self.store.min_offset(&h.topic, q);
                match self.store.read_by_queue_offset(&h.topic, q, min) {
                    Ok(m) => response(
                        &inb,
                        ResponseCode::Success,
                        &GetEarliestMsgStoretimeResponseHeader {
                            timestamp: m.store_timestamp,
                        },
                        Bytes::new(),
                    ),
                    Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
                }
            }
            Request::ViewMessageById(h) => match self.store.read_raw(h.offset.max(0) as u64) {
                Ok(raw) => response(&inb, ResponseCode::Success, &NoHeader {}, raw),
                Err(e) => inb.fail(
                    ResponseCode::SystemError,
                    format!("no message at offset {}: {e}", h.offset),
                ),
            },
            Request::QueryMessage(h) => match self.store.query_by_key(
                &h.topic,
                &h.key,
                h.begin_timestamp,
                h.end_timestamp,
                h.max_num.clamp(1, 64) as usize,
            ) {
                Ok(found) if !found.is_empty() => {
                    let mut body = BytesMut::new();
                    for m in &found {
                        body.extend_from_slice(&m.raw);
                    }
                    let header = QueryMessageResponseHeader {
                        index_last_update_timestamp: found
                            .iter()
                            .map(|m| m.store_timestamp)
                            .max()
                            .unwrap_or(0),
                        index_last_update_phyoffset: found
                            .iter()
                            .map(|m| m.physical_offset as i64)
                            .max()
                            .unwrap_or(0),
                    };
                    response(&inb, ResponseCode::Success, &header, body.freeze());
                }
                Ok(_) => inb.fail(
                    ResponseCode::QueryNotFound,
                    format!("no message with key '{}' in topic '{}'", h.key, h.topic),
                ),
                Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
            },
            Request::UpdateAndCreateTopic(h) => {
                if !self.config.is_master() {
                    return inb.fail(
                        ResponseCode::NoPermission,
                        format!(
                            "broker {} id {} is a slave: it copies its topics from its master; \
                             update the topic on the master (id 0) instead",
                            self.config.broker_name, self.config.broker_id
                        ),
                    );
                }
                if let Err(e) = validate_topic_name(&h.topic) {
                    return inb.fail(ResponseCode::InvalidParameter, e);
                }
                if h.read_queue_nums <= 0
                    || h.write_queue_nums <= 0
                    || h.read_queue_nums > 1024
                    || h.write_queue_nums > 1024
                {
                    return inb.fail(
                        ResponseCode::InvalidParameter,
                        "read and write queue counts must be in 1..=1024",
                    );
                }
                self.topics.upsert(h.to_topic_config());
                tracing::info!(topic = %h.topic, read = h.read_queue_nums, write = h.write_queue_nums, "topic updated");
                self.register_all(ctx);
                self.answer_once_saved(inb);
            }
            Request::DeleteTopicInBroker(h) => {
                if self.topics.remove(&h.topic) {
                    self.queues.remove(&h.topic);
                    self.register_all(ctx);
                    self.answer_once_saved(inb);
                } else {
                    response(&inb, ResponseCode::Success, &NoHeader {}, Bytes::new());
                }
            }
            Request::LockBatchMq(body) => {
                let group = match self.group(&body.consumer_group) {
                    Ok(g) => g,
                    Err(e) => return inb.fail(ResponseCode::InvalidParameter, e),
                };
                let ask = consumer_group::LockQueues {
                    client_id: body.client_id,
                    queues: body.mq_set,
                };
                actix::spawn(async move {
                    match group.send(ask).await {
                        Ok(held) => ok_body(
                            &inb,
                            &crate::protocol::group::LockBatchResponseBody {
                                lock_ok_mq_set: held,
                            },
                        ),
                        Err(e) => inb.fail(ResponseCode::SystemError, e.to_string()),
                    }
                });
            }
            Request::UnlockBatchMq(body) => {
                if let Ok(group) = self.group(&body.consumer_group) {
                    group.do_send(consumer_group::UnlockQueues {
                        client_id: body.client_id,
                        queues: body.mq_set,
                    });
                }
                response(&inb, ResponseCode::Success, &NoHeader {}, Bytes::new());
            }
            Request::GetAllTopicConfig => ok_body(&inb, &self.topics.wrapper()),
            Request::GetAllConsumerOffset => self.all_consumer_offsets(inb),
            Request::GetBrokerRuntimeInfo => ok_body(&inb, &self.runtime_info()),
            Request::GetTopicStatsInfo(h) => {
                if self.topics.get(&h.topic).is_none() {
                    return inb.fail(
                        ResponseCode::TopicNotExist,
                        format!(
                            "topic '{}' does not exist on broker {}",
                            h.topic, self.config.broker_name
                        ),
                    );
                }
                ok_body(&inb, &self.topic_stats(&h.topic));
            }
            other => inb.fail(
                ResponseCode::RequestCodeNotSupported,
                format!("request {} is not supported by this broker", other.code()),
            ),
        }
    }

    /// The `GET_BROKER_RUNTIME_INFO` table: identity, commit-log positions, whether writes
    /// are refused and why, and the damage the store found. Keys are RocketMQ's camelCase;
    /// everything comes from memory (the damage log is a small in-memory list).
    fn runtime_info(&self) -> KvTable {
        use std::sync::atomic::Ordering;
        let store = &self.store;
        let stats = store.stats();
        let (ranges, dropped) = store.damage();
        // The ranges go out as one JSON array in one value: a KVTable holds only strings,
        // and tools that want them split parse it (mqadmin prints one line per range).
        let damage: Vec<serde_json::Value> = ranges
            .iter()
            .map(|r| {
                serde_json::json!({
                    "from": r.from,
                    "to": r.to,
                    "bytes": r.bytes(),
                    "kind": r.kind,
                    "found_by": r.found_by,
                    "found_at": r.found_at,
                    "reason": r.reason,
                })
            })
            .collect();
        let role = match self.config.broker_role {
            BrokerRole::AsyncMaster => "ASYNC_MASTER",
            BrokerRole::SyncMaster => "SYNC_MASTER",
            BrokerRole::Slave => "SLAVE",
        };
        let ha = self.ha.state();
        let (ha_state, ha_lag, ha_detail) = if self.config.is_master() {
            let slaves = ha.slaves();
            // With no slave: what no slave holds (since the last acknowledgement).
            let lag = slaves.iter().map(|s| s.lag_bytes).min().unwrap_or_else(|| {
                store
                    .max_physical_offset()
                    .saturating_sub(store.replicated_offset())
            });
            let state = if slaves.is_empty() {
                "no slave connected".to_owned()
            } else {
                format!("{} slave(s), {} in sync", slaves.len(), ha.in_sync())
            };
            (
                state,
                lag,
                serde_json::to_string(&slaves).unwrap_or_default(),
            )
        } else {
            let link = ha.link();
            let lag = link.master_end.saturating_sub(store.max_physical_offset());
            (
                link.state.clone(),
                lag,
                serde_json::to_string(&link).unwrap_or_default(),
            )
        };
        let entries: [(&str, String); 21] = [
            ("brokerVersion", env!("CARGO_PKG_VERSION").to_owned()),
            (
                "brokerVersionDesc",
                format!("actimq {}", env!("CARGO_PKG_VERSION")),
            ),
            ("brokerClusterName", self.config.broker_cluster_name.clone()),
            ("brokerName", self.config.broker_name.clone()),
            ("brokerId", self.config.broker_id.to_string()),
            ("brokerRole", role.to_owned()),
            ("brokerAddr", self.advertised.clone()),
            (
                "commitLogMinOffset",
                store.min_physical_offset().to_string(),
            ),
            (
                "commitLogMaxOffset",
                store.max_physical_offset().to_string(),
            ),
            ("commitLogFlushedOffset", store.flushed_offset().to_string()),
            (
                "commitLogConfirmedOffset",
                store.confirmed_offset().to_string(),
            ),
            ("haState", ha_state),
            // A master: the smallest lag of its slaves; a slave: its own.
            ("haLagBytes", ha_lag.to_string()),
            ("haDetail", ha_detail),
            (
                "haAddress",
                self.ha.advertised().unwrap_or_default().to_owned(),
            ),
            (
                "openedClean",
                stats.opened_clean.load(Ordering::Relaxed).to_string(),
            ),
            (
                "writeRefused",
                self.write_refusal().unwrap_or_else(|| "false".to_owned()),
            ),
            ("damagedRanges", ranges.len().to_string()),
            (
                "damagedRecordsSkipped",
                stats
                    .damaged_records_skipped
                    .load(Ordering::Relaxed)
                    .to_string(),
            ),
            ("damageDropped", dropped.to_string()),
            ("damage", serde_json::Value::Array(damage).to_string()),
        ];
        KvTable {
            table: entries
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v))
                .collect(),
        }
    }
}
