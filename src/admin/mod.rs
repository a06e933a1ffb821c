//! The admin client: every request operators' tools make, behind methods that take and
//! return plain Rust types. `mqadmin` is a thin front end over it (it parses arguments and
//! prints); tests and embedding applications use it too. Applications that produce and
//! consume use the producer and consumer actors at the crate root instead.
//!
//! This module owns building admin requests and reading their answers. It must never
//! panic on an answer, never hold a lock or block the actix thread, and never print: the
//! caller decides what a person sees. Every error names the peer (or the cluster, group or
//! topic) involved, so its message says what to check.
//!
//! # Layout
//! - `transport`: the raw request/response calls ([`AdminClient::call`],
//!   [`AdminClient::call_ok`]) and the name-server fan-out every query uses.
//! - `topic`: clusters, routes and topics ([`TopicSpec`], [`AdminClient::create_topic`],
//!   [`AdminClient::delete_topic`], [`AdminClient::topic_status`], ...).
//! - `group`: consumer groups: progress per queue and who holds which queue.
//! - `message`: single sends and pulls, and sending or reading messages as a tool does.
//! - `broker`: one broker's runtime state ([`AdminClient::broker_status`]).
//!
//! # Example
//! ```no_run
//! # async fn demo() -> Result<(), actimq::admin::AdminError> {
//! use std::time::Duration;
//! use actimq::admin::{AdminClient, TopicSpec};
//!
//! let mut admin = AdminClient::new("127.0.0.1:9876", Duration::from_secs(3));
//! let brokers = admin
//!     .create_topic_in_cluster("DefaultCluster", &TopicSpec::new("Orders").queues(8))
//!     .await?;
//! for q in admin.topic_status("Orders").await? {
//!     println!("{} {} {}", q.queue.broker_name, q.queue.queue_id, q.max_offset);
//! }
//! # let _ = brokers;
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::time::Duration;

use actix::Addr;

use crate::actors::remote_link::{LinkError, RemoteLink};
use crate::{ClientConfig, ClientError, ClientInstance, Producer};

mod broker;
mod dlq;
mod group;
mod message;
mod query;
mod reset;
mod topic;
mod transport;

pub use broker::{BrokerStatus, DamageRange};
pub use dlq::Resent;
pub use group::{ConsumerAssignment, GroupProgress, QueueProgress};
pub use message::{ConsumeOptions, ConsumedMessage, PullOutcome, PRODUCER_GROUP};
pub use query::FoundMessage;
pub use topic::{ClusterBroker, QueueStatus, TopicSpec};
// Wire-level forms for this repository's tests and tools, not API.
#[doc(hidden)]
pub use topic::TopicRequest;

// The protocol types the client's methods return, so that callers name them from here.
pub use crate::protocol::group::MessageQueue;
pub use crate::protocol::route::{BrokerData, ClusterInfo, QueueData, TopicList, TopicRouteData};
#[doc(hidden)]
pub use crate::protocol::topic::CreateTopicRequestHeader;
pub use crate::protocol::topic::{
    ConsumeStats, OffsetWrapper, TopicOffset, TopicStatsTable, PERM_READ, PERM_READ_WRITE,
    PERM_WRITE,
};
#[doc(hidden)]
pub use crate::storage::record::decode_records;

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
    /// The request could not be encoded (a header or body the wire format cannot carry).
    #[error("could not encode the request to {peer}: {reason}")]
    Encode {
        /// Who the request was for.
        peer: String,
        /// What the encoder said.
        reason: String,
    },
    /// The name servers know no cluster of that name.
    #[error("cluster '{cluster}' is not known to the name servers")]
    UnknownCluster {
        /// The cluster asked for.
        cluster: String,
    },
    /// The cluster has no master broker registered, so nothing can be written to it.
    #[error(
        "cluster '{cluster}' has no master broker registered; start one or check its namesrv_addr"
    )]
    NoMaster {
        /// The cluster.
        cluster: String,
    },
    /// No consumer of the group is connected to any master broker.
    #[error("no consumer of group '{group}' is connected")]
    NoConsumer {
        /// The group.
        group: String,
    },
    /// A send or pull through the client (producer, pull consumer) failed.
    #[error(transparent)]
    Client(#[from] ClientError),
}

/// An admin client: one connection per peer, opened on first use and kept.
///
/// Must be used inside an actix system. Methods take `&mut self` because they open
/// connections lazily; one client serves one task at a time.
pub struct AdminClient {
    /// The name-server list as given, for the client instance
    /// ([`AdminClient::send_message`] and [`AdminClient::consume_messages`]).
    namesrv_addr: String,
    /// The same list split on `;`, asked in order by name-server queries.
    namesrvs: Vec<String>,
    /// One link per peer address, so repeated calls reuse the connection.
    links: HashMap<String, Addr<RemoteLink>>,
    /// How long one request may take.
    timeout: Duration,
    /// The client instance behind sends and consumes through the client, started on first
    /// use: queries and raw calls never need it.
    client: Option<Addr<ClientInstance>>,
    /// The producer of [`PRODUCER_GROUP`], started on the first
    /// [`AdminClient::send_message`].
    producer: Option<Producer>,
}

/// Closes the connections the client opened (a link's reader would otherwise keep it open
/// until the peer hangs up), and stops its client instance if it started one.
impl Drop for AdminClient {
    fn drop(&mut self) {
        for link in self.links.values() {
            link.do_send(crate::actors::remote_link::Close);
        }
        if let Some(client) = &self.client {
            ClientInstance::shutdown_later(client);
        }
    }
}

impl AdminClient {
    /// A client for the `;`-separated name-server list (may be empty for broker-only use).
    /// Must be used inside an actix system.
    pub fn new(namesrv_addr: &str, timeout: Duration) -> Self {
        AdminClient {
            namesrv_addr: namesrv_addr.to_owned(),
            namesrvs: namesrv_addr
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect(),
            links: HashMap::new(),
            timeout,
            client: None,
            producer: None,
        }
    }

    /// The name servers this client asks, in order.
    pub fn namesrv_addrs(&self) -> &[String] {
        &self.namesrvs
    }

    /// The client instance, started on first use.
    fn client_instance(&mut self) -> Result<Addr<ClientInstance>, AdminError> {
        if let Some(c) = &self.client {
            return Ok(c.clone());
        }
        let c = ClientInstance::start(ClientConfig::new(self.namesrv_addr.clone()))?;
        self.client = Some(c.clone());
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_namesrv_list_is_split_on_semicolons_and_blanks_dropped() {
        let admin = AdminClient::new(" a:1 ; ;b:2;", Duration::from_secs(1));
        assert_eq!(admin.namesrv_addrs(), ["a:1", "b:2"]);
        assert!(AdminClient::new("", Duration::from_secs(1))
            .namesrv_addrs()
            .is_empty());
    }

    #[test]
    fn errors_name_what_to_check() {
        let e = AdminError::UnknownCluster {
            cluster: "C".into(),
        };
        assert_eq!(
            e.to_string(),
            "cluster 'C' is not known to the name servers"
        );
        let e = AdminError::NoConsumer { group: "g".into() };
        assert_eq!(e.to_string(), "no consumer of group 'g' is connected");
    }
}
