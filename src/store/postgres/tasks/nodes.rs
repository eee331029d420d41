//! Which node runs a task on PostgreSQL: the claim that starts a pending task on one node (the
//! row's state arbitrates: of two nodes that claim at once, one updates the row and the other
//! finds it running), the runs a node's crash recovery kills, and the failing of a dead node's
//! tasks — under a lock on the node's row, so that a node that comes back (its `join` writes
//! the row) waits for the failing to commit, or keeps its tasks.

use chrono::{DateTime, Utc};

use super::super::Db;
use super::text;
use crate::api::TaskState;
use crate::store::task_rows::state_message;
use crate::store::{Interrupted, NodeRecord, Result};

/// See [`TaskStore::running_runs`](crate::store::TaskStore::running_runs).
pub(super) fn running_runs(db: &Db, node: &str) -> Result<Vec<Interrupted>> {
    db.block(async {
        let c = db.client().await?;
        let rows = c
            .query(
                "SELECT r.id, r.task_id, r.pid, r.pid_start FROM step_runs r
                   JOIN tasks t ON t.id = r.task_id
                 WHERE (r.state = 'running' AND (t.node = $1 OR t.node IS NULL))
                    OR (r.orphaned AND t.node = $1)
                 ORDER BY r.id",
                &[&node],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(Interrupted {
                    run_id: r.try_get::<_, i64>(0)? as u64,
                    task_id: r.try_get::<_, i64>(1)? as u64,
                    pid: r
                        .try_get::<_, Option<i64>>(2)?
                        .and_then(|p| i32::try_from(p).ok()),
                    pid_start: r.try_get::<_, Option<i64>>(3)?.map(|s| s as u64),
                })
            })
            .collect()
    })
}

/// See [`TaskStore::reaped`](crate::store::TaskStore::reaped).
pub(super) fn reaped(db: &Db, runs: &[u64]) -> Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let ids: Vec<i64> = runs.iter().map(|r| *r as i64).collect();
    db.block(async {
        let c = db.client().await?;
        c.execute(
            "UPDATE step_runs SET orphaned = FALSE WHERE id = ANY($1) AND orphaned",
            &[&ids],
        )
        .await?;
        Ok(())
    })
}

/// See [`TaskStore::claim`](crate::store::TaskStore::claim).
pub(super) fn claim(db: &Db, id: u64, node: &str, now: DateTime<Utc>) -> Result<bool> {
    let message = state_message(TaskState::Running, None);
    db.block(async {
        let mut c = db.client().await?;
        let tx = c.transaction().await?;
        let n = tx
            .execute(
                "UPDATE tasks SET state = 'running', reason = NULL, node = $2,
                   started_at = COALESCE(started_at, $3)
                 WHERE id = $1 AND state = 'pending'",
                &[&(id as i64), &node, &now],
            )
            .await?;
        if n == 0 {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO task_events (task_id, at, message) VALUES ($1, $2, $3)",
            &[&(id as i64), &now, &message],
        )
        .await?;
        tx.commit().await?;
        Ok(true)
    })
}

/// See [`TaskStore::fail_node`](crate::store::TaskStore::fail_node).
pub(super) fn fail_node(
    db: &Db,
    dead: &NodeRecord,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Vec<u64>> {
    let reason = text(reason);
    let message = state_message(TaskState::Failed, Some(&reason));
    db.block(async {
        let mut c = db.client().await?;
        let tx = c.transaction().await?;
        let still = tx
            .query_opt(
                "SELECT 1 FROM nodes
                 WHERE id = $1 AND instance = $2 AND heartbeat_at <= $3 AND stopped_at IS NULL
                 FOR UPDATE",
                &[&dead.node, &dead.instance, &dead.heartbeat_at],
            )
            .await?;
        if still.is_none() {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        let rows = tx
            .query(
                "UPDATE tasks SET state = 'failed', reason = $2, finished_at = $3
                 WHERE node = $1 AND state = 'running' RETURNING id",
                &[&dead.node, &reason, &now],
            )
            .await?;
        let mut ids = rows
            .iter()
            .map(|r| r.try_get::<_, i64>(0))
            .collect::<std::result::Result<Vec<i64>, _>>()?;
        ids.sort_unstable();
        if !ids.is_empty() {
            tx.execute(
                "UPDATE step_runs SET state = 'interrupted', reason = $2, finished_at = $3,
                   orphaned = TRUE
                 WHERE task_id = ANY($1) AND state = 'running'",
                &[&ids, &reason, &now],
            )
            .await?;
            tx.execute(
                "INSERT INTO task_events (task_id, at, message)
                 SELECT t, $2, $3 FROM unnest($1::BIGINT[]) AS t",
                &[&ids, &now, &message],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(ids.into_iter().map(|i| i as u64).collect())
    })
}
