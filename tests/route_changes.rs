//! Route changes travel fast, without waiting for 30 s timers: brokers register with a
//! restarted name server as soon as they reconnect to it (a master and its slave, the name
//! server killed with SIGKILL and started again on the same port 3 s later); and a consumer
//! takes on the queues of a broker that joins within moments (the name server answers its
//! held `WATCH_ROUTES`). Measured times are printed (`--nocapture`).

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
    let name = if extra.contains("broker_name") {
        String::new()
    } else {
        "broker_name = \"broker-a\"\n".to_owned()
    };
    let path = dir.join(format!("{file}.toml"));
    std::fs::write(
        &path,
        format!(
            "{name}listen_host = \"127.0.0.1\"\n\
             register_broker_interval = 30000\nstore_path_root_dir = \"{}\"\n\
             mapped_file_size_commit_log = 8388608\nwarm_mapped_file_enable = false\n{extra}\n",
            dir.join(format!("{file}-store")).display(),
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

#[test]
fn a_consumer_takes_on_the_queues_of_a_new_broker_within_moments() {
    use actimq::{
        ClientConfig, ClientInstance, ConsumeResult, MessageListener, PushConsumer,
        PushConsumerConfig,
    };
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv_on(dir.path(), free_port());
    let a = broker_on(dir.path(), "a", &ns.addr, "broker_name = \"broker-a\"");
    let create = |addr: &str| {
        let (ok, out, err) = mqadmin(&[
            "-n",
            &ns.addr,
            "updateTopic",
            "-b",
            addr,
            "-t",
            "Grow",
            "-r",
            "4",
            "-w",
            "4",
        ]);
        assert!(ok, "{out}{err}");
    };
    create(&a.addr);
    eventually(Duration::from_secs(30), "the route of Grow", || {
        let (ok, _, _) = mqadmin(&["-n", &ns.addr, "topicRoute", "-t", "Grow"]);
        ok.then_some(())
    });
    let system = actix_rt::System::new();
    // Default timers: routes polled every 30 s, rebalance every 20 s.
    let (client, consumer) = system.block_on(async {
        let client = ClientInstance::start(ClientConfig::new(ns.addr.clone())).unwrap();
        let consumer = PushConsumer::start(
            client.clone(),
            PushConsumerConfig::new("grow-group").subscribe("Grow", "*"),
            MessageListener::from_fn(|_| ConsumeResult::Success),
        )
        .await
        .unwrap();
        (client, consumer)
    });
    let ns_addr = ns.addr.clone();
    let holds = move |broker: &'static str| {
        let ns = ns_addr.clone();
        move || {
            let (ok, out, _) = mqadmin(&["-n", &ns, "consumerConnection", "-g", "grow-group"]);
            ok && out.contains(broker)
        }
    };
    system.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !off(holds("broker-a")).await {
            assert!(
                Instant::now() < deadline,
                "the consumer never held broker-a's queues"
            );
            actix_rt::time::sleep(Duration::from_millis(100)).await;
        }
    });
    // Past the one route check a client makes a second after it connects to a broker (so
    // only the name server's answer to the held watch can bring the news), a second broker
    // joins with the topic.
    // (Paused on the actix system, so that the client's timers run on time meanwhile.)
    system.block_on(async { actix_rt::time::sleep(Duration::from_secs(2)).await });
    let b = broker_on(dir.path(), "b", &ns.addr, "broker_name = \"broker-b\"");
    create(&b.addr);
    let joined = Instant::now();
    system.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !off(holds("broker-b")).await {
            assert!(
                Instant::now() < deadline,
                "the consumer did not take on broker-b's queues within 10 s"
            );
            actix_rt::time::sleep(Duration::from_millis(50)).await;
        }
        println!(
            "the consumer held broker-b's queues {} ms after the topic was created there",
            joined.elapsed().as_millis()
        );
        let _ = consumer.shutdown().await;
        ClientInstance::shutdown(&client).await;
    });
}

/// Runs a blocking probe (mqadmin) off the actix thread.
async fn off<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}
