//! The NameServer's route tables: which broker sets exist, where each member listens, which
//! topics each master serves, and when each broker was last heard from.
//!
//! Modelled on RocketMQ's `RouteInfoManager` (`topicQueueTable`, `brokerAddrTable`,
//! `clusterAddrTable`, `brokerLiveTable`), held as plain maps by the one NameServer actor
//! that owns a [`RouteTable`], so there is no lock. The actor only turns messages into calls
//! here; this file is the part that is proven correct alone, by its unit tests.
//!
//! It must never block, touch a socket, read a clock (callers pass `now`), spawn work or
//! panic on what a broker sends: a stale or mismatched request changes nothing and says so
//! through its return value.
//!
//! # Invariants
//! - An address sits in at most one broker set, under one id, and has exactly one liveness
//!   entry; every liveness entry belongs to an address in some set.
//! - A broker set has queue data only while some member is registered. The master's topic
//!   table contributes it; without a master (gone, or not registered yet) the set's queue
//!   data is read-only (a slave serves reads), from the master's last table or the slave's
//!   copy of it.
//! - A topic is known only while some broker set has queue data for it.
//! - Cluster membership is [`BrokerData::cluster`]; the cluster table is derived from it on
//!   demand, so the two cannot drift apart.
//!
//! [`RouteTable::audit`] (in `audit`) checks them, for the actor's timer.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use crate::protocol::route::{
    BrokerData, ClusterInfo, QueueData, RegisterBrokerRequestHeader, RegisterBrokerResponseHeader,
    TopicList, TopicRouteData, UnregisterBrokerRequestHeader, MASTER_ID,
};
use crate::protocol::topic::{DataVersion, TopicConfig, TopicConfigWrapper};

mod audit;
pub use audit::Inconsistency;

/// What a registration did: the reply the broker gets, and whether clients' routes moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegisterOutcome {
    /// Reply header. For a slave: its set's master address and that master's HA address, so
    /// it can start replicating; both `None` while no master is registered, and for a master.
    pub response: RegisterBrokerResponseHeader,
    /// Whether anything a client can ask for changed (a new or moved address, queue data),
    /// so the actor can log registrations that matter and stay quiet on routine ones.
    pub routes_changed: bool,
}

/// Liveness of one broker address (RocketMQ `BrokerLiveInfo`).
#[derive(Debug, Clone)]
struct BrokerLive {
    /// When the broker last registered or sent a heartbeat; expiry counts from here.
    last_update: Instant,
    /// Version of the topic table it last sent, so an unchanged table is not re-read.
    data_version: DataVersion,
    /// Where this broker's slaves replicate from; told to those slaves when they register.
    ha_server_addr: String,
    /// The broker's own expiry, when it asked for one; otherwise `expire`'s `max_idle`.
    timeout: Option<Duration>,
}

/// The NameServer's route tables, owned by the NameServer actor (no sharing, no lock).
///
/// Brokers register every 30 s and on topic changes; the actor expires silent ones on a
/// timer and drops a broker whose connection closed. Clients read routes, cluster info and
/// the topic list.
#[derive(Debug, Default)]
pub struct RouteTable {
    /// Topic → broker name → how that set serves it (RocketMQ `topicQueueTable`). Ordered by
    /// broker name so a route lists its queue data in a stable order.
    topic_queues: HashMap<String, BTreeMap<String, QueueData>>,
    /// Broker name → the set's cluster and member addresses (RocketMQ `brokerAddrTable`).
    brokers: HashMap<String, BrokerData>,
    /// Broker address → when it was last heard from (RocketMQ `brokerLiveTable`).
    live: HashMap<String, BrokerLive>,
}

impl RouteTable {
    /// Empty tables: a NameServer knows nothing until brokers register (no persistence, as
    /// in RocketMQ, so a restarted actor starts here and fills within one register period).
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a broker's registration (RocketMQ `registerBroker`): its place in its set,
    /// its liveness, and, for a master whose topic table is new or changed, the set's queue
    /// data, which then mirrors that table exactly (topics it no longer reports lose it).
    ///
    /// An address that comes back under another id or name (a promoted slave, a renamed set)
    /// leaves its old place first; an address displaced from this id is forgotten.
    pub fn register_broker(
        &mut self,
        req: &RegisterBrokerRequestHeader,
        topics: &TopicConfigWrapper,
        now: Instant,
    ) -> RegisterOutcome {
        let addr = &req.broker_addr;
        let mut changed = false;
        if let Some((name, id)) = self.locate(addr) {
            if name != req.broker_name || id != req.broker_id {
                changed |= self.detach(&name, id, addr);
            }
        }
        let set = self
            .brokers
            .entry(req.broker_name.clone())
            .or_insert_with(|| BrokerData {
                cluster: req.cluster_name.clone(),
                broker_name: req.broker_name.clone(),
                broker_addrs: BTreeMap::new(),
            });
        if set.cluster != req.cluster_name {
            set.cluster = req.cluster_name.clone();
            changed = true;
        }
        let displaced = set.broker_addrs.insert(req.broker_id, addr.clone());
        let master_addr = set.master_addr().map(str::to_owned);
        let first = displaced.as_ref() != Some(addr);
        if let Some(old) = displaced.filter(|old| old != addr) {
            self.live.remove(&old);
        }
        changed |= first;

        let version_changed = self
            .live
            .get(addr)
            .is_none_or(|live| live.data_version != topics.data_version);
        let live = BrokerLive {
            last_update: now,
            data_version: topics.data_version,
            ha_server_addr: req.ha_server_addr.clone(),
            timeout: req.heartbeat_timeout_millis.map(Duration::from_millis),
        };
        self.live.insert(addr.clone(), live);

        let mut response = RegisterBrokerResponseHeader::default();
        if req.broker_id == MASTER_ID {
            if first || version_changed {
                changed |= self.replace_queue_data(&req.broker_name, topics);
            }
        } else if let Some(master) = master_addr {
            response.ha_server_addr = self.live.get(&master).map(|l| l.ha_server_addr.clone());
            response.master_addr = Some(master);
        } else if first || version_changed {
            // A slave with no master registered: its copy of the master's topics, read-only.
            let read_only = TopicConfigWrapper {
                topic_config_table: topics
                    .topic_config_table
                    .iter()
                    .map(|(name, t)| {
                        let mut t = t.clone();
                        t.perm &= !crate::protocol::topic::PERM_WRITE;
                        (name.clone(), t)
                    })
                    .collect(),
                data_version: topics.data_version,
            };
            changed |= self.replace_queue_data(&req.broker_name, &read_only);
        }
        let routes_changed = changed;
        RegisterOutcome {
            response,
            routes_changed,
        }
    }

    /// Refreshes a registered broker's liveness without touching its topics (RocketMQ
    /// `BROKER_HEARTBEAT`). Returns false for an unknown address: it must register first.
    pub fn heartbeat(&mut self, broker_addr: &str, now: Instant) -> bool {
        let live = self.live.get_mut(broker_addr);
        live.map(|live| live.last_update = now).is_some()
    }

    /// Forgets a broker that said goodbye (RocketMQ `unregisterBroker`). Removing a master
    /// makes its set's queue data read-only while slaves remain, else drops it (and topics
    /// left without any); removing the last member drops the set. A request naming another set than the address is in now is stale and
    /// ignored. Returns whether anything was removed.
    pub fn unregister_broker(&mut self, req: &UnregisterBrokerRequestHeader) -> bool {
        match self.locate(&req.broker_addr) {
            Some((name, id)) if name == req.broker_name => {
                self.live.remove(&req.broker_addr);
                self.detach(&name, id, &req.broker_addr)
            }
            _ => false,
        }
    }

    /// Forgets whatever broker listens at `broker_addr`, because its connection closed
    /// (RocketMQ `onChannelDestroy`); the same clean-up as [`Self::unregister_broker`].
    /// Returns whether anything was removed.
    pub fn remove_broker_by_addr(&mut self, broker_addr: &str) -> bool {
        let was_live = self.live.remove(broker_addr).is_some();
        let detached = match self.locate(broker_addr) {
            Some((name, id)) => self.detach(&name, id, broker_addr),
            None => false,
        };
        was_live || detached
    }

    /// Drops every broker not heard from for longer than its own timeout, or `max_idle` when
    /// it asked for none (RocketMQ `scanNotActiveBroker`, 120 s by default), and returns
    /// their addresses, sorted, for the actor to log.
    pub fn expire(&mut self, now: Instant, max_idle: Duration) -> Vec<String> {
        let mut silent: Vec<String> = self
            .live
            .iter()
            .filter(|(_, live)| {
                now.saturating_duration_since(live.last_update) > live.timeout.unwrap_or(max_idle)
            })
            .map(|(addr, _)| addr.clone())
            .collect();
        silent.sort();
        for addr in &silent {
            self.remove_broker_by_addr(addr);
        }
        silent
    }

    /// The route of `topic` (RocketMQ `pickupTopicRouteData`): every set holding it, with all
    /// members' addresses, and its queue data, both sorted by broker name. `None` when no
    /// registered master serves the topic (the wire answer is `TOPIC_NOT_EXIST`).
    pub fn route(&self, topic: &str) -> Option<TopicRouteData> {
        let queues = self.topic_queues.get(topic)?;
        let broker_datas: Vec<BrokerData> = queues
            .keys()
            .filter_map(|name| self.brokers.get(name).cloned())
            .collect();
        if broker_datas.is_empty() {
            return None;
        }
        Some(TopicRouteData {
            broker_datas,
            queue_datas: queues.values().cloned().collect(),
        })
    }

    /// Every broker set and the sets of each cluster (`GET_BROKER_CLUSTER_INFO`, the data
    /// behind `mqadmin clusterList`).
    pub fn cluster_info(&self) -> ClusterInfo {
        let mut cluster_addr_table: HashMap<String, BTreeSet<String>> = HashMap::new();
        for set in self.brokers.values() {
            cluster_addr_table
                .entry(set.cluster.clone())
                .or_default()
                .insert(set.broker_name.clone());
        }
        ClusterInfo {
            broker_addr_table: self.brokers.clone(),
            cluster_addr_table,
        }
    }

    /// Every topic some registered master serves (`GET_ALL_TOPIC_LIST_FROM_NAMESERVER`).
    pub fn topics(&self) -> TopicList {
        TopicList {
            topic_list: self.topic_queues.keys().cloned().collect(),
        }
    }

    /// Forgets `topic`'s queue data everywhere, or only on the sets of `cluster`
    /// (`DELETE_TOPIC_IN_NAMESRV`, after the admin deleted it on the brokers). A master that
    /// still has the topic brings it back when its topic table next changes. Returns whether
    /// anything was removed.
    pub fn delete_topic(&mut self, topic: &str, cluster: Option<&str>) -> bool {
        let Some(queues) = self.topic_queues.get_mut(topic) else {
            return false;
        };
        let before = queues.len();
        if let Some(cluster) = cluster {
            let brokers = &self.brokers;
            queues.retain(|name, _| brokers.get(name).is_none_or(|b| b.cluster != cluster));
        } else {
            queues.clear();
        }
        let removed = queues.len() != before;
        if queues.is_empty() {
            self.topic_queues.remove(topic);
        }
        removed
    }

    /// The set name and id under which `addr` is registered, if it is.
    fn locate(&self, addr: &str) -> Option<(String, u64)> {
        self.brokers.values().find_map(|set| {
            set.broker_addrs
                .iter()
                .find(|(_, a)| a.as_str() == addr)
                .map(|(id, _)| (set.broker_name.clone(), *id))
        })
    }

    /// Removes `addr` from set `name` under `id` (not its liveness): a master leaves its
    /// set's queue data read-only for the slaves; the last member takes the queue data and
    /// the set. False if it was not there.
    fn detach(&mut self, name: &str, id: u64, addr: &str) -> bool {
        let Some(set) = self.brokers.get_mut(name) else {
            return false;
        };
        if set.broker_addrs.get(&id).map(String::as_str) != Some(addr) {
            return false;
        }
        set.broker_addrs.remove(&id);
        let slaves_left = !set.broker_addrs.is_empty();
        if !slaves_left {
            self.brokers.remove(name);
        }
        if id == MASTER_ID && slaves_left {
            // The slaves still serve reads (consumers fail over to them): keep the set's
            // queues, read-only, until the master registers again (RocketMQ drops a set's
            // queue data only with its last member).
            for queues in self.topic_queues.values_mut() {
                if let Some(q) = queues.get_mut(name) {
                    q.perm &= !crate::protocol::topic::PERM_WRITE;
                }
            }
        } else if !slaves_left {
            self.topic_queues.retain(|_, queues| {
                queues.remove(name);
                !queues.is_empty()
            });
        }
        true
    }

    /// Makes set `name`'s queue data mirror its master's topic table; returns whether it
    /// changed.
    fn replace_queue_data(&mut self, name: &str, topics: &TopicConfigWrapper) -> bool {
        let mut changed = false;
        for (topic, config) in &topics.topic_config_table {
            let data = queue_data(name, config);
            let queues = self.topic_queues.entry(topic.clone()).or_default();
            if queues.get(name) != Some(&data) {
                queues.insert(name.to_owned(), data);
                changed = true;
            }
        }
        self.topic_queues.retain(|topic, queues| {
            if !topics.topic_config_table.contains_key(topic) && queues.remove(name).is_some() {
                changed = true;
            }
            !queues.is_empty()
        });
        changed
    }
}

/// How set `name` serves a topic, as its master configured it (perm kept as is, even
/// without read or write, so clients see a topic that is read-only or fenced).
fn queue_data(name: &str, config: &TopicConfig) -> QueueData {
    QueueData {
        broker_name: name.to_owned(),
        read_queue_nums: config.read_queue_nums,
        write_queue_nums: config.write_queue_nums,
        perm: config.perm,
        topic_sys_flag: config.topic_sys_flag,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::topic::{PERM_INHERIT, PERM_READ, PERM_READ_WRITE};

    const IDLE: Duration = Duration::from_secs(120);
    const MS: Duration = Duration::from_millis(1);
    const RW: i32 = PERM_READ_WRITE;

    /// A table plus the clock and topic-table version the next registration uses.
    struct Fixture {
        rt: RouteTable,
        now: Instant,
        version: u64,
    }

    impl Fixture {
        fn new() -> Self {
            let (rt, now, version) = (RouteTable::new(), Instant::now(), 1);
            Self { rt, now, version }
        }

        /// Registers `addr` as member `id` of set `name` in `cluster`, serving `topics`
        /// (name, perm; 4 queues each).
        fn reg(&mut self, at: (&str, &str, &str, u64), topics: &[(&str, i32)]) -> RegisterOutcome {
            let (cluster, name, addr, broker_id) = at;
            let req = RegisterBrokerRequestHeader {
                broker_name: name.into(),
                broker_addr: addr.into(),
                cluster_name: cluster.into(),
                ha_server_addr: format!("ha-{addr}"),
                broker_id,
                heartbeat_timeout_millis: None,
            };
            let mut table = TopicConfigWrapper::default();
            table.data_version.counter = self.version;
            for &(topic, perm) in topics {
                let (topic_name, read_queue_nums, write_queue_nums) = (topic.into(), 4, 4);
                let config = TopicConfig {
                    topic_name,
                    read_queue_nums,
                    write_queue_nums,
                    perm,
                    ..Default::default()
                };
                table.topic_config_table.insert(topic.into(), config);
            }
            self.rt.register_broker(&req, &table, self.now)
        }

        fn unregister(&mut self, broker_name: &str, addr: &str, broker_id: u64) -> bool {
            let (broker_name, broker_addr) = (broker_name.into(), addr.into());
            let cluster_name = "c1".into();
            let req = UnregisterBrokerRequestHeader {
                broker_name,
                broker_addr,
                cluster_name,
                broker_id,
            };
            self.rt.unregister_broker(&req)
        }

        /// Broker names of `topic`'s queue data; empty when it has no route.
        fn holders(&self, topic: &str) -> Vec<String> {
            let queues = self.rt.route(topic).unwrap_or_default().queue_datas;
            queues.into_iter().map(|q| q.broker_name).collect()
        }

        fn has_set(&self, name: &str) -> bool {
            self.rt.cluster_info().broker_addr_table.contains_key(name)
        }
    }

    #[test]
    fn register_master_then_route() {
        let mut f = Fixture::new();
        let out = f.reg(("c1", "a", "a:0", 0), &[("T", RW), ("U", RW)]);
        assert!(out.routes_changed);
        assert_eq!(out.response, RegisterBrokerResponseHeader::default());
        let route = f.rt.route("T").unwrap();
        assert_eq!(route.broker_datas.len(), 1);
        assert_eq!(route.broker_datas[0].master_addr(), Some("a:0"));
        assert_eq!(route.broker_datas[0].cluster, "c1");
        assert_eq!(route.queue_datas[0].write_queue_nums, 4);
        assert!(f.rt.route("missing").is_none());
        assert_eq!(Vec::from_iter(f.rt.topics().topic_list), ["T", "U"]);
        // The same table version again changes nothing and is not even re-read.
        assert!(!f.reg(("c1", "a", "a:0", 0), &[("T", RW)]).routes_changed);
        assert_eq!(f.holders("U"), ["a"]);
        // A new version replaces the set's queue data: topics it dropped lose it.
        f.version = 2;
        assert!(f.reg(("c1", "a", "a:0", 0), &[("T", 4)]).routes_changed);
        assert!(f.rt.route("U").is_none());
        assert_eq!(f.rt.route("T").unwrap().queue_datas[0].perm, 4);
    }

    #[test]
    fn two_masters_with_one_topic() {
        let mut f = Fixture::new();
        f.reg(("c1", "b", "b:0", 0), &[("T", RW)]);
        f.reg(("c1", "a", "a:0", 0), &[("T", RW)]);
        let route = f.rt.route("T").unwrap();
        let sets = Vec::from_iter(route.broker_datas.iter().map(|b| &b.broker_name));
        assert_eq!(sets, ["a", "b"]);
        assert_eq!(f.holders("T"), ["a", "b"]);
    }

    #[test]
    fn slave_adds_its_address_but_no_queue_data() {
        let mut f = Fixture::new();
        // A slave that comes first learns of no master.
        assert_eq!(
            f.reg(("c1", "a", "a:1", 1), &[("S", RW)])
                .response
                .master_addr,
            None
        );
        f.reg(("c1", "a", "a:0", 0), &[("T", RW)]);
        let out = f.reg(("c1", "a", "a:1", 1), &[("S", RW)]);
        assert_eq!(out.response.master_addr.as_deref(), Some("a:0"));
        assert_eq!(out.response.ha_server_addr.as_deref(), Some("ha-a:0"));
        let route = f.rt.route("T").unwrap();
        assert_eq!(route.queue_datas.len(), 1);
        let addrs = Vec::from_iter(route.broker_datas[0].broker_addrs.clone());
        assert_eq!(addrs, [(0, "a:0".into()), (1, "a:1".into())]);
        assert!(f.rt.route("S").is_none());
    }

    #[test]
    fn unregister_master_leaves_its_queues_read_only_to_its_slaves() {
        let mut f = Fixture::new();
        f.reg(("c1", "a", "a:0", 0), &[("T", RW), ("A", RW)]);
        f.reg(("c1", "a", "a:1", 1), &[("T", RW), ("A", RW)]);
        f.reg(("c1", "b", "b:0", 0), &[("T", RW)]);
        // A request naming another set than the address is in is stale and ignored.
        assert!(!f.unregister("b", "a:0", 0));
        assert!(f.unregister("a", "a:0", 0));
        // The slave keeps the set, without a master, and its queues, read-only: consumers
        // read from it while producers write elsewhere.
        assert_eq!(
            f.rt.cluster_info().broker_addr_table["a"].master_addr(),
            None
        );
        let a = f.rt.route("A").unwrap();
        assert_eq!(a.queue_datas[0].perm, PERM_READ);
        assert_eq!(f.holders("T"), ["a", "b"]);
        assert!(f.rt.audit().is_ok());
        // The master's return restores them.
        f.reg(("c1", "a", "a:0", 0), &[("T", RW), ("A", RW)]);
        assert_eq!(f.rt.route("A").unwrap().queue_datas[0].perm, RW);
        // The last member takes the set and its queue data away.
        assert!(f.unregister("a", "a:0", 0));
        assert!(f.unregister("a", "a:1", 1));
        assert!(f.rt.route("A").is_none());
        assert_eq!(f.holders("T"), ["b"]);
        assert!(!f.has_set("a"));
        assert!(!f.unregister("a", "a:1", 1));
    }

    #[test]
    fn a_slave_without_a_master_offers_its_topics_read_only() {
        let mut f = Fixture::new();
        f.reg(("c1", "a", "a:1", 1), &[("T", RW)]);
        let route = f.rt.route("T").unwrap();
        assert_eq!(route.queue_datas[0].perm, PERM_READ);
        assert_eq!(route.broker_datas[0].master_addr(), None);
        assert!(f.rt.audit().is_ok());
    }

    #[test]
    fn remove_by_addr_forgets_the_broker() {
        let mut f = Fixture::new();
        f.reg(("c1", "a", "a:0", 0), &[("T", RW)]);
        f.reg(("c1", "a", "a:1", 1), &[]);
        assert!(f.rt.remove_broker_by_addr("a:1"));
        assert!(!f.rt.remove_broker_by_addr("a:1"));
        assert!(!f.rt.heartbeat("a:1", f.now));
        assert_eq!(
            f.rt.route("T").unwrap().broker_datas[0].broker_addrs.len(),
            1
        );
        assert!(f.rt.remove_broker_by_addr("a:0"));
        assert!(f.rt.route("T").is_none());
        assert!(!f.has_set("a"));
    }

    #[test]
    fn expire_drops_silent_brokers_only() {
        let mut f = Fixture::new();
        let start = f.now;
        f.reg(("c1", "a", "a:0", 0), &[("T", RW)]);
        f.reg(("c1", "b", "b:0", 0), &[("T", RW)]);
        f.reg(("c1", "b", "b:1", 1), &[]);
        f.now = start + Duration::from_secs(60);
        assert!(f.rt.heartbeat("b:0", f.now));
        f.reg(("c1", "b", "b:1", 1), &[]);
        assert!(f.rt.expire(start + IDLE, IDLE).is_empty());
        assert_eq!(f.rt.expire(start + IDLE + MS, IDLE), ["a:0"]);
        assert_eq!(f.holders("T"), ["b"]);
        assert_eq!(f.rt.expire(f.now + IDLE + MS, IDLE), ["b:0", "b:1"]);
        assert!(f.rt.topics().topic_list.is_empty());
        // A broker's own timeout wins over max_idle.
        let mut req = RegisterBrokerRequestHeader::default();
        (req.broker_name, req.broker_addr) = ("c".into(), "c:0".into());
        req.heartbeat_timeout_millis = Some(10_000);
        f.rt.register_broker(&req, &TopicConfigWrapper::default(), start);
        assert_eq!(
            f.rt.expire(start + Duration::from_secs(10) + MS, IDLE),
            ["c:0"]
        );
    }

    #[test]
    fn delete_topic_everywhere_or_in_one_cluster() {
        let mut f = Fixture::new();
        f.reg(("c1", "a", "a:0", 0), &[("T", RW), ("U", RW)]);
        f.reg(("c2", "b", "b:0", 0), &[("T", RW), ("U", RW)]);
        assert!(f.rt.delete_topic("T", Some("c2")));
        assert_eq!(f.holders("T"), ["a"]);
        assert!(!f.rt.delete_topic("T", Some("c2")));
        assert!(f.rt.delete_topic("T", None));
        assert!(f.rt.route("T").is_none());
        assert!(!f.rt.delete_topic("T", None));
        assert_eq!(f.holders("U"), ["a", "b"]);
    }

    #[test]
    fn cluster_info_groups_broker_names_per_cluster() {
        let mut f = Fixture::new();
        f.reg(("c1", "a", "a:0", 0), &[]);
        f.reg(("c1", "b", "b:0", 0), &[]);
        f.reg(("c1", "b", "b:1", 1), &[]);
        f.reg(("c2", "x", "x:0", 0), &[]);
        let info = f.rt.cluster_info();
        assert_eq!(Vec::from_iter(&info.cluster_addr_table["c1"]), ["a", "b"]);
        assert_eq!(Vec::from_iter(&info.cluster_addr_table["c2"]), ["x"]);
        assert_eq!(info.broker_addr_table["b"].broker_addrs.len(), 2);
    }

    #[test]
    fn perm_without_read_or_write_is_kept() {
        let mut f = Fixture::new();
        f.reg(
            ("c1", "a", "a:0", 0),
            &[("RO", PERM_READ), ("FENCED", PERM_INHERIT)],
        );
        assert_eq!(f.rt.route("RO").unwrap().queue_datas[0].perm, PERM_READ);
        assert_eq!(
            f.rt.route("FENCED").unwrap().queue_datas[0].perm,
            PERM_INHERIT
        );
    }

    #[test]
    fn an_address_moving_to_another_place_leaves_the_old_one() {
        let mut f = Fixture::new();
        f.reg(("c1", "a", "m:1", 0), &[("T", RW)]);
        f.reg(("c1", "a", "s:1", 1), &[("T", RW)]);
        // The master is gone (the slave keeps the topic, read-only); the slave is promoted
        // under id 0 and makes it writable again.
        assert!(f.rt.remove_broker_by_addr("m:1"));
        assert_eq!(f.rt.route("T").unwrap().queue_datas[0].perm, PERM_READ);
        assert!(f.reg(("c1", "a", "s:1", 0), &[("T", RW)]).routes_changed);
        let route = f.rt.route("T").unwrap();
        assert_eq!(
            Vec::from_iter(route.broker_datas[0].broker_addrs.values()),
            ["s:1"]
        );
        // A new master at another address takes id 0 over; the old address is forgotten.
        f.reg(("c1", "a", "n:1", 0), &[("T", RW)]);
        assert!(!f.rt.heartbeat("s:1", f.now));
        // The address moves to another set: set "a" is left empty and disappears.
        f.reg(("c1", "b", "n:1", 0), &[("T", RW)]);
        assert!(!f.has_set("a"));
        assert_eq!(f.holders("T"), ["b"]);
    }
}
