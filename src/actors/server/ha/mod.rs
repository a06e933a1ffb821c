//! Master/slave replication (RocketMQ's HA service): a master streams its commit log to
//! its slaves over a socket of its own, and keeps each slave's acknowledged offset.
//!
//! - [`acceptor::HaAcceptor`] (master): listens on `ha_listen_port`, starts one
//!   [`session::HaSession`] per slave, and turns the slaves' acknowledgements into the
//!   store's replicated offset (the `min_in_sync_replicas`-th highest) and a
//!   [`ReplicaProgress`] for the broker, which answers `sync_master` sends with it.
//! - [`session::HaSession`] (master, one per slave): checks that the slave's log is a
//!   prefix of the master's, then ships verified chunks of whole records from where the
//!   slave ends, never past what the master confirmed locally (flushed, under
//!   `sync_flush`), at most [`WINDOW_BYTES`] ahead of the slave's acknowledgement.
//! - [`slave_link::HaSlaveLink`] (slave, supervised): connects to the master, appends what
//!   arrives byte for byte through the store's raw-append path (which dispatches queues and
//!   index as recovery does), and acknowledges after every chunk and every second.
//!
//! Nothing here blocks the broker's event loop: log reads and appends run on tokio's
//! blocking threads. What it must never do: write bytes past a divergence (a slave whose
//! log is not a prefix of its master's stops and says why), or ship a record that fails
//! its checks.

pub mod acceptor;
pub mod session;
pub mod slave_link;
mod wire;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix::prelude::*;
use parking_lot::Mutex;
use serde::Serialize;

/// Most bytes of records in one chunk (one larger record travels whole).
pub const CHUNK_BYTES: usize = 1024 * 1024;
/// Most bytes a master sends ahead of a slave's acknowledgement.
pub const WINDOW_BYTES: u64 = 8 * 1024 * 1024;
/// How often each side speaks when it has nothing else to say.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A peer silent for this long is taken as gone (a hung process, not only a dead one).
pub const SILENCE_LIMIT: Duration = Duration::from_secs(5);

/// The master's replicated offset moved: sends whose records end at or below it are held
/// by enough slaves (see `Broker`'s `sync_master` answers).
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct ReplicaProgress(pub u64);

/// The slave appended records its master shipped: held pulls may be answered.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct SlaveAppended;

/// The broker's log grew (or became durable): sessions with a caught-up slave ship more.
#[derive(Message, Debug, Clone, Copy)]
#[rtype(result = "()")]
pub struct LogGrew;

/// The broker reopened its store: use this handle (a session closes, the slave's link
/// reconnects from the new handle's end).
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct UseStore(pub std::sync::Arc<crate::storage::MessageStore>);

/// One slave as its master sees it.
#[derive(Debug, Clone, Serialize)]
pub struct SlaveView {
    /// The slave's socket address.
    pub addr: String,
    /// Its `broker_id`.
    pub broker_id: u64,
    /// Below this offset the slave said it holds every byte.
    pub acked_offset: u64,
    /// What the master has that the slave has not acknowledged.
    pub lag_bytes: u64,
    /// `streaming`, `handshake` or `stopped: <why>`.
    pub state: String,
}

/// A slave's link to its master as the slave sees it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkView {
    /// The master's HA address, once known.
    pub master: Option<String>,
    /// `idle`, `connecting`, `streaming`, `down: <why>` or `refused: <why>`.
    pub state: String,
    /// The end of the master's log as last announced.
    pub master_end: u64,
}

/// What the replication actors show to the broker's status requests (runtime info,
/// `mqadmin haStatus`, `clusterList`), written by them and read without a message.
#[derive(Debug, Default)]
pub struct HaState {
    slaves: Mutex<BTreeMap<u64, SlaveView>>,
    link: Mutex<LinkView>,
    /// Slaves within `ha_slave_fallbehind_max` of the master's end, as last counted.
    in_sync: AtomicUsize,
    /// Sessions with a slave connected (the broker tells the acceptor of appends only then).
    connected: AtomicUsize,
}

impl HaState {
    /// The master's slaves, by session.
    pub fn slaves(&self) -> Vec<SlaveView> {
        self.slaves.lock().values().cloned().collect()
    }

    /// The slave's link.
    pub fn link(&self) -> LinkView {
        self.link.lock().clone()
    }

    /// Slaves close enough to count for a `sync_master` send.
    pub fn in_sync(&self) -> usize {
        self.in_sync.load(Ordering::Acquire)
    }

    /// Whether any slave is connected.
    pub fn any_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire) > 0
    }

    fn set_link(&self, f: impl FnOnce(&mut LinkView)) {
        f(&mut self.link.lock());
    }
}
