//! A broker with `busy_poll_us` set: it polls its sockets while requests come, still
//! answers every one of them, and goes back to sleep (no CPU used) once traffic stops. Both
//! in-process (the poller's state on the broker's thread) and as the real binary (its CPU
//! time while idle).

mod common;

use std::time::{Duration, Instant};

use actimq::admin::AdminClient;
use actimq::internals::actors::broker::start_broker;
use actimq::internals::actors::busy_poll::{self, PollerState};
use actimq::internals::actors::namesrv::start_namesrv;
use actimq::internals::config::{BrokerConfig, NamesrvConfig};
use actimq::internals::protocol::message::SendMessageRequestHeader;
use actimq::internals::storage::StoreConfig;
use bytes::Bytes;
use common::process::{broker, broker_config, namesrv};

const TIMEOUT: Duration = Duration::from_secs(10);

fn send_header(topic: &str) -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "busy-poll-test".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id: 0,
        born_timestamp: 1,
        ..Default::default()
    }
}

/// Waits, yielding to the runtime, up to 10 s for the poller of this thread to be `want`.
async fn poller_becomes(want: PollerState) {
    let deadline = Instant::now() + TIMEOUT;
    while busy_poll::state() != want {
        assert!(
            Instant::now() < deadline,
            "the broker's poller stayed {:?}, expected {want:?}",
            busy_poll::state()
        );
        actix_rt::time::sleep(Duration::from_millis(1)).await;
    }
}

#[test]
fn the_broker_polls_while_requests_come_and_sleeps_after() {
    actix_rt::System::new().block_on(async {
        let dir = tempfile::tempdir().expect("temp dir");
        let ns = start_namesrv(NamesrvConfig {
            listen_host: "127.0.0.1".into(),
            listen_port: 0,
            ..NamesrvConfig::default()
        })
        .await
        .expect("start a name server");
        assert_eq!(busy_poll::state(), PollerState::Off);
        let b = start_broker(BrokerConfig {
            listen_host: "127.0.0.1".into(),
            listen_port: 0,
            namesrv_addr: ns.addr.to_string(),
            // Long enough that a slow test machine cannot miss the polling window.
            busy_poll_us: 300_000,
            store: StoreConfig {
                store_path_root_dir: dir.path().join("store"),
                mapped_file_size_commit_log: 16 << 20,
                warm_mapped_file_enable: false,
                ..StoreConfig::default()
            },
            ..BrokerConfig::default()
        })
        .await
        .expect("start a broker");
        // The broker shares this thread, so its poller is this thread's.
        poller_becomes(PollerState::Sleeping).await;

        let mut admin = AdminClient::new(&ns.addr.to_string(), TIMEOUT);
        let addr = b.addr.to_string();
        for i in 0..200u32 {
            let r = admin
                .send(
                    &addr,
                    &send_header("BusyPolled"),
                    Bytes::from(format!("m{i}")),
                )
                .await
                .expect("send");
            assert_eq!(r.queue_offset, i64::from(i), "sends stored in order");
        }
        assert_eq!(busy_poll::state(), PollerState::Polling);
        poller_becomes(PollerState::Sleeping).await;

        // The next request wakes it again, and is answered.
        admin
            .send(
                &addr,
                &send_header("BusyPolled"),
                Bytes::from_static(b"late"),
            )
            .await
            .expect("send after the broker went to sleep");
        poller_becomes(PollerState::Polling).await;
    });
}

/// CPU time (user + system) of process `pid` so far, in clock ticks.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("comm field") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

#[test]
fn an_idle_busy_polling_broker_uses_no_cpu() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 120_000);
    let cfg = broker_config(dir.path(), "broker-busy", "busy_poll_us = 20000");
    let b = broker(&cfg, &ns.addr);
    let system = actix_rt::System::new();
    system.block_on(async {
        let mut admin = AdminClient::new(&ns.addr, TIMEOUT);
        for i in 0..100u32 {
            let r = admin
                .send(
                    &b.addr,
                    &send_header("BusyIdle"),
                    Bytes::from(format!("m{i}")),
                )
                .await
                .expect("send to a busy-polling broker");
            assert_eq!(r.queue_offset, i64::from(i));
        }
    });
    // Traffic stopped: after its 20 ms budget the broker must sleep. A broker that kept
    // polling would use about a full core over the second measured here (~100 ticks), and
    // still tens of ticks on a loaded machine.
    std::thread::sleep(Duration::from_millis(300));
    let before = cpu_ticks(b.child.id());
    std::thread::sleep(Duration::from_secs(1));
    let used = cpu_ticks(b.child.id()) - before;
    assert!(
        used <= 8,
        "an idle broker used {used} clock ticks of CPU in one second"
    );
}
