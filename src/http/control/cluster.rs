//! `GET /v1/cluster`: the nodes as the store holds them, judged at one instant, and the leader
//! lease.

use std::time::Duration;

use chrono::Utc;

use super::{ControlContext, ControlError};
use crate::api::{
    ChangeResponse, ClusterStatus, LeaderStatus, NodeState, NodeStatus, NodesServing,
};
use crate::store::cluster::{LEADER, expired};

pub(super) async fn status(ctx: &ControlContext) -> Result<ClusterStatus, ControlError> {
    let store = ctx.cluster.clone();
    let (nodes, lease) = tokio::task::spawn_blocking(move || {
        Ok::<_, crate::store::StoreError>((store.nodes()?, store.lease(LEADER)?))
    })
    .await
    .map_err(|e| ControlError::Unhandled(e.to_string()))?
    .map_err(ControlError::ReadCluster)?;
    let at = Utc::now();
    let leader = lease.map(|l| LeaderStatus {
        expired: l.expires_at <= at,
        node: l.holder,
        token: l.token,
        since: l.acquired_at,
        expires_at: l.expires_at,
    });
    let leads = |node: &str| {
        leader
            .as_ref()
            .is_some_and(|l| !l.expired && l.node == node)
    };
    let nodes = nodes
        .into_iter()
        .map(|n| NodeStatus {
            state: if n.stopped_at.is_some() {
                NodeState::Stopped
            } else if expired(n.heartbeat_at, n.ttl, at) {
                NodeState::Dead
            } else {
                NodeState::Live
            },
            leader: leads(&n.node),
            heartbeat_age_seconds: ((at - n.heartbeat_at).num_milliseconds().max(0) as f64)
                / 1000.0,
            ttl_seconds: n.ttl.as_secs_f64(),
            node: n.node,
            host: n.host,
            pid: n.pid,
            version: n.version,
            revision: n.revision,
            started_at: n.started_at,
            stopped_at: n.stopped_at,
            webhook: n.webhook,
            tasks_running: n.running,
        })
        .collect();
    Ok(ClusterStatus {
        store: ctx.store.clone(),
        this_node: ctx.node.clone(),
        at,
        leader,
        nodes,
    })
}

/// How long a change waits for every live node to serve it.
const SERVE_WAIT: Duration = Duration::from_secs(5);

/// How often the wait looks at the nodes' heartbeats (each node reports a new revision as soon
/// as it publishes it).
const SERVE_POLL: Duration = Duration::from_millis(20);

/// On a store several nodes share, returns a committed change once every live node serves its
/// revision — or [`SERVE_WAIT`] has passed, naming the nodes that do not (each of them refuses
/// webhooks until it has caught up, see `http::webhook`). A key is then accepted or refused
/// everywhere from the moment the change returns.
pub(super) async fn synced(
    ctx: &ControlContext,
    result: Result<ChangeResponse, ControlError>,
) -> Result<ChangeResponse, ControlError> {
    let mut response = result?;
    if !ctx.shared_store || response.dry_run {
        return Ok(response);
    }
    let revision = response.revision;
    let deadline = tokio::time::Instant::now() + SERVE_WAIT;
    loop {
        let store = ctx.cluster.clone();
        let nodes = tokio::task::spawn_blocking(move || store.nodes())
            .await
            .map_err(|e| ControlError::Unhandled(e.to_string()))?
            .map_err(ControlError::ReadCluster)?;
        let now = Utc::now();
        let (serving, behind): (Vec<_>, Vec<_>) = nodes
            .iter()
            .filter(|n| n.live(now))
            .partition(|n| n.revision >= revision);
        let done = behind.is_empty() || tokio::time::Instant::now() >= deadline;
        if done {
            if !behind.is_empty() {
                tracing::warn!(revision, behind = ?behind.iter().map(|n| &n.node).collect::<Vec<_>>(), "a change returned before every live node served it");
            }
            response.nodes = Some(NodesServing {
                serving: serving.into_iter().map(|n| n.node.clone()).collect(),
                behind: behind.into_iter().map(|n| n.node.clone()).collect(),
            });
            return Ok(response);
        }
        tokio::time::sleep(SERVE_POLL).await;
    }
}
