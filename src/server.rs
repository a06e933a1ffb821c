//! The one entry point for running a name server and a broker inside a process: what the
//! `mqnamesrv` and `mqbroker` binaries do, for tests, examples and applications that embed
//! them. Both must run inside an actix system (`actix_rt::System`); each returns a handle
//! with the address it bound (ask for port 0 to get a free one) and a graceful `shutdown`.
//!
//! ```
//! use actimq::server::{start_broker, start_namesrv, BrokerConfig, NamesrvConfig, StoreConfig};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # actimq::actix::System::new().block_on(async {
//! let store = tempfile::tempdir()?;
//! let namesrv = start_namesrv(NamesrvConfig {
//!     listen_host: "127.0.0.1".into(),
//!     listen_port: 0, // any free port: namesrv.addr says which
//!     ..NamesrvConfig::default()
//! })
//! .await?;
//! let broker = start_broker(BrokerConfig {
//!     listen_host: "127.0.0.1".into(),
//!     listen_port: 0,
//!     namesrv_addr: namesrv.addr.to_string(),
//!     store: StoreConfig {
//!         store_path_root_dir: store.path().to_owned(),
//!         ..StoreConfig::default()
//!     },
//!     ..BrokerConfig::default()
//! })
//! .await?;
//! broker.wait_registered(std::time::Duration::from_secs(10)).await?;
//! // ... clients connect to namesrv.addr ...
//! broker.shutdown().await; // appends what it received, closes the store cleanly
//! namesrv.stop_accepting();
//! # Ok(())
//! # })
//! # }
//! ```
//!
//! For tests, examples and demos, [`LocalCluster`] does all of that in one call: a name
//! server and a broker on free loopback ports over a store folder you give it.
//!
//! This module re-exports the embedding entry points and owns only [`LocalCluster`], which
//! composes them; it never reaches into the actors beyond their handles.

use std::path::Path;
use std::time::Duration;

pub use crate::actors::server::broker::{start_broker, BrokerError, BrokerHandle};
pub use crate::actors::server::namesrv::{start_namesrv, NamesrvHandle};
pub use crate::config::{BrokerConfig, BrokerRole, NamesrvConfig};
pub use crate::storage::{DiskFullPolicy, FlushDiskType, StoreConfig};

use crate::admin::{AdminClient, AdminError, TopicSpec};

/// How long [`LocalCluster::start`] waits for the broker's first registration.
const REGISTRATION_WAIT: Duration = Duration::from_secs(10);

/// Why a [`LocalCluster`] could not start or do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    /// The name server could not listen.
    #[error("cannot start the name server: {0}")]
    Namesrv(#[source] std::io::Error),
    /// The broker could not start or register.
    #[error(transparent)]
    Broker(#[from] BrokerError),
    /// An admin request (creating a topic) failed.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// A topic was created but the name server's route did not show it in time.
    #[error("topic '{topic}' was created but its route did not appear within {waited_ms} ms")]
    TopicNotRouted {
        /// The topic.
        topic: String,
        /// How long it waited.
        waited_ms: u64,
    },
}

/// A name server and one master broker in this process, on free ports of 127.0.0.1, for
/// tests, examples and demos. Must run inside an actix system.
///
/// ```
/// use actimq::server::LocalCluster;
/// use actimq::{ClientConfig, ClientInstance, Message as MqMessage, Producer, ProducerConfig};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// actimq::actix::System::new().block_on(async {
///     let store = tempfile::tempdir()?;
///     let cluster = LocalCluster::start(store.path()).await?;
///     cluster.create_topic("Orders", 4).await?;
///
///     let client = ClientInstance::start(ClientConfig::new(cluster.namesrv_addr()))?;
///     let producer = Producer::start(client.clone(), ProducerConfig::new("orders-producer"));
///     let sent = producer.send(MqMessage::new("Orders", "order 42 created")).await?;
///     assert_eq!(sent.message_queue.topic, "Orders");
///
///     producer.shutdown().await;
///     ClientInstance::shutdown(&client).await;
///     cluster.shutdown().await;
///     Ok(())
/// })
/// # }
/// ```
pub struct LocalCluster {
    /// The name server.
    pub namesrv: NamesrvHandle,
    /// The broker (`broker-a` of cluster `DefaultCluster`).
    pub broker: BrokerHandle,
}

impl LocalCluster {
    /// Starts a name server and a broker storing under `store_dir` (created if missing;
    /// a store left there by an earlier run is recovered), and returns once the broker is
    /// registered, so clients find it straight away. Topics are created on first send
    /// (`auto_create_topic_enable`) or with [`LocalCluster::create_topic`].
    pub async fn start(store_dir: &Path) -> Result<LocalCluster, LocalClusterError> {
        Self::start_with(store_dir, |_| {}).await
    }

    /// [`LocalCluster::start`], with `tweak` applied to the broker's config first (flush
    /// mode, queue counts, ...). Its listen address and name server are set here.
    pub async fn start_with(
        store_dir: &Path,
        tweak: impl FnOnce(&mut BrokerConfig),
    ) -> Result<LocalCluster, LocalClusterError> {
        let namesrv = start_namesrv(NamesrvConfig {
            listen_host: "127.0.0.1".into(),
            listen_port: 0,
            ..NamesrvConfig::default()
        })
        .await
        .map_err(LocalClusterError::Namesrv)?;
        let mut config = BrokerConfig {
            store: StoreConfig {
                store_path_root_dir: store_dir.to_owned(),
                // Small segments: a demo should not reserve a gigabyte of disk.
                mapped_file_size_commit_log: 64 << 20,
                ..StoreConfig::default()
            },
            ..BrokerConfig::default()
        };
        tweak(&mut config);
        config.listen_host = "127.0.0.1".into();
        config.listen_port = 0;
        config.namesrv_addr = namesrv.addr.to_string();
        let broker = match start_broker(config).await {
            Ok(b) => b,
            Err(e) => {
                namesrv.stop_accepting();
                return Err(e.into());
            }
        };
        let cluster = LocalCluster { namesrv, broker };
        if let Err(e) = cluster.broker.wait_registered(REGISTRATION_WAIT).await {
            cluster.shutdown().await;
            return Err(e.into());
        }
        Ok(cluster)
    }

    /// The name server's address, for [`crate::ClientConfig::new`].
    pub fn namesrv_addr(&self) -> String {
        self.namesrv.addr.to_string()
    }

    /// Creates (or updates) `topic` with `queues` read and write queues, and returns once
    /// the name server's route has it.
    pub async fn create_topic(&self, topic: &str, queues: i32) -> Result<(), LocalClusterError> {
        let mut admin = AdminClient::new(&self.namesrv_addr(), Duration::from_secs(3));
        let spec = TopicSpec {
            read_queues: queues,
            write_queues: queues,
            ..TopicSpec::new(topic)
        };
        admin
            .create_topic(&self.broker.addr.to_string(), &spec)
            .await?;
        // The broker registers the new topic at once; wait until the route shows it.
        let deadline = std::time::Instant::now() + REGISTRATION_WAIT;
        loop {
            match admin.route(topic).await {
                Ok(route)
                    if route
                        .queue_datas
                        .iter()
                        .any(|q| q.read_queue_nums == queues) =>
                {
                    return Ok(())
                }
                Ok(_) | Err(AdminError::Refused { .. }) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(10)).await
                }
                Ok(_) | Err(AdminError::Refused { .. }) => {
                    return Err(LocalClusterError::TopicNotRouted {
                        topic: topic.to_owned(),
                        waited_ms: REGISTRATION_WAIT.as_millis() as u64,
                    })
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Stops the broker gracefully (its store is closed cleanly) and the name server.
    pub async fn shutdown(&self) {
        self.broker.shutdown().await;
        self.namesrv.stop_accepting();
    }
}
