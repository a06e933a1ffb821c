//! One broker's runtime state through the admin client (`GET_BROKER_RUNTIME_INFO`): its
//! RocketMQ-style key/value table, with the values an operator must act on (refused writes,
//! damaged commit-log ranges) read out as typed fields.
//!
//! This file owns that request and [`BrokerStatus`]. It must never print, and never fail
//! on a key it does not know: a newer or older broker's table still reads.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{AdminClient, AdminError};
use crate::protocol::topic::KvTable;
use crate::protocol::{NoHeader, RequestCode};

/// One damaged commit-log range as the broker's `damage` value lists it. Every field has a
/// default so a broker that adds or drops one still reads.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DamageRange {
    /// First damaged commit-log offset.
    pub from: u64,
    /// First offset after the range.
    pub to: u64,
    /// Length of the range.
    pub bytes: u64,
    /// What is wrong there (a bad checksum, a torn record, ...).
    pub kind: String,
    /// What found it (recovery, a read, a scrub).
    pub found_by: String,
    /// When it was found (ms since the epoch).
    pub found_at: i64,
    /// The store's explanation.
    pub reason: String,
}

/// A broker's runtime state: its key/value table, as the broker sent it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct BrokerStatus {
    /// RocketMQ-style keys (`commitLogMaxOffset`, `writeRefused`, `damage`, ...) mapped to
    /// their values as text, sorted by key.
    pub table: BTreeMap<String, String>,
}

impl BrokerStatus {
    /// Why the broker refuses writes, or `None` when it accepts them.
    pub fn write_refused(&self) -> Option<&str> {
        self.table
            .get("writeRefused")
            .map(String::as_str)
            .filter(|v| *v != "false")
    }

    /// The damaged commit-log ranges: `None` when there are none, an error (the parser's
    /// message) when the broker's list does not parse.
    pub fn damage(&self) -> Option<Result<Vec<DamageRange>, String>> {
        let raw = self
            .table
            .get("damage")
            .filter(|v| !v.is_empty() && v.as_str() != "[]")?;
        Some(serde_json::from_str(raw).map_err(|e| e.to_string()))
    }

    /// How many older damaged ranges no longer fit the broker's damage log, or `None` when
    /// none were dropped.
    pub fn damage_dropped(&self) -> Option<&str> {
        self.table
            .get("damageDropped")
            .map(String::as_str)
            .filter(|v| *v != "0")
    }
}

impl AdminClient {
    /// One broker's runtime state (`GET_BROKER_RUNTIME_INFO`): RocketMQ-style keys such as
    /// `commitLogMaxOffset`, `writeRefused` and `damage` mapped to their values as text.
    pub async fn broker_runtime_info(
        &mut self,
        broker: &str,
    ) -> Result<BTreeMap<String, String>, AdminError> {
        let kv: KvTable = self
            .call_for_body(broker, RequestCode::GetBrokerRuntimeInfo, &NoHeader {})
            .await?;
        Ok(kv.table)
    }

    /// [`AdminClient::broker_runtime_info`] as a [`BrokerStatus`].
    pub async fn broker_status(&mut self, broker: &str) -> Result<BrokerStatus, AdminError> {
        Ok(BrokerStatus {
            table: self.broker_runtime_info(broker).await?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(pairs: &[(&str, &str)]) -> BrokerStatus {
        BrokerStatus {
            table: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn a_healthy_broker_has_nothing_to_act_on() {
        let s = status(&[
            ("writeRefused", "false"),
            ("damage", "[]"),
            ("damageDropped", "0"),
        ]);
        assert_eq!(s.write_refused(), None);
        assert!(s.damage().is_none());
        assert_eq!(s.damage_dropped(), None);
    }

    #[test]
    fn damage_reads_with_missing_and_unknown_fields() {
        let s = status(&[
            ("writeRefused", "disk full"),
            ("damage", r#"[{"from":10,"to":20,"kind":"crc","extra":1}]"#),
        ]);
        assert_eq!(s.write_refused(), Some("disk full"));
        let ranges = s.damage().and_then(Result::ok).unwrap_or_default();
        assert_eq!(ranges.len(), 1);
        assert_eq!((ranges[0].from, ranges[0].to, ranges[0].bytes), (10, 20, 0));
        assert!(status(&[("damage", "not json")])
            .damage()
            .is_some_and(|r| r.is_err()));
    }
}
