//! Typed configuration of the two server processes: [`NamesrvConfig`] for `mqnamesrv` and
//! [`BrokerConfig`] (with its [`StoreConfig`]) for `mqbroker`, with RocketMQ's names
//! (snake-cased) and defaults, loaded from TOML and checked by `validate()`.
//!
//! This module owns the meaning of every key, its default, its allowed range, and the
//! wording of [`ConfigError`], which names the file, the key and the reason so a person can
//! fix the file. It never opens a socket and never touches the disk beyond reading the one
//! file it is given; the only other outside input is the `NAMESRV_ADDR` environment variable,
//! read by [`BrokerConfig::load`] as RocketMQ does.
//!
//! A broker file holds the broker's own keys and the store's keys side by side at the top
//! level, as RocketMQ's `broker.conf` does. serde's `flatten` cannot be combined with
//! `deny_unknown_fields`, so the file is read into a [`toml::Table`], split by the key lists
//! the two structs declare to serde, and each part is deserialized strictly on its own.

#![deny(missing_docs)]

use std::cell::Cell;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::de::{self, DeserializeOwned, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::protocol::DEFAULT_MAX_FRAME_SIZE;

/// Default of `max_incomplete_frame_bytes`: four frames of the default maximum size, so a
/// few peers sending the largest frames at once are never cut, while thousands of peers
/// announcing large frames and trickling them cannot take more.
pub const DEFAULT_MAX_INCOMPLETE_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// Default of `max_pending_write_bytes`: four answers of the default maximum frame size, so
/// a consumer pipelining a few large pulls and reading them at its own pace is never cut,
/// while a peer that never reads holds at most this much of the server's memory (plus what
/// the kernel buffers for its socket).
pub const DEFAULT_MAX_PENDING_WRITE_BYTES: usize = 64 * 1024 * 1024;

/// RocketMQ's delay levels: level 1 is 1 s, level 18 is 2 h.
pub const DEFAULT_MESSAGE_DELAY_LEVEL: &str =
    "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";

/// Most delay levels a broker accepts (a level is a queue of the schedule topic).
pub const MAX_DELAY_LEVELS: usize = 64;

/// Parses a `message_delay_level` string (`1s 5s 500ms 2m 1h 1d`) into the delay of each
/// level, level 1 first.
///
/// # Errors
/// A message naming the entry that is not a positive number followed by `ms`, `s`, `m`, `h`
/// or `d`, or saying there are no levels or too many.
pub fn parse_delay_levels(text: &str) -> Result<Vec<std::time::Duration>, String> {
    let mut levels = Vec::new();
    for item in text.split_whitespace() {
        let split = item
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("'{item}' has no unit (ms, s, m, h or d)"))?;
        let (number, unit) = item.split_at(split);
        let n: u64 = number
            .parse()
            .map_err(|_| format!("'{item}' does not start with a number"))?;
        let ms_per_unit = match unit {
            "ms" => 1,
            "s" => 1000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => {
                return Err(format!(
                    "'{item}': unit '{unit}' is not one of ms, s, m, h, d"
                ))
            }
        };
        if n == 0 {
            return Err(format!("'{item}': a delay must be longer than 0"));
        }
        levels.push(std::time::Duration::from_millis(
            n.saturating_mul(ms_per_unit),
        ));
    }
    if levels.is_empty() {
        return Err("no delay level given".to_owned());
    }
    if levels.len() > MAX_DELAY_LEVELS {
        return Err(format!(
            "{} levels given, at most {MAX_DELAY_LEVELS} are allowed",
            levels.len()
        ));
    }
    Ok(levels)
}
use crate::storage::{self, StoreConfig};

mod checks;
mod keys;

use checks::*;
use keys::*;

/// The environment variable a broker reads its name-server list from when neither its file
/// nor its flags give one (RocketMQ's `NAMESRV_ADDR`).
pub const NAMESRV_ADDR_ENV: &str = "NAMESRV_ADDR";

/// Why a configuration cannot be used. Every variant names the file (when there is one)
/// and, past the syntax level, the key, so the message alone tells a person what to edit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("{}: cannot read the config file: {source}", path.display())]
    Read {
        /// The file given.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{}:{line}:{column}: not valid TOML: {message}", path.display())]
    Syntax {
        /// The file given.
        path: PathBuf,
        /// 1-based line of the error.
        line: usize,
        /// 1-based column (in characters) of the error.
        column: usize,
        /// The parser's description.
        message: String,
    },
    /// A key no part of this config knows (often a typo, or a RocketMQ camelCase name).
    #[error("{}unknown key '{key}'{}", prefix(path), hint_suffix(hint))]
    UnknownKey {
        /// The file, or `None` when the config did not come from a file.
        path: Option<PathBuf>,
        /// The key as written.
        key: String,
        /// A likely fix, e.g. "did you mean 'listen_port'?".
        hint: Option<String>,
    },
    /// A known key whose value has the wrong type or is not one of the allowed words.
    #[error("{}key '{key}': invalid value: {reason}", prefix(path))]
    BadValue {
        /// The file, or `None` when the config did not come from a file.
        path: Option<PathBuf>,
        /// The key as written.
        key: String,
        /// What was expected and what was found.
        reason: String,
    },
    /// A well-typed value that is out of range or contradicts another key.
    #[error("{}key '{key}': {reason}", prefix(path))]
    Invalid {
        /// The file, or `None` when the config did not come from a file.
        path: Option<PathBuf>,
        /// The key to change.
        key: String,
        /// Why the value cannot be used.
        reason: String,
    },
}

fn prefix(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| format!("{}: ", p.display()))
        .unwrap_or_default()
}

fn hint_suffix(hint: &Option<String>) -> String {
    hint.as_ref().map(|h| format!(" ({h})")).unwrap_or_default()
}

impl ConfigError {
    /// The key the error concerns, if it concerns one (for callers that react per key).
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::UnknownKey { key, .. }
            | ConfigError::BadValue { key, .. }
            | ConfigError::Invalid { key, .. } => Some(key),
            ConfigError::Read { .. } | ConfigError::Syntax { .. } => None,
        }
    }

    /// The file the error concerns, if the config came from one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            ConfigError::Read { path, .. } | ConfigError::Syntax { path, .. } => Some(path),
            ConfigError::UnknownKey { path, .. }
            | ConfigError::BadValue { path, .. }
            | ConfigError::Invalid { path, .. } => path.as_deref(),
        }
    }

    /// The same error, attributed to `file`.
    fn in_file(mut self, file: Option<&Path>) -> Self {
        if let ConfigError::UnknownKey { path, .. }
        | ConfigError::BadValue { path, .. }
        | ConfigError::Invalid { path, .. } = &mut self
        {
            *path = file.map(Path::to_path_buf);
        }
        self
    }
}

fn invalid(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: None,
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// Whether a broker accepts writes, and how it answers them when it has slaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum BrokerRole {
    /// A master that answers a send once it is stored locally.
    #[default]
    AsyncMaster,
    /// RocketMQ's synchronous master: a send is answered `SEND_OK` only once
    /// `min_in_sync_replicas` slaves hold it, and consumers see it only then.
    SyncMaster,
    /// A slave (broker_id > 0): registers under its master's name, copies the master's log
    /// and topics, serves reads and refuses sends and topic updates.
    Slave,
}

impl BrokerRole {
    /// Whether this role accepts writes (and so must have broker_id 0).
    pub fn is_master(self) -> bool {
        !matches!(self, BrokerRole::Slave)
    }
}

impl fmt::Display for BrokerRole {
    /// The word used in TOML, so messages can quote it back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BrokerRole::AsyncMaster => "async_master",
            BrokerRole::SyncMaster => "sync_master",
            BrokerRole::Slave => "slave",
        })
    }
}

/// Settings of one name server (`mqnamesrv`), RocketMQ's `NamesrvConfig` and
/// `NettyServerConfig` keys that matter here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NamesrvConfig {
    /// Address to listen on; "0.0.0.0" accepts connections on every interface.
    pub listen_host: String,
    /// Port to listen on (RocketMQ: 9876); 0 asks the OS for a free one (tests).
    pub listen_port: u16,
    /// How often, in ms, brokers that stopped heartbeating are looked for and dropped.
    pub scan_not_active_broker_interval: u64,
    /// A broker silent this long, in ms, is dropped from routes (RocketMQ: 2 minutes);
    /// must exceed the brokers' `register_broker_interval`.
    pub broker_channel_expired_time: u64,
    /// Largest frame accepted from a peer, in bytes; larger ones close the connection.
    pub max_frame_size: usize,
    /// A connection that sends nothing for this long, in ms, is closed (RocketMQ's idle
    /// channel close, 2 minutes). Brokers register every `register_broker_interval` and
    /// clients poll routes every 30 s, so only dead or hostile peers are cut.
    pub channel_expired_timeout: u64,
    /// Most bytes all connections together may hold for frames that have not fully
    /// arrived; past it the connections holding the largest are closed. At least
    /// `max_frame_size`, so one legitimate frame always fits.
    pub max_incomplete_frame_bytes: usize,
}

impl Default for NamesrvConfig {
    fn default() -> Self {
        NamesrvConfig {
            listen_host: "0.0.0.0".to_owned(),
            listen_port: 9876,
            scan_not_active_broker_interval: 5000,
            broker_channel_expired_time: 120_000,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            channel_expired_timeout: 120_000,
            max_incomplete_frame_bytes: DEFAULT_MAX_INCOMPLETE_FRAME_BYTES,
        }
    }
}

impl NamesrvConfig {
    /// Defaults when `path` is `None`; otherwise the file, read, parsed and validated.
    pub fn load(path: Option<&Path>) -> Result<NamesrvConfig, ConfigError> {
        let config = match path {
            None => NamesrvConfig::default(),
            Some(path) => {
                let table = read_table(path)?;
                check_keys(&table, &[namesrv_keys()], foreign_for_namesrv)
                    .and_then(|()| part_from_table(table, NamesrvConfig::deserialize))
                    .map_err(|e| e.in_file(Some(path)))?
            }
        };
        config.validate().map_err(|e| e.in_file(path))?;
        Ok(config)
    }

    /// The `host:port` to bind.
    pub fn listen_addr(&self) -> String {
        join_host_port(&self.listen_host, self.listen_port)
    }

    /// Checks every value and their combinations; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_host("listen_host", &self.listen_host, true)?;
        positive(
            "scan_not_active_broker_interval",
            self.scan_not_active_broker_interval,
        )?;
        if self.broker_channel_expired_time < self.scan_not_active_broker_interval {
            return Err(invalid(
                "broker_channel_expired_time",
                format!(
                    "{} ms is shorter than scan_not_active_broker_interval ({} ms); \
                     a broker cannot be dropped sooner than the next scan",
                    self.broker_channel_expired_time, self.scan_not_active_broker_interval
                ),
            ));
        }
        positive("channel_expired_timeout", self.channel_expired_timeout)?;
        check_frame_size(self.max_frame_size)?;
        check_incomplete_budget(self.max_incomplete_frame_bytes, self.max_frame_size)
    }
}

/// Settings of one broker (`mqbroker`): RocketMQ's `BrokerConfig` keys that matter here,
/// plus its message store's settings, which sit at the top level of the same file.
///
/// Deserializing it (e.g. `toml::from_str::<BrokerConfig>`) accepts both kinds of key and
/// rejects any other; it does not validate, [`BrokerConfig::load`] does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(remote = "Self", default, deny_unknown_fields)]
pub struct BrokerConfig {
    /// Cluster this broker reports to the name servers; clients and `mqadmin` group by it.
    pub broker_cluster_name: String,
    /// Name shared by a master and its slaves; routes list queues per broker name.
    pub broker_name: String,
    /// 0 for the master, 1.. for its slaves.
    pub broker_id: u64,
    /// Whether this broker is a master (and how it acknowledges sends) or a slave.
    pub broker_role: BrokerRole,
    /// Name servers to register with, `;`-separated `host:port` (e.g.
    /// "10.0.0.1:9876;10.0.0.2:9876"). Empty in the file: [`NAMESRV_ADDR_ENV`] is used.
    pub namesrv_addr: String,
    /// Address to listen on; "0.0.0.0" accepts connections on every interface.
    pub listen_host: String,
    /// Port to listen on (RocketMQ: 10911); 0 asks the OS for a free one (tests), and then
    /// the bound port must replace it before [`BrokerConfig::advertised_addr`] is used.
    pub listen_port: u16,
    /// Address name servers hand to clients for this broker (RocketMQ's `brokerIP1`);
    /// must be reachable by them, so never 0.0.0.0.
    pub broker_ip1: String,
    /// How often, in ms, the broker registers (heartbeats) with every name server;
    /// must stay well below the name servers' `broker_channel_expired_time`.
    pub register_broker_interval: u64,
    /// Whether a send to an unknown topic creates it (convenient in development; RocketMQ
    /// advises turning it off in production).
    pub auto_create_topic_enable: bool,
    /// Read and write queues given to an auto-created topic.
    pub default_topic_queue_nums: u32,
    /// Longest a pull with no new messages is held, in ms, before an empty answer.
    pub long_polling_timeout: u64,
    /// A client connection that sends nothing for this long, in ms, is closed, and a
    /// consumer that sends no heartbeat for this long is dropped from its group even if its
    /// connection is busy; the group's other members are told to rebalance. Clients
    /// heartbeat every 30 s and pull at least every `long_polling_timeout`.
    pub channel_expired_timeout: u64,
    /// How often, in ms, consumer offsets are written to disk besides the write each
    /// commit waits for (an acknowledged commit is already on disk).
    pub flush_consumer_offset_interval: u64,
    /// Largest frame accepted from a peer, in bytes; must exceed the store's
    /// `max_message_size`.
    pub max_frame_size: usize,
    /// Most bytes all connections together may hold for frames that have not fully
    /// arrived; past it the connections holding the largest are closed. At least
    /// `max_frame_size`, so one legitimate frame always fits.
    pub max_incomplete_frame_bytes: usize,
    /// Most bytes of answers one client connection may leave unread: encoded and waiting
    /// for the kernel to take them because the peer does not read its socket. Past it the
    /// connection is closed with a warning naming the peer (RocketMQ closes such slow
    /// readers too), so a client that sends requests and never reads the answers cannot
    /// grow the broker's memory. At least `max_frame_size`, so one answer of the largest
    /// size always fits.
    pub max_pending_write_bytes: usize,
    /// Bound of the broker's request mailbox (RocketMQ's `sendThreadPoolQueueCapacity`),
    /// counted in socket reads of up to 64 requests each: requests that find it full are
    /// answered "system busy" instead of growing memory.
    pub send_message_queue_capacity: usize,
    /// Microseconds the broker's actor thread keeps polling its sockets after each frame
    /// instead of sleeping: lower latency at light load (no wake-up per request), at the
    /// cost of a busy core while traffic flows. 0 (the default) turns it off.
    pub busy_poll_us: u64,
    /// Threads the broker's connections run on (decoding and encoding frames) besides the
    /// broker's own thread. 0 (the default) keeps them on the broker's thread: on a small
    /// machine a hand-off between threads costs more than the decoding it spreads (see
    /// `docs/BENCHMARKS.md`, 2026-12-06, "the house").
    pub server_worker_threads: usize,
    /// Port a master listens on for its slaves' replication links; unset means
    /// `listen_port + 1` (any free port when `listen_port` is 0), 0 asks the OS for a free
    /// one. The bound address is published in the route as the broker's HA address.
    pub ha_listen_port: Option<u16>,
    /// A slave's master HA address (`host:port`); empty (the default) means the one the name
    /// servers publish for the master of the same `broker_name`.
    pub ha_master_address: String,
    /// A `sync_master` answers a send `SEND_OK` only once this many slaves hold it.
    pub min_in_sync_replicas: usize,
    /// A slave further behind than this many bytes does not count as in sync: a
    /// `sync_master` with too few in-sync slaves answers `SLAVE_NOT_AVAILABLE` at once.
    pub ha_slave_fallbehind_max: u64,
    /// Delay of each delay level, level 1 first, separated by spaces (RocketMQ's
    /// `messageDelayLevel`); each is a number and a unit: `ms`, `s`, `m`, `h` or `d`. A message
    /// with `DELAY` = n waits the n-th delay (the last one if n is larger); a consumer's
    /// retry number r waits the (3 + r)-th.
    pub message_delay_level: String,
    /// A half (transactional) message neither committed nor rolled back this many ms after
    /// it was stored is checked back with a producer of its group (RocketMQ's
    /// `transactionTimeOut`).
    pub transaction_timeout: u64,
    /// Check-backs of one half message before it is given up (logged and moved to
    /// `TRANS_CHECK_MAX_TIME_TOPIC`) (RocketMQ's `transactionCheckMax`).
    pub transaction_check_max: u32,
    /// How often, in ms, unresolved half messages are looked for (RocketMQ's
    /// `transactionCheckInterval`).
    pub transaction_check_interval: u64,
    /// The message store's settings; their keys sit at the top level of the file.
    #[serde(flatten, skip_deserializing)]
    pub store: StoreConfig,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            broker_cluster_name: "DefaultCluster".to_owned(),
            broker_name: "broker-a".to_owned(),
            broker_id: 0,
            broker_role: BrokerRole::AsyncMaster,
            namesrv_addr: String::new(),
            listen_host: "0.0.0.0".to_owned(),
            listen_port: 10911,
            broker_ip1: "127.0.0.1".to_owned(),
            register_broker_interval: 30_000,
            auto_create_topic_enable: true,
            default_topic_queue_nums: 4,
            long_polling_timeout: 15_000,
            channel_expired_timeout: 120_000,
            flush_consumer_offset_interval: 5000,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_incomplete_frame_bytes: DEFAULT_MAX_INCOMPLETE_FRAME_BYTES,
            max_pending_write_bytes: DEFAULT_MAX_PENDING_WRITE_BYTES,
            send_message_queue_capacity: 10_000,
            busy_poll_us: 0,
            server_worker_threads: 0,
            ha_listen_port: None,
            ha_master_address: String::new(),
            min_in_sync_replicas: 1,
            ha_slave_fallbehind_max: 256 * 1024 * 1024,
            message_delay_level: DEFAULT_MESSAGE_DELAY_LEVEL.to_owned(),
            transaction_timeout: 6_000,
            transaction_check_max: 15,
            transaction_check_interval: 60_000,
            store: StoreConfig::default(),
        }
    }
}

impl Serialize for BrokerConfig {
    /// Writes the broker's and the store's keys side by side, as a file holds them.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        BrokerConfig::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for BrokerConfig {
    /// Reads a table holding broker and store keys side by side, rejecting any other key.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let table = toml::Table::deserialize(deserializer)?;
        BrokerConfig::from_table(table).map_err(de::Error::custom)
    }
}

impl BrokerConfig {
    /// Defaults when `path` is `None`; otherwise the file, read, parsed and validated. In
    /// both cases an empty `namesrv_addr` is taken from [`NAMESRV_ADDR_ENV`] if it is set.
    pub fn load(path: Option<&Path>) -> Result<BrokerConfig, ConfigError> {
        let mut config = match path {
            None => BrokerConfig::default(),
            Some(path) => {
                BrokerConfig::from_table(read_table(path)?).map_err(|e| e.in_file(Some(path)))?
            }
        };
        let from_env = config.fill_namesrv_addr(std::env::var(NAMESRV_ADDR_ENV).ok());
        config.validate().map_err(|e| {
            let e = match e {
                ConfigError::Invalid { path, key, reason } if from_env && key == "namesrv_addr" => {
                    let reason = format!("{reason} (taken from the {NAMESRV_ADDR_ENV} variable)");
                    ConfigError::Invalid { path, key, reason }
                }
                e => e,
            };
            e.in_file(path)
        })?;
        Ok(config)
    }

    /// The `host:port` to bind.
    pub fn listen_addr(&self) -> String {
        join_host_port(&self.listen_host, self.listen_port)
    }

    /// The `host:port` a master binds for its slaves (see `ha_listen_port`), given the port
    /// its client listener bound.
    pub fn ha_listen_addr(&self, bound_listen_port: u16) -> String {
        let port = match self.ha_listen_port {
            Some(p) => p,
            None if self.listen_port == 0 => 0,
            None => bound_listen_port.saturating_add(1),
        };
        join_host_port(&self.listen_host, port)
    }

    /// The `host:port` name servers hand to clients: `broker_ip1:listen_port`.
    pub fn advertised_addr(&self) -> String {
        join_host_port(&self.broker_ip1, self.listen_port)
    }

    /// The name-server addresses, split on `;`, trimmed, empty parts dropped.
    pub fn namesrv_addrs(&self) -> Vec<String> {
        self.namesrv_addr
            .split(';')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Whether this broker accepts writes.
    pub fn is_master(&self) -> bool {
        self.broker_role.is_master()
    }

    /// Checks every value and their combinations, then the store's; the error names the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_name("broker_cluster_name", &self.broker_cluster_name)?;
        check_name("broker_name", &self.broker_name)?;
        match (self.broker_role.is_master(), self.broker_id) {
            (true, id) if id != 0 => {
                return Err(invalid(
                    "broker_id",
                    format!(
                        "must be 0 for a master (broker_role = \"{}\"), found {id}",
                        self.broker_role
                    ),
                ))
            }
            (false, 0) => {
                return Err(invalid(
                    "broker_id",
                    "must be 1 or more for a slave (broker_role = \"slave\"); 0 means master",
                ))
            }
            _ => {}
        }
        for addr in self.namesrv_addrs() {
            check_host_port(&addr)
                .map_err(|why| invalid("namesrv_addr", format!("'{addr}': {why}")))?;
        }
        check_host("listen_host", &self.listen_host, true)?;
        check_host("broker_ip1", &self.broker_ip1, false)?;
        if !self.ha_master_address.trim().is_empty() {
            check_host_port(self.ha_master_address.trim()).map_err(|why| {
                invalid(
                    "ha_master_address",
                    format!("'{}': {why}", self.ha_master_address),
                )
            })?;
        }
        if !(1..=16).contains(&self.min_in_sync_replicas) {
            return Err(invalid(
                "min_in_sync_replicas",
                format!("{} is outside 1..=16", self.min_in_sync_replicas),
            ));
        }
        if !(100..=60_000).contains(&self.register_broker_interval) {
            return Err(invalid(
                "register_broker_interval",
                format!(
                    "{} ms is outside 100..=60000",
                    self.register_broker_interval
                ),
            ));
        }
        if !(1..=1024).contains(&self.default_topic_queue_nums) {
            return Err(invalid(
                "default_topic_queue_nums",
                format!("{} is outside 1..=1024", self.default_topic_queue_nums),
            ));
        }
        positive("long_polling_timeout", self.long_polling_timeout)?;
        parse_delay_levels(&self.message_delay_level)
            .map_err(|why| invalid("message_delay_level", why))?;
        positive("transaction_timeout", self.transaction_timeout)?;
        positive(
            "transaction_check_interval",
            self.transaction_check_interval,
        )?;
        if self.transaction_check_max == 0 {
            return Err(invalid(
                "transaction_check_max",
                "must be at least 1".to_owned(),
            ));
        }
        positive("channel_expired_timeout", self.channel_expired_timeout)?;
        positive(
            "flush_consumer_offset_interval",
            self.flush_consumer_offset_interval,
        )?;
        check_frame_size(self.max_frame_size)?;
        check_incomplete_budget(self.max_incomplete_frame_bytes, self.max_frame_size)?;
        check_pending_write_bound(self.max_pending_write_bytes, self.max_frame_size)?;
        // A frame carries one whole message plus its header fields.
        if self.max_frame_size < self.store.max_message_size.saturating_add(64 * 1024) {
            return Err(invalid(
                "max_frame_size",
                format!(
                    "{} bytes cannot carry a message of max_message_size ({}) plus 64 KiB \
                     of headers",
                    self.max_frame_size, self.store.max_message_size
                ),
            ));
        }
        if !(1..=1_000_000).contains(&self.send_message_queue_capacity) {
            return Err(invalid(
                "send_message_queue_capacity",
                format!(
                    "{} is outside 1..=1000000",
                    self.send_message_queue_capacity
                ),
            ));
        }
        if self.busy_poll_us > 1_000_000 {
            return Err(invalid(
                "busy_poll_us",
                format!(
                    "{} µs is more than a second; use 0 (off) to 1000000 (polling up to 1 s after each frame)",
                    self.busy_poll_us
                ),
            ));
        }
        if self.server_worker_threads > 64 {
            return Err(invalid(
                "server_worker_threads",
                format!(
                    "{} threads is more than 64; use 0 (connections on the broker's thread) to 64",
                    self.server_worker_threads
                ),
            ));
        }
        self.store.validate().map_err(|e| match e {
            storage::Error::Config { key, reason } => invalid(key, reason),
            other => invalid("store_path_root_dir", other.to_string()),
        })
    }

    /// Splits a table into broker and store keys and deserializes each part strictly.
    fn from_table(table: toml::Table) -> Result<BrokerConfig, ConfigError> {
        let (own_keys, store_keys) = (broker_keys(), store_keys());
        check_keys(&table, &[own_keys, store_keys], foreign_for_broker)?;
        let (own, store): (toml::Table, toml::Table) = table
            .into_iter()
            .partition(|(key, _)| own_keys.contains(&key.as_str()));
        let mut config = part_from_table(own, BrokerConfig::deserialize)?;
        config.store = part_from_table(store, StoreConfig::deserialize)?;
        Ok(config)
    }

    /// Takes `namesrv_addr` from the environment's value when the config leaves it empty;
    /// says whether it did.
    fn fill_namesrv_addr(&mut self, env: Option<String>) -> bool {
        match env {
            Some(env) if self.namesrv_addr.trim().is_empty() && !env.trim().is_empty() => {
                self.namesrv_addr = env;
                true
            }
            _ => false,
        }
    }
}

/// The name a syntax error gives TOML text that did not come from a file.
pub const TEXT_SOURCE: &str = "<text>";

impl NamesrvConfig {
    /// Parses and validates a name server's config from TOML text, as
    /// [`NamesrvConfig::load`] does with a file's contents. Syntax errors name
    /// [`TEXT_SOURCE`] as the file; other errors name none.
    pub fn from_toml_str(text: &str) -> Result<NamesrvConfig, ConfigError> {
        let table = parse_table(text, Path::new(TEXT_SOURCE))?;
        check_keys(&table, &[namesrv_keys()], foreign_for_namesrv)?;
        let config = part_from_table(table, NamesrvConfig::deserialize)?;
        config.validate()?;
        Ok(config)
    }
}

impl BrokerConfig {
    /// Parses and validates a broker's config from TOML text, as [`BrokerConfig::load`]
    /// does with a file's contents, but without reading [`NAMESRV_ADDR_ENV`]. Syntax errors
    /// name [`TEXT_SOURCE`] as the file; other errors name none.
    pub fn from_toml_str(text: &str) -> Result<BrokerConfig, ConfigError> {
        let config = BrokerConfig::from_table(parse_table(text, Path::new(TEXT_SOURCE))?)?;
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_lists_come_from_the_structs_and_do_not_overlap() {
        let (broker, store) = (broker_keys(), store_keys());
        assert!(broker.contains(&"listen_port") && !broker.contains(&"store"));
        assert!(store.contains(&"flush_disk_type"));
        assert!(broker.iter().all(|k| !store.contains(k)), "{broker:?}");
        // The same keys a default config serializes to, side by side.
        let written = toml::Table::try_from(BrokerConfig::default()).unwrap();
        // `ha_listen_port` is unset by default (listen_port + 1), and TOML has no "unset".
        let mut listed: Vec<&str> = broker
            .iter()
            .chain(store)
            .copied()
            .filter(|k| *k != "ha_listen_port")
            .collect();
        listed.sort_unstable();
        assert_eq!(
            written.keys().map(String::as_str).collect::<Vec<_>>(),
            listed
        );
        assert_eq!(namesrv_keys().len(), 7);
    }

    #[test]
    fn suggestions() {
        let keys = || broker_keys().iter().chain(store_keys()).copied();
        assert_eq!(closest("listen_portt", keys()), Some("listen_port"));
        assert_eq!(
            closest("brokerClusterName", keys()),
            Some("broker_cluster_name")
        );
        assert_eq!(closest("brokerIP1", keys()), Some("broker_ip1"));
        assert_eq!(closest("flushDiskType", keys()), Some("flush_disk_type"));
        assert_eq!(closest("completely_different", keys()), None);
    }

    #[test]
    fn serde_messages_are_reworded() {
        assert_eq!(
            describe("invalid type: string \"a, expected b\", expected u16"),
            "expected u16, found string \"a, expected b\""
        );
        assert_eq!(describe("something else"), "something else");
    }

    #[test]
    fn line_and_column() {
        assert_eq!(line_column("a = 1\nbé = ", 11), (2, 5));
        assert_eq!(line_column("", 7), (1, 1));
    }

    #[test]
    fn env_fills_only_an_empty_namesrv_addr() {
        let mut c = BrokerConfig::default();
        assert!(!c.fill_namesrv_addr(Some("  ".into())));
        assert!(c.fill_namesrv_addr(Some("nowhere".into())));
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("namesrv_addr") && e.contains("nowhere"), "{e}");
        let mut c = BrokerConfig {
            namesrv_addr: "a:1".into(),
            ..BrokerConfig::default()
        };
        assert!(!c.fill_namesrv_addr(Some("b:2".into())));
        assert_eq!(c.namesrv_addrs(), ["a:1"]);
    }

    #[test]
    fn pending_write_bound_holds_one_largest_answer() {
        let c = BrokerConfig {
            max_pending_write_bytes: DEFAULT_MAX_FRAME_SIZE - 1,
            ..BrokerConfig::default()
        };
        let e = c.validate().unwrap_err();
        assert_eq!(e.key(), Some("max_pending_write_bytes"), "{e}");
        let c = BrokerConfig {
            max_pending_write_bytes: DEFAULT_MAX_FRAME_SIZE,
            ..BrokerConfig::default()
        };
        c.validate().unwrap();
    }

    #[test]
    fn host_port_checks() {
        for ok in ["127.0.0.1:9876", "ns-1.example.com:1", "[::1]:9876"] {
            check_host_port(ok).unwrap();
        }
        for bad in ["127.0.0.1", "h:0", "h:65536", ":1", "::1:9876", "a b:1"] {
            assert!(check_host_port(bad).is_err(), "{bad}");
        }
        assert_eq!(join_host_port("::1", 1), "[::1]:1");
    }
}
