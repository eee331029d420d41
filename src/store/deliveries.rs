//! The webhook delivery log: one row per request that reached a webhook trigger — when it
//! arrived, the status it was answered with and what became of it (accepted, filtered,
//! duplicate, skipped, unauthorized, …), which key name verified it, the task it created and the
//! payload's size — never a key or a signature. A verified delivery's payload is kept too, so
//! that `orchestrator webhook redeliver ID` can start a new task from it; an unverified body is
//! never stored. The log is bounded per trigger: the newest [`DELIVERIES_KEPT`] rows, of which
//! the newest [`PAYLOADS_KEPT`] keep their payload. The webhook server writes it in batches
//! (like the verification stamps); `orchestrator webhook deliveries TRIGGER` reads it.

use chrono::{DateTime, Utc};

use super::Result;

/// Rows kept per trigger.
pub const DELIVERIES_KEPT: usize = 1_000;
/// Rows per trigger that keep their payload (the newest).
pub const PAYLOADS_KEPT: usize = 100;

/// One delivery as the webhook server saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub project: String,
    pub trigger: String,
    pub received_at: DateTime<Utc>,
    /// The HTTP status it was answered with.
    pub status: u16,
    /// What became of it: `accepted`, `filtered`, `duplicate`, `skipped`, `unauthorized`, …
    pub outcome: String,
    /// The name of the key that verified its signature.
    pub key: Option<String>,
    /// The task it created (or, for a duplicate, the task its first delivery created).
    pub task: Option<u64>,
    /// The platform's delivery id, when it sent one.
    pub delivery_id: Option<String>,
    pub payload_bytes: u64,
    /// The payload as the task would get it; only for a verified delivery.
    pub payload: Option<String>,
}

/// A logged delivery (`payload` only when asked for one row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub id: u64,
    pub delivery: NewDelivery,
    /// Whether its payload is still kept (so it can be redelivered).
    pub has_payload: bool,
}

/// The delivery log.
pub trait DeliveryStore: Send + Sync {
    /// Appends `batch` in one transaction and trims each trigger it touches to its bounds.
    fn record(&self, batch: &[NewDelivery]) -> Result<()>;

    /// The newest `limit` deliveries of `trigger`, newest first, without their payloads.
    fn list(&self, project: &str, trigger: &str, limit: usize) -> Result<Vec<DeliveryRecord>>;

    /// One delivery with its payload (if still kept).
    fn get(&self, id: u64) -> Result<Option<DeliveryRecord>>;
}
