//! Starting the real binaries for integration tests: each on 127.0.0.1 with port 0, its
//! address read from its "listening on" log line, torn down on drop.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A running binary.
pub struct Proc {
    pub name: &'static str,
    pub child: Child,
    pub addr: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

fn exe(name: &str) -> &'static str {
    match name {
        "mqnamesrv" => env!("CARGO_BIN_EXE_mqnamesrv"),
        "mqbroker" => env!("CARGO_BIN_EXE_mqbroker"),
        "mqadmin" => env!("CARGO_BIN_EXE_mqadmin"),
        other => panic!("unknown binary {other}"),
    }
}

/// Starts `name` with `args` and waits (up to 30 s) for its "listening on ADDR" line.
pub fn spawn(name: &'static str, args: &[&str]) -> Proc {
    let mut child = Command::new(exe(name))
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let stderr = child.stderr.take().expect("stderr piped");
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx): (_, Receiver<String>) = channel();
    let log2 = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split(" listening on ").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or("").to_owned();
                let _ = tx.send(addr);
            }
            log2.lock().unwrap().push(line);
        }
    });
    let addr = match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(a) => a,
        Err(_) => {
            let _ = child.kill();
            panic!(
                "{name} did not start listening; log:\n{}",
                log.lock().unwrap().join("\n")
            );
        }
    };
    Proc {
        name,
        child,
        addr,
        log,
    }
}

impl Proc {
    /// SIGTERM, then wait (up to 30 s) for the exit status.
    pub fn terminate(&mut self) -> ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.wait(Duration::from_secs(30))
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for exit, panicking after `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not exit; log:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything it logged so far.
    pub fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A name server with fast broker expiry (for failure tests).
pub fn namesrv(dir: &Path, expire_ms: u64) -> Proc {
    let file = dir.join(format!(
        "namesrv-{}.toml",
        std::process::id() ^ rand_suffix()
    ));
    std::fs::write(
        &file,
        format!("listen_host = \"127.0.0.1\"\nscan_not_active_broker_interval = 200\nbroker_channel_expired_time = {expire_ms}\n"),
    )
    .unwrap();
    spawn(
        "mqnamesrv",
        &["-c", file.to_str().unwrap(), "--listen-port", "0"],
    )
}

fn rand_suffix() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

/// A broker config file in `dir` with the given extra TOML lines.
pub fn broker_config(dir: &Path, name: &str, extra: &str) -> std::path::PathBuf {
    let file = dir.join(format!("{name}.toml"));
    let store = dir.join(format!("{name}-store"));
    std::fs::write(
        &file,
        format!(
            "broker_name = \"{name}\"\nlisten_host = \"127.0.0.1\"\nregister_broker_interval = 1000\n\
             store_path_root_dir = \"{}\"\nmapped_file_size_commit_log = 16777216\nwarm_mapped_file_enable = false\n{extra}\n",
            store.display()
        ),
    )
    .unwrap();
    file
}

/// Starts a broker from `config` registering with `namesrv`, on a free port.
pub fn broker(config: &Path, namesrv: &str) -> Proc {
    broker_on_port(config, namesrv, "0")
}

/// Starts a broker from `config` registering with `namesrv`, listening on `port`.
fn broker_on_port(config: &Path, namesrv: &str, port: &str) -> Proc {
    spawn(
        "mqbroker",
        &[
            "-c",
            config.to_str().unwrap(),
            "-n",
            namesrv,
            "--listen-port",
            port,
        ],
    )
}

/// Runs mqadmin and returns (success, stdout, stderr).
pub fn mqadmin(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(exe("mqadmin"))
        .args(args)
        .output()
        .expect("run mqadmin");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Retries `f` until it returns Some, for at most `limit`.
pub fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `mqadmin updateTopic -b` of `topic` with `queues` queues on the broker at `broker`,
/// then waits until the name server's route lists that broker.
pub fn create_topic_on(ns: &str, broker: &str, topic: &str, queues: u32) {
    let q = queues.to_string();
    let (ok, out, err) = mqadmin(&[
        "-n",
        ns,
        "updateTopic",
        "-b",
        broker,
        "-t",
        topic,
        "-r",
        &q,
        "-w",
        &q,
    ]);
    assert!(ok, "updateTopic {topic} on {broker}: {out}{err}");
    eventually(Duration::from_secs(30), "the topic's route", || {
        let (ok, out, _) = mqadmin(&["-n", ns, "topicRoute", "-t", topic]);
        (ok && out.contains(broker)).then_some(())
    });
}

/// Starts a broker from `config` again on the port of `old_addr` (as a real broker
/// restarts: offset ids and clients' links name the port), once the old process's sockets
/// have let go of it (they may hold it for a moment after it exits).
pub fn restart_broker_on(config: &Path, namesrv: &str, old_addr: &str) -> Proc {
    let port = old_addr.rsplit(':').next().unwrap().to_owned();
    eventually(
        Duration::from_secs(30),
        "the broker's port to be free",
        || {
            std::net::TcpListener::bind(("127.0.0.1", port.parse::<u16>().unwrap()))
                .ok()
                .map(drop)
        },
    );
    broker_on_port(config, namesrv, &port)
}
