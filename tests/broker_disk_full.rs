//! A broker whose disk is over `disk_space_warning_level_ratio` refuses sends with "service
//! not available" and a reason naming the setting, keeps serving reads, and producers carry
//! on through the other broker.

mod support;

use std::time::Duration;

use actimq::admin::{AdminClient, AdminError};
use actimq::internals::protocol::message::SendMessageRequestHeader;
use actimq::{Message, Producer, ProducerConfig};
use bytes::Bytes;
use support::TestCluster;

const TOPIC: &str = "DiskFull";

fn send_header(queue_id: i32) -> SendMessageRequestHeader {
    SendMessageRequestHeader {
        producer_group: "disk-full-test".into(),
        topic: TOPIC.into(),
        queue_id,
        born_timestamp: 1,
        ..Default::default()
    }
}

#[test]
fn a_full_broker_refuses_sends_and_producers_use_the_other() {
    actix_rt::System::new().block_on(async {
        // Any real disk is more than 1 % used, so broker-a counts as full from its start.
        let mut cluster = TestCluster::start_with(2, 1, |i, config| {
            if i == 0 {
                config.store.disk_space_warning_level_ratio = 1;
                // Retention must not try to free space on the test machine's disk.
                config.store.disk_max_used_space_ratio = 100;
            }
        })
        .await;
        cluster.create_topic(TOPIC, 2).await;
        let full = cluster.broker_addr(0);

        let mut admin = AdminClient::new(&cluster.namesrv_addr(), Duration::from_secs(10));
        match admin
            .send(&full, &send_header(0), Bytes::from_static(b"refused"))
            .await
        {
            Err(AdminError::Refused { code, remark, .. }) => {
                assert!(
                    code.starts_with("SERVICE_NOT_AVAILABLE"),
                    "{code}: {remark}"
                );
                assert!(
                    remark.contains("disk_space_warning_level_ratio"),
                    "the reason names the setting: {remark}"
                );
            }
            other => panic!("a full broker accepted or failed oddly: {other:?}"),
        }

        let producer = Producer::start(cluster.client(), ProducerConfig::new("disk-full-pg"));
        for i in 0..40 {
            let sent = producer
                .send(Message::new(TOPIC, format!("m{i}")))
                .await
                .expect("a send goes to the broker with room");
            assert_eq!(sent.message_queue.broker_name, "broker-b");
        }
        // Asking every broker for its offsets is also a read the full broker must answer.
        let stored = cluster.max_offsets(TOPIC).await;
        let on = |broker: &str| -> i64 {
            stored
                .iter()
                .filter(|(q, _)| q.broker_name == broker)
                .map(|(_, n)| n)
                .sum()
        };
        assert_eq!(on("broker-a"), 0, "nothing written on the full broker");
        assert_eq!(on("broker-b"), 40);

        // The full broker keeps its registration: it is still in the topic's route.
        let route = admin.route(TOPIC).await.expect("route");
        assert!(route
            .broker_datas
            .iter()
            .any(|b| b.broker_name == "broker-a"));
        cluster.shutdown().await;
    });
}
