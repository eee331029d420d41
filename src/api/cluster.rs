//! `cluster status`: the nodes of the store, the leader, and where this daemon stands.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `GET /v1/cluster`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterStatus {
    /// `sqlite`, or `postgres host:port/database` (never a password).
    pub store: String,
    /// The node that answered.
    pub this_node: String,
    /// When the answer was made (the heartbeat ages count from here).
    pub at: DateTime<Utc>,
    pub leader: Option<LeaderStatus>,
    pub nodes: Vec<NodeStatus>,
}

/// The leader lease.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct LeaderStatus {
    pub node: String,
    /// The fencing token: it grows by one whenever the lease changes hands.
    pub token: u64,
    pub since: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// The lease ran out and nobody has taken it yet (no node runs the cron triggers).
    pub expired: bool,
}

/// Whether a node counts.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Its heartbeat is younger than its TTL.
    Live,
    /// Silent for longer than its TTL (killed, hung, or cut off).
    Dead,
    /// Stopped cleanly.
    Stopped,
}

impl NodeState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Live => "live",
            NodeState::Dead => "dead",
            NodeState::Stopped => "stopped",
        }
    }
}

/// One node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct NodeStatus {
    pub node: String,
    pub state: NodeState,
    pub leader: bool,
    pub host: String,
    pub pid: u32,
    pub version: String,
    /// The snapshot revision the node has published.
    pub revision: u64,
    pub heartbeat_age_seconds: f64,
    pub ttl_seconds: f64,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// Tasks the node ran at its last heartbeat.
    pub tasks_running: u64,
}
