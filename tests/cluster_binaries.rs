//! The real `mqnamesrv`, `mqbroker` and `mqadmin` binaries on loopback ports with temp
//! stores: administration, send and pull over TCP, restarts, crashes under sync flush, two
//! name servers, long polling, hostile input and bad config files.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use actimq::admin::AdminClient;
use actimq::internals::protocol::message::{PullMessageRequestHeader, SendMessageRequestHeader};
use actimq::internals::protocol::{Frame, FrameCodec, ResponseCode};
use bytes::{Bytes, BytesMut};
use common::process::{broker, broker_config, eventually, mqadmin, namesrv, spawn};
use tokio_util::codec::{Decoder, Encoder};

const TIMEOUT: Duration = Duration::from_secs(10);

fn send_header(topic: &str, queue_id: i32) -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "test-producer".into(),
        topic: topic.into(),
        default_topic: "TBW102".into(),
        default_topic_queue_nums: 4,
        queue_id,
        born_timestamp: 1,
        ..Default::default()
    }
}

fn pull_header(topic: &str, queue_id: i32, offset: u64, max: i32) -> PullMessageRequestHeader {
    PullMessageRequestHeader {
        consumer_group: "test-consumer".into(),
        topic: topic.into(),
        queue_id,
        queue_offset: offset as i64,
        max_msg_nums: max,
        ..Default::default()
    }
}

/// Pulls a whole queue from offset 0; returns the bodies in order.
async fn drain_queue(
    admin: &mut AdminClient,
    broker: &str,
    topic: &str,
    queue_id: i32,
) -> Vec<Bytes> {
    let mut offset = 0;
    let mut out = Vec::new();
    loop {
        let r = admin
            .pull(broker, &pull_header(topic, queue_id, offset, 32))
            .await
            .unwrap();
        if r.code != ResponseCode::Success {
            assert_eq!(
                r.code,
                ResponseCode::PullNotFound,
                "queue {queue_id} at {offset}"
            );
            return out;
        }
        for m in r.messages {
            assert_eq!(m.queue_offset, offset);
            offset += 1;
            out.push(m.body);
        }
        assert_eq!(r.header.next_begin_offset as u64, offset);
    }
}

fn cluster_has(ns: &str, needle: &str) -> bool {
    let (ok, out, _) = mqadmin(&["-n", ns, "clusterList"]);
    ok && out.contains(needle)
}

#[test]
fn admin_send_pull_restart_over_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 120_000);
    let cfg = broker_config(dir.path(), "broker-a", "");
    let mut b = broker(&cfg, &ns.addr);
    eventually(TIMEOUT, "broker in clusterList", || {
        cluster_has(&ns.addr, "broker-a").then_some(())
    });

    let (ok, out, err) = mqadmin(&[
        "-n",
        &ns.addr,
        "updateTopic",
        "-c",
        "DefaultCluster",
        "-t",
        "Orders",
        "-r",
        "8",
        "-w",
        "8",
    ]);
    assert!(ok, "updateTopic failed: {out}{err}");
    eventually(TIMEOUT, "route with 8 queues", || {
        let (ok, out, _) = mqadmin(&["-n", &ns.addr, "topicRoute", "-t", "Orders", "--json"]);
        (ok && out.contains("\"write_queue_nums\": 8")).then_some(())
    });

    let system = actix_rt::System::new();
    let sent: BTreeMap<i32, Vec<Bytes>> = system.block_on(async {
        let mut admin = AdminClient::new(&ns.addr, TIMEOUT);
        let mut sent: BTreeMap<i32, Vec<Bytes>> = BTreeMap::new();
        for i in 0..10_000u32 {
            let body = Bytes::from(format!("order-{i}"));
            let r = admin
                .send(&b.addr, &send_header("Orders", -1), body.clone())
                .await
                .unwrap();
            let queue = sent.entry(r.queue_id).or_default();
            assert_eq!(
                r.queue_offset as usize,
                queue.len(),
                "dense offsets per queue"
            );
            queue.push(body);
        }
        assert_eq!(sent.len(), 8, "round robin over all 8 queues");
        for (q, bodies) in &sent {
            assert_eq!(
                &drain_queue(&mut admin, &b.addr, "Orders", *q).await,
                bodies,
                "queue {q}"
            );
        }
        sent
    });

    let (ok, out, _) = mqadmin(&["-n", &ns.addr, "topicStatus", "-t", "Orders"]);
    assert!(
        ok && out.contains("1250"),
        "topicStatus shows the max offsets:\n{out}"
    );

    let status = b.terminate();
    assert!(
        status.success(),
        "mqbroker exit {status:?}; log:\n{}",
        b.log_text()
    );
    assert!(b.log_text().contains("stopped cleanly"));
    drop(b);

    let b = broker(&cfg, &ns.addr);
    eventually(TIMEOUT, "restarted broker registered", || {
        let (ok, out, _) = mqadmin(&["-n", &ns.addr, "topicRoute", "-t", "Orders", "--json"]);
        (ok && out.contains(&b.addr)).then_some(())
    });
    system.block_on(async {
        let mut admin = AdminClient::new(&ns.addr, TIMEOUT);
        for (q, bodies) in &sent {
            assert_eq!(
                &drain_queue(&mut admin, &b.addr, "Orders", *q).await,
                bodies,
                "queue {q} after restart"
            );
        }
        let r = admin
            .send(
                &b.addr,
                &send_header("Orders", 3),
                Bytes::from_static(b"after"),
            )
            .await
            .unwrap();
        assert_eq!(
            r.queue_offset as usize,
            sent[&3].len(),
            "offsets continue after restart"
        );
    });
}

#[test]
fn sync_flush_keeps_every_acknowledged_message_across_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 120_000);
    let cfg = broker_config(dir.path(), "broker-s", "flush_disk_type = \"sync_flush\"");
    let mut b = broker(&cfg, &ns.addr);
    let system = actix_rt::System::new();
    let acked = system.block_on(async {
        let mut admin = AdminClient::new(&ns.addr, Duration::from_secs(2));
        let mut acked = Vec::new();
        for i in 0..5_000u32 {
            if i == 400 {
                b.kill9();
            }
            let body = Bytes::from(format!("durable-{i}"));
            match admin
                .send(
                    &b.addr,
                    &send_header("Durable", (i % 4) as i32),
                    body.clone(),
                )
                .await
            {
                Ok(r) => acked.push((r.queue_id, r.queue_offset as u64, body)),
                Err(_) => break,
            }
        }
        acked
    });
    assert!(
        acked.len() >= 400,
        "only {} acks before the kill",
        acked.len()
    );
    let b = broker(&cfg, &ns.addr);
    system.block_on(async {
        let mut admin = AdminClient::new(&ns.addr, TIMEOUT);
        for (q, offset, body) in &acked {
            let r = admin
                .pull(&b.addr, &pull_header("Durable", *q, *offset, 1))
                .await
                .unwrap();
            assert_eq!(
                r.code,
                ResponseCode::Success,
                "acknowledged message {q}:{offset} lost"
            );
            assert_eq!(&r.messages[0].body, body);
        }
    });
}

#[test]
fn two_name_servers_see_the_broker_and_drop_it_after_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let ns1 = namesrv(dir.path(), 2_000);
    let ns2 = namesrv(dir.path(), 2_000);
    let both = format!("{};{}", ns1.addr, ns2.addr);
    let cfg = broker_config(dir.path(), "broker-t", "");
    let mut b = broker(&cfg, &both);
    let (ok, _, err) = mqadmin(&[
        "-n",
        &both,
        "updateTopic",
        "-b",
        &b.addr,
        "-t",
        "Twice",
        "-r",
        "4",
        "-w",
        "4",
    ]);
    assert!(ok, "{err}");
    let route = |ns: &str| {
        let (ok, out, _) = mqadmin(&["-n", ns, "topicRoute", "-t", "Twice", "--json"]);
        ok.then_some(out)
    };
    let r1 = eventually(TIMEOUT, "route on name server 1", || route(&ns1.addr));
    let r2 = eventually(TIMEOUT, "route on name server 2", || route(&ns2.addr));
    assert_eq!(r1, r2, "both name servers return the same route");
    assert!(r1.contains(&b.addr));
    b.kill9();
    for ns in [&ns1.addr, &ns2.addr] {
        eventually(Duration::from_secs(15), "broker dropped", || {
            (!cluster_has(ns, "broker-t")).then_some(())
        });
        assert!(route(ns).is_none(), "route gone from {ns}");
    }
}

#[test]
fn long_polling_answers_when_a_message_arrives() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 120_000);
    let cfg = broker_config(dir.path(), "broker-l", "");
    let b = broker(&cfg, &ns.addr);
    let system = actix_rt::System::new();
    system.block_on(async {
        let mut admin = AdminClient::new(&ns.addr, Duration::from_secs(30));
        admin
            .send(
                &b.addr,
                &send_header("Polled", 0),
                Bytes::from_static(b"first"),
            )
            .await
            .unwrap();
        let addr = b.addr.clone();
        let waiter = actix_rt::spawn(async move {
            let mut puller = AdminClient::new("", Duration::from_secs(30));
            let mut h = pull_header("Polled", 0, 1, 32);
            h.sys_flag = 0x2;
            h.suspend_timeout_millis = 15_000;
            let start = Instant::now();
            let r = puller.pull(&addr, &h).await.unwrap();
            (r, start.elapsed())
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        admin
            .send(
                &b.addr,
                &send_header("Polled", 0),
                Bytes::from_static(b"second"),
            )
            .await
            .unwrap();
        let (r, waited) = waiter.await.unwrap();
        assert_eq!(r.code, ResponseCode::Success);
        assert_eq!(r.messages[0].body, Bytes::from_static(b"second"));
        assert!(
            waited >= Duration::from_millis(250),
            "the pull was held until the send"
        );
        assert!(
            waited < Duration::from_secs(10),
            "answered long before the 15 s hold: {waited:?}"
        );
    });
}

fn read_frame(stream: &mut TcpStream) -> Option<Frame> {
    let mut codec = FrameCodec::default();
    let mut buf = BytesMut::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Ok(Some(f)) = codec.decode(&mut buf) {
            return Some(f);
        }
        match stream.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn closed_by_server(stream: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(stream.read(&mut buf), Ok(0) | Err(_))
}

#[test]
fn hostile_bytes_do_not_hurt_other_clients() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 120_000);
    let cfg = broker_config(dir.path(), "broker-h", "");
    let mut b = broker(&cfg, &ns.addr);
    let system = actix_rt::System::new();
    let good = b.addr.clone();
    let ns_addr = ns.addr.clone();
    // A well-behaved client keeps sending and pulling while the attacks run.
    let honest = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let mut admin = AdminClient::new(&ns_addr, TIMEOUT);
            for i in 0..300u32 {
                let r = admin
                    .send(
                        &good,
                        &send_header("Honest", 0),
                        Bytes::from(format!("h{i}")),
                    )
                    .await
                    .unwrap();
                let p = admin
                    .pull(&good, &pull_header("Honest", 0, r.queue_offset as u64, 1))
                    .await
                    .unwrap();
                assert_eq!(p.messages[0].body, Bytes::from(format!("h{i}")));
            }
        })
    });
    let connect = || {
        let s = TcpStream::connect(&b.addr).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s
    };
    // Garbage after a plausible length prefix.
    let mut s = connect();
    s.write_all(&[0, 0, 0, 12]).unwrap();
    s.write_all(b"hello world!").unwrap();
    assert!(closed_by_server(&mut s), "garbage closes the connection");
    // A 2 GiB length prefix.
    let mut s = connect();
    s.write_all(&0x8000_0000u32.to_be_bytes()).unwrap();
    assert!(
        closed_by_server(&mut s),
        "an oversized frame closes the connection"
    );
    // A valid frame with an unknown code gets an error answer naming the code.
    let mut s = connect();
    let mut out = BytesMut::new();
    let mut codec = FrameCodec::default();
    let frame = Frame::new(actimq::internals::protocol::FrameKind::Request, 77, 9999);
    codec.encode(frame, &mut out).unwrap();
    s.write_all(&out).unwrap();
    let answer = read_frame(&mut s).expect("an answer");
    assert_eq!(answer.opaque, 77);
    assert_eq!(
        answer.response_code(),
        Some(ResponseCode::RequestCodeNotSupported)
    );
    assert!(answer.remark.unwrap_or_default().contains("9999"));
    // A truncated frame, then EOF.
    let mut s = connect();
    s.write_all(&[0, 0, 1, 0, 1, 2, 3]).unwrap();
    drop(s);
    honest
        .join()
        .expect("the honest client was never disturbed");
    assert!(b.alive(), "broker still running");
    system.block_on(async {
        let mut admin = AdminClient::new(&ns.addr, TIMEOUT);
        admin
            .send(
                &b.addr,
                &send_header("Honest", 0),
                Bytes::from_static(b"still"),
            )
            .await
            .unwrap();
    });
}

#[test]
fn bad_config_files_are_refused_before_binding() {
    let dir = tempfile::tempdir().unwrap();
    let unknown = dir.path().join("unknown.toml");
    std::fs::write(&unknown, "listen_portt = 10911\n").unwrap();
    let bad_value = dir.path().join("bad.toml");
    std::fs::write(&bad_value, "flush_disk_type = \"sometimes\"\n").unwrap();
    for (bin, file, key) in [
        ("mqbroker", &unknown, "listen_portt"),
        ("mqbroker", &bad_value, "flush_disk_type"),
        ("mqnamesrv", &unknown, "listen_portt"),
    ] {
        let out = std::process::Command::new(match bin {
            "mqbroker" => env!("CARGO_BIN_EXE_mqbroker"),
            _ => env!("CARGO_BIN_EXE_mqnamesrv"),
        })
        .args(["-c", file.to_str().unwrap()])
        .output()
        .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bin} accepted {}", file.display());
        assert!(
            err.contains(key),
            "{bin}: error does not name the key: {err}"
        );
        assert!(
            err.contains(file.file_name().unwrap().to_str().unwrap()),
            "{bin}: error does not name the file: {err}"
        );
    }
    let _ = spawn;
}

#[test]
fn mqadmin_sends_consumes_and_reports_progress() {
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 120_000);
    let cfg = broker_config(dir.path(), "broker-m", "");
    let _b = broker(&cfg, &ns.addr);
    eventually(TIMEOUT, "broker registered", || {
        cluster_has(&ns.addr, "broker-m").then_some(())
    });
    let (ok, out, err) = mqadmin(&[
        "-n",
        &ns.addr,
        "sendMessage",
        "-t",
        "AdminTopic",
        "-p",
        "hello admin",
        "-k",
        "k1 k2",
        "-c",
        "TagA",
        "--json",
    ]);
    assert!(ok, "sendMessage: {err}");
    let sent: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(sent["broker_name"], "broker-m");
    for i in 0..4 {
        assert!(
            mqadmin(&[
                "-n",
                &ns.addr,
                "sendMessage",
                "-t",
                "AdminTopic",
                "-p",
                &format!("more {i}")
            ])
            .0
        );
    }
    let (ok, out, err) = mqadmin(&[
        "-n",
        &ns.addr,
        "consumeMessage",
        "-t",
        "AdminTopic",
        "-g",
        "admin-group",
        "--from-beginning",
    ]);
    assert!(ok, "consumeMessage: {err}");
    assert!(
        out.contains("hello admin")
            && out.contains("TagA")
            && out.contains("consumed 5 message(s)"),
        "{out}"
    );
    // The group's offsets moved to the end: progress shows no lag, and a second run reads nothing.
    let (ok, out, _) = mqadmin(&[
        "-n",
        &ns.addr,
        "consumerProgress",
        "-g",
        "admin-group",
        "--json",
    ]);
    assert!(ok);
    let progress: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(progress["total_lag"], 0, "{progress}");
    let consumed: i64 = progress["queues"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["consumer_offset"].as_i64().unwrap())
        .sum();
    assert_eq!(consumed, 5);
    let (ok, out, _) = mqadmin(&[
        "-n",
        &ns.addr,
        "consumeMessage",
        "-t",
        "AdminTopic",
        "-g",
        "admin-group",
    ]);
    assert!(ok && out.contains("consumed 0 message(s)"), "{out}");
    // No consumer is connected to this group, and the tool says so.
    let (ok, _, err) = mqadmin(&["-n", &ns.addr, "consumerConnection", "-g", "admin-group"]);
    assert!(!ok && err.contains("admin-group"), "{err}");
}

#[test]
fn a_broker_started_before_its_name_server_registers_within_seconds() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on yet: the name server comes up there later.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let ns_addr = format!("127.0.0.1:{port}");
    // The default 30 s registration period: only the quick retry can make the deadline.
    let cfg = broker_config(dir.path(), "broker-early", "");
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "register_broker_interval = 1000",
        "register_broker_interval = 30000",
    );
    std::fs::write(&cfg, text).unwrap();
    let b = broker(&cfg, &ns_addr);
    eventually(TIMEOUT, "a failed registration in the broker's log", || {
        b.log_text().contains("registration failed").then_some(())
    });
    let ns_cfg = dir.path().join("late-namesrv.toml");
    std::fs::write(&ns_cfg, "listen_host = \"127.0.0.1\"\n").unwrap();
    let ns = spawn(
        "mqnamesrv",
        &[
            "-c",
            ns_cfg.to_str().unwrap(),
            "--listen-port",
            &port.to_string(),
        ],
    );
    assert_eq!(ns.addr, ns_addr);
    eventually(TIMEOUT, "the broker in the cluster list", || {
        cluster_has(&ns.addr, "broker-early").then_some(())
    });
}
