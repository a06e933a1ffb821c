//! `mqadmin`: the operator's command line, with RocketMQ's sub-command names and short flags.
//! Tables for people by default, `--json` for scripts.
//!
//! A thin front end over [`actimq::admin::AdminClient`]: this file owns parsing arguments
//! and printing answers. It must never build a request itself; every request lives in the
//! library's admin client, where tests and other tools share it.

use std::process::ExitCode;
use std::time::Duration;

use actimq::admin::{
    AdminClient, BrokerStatus, ConsumeOptions, ConsumedMessage, FoundMessage, TopicSpec,
    PERM_READ_WRITE,
};
use actimq::Message;
use anyhow::bail;
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
        #[arg(short = 'r', long = "readQueueNums", default_value_t = TopicSpec::DEFAULT_QUEUES)]
        read: i32,
        /// Write queues.
        #[arg(short = 'w', long = "writeQueueNums", default_value_t = TopicSpec::DEFAULT_QUEUES)]
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
    /// Every broker: cluster, name, id (0 = master), address, commit-log end, and
    /// replication (a master's smallest slave lag, a slave's own lag, in bytes).
    #[command(name = "clusterList")]
    ClusterList,
    /// One broker's replication: a master's slaves (address, acknowledged offset, lag,
    /// state), or a slave's link to its master (state, lag).
    #[command(name = "haStatus")]
    HaStatus {
        /// The broker's address.
        #[arg(short = 'b', long = "brokerAddr")]
        broker: String,
    },
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
        /// Delay level: the broker delivers the message once the level's delay passed
        /// (1 = 1 s, 2 = 5 s, 3 = 10 s, ... with the default `message_delay_level`).
        #[arg(short = 'd', long = "delay-level", default_value_t = 0)]
        delay_level: u32,
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
    /// Messages of a topic with a business key (from every broker serving the topic).
    #[command(name = "queryMsgByKey")]
    QueryMsgByKey {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// The key (one of the message's `KEYS`).
        #[arg(short = 'k', long = "msgKey")]
        key: String,
    },
    /// The message an offset message id names (`#OffsetMsgId` of `sendMessage`: the
    /// storing broker's address and the commit-log offset).
    #[command(name = "queryMsgById")]
    QueryMsgById {
        /// The offset message id.
        #[arg(short = 'i', long = "msgId")]
        id: String,
    },
    /// The message with a unique id (`#MsgId` of `sendMessage`, what consumers see).
    #[command(name = "queryMsgByUniqueKey")]
    QueryMsgByUniqueKey {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// The unique id.
        #[arg(short = 'i', long = "msgId")]
        id: String,
    },
    /// The dead letters of a consumer group: messages its listeners failed
    /// `max_reconsume_times` times, kept in `%DLQ%<group>`.
    #[command(name = "queryDlqMsg")]
    QueryDlqMsg {
        /// Consumer group.
        #[arg(short = 'g', long = "consumerGroup")]
        group: String,
        /// Print at most this many.
        #[arg(short = 'c', long = "count", default_value_t = 128)]
        count: usize,
    },
    /// Send dead letters of a group back to the topics they were first sent to (for a
    /// listener fixed since): one by its id, or all of them. The letters stay listed.
    #[command(name = "resendDlqMsg")]
    ResendDlqMsg {
        /// Consumer group.
        #[arg(short = 'g', long = "consumerGroup")]
        group: String,
        /// Only the letter with this unique id (or offset id); all when left out.
        #[arg(short = 'i', long = "msgId")]
        id: Option<String>,
    },
    /// The message at one offset of one queue.
    #[command(name = "queryMsgByOffset")]
    QueryMsgByOffset {
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Broker name (the set, as `topicRoute` shows it).
        #[arg(short = 'b', long = "brokerName")]
        broker_name: String,
        /// Queue id.
        #[arg(short = 'i', long = "queueId")]
        queue_id: u32,
        /// Offset in the queue.
        #[arg(short = 'o', long = "offset")]
        offset: u64,
    },
    /// Move a consumer group's offsets of a topic to the first message stored at or after
    /// a time (back or forward); its live consumers restart there within moments.
    #[command(name = "resetOffsetByTime")]
    ResetOffsetByTime {
        /// Consumer group.
        #[arg(short = 'g', long = "group")]
        group: String,
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// The time: milliseconds since the epoch, an RFC 3339 time
        /// (2026-12-06T09:00:00Z), or `now`.
        #[arg(short = 's', long = "timestamp")]
        timestamp: String,
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

/// `key : value` lines sorted by key (as RocketMQ's `brokerStatus`), then what an operator
/// must act on spelled out: refused writes, and each damaged range on its own line.
fn print_broker_status(status: &BrokerStatus) {
    let table = &status.table;
    let width = table.keys().map(String::len).max().unwrap_or(0);
    for (key, value) in table {
        println!("{key:<width$} : {value}");
    }
    if let Some(why) = status.write_refused() {
        println!();
        println!("WRITES REFUSED: {why}");
    }
    let Some(damage) = status.damage() else {
        return;
    };
    println!();
    let ranges = match damage {
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
    if let Some(n) = status.damage_dropped() {
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

fn print_json<T: serde::Serialize>(v: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}

/// One message `consumeMessage` read, as a line for people or a JSON object for scripts.
fn print_consumed(m: &ConsumedMessage, json: bool) {
    let body = String::from_utf8_lossy(&m.body);
    if json {
        // `{:#}` on a JSON value is `to_string_pretty`, and cannot fail.
        println!(
            "{:#}",
            serde_json::json!({"broker_name": m.queue.broker_name, "queue_id": m.queue.queue_id, "queue_offset": m.queue_offset, "msg_id": m.msg_id, "offset_msg_id": m.offset_msg_id, "tags": m.tags, "keys": m.keys, "body": body})
        );
    } else {
        println!(
            "{}:{} offset {} id {} offset-id {} tags {:?} keys {:?} body {}",
            m.queue.broker_name,
            m.queue.queue_id,
            m.queue_offset,
            m.msg_id,
            m.offset_msg_id,
            m.tags.as_deref().unwrap_or(""),
            m.keys,
            body
        );
    }
}

/// A time on the command line: milliseconds since the epoch, RFC 3339, or `now`.
fn parse_time(text: &str) -> anyhow::Result<i64> {
    if text == "now" {
        return Ok(std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0));
    }
    if let Ok(ms) = text.parse::<i64>() {
        return Ok(ms);
    }
    match time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
        Ok(t) => Ok((t.unix_timestamp_nanos() / 1_000_000) as i64),
        Err(e) => bail!(
            "'{text}' is not a time: give milliseconds since the epoch, an RFC 3339 time \
             such as 2026-12-06T09:00:00Z, or now ({e})"
        ),
    }
}

/// A found message: every field on its own line (as RocketMQ's `queryMsgById`), or one
/// JSON object.
fn print_found(m: &FoundMessage, json: bool) {
    let body = String::from_utf8_lossy(&m.body);
    if json {
        // `{:#}` on a JSON value is `to_string_pretty`, and cannot fail.
        println!(
            "{:#}",
            serde_json::json!({"topic": m.topic, "broker_name": m.broker_name, "queue_id": m.queue_id, "queue_offset": m.queue_offset, "msg_id": m.msg_id, "offset_msg_id": m.offset_msg_id, "tags": m.tags, "keys": m.keys, "properties": m.properties, "store_timestamp": m.store_timestamp, "born_timestamp": m.born_timestamp, "born_host": m.born_host.to_string(), "store_host": m.store_host.to_string(), "reconsume_times": m.reconsume_times, "body": body})
        );
        return;
    }
    let time = |ms: i64| {
        let utc = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            });
        match utc {
            Some(utc) => format!("{utc} ({ms})"),
            None => ms.to_string(),
        }
    };
    let props: Vec<String> = m
        .properties
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    println!("{:<18}: {}", "Msg Id", m.msg_id);
    println!("{:<18}: {}", "Offset Msg Id", m.offset_msg_id);
    println!("{:<18}: {}", "Topic", m.topic);
    println!("{:<18}: {}", "Broker Name", m.broker_name);
    println!("{:<18}: {}", "Queue ID", m.queue_id);
    println!("{:<18}: {}", "Queue Offset", m.queue_offset);
    println!("{:<18}: {}", "Tags", m.tags.as_deref().unwrap_or(""));
    println!("{:<18}: {}", "Keys", m.keys.join(" "));
    println!("{:<18}: {}", "Store Timestamp", time(m.store_timestamp));
    println!("{:<18}: {}", "Born Timestamp", time(m.born_timestamp));
    println!("{:<18}: {}", "Born Host", m.born_host);
    println!("{:<18}: {}", "Store Host", m.store_host);
    println!("{:<18}: {}", "Reconsume Times", m.reconsume_times);
    println!("{:<18}: {}", "Properties", props.join(" "));
    println!("{:<18}: {}", "Body", body);
    println!();
}

async fn run(args: Args) -> anyhow::Result<()> {
    let mut admin = AdminClient::new(&args.namesrv, Duration::from_secs(5));
    let json = args.json;
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
            let spec = TopicSpec {
                name: topic,
                read_queues: read,
                write_queues: write,
                perm,
                order,
            };
            let targets = match (broker, cluster) {
                (Some(b), _) => vec![b],
                (None, Some(c)) => admin.cluster_masters(&c).await?,
                (None, None) => bail!("updateTopic needs -b BROKER_ADDR or -c CLUSTER"),
            };
            if targets.is_empty() {
                bail!("no master broker to create the topic on");
            }
            for addr in targets {
                admin.create_topic(&addr, &spec).await?;
                if !json {
                    println!("create topic to {addr} success.");
                }
            }
            if json {
                print_json(&spec)?;
            }
        }
        Command::DeleteTopic { topic, cluster } => {
            for addr in admin.cluster_masters(&cluster).await? {
                admin.delete_topic_in_broker(&addr, &topic).await?;
                println!("delete topic [{topic}] from cluster [{cluster}] broker {addr} success.");
            }
            for ns in admin.namesrv_addrs().to_vec() {
                admin
                    .delete_topic_in_namesrv(&ns, &topic, Some(&cluster))
                    .await?;
                println!("delete topic [{topic}] from NameServer {ns} success.");
            }
        }
        Command::TopicList => {
            let list = admin.topic_list().await?;
            if json {
                print_json(&list)?;
            } else {
                for t in list.topic_list {
                    println!("{t}");
                }
            }
        }
        Command::TopicRoute { topic } => {
            let route = admin.route(&topic).await?;
            if json {
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
                        // A slave serves reads only (PERM_READ, 4), whatever the set allows.
                        let p = if *id == 0 { p } else { p & 4 };
                        println!(
                            "{:<20} {:<6} {:<24} {:<6} {:<6} {:<4}",
                            b.broker_name, id, addr, r, w, p
                        );
                    }
                }
            }
        }
        Command::TopicStatus { topic } => {
            let rows = admin.topic_status(&topic).await?;
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .map(|q| serde_json::json!({"broker_name": q.queue.broker_name, "queue_id": q.queue.queue_id, "min_offset": q.min_offset, "max_offset": q.max_offset, "last_update_timestamp": q.last_update_timestamp}))
                    .collect();
                print_json(&v)?;
            } else {
                println!(
                    "{:<20} {:<5} {:<14} {:<14} #Last Updated (ms)",
                    "#Broker Name", "#QID", "#Min Offset", "#Max Offset"
                );
                for q in rows {
                    println!(
                        "{:<20} {:<5} {:<14} {:<14} {}",
                        q.queue.broker_name,
                        q.queue.queue_id,
                        q.min_offset,
                        q.max_offset,
                        q.last_update_timestamp
                    );
                }
            }
        }
        Command::ClusterList => {
            let rows = admin.cluster_list().await?;
            let version = env!("CARGO_PKG_VERSION");
            // Offsets and replication from each broker; one that does not answer shows "-".
            let mut states = Vec::with_capacity(rows.len());
            for b in &rows {
                states.push(admin.broker_status(&b.addr).await.ok());
            }
            let field = |st: &Option<BrokerStatus>, key: &str| {
                st.as_ref()
                    .and_then(|s| s.table.get(key).cloned())
                    .unwrap_or_else(|| "-".to_owned())
            };
            if json {
                let v: Vec<_> = rows
                    .iter()
                    .zip(&states)
                    .map(|(b, st)| serde_json::json!({"cluster": b.cluster, "broker_name": b.broker_name, "broker_id": b.broker_id, "addr": b.addr, "version": version, "max_offset": field(st, "commitLogMaxOffset").parse::<u64>().ok(), "ha_lag_bytes": field(st, "haLagBytes").parse::<u64>().ok(), "ha_state": field(st, "haState")}))
                    .collect();
                print_json(&v)?;
            } else {
                println!(
                    "{:<20} {:<20} {:<5} {:<24} {:<14} {:<12} {:<18} #HA",
                    "#Cluster Name",
                    "#Broker Name",
                    "#BID",
                    "#Addr",
                    "#MaxOffset",
                    "#HALag",
                    "#Version"
                );
                for (b, st) in rows.iter().zip(&states) {
                    println!(
                        "{:<20} {:<20} {:<5} {:<24} {:<14} {:<12} {:<18} {}",
                        b.cluster,
                        b.broker_name,
                        b.broker_id,
                        b.addr,
                        field(st, "commitLogMaxOffset"),
                        field(st, "haLagBytes"),
                        format!("actimq {version}"),
                        field(st, "haState")
                    );
                }
            }
        }
        Command::HaStatus { broker } => {
            let status = admin.broker_status(&broker).await?;
            let get = |k: &str| status.table.get(k).cloned().unwrap_or_default();
            if json {
                let detail: serde_json::Value =
                    serde_json::from_str(&get("haDetail")).unwrap_or(serde_json::Value::Null);
                print_json(
                    &serde_json::json!({"role": get("brokerRole"), "max_offset": get("commitLogMaxOffset"), "confirmed_offset": get("commitLogConfirmedOffset"), "state": get("haState"), "lag_bytes": get("haLagBytes"), "detail": detail}),
                )?;
            } else {
                println!("role             : {}", get("brokerRole"));
                println!("max offset       : {}", get("commitLogMaxOffset"));
                println!("confirmed offset : {}", get("commitLogConfirmedOffset"));
                println!("state            : {}", get("haState"));
                println!("lag (bytes)      : {}", get("haLagBytes"));
                if get("brokerRole") != "SLAVE" {
                    println!("replication port : {}", get("haAddress"));
                    let slaves: Vec<serde_json::Value> =
                        serde_json::from_str(&get("haDetail")).unwrap_or_default();
                    println!(
                        "{:<24} {:<5} {:<16} {:<12} #State",
                        "#Slave", "#BID", "#AckedOffset", "#Lag"
                    );
                    for s in slaves {
                        println!(
                            "{:<24} {:<5} {:<16} {:<12} {}",
                            s["addr"].as_str().unwrap_or("?"),
                            s["broker_id"].to_string(),
                            s["acked_offset"].to_string(),
                            s["lag_bytes"].to_string(),
                            s["state"].as_str().unwrap_or("?")
                        );
                    }
                } else {
                    let link: serde_json::Value =
                        serde_json::from_str(&get("haDetail")).unwrap_or_default();
                    println!(
                        "master           : {}",
                        link["master"].as_str().unwrap_or("(not known yet)")
                    );
                    println!("master's end     : {}", link["master_end"]);
                }
            }
        }
        Command::BrokerStatus { broker } => {
            let status = admin.broker_status(&broker).await?;
            if json {
                print_json(&status.table)?;
            } else {
                print_broker_status(&status);
            }
        }
        Command::SendMessage {
            topic,
            body,
            keys,
            tags,
            delay_level,
        } => {
            let mut msg = Message::new(topic, body).with_delay_level(delay_level);
            msg.tags = tags;
            msg.keys = keys
                .map(|k| k.split_whitespace().map(str::to_owned).collect())
                .unwrap_or_default();
            let r = admin.send_message(msg).await?;
            if json {
                print_json(
                    &serde_json::json!({"status": r.status.to_string(), "msg_id": r.msg_id(), "offset_msg_id": r.offset_msg_id, "broker_name": r.message_queue.broker_name, "queue_id": r.message_queue.queue_id, "queue_offset": r.queue_offset}),
                )?;
            } else {
                println!(
                    "{:<20} {:<34} {:<34} {:<20} {:<5} #Offset",
                    "#Status", "#MsgId", "#OffsetMsgId", "#Broker Name", "#QID"
                );
                println!(
                    "{:<20} {:<34} {:<34} {:<20} {:<5} {}",
                    r.status.to_string(),
                    r.msg_id(),
                    r.offset_msg_id,
                    r.message_queue.broker_name,
                    r.message_queue.queue_id,
                    r.queue_offset
                );
            }
        }
        Command::ConsumeMessage {
            topic,
            group,
            count,
            from_beginning,
        } => {
            let options = ConsumeOptions {
                topic,
                group,
                count,
                from_beginning,
            };
            let read = admin
                .consume_messages(&options, |m| print_consumed(m, json))
                .await?;
            if !json {
                println!("consumed {read} message(s) from '{}'", options.topic);
            }
        }
        Command::QueryMsgByKey { topic, key } => {
            let found = admin.query_by_key(&topic, &key).await?;
            if found.is_empty() {
                bail!("no message of topic '{topic}' has the key '{key}'");
            }
            for m in &found {
                print_found(m, json);
            }
        }
        Command::QueryMsgById { id } => {
            print_found(&admin.query_by_offset_id(&id).await?, json);
        }
        Command::QueryMsgByUniqueKey { topic, id } => {
            let found = admin.query_by_unique_key(&topic, &id).await?;
            if found.is_empty() {
                bail!("no message of topic '{topic}' has the unique id '{id}'");
            }
            for m in &found {
                print_found(m, json);
            }
        }
        Command::QueryDlqMsg { group, count } => {
            let letters = admin.query_dlq(&group, count).await?;
            if letters.is_empty() {
                bail!("group '{group}' has no dead letters");
            }
            if !json {
                println!("{} dead letter(s) of group '{group}':", letters.len());
            }
            for m in &letters {
                if !json {
                    println!("{:<18}: {}", "Original Topic", m.original_topic());
                }
                print_found(m, json);
            }
        }
        Command::ResendDlqMsg { group, id } => {
            let resent = admin.resend_dlq(&group, id.as_deref()).await?;
            if resent.is_empty() {
                bail!("group '{group}' has no dead letters");
            }
            for r in &resent {
                if json {
                    print_json(
                        &serde_json::json!({"letter": r.letter.msg_id, "topic": r.result.message_queue.topic, "status": r.result.status.to_string(), "msg_id": r.result.msg_id(), "offset_msg_id": r.result.offset_msg_id}),
                    )?;
                } else {
                    println!(
                        "resent {} to {} as {} ({})",
                        r.letter.msg_id,
                        r.result.message_queue.topic,
                        r.result.msg_id(),
                        r.result.status
                    );
                }
            }
        }
        Command::QueryMsgByOffset {
            topic,
            broker_name,
            queue_id,
            offset,
        } => match admin
            .query_by_queue_offset(&topic, &broker_name, queue_id, offset)
            .await?
        {
            Some(m) => print_found(&m, json),
            None => {
                bail!("queue {topic}:{broker_name}:{queue_id} holds no message at offset {offset}")
            }
        },
        Command::ResetOffsetByTime {
            group,
            topic,
            timestamp,
        } => {
            let ms = parse_time(&timestamp)?;
            let table = admin.reset_offset_by_time(&group, &topic, ms).await?;
            if json {
                let v: Vec<_> = table.iter().map(|(q, o)| serde_json::json!({"topic": q.topic, "broker_name": q.broker_name, "queue_id": q.queue_id, "offset": o})).collect();
                print_json(&v)?;
            } else {
                println!(
                    "{:<24} {:<20} {:<5} #Offset",
                    "#Topic", "#Broker Name", "#QID"
                );
                for (q, o) in &table {
                    println!(
                        "{:<24} {:<20} {:<5} {o}",
                        q.topic, q.broker_name, q.queue_id
                    );
                }
            }
        }
        Command::ConsumerProgress { group } => {
            let progress = admin.consumer_progress(&group).await?;
            let lag = progress.total_lag();
            if json {
                let v: Vec<_> = progress.queues.iter().map(|q| serde_json::json!({"topic": q.queue.topic, "broker_name": q.queue.broker_name, "queue_id": q.queue.queue_id, "broker_offset": q.broker_offset, "consumer_offset": q.consumer_offset, "lag": q.lag()})).collect();
                print_json(&serde_json::json!({"queues": v, "total_lag": lag}))?;
            } else {
                println!(
                    "{:<24} {:<20} {:<5} {:>14} {:>16} {:>8}",
                    "#Topic", "#Broker Name", "#QID", "#Broker Offset", "#Consumer Offset", "#Diff"
                );
                for q in &progress.queues {
                    println!(
                        "{:<24} {:<20} {:<5} {:>14} {:>16} {:>8}",
                        q.queue.topic,
                        q.queue.broker_name,
                        q.queue.queue_id,
                        q.broker_offset,
                        q.consumer_offset,
                        q.lag()
                    );
                }
                println!("Diff Total: {lag}");
            }
        }
        Command::ConsumerConnection { group } => {
            for member in admin.consumer_connection(&group).await? {
                let list: Vec<String> = member
                    .queues
                    .iter()
                    .map(|q| format!("{}:{}:{}", q.topic, q.broker_name, q.queue_id))
                    .collect();
                if json {
                    print_json(
                        &serde_json::json!({"client_id": member.client_id, "queues": list}),
                    )?;
                } else {
                    println!("{}  queues: {}", member.client_id, list.join(" "));
                }
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let system = actix_rt::System::new();
    match system.block_on(run(args)) {
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
