//! `mqbroker`: stores and delivers messages. Loads its TOML config (flags override the file,
//! the file overrides defaults), opens the store, listens, registers with its name servers,
//! and on SIGINT/SIGTERM stops accepting, appends the sends it already received, unregisters,
//! flushes and closes the store cleanly before exiting 0.

// glibc malloc showed up as ~10 % of the hot path in profiles (fragmentation between
// threads); mimalloc's thread-local free lists take that off.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use actimq::internals::config::{BrokerConfig, BrokerRole};
use actimq::server::start_broker;
use clap::Parser;

/// actimq broker.
#[derive(Parser, Debug)]
#[command(name = "mqbroker", version, about)]
struct Args {
    /// TOML config file (see config/broker.toml); defaults apply without one.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Name servers, `host:port;host:port` (overrides the file; NAMESRV_ADDR is the fallback).
    #[arg(short = 'n', long = "namesrv-addr")]
    namesrv_addr: Option<String>,
    /// Port to listen on (0 picks a free one).
    #[arg(long = "listen-port")]
    listen_port: Option<u16>,
    /// Store root folder (store_path_root_dir).
    #[arg(long = "store-dir")]
    store_dir: Option<PathBuf>,
    /// Broker name (a master and its slaves share it).
    #[arg(long = "broker-name")]
    broker_name: Option<String>,
    /// Broker id: 0 for the master, 1.. for slaves.
    #[arg(long = "broker-id")]
    broker_id: Option<u64>,
    /// async_master, sync_master or slave.
    #[arg(long = "broker-role")]
    broker_role: Option<String>,
    /// Cluster name.
    #[arg(long = "broker-cluster-name")]
    broker_cluster_name: Option<String>,
}

fn apply(args: Args, config: &mut BrokerConfig) -> Result<(), String> {
    if let Some(v) = args.namesrv_addr {
        config.namesrv_addr = v;
    }
    if let Some(v) = args.listen_port {
        config.listen_port = v;
    }
    if let Some(v) = args.store_dir {
        config.store.store_path_root_dir = v;
    }
    if let Some(v) = args.broker_name {
        config.broker_name = v;
    }
    if let Some(v) = args.broker_id {
        config.broker_id = v;
    }
    if let Some(v) = args.broker_role {
        config.broker_role = match v.as_str() {
            "async_master" | "ASYNC_MASTER" => BrokerRole::AsyncMaster,
            "sync_master" | "SYNC_MASTER" => BrokerRole::SyncMaster,
            "slave" | "SLAVE" => BrokerRole::Slave,
            other => {
                return Err(format!(
                    "--broker-role '{other}': expected async_master, sync_master or slave"
                ))
            }
        };
    }
    if let Some(v) = args.broker_cluster_name {
        config.broker_cluster_name = v;
    }
    Ok(())
}

fn main() -> ExitCode {
    actimq::internals::cli::init_tracing();
    actimq::internals::cli::return_freed_memory();
    let args = Args::parse();
    let mut config = match BrokerConfig::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mqbroker: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = apply(args, &mut config) {
        eprintln!("mqbroker: {e}");
        return ExitCode::from(2);
    }
    if let Err(e) = config.validate() {
        eprintln!("mqbroker: {e}");
        return ExitCode::from(2);
    }
    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        let stop = actimq::internals::cli::shutdown_signal();
        tokio::pin!(stop);
        let (name, id) = (config.broker_name.clone(), config.broker_id);
        // A stop during start-up (a long recovery) is honoured at once: nothing is
        // acknowledged yet, and an interrupted recovery is redone at the next start.
        let handle = tokio::select! {
            started = start_broker(config) => started?,
            () = &mut stop => {
                tracing::info!("stopped during start-up");
                return Ok(());
            }
        };
        tracing::info!("mqbroker listening on {} ({name}, id {id})", handle.addr);
        stop.await;
        handle.shutdown().await;
        tracing::info!("mqbroker stopped cleanly");
        Ok::<_, actimq::server::BrokerError>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mqbroker: {e}");
            ExitCode::FAILURE
        }
    }
}
