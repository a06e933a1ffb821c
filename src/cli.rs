//! What the binaries share: logging set-up, waiting for a stop signal, and giving freed
//! memory back to the OS.
//!
//! Kept in the library so `src/bin/` stays thin. Never used by the actors themselves.

/// Logs through `tracing` to stderr; `RUST_LOG` picks the level (default `info`).
pub fn init_tracing() {
    init_tracing_with_default("info");
}

/// Like [`init_tracing`] with another default level (examples use `warn` to keep their own
/// output readable).
pub fn init_tracing_with_default(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Starts watching SIGINT and SIGTERM at once (so a signal that arrives during start-up is
/// not lost and does not kill the process uncleanly) and resolves when one arrives. Call it
/// before starting anything, inside the runtime, and await it afterwards.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let term = {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGTERM; only Ctrl-C stops this process");
                None
            }
        }
    };
    let ctrl_c = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        if let Some(mut term) = term {
            tokio::select! {
                _ = ctrl_c => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = ctrl_c.await;
    }
}

/// The name-server list for a client program: the value after `-n` on the command line, else
/// `NAMESRV_ADDR`, else `127.0.0.1:9876` (RocketMQ's tools behave the same way).
pub fn namesrv_from_args() -> String {
    std::env::args()
        .skip_while(|a| a != "-n")
        .nth(1)
        .or_else(|| std::env::var("NAMESRV_ADDR").ok())
        .unwrap_or_else(|| "127.0.0.1:9876".into())
}

/// How often freed memory is offered back to the OS (mimalloc returns what has been free
/// for its purge delay, 10 s by default).
const PURGE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Starts a thread that asks mimalloc, every few seconds, to give memory freed long enough
/// back to the OS. mimalloc does so only from inside its own calls, so a server that falls
/// idle after a burst (hundreds of connections closing at once) would otherwise keep the
/// burst's memory resident for good. Harmless when mimalloc is not the global allocator.
#[allow(unsafe_code)] // one FFI call without arguments to check
pub fn return_freed_memory() {
    let spawned = std::thread::Builder::new()
        .name("mem-purge".into())
        .spawn(|| loop {
            std::thread::sleep(PURGE_EVERY);
            // SAFETY: mi_collect takes no pointer and may be called from any thread.
            unsafe { libmimalloc_sys::mi_collect(false) };
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the memory purge thread; freed memory stays resident");
    }
}
