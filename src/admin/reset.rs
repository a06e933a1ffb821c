//! Moving a consumer group's offsets through the admin client (`mqadmin resetOffsetByTime`):
//! `INVOKE_BROKER_TO_RESET_OFFSET` to the master of every broker set serving the topic,
//! each of which commits the group's new offsets and tells the group's live consumers.
//!
//! This file owns that request only. It must never move offsets on a slave (a slave's
//! offsets are copies) and never report a broker it could not reach as reset.

use bytes::Bytes;

use super::{AdminClient, AdminError};
use crate::protocol::group::{MessageQueue, ResetOffsetBody, ResetOffsetRequestHeader};
use crate::protocol::RequestCode;

impl AdminClient {
    /// Moves `group`'s offsets of `topic` to the first message stored at or after
    /// `timestamp` (ms since the epoch) on every queue, back or forward; live consumers of
    /// the group restart their queues there within moments. Returns each queue's new
    /// offset. Fails if a broker set has no master registered or a master refuses.
    pub async fn reset_offset_by_time(
        &mut self,
        group: &str,
        topic: &str,
        timestamp: i64,
    ) -> Result<Vec<(MessageQueue, i64)>, AdminError> {
        let route = self.route(topic).await?;
        let header = ResetOffsetRequestHeader {
            topic: topic.to_owned(),
            group: group.to_owned(),
            timestamp,
            is_force: true,
        };
        let mut table = Vec::new();
        for set in &route.broker_datas {
            let Some(master) = set.master_addr().map(str::to_owned) else {
                return Err(AdminError::Refused {
                    peer: set.broker_name.clone(),
                    code: "NO_MASTER".into(),
                    remark: format!(
                        "broker set '{}' has no master registered; its offsets cannot be reset now",
                        set.broker_name
                    ),
                });
            };
            let answer = self
                .call_ok(
                    &master,
                    RequestCode::InvokeBrokerToResetOffset,
                    &header,
                    Bytes::new(),
                )
                .await?;
            let body: ResetOffsetBody =
                answer.decode_body().map_err(|e| AdminError::BadAnswer {
                    peer: master.clone(),
                    reason: e.to_string(),
                })?;
            table.extend(body.offset_table);
        }
        table.sort();
        Ok(table)
    }
}
