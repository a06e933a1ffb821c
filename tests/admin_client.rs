//! The admin client's plain-typed API on an in-process cluster: clusters and masters, a
//! topic created from a `TopicSpec` and deleted again, its per-queue status, sending and
//! reading messages as a tool does, a group's progress, and the errors a person acts on.

mod support;

use std::time::Duration;

use actimq::admin::{AdminClient, AdminError, ConsumeOptions, TopicSpec};
use actimq::Message;
use support::{eventually, TestCluster};

const TIMEOUT: Duration = Duration::from_secs(10);
const TOPIC: &str = "AdminApi";

#[test]
fn create_status_send_consume_progress_delete() {
    actix_rt::System::new().block_on(async {
        let cluster = TestCluster::start(1, 1).await;
        let broker = cluster.broker_addr(0);
        let mut admin = AdminClient::new(&cluster.namesrv_addr(), TIMEOUT);

        let members = admin.cluster_list().await.unwrap();
        assert_eq!(members.len(), 1, "{members:?}");
        assert_eq!((members[0].broker_id, &members[0].addr), (0, &broker));
        let name = members[0].cluster.clone();
        assert_eq!(
            admin.cluster_masters(&name).await.unwrap(),
            vec![broker.clone()]
        );
        assert!(matches!(
            admin.cluster_masters("NoSuchCluster").await,
            Err(AdminError::UnknownCluster { cluster }) if cluster == "NoSuchCluster"
        ));

        let spec = TopicSpec::new(TOPIC).queues(2);
        let created = admin.create_topic_in_cluster(&name, &spec).await.unwrap();
        assert_eq!(created, vec![broker.clone()]);
        eventually(TIMEOUT, "the route lists the new topic", || {
            let ns = cluster.namesrv_addr();
            async move {
                let mut admin = AdminClient::new(&ns, TIMEOUT);
                admin.route(TOPIC).await.is_ok_and(|r| {
                    r.queue_datas
                        .iter()
                        .any(|q| q.read_queue_nums == 2 && q.write_queue_nums == 2)
                })
            }
        })
        .await;
        let status = admin.topic_status(TOPIC).await.unwrap();
        assert_eq!(status.len(), 2, "{status:?}");
        assert!(status.iter().all(|q| q.max_offset == 0));

        for i in 0..10 {
            let sent = admin
                .send_message(Message::new(TOPIC, format!("m{i}")).with_tags("T"))
                .await
                .unwrap();
            assert_eq!(sent.message_queue.topic, TOPIC);
        }
        let stored: i64 = admin
            .topic_status(TOPIC)
            .await
            .unwrap()
            .iter()
            .map(|q| q.max_offset)
            .sum();
        assert_eq!(stored, 10);

        // Three messages out of a queue holding more: the group's offset stops right after
        // the third, so the next read goes on from the fourth and nothing is skipped.
        let mut options = ConsumeOptions {
            topic: TOPIC.into(),
            group: "admin-api".into(),
            count: 3,
            from_beginning: false,
        };
        let mut bodies = Vec::new();
        let read = admin
            .consume_messages(&options, |m| bodies.push(m.body.clone()))
            .await
            .unwrap();
        assert_eq!(read, 3);
        let progress = admin.consumer_progress("admin-api").await.unwrap();
        let committed: i64 = progress.queues.iter().map(|q| q.consumer_offset).sum();
        assert_eq!(committed, 3, "{progress:?}");
        assert_eq!(progress.total_lag(), 7);

        options.count = 100;
        let read = admin
            .consume_messages(&options, |m| bodies.push(m.body.clone()))
            .await
            .unwrap();
        assert_eq!(read, 7);
        bodies.sort();
        bodies.dedup();
        assert_eq!(bodies.len(), 10, "every message once");
        assert_eq!(
            admin
                .consumer_progress("admin-api")
                .await
                .unwrap()
                .total_lag(),
            0
        );

        assert!(matches!(
            admin.consumer_connection("admin-api").await,
            Err(AdminError::NoConsumer { group }) if group == "admin-api"
        ));

        admin.delete_topic(&name, TOPIC).await.unwrap();
        assert!(admin.route(TOPIC).await.is_err(), "the route is gone");
        cluster.shutdown().await;
    });
}

#[test]
fn no_name_server_is_an_error_that_says_what_to_pass() {
    actix_rt::System::new().block_on(async {
        let mut admin = AdminClient::new("", TIMEOUT);
        let e = admin.cluster_list().await.unwrap_err();
        assert!(matches!(e, AdminError::NoNamesrv));
        assert!(e.to_string().contains("NAMESRV_ADDR"), "{e}");
    });
}
