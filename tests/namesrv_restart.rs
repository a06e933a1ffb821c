//! Brokers find a restarted name server by themselves within a second or two: a master and
//! its slave, registered with a name server that is killed with SIGKILL and started again on
//! the same port 3 s later, are both listed again without waiting for their periodic
//! registration (30 s here). The measured time is printed (`--nocapture`).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::process::{eventually, mqadmin, spawn, Proc};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn namesrv_on(dir: &Path, port: u16) -> Proc {
    let file = dir.join("namesrv.toml");
    std::fs::write(&file, "listen_host = \"127.0.0.1\"\n").unwrap();
    spawn(
        "mqnamesrv",
        &[
            "-c",
            file.to_str().unwrap(),
            "--listen-port",
            &port.to_string(),
        ],
    )
}

fn broker_on(dir: &Path, file: &str, ns: &str, extra: &str) -> Proc {
    let path = dir.join(format!("{file}.toml"));
    std::fs::write(
        &path,
        format!(
            "broker_name = \"broker-a\"\nlisten_host = \"127.0.0.1\"\n\
             register_broker_interval = 30000\nstore_path_root_dir = \"{}\"\n\
             mapped_file_size_commit_log = 8388608\nwarm_mapped_file_enable = false\n{extra}\n",
            dir.join(format!("{file}-store")).display()
        ),
    )
    .unwrap();
    spawn(
        "mqbroker",
        &["-c", path.to_str().unwrap(), "-n", ns, "--listen-port", "0"],
    )
}

fn listed(ns: &str, addrs: &[&str]) -> bool {
    let (ok, out, _) = mqadmin(&["-n", ns, "clusterList"]);
    ok && addrs.iter().all(|a| out.contains(a))
}

#[test]
fn a_master_and_its_slave_register_again_with_a_restarted_name_server() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let ns_addr = format!("127.0.0.1:{port}");
    let mut ns = namesrv_on(dir.path(), port);
    let master = broker_on(dir.path(), "master", &ns_addr, "");
    let slave = broker_on(
        dir.path(),
        "slave",
        &ns_addr,
        "broker_id = 1\nbroker_role = \"slave\"",
    );
    eventually(Duration::from_secs(30), "both brokers registered", || {
        listed(&ns_addr, &[&master.addr, &slave.addr]).then_some(())
    });
    ns.kill9();
    // An outage long enough for the brokers' reconnect attempts to back off.
    std::thread::sleep(Duration::from_secs(3));
    let restarted = Instant::now();
    let _ns = namesrv_on(dir.path(), port);
    // Well below the 30 s periodic registration: only the reconnect can do it.
    eventually(
        Duration::from_secs(15),
        "both brokers registered with the restarted name server",
        || listed(&ns_addr, &[&master.addr, &slave.addr]).then_some(()),
    );
    println!(
        "master and slave registered again {} ms after the name server restarted",
        restarted.elapsed().as_millis()
    );
}
