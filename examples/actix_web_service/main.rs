//! An actix-web service that publishes orders to actimq and counts them as a push consumer
//! receives them (the service itself is in `app.rs`).
//!
//! ```text
//! cargo run --example actix_web_service                   # its own name server and broker
//! NAMESRV_ADDR=127.0.0.1:9876 cargo run --example actix_web_service -- --port 8080
//!
//! curl -X POST --data 'two books' http://127.0.0.1:8080/orders
//! curl -X POST --data 'two books' 'http://127.0.0.1:8080/orders?tag=Paid'
//! curl http://127.0.0.1:8080/stats                        # {"Created":1,"Paid":1}
//! ```
//!
//! Ctrl-C (or SIGTERM) stops it gracefully: the HTTP server, then the consumer, which
//! commits its offsets.

mod app;
mod embedded;

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context as _;
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(about = "An actix-web service that publishes and counts orders through actimq")]
struct Args {
    /// Name servers (`host:port;host:port`). Without one, the example starts a name server
    /// and a broker of its own, with a temporary store.
    #[arg(short = 'n', long, env = "NAMESRV_ADDR")]
    namesrv_addr: Option<String>,
    /// HTTP port on 127.0.0.1 (0: any free port).
    #[arg(short, long, env = "PORT", default_value_t = 8080)]
    port: u16,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    // `RUST_LOG=debug` for more; `info` shows the service starting and stopping.
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();

    let (namesrv_addr, embedded) = match args.namesrv_addr {
        Some(addr) => (addr, None),
        None => {
            let cluster = embedded::EmbeddedCluster::start(app::TOPIC).await?;
            (cluster.namesrv_addr(), Some(cluster))
        }
    };

    let served = serve(&namesrv_addr, args.port).await;
    // Also when the service failed to start: the embedded broker closes its store cleanly.
    if let Some(cluster) = embedded {
        cluster.shutdown().await;
    }
    served
}

/// Runs the service until a signal stops it, then shuts it down.
async fn serve(namesrv_addr: &str, port: u16) -> anyhow::Result<()> {
    let mut service =
        app::start(namesrv_addr, SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
    let base = format!("http://{}", service.http_addr);
    println!("order service on {base} (name server {namesrv_addr}); Ctrl-C stops it");
    println!("  curl -X POST --data 'two books' '{base}/orders?tag=Paid'");
    println!("  curl {base}/stats");

    // actix-web handles SIGINT and SIGTERM itself: this returns once its server stopped.
    service.http_stopped().await;
    // The client pieces do not stop on a signal: shut them down, and say how it went.
    service
        .shutdown()
        .await
        .context("stopped, but not cleanly")?;
    println!("stopped cleanly");
    Ok(())
}
