//! Wire types of actor introspection: the live tree, an actor's counters, its recent messages
//! and the answer to a kill.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `POST /v1/actors/{name}/kill`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KillResponse {
    pub actor: String,
    pub killed: bool,
}

/// `GET /v1/actors/{name}/inspect`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ActorInspect {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<StatsSummary>,
    /// What the actor reports about itself.
    pub state: serde_json::Value,
}

/// `GET /v1/actors/{name}/trace`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ActorTrace {
    pub name: String,
    pub messages: Vec<TraceEntry>,
}

/// What a traced message ended in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase", tag = "status", content = "error")]
pub enum TraceOutcome {
    Ok,
    Error(String),
}

/// One message an actor handled.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TraceEntry {
    pub actor: String,
    pub at: DateTime<Utc>,
    pub kind: String,
    pub duration_micros: u64,
    pub outcome: TraceOutcome,
}

/// A snapshot of [`Stats`] for the control API.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StatsSummary {
    #[serde(rename = "type")]
    pub actor_type: String,
    pub started_at: DateTime<Utc>,
    pub uptime_millis: u64,
    pub restarts: u64,
    pub received: u64,
    pub handled: u64,
    pub failed: u64,
    /// Messages sent through [`Addr`] and not yet received (timers sent directly are not counted).
    pub queue_depth: u64,
    pub last_message_age_millis: Option<u64>,
}

/// One node of the live actor tree.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ActorNode {
    pub name: String,
    pub id: String,
    pub status: String,
    #[serde(flatten)]
    pub stats: Option<StatsSummary>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<ActorNode>,
}
