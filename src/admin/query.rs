//! Looking messages up, as RocketMQ's `queryMsgBy*` commands do: by business key or by
//! unique id (`QUERY_MESSAGE` to every broker serving the topic, slaves included, answers
//! merged), by offset id (`VIEW_MESSAGE_BY_ID` to the broker the id names) and by queue
//! offset (a one-message pull from the queue's master, or a slave when it is away).
//!
//! This file owns those requests and [`FoundMessage`], the plain form of a message found.
//! It must never change anything on a broker (no offset is committed by a lookup).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use bytes::Bytes;
use serde::Serialize;

use super::{AdminClient, AdminError};
use crate::common::properties::parse_properties;
use crate::protocol::message::{
    PullMessageRequestHeader, QueryMessageRequestHeader, ViewMessageRequestHeader,
};
use crate::protocol::{RequestCode, ResponseCode};
use crate::storage::message_id::{decode_offset_msg_id, offset_msg_id};
use crate::storage::record::decode_records;
use crate::storage::StoredMessage;

/// Property names of RocketMQ's layout used here.
const PROPERTY_UNIQ_KEY: &str = "UNIQ_KEY";
const PROPERTY_KEYS: &str = "KEYS";
const PROPERTY_TAGS: &str = "TAGS";

/// Most messages one lookup asks each broker for (the broker's own cap is 64).
const MAX_FOUND: i32 = 64;

/// A message found by a lookup, with what `mqadmin queryMsgBy*` prints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundMessage {
    /// The topic.
    pub topic: String,
    /// The broker set that stored it (from the route; empty when the lookup went to an
    /// address directly).
    pub broker_name: String,
    /// Its queue.
    pub queue_id: u32,
    /// Its offset in that queue.
    pub queue_offset: u64,
    /// The producer's unique id (`UNIQ_KEY`), empty for a message sent without one.
    pub msg_id: String,
    /// The broker's offset id: its address and the commit-log offset.
    pub offset_msg_id: String,
    /// Its tag, if any.
    pub tags: Option<String>,
    /// Its business keys.
    pub keys: Vec<String>,
    /// Every property, by name.
    pub properties: BTreeMap<String, String>,
    /// When the broker stored it (ms since the epoch).
    pub store_timestamp: i64,
    /// When the producer created it (ms since the epoch).
    pub born_timestamp: i64,
    /// The producer's address.
    pub born_host: SocketAddr,
    /// The broker's address as stored in the record.
    pub store_host: SocketAddr,
    /// How many times it was sent back for another try.
    pub reconsume_times: i32,
    /// Its body.
    pub body: Bytes,
}

impl FoundMessage {
    pub(super) fn from_stored(m: StoredMessage, broker_name: &str) -> Self {
        let properties: BTreeMap<String, String> = parse_properties(&m.properties)
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        FoundMessage {
            msg_id: properties
                .get(PROPERTY_UNIQ_KEY)
                .cloned()
                .unwrap_or_default(),
            tags: properties.get(PROPERTY_TAGS).cloned(),
            keys: properties
                .get(PROPERTY_KEYS)
                .map(|k| {
                    k.split(' ')
                        .filter(|k| !k.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
            offset_msg_id: offset_msg_id(&m.store_host, m.physical_offset),
            topic: m.topic,
            broker_name: broker_name.to_owned(),
            queue_id: m.queue_id,
            queue_offset: m.queue_offset,
            properties,
            store_timestamp: m.store_timestamp,
            born_timestamp: m.born_timestamp,
            born_host: m.born_host,
            store_host: m.store_host,
            reconsume_times: m.reconsume_times,
            body: m.body,
        }
    }
}

impl AdminClient {
    /// Messages of `topic` whose business keys include `key` (`queryMsgByKey`), from every
    /// broker serving the topic, each message once (a slave's copy of a master's message
    /// counts once), oldest first.
    pub async fn query_by_key(
        &mut self,
        topic: &str,
        key: &str,
    ) -> Result<Vec<FoundMessage>, AdminError> {
        self.query(topic, key, false).await
    }

    /// Messages of `topic` whose unique id (`UNIQ_KEY`, what `SendResult::msg_id` returns)
    /// is `id` (`queryMsgByUniqueKey`).
    pub async fn query_by_unique_key(
        &mut self,
        topic: &str,
        id: &str,
    ) -> Result<Vec<FoundMessage>, AdminError> {
        let found = self.query(topic, id, true).await?;
        // The index is shared by keys and unique ids: keep the messages whose id it is.
        Ok(found.into_iter().filter(|m| m.msg_id == id).collect())
    }

    async fn query(
        &mut self,
        topic: &str,
        key: &str,
        unique_key: bool,
    ) -> Result<Vec<FoundMessage>, AdminError> {
        let route = self.route(topic).await?;
        let header = QueryMessageRequestHeader {
            topic: topic.to_owned(),
            key: key.to_owned(),
            max_num: MAX_FOUND,
            begin_timestamp: 0,
            end_timestamp: i64::MAX,
            unique_key,
        };
        let mut found: Vec<FoundMessage> = Vec::new();
        let mut seen: BTreeSet<(String, u64)> = BTreeSet::new();
        let mut answered = 0;
        let mut last_error = None;
        for set in &route.broker_datas {
            for addr in set.broker_addrs.values() {
                let frame = match self
                    .call(addr, RequestCode::QueryMessage, &header, Bytes::new())
                    .await
                {
                    Ok(f) => f,
                    Err(e) => {
                        last_error = Some(e);
                        continue;
                    }
                };
                answered += 1;
                if frame.response_code() != Some(ResponseCode::Success) {
                    // Nothing found there (QUERY_NOT_FOUND) or a refusal: other brokers may
                    // still have it.
                    continue;
                }
                let messages =
                    decode_records(&frame.body).map_err(|reason| AdminError::BadAnswer {
                        peer: addr.clone(),
                        reason,
                    })?;
                for m in messages {
                    // A master and its slaves hold the same record at the same offset.
                    if seen.insert((set.broker_name.clone(), m.physical_offset)) {
                        found.push(FoundMessage::from_stored(m, &set.broker_name));
                    }
                }
            }
        }
        if answered == 0 {
            if let Some(e) = last_error {
                return Err(e);
            }
        }
        found.sort_by_key(|m| (m.store_timestamp, m.broker_name.clone(), m.queue_offset));
        Ok(found)
    }

    /// The message an offset id names (`queryMsgById`): the id holds the storing broker's
    /// address and the commit-log offset.
    pub async fn query_by_offset_id(&mut self, id: &str) -> Result<FoundMessage, AdminError> {
        let (addr, offset) = decode_offset_msg_id(id).map_err(|e| AdminError::BadAnswer {
            peer: "the message id".into(),
            reason: format!("'{id}' is not an offset message id: {e}"),
        })?;
        let addr = addr.to_string();
        let header = ViewMessageRequestHeader {
            offset: offset as i64,
            topic: None,
        };
        let frame = self
            .call_ok(&addr, RequestCode::ViewMessageById, &header, Bytes::new())
            .await?;
        let mut messages = decode_records(&frame.body).map_err(|reason| AdminError::BadAnswer {
            peer: addr.clone(),
            reason,
        })?;
        if messages.is_empty() {
            return Err(AdminError::BadAnswer {
                peer: addr,
                reason: format!("no record at commit-log offset {offset}"),
            });
        }
        Ok(FoundMessage::from_stored(messages.remove(0), ""))
    }

    /// The message at `queue_offset` of queue `queue_id` of `topic` on broker set
    /// `broker_name` (`queryMsgByOffset`), read from its master, or from a slave while the
    /// master is away. `Ok(None)` when the queue holds nothing there.
    pub async fn query_by_queue_offset(
        &mut self,
        topic: &str,
        broker_name: &str,
        queue_id: u32,
        queue_offset: u64,
    ) -> Result<Option<FoundMessage>, AdminError> {
        let route = self.route(topic).await?;
        let Some(set) = route
            .broker_datas
            .iter()
            .find(|b| b.broker_name == broker_name)
        else {
            return Err(AdminError::Refused {
                peer: "the name servers".into(),
                code: "NO_SUCH_BROKER".into(),
                remark: format!("topic '{topic}' has no queues on broker '{broker_name}'"),
            });
        };
        let header = PullMessageRequestHeader {
            consumer_group: "mqadmin-query".into(),
            topic: topic.to_owned(),
            queue_id: queue_id as i32,
            queue_offset: queue_offset as i64,
            max_msg_nums: 1,
            ..Default::default()
        };
        let mut last_error = None;
        // The master first (id 0), then the slaves.
        for addr in set.broker_addrs.values() {
            match self.pull(addr, &header).await {
                Ok(outcome) => {
                    return Ok(outcome
                        .messages
                        .into_iter()
                        .find(|m| m.queue_offset == queue_offset)
                        .map(|m| FoundMessage::from_stored(m, broker_name)))
                }
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| AdminError::Refused {
            peer: "the name servers".into(),
            code: "NO_BROKER".into(),
            remark: format!("broker set '{broker_name}' has no registered broker"),
        }))
    }
}
