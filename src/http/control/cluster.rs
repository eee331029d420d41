//! `GET /v1/cluster`: the nodes as the store holds them, judged at one instant, and the leader
//! lease.

use chrono::Utc;

use super::{ControlContext, ControlError};
use crate::api::{ClusterStatus, LeaderStatus, NodeState, NodeStatus};
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
