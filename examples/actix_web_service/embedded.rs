//! A name server and a broker inside this process, so the example runs on a machine where
//! no actimq cluster is running. A real deployment runs `mqnamesrv` and `mqbroker` instead
//! and points the service at them with `NAMESRV_ADDR`.

use std::time::{Duration, Instant};

use actimq::admin::{AdminClient, TopicSpec};
use actimq::server::{
    start_broker, start_namesrv, BrokerConfig, BrokerHandle, NamesrvConfig, NamesrvHandle,
    StoreConfig,
};
use anyhow::Context as _;

/// An embedded name server and broker, with their throw-away store.
pub struct EmbeddedCluster {
    namesrv: NamesrvHandle,
    broker: BrokerHandle,
    // Deleted when dropped, after the broker has closed its files.
    _store: tempfile::TempDir,
}

impl EmbeddedCluster {
    /// Starts a name server and a broker on free loopback ports, creates `topic` with 4
    /// queues, and returns once the name server routes it: from then on producers and
    /// consumers find the topic on their first try.
    pub async fn start(topic: &str) -> anyhow::Result<EmbeddedCluster> {
        let store = tempfile::tempdir().context("create a temporary store folder")?;
        let namesrv = start_namesrv(NamesrvConfig {
            listen_host: "127.0.0.1".into(),
            listen_port: 0,
            ..NamesrvConfig::default()
        })
        .await
        .context("start the embedded name server")?;
        let broker = start_broker(BrokerConfig {
            listen_host: "127.0.0.1".into(),
            listen_port: 0,
            namesrv_addr: namesrv.addr.to_string(),
            store: StoreConfig {
                store_path_root_dir: store.path().to_owned(),
                // Small files, not pre-touched: this store is deleted at exit.
                mapped_file_size_commit_log: 16 << 20,
                warm_mapped_file_enable: false,
                ..StoreConfig::default()
            },
            ..BrokerConfig::default()
        })
        .await
        .context("start the embedded broker")?;

        // Creating the topic on the broker makes it register again at once; the name
        // server routes the topic after that registration, so wait for the route rather
        // than let the first send (or the consumer's first rebalance) miss it.
        let ns = namesrv.addr.to_string();
        let mut admin = AdminClient::new(&ns, Duration::from_secs(3));
        admin
            .create_topic(&broker.addr.to_string(), &TopicSpec::new(topic).queues(4))
            .await
            .with_context(|| format!("create topic {topic}"))?;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match admin.route(topic).await {
                Ok(route) if !route.queue_datas.is_empty() => break,
                _ if Instant::now() >= deadline => {
                    anyhow::bail!("the name server {ns} did not route topic {topic} within 10 s")
                }
                _ => actimq::actix::clock::sleep(Duration::from_millis(50)).await,
            }
        }
        tracing::info!(
            namesrv = %namesrv.addr,
            broker = %broker.addr,
            "embedded name server and broker started"
        );
        Ok(EmbeddedCluster {
            namesrv,
            broker,
            _store: store,
        })
    }

    /// The name-server address clients use.
    pub fn namesrv_addr(&self) -> String {
        self.namesrv.addr.to_string()
    }

    /// Stops the broker gracefully (it unregisters and closes its store) and the name
    /// server accepting; the temporary store is deleted.
    pub async fn shutdown(self) {
        self.broker.shutdown().await;
        self.namesrv.stop_accepting();
    }
}
