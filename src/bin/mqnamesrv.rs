//! `mqnamesrv`: the routing registry. Loads its TOML config, listens, and serves until
//! SIGINT/SIGTERM.

// glibc malloc showed up as ~10 % of the hot path in profiles (fragmentation between
// threads); mimalloc's thread-local free lists take that off.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::PathBuf;
use std::process::ExitCode;

use actimq::internals::config::NamesrvConfig;
use actimq::server::start_namesrv;
use clap::Parser;

/// actimq name server: brokers register here, clients ask it for routes.
#[derive(Parser, Debug)]
#[command(name = "mqnamesrv", version, about)]
struct Args {
    /// TOML config file (see config/namesrv.toml); defaults apply without one.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Port to listen on (overrides the file; 0 picks a free one).
    #[arg(long = "listen-port")]
    listen_port: Option<u16>,
}

fn main() -> ExitCode {
    actimq::internals::cli::init_tracing();
    actimq::internals::cli::return_freed_memory();
    let args = Args::parse();
    let mut config = match NamesrvConfig::load(args.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mqnamesrv: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(port) = args.listen_port {
        config.listen_port = port;
    }
    if let Err(e) = config.validate() {
        eprintln!("mqnamesrv: {e}");
        return ExitCode::from(2);
    }
    let system = actix_rt::System::new();
    let result = system.block_on(async move {
        let stop = actimq::internals::cli::shutdown_signal();
        let handle = start_namesrv(config).await?;
        tracing::info!("mqnamesrv listening on {}", handle.addr);
        stop.await;
        tracing::info!("mqnamesrv stopping");
        handle.stop_accepting();
        Ok::<_, std::io::Error>(())
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mqnamesrv: {e}");
            ExitCode::FAILURE
        }
    }
}
