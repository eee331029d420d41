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
