//! Errors an application sees from the client. Each names the topic, broker or limit
//! involved, so the message says what to do; nothing in the client panics on a broker's
//! answer.

/// Why a client operation failed.
///
/// Match on the variants to act on the cause (the enum is `#[non_exhaustive]`: keep a `_`
/// arm); the `Display` text names the topic, broker or limit and says what to do.
///
/// ```
/// use actimq::{ClientConfig, ClientError, ClientInstance, Message as MqMessage};
/// use actimq::{Producer, ProducerConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # actimq::actix::System::new().block_on(async {
/// # let store = tempfile::tempdir()?;
/// // A broker that does not create topics on first use.
/// let cluster = actimq::server::LocalCluster::start_with(store.path(), |broker| {
///     broker.auto_create_topic_enable = false;
/// })
/// .await?;
/// let client = ClientInstance::start(ClientConfig::new(cluster.namesrv_addr()))?;
/// let producer = Producer::start(client.clone(), ProducerConfig::new("p"));
///
/// match producer.send(MqMessage::new("NoSuchTopic", "hello")).await {
///     Err(ClientError::NoRoute { topic }) => println!("create '{topic}' first"),
///     // Retries on other brokers ran out: `last` is the last attempt's own error.
///     Err(ClientError::Exhausted { last: Some(cause), .. }) => println!("last cause: {cause}"),
///     Err(e) if e.is_retryable() => println!("try again later: {e}"),
///     Err(e) => println!("will not work as sent: {e}"),
///     Ok(r) => panic!("the topic does not exist, yet {} was stored", r.msg_id()),
/// }
///
/// // Input is checked before anything is sent.
/// let bad = producer.send(MqMessage::new("Orders", "x").with_tags("A\u{2}B")).await;
/// assert!(matches!(bad, Err(ClientError::MessageIllegal(_))));
/// # ClientInstance::shutdown(&client).await;
/// # cluster.shutdown().await;
/// # Ok(())
/// # })
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// No name server knows a route for the topic (and none could be auto-created).
    #[error("no route for topic '{topic}': no name server knows it; create it with `mqadmin updateTopic -t {topic}` or enable auto_create_topic_enable on a broker (`mqadmin clusterList` shows the registered brokers)")]
    NoRoute {
        /// The topic.
        topic: String,
    },
    /// The topic had a route, but no broker serving it is registered or reachable now (its
    /// brokers are down, or restarting): sends resume once one of them is back.
    #[error("topic '{topic}' has no reachable broker: it was served by {brokers}, which the name servers no longer list; check that those brokers are running")]
    TopicUnavailable {
        /// The topic.
        topic: String,
        /// The brokers that served it when it was last routed (name and address).
        brokers: String,
    },
    /// No name server answered.
    #[error("no name server reachable ({addrs}): {reason}")]
    NamesrvUnreachable {
        /// The addresses tried.
        addrs: String,
        /// The last error.
        reason: String,
    },
    /// A broker could not be reached or dropped the connection.
    #[error("broker {broker} unavailable: {reason}")]
    BrokerUnavailable {
        /// The broker's address.
        broker: String,
        /// What went wrong.
        reason: String,
    },
    /// Every attempt failed or the overall time ran out.
    #[error("{what} failed after {attempts} attempt(s) in {elapsed_ms} ms; last error: {}",
        .last.as_deref().map_or_else(|| "none: the time budget ran out first".to_owned(), |e| e.to_string()))]
    Exhausted {
        /// What was attempted.
        what: String,
        /// How many attempts were made.
        attempts: u32,
        /// Time spent.
        elapsed_ms: u64,
        /// The last attempt's error, to match on (`None` if the time ran out before any).
        #[source]
        last: Option<Box<ClientError>>,
    },
    /// The message breaks a rule (topic name, empty body, properties).
    #[error("message illegal: {0}")]
    MessageIllegal(String),
    /// The message is larger than allowed.
    #[error("message of {size} bytes exceeds max_message_size {max}")]
    MessageTooLarge {
        /// Body size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The broker refused for lack of permission.
    #[error("broker {broker} refused: no permission on topic '{topic}': {remark}")]
    NoPermission {
        /// The broker.
        broker: String,
        /// The topic.
        topic: String,
        /// The broker's explanation.
        remark: String,
    },
    /// The broker answered with an error code.
    #[error("broker {broker} answered {code}: {remark}")]
    Broker {
        /// The broker.
        broker: String,
        /// The response code's name.
        code: String,
        /// The broker's explanation.
        remark: String,
    },
    /// The client was started outside an actix system, whose event loop its actors need.
    #[error("the client must start inside an actix system: run it in actimq::actix::System::new().block_on(async {{ … }}), or under #[actix::main] / #[actix_web::main]")]
    NoActixSystem,
    /// Some consumed offsets could not be saved when a consumer shut down (its broker was
    /// unreachable, say): those messages will be delivered again to the group.
    #[error("consumer group '{group}': the offsets of {queues} queue(s) could not be saved at shutdown; their last messages will be delivered again")]
    OffsetsNotSaved {
        /// The consumer group.
        group: String,
        /// How many queues kept an unsaved offset.
        queues: usize,
    },
    /// The client or the actor was shut down.
    #[error("client is shut down")]
    Shutdown,
}

impl ClientError {
    /// Whether trying another broker may help.
    pub fn is_retryable(&self) -> bool {
        !matches!(
            self,
            ClientError::MessageIllegal(_)
                | ClientError::MessageTooLarge { .. }
                | ClientError::Shutdown
        )
    }
}
