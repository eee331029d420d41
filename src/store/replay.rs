//! The durable half of the webhook replay window: the delivery ids (`X-GitHub-Delivery`,
//! `webhook-id`, Slack's `event_id`, …) that created a task, each with the instant it stops
//! counting as a replay. The record is written in the same commit as the task it created
//! ([`super::TaskStore::create_with`]), so a delivery that was answered `202 accepted` is
//! remembered exactly as long as its task is; the webhook server loads the unexpired ids when it
//! starts, so a restart does not forget them. Expired ids are pruned by the writer as it commits.

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

/// The replay window's durable record (the in-memory window in front of it stays the first
/// check of every delivery).
pub trait ReplayStore: Send + Sync {
    /// The delivery ids that have not expired at `now`, at most `limit`, those expiring last
    /// first.
    fn seen(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<SeenDelivery>>;
}
