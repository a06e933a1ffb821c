//! The route table's self-check: whether the invariants listed in `route_table`'s doc hold.
//!
//! The table's methods keep them by construction; this check is what lets the NameServer
//! notice when they did not (a bug), and drop tables it can no longer trust instead of
//! serving clients routes to brokers that are gone or missing ones that are there. It reads
//! every map once, so the actor can afford it on its expiry timer.

use std::collections::HashMap;

use super::RouteTable;
use crate::protocol::route::{QueueData, MASTER_ID};
use crate::protocol::topic::{PERM_READ_WRITE, PERM_WRITE};

/// An invariant of the route tables that does not hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("route tables are inconsistent: {0}")]
pub struct Inconsistency(pub String);

impl RouteTable {
    /// Checks the invariants listed in the module doc of `route_table`.
    pub fn audit(&self) -> Result<(), Inconsistency> {
        let bad = |why: String| Err(Inconsistency(why));
        // Address → the one place it holds, built once rather than searched per address.
        let mut places: HashMap<&str, (&str, u64)> = HashMap::new();
        for (name, set) in &self.brokers {
            if set.broker_name != *name {
                return bad(format!("set '{name}' is filed as '{}'", set.broker_name));
            }
            if set.broker_addrs.is_empty() {
                return bad(format!("set '{name}' has no member left"));
            }
            for (id, addr) in &set.broker_addrs {
                if let Some((other, other_id)) = places.insert(addr, (name, *id)) {
                    return bad(format!(
                        "{addr} is in set '{other}' as {other_id} and in '{name}' as {id}"
                    ));
                }
                if !self.live.contains_key(addr) {
                    return bad(format!("{addr} of set '{name}' has no liveness entry"));
                }
            }
        }
        if let Some(addr) = self.live.keys().find(|a| !places.contains_key(a.as_str())) {
            return bad(format!("{addr} has a liveness entry but no set"));
        }
        for (topic, queues) in &self.topic_queues {
            if queues.is_empty() {
                return bad(format!("topic '{topic}' is known with no queue data"));
            }
            for (name, q) in queues {
                let Some(set) = self.brokers.get(name) else {
                    return bad(format!(
                        "topic '{topic}' has queue data of set '{name}', which has no member registered"
                    ));
                };
                // Without its master a set serves reads only (its slaves).
                if !set.broker_addrs.contains_key(&MASTER_ID) && q.perm & PERM_WRITE != 0 {
                    return bad(format!(
                        "topic '{topic}' is writable on set '{name}', whose master is not registered"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Breaks an invariant on purpose: `topic` gets queue data of a broker set that does not
    /// exist, which the topic list then shows. For tests of what the NameServer does when
    /// its tables cannot be trusted; never call it otherwise.
    #[doc(hidden)]
    pub fn corrupt_with_ghost_topic(&mut self, topic: &str) {
        let ghost = "ghost-broker-set".to_owned();
        let data = QueueData {
            broker_name: ghost.clone(),
            read_queue_nums: 1,
            write_queue_nums: 1,
            perm: PERM_READ_WRITE,
            topic_sys_flag: 0,
        };
        self.topic_queues
            .entry(topic.to_owned())
            .or_default()
            .insert(ghost, data);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::protocol::route::{RegisterBrokerRequestHeader, UnregisterBrokerRequestHeader};
    use crate::protocol::topic::{TopicConfig, TopicConfigWrapper};

    fn register(rt: &mut RouteTable, name: &str, addr: &str, id: u64, topics: &[&str], v: u64) {
        let req = RegisterBrokerRequestHeader {
            broker_name: name.into(),
            broker_addr: addr.into(),
            cluster_name: "c1".into(),
            ha_server_addr: addr.into(),
            broker_id: id,
            heartbeat_timeout_millis: None,
        };
        let mut table = TopicConfigWrapper::default();
        table.data_version.counter = v;
        for t in topics {
            let config = TopicConfig {
                topic_name: (*t).into(),
                read_queue_nums: 4,
                write_queue_nums: 4,
                perm: PERM_READ_WRITE,
                ..Default::default()
            };
            table.topic_config_table.insert((*t).into(), config);
        }
        rt.register_broker(&req, &table, Instant::now());
    }

    #[test]
    fn the_table_s_own_operations_keep_it_consistent() {
        let mut rt = RouteTable::new();
        let steps: Vec<fn(&mut RouteTable)> = vec![
            |rt| register(rt, "a", "a:0", 0, &["T", "U"], 1),
            |rt| register(rt, "a", "a:1", 1, &[], 1),
            |rt| register(rt, "b", "b:0", 0, &["T"], 1),
            // A slave promoted to master, and an address moving to another set.
            |rt| register(rt, "a", "a:1", 0, &["T"], 2),
            |rt| register(rt, "b", "a:0", 1, &[], 1),
            |rt| {
                rt.delete_topic("U", None);
            },
            |rt| {
                rt.unregister_broker(&UnregisterBrokerRequestHeader {
                    broker_name: "b".into(),
                    broker_addr: "b:0".into(),
                    cluster_name: "c1".into(),
                    broker_id: 0,
                });
            },
            |rt| {
                rt.remove_broker_by_addr("a:1");
            },
            |rt| {
                rt.expire(
                    Instant::now() + Duration::from_secs(600),
                    Duration::from_secs(1),
                );
            },
        ];
        for (i, step) in steps.iter().enumerate() {
            step(&mut rt);
            assert_eq!(rt.audit(), Ok(()), "after step {i}");
        }
    }

    #[test]
    fn broken_invariants_are_named() {
        let mut rt = RouteTable::new();
        register(&mut rt, "a", "a:0", 0, &["T"], 1);
        rt.corrupt_with_ghost_topic("GHOST");
        let e = rt.audit().unwrap_err();
        assert!(
            e.0.contains("GHOST") && e.0.contains("ghost-broker-set"),
            "{e}"
        );

        let mut rt = RouteTable::new();
        register(&mut rt, "a", "a:0", 0, &["T"], 1);
        rt.live.clear();
        assert!(rt.audit().unwrap_err().0.contains("no liveness entry"));

        let mut rt = RouteTable::new();
        register(&mut rt, "a", "a:0", 0, &["T"], 1);
        rt.brokers.clear();
        assert!(rt.audit().is_err());
    }
}
