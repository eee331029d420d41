//! Task retention on PostgreSQL: the prunes of SQLite's `retention.rs` with the same rules —
//! every delete requires the task to be finished and not the newest one ([`DELETABLE`]), each
//! prune deletes at most one batch in one transaction (step runs and events go with their task,
//! `ON DELETE CASCADE`) — so that what one backend keeps the other keeps too. The candidates are
//! read first and the delete re-checks its conditions, so a node that picked a task another
//! node has just deleted or restarted deletes nothing of it.
//!
//! Space: the server's autovacuum makes the space of deleted rows reusable; the size reported is
//! the database's (`pg_database_size`), and there is no write-ahead log or free page count of
//! this database's own to report.

use chrono::{DateTime, Utc};

use super::super::Db;
use crate::api::TaskState;
use crate::domain::retention::HistoryLimited;
use crate::store::{AgeScan, Deleted, Result, StorageInfo, StoreError, Swept};

/// The states of a finished task, as SQL.
const FINISHED: &str = "('succeeded', 'failed', 'cancelled')";

/// What every delete requires besides its own condition (see SQLite's `retention.rs`): a
/// finished task, and not the newest task. PostgreSQL's identity never gives an id twice, but
/// both backends keep the same tasks.
const DELETABLE: &str =
    "state IN ('succeeded', 'failed', 'cancelled') AND id < (SELECT MAX(id) FROM tasks)";

/// True for a task its trigger's `historyLimit` keeps (`$L1`: the succeeded keys, `$L2`: the
/// failed keys, arrays of `project/trigger`).
const LIMITED: &str = "(trigger IS NOT NULL AND (
      (state = 'succeeded' AND project || '/' || trigger = ANY($L1::TEXT[]))
   OR (state <> 'succeeded' AND project || '/' || trigger = ANY($L2::TEXT[]))))";

/// With `$L1`/`$L2` renumbered to `${first}`/`${first + 1}`.
fn limited_at(first: usize) -> String {
    LIMITED
        .replace("$L1", &format!("${first}"))
        .replace("$L2", &format!("${}", first + 1))
}

fn ids(rows: &[tokio_postgres::Row]) -> Result<Vec<i64>> {
    rows.iter()
        .map(|r| r.try_get::<_, i64>(0).map_err(Into::into))
        .collect()
}

/// Deletes the finished tasks among `ids` in one transaction; returns those deleted
/// (ascending).
async fn delete_ids(db: &Db, ids: &[i64]) -> Result<Vec<u64>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let c = db.client().await?;
    let rows = c
        .query(
            &format!("DELETE FROM tasks WHERE id = ANY($1) AND {DELETABLE} RETURNING id"),
            &[&ids],
        )
        .await?;
    let mut gone: Vec<u64> = self::ids(&rows)?.into_iter().map(|id| id as u64).collect();
    gone.sort_unstable();
    Ok(gone)
}

/// See [`TaskStore::prune_trigger`](crate::store::TaskStore::prune_trigger): the newest of
/// the trigger's finished tasks beyond each limit, at most `batch`.
pub(super) fn prune_trigger(
    db: &Db,
    project: &str,
    trigger: &str,
    keep: (Option<u32>, Option<u32>),
    batch: usize,
) -> Result<Vec<u64>> {
    db.block(async {
        let mut out = Vec::new();
        {
            let c = db.client().await?;
            for (states, keep) in [
                ("('succeeded')", keep.0),
                ("('failed', 'cancelled')", keep.1),
            ] {
                let Some(keep) = keep else { continue };
                let left = batch.saturating_sub(out.len());
                if left == 0 {
                    break;
                }
                let rows = c
                    .query(
                        &format!(
                            "SELECT id FROM tasks WHERE project = $1 AND trigger = $2 AND state IN {states}
                             ORDER BY id DESC LIMIT $4 OFFSET $3"
                        ),
                        &[&project, &trigger, &i64::from(keep), &(left as i64)],
                    )
                    .await?;
                out.extend(ids(&rows)?);
            }
        }
        delete_ids(db, &out).await
    })
}

/// See [`TaskStore::delete_finished`](crate::store::TaskStore::delete_finished).
pub(super) fn delete_task(db: &Db, id: u64) -> Result<Deleted> {
    db.block(async {
        let mut c = db.client().await?;
        let tx = c.transaction().await?;
        let Some(row) = tx
            .query_opt(
                "SELECT state FROM tasks WHERE id = $1 FOR UPDATE",
                &[&(id as i64)],
            )
            .await?
        else {
            return Ok(Deleted::NotFound);
        };
        let state: String = row.try_get(0)?;
        let state = TaskState::parse(&state).ok_or_else(|| StoreError::Corrupt {
            what: format!("task {id}"),
            detail: format!("unknown state {state:?}"),
        })?;
        if !state.is_finished() {
            return Ok(Deleted::NotFinished(state));
        }
        let n = tx
            .execute(
                &format!("DELETE FROM tasks WHERE id = $1 AND {DELETABLE}"),
                &[&(id as i64)],
            )
            .await?;
        tx.commit().await?;
        Ok(if n == 1 {
            Deleted::Removed
        } else {
            Deleted::Newest
        })
    })
}

/// See [`TaskStore::over_count`](crate::store::TaskStore::over_count).
pub(super) fn over_count(
    db: &Db,
    keep: u64,
    limited: &HistoryLimited,
) -> Result<Vec<(String, String)>> {
    db.block(async {
        let c = db.client().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT project, workflow FROM tasks WHERE state IN {FINISHED} AND NOT {}
                     GROUP BY project, workflow HAVING COUNT(*) > $1
                     ORDER BY project, workflow",
                    limited_at(2)
                ),
                &[
                    &i64::try_from(keep).unwrap_or(i64::MAX),
                    &limited.succeeded,
                    &limited.failed,
                ],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect()
    })
}

/// See [`TaskStore::prune_workflow`](crate::store::TaskStore::prune_workflow).
pub(super) fn prune_workflow(
    db: &Db,
    project: &str,
    workflow: &str,
    keep: u64,
    limited: &HistoryLimited,
    batch: usize,
) -> Result<Vec<u64>> {
    db.block(async {
        let picked = {
            let c = db.client().await?;
            let rows = c
                .query(
                    &format!(
                        "SELECT id FROM tasks
                         WHERE project = $1 AND workflow = $2 AND state IN {FINISHED} AND NOT {}
                         ORDER BY id DESC LIMIT $4 OFFSET $3",
                        limited_at(5)
                    ),
                    &[
                        &project,
                        &workflow,
                        &i64::try_from(keep).unwrap_or(i64::MAX),
                        &(batch as i64),
                        &limited.succeeded,
                        &limited.failed,
                    ],
                )
                .await?;
            ids(&rows)?
        };
        delete_ids(db, &picked).await
    })
}

/// See [`TaskStore::prune_older`](crate::store::TaskStore::prune_older): the window is the
/// next `batch` ids after `after` created before the cut-off (a task finishes after it is
/// created, so none created after the cut-off finished before it).
pub(super) fn prune_older(db: &Db, scan: &AgeScan<'_>) -> Result<Swept> {
    db.block(async {
        let mut c = db.client().await?;
        let rows = c
            .query(
                "SELECT id, created_at FROM tasks WHERE id > $1 ORDER BY id LIMIT $2",
                &[&(scan.after as i64), &(scan.batch as i64)],
            )
            .await?;
        let (mut last, mut end) = (None, rows.len() < scan.batch);
        for r in &rows {
            let created: DateTime<Utc> = r.try_get(1)?;
            if created >= scan.finished_before {
                end = true;
                break;
            }
            last = Some(r.try_get::<_, i64>(0)?);
        }
        let Some(last) = last else {
            return Ok(Swept {
                removed: Vec::new(),
                next: None,
            });
        };
        let none = HistoryLimited::default();
        let limited = scan.limited.unwrap_or(&none);
        let tx = c.transaction().await?;
        let rows = tx
            .query(
                &format!(
                    "DELETE FROM tasks
                     WHERE id > $1 AND id <= $2 AND {DELETABLE} AND finished_at < $3
                       AND ($4::TEXT IS NULL OR project = $4) AND NOT {}
                     RETURNING id",
                    limited_at(5)
                ),
                &[
                    &(scan.after as i64),
                    &last,
                    &scan.finished_before,
                    &scan.project,
                    &limited.succeeded,
                    &limited.failed,
                ],
            )
            .await?;
        let mut removed: Vec<u64> = ids(&rows)?.into_iter().map(|id| id as u64).collect();
        tx.commit().await?;
        removed.sort_unstable();
        Ok(Swept {
            removed,
            next: (!end).then_some(last as u64),
        })
    })
}

/// See [`TaskStore::existing`](crate::store::TaskStore::existing).
pub(super) fn existing(db: &Db, wanted: &[u64]) -> Result<Vec<u64>> {
    let wanted: Vec<i64> = wanted
        .iter()
        .filter_map(|&id| i64::try_from(id).ok())
        .collect();
    db.block(async {
        let c = db.client().await?;
        let rows = c
            .query(
                "SELECT id FROM tasks WHERE id = ANY($1) ORDER BY id",
                &[&wanted],
            )
            .await?;
        Ok(ids(&rows)?.into_iter().map(|id| id as u64).collect())
    })
}

/// See [`TaskStore::storage`](crate::store::TaskStore::storage).
pub(super) fn storage(db: &Db) -> Result<StorageInfo> {
    db.block(async {
        let c = db.client().await?;
        let row = c
            .query_one(
                &format!(
                    "SELECT pg_database_size(current_database()),
                       (SELECT COUNT(*) FROM tasks),
                       (SELECT COUNT(*) FROM tasks WHERE state IN {FINISHED})"
                ),
                &[],
            )
            .await?;
        let oldest = c
            .query_opt("SELECT id, created_at FROM tasks ORDER BY id LIMIT 1", &[])
            .await?
            .map(|r| Ok::<_, StoreError>((r.try_get::<_, i64>(0)? as u64, r.try_get(1)?)))
            .transpose()?;
        Ok(StorageInfo {
            db_bytes: row.try_get::<_, i64>(0)?.max(0) as u64,
            wal_bytes: 0,
            free_bytes: 0,
            tasks: row.try_get::<_, i64>(1)?.max(0) as u64,
            finished_tasks: row.try_get::<_, i64>(2)?.max(0) as u64,
            oldest,
        })
    })
}
