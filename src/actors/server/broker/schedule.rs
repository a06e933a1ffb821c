//! The broker's part of delayed messages: a send asking for a delay level is stored in its
//! schedule form (see [`schedule_delivery::to_schedule`]), and a master starts one
//! [`ScheduleDelivery`] per level, which reads its schedule queue through [`ReadQueue`] and
//! stores due messages through [`StoreInternal`](super::StoreInternal).
//!
//! Nothing here waits for a delay: the deliveries keep the timers.

use super::*;
use crate::actors::server::schedule_delivery::{self, ScheduleDelivery, DELIVERY_OFFSETS_GROUP};

/// Reads up to `max_msgs` confirmed records of a queue from `offset` (for the broker's own
/// actors, which hold no store handle: a reopened store is always the current one here).
#[derive(Message)]
#[rtype(result = "crate::storage::GetResult")]
pub struct ReadQueue {
    /// Topic.
    pub topic: String,
    /// Queue id.
    pub queue_id: u32,
    /// First queue offset.
    pub offset: u64,
    /// Most records.
    pub max_msgs: usize,
}

/// Most bytes one [`ReadQueue`] answers.
const READ_QUEUE_MAX_BYTES: usize = 1024 * 1024;

impl Handler<ReadQueue> for Broker {
    type Result = MessageResult<ReadQueue>;

    fn handle(&mut self, r: ReadQueue, _: &mut Context<Self>) -> Self::Result {
        MessageResult(self.store.get_messages(
            &r.topic,
            r.queue_id,
            r.offset,
            r.max_msgs,
            READ_QUEUE_MAX_BYTES,
            None,
        ))
    }
}

impl Broker {
    /// The delays of the configured levels (validated at load; the defaults otherwise).
    pub(super) fn delay_levels(&self) -> Vec<Duration> {
        crate::config::parse_delay_levels(&self.config.message_delay_level).unwrap_or_else(|_| {
            crate::config::parse_delay_levels(crate::config::DEFAULT_MESSAGE_DELAY_LEVEL)
                .unwrap_or_default()
        })
    }

    /// Rewrites a send that asks for a delay level into its schedule form. A batch cannot
    /// be delayed (as in RocketMQ): the answer says so.
    pub(super) fn schedule_delayed(
        &self,
        msgs: &mut [MessageToStore],
        batch: bool,
    ) -> Result<(), String> {
        if batch {
            if msgs
                .iter()
                .any(|m| schedule_delivery::delay_level(&m.properties).is_some())
            {
                return Err("a batch cannot carry delayed messages; send them one by one".into());
            }
            return Ok(());
        }
        for m in msgs {
            if let Some(level) = schedule_delivery::delay_level(&m.properties) {
                schedule_delivery::to_schedule(m, level, self.delay_level_count);
            }
        }
        Ok(())
    }

    /// Starts one delivery per delay level, once (a master only: a slave delivers nothing,
    /// it copies what its master delivered).
    pub(super) fn start_deliveries(&mut self, ctx: &mut Context<Self>) {
        if !self.config.is_master() || !self.deliveries.is_empty() {
            return;
        }
        let offsets = match self.group(DELIVERY_OFFSETS_GROUP) {
            Ok(g) => g,
            Err(why) => {
                tracing::error!(%why, "delayed messages cannot be delivered");
                return;
            }
        };
        let broker = ctx.address();
        self.deliveries = self
            .delay_levels()
            .into_iter()
            .enumerate()
            .map(|(i, delay)| {
                ScheduleDelivery::new(i as u32 + 1, delay, broker.clone(), offsets.clone()).start()
            })
            .collect();
    }
}
