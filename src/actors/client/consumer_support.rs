//! Requests every consumer makes, as plain async functions over a [`ClientInstance`]:
//! finding a queue's broker, reading and committing offsets, pulling, listing a group's
//! members and a topic's queues, and the local offset file of broadcasting consumers.
//!
//! No state of its own; the consumer actors own what these functions read and write.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use bytes::Bytes;

use crate::actors::client::client_instance::{ClientInstance, GetLink, GetRoute};
use crate::actors::remote_link::{self, RemoteLink};
use crate::client::{ClientError, ConsumeFromWhere, MessageExt};
use crate::protocol::group::{
    GetConsumerListByGroupRequestHeader, GetConsumerListByGroupResponseBody,
};
use crate::protocol::group::{LockBatchRequestBody, LockBatchResponseBody, UnlockBatchRequestBody};
use crate::protocol::message::{
    GetMinOffsetRequestHeader, OffsetResponseHeader, PullMessageRequestHeader,
    PullMessageResponseHeader, QueryConsumerOffsetRequestHeader, SearchOffsetRequestHeader,
    UpdateConsumerOffsetRequestHeader, PULL_FLAG_SUBSCRIPTION, PULL_FLAG_SUSPEND,
};
use crate::protocol::topic::is_readable;
use crate::protocol::{encode_body, Frame, MessageQueue, NoHeader, RequestCode, ResponseCode};
use crate::storage::record::decode_records;

/// How long one plain request to a broker may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// A broker address and the link to it.
pub type BrokerLink = (String, Addr<RemoteLink>);

/// The master broker serving `mq` and the link to it.
pub async fn broker_for(
    client: &Addr<ClientInstance>,
    mq: &MessageQueue,
) -> Result<BrokerLink, ClientError> {
    let route = client
        .send(GetRoute {
            topic: mq.topic.clone(),
            refresh: false,
        })
        .await
        .map_err(|_| ClientError::Shutdown)??;
    let addr = route
        .broker_datas
        .iter()
        .find(|b| b.broker_name == mq.broker_name)
        .and_then(|b| b.master_addr())
        .ok_or_else(|| ClientError::BrokerUnavailable {
            broker: mq.broker_name.clone(),
            reason: format!(
                "no master of {} in the route of '{}'",
                mq.broker_name, mq.topic
            ),
        })?
        .to_owned();
    let link = client
        .send(GetLink(addr.clone()))
        .await
        .map_err(|_| ClientError::Shutdown)?;
    Ok((addr, link))
}

/// Where to read `mq` from, and whether that is a slave: its master while the master is in
/// the route and its link is not down; otherwise (after one route refresh, which finds a
/// master that came back under a new address) the first slave of the same broker name whose
/// link is not down. Reads and offsets only: orderly consumers and queue locks need the
/// master ([`broker_for`]).
pub async fn reader_for(
    client: &Addr<ClientInstance>,
    mq: &MessageQueue,
) -> Result<(BrokerLink, bool), ClientError> {
    let up = |addr: String| async move {
        let link = client
            .send(GetLink(addr.clone()))
            .await
            .map_err(|_| ClientError::Shutdown)?;
        let down = link
            .send(remote_link::IsDown)
            .await
            .map_err(|_| ClientError::Shutdown)?;
        Ok::<_, ClientError>((!down).then_some((addr, link)))
    };
    let members = |route: &crate::protocol::route::TopicRouteData| {
        route
            .broker_datas
            .iter()
            .find(|b| b.broker_name == mq.broker_name)
            .map(|b| b.broker_addrs.clone())
            .unwrap_or_default()
    };
    let route = |refresh| {
        client.send(GetRoute {
            topic: mq.topic.clone(),
            refresh,
        })
    };
    let cached = members(&route(false).await.map_err(|_| ClientError::Shutdown)??);
    if let Some(master) = cached.get(&crate::protocol::route::MASTER_ID) {
        if let Some(link) = up(master.clone()).await? {
            return Ok((link, false));
        }
    }
    let fresh = match route(true).await.map_err(|_| ClientError::Shutdown)? {
        Ok(r) => members(&r),
        Err(_) => cached,
    };
    let mut fallback = None;
    for (id, addr) in &fresh {
        if let Some(link) = up(addr.clone()).await? {
            return Ok((link, *id != crate::protocol::route::MASTER_ID));
        }
        fallback.get_or_insert((*id, addr.clone()));
    }
    // Nothing up: the master (or any member) anyway; the request fails and is retried.
    let (id, addr) = fallback.ok_or_else(|| ClientError::BrokerUnavailable {
        broker: mq.broker_name.clone(),
        reason: format!(
            "no broker of {} in the route of '{}'",
            mq.broker_name, mq.topic
        ),
    })?;
    let link = client
        .send(GetLink(addr.clone()))
        .await
        .map_err(|_| ClientError::Shutdown)?;
    Ok(((addr, link), id != crate::protocol::route::MASTER_ID))
}

/// The readable queues of a topic, sorted.
pub async fn read_queues(
    client: &Addr<ClientInstance>,
    topic: &str,
    refresh: bool,
) -> Result<Vec<MessageQueue>, ClientError> {
    let route = client
        .send(GetRoute {
            topic: topic.to_owned(),
            refresh,
        })
        .await
        .map_err(|_| ClientError::Shutdown)??;
    let mut out = Vec::new();
    for q in route.queue_datas.iter().filter(|q| is_readable(q.perm)) {
        for id in 0..q.read_queue_nums.max(0) {
            out.push(MessageQueue {
                topic: topic.to_owned(),
                broker_name: q.broker_name.clone(),
                queue_id: id,
            });
        }
    }
    out.sort();
    Ok(out)
}

async fn request<H: serde::Serialize>(
    link: &BrokerLink,
    code: RequestCode,
    header: &H,
    timeout: Duration,
) -> Result<Frame, ClientError> {
    let frame = Frame::request(code, 0, header, Bytes::new())
        .map_err(|e| ClientError::MessageIllegal(e.to_string()))?;
    remote_link::call(&link.1, &link.0, frame, timeout)
        .await
        .map_err(crate::actors::client::from_link)
}

fn refused(link: &BrokerLink, f: &Frame) -> ClientError {
    ClientError::Broker {
        broker: link.0.clone(),
        code: f
            .response_code()
            .map(|c| c.to_string())
            .unwrap_or_else(|| f.code.to_string()),
        remark: f.remark.clone().unwrap_or_default(),
    }
}

fn offset_of(link: &BrokerLink, f: &Frame) -> Result<u64, ClientError> {
    if f.response_code() != Some(ResponseCode::Success) {
        return Err(refused(link, f));
    }
    f.decode_header::<OffsetResponseHeader>()
        .map(|h| h.offset.max(0) as u64)
        .map_err(|e| ClientError::Broker {
            broker: link.0.clone(),
            code: "SUCCESS".into(),
            remark: e.to_string(),
        })
}

/// The group's committed offset of `mq`, `None` if it never committed.
pub async fn query_offset(
    link: &BrokerLink,
    group: &str,
    mq: &MessageQueue,
) -> Result<Option<u64>, ClientError> {
    Ok(query_offset_and_anchor(link, group, mq).await?.0)
}

/// The group's committed offset of `mq`, if any, and when the group first subscribed the
/// topic on that broker (`None` from a broker that does not keep it).
pub async fn query_offset_and_anchor(
    link: &BrokerLink,
    group: &str,
    mq: &MessageQueue,
) -> Result<(Option<u64>, Option<i64>), ClientError> {
    let h = QueryConsumerOffsetRequestHeader {
        consumer_group: group.to_owned(),
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        // Our consumers apply consume_from_where themselves, deterministically.
        set_zero_if_not_found: Some(false),
    };
    let f = request(link, RequestCode::QueryConsumerOffset, &h, REQUEST_TIMEOUT).await?;
    if f.response_code() == Some(ResponseCode::QueryNotFound) {
        // An older broker sends no header with "not found": no anchor then.
        let anchor = f
            .decode_header::<OffsetResponseHeader>()
            .ok()
            .and_then(|h| h.subscribed_since_ms);
        return Ok((None, anchor));
    }
    if f.response_code() != Some(ResponseCode::Success) {
        return Err(refused(link, &f));
    }
    let header = f
        .decode_header::<OffsetResponseHeader>()
        .map_err(|e| ClientError::Broker {
            broker: link.0.clone(),
            code: "SUCCESS".into(),
            remark: e.to_string(),
        })?;
    Ok((
        Some(header.offset.max(0) as u64),
        header.subscribed_since_ms,
    ))
}

/// When `group` first subscribed `topic`, as the earliest time any broker serving the topic
/// recorded (each records its first heartbeat from the group naming the topic). A broker
/// added, or a topic created on it, while every member was down has only the restart's
/// time; the others remember the original subscription. `None` if no broker knows.
pub async fn group_subscribed_since(
    client: &Addr<ClientInstance>,
    group: &str,
    topic: &str,
) -> Option<i64> {
    let queues = read_queues(client, topic, false).await.ok()?;
    let mut seen = BTreeSet::new();
    let mut earliest: Option<i64> = None;
    for mq in queues {
        // One question per broker is enough: the time is the group's and the topic's.
        if !seen.insert(mq.broker_name.clone()) {
            continue;
        }
        let Ok(link) = broker_for(client, &mq).await else {
            continue;
        };
        if let Ok((_, Some(since))) = query_offset_and_anchor(&link, group, &mq).await {
            earliest = Some(earliest.map_or(since, |e| e.min(since)));
        }
    }
    earliest
}

/// Commits the group's offset of `mq` and waits for the broker to take it.
pub async fn commit_offset(
    link: &BrokerLink,
    group: &str,
    mq: &MessageQueue,
    offset: u64,
) -> Result<(), ClientError> {
    let h = UpdateConsumerOffsetRequestHeader {
        consumer_group: group.to_owned(),
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        commit_offset: offset as i64,
        keep_larger: None,
    };
    let f = request(link, RequestCode::UpdateConsumerOffset, &h, REQUEST_TIMEOUT).await?;
    if f.response_code() == Some(ResponseCode::Success) {
        Ok(())
    } else {
        Err(refused(link, &f))
    }
}

/// Sends a message the group failed back to the master of the broker it came from
/// (`CONSUMER_SEND_MSG_BACK`): it is delivered again later from the group's retry topic, or
/// dead-lettered (`delay_level` -1, or after `max_reconsume_times`). Answered once the
/// broker stored it; the caller may then move its offset past the message.
pub async fn send_back(
    client: &Addr<ClientInstance>,
    group: &str,
    msg: &MessageExt,
    delay_level: i32,
    max_reconsume_times: u32,
) -> Result<(), ClientError> {
    let link = broker_for(client, &msg.queue).await?;
    let h = crate::protocol::message::ConsumerSendMsgBackRequestHeader {
        offset: msg.commit_log_offset() as i64,
        group: group.to_owned(),
        delay_level,
        origin_msg_id: msg.msg_id().map(str::to_owned),
        origin_topic: Some(msg.topic().to_owned()),
        max_reconsume_times: Some(max_reconsume_times.min(i32::MAX as u32) as i32),
    };
    let f = request(&link, RequestCode::ConsumerSendMsgBack, &h, REQUEST_TIMEOUT).await?;
    if f.response_code() == Some(ResponseCode::Success) {
        Ok(())
    } else {
        Err(refused(&link, &f))
    }
}

/// Announces a consumer to its client instance, tells the brokers at once, and starts its
/// group's first rebalance (shared by the push and lite pull consumers).
pub async fn join_group(
    client: &Addr<ClientInstance>,
    data: crate::protocol::group::ConsumerData,
    rebalancer: &Addr<crate::actors::client::rebalancer::Rebalancer>,
    reset: Option<actix::Recipient<crate::actors::client::client_instance::ResetOffsets>>,
) -> Result<(), ClientError> {
    use crate::actors::client::client_instance::{HeartbeatNow, RebalanceNow, RegisterConsumer};
    client
        .send(RegisterConsumer {
            data,
            rebalance: rebalancer.clone().recipient(),
            reset,
        })
        .await
        .map_err(|_| ClientError::Shutdown)?;
    let _ = client.send(HeartbeatNow).await;
    rebalancer.do_send(RebalanceNow);
    Ok(())
}

/// Sends a request whose payload is a MessagePack body (no header) and returns the answer
/// if it is a success.
async fn request_with_body<B: serde::Serialize>(
    link: &BrokerLink,
    code: RequestCode,
    body: &B,
) -> Result<Frame, ClientError> {
    let illegal = |e: crate::protocol::Error| ClientError::MessageIllegal(e.to_string());
    let frame = Frame::request(code, 0, &NoHeader {}, encode_body(body).map_err(illegal)?)
        .map_err(illegal)?;
    let f = remote_link::call(&link.1, &link.0, frame, REQUEST_TIMEOUT)
        .await
        .map_err(crate::actors::client::from_link)?;
    if f.response_code() == Some(ResponseCode::Success) {
        Ok(f)
    } else {
        Err(refused(link, &f))
    }
}

/// Locks queues of one broker for `client_id` (orderly consumption); answers those held.
pub async fn lock_queues(
    link: &BrokerLink,
    group: &str,
    client_id: &str,
    queues: BTreeSet<MessageQueue>,
) -> Result<BTreeSet<MessageQueue>, ClientError> {
    let body = LockBatchRequestBody {
        consumer_group: group.to_owned(),
        client_id: client_id.to_owned(),
        only_this_broker: true,
        mq_set: queues,
    };
    let f = request_with_body(link, RequestCode::LockBatchMq, &body).await?;
    f.decode_body::<LockBatchResponseBody>()
        .map(|b| b.lock_ok_mq_set)
        .map_err(|e| ClientError::Broker {
            broker: link.0.clone(),
            code: "SUCCESS".into(),
            remark: e.to_string(),
        })
}

/// Releases queue locks of `client_id`.
pub async fn unlock_queues(
    link: &BrokerLink,
    group: &str,
    client_id: &str,
    queues: BTreeSet<MessageQueue>,
) -> Result<(), ClientError> {
    let body = UnlockBatchRequestBody {
        consumer_group: group.to_owned(),
        client_id: client_id.to_owned(),
        only_this_broker: true,
        mq_set: queues,
    };
    request_with_body(link, RequestCode::UnlockBatchMq, &body)
        .await
        .map(|_| ())
}

/// How much earlier than the consumer's start a `LastOffset` group starts reading, so that
/// a broker clock slightly behind the client's does not skip messages stored just after
/// the start (those stored in the margin before it are delivered too: at least once).
pub const SUBSCRIBE_CLOCK_MARGIN_MS: i64 = 1_000;

/// Where "the group subscribed" is for each topic, as far as one rebalance run needs it:
/// this consumer's start, or earlier if a broker remembers the group from before. Asked of
/// the brokers at most once per topic and run, and only for a queue without an offset.
pub struct SubscriptionAnchors {
    own_start_ms: i64,
    known: HashMap<String, i64>,
}

impl SubscriptionAnchors {
    /// Anchors no earlier than `own_start_ms` (this consumer's start) until a broker says so.
    pub fn new(own_start_ms: i64) -> Self {
        SubscriptionAnchors {
            own_start_ms,
            known: HashMap::new(),
        }
    }

    /// When `group` subscribed `topic`: the earlier of this consumer's start and what the
    /// topic's brokers recorded.
    pub async fn since(&mut self, client: &Addr<ClientInstance>, group: &str, topic: &str) -> i64 {
        if let Some(since) = self.known.get(topic) {
            return *since;
        }
        let since = match group_subscribed_since(client, group, topic).await {
            Some(recorded) => recorded.min(self.own_start_ms),
            None => self.own_start_ms,
        };
        self.known.insert(topic.to_owned(), since);
        since
    }
}

/// Where a consumer with no committed offset on `mq` starts. `LastOffset` means "what is
/// stored from the moment the group subscribed" (`subscribed_at_ms`: the earlier of this
/// consumer's start and [`group_subscribed_since`]): the end of a queue that already held
/// messages then, and the start of one that appeared later (a topic created after the
/// group subscribed, a broker added, more queues, even while every member was down), so
/// nothing sent after the subscription is skipped. `Timestamp` starts at `timestamp`, `FirstOffset` at
/// the oldest message kept. A start that leaves stored messages undelivered is logged.
pub async fn initial_offset(
    link: &BrokerLink,
    group: &str,
    mq: &MessageQueue,
    from: ConsumeFromWhere,
    timestamp: i64,
    subscribed_at_ms: i64,
) -> Result<u64, ClientError> {
    // A group's retry topic holds only its own failures: all of them are its to consume,
    // whenever they were stored (RocketMQ starts retry topics at 0 too).
    let from = if mq
        .topic
        .starts_with(crate::common::names::RETRY_GROUP_TOPIC_PREFIX)
    {
        ConsumeFromWhere::FirstOffset
    } else {
        from
    };
    let start = start_offset(link, mq, from, timestamp, subscribed_at_ms).await?;
    if from != ConsumeFromWhere::FirstOffset {
        let h = GetMinOffsetRequestHeader {
            topic: mq.topic.clone(),
            queue_id: mq.queue_id,
        };
        let f = request(link, RequestCode::GetMinOffset, &h, REQUEST_TIMEOUT).await?;
        let min = offset_of(link, &f)?;
        if start > min {
            tracing::info!(group, queue = ?mq, start, oldest = min, ?from,
                "group starts this queue past stored messages: offsets {min}..{start} were stored before the group subscribed and are not delivered (consume_from_where)");
        }
    }
    Ok(start)
}

async fn start_offset(
    link: &BrokerLink,
    mq: &MessageQueue,
    from: ConsumeFromWhere,
    timestamp: i64,
    subscribed_at_ms: i64,
) -> Result<u64, ClientError> {
    let f = match from {
        ConsumeFromWhere::LastOffset => {
            let h = SearchOffsetRequestHeader {
                topic: mq.topic.clone(),
                queue_id: mq.queue_id,
                timestamp: subscribed_at_ms - SUBSCRIBE_CLOCK_MARGIN_MS,
                ..Default::default()
            };
            request(
                link,
                RequestCode::SearchOffsetByTimestamp,
                &h,
                REQUEST_TIMEOUT,
            )
            .await?
        }
        ConsumeFromWhere::FirstOffset => {
            let h = GetMinOffsetRequestHeader {
                topic: mq.topic.clone(),
                queue_id: mq.queue_id,
            };
            request(link, RequestCode::GetMinOffset, &h, REQUEST_TIMEOUT).await?
        }
        ConsumeFromWhere::Timestamp => {
            let h = SearchOffsetRequestHeader {
                topic: mq.topic.clone(),
                queue_id: mq.queue_id,
                timestamp,
                ..Default::default()
            };
            request(
                link,
                RequestCode::SearchOffsetByTimestamp,
                &h,
                REQUEST_TIMEOUT,
            )
            .await?
        }
    };
    offset_of(link, &f)
}

/// Result of one pull.
#[derive(Debug, Clone)]
pub struct Pulled {
    /// The broker's code (success, not found, retry, offset moved).
    pub code: ResponseCode,
    /// Offsets from the answer.
    pub header: PullMessageResponseHeader,
    /// Messages (success only), not yet filtered by exact tag.
    pub messages: Vec<MessageExt>,
}

/// Pulls from `mq`; with `suspend` the broker may hold the request until a message lands.
pub async fn pull(
    link: &BrokerLink,
    group: &str,
    mq: &MessageQueue,
    offset: u64,
    max: i32,
    expression: &str,
    suspend: Option<Duration>,
) -> Result<Pulled, ClientError> {
    let mut sys_flag = PULL_FLAG_SUBSCRIPTION;
    if suspend.is_some() {
        sys_flag |= PULL_FLAG_SUSPEND;
    }
    let h = PullMessageRequestHeader {
        consumer_group: group.to_owned(),
        topic: mq.topic.clone(),
        queue_id: mq.queue_id,
        queue_offset: offset as i64,
        max_msg_nums: max,
        sys_flag,
        suspend_timeout_millis: suspend.map(|d| d.as_millis() as i64).unwrap_or(0),
        subscription: Some(expression.to_owned()),
        expression_type: Some("TAG".into()),
        ..Default::default()
    };
    let timeout = suspend.unwrap_or_default() + Duration::from_secs(10);
    let f = request(link, RequestCode::PullMessage, &h, timeout).await?;
    let code = f.response_code().unwrap_or(ResponseCode::SystemError);
    match code {
        ResponseCode::Success
        | ResponseCode::PullNotFound
        | ResponseCode::PullRetryImmediately
        | ResponseCode::PullOffsetMoved => {
            let header: PullMessageResponseHeader =
                f.decode_header().map_err(|e| ClientError::Broker {
                    broker: link.0.clone(),
                    code: code.to_string(),
                    remark: e.to_string(),
                })?;
            let messages = if code == ResponseCode::Success {
                decode_records(&f.body)
                    .map_err(|e| ClientError::Broker {
                        broker: link.0.clone(),
                        code: code.to_string(),
                        remark: e,
                    })?
                    .into_iter()
                    .map(|stored| MessageExt {
                        queue: mq.clone(),
                        queue_offset: stored.queue_offset,
                        reconsume_times: stored.reconsume_times.max(0) as u32,
                        stored,
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Ok(Pulled {
                code,
                header,
                messages,
            })
        }
        _ => Err(refused(link, &f)),
    }
}

/// The ids of a group's members, sorted, as one broker serving `topic` knows them.
pub async fn consumer_ids(
    client: &Addr<ClientInstance>,
    group: &str,
    topic: &str,
) -> Result<Vec<String>, ClientError> {
    let queues = read_queues(client, topic, false).await?;
    let mut last = ClientError::NoRoute {
        topic: topic.to_owned(),
    };
    let mut brokers: Vec<&str> = queues.iter().map(|q| q.broker_name.as_str()).collect();
    brokers.dedup();
    for b in brokers {
        let mq = MessageQueue {
            topic: topic.to_owned(),
            broker_name: b.to_owned(),
            queue_id: 0,
        };
        // The slave of a broker whose master is away knows the members too (they heartbeat
        // to it).
        let link = match reader_for(client, &mq).await {
            Ok((l, _)) => l,
            Err(e) => {
                last = e;
                continue;
            }
        };
        let h = GetConsumerListByGroupRequestHeader {
            consumer_group: group.to_owned(),
        };
        match request(
            &link,
            RequestCode::GetConsumerListByGroup,
            &h,
            REQUEST_TIMEOUT,
        )
        .await
        {
            Ok(f) if f.response_code() == Some(ResponseCode::Success) => {
                if let Ok(body) = f.decode_body::<GetConsumerListByGroupResponseBody>() {
                    let mut ids = body.consumer_id_list;
                    ids.sort();
                    return Ok(ids);
                }
            }
            Ok(f) => last = refused(&link, &f),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Offsets of a broadcasting consumer, kept in a local file (the broker keeps none).
#[derive(Debug, Clone)]
pub struct LocalOffsets {
    path: PathBuf,
    /// Serialises saves (read, merge, replace), which may run on different blocking threads.
    saving: Arc<parking_lot::Mutex<()>>,
}

fn key(mq: &MessageQueue) -> String {
    format!("{}@{}@{}", mq.topic, mq.broker_name, mq.queue_id)
}

impl LocalOffsets {
    /// The offsets file of `group` under `dir`. The same on every start, so a restarted
    /// consumer resumes; consumers of one group on one machine need their own `dir`.
    pub fn new(dir: PathBuf, group: &str) -> Self {
        LocalOffsets {
            path: dir.join(format!("{group}.toml")),
            saving: Arc::new(parking_lot::Mutex::new(())),
        }
    }

    /// Everything stored.
    pub fn load(&self) -> BTreeMap<String, u64> {
        std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| toml::from_str(&t).ok())
            .unwrap_or_default()
    }

    /// One queue's offset.
    pub fn get(&self, mq: &MessageQueue) -> Option<u64> {
        self.load().get(&key(mq)).copied()
    }

    /// Merges and saves offsets. Blocking (it fsyncs): see [`LocalOffsets::save_off_thread`].
    pub fn save(&self, offsets: &BTreeMap<MessageQueue, u64>) -> Result<(), ClientError> {
        let _one_at_a_time = self.saving.lock();
        let mut all = self.load();
        for (mq, o) in offsets {
            all.insert(key(mq), *o);
        }
        let text = toml::to_string(&all).map_err(|e| ClientError::MessageIllegal(e.to_string()))?;
        crate::common::fs::write_atomically(&self.path, text.as_bytes()).map_err(|e| {
            ClientError::BrokerUnavailable {
                broker: "local offset store".into(),
                reason: e.to_string(),
            }
        })
    }

    /// [`LocalOffsets::save`] on tokio's blocking pool, so the consumer's actor thread never
    /// waits for the disk.
    pub async fn save_off_thread(
        &self,
        offsets: BTreeMap<MessageQueue, u64>,
    ) -> Result<(), ClientError> {
        let me = self.clone();
        tokio::task::spawn_blocking(move || me.save(&offsets))
            .await
            .map_err(|e| ClientError::BrokerUnavailable {
                broker: "local offset store".into(),
                reason: format!("the thread saving offsets stopped early: {e}"),
            })?
    }
}
