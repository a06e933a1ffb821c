//! Shutting the client down: `Producer::shutdown` lets the sends under way finish and then
//! refuses new ones; `ClientInstance::shutdown` unregisters what it announced from the
//! brokers and closes its connections.

mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use actimq::admin::{AdminClient, AdminError};
use actimq::{
    ClientError, ClientInstance, ConsumeFromWhere, Message, Producer, ProducerConfig, PushConsumer,
    PushConsumerConfig,
};
use futures_util::FutureExt;
use support::{eventually, Inbox, TestCluster};

/// The local ports of the established TCP connections (IPv4, this machine) whose far end
/// is `port`: the client ends of connections to a server listening there. Ports, not a
/// count, so that connections others open or close meanwhile do not blur the picture.
fn connections_to(port: u16) -> BTreeSet<u16> {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("read /proc/net/tcp");
    let port_of_field = |f: Option<&&str>| {
        f.and_then(|a| a.rsplit(':').next())
            .and_then(|p| u16::from_str_radix(p, 16).ok())
    };
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // State 01 is ESTABLISHED.
            let established = fields.get(3) == Some(&"01");
            (established && port_of_field(fields.get(2)) == Some(port))
                .then(|| port_of_field(fields.get(1)))
                .flatten()
        })
        .collect()
}

/// The connections to `port` opened since `before` was taken that are still open.
fn opened_since(before: &BTreeSet<u16>, port: u16) -> BTreeSet<u16> {
    connections_to(port).difference(before).copied().collect()
}

/// The group's members on `broker` (the broker refuses the question for a group with none).
async fn members(admin: &mut AdminClient, broker: &str, group: &str) -> Vec<String> {
    match admin.consumer_ids(broker, group).await {
        Ok(ids) => ids,
        Err(AdminError::Refused { remark, .. }) if remark.contains("no consumer") => Vec::new(),
        Err(e) => panic!("consumer ids: {e}"),
    }
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("host:port")
}

#[test]
fn producer_shutdown_waits_for_sends_under_way_then_refuses_new_ones() {
    actix_rt::System::new().block_on(async {
        const TOPIC: &str = "LifecycleProducer";
        const SENDS: usize = 200;
        let mut cluster = TestCluster::start(1, 1).await;
        cluster.create_topic(TOPIC, 4).await;
        let client = cluster.client();
        let producer = Producer::start(client.clone(), ProducerConfig::new("lifecycle-p"));

        let handles: Vec<_> = (0..SENDS)
            .map(|i| producer.send_async(Message::new(TOPIC, format!("m{i}"))))
            .collect();
        // Straight away, while the sends are still in their tasks' queues.
        producer.shutdown().await;

        // Every send started before the shutdown had finished when it returned.
        let mut ok = 0;
        for (i, h) in handles.into_iter().enumerate() {
            // Unconstrained: tokio's task budget would make the 128th ready handle in one
            // poll say "pending" to force a yield.
            match tokio::task::unconstrained(h).now_or_never() {
                Some(Ok(_)) => ok += 1,
                Some(Err(e)) => panic!("send {i} failed: {e}"),
                None => panic!("send {i} was still under way when shutdown returned"),
            }
        }
        assert_eq!(ok, SENDS);
        assert_eq!(cluster.stored_count(TOPIC).await, SENDS as i64);

        // Every clone is shut, every send form refuses.
        let clone = producer.clone();
        let refused = clone.send(Message::new(TOPIC, "late")).await;
        assert!(matches!(refused, Err(ClientError::Shutdown)), "{refused:?}");
        let refused = producer.send_async(Message::new(TOPIC, "late")).await;
        assert!(matches!(refused, Err(ClientError::Shutdown)), "{refused:?}");
        let refused = producer.send_batch(vec![Message::new(TOPIC, "late")]).await;
        assert!(matches!(refused, Err(ClientError::Shutdown)), "{refused:?}");
        // A second shutdown returns at once; the instance still serves others.
        producer.shutdown().await;
        let other = Producer::start(client.clone(), ProducerConfig::new("lifecycle-p2"));
        other
            .send(Message::new(TOPIC, "other"))
            .await
            .expect("another producer on the same instance still sends");

        ClientInstance::shutdown(&client).await;
        cluster.shutdown().await;
    });
}

#[test]
fn client_instance_shutdown_unregisters_and_closes_its_connections() {
    actix_rt::System::new().block_on(async {
        const TOPIC: &str = "LifecycleClient";
        const GROUP: &str = "lifecycle-consumers";
        let mut cluster = TestCluster::start(1, 1).await;
        cluster.create_topic(TOPIC, 2).await;
        let broker = cluster.broker_addr(0);
        let broker_port = port_of(&broker);
        let namesrv_port = port_of(&cluster.namesrv_addr());
        // The admin client keeps its connection to the broker: opened before the count.
        let mut admin = AdminClient::new(&cluster.namesrv_addr(), support::ADMIN_TIMEOUT);
        assert!(members(&mut admin, &broker, GROUP).await.is_empty());
        let before = (connections_to(broker_port), connections_to(namesrv_port));

        let client = cluster.client();
        let producer = Producer::start(client.clone(), ProducerConfig::new("lifecycle-p"));
        let inbox = Inbox::new();
        let consumer = PushConsumer::start(
            client.clone(),
            PushConsumerConfig::new(GROUP)
                .subscribe(TOPIC, "*")
                .consume_from(ConsumeFromWhere::FirstOffset),
            inbox.listener(),
        )
        .await
        .expect("consumer starts");
        producer
            .send(Message::new(TOPIC, "one"))
            .await
            .expect("send");
        eventually(
            Duration::from_secs(10),
            "the message is consumed",
            || async { inbox.unique() == 1 },
        )
        .await;
        let listed = members(&mut admin, &broker, GROUP).await;
        assert_eq!(listed.len(), 1, "{listed:?}");
        let ours = (
            opened_since(&before.0, broker_port),
            opened_since(&before.1, namesrv_port),
        );
        assert!(!ours.0.is_empty() && !ours.1.is_empty(), "{ours:?}");

        // The consumer is left running on purpose: the instance unregisters it anyway.
        ClientInstance::shutdown(&client).await;

        let listed = members(&mut admin, &broker, GROUP).await;
        assert!(
            listed.is_empty(),
            "the broker still lists {listed:?} in the group after the shutdown"
        );
        eventually(
            Duration::from_secs(5),
            "the instance's connections are closed",
            || async {
                connections_to(broker_port).is_disjoint(&ours.0)
                    && connections_to(namesrv_port).is_disjoint(&ours.1)
            },
        )
        .await;
        let refused = producer.send(Message::new(TOPIC, "late")).await;
        assert!(matches!(refused, Err(ClientError::Shutdown)), "{refused:?}");
        // Shutting a stopped instance down again returns.
        ClientInstance::shutdown(&client).await;
        drop(consumer);
        cluster.shutdown().await;
    });
}

#[test]
fn dropping_an_admin_client_closes_its_connections() {
    actix_rt::System::new().block_on(async {
        let cluster = TestCluster::start(1, 1).await;
        let broker = cluster.broker_addr(0);
        let (broker_port, namesrv_port) = (port_of(&broker), port_of(&cluster.namesrv_addr()));
        let before = (connections_to(broker_port), connections_to(namesrv_port));

        let mut admin = AdminClient::new(&cluster.namesrv_addr(), support::ADMIN_TIMEOUT);
        admin.cluster_info().await.expect("cluster info");
        let _ = members(&mut admin, &broker, "nobody").await;
        let ours = (
            opened_since(&before.0, broker_port),
            opened_since(&before.1, namesrv_port),
        );
        assert!(!ours.0.is_empty() && !ours.1.is_empty(), "{ours:?}");

        drop(admin);
        eventually(
            Duration::from_secs(5),
            "the admin client's connections are closed",
            || async {
                connections_to(broker_port).is_disjoint(&ours.0)
                    && connections_to(namesrv_port).is_disjoint(&ours.1)
            },
        )
        .await;
        cluster.shutdown().await;
    });
}

#[test]
fn a_consumer_that_moved_no_offset_reports_nothing_unsaved() {
    actix_rt::System::new().block_on(async {
        const TOPIC: &str = "LifecycleResume";
        const GROUP: &str = "lifecycle-resumers";
        let mut cluster = TestCluster::start(1, 1).await;
        cluster.create_topic(TOPIC, 2).await;
        let config = || {
            PushConsumerConfig::new(GROUP)
                .subscribe(TOPIC, "*")
                .consume_from(ConsumeFromWhere::FirstOffset)
        };
        // A first run consumes and commits.
        let client = cluster.client();
        let inbox = Inbox::new();
        let first = PushConsumer::start(client.clone(), config(), inbox.listener())
            .await
            .expect("consumer starts");
        let producer = Producer::start(client.clone(), ProducerConfig::new("lifecycle-p"));
        for i in 0..4 {
            producer
                .send(Message::new(TOPIC, format!("m{i}")))
                .await
                .expect("send");
        }
        eventually(Duration::from_secs(10), "4 consumed", || async {
            inbox.unique() == 4
        })
        .await;
        first.shutdown().await.expect("offsets saved");

        // A second run resumes from the committed offsets and consumes nothing new. Its
        // instance is shut down first, so no commit could succeed: there is none to make.
        let client = cluster.client();
        let second = PushConsumer::start(client.clone(), config(), Inbox::new().listener())
            .await
            .expect("consumer starts");
        eventually(
            Duration::from_secs(10),
            "the second run owns both queues",
            || {
                let c = second.clone();
                async move { c.assignment().await.len() == 2 }
            },
        )
        .await;
        ClientInstance::shutdown(&client).await;
        let reported = second.shutdown().await;
        assert_eq!(
            reported,
            Ok(()),
            "offsets read back from the broker were reported as unsaved"
        );
        cluster.shutdown().await;
    });
}
