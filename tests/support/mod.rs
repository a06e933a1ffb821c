//! An in-process actimq cluster for client integration tests, and helpers to wait for
//! conditions with a deadline.
//!
//! Use it from a test file with `mod support;`, inside an actix system:
//!
//! ```ignore
//! #[test]
//! fn my_test() {
//!     actix_rt::System::new().block_on(async {
//!         let mut cluster = TestCluster::start(2, 1).await; // 2 master brokers, 1 name server
//!         cluster.create_topic("T", 4).await;               // 4 queues on every broker
//!         let client = cluster.client();                    // a ClientInstance, fast timers
//!         // ... producers and consumers on `client` ...
//!         eventually(Duration::from_secs(10), "what we wait for", || async { true }).await;
//!         cluster.shutdown().await;
//!     });
//! }
//! ```
//!
//! Everything listens on 127.0.0.1 with OS-chosen ports and stores in a temporary folder
//! that lives as long as the [`TestCluster`]. Waits never sleep blindly: they poll a
//! condition and panic with a description when the deadline passes.

#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actimq::admin::AdminClient;
use actimq::internals::actors::broker::{start_broker, BrokerHandle};
use actimq::internals::actors::namesrv::{start_namesrv, NamesrvHandle};
use actimq::internals::config::{BrokerConfig, NamesrvConfig};
use actimq::internals::protocol::topic::{CreateTopicRequestHeader, PERM_READ_WRITE};
use actimq::internals::storage::StoreConfig;
use actimq::{
    ClientConfig, ClientError, ClientInstance, ConsumeResult, Message, MessageExt, MessageListener,
    MessageQueue, Producer, SendResult,
};
use actix::Addr;
use bytes::Bytes;
use futures_util::stream::StreamExt;
use tempfile::TempDir;

/// How long admin requests made by the helper may take.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(3);

/// How often [`eventually`] re-checks its condition.
pub const POLL_EVERY: Duration = Duration::from_millis(20);

/// Polls `condition` until it is true; panics naming `what` once `within` has passed.
/// The condition is checked once more after the deadline, so a slow last check still counts.
pub async fn eventually<F, Fut>(within: Duration, what: impl Display, condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    if !try_eventually(within, condition).await {
        panic!("timed out after {within:?} waiting for: {what}");
    }
}

/// Like [`eventually`], but answers whether the condition became true instead of panicking.
pub async fn try_eventually<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// Polls a plain (non-async) condition; see [`eventually`].
pub async fn eventually_sync(
    within: Duration,
    what: impl Display,
    mut condition: impl FnMut() -> bool,
) {
    eventually(within, what, || std::future::ready(condition())).await
}

/// An address on 127.0.0.1 where nothing listens (bound once, then released).
pub fn dead_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let addr = l.local_addr().expect("local addr");
    drop(l);
    addr.to_string()
}

/// The name of broker number `i`: broker-a, broker-b, ...
pub fn broker_name(i: usize) -> String {
    assert!(i < 26, "at most 26 brokers");
    format!("broker-{}", (b'a' + i as u8) as char)
}

/// Name servers and master brokers running in this actix system.
pub struct TestCluster {
    /// The name servers, in start order.
    pub namesrvs: Vec<NamesrvHandle>,
    /// The brokers, in start order (`brokers[i]` is named [`broker_name`]`(i)`).
    pub brokers: Vec<BrokerHandle>,
    /// An admin client over every name server.
    pub admin: AdminClient,
    dir: TempDir,
}

impl TestCluster {
    /// Starts `namesrvs` name servers and `brokers` master brokers (broker-a, broker-b, ...,
    /// all registering with every name server every 500 ms, each with its own store under
    /// one temporary folder), and waits until every name server lists every broker.
    pub async fn start(brokers: usize, namesrvs: usize) -> TestCluster {
        Self::start_with(brokers, namesrvs, |_, _| {}).await
    }

    /// [`TestCluster::start`], with `tweak(i, config)` applied to broker `i`'s config
    /// before it starts.
    pub async fn start_with(
        brokers: usize,
        namesrvs: usize,
        tweak: impl Fn(usize, &mut BrokerConfig),
    ) -> TestCluster {
        assert!(namesrvs >= 1, "a cluster needs a name server");
        let dir = tempfile::tempdir().expect("temp dir");
        let mut ns = Vec::new();
        for _ in 0..namesrvs {
            ns.push(
                start_namesrv(NamesrvConfig {
                    listen_host: "127.0.0.1".into(),
                    listen_port: 0,
                    ..NamesrvConfig::default()
                })
                .await
                .expect("start a name server"),
            );
        }
        let ns_addr = ns
            .iter()
            .map(|n| n.addr.to_string())
            .collect::<Vec<_>>()
            .join(";");
        let mut bs = Vec::new();
        for i in 0..brokers {
            let name = broker_name(i);
            let mut config = BrokerConfig {
                broker_name: name.clone(),
                listen_host: "127.0.0.1".into(),
                listen_port: 0,
                namesrv_addr: ns_addr.clone(),
                register_broker_interval: 500,
                store: StoreConfig {
                    store_path_root_dir: dir.path().join(&name),
                    mapped_file_size_commit_log: 16 << 20,
                    warm_mapped_file_enable: false,
                    ..StoreConfig::default()
                },
                ..BrokerConfig::default()
            };
            tweak(i, &mut config);
            bs.push(
                start_broker(config)
                    .await
                    .unwrap_or_else(|e| panic!("start {name}: {e}")),
            );
        }
        let cluster = TestCluster {
            admin: AdminClient::new(&ns_addr, ADMIN_TIMEOUT),
            namesrvs: ns,
            brokers: bs,
            dir,
        };
        for n in &cluster.namesrvs {
            let addr = n.addr.to_string();
            let want: Vec<(String, String)> = (0..brokers)
                .map(|i| (broker_name(i), cluster.broker_addr(i)))
                .collect();
            eventually(
                Duration::from_secs(10),
                format!("every broker registered with name server {addr}"),
                || {
                    let (addr, want) = (addr.clone(), want.clone());
                    async move {
                        let mut admin = AdminClient::new(&addr, ADMIN_TIMEOUT);
                        let Ok(info) = admin.cluster_info().await else {
                            return false;
                        };
                        want.iter().all(|(name, baddr)| {
                            info.broker_addr_table
                                .get(name)
                                .and_then(|b| b.master_addr())
                                == Some(baddr.as_str())
                        })
                    }
                },
            )
            .await;
        }
        cluster
    }

    /// The `;`-separated name-server list clients use.
    pub fn namesrv_addr(&self) -> String {
        self.namesrvs
            .iter()
            .map(|n| n.addr.to_string())
            .collect::<Vec<_>>()
            .join(";")
    }

    /// The address of broker `i`.
    pub fn broker_addr(&self, i: usize) -> String {
        self.brokers[i].addr.to_string()
    }

    /// The names of all brokers, in order.
    pub fn broker_names(&self) -> Vec<String> {
        (0..self.brokers.len()).map(broker_name).collect()
    }

    /// A folder inside the cluster's temporary folder (created), for consumers' local
    /// offset stores and the like.
    pub fn scratch_dir(&self, name: &str) -> std::path::PathBuf {
        let p = self.dir.path().join("scratch").join(name);
        std::fs::create_dir_all(&p).expect("create scratch dir");
        p
    }

    /// A client config for this cluster with fast timers (heartbeat and route refresh
    /// every second) and a fresh instance name, so every instance has its own client id.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new(self.namesrv_addr());
        c.heartbeat_broker_interval = Duration::from_secs(1);
        c.poll_name_server_interval = Duration::from_secs(1);
        c
    }

    /// Starts a new [`ClientInstance`] with [`TestCluster::client_config`].
    pub fn client(&self) -> Addr<ClientInstance> {
        ClientInstance::start(self.client_config()).expect("tests run inside an actix system")
    }

    /// Creates `topic` with `queues` read and write queues on every broker, and waits until
    /// every name server's route of it lists every broker with that many queues.
    pub async fn create_topic(&mut self, topic: &str, queues: i32) {
        let header = CreateTopicRequestHeader {
            topic: topic.into(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: PERM_READ_WRITE,
            ..Default::default()
        };
        for i in 0..self.brokers.len() {
            let addr = self.broker_addr(i);
            self.admin
                .update_topic(&addr, &header)
                .await
                .unwrap_or_else(|e| panic!("create topic {topic} on {addr}: {e}"));
        }
        let names = self.broker_names();
        for n in &self.namesrvs {
            let addr = n.addr.to_string();
            eventually(
                Duration::from_secs(10),
                format!("route of {topic} on {addr} lists every broker with {queues} queues"),
                || {
                    let (addr, names, topic) = (addr.clone(), names.clone(), topic.to_owned());
                    async move {
                        let mut admin = AdminClient::new(&addr, ADMIN_TIMEOUT);
                        let Ok(route) = admin.route(&topic).await else {
                            return false;
                        };
                        names.iter().all(|name| {
                            route.broker_datas.iter().any(|b| &b.broker_name == name)
                                && route.queue_datas.iter().any(|q| {
                                    &q.broker_name == name
                                        && q.read_queue_nums == queues
                                        && q.write_queue_nums == queues
                                })
                        })
                    }
                },
            )
            .await;
        }
    }

    /// Every queue of `topic` (all brokers), sorted, as the cluster was asked to create it.
    pub fn queues_of(&self, topic: &str, queues: i32) -> Vec<MessageQueue> {
        let mut out: Vec<MessageQueue> = self
            .broker_names()
            .into_iter()
            .flat_map(|b| {
                (0..queues).map(move |q| MessageQueue {
                    topic: topic.to_owned(),
                    broker_name: b.clone(),
                    queue_id: q,
                })
            })
            .collect();
        out.sort();
        out
    }

    /// The addresses of every broker, in order.
    pub fn broker_addrs(&self) -> Vec<String> {
        (0..self.brokers.len())
            .map(|i| self.broker_addr(i))
            .collect()
    }

    /// Max (next-to-write) offset of every queue of `topic` on every broker.
    pub async fn max_offsets(&mut self, topic: &str) -> BTreeMap<MessageQueue, i64> {
        max_offsets_on(&self.broker_addrs(), topic).await
    }

    /// Sum of [`TestCluster::max_offsets`]: messages stored in `topic` (from offset 0).
    pub async fn stored_count(&mut self, topic: &str) -> i64 {
        self.max_offsets(topic).await.values().sum()
    }

    /// Shuts every broker down (unregisters, persists offsets, closes the store cleanly)
    /// and stops the name servers accepting. The temporary folder goes with `self`.
    pub async fn shutdown(self) {
        for b in &self.brokers {
            b.shutdown().await;
        }
        for n in &self.namesrvs {
            n.stop_accepting();
        }
    }
}

/// Max (next-to-write) offset of every queue of `topic` on the given brokers, asked over a
/// fresh admin client (so it can run inside an [`eventually`] condition without borrowing
/// the cluster).
pub async fn max_offsets_on(brokers: &[String], topic: &str) -> BTreeMap<MessageQueue, i64> {
    let mut admin = AdminClient::new("", ADMIN_TIMEOUT);
    let mut out = BTreeMap::new();
    for addr in brokers {
        let stats = admin
            .topic_stats(addr, topic)
            .await
            .unwrap_or_else(|e| panic!("topic stats of {topic} on {addr}: {e}"));
        for (mq, o) in stats.offset_table {
            out.insert(mq, o.max_offset);
        }
    }
    out
}

/// Records every delivery a listener sees, by body; shareable between the listener and
/// the test (cheap to clone).
#[derive(Clone, Default)]
pub struct Inbox {
    inner: Arc<Mutex<InboxState>>,
}

#[derive(Default)]
struct InboxState {
    by_body: HashMap<Bytes, u32>,
    deliveries: u64,
    messages: Vec<MessageExt>,
    keep: bool,
}

impl Inbox {
    /// An inbox that counts only.
    pub fn new() -> Self {
        Inbox::default()
    }

    /// An inbox that also keeps every delivered message (for offset or property checks).
    pub fn keeping() -> Self {
        let i = Inbox::default();
        i.inner.lock().unwrap().keep = true;
        i
    }

    /// Records a batch.
    pub fn record(&self, msgs: &[MessageExt]) {
        let mut s = self.inner.lock().unwrap();
        for m in msgs {
            *s.by_body.entry(m.body().clone()).or_default() += 1;
            s.deliveries += 1;
            if s.keep {
                s.messages.push(m.clone());
            }
        }
    }

    /// A listener that records and answers `Success`.
    pub fn listener(&self) -> MessageListener {
        let me = self.clone();
        MessageListener::from_fn(move |msgs| {
            me.record(msgs);
            ConsumeResult::Success
        })
    }

    /// Distinct bodies seen.
    pub fn unique(&self) -> usize {
        self.inner.lock().unwrap().by_body.len()
    }

    /// Deliveries seen (duplicates included).
    pub fn deliveries(&self) -> u64 {
        self.inner.lock().unwrap().deliveries
    }

    /// Deliveries beyond the first of each body.
    pub fn duplicates(&self) -> u64 {
        let s = self.inner.lock().unwrap();
        s.by_body
            .values()
            .map(|&n| u64::from(n.saturating_sub(1)))
            .sum()
    }

    /// How many times `body` was delivered.
    pub fn count(&self, body: &[u8]) -> u32 {
        let s = self.inner.lock().unwrap();
        s.by_body.get(body).copied().unwrap_or(0)
    }

    /// Every delivery count, by body.
    pub fn counts(&self) -> HashMap<Bytes, u32> {
        self.inner.lock().unwrap().by_body.clone()
    }

    /// The kept messages (empty unless made with [`Inbox::keeping`]).
    pub fn messages(&self) -> Vec<MessageExt> {
        self.inner.lock().unwrap().messages.clone()
    }
}

/// Sends `msgs` synchronously with at most `concurrency` sends in flight; panics on the
/// first failure. Returns the results in completion order.
pub async fn send_all(
    producer: &Producer,
    msgs: impl IntoIterator<Item = Message>,
    concurrency: usize,
) -> Vec<SendResult> {
    let results: Vec<Result<SendResult, ClientError>> = futures_util::stream::iter(msgs)
        .map(|m| {
            let p = producer.clone();
            async move { p.send(m).await }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("send failed: {e}")))
        .collect()
}

/// Whether the consumers' assignments (from `assignment()` of each) are disjoint and
/// together cover exactly `all`, with each member's share in `per_member`.
pub fn is_partition(
    assignments: &[Vec<MessageQueue>],
    all: &[MessageQueue],
    per_member: std::ops::RangeInclusive<usize>,
) -> bool {
    let mut union: Vec<&MessageQueue> = assignments.iter().flatten().collect();
    let total = union.len();
    union.sort();
    union.dedup();
    total == union.len()
        && union.len() == all.len()
        && union.iter().zip(all).all(|(a, b)| *a == b)
        && assignments.iter().all(|a| per_member.contains(&a.len()))
}
