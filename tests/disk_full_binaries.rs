//! A full disk is a refusal, not a crash or a deletion: the real `mqnamesrv` and `mqbroker`
//! with the store on a 64 MiB tmpfs, filled while producing and before the broker starts.
//! The broker never dies, sends get a clear "service not available" naming the full disk,
//! every acknowledged message stays readable, and once space is freed sends succeed again
//! without a restart. With `delete_oldest` nothing younger than the floor is deleted.
//!
//! Mounting needs root (CI runs as root); elsewhere these tests say so and pass.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use actimq::admin::{AdminClient, AdminError};
use actimq::internals::protocol::message::{PullMessageRequestHeader, SendMessageRequestHeader};
use actimq::internals::protocol::ResponseCode;
use bytes::Bytes;
use common::process::{broker, eventually, mqadmin, namesrv, Proc};

const TIMEOUT: Duration = Duration::from_secs(10);
const TOPIC: &str = "FullDisk";
const QUEUES: i32 = 4;

/// A tmpfs mounted for one test, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a `size_mib` tmpfs, or `None` when this process may not mount (not root).
    fn mount(size_mib: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return Some(Tmpfs { dir });
        }
        // SAFETY: geteuid has no preconditions.
        assert_ne!(
            unsafe { libc::geteuid() },
            0,
            "running as root but could not mount a tmpfs"
        );
        eprintln!("not root: cannot mount a tmpfs, skipping the disk-full test");
        None
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file of `mib` MiB (or as much as fits) to take space.
    fn fill(&self, name: &str, mib: usize) -> PathBuf {
        use std::io::Write;
        let path = self.path().join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0xA5u8; 1 << 20];
        for _ in 0..mib {
            if f.write_all(&chunk).is_err() {
                break;
            }
        }
        path
    }

    fn available(&self) -> u64 {
        fs4::available_space(self.path()).unwrap()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

fn broker_config(dir: &Path, store: &Path, extra: &str) -> PathBuf {
    let file = dir.join("broker.toml");
    std::fs::write(
        &file,
        format!(
            "broker_name = \"broker-full\"\nlisten_host = \"127.0.0.1\"\n\
             register_broker_interval = 1000\nstore_path_root_dir = \"{}\"\n\
             mapped_file_size_commit_log = 8388608\nmapped_file_size_consume_queue = 20000\n\
             max_hash_slot_num = 10000\nmax_index_num = 40000\nclean_resource_interval = 1000\n\
             flush_interval_consume_queue = 200\n{extra}\n",
            store.display()
        ),
    )
    .unwrap();
    file
}

fn send_header(queue_id: i32) -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "full-disk-producer".into(),
        topic: TOPIC.into(),
        queue_id,
        born_timestamp: 1,
        ..Default::default()
    }
}

fn pull_header(queue_id: i32, offset: u64) -> PullMessageRequestHeader {
    PullMessageRequestHeader {
        consumer_group: "full-disk-consumer".into(),
        topic: TOPIC.into(),
        queue_id,
        queue_offset: offset as i64,
        max_msg_nums: 32,
        ..Default::default()
    }
}

fn create_topic(ns: &str, broker: &Proc) {
    eventually(TIMEOUT, "broker registered", || {
        let (ok, out, _) = mqadmin(&["-n", ns, "clusterList"]);
        (ok && out.contains("broker-full")).then_some(())
    });
    let (ok, out, err) = mqadmin(&[
        "-n",
        ns,
        "updateTopic",
        "-b",
        &broker.addr,
        "-t",
        TOPIC,
        "-r",
        "4",
        "-w",
        "4",
    ]);
    assert!(ok, "updateTopic: {out}{err}");
}

/// An acknowledged message: where it went and what it said.
struct Acked {
    queue_id: i32,
    queue_offset: u64,
    body: Bytes,
}

/// Sends until the broker refuses for lack of space (or `limit` messages); returns what
/// was acknowledged and the refusal's remark.
async fn send_until_refused(
    admin: &mut AdminClient,
    broker: &str,
    limit: u32,
) -> (Vec<Acked>, String) {
    let mut acked = Vec::new();
    let started = Instant::now();
    for i in 0..limit {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "no refusal within 120 s"
        );
        let body = Bytes::from(format!("{i:08}-{}", "x".repeat(1000)));
        let queue_id = (i % QUEUES as u32) as i32;
        match admin
            .send(broker, &send_header(queue_id), body.clone())
            .await
        {
            Ok(r) => acked.push(Acked {
                queue_id: r.queue_id,
                queue_offset: r.queue_offset as u64,
                body,
            }),
            Err(AdminError::Refused { code, remark, .. }) => {
                assert!(
                    code.starts_with("SERVICE_NOT_AVAILABLE"),
                    "a full disk answers service not available, got {code}: {remark}"
                );
                return (acked, remark);
            }
            Err(e) => panic!("send {i} failed oddly: {e}"),
        }
    }
    panic!("{limit} sends and the disk never filled");
}

/// Every acknowledged message can still be pulled, in its queue at its offset.
async fn assert_all_readable(admin: &mut AdminClient, broker: &str, acked: &[Acked]) {
    for q in 0..QUEUES {
        let want: Vec<&Acked> = acked.iter().filter(|a| a.queue_id == q).collect();
        let mut got = Vec::new();
        let mut offset = 0;
        let deadline = Instant::now() + Duration::from_secs(60);
        // To the queue's end: a send refused part-way may still have reached the log, and
        // is delivered too (it was not acknowledged, so that is a duplicate at worst).
        loop {
            assert!(Instant::now() < deadline, "queue {q} never drained");
            let r = admin.pull(broker, &pull_header(q, offset)).await.unwrap();
            if r.code == ResponseCode::PullNotFound {
                break;
            }
            assert_eq!(
                r.code,
                ResponseCode::Success,
                "queue {q} at {offset}: {} of {} acknowledged messages read",
                got.len(),
                want.len()
            );
            assert!(!r.messages.is_empty(), "queue {q} stalls at {offset}");
            for m in r.messages {
                offset = m.queue_offset + 1;
                got.push((m.queue_offset, m.body));
            }
        }
        for a in want {
            assert!(
                got.iter()
                    .any(|(o, b)| *o == a.queue_offset && *b == a.body),
                "acknowledged message {q}:{} lost",
                a.queue_offset
            );
        }
    }
}

/// Sends until one is accepted again, within a deadline.
async fn send_until_accepted(admin: &mut AdminClient, broker: &str) -> Acked {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = Bytes::from_static(b"after the disk was freed");
        match admin.send(broker, &send_header(0), body.clone()).await {
            Ok(r) => {
                return Acked {
                    queue_id: r.queue_id,
                    queue_offset: r.queue_offset as u64,
                    body,
                }
            }
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "sends still refused 30 s after space was freed: {e}"
                );
                actix_rt::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn assert_running(b: &mut Proc) {
    assert!(
        b.child.try_wait().unwrap().is_none(),
        "the broker died; log:\n{}",
        b.log_text()
    );
}

/// Fills the disk while producing, checks the refusal, the reads and the recovery.
fn fill_while_producing(extra: &str) {
    let Some(fs) = Tmpfs::mount(64) else { return };
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 120_000);
    let store = fs.path().join("store");
    let cfg = broker_config(dir.path(), &store, extra);
    let mut b = broker(&cfg, &ns.addr);
    create_topic(&ns.addr, &b);
    // Leave the broker about 20 MiB, so it fills in a few thousand sends.
    let filler = fs.fill(
        "filler",
        ((fs.available() >> 20) as usize).saturating_sub(20),
    );
    let system = actix_rt::System::new();
    let acked = system.block_on(async {
        let mut admin = AdminClient::new(&ns.addr, TIMEOUT);
        let (acked, remark) = send_until_refused(&mut admin, &b.addr, 200_000).await;
        assert!(
            remark.contains("space") || remark.contains("disk"),
            "the refusal says why: {remark}"
        );
        assert!(acked.len() > 1000, "only {} sends before full", acked.len());
        assert_running(&mut b);
        // Still refused a moment later, and still alive.
        let again = admin
            .send(&b.addr, &send_header(1), Bytes::from_static(b"again"))
            .await;
        assert!(again.is_err(), "a send on a full disk was accepted");
        assert_all_readable(&mut admin, &b.addr, &acked).await;
        assert_running(&mut b);
        acked
    });
    assert!(
        b.log_text().contains("disk full") || b.log_text().contains("disk nearly full"),
        "the broker logs the full disk; log:\n{}",
        b.log_text()
    );

    std::fs::remove_file(&filler).unwrap();
    system.block_on(async {
        let mut admin = AdminClient::new(&ns.addr, TIMEOUT);
        let after = send_until_accepted(&mut admin, &b.addr).await;
        let mut all = acked;
        all.push(after);
        assert_all_readable(&mut admin, &b.addr, &all).await;
    });
    assert_running(&mut b);
    let status = b.terminate();
    assert!(status.success(), "clean stop; log:\n{}", b.log_text());
}

#[test]
fn a_disk_filled_while_producing_refuses_sends_keeps_every_acked_message_and_recovers() {
    fill_while_producing("warm_mapped_file_enable = true\ndisk_space_warning_level_ratio = 100");
}

#[test]
fn delete_oldest_deletes_nothing_younger_than_its_floor() {
    // Over 50 % forces deletion under delete_oldest, but every segment is younger than the
    // floor, so every acknowledged message must still be there.
    fill_while_producing(
        "warm_mapped_file_enable = false\ndisk_full_policy = \"delete_oldest\"\n\
         disk_max_used_space_ratio = 50\ndisk_space_warning_level_ratio = 100\n\
         forced_retention_floor_minutes = 60",
    );
}

#[test]
fn a_broker_started_on_a_full_disk_serves_reads_and_takes_sends_once_space_is_freed() {
    let Some(fs) = Tmpfs::mount(64) else { return };
    let dir = tempfile::tempdir().unwrap();
    let ns = namesrv(dir.path(), 120_000);
    let store = fs.path().join("store");
    let cfg = broker_config(
        dir.path(),
        &store,
        "warm_mapped_file_enable = true\ndisk_space_warning_level_ratio = 100",
    );
    // Some messages first, on a disk with room.
    let mut b = broker(&cfg, &ns.addr);
    create_topic(&ns.addr, &b);
    let system = actix_rt::System::new();
    let acked = system.block_on(async {
        let mut admin = AdminClient::new(&ns.addr, TIMEOUT);
        let mut acked = Vec::new();
        for i in 0..200u32 {
            let body = Bytes::from(format!("before-{i}"));
            let r = admin
                .send(&b.addr, &send_header((i % 4) as i32), body.clone())
                .await
                .unwrap();
            acked.push(Acked {
                queue_id: r.queue_id,
                queue_offset: r.queue_offset as u64,
                body,
            });
        }
        acked
    });
    assert!(b.terminate().success());
    drop(b);
    // Fill the disk to the last byte, then start the broker on it.
    let filler = fs.fill("filler", 64);
    let mut b = broker(&cfg, &ns.addr);
    system.block_on(async {
        let mut admin = AdminClient::new(&ns.addr, TIMEOUT);
        let (more, remark) = send_until_refused(&mut admin, &b.addr, 200_000).await;
        assert!(
            remark.contains("space") || remark.contains("disk"),
            "{remark}"
        );
        assert_running(&mut b);
        let mut all = acked;
        all.extend(more);
        assert_all_readable(&mut admin, &b.addr, &all).await;
        std::fs::remove_file(&filler).unwrap();
        all.push(send_until_accepted(&mut admin, &b.addr).await);
        assert_all_readable(&mut admin, &b.addr, &all).await;
    });
    assert_running(&mut b);
    assert!(b.terminate().success(), "log:\n{}", b.log_text());
}
