//! A consumer group that cannot read its offsets file, and how its supervision brings it
//! back.
//!
//! The file is the only record of where the group's consumers got to. When it cannot be
//! read (damaged by hand or by the disk, or a read error other than "not found"), the group
//! does not start empty as if it had never consumed: its consumers would start again from
//! `consume_from_where`, skipping or repeating everything, and its next write would replace
//! the file with the few offsets committed since. Instead the group answers offset queries
//! with [`OffsetsUnavailable`], so consumers wait and ask again, writes nothing, and stops
//! itself every `flush_consumer_offset_interval`; the supervisor's restart reads the file
//! again. Once it reads (repaired, or removed by an operator who accepts starting over),
//! offsets committed in the meantime are merged over it and written out at the next flush.

use super::*;

/// The group's committed offsets are unknown because its offsets file cannot be read.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the committed offsets of consumer group '{group}' are unknown: {file}: {reason}; \
     repair or remove that file (the broker reads it again every {retry_ms} ms)"
)]
pub struct OffsetsUnavailable {
    /// The group.
    pub group: String,
    /// Its offsets file.
    pub file: String,
    /// What reading it said.
    pub reason: String,
    /// How often the group reads it again.
    pub retry_ms: u64,
}

impl ConsumerGroup {
    /// Why offsets cannot be answered now, or `None` while the file has been read.
    pub(super) fn unavailable(&self) -> Option<OffsetsUnavailable> {
        self.damaged.as_ref().map(|reason| OffsetsUnavailable {
            group: self.name.clone(),
            file: self.file.path().display().to_string(),
            reason: reason.clone(),
            retry_ms: self.timings.flush_consumer_offset_interval.as_millis() as u64,
        })
    }

    /// The file was read (or there is none): offsets are known again.
    pub(super) fn loaded(&mut self) {
        if let Some(was) = self.damaged.take() {
            tracing::warn!(group = %self.name, file = %self.file.path().display(), was = %was,
                "consumer offsets file reads again: answering offsets");
            // Offsets committed while it could not be read are not in it yet.
            self.dirty = true;
        }
    }

    /// The file cannot be read: offsets are unknown until it can.
    pub(super) fn unreadable(&mut self, reason: String) {
        if self.damaged.as_deref() != Some(reason.as_str()) {
            tracing::error!(group = %self.name, file = %self.file.path().display(), %reason,
                "consumer offsets unknown: answering none and writing none until the file \
                 reads; repair or remove it");
        }
        self.damaged = Some(reason);
    }

    /// Arms the stop that has the supervisor read the file again, if it could not be read.
    /// Not at once: a restart that finds the file still damaged would stop again at once,
    /// and the actor would spin.
    pub(super) fn stop_to_reload_if_damaged(&self, ctx: &mut Context<Self>) {
        if self.damaged.is_some() {
            ctx.run_later(self.timings.flush_consumer_offset_interval, |act, ctx| {
                if act.damaged.is_some() {
                    ctx.stop();
                }
            });
        }
    }
}

impl Supervised for ConsumerGroup {
    fn restarting(&mut self, _ctx: &mut Self::Context) {
        // `stopped()` has written what could be written; the file decides the rest.
        self.load();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the periodic write does, on this thread.
    fn write_now(g: &mut ConsumerGroup) {
        if let Some(snapshot) = g.offsets_snapshot() {
            snapshot.write().unwrap();
        }
    }

    fn group_over(root: &std::path::Path) -> ConsumerGroup {
        let timings = GroupTimings {
            channel_expired_timeout: Duration::from_secs(120),
            flush_consumer_offset_interval: Duration::from_millis(200),
        };
        ConsumerGroup::new("g".into(), root, timings)
    }

    #[test]
    fn a_damaged_file_is_not_answered_nor_overwritten_and_a_repaired_one_is_merged() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("config/consumer_offsets/g.toml");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "not = = toml").unwrap();
        let mut g = group_over(dir.path());
        let e = g
            .unavailable()
            .expect("a damaged file leaves offsets unknown");
        assert!(e.to_string().contains("g.toml"), "{e}");

        // A commit while damaged is kept in memory only.
        g.offsets.insert(("T".into(), 1), 7);
        g.dirty = true;
        write_now(&mut g);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "not = = toml");

        // Repaired: the file's offsets come back, the newer commit wins, and both are
        // written at the next persist.
        std::fs::write(&file, "\"T@0\" = 42\n\"T@1\" = 3\n").unwrap();
        g.load();
        assert!(g.unavailable().is_none());
        assert_eq!(g.offsets.get(&("T".into(), 0)), Some(&42));
        assert_eq!(g.offsets.get(&("T".into(), 1)), Some(&7));
        write_now(&mut g);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("= 42") && text.contains("= 7"), "{text}");
    }

    #[test]
    fn subscription_anchors_survive_a_restart_and_the_earliest_wins() {
        let dir = tempfile::tempdir().unwrap();
        let mut g = group_over(dir.path());
        g.offsets.insert(("T".into(), 0), 5);
        g.subscribed_since.insert("T".into(), 1_000);
        g.dirty = true;
        write_now(&mut g);
        let text = std::fs::read_to_string(g.file.path()).unwrap();
        assert!(text.contains("\"T@subscribed_since\" = 1000"), "{text}");

        // A new actor (a broker restart) reads both back; the anchor is not a queue.
        let mut again = group_over(dir.path());
        assert_eq!(again.subscribed_since.get("T"), Some(&1_000));
        assert_eq!(again.offsets.len(), 1);
        assert_eq!(again.offsets.get(&("T".into(), 0)), Some(&5));

        // Recorded later in memory, before a reload: the file's earlier time wins.
        again.subscribed_since.insert("T".into(), 9_000);
        again.load();
        assert_eq!(again.subscribed_since.get("T"), Some(&1_000));

        // A reader that knows only offsets (`<topic>@<queue id>`) skips the anchor.
        let map: BTreeMap<String, i64> = toml::from_str(&text).unwrap();
        let queues: Vec<_> = map
            .keys()
            .filter_map(|k| k.rsplit_once('@')?.1.parse::<i32>().ok())
            .collect();
        assert_eq!(queues, vec![0]);
    }

    #[test]
    fn a_missing_file_is_a_group_that_never_committed() {
        let dir = tempfile::tempdir().unwrap();
        let g = group_over(dir.path());
        assert!(g.unavailable().is_none());
        assert!(g.offsets.is_empty());
    }
}
