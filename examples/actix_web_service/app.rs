//! An actix-web service in front of actimq: what a web application that publishes and
//! consumes messages looks like.
//!
//! - `POST /orders?tag=Paid` (body: the order) publishes one message to topic `Orders`
//!   with a [`Producer`] and answers with where the broker stored it, or with the
//!   [`ClientError`] that stopped it (400 for a bad message, 503 while the topic or its
//!   brokers are unreachable).
//! - A [`PushConsumer`] of the same topic hands every message to an actix actor,
//!   [`OrderStats`], which counts messages per tag; `GET /stats` asks that actor for its
//!   counts with an ordinary actix message.
//! - [`RunningService::shutdown`] stops in dependency order: the HTTP server first (no new
//!   requests, so nothing new to send), then the consumer (it commits its offsets, so a
//!   restarted service does not see the same orders again), then the producer and the
//!   client instance.
//!
//! actix is taken from `actimq::actix`, so the actor here and the client's actors always
//! run on the same actix version.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use actimq::actix::prelude::*;
use actimq::{
    ClientConfig, ClientError, ClientInstance, ConsumeMessages, ConsumeResult,
    Message as MqMessage, MessageListener, Producer, ProducerConfig, PushConsumer,
    PushConsumerConfig, SendResult,
};
use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{get, post, web, App, HttpResponse, HttpServer};
use anyhow::Context as _;
use serde::{Deserialize, Serialize};

/// The topic orders are published to.
pub const TOPIC: &str = "Orders";
/// The tag of an order posted without `?tag=`.
pub const DEFAULT_TAG: &str = "Created";
const PRODUCER_GROUP: &str = "order-service-producers";
// Every instance of the service shares this group, so each order is counted by one of
// them (clustering mode); give each instance its own group to have every one count all.
const CONSUMER_GROUP: &str = "order-service-stats";

/// Counts consumed orders per tag. It is the push consumer's listener: the consumer sends
/// it [`ConsumeMessages`] and waits for its [`ConsumeResult`].
#[derive(Default)]
pub struct OrderStats {
    per_tag: BTreeMap<String, u64>,
}

impl Actor for OrderStats {
    type Context = Context<Self>;
}

impl Handler<ConsumeMessages> for OrderStats {
    // The verdict itself is the answer: `Success` commits past these messages,
    // `ReconsumeLater` has them delivered again.
    type Result = ConsumeResult;

    fn handle(
        &mut self,
        ConsumeMessages(msgs): ConsumeMessages,
        _: &mut Context<Self>,
    ) -> Self::Result {
        // Delivery is at least once: after a crash or a rebalance a message can come
        // twice. A count that must be exact would remember `m.unique_id()`s.
        for m in &msgs {
            let tag = m.tags().unwrap_or("(untagged)");
            *self.per_tag.entry(tag.to_owned()).or_default() += 1;
        }
        ConsumeResult::Success
    }
}

/// Asks [`OrderStats`] for its counts.
pub struct GetStats;

// Written out rather than `#[derive(Message)]`: the derive expands to `::actix::Message`,
// which only resolves in a crate that depends on `actix` itself, not only on actimq.
impl actimq::actix::Message for GetStats {
    type Result = BTreeMap<String, u64>;
}

impl Handler<GetStats> for OrderStats {
    type Result = MessageResult<GetStats>;

    fn handle(&mut self, _: GetStats, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.per_tag.clone())
    }
}

/// What every HTTP worker shares. Both handles are cheap clones that may be used from any
/// thread: actix-web runs its workers on threads of their own.
#[derive(Clone)]
struct AppState {
    producer: Producer,
    stats: Addr<OrderStats>,
}

#[derive(Deserialize)]
struct OrderQuery {
    tag: Option<String>,
}

/// The answer to a successful `POST /orders`.
#[derive(Serialize)]
struct Published {
    tag: String,
    /// The producer's id of the message: what to search the broker for.
    unique_id: String,
    offset_msg_id: String,
    topic: String,
    broker: String,
    queue_id: i32,
    queue_offset: u64,
    status: String,
}

impl Published {
    fn new(tag: String, r: SendResult) -> Self {
        Published {
            tag,
            status: format!("{:?}", r.status),
            unique_id: r.unique_id,
            offset_msg_id: r.offset_msg_id,
            topic: r.message_queue.topic,
            broker: r.message_queue.broker_name,
            queue_id: r.message_queue.queue_id,
            queue_offset: r.queue_offset,
        }
    }
}

#[post("/orders")]
async fn post_order(
    state: web::Data<AppState>,
    query: web::Query<OrderQuery>,
    body: web::Bytes,
) -> HttpResponse {
    let tag = query
        .into_inner()
        .tag
        .unwrap_or_else(|| DEFAULT_TAG.to_owned());
    // The body is handed over without a copy: both sides use `bytes::Bytes`.
    let msg = MqMessage::new(TOPIC, body).with_tags(tag.clone());
    // Awaiting the send holds this request until the broker has stored the message, so a
    // 200 means the order is durable; the worker serves other requests meanwhile.
    match state.producer.send(msg).await {
        Ok(r) => HttpResponse::Ok().json(Published::new(tag, r)),
        Err(e) => {
            let status = status_for(&e);
            tracing::warn!(%status, error = %e, "order not published");
            HttpResponse::build(status).json(serde_json::json!({ "error": e.to_string() }))
        }
    }
}

/// The HTTP status for a failed send: the caller's fault, the cluster's (try again), or
/// ours.
fn status_for(e: &ClientError) -> StatusCode {
    // A send that used up its attempts says so (`Exhausted`) and carries the last attempt's
    // error: that one says why.
    let cause = match e {
        ClientError::Exhausted {
            last: Some(last), ..
        } => last.as_ref(),
        other => other,
    };
    match cause {
        // Empty body, a tag with forbidden characters, too large: retrying will not help.
        ClientError::MessageIllegal(_) | ClientError::MessageTooLarge { .. } => {
            StatusCode::BAD_REQUEST
        }
        // The topic is not created yet, or its brokers or the name servers are down or
        // restarting, or the time ran out: the same request may succeed later.
        ClientError::NoRoute { .. }
        | ClientError::TopicUnavailable { .. }
        | ClientError::NamesrvUnreachable { .. }
        | ClientError::BrokerUnavailable { .. }
        | ClientError::Exhausted { .. }
        | ClientError::Shutdown => StatusCode::SERVICE_UNAVAILABLE,
        // `ClientError` is `#[non_exhaustive]`: new causes land here until handled above.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[get("/stats")]
async fn get_stats(state: web::Data<AppState>) -> HttpResponse {
    // The actor answers between two batches of messages, so the counts are consistent.
    match state.stats.send(GetStats).await {
        Ok(counts) => HttpResponse::Ok().json(counts),
        // Only if the actor has stopped, which it does not while the service runs.
        Err(e) => HttpResponse::InternalServerError()
            .json(serde_json::json!({ "error": format!("stats unavailable: {e}") })),
    }
}

/// The service, running: the HTTP server and the client pieces behind it.
pub struct RunningService {
    /// Where the HTTP server listens (with the actual port when port 0 was asked for).
    pub http_addr: SocketAddr,
    http: ServerHandle,
    // `None` once it has been awaited.
    http_task: Option<actix_web::rt::task::JoinHandle<std::io::Result<()>>>,
    consumer: PushConsumer,
    producer: Producer,
    client: Addr<ClientInstance>,
}

/// Starts the client (on the name servers at `namesrv_addr`, `host:port;host:port`), the
/// consumer and its counting actor, and the HTTP server on `http_addr`. Must run inside an
/// actix system (`#[actix_web::main]` gives one).
pub async fn start(namesrv_addr: &str, http_addr: SocketAddr) -> anyhow::Result<RunningService> {
    // Claim the port first: one already in use (the usual first failure) then stops the
    // service before any client actor exists or its consumer has joined a group.
    let listener =
        std::net::TcpListener::bind(http_addr).with_context(|| format!("listen on {http_addr}"))?;
    // The port actually bound, which differs from `http_addr`'s when that one was 0.
    let bound = listener.local_addr()?;

    // One client instance per process and name-server list: the producer and the consumer
    // share its connections, route cache and heartbeats.
    let client = ClientInstance::start(ClientConfig::new(namesrv_addr))?;
    let producer = Producer::start(client.clone(), ProducerConfig::new(PRODUCER_GROUP));

    let stats = OrderStats::default().start();
    let state = AppState {
        producer: producer.clone(),
        stats: stats.clone(),
    };
    // The factory runs once per worker thread; each gets a clone of the handles.
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(state.clone()))
            .service(post_order)
            .service(get_stats)
    })
    .listen(listener)?;

    // The default `ConsumeFromWhere::LastOffset`: a new group counts orders from now on,
    // and a restarted one resumes where it committed.
    let consumer = PushConsumer::start(
        client.clone(),
        PushConsumerConfig::new(CONSUMER_GROUP).subscribe(TOPIC, "*"),
        MessageListener::actor(stats.recipient()),
    )
    .await
    .context("start the push consumer")?;

    // `run` returns a future that must be polled for the server to answer its handle and
    // the OS signals (SIGINT, SIGTERM) it listens for: spawn it.
    let server = server.run();
    let http = server.handle();
    let http_task = actix_web::rt::spawn(server);
    tracing::info!(%bound, namesrv = namesrv_addr, "order service listening");

    Ok(RunningService {
        http_addr: bound,
        http,
        http_task: Some(http_task),
        consumer,
        producer,
        client,
    })
}

impl RunningService {
    /// Resolves once the HTTP server has stopped by itself: actix-web listens for SIGTERM
    /// (it lets requests in flight finish) and SIGINT / Ctrl-C (it drops them). The client
    /// pieces still run: call [`RunningService::shutdown`] next.
    pub async fn http_stopped(&mut self) {
        if let Some(task) = self.http_task.take() {
            report_http_end(task.await);
        }
    }

    /// Stops the HTTP server if it still runs (requests in flight finish; no new
    /// connection is accepted), then the consumer, the producer and the client instance.
    /// Returns what the consumer's shutdown reported: `Err(ClientError::OffsetsNotSaved)`
    /// means some orders will be delivered again to the next instance of the group.
    pub async fn shutdown(mut self) -> Result<(), ClientError> {
        self.http.stop(true).await;
        self.http_stopped().await;

        // Then the consumer: it stops pulling, lets the batch in hand finish, commits its
        // offsets and leaves the group, so another instance takes its queues over at once.
        let consumed = self.consumer.shutdown().await;
        match &consumed {
            Ok(()) => tracing::info!("consumer stopped; offsets committed"),
            Err(e) => tracing::warn!(error = %e, "consumer stopped"),
        }
        // No request can send any more (the HTTP server has stopped); sends still under
        // way finish before the producer leaves, then the instance unregisters what is
        // left and closes its connections.
        self.producer.shutdown().await;
        ClientInstance::shutdown(&self.client).await;
        consumed
    }
}

fn report_http_end(ended: Result<std::io::Result<()>, actix_web::rt::task::JoinError>) {
    match ended {
        Ok(Ok(())) => tracing::info!("HTTP server stopped"),
        Ok(Err(e)) => tracing::error!(error = %e, "HTTP server failed"),
        Err(e) => tracing::error!(error = %e, "HTTP server task ended abnormally"),
    }
}
