//! The shipped config files load, defaults are RocketMQ's, and bad files get errors that
//! name the file and the key. Only `namesrv_addr_falls_back_to_the_environment` touches
//! the `NAMESRV_ADDR` variable; no other test asserts on an empty `namesrv_addr` from `load`.

use std::path::{Path, PathBuf};

use actimq::internals::config::{
    BrokerConfig, BrokerRole, ConfigError, NamesrvConfig, NAMESRV_ADDR_ENV,
};
use actimq::internals::storage::{FlushDiskType, StoreConfig};

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config")
}

fn toml_files(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            toml_files(&path, found);
        } else if path.extension().is_some_and(|e| e == "toml") {
            found.push(path);
        }
    }
}

/// A temporary file holding `text`; kept alive by the returned handle.
fn file(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
    f
}

fn broker_err(text: &str) -> (String, ConfigError) {
    let f = file(text);
    let e = BrokerConfig::load(Some(f.path())).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    (msg, e)
}

#[test]
fn every_shipped_file_loads_and_validates() {
    let mut files = Vec::new();
    toml_files(&config_dir(), &mut files);
    assert!(files.len() >= 4, "{files:?}");
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy();
        if name.starts_with("namesrv") {
            NamesrvConfig::load(Some(path)).unwrap_or_else(|e| panic!("{e}"));
        } else {
            let c = BrokerConfig::load(Some(path)).unwrap_or_else(|e| panic!("{e}"));
            assert!(
                !c.namesrv_addrs().is_empty(),
                "{} names no name server",
                name
            );
        }
    }
}

#[test]
fn the_two_masters_differ_where_they_must() {
    let dir = config_dir().join("2m-noslave");
    let a = BrokerConfig::load(Some(&dir.join("broker-a.toml"))).unwrap();
    let b = BrokerConfig::load(Some(&dir.join("broker-b.toml"))).unwrap();
    assert_ne!(a.broker_name, b.broker_name);
    assert_ne!(a.listen_port, b.listen_port);
    assert_ne!(a.store.store_path_root_dir, b.store.store_path_root_dir);
    assert_eq!(a.broker_cluster_name, b.broker_cluster_name);
    assert!(a.is_master() && b.is_master());
    assert_eq!((a.broker_id, b.broker_id), (0, 0));
}

#[test]
fn shipped_single_files_spell_out_the_defaults() {
    // namesrv.toml and broker.toml write every key at its default, so their comments
    // cannot drift from the code; broker.toml only adds a name server and keeps the
    // store folder commented out.
    let ns = NamesrvConfig::load(Some(&config_dir().join("namesrv.toml"))).unwrap();
    assert_eq!(ns, NamesrvConfig::default());
    let path = config_dir().join("broker.toml");
    let broker = BrokerConfig::load(Some(&path)).unwrap();
    let expected = BrokerConfig {
        namesrv_addr: "127.0.0.1:9876".into(),
        ..BrokerConfig::default()
    };
    assert_eq!(broker, expected);
    // Every key, the store's included, is documented in broker.toml.
    let text = std::fs::read_to_string(&path).unwrap();
    let keys = toml::Table::try_from(BrokerConfig::default()).unwrap();
    for key in keys.keys() {
        assert!(
            text.contains(&format!("{key} =")),
            "broker.toml lacks {key}"
        );
    }
}

#[test]
fn defaults_are_rocketmq_defaults() {
    let b = BrokerConfig::default();
    assert_eq!(b.broker_cluster_name, "DefaultCluster");
    assert_eq!(b.broker_name, "broker-a");
    assert_eq!(b.broker_id, 0);
    assert_eq!(b.broker_role, BrokerRole::AsyncMaster);
    assert!(b.is_master());
    assert_eq!(b.namesrv_addr, "");
    assert_eq!(b.listen_port, 10911);
    assert_eq!(b.listen_addr(), "0.0.0.0:10911");
    assert_eq!(b.advertised_addr(), "127.0.0.1:10911");
    assert_eq!(b.register_broker_interval, 30_000);
    assert!(b.auto_create_topic_enable);
    assert_eq!(b.default_topic_queue_nums, 4);
    assert_eq!(b.long_polling_timeout, 15_000);
    assert_eq!(b.channel_expired_timeout, 120_000);
    assert_eq!(b.flush_consumer_offset_interval, 5000);
    assert_eq!(b.max_frame_size, 16 << 20);
    assert_eq!(b.send_message_queue_capacity, 10_000);
    assert_eq!(b.store, StoreConfig::default());
    assert_eq!(b.store.flush_disk_type, FlushDiskType::AsyncFlush);
    b.validate().unwrap();

    let n = NamesrvConfig::default();
    assert_eq!(n.listen_port, 9876);
    assert_eq!(n.listen_addr(), "0.0.0.0:9876");
    assert_eq!(n.scan_not_active_broker_interval, 5000);
    assert_eq!(n.broker_channel_expired_time, 120_000);
    assert_eq!(n.max_frame_size, 16 << 20);
    n.validate().unwrap();

    // No file: the defaults (the environment may only fill namesrv_addr).
    assert_eq!(NamesrvConfig::load(None).unwrap(), n);
    let loaded = BrokerConfig::load(None).unwrap();
    assert_eq!(
        BrokerConfig {
            namesrv_addr: String::new(),
            ..loaded
        },
        b
    );
}

#[test]
fn unknown_keys_are_named_with_a_suggestion() {
    let (msg, e) = broker_err("listen_portt = 10911\n");
    assert!(
        msg.ends_with("unknown key 'listen_portt' (did you mean 'listen_port'?)"),
        "{msg}"
    );
    assert_eq!(e.key(), Some("listen_portt"));

    // RocketMQ's camelCase names point at ours, store keys included.
    let (msg, _) = broker_err("flushDiskType = \"SYNC_FLUSH\"\n");
    assert!(
        msg.contains("'flushDiskType' (did you mean 'flush_disk_type'?)"),
        "{msg}"
    );
    let (msg, _) = broker_err("[store]\nflush_disk_type = \"sync_flush\"\n");
    assert!(
        msg.contains("'store'") && msg.contains("top level"),
        "{msg}"
    );

    let f = file("listen_port = 9876\nbroker_name = \"x\"\n");
    let msg = NamesrvConfig::load(Some(f.path())).unwrap_err().to_string();
    assert!(msg.contains(&f.path().display().to_string()), "{msg}");
    assert!(msg.contains("'broker_name' is a broker setting"), "{msg}");
}

#[test]
fn bad_values_are_named() {
    let (msg, e) = broker_err("listen_port = \"abc\"\n");
    assert!(
        msg.ends_with("key 'listen_port': invalid value: expected u16, found string \"abc\""),
        "{msg}"
    );
    assert!(matches!(e, ConfigError::BadValue { .. }));

    let (msg, e) = broker_err("flush_disk_type = \"sometimes\"\n");
    assert!(
        msg.contains("key 'flush_disk_type'") && msg.contains("sometimes"),
        "{msg}"
    );
    assert!(msg.contains("sync_flush"), "{msg}");
    assert_eq!(e.key(), Some("flush_disk_type"));

    let (msg, _) = broker_err("broker_role = \"master\"\n");
    assert!(
        msg.contains("key 'broker_role'") && msg.contains("async_master"),
        "{msg}"
    );
    let (msg, _) = broker_err("broker_id = -1\n");
    assert!(msg.contains("key 'broker_id'"), "{msg}");

    let f = file("listen_port = 70000\n");
    let msg = NamesrvConfig::load(Some(f.path())).unwrap_err().to_string();
    assert!(
        msg.contains("key 'listen_port'") && msg.contains("70000"),
        "{msg}"
    );
}

#[test]
fn out_of_range_values_and_store_errors_are_named() {
    let (msg, _) = broker_err("register_broker_interval = 0\n");
    assert!(msg.contains("key 'register_broker_interval'"), "{msg}");
    let (msg, _) = broker_err("namesrv_addr = \"127.0.0.1:9876; nohost\"\n");
    assert!(
        msg.contains("key 'namesrv_addr'") && msg.contains("nohost"),
        "{msg}"
    );
    let (msg, _) = broker_err("broker_ip1 = \"0.0.0.0\"\n");
    assert!(msg.contains("key 'broker_ip1'"), "{msg}");
    // The store's own validation, reported against the broker file.
    let (msg, e) = broker_err("mapped_file_size_consume_queue = 21\n");
    assert!(
        msg.contains("key 'mapped_file_size_consume_queue'"),
        "{msg}"
    );
    assert!(matches!(e, ConfigError::Invalid { .. }));
    // A combination across broker and store keys.
    let (msg, _) = broker_err("max_frame_size = 65536\nmax_message_size = 1048576\n");
    assert!(
        msg.contains("key 'max_frame_size'") && msg.contains("max_message_size"),
        "{msg}"
    );
    let f = file("scan_not_active_broker_interval = 1000\nbroker_channel_expired_time = 500\n");
    let msg = NamesrvConfig::load(Some(f.path())).unwrap_err().to_string();
    assert!(msg.contains("key 'broker_channel_expired_time'"), "{msg}");
}

#[test]
fn store_keys_at_top_level_land_in_store() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "namesrv_addr = \"127.0.0.1:9876\"\nlisten_port = 0\nflush_disk_type = \"sync_flush\"\n\
         file_reserved_time = 1\nstore_path_root_dir = {:?}\n",
        dir.path().display().to_string()
    );
    let f = file(&text);
    let c = BrokerConfig::load(Some(f.path())).unwrap();
    assert_eq!(c.store.flush_disk_type, FlushDiskType::SyncFlush);
    assert_eq!(c.store.file_reserved_time, 1);
    assert_eq!(c.store.store_path_root_dir, dir.path());
    assert_eq!(c.listen_port, 0);
    // The same through serde directly, and a written config reads back equal.
    let direct: BrokerConfig = toml::from_str(&text).unwrap();
    assert_eq!(direct, c);
    let again: BrokerConfig = toml::from_str(&toml::to_string(&c).unwrap()).unwrap();
    assert_eq!(again, c);
    assert!(toml::from_str::<BrokerConfig>("flush_disk_typo = 1").is_err());
}

#[test]
fn roles_and_ids_must_agree() {
    let (msg, e) = broker_err("broker_role = \"slave\"\nbroker_id = 0\n");
    assert!(
        msg.contains("key 'broker_id'") && msg.contains("slave"),
        "{msg}"
    );
    assert_eq!(e.key(), Some("broker_id"));
    let (msg, _) = broker_err("broker_role = \"sync_master\"\nbroker_id = 1\n");
    assert!(
        msg.contains("key 'broker_id': must be 0 for a master (broker_role = \"sync_master\")"),
        "{msg}"
    );
    let f = file("namesrv_addr = \"ns:9876\"\nbroker_role = \"slave\"\nbroker_id = 1\n");
    let slave = BrokerConfig::load(Some(f.path())).unwrap();
    assert!(!slave.is_master());
}

#[test]
fn unreadable_and_malformed_files_are_named() {
    let missing = Path::new("/nonexistent/actimq/broker.toml");
    let msg = BrokerConfig::load(Some(missing)).unwrap_err().to_string();
    assert!(
        msg.starts_with("/nonexistent/actimq/broker.toml: cannot read"),
        "{msg}"
    );

    let f = file("broker_name = \"a\"\nlisten_port = \n");
    let e = BrokerConfig::load(Some(f.path())).unwrap_err();
    assert!(matches!(e, ConfigError::Syntax { line: 2, .. }), "{e:?}");
    assert!(
        e.to_string()
            .starts_with(&format!("{}:2:", f.path().display())),
        "{e}"
    );
}

#[test]
fn helpers() {
    let c = BrokerConfig {
        namesrv_addr: " 10.0.0.1:9876 ;; 10.0.0.2:9876;".into(),
        listen_host: "::".into(),
        broker_ip1: "192.168.1.7".into(),
        listen_port: 10999,
        ..BrokerConfig::default()
    };
    assert_eq!(c.namesrv_addrs(), ["10.0.0.1:9876", "10.0.0.2:9876"]);
    assert_eq!(c.listen_addr(), "[::]:10999");
    assert_eq!(c.advertised_addr(), "192.168.1.7:10999");
    c.validate().unwrap();
}

#[test]
fn namesrv_addr_falls_back_to_the_environment() {
    let env = "10.0.0.1:9876;10.0.0.2:9876";
    std::env::set_var(NAMESRV_ADDR_ENV, env);
    let without = file("broker_name = \"broker-x\"\n");
    let with = file("namesrv_addr = \"ns:9876\"\n");
    let from_env = BrokerConfig::load(Some(without.path()));
    let from_file = BrokerConfig::load(Some(with.path()));
    let from_defaults = BrokerConfig::load(None);
    std::env::remove_var(NAMESRV_ADDR_ENV);

    let from_env = from_env.unwrap();
    assert_eq!(from_env.namesrv_addr, env);
    assert_eq!(from_env.namesrv_addrs().len(), 2);
    assert_eq!(from_file.unwrap().namesrv_addr, "ns:9876");
    assert_eq!(from_defaults.unwrap().namesrv_addr, env);
}

#[test]
fn text_loads_as_the_file_does() {
    let broker = std::fs::read_to_string(config_dir().join("broker.toml")).unwrap();
    // The file names a name server, so `load` takes nothing from the environment.
    assert_eq!(
        BrokerConfig::from_toml_str(&broker).unwrap(),
        BrokerConfig::load(Some(&config_dir().join("broker.toml"))).unwrap()
    );
    let namesrv = std::fs::read_to_string(config_dir().join("namesrv.toml")).unwrap();
    assert_eq!(
        NamesrvConfig::from_toml_str(&namesrv).unwrap(),
        NamesrvConfig::load(Some(&config_dir().join("namesrv.toml"))).unwrap()
    );

    let e = BrokerConfig::from_toml_str("broker_name = ").unwrap_err();
    assert!(e.to_string().starts_with("<text>:1:"), "{e}");
    let e = NamesrvConfig::from_toml_str("listen_portt = 1").unwrap_err();
    assert_eq!(e.key(), Some("listen_portt"));
    assert!(e.path().is_none(), "{e}");
    let e = BrokerConfig::from_toml_str("broker_id = 1").unwrap_err();
    assert_eq!(e.key(), Some("broker_id"));
}
