//! The durable half of the webhook replay window: the delivery ids (`X-GitHub-Delivery`,
//! `webhook-id`, Slack's `event_id`, …) that created a task, each with the instant it stops
//! counting as a replay. The record is written in the same commit as the task it created
//! ([`super::TaskStore::create_with`]), so a delivery that was answered `202 accepted` is
//! remembered for its whole window, across restarts, however many deliveries arrive meanwhile.
//! The record is the authority: the commit itself refuses a second task for an id it holds
//! ([`super::StoreError::DuplicateDelivery`]), and the webhook server asks [`ReplayStore::seen`]
//! before it fires (its in-memory window is only a cache of the most recent ids). Expired ids
//! are pruned by the writer as it commits.

use chrono::{DateTime, Utc};

use super::Result;

/// A webhook delivery id that created a task, and when it stops counting as a replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenDelivery {
    pub project: String,
    pub trigger: String,
    /// The platform's delivery id.
    pub id: String,
    pub expires_at: DateTime<Utc>,
}

/// The replay window's durable record.
pub trait ReplayStore: Send + Sync {
    /// The task that delivery `id` of `trigger` created, if its record has not expired at `now`.
    fn seen(
        &self,
        project: &str,
        trigger: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<u64>>;
}
