//! `mqadmin`: the operator's command line, with RocketMQ's sub-command names and short flags.
//! Tables for people by default, `--json` for scripts.

use std::process::ExitCode;
use std::time::Duration;

use actimq::admin::{AdminClient, AdminError};
use actimq::protocol::route::ClusterInfo;
use actimq::protocol::topic::{
    CreateTopicRequestHeader, DeleteTopicFromNamesrvRequestHeader, DeleteTopicRequestHeader,
    PERM_READ_WRITE,
};
use actimq::protocol::RequestCode;
use bytes::Bytes;
use clap::{Parser, Subcommand};

/// actimq admin tool.
#[derive(Parser, Debug)]
#[command(name = "mqadmin", version, about)]
struct Args {
    /// Name servers, `host:port;host:port`.
    #[arg(
        short = 'n',
        long = "namesrvAddr",
        env = "NAMESRV_ADDR",
        global = true,
        default_value = ""
    )]
    namesrv: String,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create or update a topic on one broker (-b) or on every master of a cluster (-c).
    #[command(name = "updateTopic")]
    UpdateTopic {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Cluster whose masters get the topic.
        #[arg(short = 'c', long = "clusterName", conflicts_with = "broker")]
        cluster: Option<String>,
        /// One broker's address.
        #[arg(short = 'b', long = "brokerAddr")]
        broker: Option<String>,
        /// Read queues.
        #[arg(short = 'r', long = "readQueueNums", default_value_t = 8)]
        read: i32,
        /// Write queues.
        #[arg(short = 'w', long = "writeQueueNums", default_value_t = 8)]
        write: i32,
        /// Permission: 2 write, 4 read, 6 both.
        #[arg(short = 'p', long = "perm", default_value_t = PERM_READ_WRITE)]
        perm: i32,
        /// Ordered topic.
        #[arg(short = 'o', long = "order", default_value_t = false)]
        order: bool,
    },
    /// Delete a topic from every master of a cluster and from the name servers.
    #[command(name = "deleteTopic")]
    DeleteTopic {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Cluster.
        #[arg(short = 'c', long = "clusterName")]
        cluster: String,
    },
    /// List every topic the name servers know.
    #[command(name = "topicList")]
    TopicList,
    /// Show a topic's route: brokers and queue counts.
    #[command(name = "topicRoute")]
    TopicRoute {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
    /// Per queue: min offset, max offset, last update time.
    #[command(name = "topicStatus")]
    TopicStatus {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
    },
    /// Every broker: cluster, name, id, address.
    #[command(name = "clusterList")]
    ClusterList,
    /// One broker's runtime state as `key : value` lines (commit-log offsets, whether
    /// writes are refused, damage found in the commit log), then any damage one range a line.
    #[command(name = "brokerStatus")]
    BrokerStatus {
        /// The broker's address.
        #[arg(short = 'b', long = "brokerAddr")]
        broker: String,
    },
    /// Send one message and print where it went.
    #[command(name = "sendMessage")]
    SendMessage {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Message body.
        #[arg(short = 'p', long = "body")]
        body: String,
        /// Business keys (space-separated).
        #[arg(short = 'k', long = "keys")]
        keys: Option<String>,
        /// Tag.
        #[arg(short = 'c', long = "tags")]
        tags: Option<String>,
    },
    /// Print messages of a topic (from the group's committed offsets, or from the start).
    #[command(name = "consumeMessage")]
    ConsumeMessage {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Consumer group; its offsets are read and advanced.
        #[arg(
            short = 'g',
            long = "consumerGroup",
            default_value = "mqadmin-consumer"
        )]
        group: String,
        /// Stop after this many messages.
        #[arg(short = 'c', long = "count", default_value_t = 128)]
        count: usize,
        /// Start at each queue's first message instead of the group's offset.
        #[arg(long = "from-beginning")]
        from_beginning: bool,
    },
    /// Per queue: broker offset, consumer offset and lag of a consumer group; total lag.
    #[command(name = "consumerProgress")]
    ConsumerProgress {
        /// Consumer group.
        #[arg(short = 'g', long = "groupName")]
        group: String,
    },
    /// The members of a consumer group and the queues averaging allocation gives each.
    #[command(name = "consumerConnection")]
    ConsumerConnection {
        /// Consumer group.
        #[arg(short = 'g', long = "consumerGroup")]
        group: String,
    },
}

fn all_masters(info: &ClusterInfo) -> Vec<String> {
    let mut v: Vec<String> = info
        .broker_addr_table
        .values()
        .filter_map(|b| b.master_addr().map(str::to_owned))
        .collect();
    v.sort();
    v
}

fn masters(info: &ClusterInfo, cluster: &str) -> Result<Vec<String>, String> {
    let names = info
        .cluster_addr_table
        .get(cluster)
        .ok_or_else(|| format!("cluster '{cluster}' is not known to the name servers"))?;
    Ok(names
        .iter()
        .filter_map(|n| {
            info.broker_addr_table
                .get(n)?
                .master_addr()
                .map(str::to_owned)
        })
        .collect())
}

/// One damaged commit-log range as the broker's `damage` value lists it. Every field has a
/// default so a broker that adds or drops one still prints.
#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct DamageLine {
    from: u64,
    to: u64,
    bytes: u64,
    kind: String,
    found_by: String,
    found_at: i64,
    reason: String,
}

/// `key : value` lines sorted by key (as RocketMQ's `brokerStatus`), then what an operator
/// must act on spelled out: refused writes, and each damaged range on its own line.
fn print_broker_status(table: &std::collections::BTreeMap<String, String>) {
    let width = table.keys().map(String::len).max().unwrap_or(0);
    for (key, value) in table {
        println!("{key:<width$} : {value}");
    }
    if let Some(why) = table.get("writeRefused").filter(|v| v.as_str() != "false") {
        println!();
        println!("WRITES REFUSED: {why}");
    }
    let Some(raw) = table
        .get("damage")
        .filter(|v| !v.is_empty() && v.as_str() != "[]")
    else {
        return;
    };
    println!();
    let ranges: Vec<DamageLine> = match serde_json::from_str(raw) {
        Ok(r) => r,
        Err(e) => {
            println!("commit-log damage: the broker's list does not parse ({e}); raw value above");
            return;
        }
    };
    println!(
        "COMMIT-LOG DAMAGE: {} range(s); the messages in them cannot be delivered, all others are",
        ranges.len()
    );
    for r in &ranges {
        println!(
            "  offsets {}..{}  {} bytes  {}  found by {} at {}  reason: {}",
            r.from,
            r.to,
            r.bytes,
            r.kind,
            r.found_by,
            utc(r.found_at),
            r.reason
        );
    }
    if let Some(n) = table.get("damageDropped").filter(|v| v.as_str() != "0") {
        println!("  ({n} older range(s) no longer fit the damage log; see the broker's log)");
    }
}

/// `ms` since the epoch as `YYYY-MM-DD hh:mm:ss.mmm UTC` (days to a civil date by Howard
/// Hinnant's algorithm), so no date crate is needed for one column.
fn utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let milli = ms.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{milli:03} UTC",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

fn print_json<T: serde::Serialize>(v: &T) -> Result<(), String> {
    serde_json::to_string_pretty(v)
        .map(|s| println!("{s}"))
        .map_err(|e| e.to_string())
}

async fn run(args: Args) -> Result<(), String> {
    let mut admin = AdminClient::new(&args.namesrv, Duration::from_secs(5));
    let e = |e: AdminError| e.to_string();
    match args.command {
        Command::UpdateTopic {
            topic,
            cluster,
            broker,
            read,
            write,
            perm,
            order,
        } => {
            let header = CreateTopicRequestHeader {
                topic: topic.clone(),
                default_topic: "TBW102".into(),
                read_queue_nums: read,
                write_queue_nums: write,
                perm,
                topic_sys_flag: 0,
                order,
            };
            let targets = match (broker, cluster) {
                (Some(b), _) => vec![b],
                (None, Some(c)) => masters(&admin.cluster_info().await.map_err(e)?, &c)?,
                (None, None) => return Err("updateTopic needs -b BROKER_ADDR or -c CLUSTER".into()),
            };
            if targets.is_empty() {
                return Err("no master broker to create the topic on".into());
            }
            for addr in targets {
                admin.update_topic(&addr, &header).await.map_err(e)?;
                if !args.json {
                    println!("create topic to {addr} success.");
                }
            }
            if args.json {
                print_json(&header)?;
            }
        }
        Command::DeleteTopic { topic, cluster } => {
            for addr in masters(&admin.cluster_info().await.map_err(e)?, &cluster)? {
                let h = DeleteTopicRequestHeader {
                    topic: topic.clone(),
                };
                admin
                    .call_ok(&addr, RequestCode::DeleteTopicInBroker, &h, Bytes::new())
                    .await
                    .map_err(e)?;
                println!("delete topic [{topic}] from cluster [{cluster}] broker {addr} success.");
            }
            let h = DeleteTopicFromNamesrvRequestHeader {
                topic: topic.clone(),
                cluster_name: Some(cluster),
            };
            for ns in args
                .namesrv
                .split(';')
                .map(str::trim)
                .filter(|s| !s.is_empty())
            {
                admin
                    .call_ok(ns, RequestCode::DeleteTopicInNamesrv, &h, Bytes::new())
                    .await
                    .map_err(e)?;
                println!("delete topic [{topic}] from NameServer {ns} success.");
            }
        }
        Command::TopicList => {
            let list = admin.topic_list().await.map_err(e)?;
            if args.json {
                print_json(&list)?;
            } else {
                for t in list.topic_list {
                    println!("{t}");
                }
            }
        }
        Command::TopicRoute { topic } => {
            let route = admin.route(&topic).await.map_err(e)?;
            if args.json {
                print_json(&route)?;
            } else {
                println!(
                    "{:<20} {:<6} {:<24} {:<6} {:<6} {:<4}",
                    "#Broker Name", "#BID", "#Addr", "#Read", "#Write", "#Perm"
                );
                for b in &route.broker_datas {
                    let q = route
                        .queue_datas
                        .iter()
                        .find(|q| q.broker_name == b.broker_name);
                    for (id, addr) in &b.broker_addrs {
                        let (r, w, p) = q
                            .map(|q| (q.read_queue_nums, q.write_queue_nums, q.perm))
                            .unwrap_or((0, 0, 0));
                        println!(
                            "{:<20} {:<6} {:<24} {:<6} {:<6} {:<4}",
                            b.broker_name, id, addr, r, w, p
                        );
                    }
                }
            }
        }
        Command::TopicStatus { topic } => {
            let route = admin.route(&topic).await.map_err(e)?;
            let mut rows = Vec::new();
            for b in &route.broker_datas {
                let Some(master) = b.master_addr() else {
                    continue;
                };
                let stats = admin.topic_stats(master, &topic).await.map_err(e)?;
                rows.extend(stats.offset_table);
            }
            if args.json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(mq, o)| serde_json::json!({"broker_name": mq.broker_name, "queue_id": mq.queue_id, "min_offset": o.min_offset, "max_offset": o.max_offset, "last_update_timestamp": o.last_update_timestamp}))
                    .collect();
                print_json(&v)?;
            } else {
                println!(
                    "{:<20} {:<5} {:<14} {:<14} #Last Updated (ms)",
                    "#Broker Name", "#QID", "#Min Offset", "#Max Offset"
                );
                for (mq, o) in rows {
                    println!(
                        "{:<20} {:<5} {:<14} {:<14} {}",
                        mq.broker_name,
                        mq.queue_id,
                        o.min_offset,
                        o.max_offset,
                        o.last_update_timestamp
                    );
                }
            }
        }
        Command::BrokerStatus { broker } => {
            let table = admin.broker_runtime_info(&broker).await.map_err(e)?;
            if args.json {
                print_json(&table)?;
            } else {
                print_broker_status(&table);
            }
        }
        Command::SendMessage { .. }
        | Command::ConsumeMessage { .. }
        | Command::ConsumerProgress { .. }
        | Command::ConsumerConnection { .. } => {
            return Err("internal: client command routed to the admin runner".into());
        }
        Command::ClusterList => {
            let info = admin.cluster_info().await.map_err(e)?;
            let mut rows = Vec::new();
            let mut clusters: Vec<_> = info.cluster_addr_table.iter().collect();
            clusters.sort();
            for (cluster, names) in clusters {
                for name in names {
                    if let Some(b) = info.broker_addr_table.get(name) {
                        for (id, addr) in &b.broker_addrs {
                            rows.push((cluster.clone(), name.clone(), *id, addr.clone()));
                        }
                    }
                }
            }
            if args.json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|(c, n, id, a)| serde_json::json!({"cluster": c, "broker_name": n, "broker_id": id, "addr": a, "version": env!("CARGO_PKG_VERSION")}))
                    .collect();
                print_json(&v)?;
            } else {
                println!(
                    "{:<20} {:<20} {:<5} {:<24} #Version",
                    "#Cluster Name", "#Broker Name", "#BID", "#Addr"
                );
                for (c, n, id, a) in rows {
                    println!(
                        "{:<20} {:<20} {:<5} {:<24} actimq {}",
                        c,
                        n,
                        id,
                        a,
                        env!("CARGO_PKG_VERSION")
                    );
                }
            }
        }
    }
    Ok(())
}

async fn run_client(args: Args) -> Result<(), String> {
    use actimq::actors::pull_consumer::{PullConsumer, PullStatus};
    use actimq::{ClientConfig, ClientInstance, Message, Producer, ProducerConfig};
    let mut admin = AdminClient::new(&args.namesrv, Duration::from_secs(5));
    let e = |e: AdminError| e.to_string();
    match args.command {
        Command::SendMessage {
            topic,
            body,
            keys,
            tags,
        } => {
            let client = ClientInstance::start(ClientConfig::new(args.namesrv.clone()));
            let producer = Producer::start(client, ProducerConfig::new("mqadmin-producer"));
            let mut msg = Message::new(topic, body);
            msg.tags = tags;
            msg.keys = keys
                .map(|k| k.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default();
            let r = producer.send(msg).await.map_err(|e| e.to_string())?;
            if args.json {
                print_json(
                    &serde_json::json!({"msg_id": r.msg_id, "unique_id": r.unique_id, "broker_name": r.message_queue.broker_name, "queue_id": r.message_queue.queue_id, "queue_offset": r.queue_offset}),
                )?;
            } else {
                println!(
                    "{:<34} {:<20} {:<5} #Offset",
                    "#MsgId", "#Broker Name", "#QID"
                );
                println!(
                    "{:<34} {:<20} {:<5} {}",
                    r.msg_id, r.message_queue.broker_name, r.message_queue.queue_id, r.queue_offset
                );
            }
        }
        Command::ConsumeMessage {
            topic,
            group,
            count,
            from_beginning,
        } => {
            let client = ClientInstance::start(ClientConfig::new(args.namesrv.clone()));
            let consumer = PullConsumer::new(client, group);
            let mut printed = 0;
            for mq in consumer
                .fetch_queues(&topic)
                .await
                .map_err(|e| e.to_string())?
            {
                let mut offset = if from_beginning {
                    0
                } else {
                    consumer
                        .fetch_offset(&mq)
                        .await
                        .map_err(|e| e.to_string())?
                        .unwrap_or(0)
                };
                while printed < count {
                    let r = consumer
                        .pull(&mq, "*", offset, 32)
                        .await
                        .map_err(|e| e.to_string())?;
                    if r.status == PullStatus::OffsetIllegal {
                        offset = r.next_begin_offset;
                        continue;
                    }
                    for m in r.messages.iter().take(count - printed) {
                        printed += 1;
                        offset = m.queue_offset + 1;
                        if args.json {
                            print_json(
                                &serde_json::json!({"broker_name": mq.broker_name, "queue_id": mq.queue_id, "queue_offset": m.queue_offset, "msg_id": m.stored.offset_msg_id(), "tags": m.tags(), "keys": m.keys(), "body": String::from_utf8_lossy(m.body())}),
                            )?;
                        } else {
                            println!(
                                "{}:{} offset {} id {} tags {:?} keys {:?} body {}",
                                mq.broker_name,
                                mq.queue_id,
                                m.queue_offset,
                                m.stored.offset_msg_id(),
                                m.tags().unwrap_or(""),
                                m.keys(),
                                String::from_utf8_lossy(m.body())
                            );
                        }
                    }
                    if r.status != PullStatus::Found {
                        break;
                    }
                    offset = offset.max(r.next_begin_offset);
                }
                consumer
                    .commit_offset(&mq, offset)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            if !args.json {
                println!("consumed {printed} message(s) from '{topic}'");
            }
        }
        Command::ConsumerProgress { group } => {
            let info = admin.cluster_info().await.map_err(e)?;
            let mut rows = Vec::new();
            for b in all_masters(&info) {
                if let Ok(stats) = admin.consume_stats(&b, &group, None).await {
                    rows.extend(stats.offset_table);
                }
            }
            let lag: i64 = rows
                .iter()
                .map(|(_, o)| (o.broker_offset - o.consumer_offset).max(0))
                .sum();
            if args.json {
                let v: Vec<_> = rows.iter().map(|(mq, o)| serde_json::json!({"topic": mq.topic, "broker_name": mq.broker_name, "queue_id": mq.queue_id, "broker_offset": o.broker_offset, "consumer_offset": o.consumer_offset, "lag": o.broker_offset - o.consumer_offset})).collect();
                print_json(&serde_json::json!({"queues": v, "total_lag": lag}))?;
            } else {
                println!(
                    "{:<24} {:<20} {:<5} {:>14} {:>16} {:>8}",
                    "#Topic", "#Broker Name", "#QID", "#Broker Offset", "#Consumer Offset", "#Diff"
                );
                for (mq, o) in &rows {
                    println!(
                        "{:<24} {:<20} {:<5} {:>14} {:>16} {:>8}",
                        mq.topic,
                        mq.broker_name,
                        mq.queue_id,
                        o.broker_offset,
                        o.consumer_offset,
                        o.broker_offset - o.consumer_offset
                    );
                }
                println!("Diff Total: {lag}");
            }
        }
        Command::ConsumerConnection { group } => {
            use actimq::actors::rebalancer::allocate::{AllocateAveragely, AllocateStrategy};
            use actimq::protocol::group::{
                GetConsumerListByGroupRequestHeader, GetConsumerListByGroupResponseBody,
            };
            let info = admin.cluster_info().await.map_err(e)?;
            let mut members = std::collections::BTreeSet::new();
            let mut queues = std::collections::BTreeSet::new();
            for b in all_masters(&info) {
                let h = GetConsumerListByGroupRequestHeader {
                    consumer_group: group.clone(),
                };
                if let Ok(f) = admin
                    .call_ok(&b, RequestCode::GetConsumerListByGroup, &h, Bytes::new())
                    .await
                {
                    if let Ok(body) = f.decode_body::<GetConsumerListByGroupResponseBody>() {
                        members.extend(body.consumer_id_list);
                    }
                }
                if let Ok(stats) = admin.consume_stats(&b, &group, None).await {
                    queues.extend(stats.offset_table.into_keys());
                }
            }
            let members: Vec<String> = members.into_iter().collect();
            let queues: Vec<_> = queues.into_iter().collect();
            if members.is_empty() {
                return Err(format!("no consumer of group '{group}' is connected"));
            }
            for m in &members {
                let mine = AllocateAveragely.allocate(&group, m, &queues, &members);
                let list: Vec<String> = mine
                    .iter()
                    .map(|q| format!("{}:{}:{}", q.topic, q.broker_name, q.queue_id))
                    .collect();
                if args.json {
                    print_json(&serde_json::json!({"client_id": m, "queues": list}))?;
                } else {
                    println!("{m}  queues: {}", list.join(" "));
                }
            }
        }
        other => {
            return run(Args {
                command: other,
                ..args
            })
            .await
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let system = actix_rt::System::new();
    match system.block_on(run_client(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("mqadmin: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::utc;

    #[test]
    fn utc_formats_epoch_and_a_recent_time() {
        assert_eq!(utc(0), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14 22:13:20.123 UTC");
        assert_eq!(utc(951_825_600_000), "2000-02-29 12:00:00.000 UTC");
    }
}
