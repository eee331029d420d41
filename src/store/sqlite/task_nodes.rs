//! Which node runs a task on SQLite (migration 12): the claim that starts a pending task, the
//! runs a node's crash recovery kills, and the failing of a dead node's tasks. The data dir's
//! lock allows one daemon, so there is one node here — these mean the same as on PostgreSQL
//! (see `store::postgres::tasks::nodes`), which the conformance cases check on both.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::{immediate, ts};
use crate::api::TaskState;
use crate::store::task_rows::state_message;
use crate::store::{Interrupted, NodeRecord, Result};

/// See [`TaskStore::running_runs`](crate::store::TaskStore::running_runs).
pub(super) fn running_runs(c: &mut Connection, node: &str) -> Result<Vec<Interrupted>> {
    let mut stmt = c.prepare_cached(
        "SELECT r.id, r.task_id, r.pid, r.pid_start FROM step_runs r
           JOIN tasks t ON t.id = r.task_id
         WHERE (r.state = 'running' AND (t.node = ?1 OR t.node IS NULL))
            OR (r.orphaned != 0 AND t.node = ?1)
         ORDER BY r.id",
    )?;
    let rows = stmt.query_map(params![node], |r| {
        Ok(Interrupted {
            run_id: r.get::<_, i64>(0)? as u64,
            task_id: r.get::<_, i64>(1)? as u64,
            pid: r.get(2)?,
            pid_start: r.get::<_, Option<i64>>(3)?.map(|s| s as u64),
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// See [`TaskStore::reaped`](crate::store::TaskStore::reaped).
pub(super) fn reaped(c: &mut Connection, runs: &[u64]) -> Result<()> {
    if runs.is_empty() {
        return Ok(());
    }
    let tx = immediate(c)?;
    {
        let mut stmt =
            tx.prepare_cached("UPDATE step_runs SET orphaned = 0 WHERE id = ?1 AND orphaned != 0")?;
        for r in runs {
            stmt.execute(params![*r as i64])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// See [`TaskStore::claim`](crate::store::TaskStore::claim).
pub(super) fn claim(c: &mut Connection, id: u64, node: &str, now: DateTime<Utc>) -> Result<bool> {
    let tx = immediate(c)?;
    let n = tx
        .prepare_cached(
            "UPDATE tasks SET state = 'running', reason = NULL, node = ?2,
               started_at = COALESCE(started_at, ?3)
             WHERE id = ?1 AND state = 'pending'",
        )?
        .execute(params![id as i64, node, ts(now)])?;
    if n == 0 {
        return Ok(false);
    }
    tx.prepare_cached("INSERT INTO task_events (task_id, at, message) VALUES (?1, ?2, ?3)")?
        .execute(params![
            id as i64,
            ts(now),
            state_message(TaskState::Running, None)
        ])?;
    tx.commit()?;
    Ok(true)
}

/// See [`TaskStore::fail_node`](crate::store::TaskStore::fail_node).
pub(super) fn fail_node(
    c: &mut Connection,
    dead: &NodeRecord,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<Vec<u64>> {
    let tx = immediate(c)?;
    let still: i64 = tx
        .prepare_cached(
            "SELECT COUNT(*) FROM nodes
             WHERE id = ?1 AND instance = ?2 AND heartbeat_at <= ?3 AND stopped_at IS NULL",
        )?
        .query_row(
            params![dead.node, dead.instance, ts(dead.heartbeat_at)],
            |r| r.get(0),
        )?;
    if still == 0 {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id FROM tasks WHERE node = ?1 AND state = 'running' ORDER BY id",
        )?;
        let rows = stmt.query_map(params![dead.node], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let message = state_message(TaskState::Failed, Some(reason));
    for id in &ids {
        tx.prepare_cached(
            "UPDATE tasks SET state = 'failed', reason = ?2, finished_at = ?3 WHERE id = ?1",
        )?
        .execute(params![id, reason, ts(now)])?;
        tx.prepare_cached(
            "UPDATE step_runs SET state = 'interrupted', reason = ?2, finished_at = ?3,
               orphaned = 1
             WHERE task_id = ?1 AND state = 'running'",
        )?
        .execute(params![id, reason, ts(now)])?;
        tx.prepare_cached("INSERT INTO task_events (task_id, at, message) VALUES (?1, ?2, ?3)")?
            .execute(params![id, ts(now), message])?;
    }
    tx.commit()?;
    Ok(ids.into_iter().map(|i| i as u64).collect())
}
