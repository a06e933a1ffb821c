//! A small request/response client over [`RemoteLink`] actors, for operators' tools
//! (`mqadmin`) and tests: name-server queries, topic administration, broker status, and
//! single sends and pulls. Applications use the producer and consumer actors instead.
//!
//! Every call names the peer it talked to in its error, and never panics on an answer.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use actix::Addr;
use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::actors::remote_link::{self, LinkConfig, LinkError, RemoteLink};
use crate::protocol::message::{
    PullMessageRequestHeader, PullMessageResponseHeader, SendMessageRequestHeader,
    SendMessageResponseHeader,
};
use crate::protocol::route::{ClusterInfo, GetRouteInfoRequestHeader, TopicList, TopicRouteData};
use crate::protocol::topic::{
    CreateTopicRequestHeader, GetTopicStatsInfoRequestHeader, KvTable, TopicStatsTable,
};
use crate::protocol::{Frame, NoHeader, RequestCode, ResponseCode};
use crate::storage::StoredMessage;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No name server address was given.
    #[error("no name server address: pass -n host:port or set NAMESRV_ADDR")]
    NoNamesrv,
    /// Every name server failed.
    #[error("no name server answered: {0}")]
    NamesrvUnreachable(String),
    /// The transport failed.
    #[error(transparent)]
    Link(#[from] LinkError),
    /// The peer answered with an error code.
    #[error("{peer} answered {code}: {remark}")]
    Refused {
        /// Who answered.
        peer: String,
        /// The response code.
        code: String,
        /// The peer's explanation.
        remark: String,
    },
    /// The answer could not be decoded.
    #[error("bad answer from {peer}: {reason}")]
    BadAnswer {
        /// Who answered.
        peer: String,
        /// What was wrong.
        reason: String,
    },
}

/// Outcome of one pull.
#[derive(Debug, Clone)]
pub struct PullOutcome {
    /// The broker's response code.
    pub code: ResponseCode,
    /// Offsets from the response header.
    pub header: PullMessageResponseHeader,
    /// Decoded messages (empty unless `code` is success).
    pub messages: Vec<StoredMessage>,
}

pub use crate::storage::record::decode_records;

/// An admin client.
pub struct AdminClient {
    namesrvs: Vec<String>,
    links: HashMap<String, Addr<RemoteLink>>,
    timeout: Duration,
}

impl AdminClient {
    /// A client for the `;`-separated name-server list (may be empty for broker-only use).
    /// Must be used inside an actix system.
    pub fn new(namesrv_addr: &str, timeout: Duration) -> Self {
        AdminClient {
            namesrvs: namesrv_addr
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            links: HashMap::new(),
            timeout,
        }
    }

    fn link(&mut self, addr: &str) -> Addr<RemoteLink> {
        self.links
            .entry(addr.to_owned())
            .or_insert_with(|| RemoteLink::start(addr, LinkConfig::default(), None))
            .clone()
    }

    /// Sends a request to `addr` and returns the successful answer.
    pub async fn call<H: Serialize>(
        &mut self,
        addr: &str,
        code: RequestCode,
        header: &H,
        body: Bytes,
    ) -> Result<Frame, AdminError> {
        let frame = Frame::request(code, 0, header, body).map_err(|e| AdminError::BadAnswer {
            peer: addr.to_owned(),
            reason: e.to_string(),
        })?;
        let link = self.link(addr);
        let answer = remote_link::call(&link, addr, frame, self.timeout).await?;
        Ok(answer)
    }

    /// Like [`AdminClient::call`], but an answer other than success is an error.
    pub async fn call_ok<H: Serialize>(
        &mut self,
        addr: &str,
        code: RequestCode,
        header: &H,
        body: Bytes,
    ) -> Result<Frame, AdminError> {
        let f = self.call(addr, code, header, body).await?;
        match f.response_code() {
            Some(ResponseCode::Success) => Ok(f),
            other => Err(AdminError::Refused {
                peer: addr.to_owned(),
                code: other
                    .map(|c| c.to_string())
                    .unwrap_or_else(|| f.code.to_string()),
                remark: f.remark.clone().unwrap_or_default(),
            }),
        }
    }

    fn body<T: DeserializeOwned>(addr: &str, f: &Frame) -> Result<T, AdminError> {
        f.decode_body().map_err(|e| AdminError::BadAnswer {
            peer: addr.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Asks each name server in turn until one answers successfully.
    async fn namesrv<H: Serialize, T: DeserializeOwned>(
        &mut self,
        code: RequestCode,
        header: &H,
    ) -> Result<T, AdminError> {
        if self.namesrvs.is_empty() {
            return Err(AdminError::NoNamesrv);
        }
        let mut errors = Vec::new();
        for addr in self.namesrvs.clone() {
            match self.call_ok(&addr, code, header, Bytes::new()).await {
                Ok(f) => return Self::body(&addr, &f),
                Err(e @ AdminError::Refused { .. }) => return Err(e),
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(AdminError::NamesrvUnreachable(errors.join("; ")))
    }

    /// Brokers and clusters known to the name servers.
    pub async fn cluster_info(&mut self) -> Result<ClusterInfo, AdminError> {
        self.namesrv(RequestCode::GetBrokerClusterInfo, &NoHeader {})
            .await
    }

    /// Every topic known to the name servers.
    pub async fn topic_list(&mut self) -> Result<TopicList, AdminError> {
        self.namesrv(RequestCode::GetAllTopicListFromNameserver, &NoHeader {})
            .await
    }

    /// The route of one topic.
    pub async fn route(&mut self, topic: &str) -> Result<TopicRouteData, AdminError> {
        let header = GetRouteInfoRequestHeader {
            topic: topic.to_owned(),
        };
        self.namesrv(RequestCode::GetRouteInfoByTopic, &header)
            .await
    }

    /// Creates or updates a topic on one broker.
    pub async fn update_topic(
        &mut self,
        broker: &str,
        header: &CreateTopicRequestHeader,
    ) -> Result<(), AdminError> {
        self.call_ok(
            broker,
            RequestCode::UpdateAndCreateTopic,
            header,
            Bytes::new(),
        )
        .await
        .map(|_| ())
    }

    /// Per-queue offsets of a topic on one broker.
    pub async fn topic_stats(
        &mut self,
        broker: &str,
        topic: &str,
    ) -> Result<TopicStatsTable, AdminError> {
        let header = GetTopicStatsInfoRequestHeader {
            topic: topic.to_owned(),
        };
        let f = self
            .call_ok(
                broker,
                RequestCode::GetTopicStatsInfo,
                &header,
                Bytes::new(),
            )
            .await?;
        Self::body(broker, &f)
    }

    /// A consumer group's progress on one broker: per queue, the broker's max offset and the
    /// group's committed offset.
    pub async fn consume_stats(
        &mut self,
        broker: &str,
        group: &str,
        topic: Option<&str>,
    ) -> Result<crate::protocol::topic::ConsumeStats, AdminError> {
        let header = crate::protocol::topic::GetConsumeStatsRequestHeader {
            consumer_group: group.to_owned(),
            topic: topic.map(str::to_owned),
        };
        let f = self
            .call_ok(broker, RequestCode::GetConsumeStats, &header, Bytes::new())
            .await?;
        Self::body(broker, &f)
    }

    /// One broker's runtime state (`GET_BROKER_RUNTIME_INFO`): RocketMQ-style keys such as
    /// `commitLogMaxOffset`, `writeRefused` and `damage` mapped to their values as text.
    pub async fn broker_runtime_info(
        &mut self,
        broker: &str,
    ) -> Result<BTreeMap<String, String>, AdminError> {
        let f = self
            .call_ok(
                broker,
                RequestCode::GetBrokerRuntimeInfo,
                &NoHeader {},
                Bytes::new(),
            )
            .await?;
        Self::body::<KvTable>(broker, &f).map(|kv| kv.table)
    }

    /// Sends one message (synchronously: returns once the broker stored it).
    pub async fn send(
        &mut self,
        broker: &str,
        header: &SendMessageRequestHeader,
        body: Bytes,
    ) -> Result<SendMessageResponseHeader, AdminError> {
        let f = self
            .call_ok(broker, RequestCode::SendMessage, header, body)
            .await?;
        f.decode_header().map_err(|e| AdminError::BadAnswer {
            peer: broker.to_owned(),
            reason: e.to_string(),
        })
    }

    /// Pulls from one queue. Not-found and offset-moved answers are outcomes, not errors.
    pub async fn pull(
        &mut self,
        broker: &str,
        header: &PullMessageRequestHeader,
    ) -> Result<PullOutcome, AdminError> {
        let f = self
            .call(broker, RequestCode::PullMessage, header, Bytes::new())
            .await?;
        let code = f.response_code().unwrap_or(ResponseCode::SystemError);
        let bad = |reason: String| AdminError::BadAnswer {
            peer: broker.to_owned(),
            reason,
        };
        match code {
            ResponseCode::Success
            | ResponseCode::PullNotFound
            | ResponseCode::PullRetryImmediately
            | ResponseCode::PullOffsetMoved => {
                let header: PullMessageResponseHeader =
                    f.decode_header().map_err(|e| bad(e.to_string()))?;
                let messages = if code == ResponseCode::Success {
                    decode_records(&f.body).map_err(bad)?
                } else {
                    Vec::new()
                };
                Ok(PullOutcome {
                    code,
                    header,
                    messages,
                })
            }
            _ => Err(AdminError::Refused {
                peer: broker.to_owned(),
                code: code.to_string(),
                remark: f.remark.unwrap_or_default(),
            }),
        }
    }
}
