//! The real processes of `mqbench chaos`: a cluster made from a folder of config files used
//! as a template (ports, store folders and name-server addresses rewritten for loopback),
//! each process started from its own rewritten file, logging to its own file, and stopped,
//! killed, paused and started again on the fault executor's word. It owns the children and
//! must never leave one running: dropping the cluster kills what is left.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::schedule::{Member, Role};

/// One process of the cluster.
pub struct Node {
    /// The template file's stem (`broker-a-s`, `namesrv-1`).
    pub name: String,
    pub role: Role,
    pub broker_name: Option<String>,
    pub addr: SocketAddr,
    /// A broker's store folder (its `abort` marker says whether it stopped cleanly).
    pub store: Option<PathBuf>,
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

impl Node {
    /// Starts the process (appending to its log file) and waits until it accepts
    /// connections.
    pub fn start(&mut self, limit: Duration) -> Result<(), String> {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("cannot open {}: {e}", self.log.display()))?;
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(&self.config)
            .env(
                "RUST_LOG",
                std::env::var("CHAOS_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_ok() {
                return Ok(());
            }
            if !self.alive() {
                return Err(format!(
                    "{} exited while starting; see {}",
                    self.name,
                    self.log.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!(
            "{} did not listen on {} within {limit:?}; see {}",
            self.name,
            self.addr,
            self.log.display()
        ))
    }

    /// Whether the process is running (a paused one is).
    pub fn alive(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// `kill -9`, and reaps it.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn signal(&self, signal: libc::c_int) -> Result<(), String> {
        let Some(pid) = self.child.as_ref().map(|c| c.id()) else {
            return Err(format!("{} is not running", self.name));
        };
        // SAFETY: kill(2) with a pid this process spawned and has not reaped.
        let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
        if rc == 0 {
            Ok(())
        } else {
            Err(format!(
                "cannot signal {} (pid {pid}): {}",
                self.name,
                std::io::Error::last_os_error()
            ))
        }
    }

    pub fn pause(&self) -> Result<(), String> {
        self.signal(libc::SIGSTOP)
    }

    pub fn resume(&self) -> Result<(), String> {
        self.signal(libc::SIGCONT)
    }

    /// SIGTERM and waits for the exit, up to `limit`; past it, `kill -9` and an error.
    pub fn terminate(&mut self, limit: Duration) -> Result<ExitStatus, String> {
        self.signal(libc::SIGTERM)?;
        let deadline = Instant::now() + limit;
        let Some(child) = self.child.as_mut() else {
            return Err(format!("{} is not running", self.name));
        };
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    self.child = None;
                    return Ok(status);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    self.kill9();
                    return Err(format!(
                        "{} did not stop within {limit:?} of SIGTERM; killed",
                        self.name
                    ));
                }
            }
        }
    }

    /// Whether the broker's store says its last stop was clean (no `abort` marker).
    pub fn store_is_clean(&self) -> bool {
        self.store
            .as_ref()
            .is_none_or(|s| !s.join("abort").exists())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &self.child {
            // A paused child would ignore nothing but SIGKILL anyway; SIGCONT first so the
            // kernel reaps it at once.
            // SAFETY: kill(2) on our own unreaped child.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGCONT) };
        }
        self.kill9();
    }
}

/// The cluster: its processes and the folder holding their configs, stores and logs.
pub struct Cluster {
    pub nodes: Vec<Node>,
    pub namesrv_addr: String,
    pub work_dir: PathBuf,
}

impl Cluster {
    /// The planner's view of the processes.
    pub fn members(&self) -> Vec<Member> {
        self.nodes
            .iter()
            .map(|n| Member {
                role: n.role,
                broker_name: n.broker_name.clone(),
            })
            .collect()
    }

    /// The masters' addresses, by broker name.
    pub fn masters(&self) -> BTreeMap<String, String> {
        self.nodes
            .iter()
            .filter(|n| n.role == Role::Master)
            .filter_map(|n| Some((n.broker_name.clone()?, n.addr.to_string())))
            .collect()
    }

    /// Starts every process: name servers, then masters, then slaves.
    pub fn start_all(&mut self) -> Result<(), String> {
        for role in [Role::NameServer, Role::Master, Role::Slave] {
            for n in self.nodes.iter_mut().filter(|n| n.role == role) {
                n.start(Duration::from_secs(30))?;
            }
        }
        Ok(())
    }

    /// The mode a row of the audit is named after: the masters' role and flush.
    pub fn mode(&self) -> String {
        self.nodes
            .iter()
            .find(|n| n.role == Role::Master)
            .and_then(|n| {
                let t = read_table(&n.config).ok()?;
                let role = t.get("broker_role")?.as_str()?.to_owned();
                let flush = t
                    .get("flush_disk_type")
                    .and_then(|f| f.as_str())
                    .unwrap_or("async_flush");
                Some(format!("{role} + {flush}"))
            })
            .unwrap_or_else(|| "unknown".into())
    }
}

fn read_table(path: &Path) -> Result<toml::Table, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    text.parse::<toml::Table>()
        .map_err(|e| format!("{} is not valid TOML: {e}", path.display()))
}

/// A port free on 127.0.0.1 right now (the OS picks it; it is released at once, so another
/// program could take it before the process binds: unlikely on loopback, and the start
/// then fails with the process's own message).
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free port on 127.0.0.1: {e}"))
}

/// Builds the cluster from the `*.toml` files of `template` (a file with `broker_name` is a
/// broker, any other a name server), writing rewritten copies under `work_dir`: every port
/// free on 127.0.0.1, stores under `work_dir`, brokers pointed at the new name servers and
/// slaves at their master's new replication port.
pub fn from_template(template: &Path, work_dir: &Path, bin_dir: &Path) -> Result<Cluster, String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(template)
        .map_err(|e| format!("cannot read the config folder {}: {e}", template.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no .toml files in {}", template.display()));
    }
    for sub in ["conf", "store", "logs"] {
        std::fs::create_dir_all(work_dir.join(sub))
            .map_err(|e| format!("cannot create {}: {e}", work_dir.join(sub).display()))?;
    }
    let mut tables = Vec::new();
    for f in &files {
        let stem = f
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        tables.push((stem, read_table(f)?));
    }
    // Name servers first: brokers need their new addresses.
    let mut namesrvs = Vec::new();
    for (_, t) in tables
        .iter_mut()
        .filter(|(_, t)| !t.contains_key("broker_name"))
    {
        let port = free_port()?;
        t.insert("listen_host".into(), "127.0.0.1".into());
        t.insert("listen_port".into(), i64::from(port).into());
        namesrvs.push(format!("127.0.0.1:{port}"));
    }
    if namesrvs.is_empty() {
        return Err(format!(
            "{} has no name server config (a .toml file without broker_name)",
            template.display()
        ));
    }
    let namesrv_addr = namesrvs.join(";");
    // Each master's new replication address, for slaves configured with one.
    let mut master_ha: BTreeMap<String, String> = BTreeMap::new();
    for (stem, t) in tables
        .iter_mut()
        .filter(|(_, t)| t.contains_key("broker_name"))
    {
        let port = free_port()?;
        t.insert("listen_host".into(), "127.0.0.1".into());
        t.insert("broker_ip1".into(), "127.0.0.1".into());
        t.insert("listen_port".into(), i64::from(port).into());
        t.insert("namesrv_addr".into(), namesrv_addr.clone().into());
        let store = work_dir.join("store").join(stem.as_str());
        t.insert(
            "store_path_root_dir".into(),
            store.to_string_lossy().into_owned().into(),
        );
        // Small segments: a run crosses segment boundaries, as a long-lived broker does.
        t.entry("mapped_file_size_commit_log")
            .or_insert(toml::Value::Integer(16 * 1024 * 1024));
        t.entry("warm_mapped_file_enable")
            .or_insert(toml::Value::Boolean(false));
        let is_master = t.get("broker_id").and_then(|v| v.as_integer()).unwrap_or(0) == 0;
        if t.contains_key("ha_listen_port") || is_master {
            let ha = free_port()?;
            t.insert("ha_listen_port".into(), i64::from(ha).into());
            if is_master {
                if let Some(name) = t.get("broker_name").and_then(|v| v.as_str()) {
                    master_ha.insert(name.to_owned(), format!("127.0.0.1:{ha}"));
                }
            }
        }
    }
    let mut nodes = Vec::new();
    for (stem, mut t) in tables {
        let broker_name = t
            .get("broker_name")
            .and_then(|v| v.as_str())
            .map(str::to_owned);
        let role = match &broker_name {
            None => Role::NameServer,
            Some(_) if t.get("broker_id").and_then(|v| v.as_integer()).unwrap_or(0) == 0 => {
                Role::Master
            }
            Some(_) => Role::Slave,
        };
        if let (Some(name), true) = (&broker_name, t.contains_key("ha_master_address")) {
            if let Some(addr) = master_ha.get(name) {
                t.insert("ha_master_address".into(), addr.clone().into());
            }
        }
        let port = t
            .get("listen_port")
            .and_then(|v| v.as_integer())
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| format!("{stem}: no listen_port after rewriting"))?;
        let config = work_dir.join("conf").join(format!("{stem}.toml"));
        let text = toml::to_string(&t).map_err(|e| format!("{stem}: {e}"))?;
        std::fs::write(&config, text)
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let binary = bin_dir.join(if role == Role::NameServer {
            "mqnamesrv"
        } else {
            "mqbroker"
        });
        if !binary.exists() {
            return Err(format!(
                "{} not found; build the binaries (`cargo build --release --bins`) or pass --bin-dir",
                binary.display()
            ));
        }
        nodes.push(Node {
            log: work_dir.join("logs").join(format!("{stem}.log")),
            store: broker_name
                .as_ref()
                .map(|_| work_dir.join("store").join(stem.as_str())),
            name: stem,
            role,
            broker_name,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            binary,
            config,
            child: None,
        });
    }
    Ok(Cluster {
        nodes,
        namesrv_addr,
        work_dir: work_dir.to_owned(),
    })
}
