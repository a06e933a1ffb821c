//! The broker's topic table: which topics it serves, with queue counts and permissions.
//!
//! Plain data with a file behind it (`<store root>/config/topics.toml`). Every change bumps
//! the version in memory; the broker then takes a [`TopicTable::snapshot`] and has it
//! written off its event loop (atomically, newest snapshot wins) before it answers the
//! request that made the change, so a topic created or deleted survives a restart. The
//! broker actor owns one; this module never talks to anyone and never writes on its own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::protocol::topic::{DataVersion, TopicConfig, TopicConfigWrapper, PERM_READ_WRITE};

/// Why the topic table could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum TopicTableError {
    /// Reading or writing the file failed.
    #[error("topic table {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a topic table.
    #[error("topic table {path} is damaged: {reason}; fix or remove it")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        reason: String,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OnDisk {
    #[serde(default)]
    counter: u64,
    #[serde(default)]
    topics: Vec<TopicConfig>,
}

/// Topics served by this broker.
#[derive(Debug)]
pub struct TopicTable {
    file: SnapshotFile,
    topics: HashMap<String, TopicConfig>,
    version: DataVersion,
}

use crate::common::clock::now_ms;
use crate::common::fs::{Snapshot, SnapshotFile};
pub use crate::common::names::validate_topic_name;

impl TopicTable {
    /// Loads the table kept under `store_root`, or an empty one.
    pub fn load(store_root: &Path) -> Result<Self, TopicTableError> {
        let path = store_root.join("config").join("topics.toml");
        let on_disk = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<OnDisk>(&text).map_err(|e| TopicTableError::Damaged {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => OnDisk::default(),
            Err(source) => return Err(TopicTableError::Io { path, source }),
        };
        Ok(TopicTable {
            file: SnapshotFile::new(path),
            topics: on_disk
                .topics
                .into_iter()
                .map(|t| (t.topic_name.clone(), t))
                .collect(),
            version: DataVersion {
                counter: on_disk.counter,
                timestamp: now_ms(),
            },
        })
    }

    /// One topic's config.
    pub fn get(&self, topic: &str) -> Option<&TopicConfig> {
        self.topics.get(topic)
    }

    /// All topics, sorted by name.
    pub fn all(&self) -> Vec<TopicConfig> {
        let mut v: Vec<_> = self.topics.values().cloned().collect();
        v.sort_by(|a, b| a.topic_name.cmp(&b.topic_name));
        v
    }

    /// The table as the name server wants it.
    pub fn wrapper(&self) -> TopicConfigWrapper {
        TopicConfigWrapper {
            topic_config_table: self.topics.clone(),
            data_version: self.version,
        }
    }

    /// Creates or replaces a topic (in memory: save a [`Self::snapshot`]).
    pub fn upsert(&mut self, config: TopicConfig) {
        self.topics.insert(config.topic_name.clone(), config);
        self.bump();
    }

    /// A topic created on first send (`auto_create_topic_enable`).
    pub fn auto_create(&mut self, topic: &str, queues: i32) -> TopicConfig {
        let config = TopicConfig {
            topic_name: topic.to_owned(),
            read_queue_nums: queues,
            write_queue_nums: queues,
            perm: PERM_READ_WRITE,
            topic_sys_flag: 0,
            order: false,
        };
        self.upsert(config.clone());
        config
    }

    /// Deletes a topic (in memory: save a [`Self::snapshot`]); false if it did not exist.
    pub fn remove(&mut self, topic: &str) -> bool {
        if self.topics.remove(topic).is_none() {
            return false;
        }
        self.bump();
        true
    }

    fn bump(&mut self) {
        self.version.counter += 1;
        self.version.timestamp = now_ms();
    }

    /// The table as it is now, ready to be written off the event loop
    /// ([`TopicSnapshot::save`]). Cheap: a few hundred bytes per topic.
    pub fn snapshot(&self) -> Result<TopicSnapshot, TopicTableError> {
        let on_disk = OnDisk {
            counter: self.version.counter,
            topics: self.all(),
        };
        let text = toml::to_string(&on_disk).map_err(|e| TopicTableError::Damaged {
            path: self.file.path().to_owned(),
            reason: e.to_string(),
        })?;
        Ok(TopicSnapshot(self.file.snapshot(text.into_bytes())))
    }
}

/// A numbered copy of the topic table waiting to be written.
#[derive(Debug)]
pub struct TopicSnapshot(Snapshot);

impl TopicSnapshot {
    /// Writes it on a blocking thread (a newer snapshot already written wins).
    pub async fn save(self) -> Result<(), TopicTableError> {
        let path = self.0.path().to_owned();
        self.0
            .write_off_thread()
            .await
            .map_err(|source| TopicTableError::Io { path, source })
    }

    /// Writes it on this thread; for tests and tools, never an event loop.
    pub fn save_blocking(self) -> Result<(), TopicTableError> {
        let path = self.0.path().to_owned();
        self.0
            .write()
            .map_err(|source| TopicTableError::Io { path, source })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_reload_and_versions_grow() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = TopicTable::load(dir.path()).unwrap();
        t.auto_create("A", 4);
        t.auto_create("B", 8);
        assert!(t.remove("A"));
        assert!(!t.remove("A"));
        t.snapshot().unwrap().save_blocking().unwrap();
        let v = t.wrapper().data_version.counter;
        let t2 = TopicTable::load(dir.path()).unwrap();
        assert!(t2.get("A").is_none());
        assert_eq!(t2.get("B").unwrap().write_queue_nums, 8);
        assert_eq!(t2.wrapper().data_version.counter, v);
    }
}
