//! Wire types of triggers: fire requests and answers, fire times in a zone and in UTC, and a
//! trigger's live status. Its history rows are the domain's
//! [`TriggerEvent`](crate::domain::trigger_plan::TriggerEvent), sent as they are.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::TaskInfo;

/// `POST /v1/triggers/{name}/fire`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FireRequest {
    #[serde(default)]
    pub project: Option<String>,
    /// JSON text for `{payload}`.
    #[serde(default)]
    pub payload: Option<String>,
}

/// What a fire did: a task, or why none was created.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FireResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// A fire instant shown in a trigger's zone and in UTC.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FireTime {
    pub utc: String,
    pub local: String,
}

impl FireTime {
    pub fn new(t: DateTime<Utc>, tz: chrono_tz::Tz) -> FireTime {
        FireTime {
            utc: t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            local: t
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string(),
        }
    }
}

/// `status` of a Trigger in `get`/`describe`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TriggerStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_fire: Option<FireTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_fire: Option<FireTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_task: Option<u64>,
    pub fires: u64,
    pub skips: u64,
    pub missed: u64,
}

/// `GET /v1/webhooks/{trigger}/deliveries?project=&limit=`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DeliveryQuery {
    #[serde(default)]
    pub project: Option<String>,
    /// At most this many, newest first (default 50).
    #[serde(default)]
    pub limit: Option<usize>,
}

/// One request that reached a webhook trigger, as the delivery log keeps it: never a key, a
/// signature or (here) the payload.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryView {
    /// The log's id (what `webhook redeliver` takes).
    pub id: u64,
    pub project: String,
    pub trigger: String,
    pub received_at: DateTime<Utc>,
    /// The HTTP status it was answered with.
    pub status: u16,
    /// `accepted`, `filtered`, `duplicate`, `skipped`, `unauthorized`, `bad request`,
    /// `too large`, `body timeout`, `dry run`, `webhook test`, `url verification`, `not created`.
    pub outcome: String,
    /// The name of the key that verified its signature.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The task it created (for a duplicate: the task its first delivery created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<u64>,
    /// The platform's delivery id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    pub payload_bytes: u64,
    /// Whether its payload is kept, so that it can be redelivered.
    pub redeliverable: bool,
}

/// The newest deliveries of a trigger, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeliveryList {
    pub deliveries: Vec<DeliveryView>,
}
