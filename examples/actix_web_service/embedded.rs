//! A name server and a broker inside this process, so the example runs on a machine where
//! no actimq cluster is running. A real deployment runs `mqnamesrv` and `mqbroker` instead
//! and points the service at them with `NAMESRV_ADDR`.

use actimq::server::LocalCluster;
use anyhow::Context as _;

/// An embedded name server and broker, with their throw-away store.
pub struct EmbeddedCluster {
    cluster: LocalCluster,
    // Deleted when dropped, after the broker has closed its files.
    _store: tempfile::TempDir,
}

impl EmbeddedCluster {
    /// Starts a name server and a broker on free loopback ports, creates `topic` with 4
    /// queues, and returns once the name server routes it: from then on producers and
    /// consumers find the topic on their first try.
    pub async fn start(topic: &str) -> anyhow::Result<EmbeddedCluster> {
        let store = tempfile::tempdir().context("create a temporary store folder")?;
        let cluster = LocalCluster::start_with(store.path(), |broker| {
            // Small files, not pre-touched: this store is deleted at exit.
            broker.store.mapped_file_size_commit_log = 16 << 20;
            broker.store.warm_mapped_file_enable = false;
        })
        .await
        .context("start the embedded name server and broker")?;
        cluster
            .create_topic(topic, 4)
            .await
            .with_context(|| format!("create topic {topic}"))?;
        tracing::info!(
            namesrv = %cluster.namesrv.addr,
            broker = %cluster.broker.addr,
            "embedded name server and broker started"
        );
        Ok(EmbeddedCluster {
            cluster,
            _store: store,
        })
    }

    /// The name-server address clients use.
    pub fn namesrv_addr(&self) -> String {
        self.cluster.namesrv_addr()
    }

    /// Stops the broker gracefully (it unregisters and closes its store) and the name
    /// server accepting; the temporary store is deleted.
    pub async fn shutdown(self) {
        self.cluster.shutdown().await;
    }
}
