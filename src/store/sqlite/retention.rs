//! Retention on SQLite: the statements behind the task store's pruning (`historyLimit`, the
//! daemon-wide age and count, `task delete`, `task prune`), the incremental vacuum that returns
//! freed pages to the file system, and the database's size for `daemon status`.
//!
//! Every delete runs in its own short transaction of at most one batch of tasks (their step
//! runs and events go with them, `ON DELETE CASCADE`), and every delete statement itself
//! requires the task to be finished, so a pending or running task is never deleted whatever a
//! caller asks, and the task not to be the newest one, so that no task id is ever given out
//! twice ([`DELETABLE`]). The candidates of a count prune are chosen on the reader (a read never holds
//! the write lock); a stale read sees at most as many finished tasks as there are, so what it
//! picks is beyond the limit in the current state too.
//!
//! Space: a database is switched to `auto_vacuum=INCREMENTAL` when it is opened
//! ([`incremental_vacuum_on`]). SQLite allows that switch only on a database without tables
//! or through a full `VACUUM`, so a database created before this version is rewritten once, at
//! the first start (it needs free disk space about the size of the database, and takes a few
//! seconds per GiB); a failed rewrite is logged and leaves the database as it was (freed pages
//! are then reused but not returned to the file system).

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, params};

use super::{Durability, Pair, connect, immediate, parse_ts, ts};
use crate::api::TaskState;
use crate::domain::retention::HistoryLimited;
use crate::store::{AgeScan, Deleted, Result, StorageInfo, StoreError, Swept};

/// The states of a finished task, as SQL.
const FINISHED: &str = "('succeeded', 'failed', 'cancelled')";

/// What every delete requires besides its own condition: a finished task, and not the newest
/// task. SQLite gives a new row the largest id plus one, so deleting the newest task would give
/// its id to the next one; keeping it means a task id is never reused (a webhook's answer, a
/// run directory and `task show` always name one task).
const DELETABLE: &str =
    "state IN ('succeeded', 'failed', 'cancelled') AND id < (SELECT MAX(id) FROM tasks)";

/// True for a task its trigger's `historyLimit` keeps (`?L1`: the succeeded keys, `?L2`: the
/// failed keys, JSON arrays of `project/trigger`); each `IN` list is built once per statement.
const LIMITED: &str = "(trigger IS NOT NULL AND (
      (state = 'succeeded' AND project || '/' || trigger IN (SELECT value FROM json_each(?L1)))
   OR (state <> 'succeeded' AND project || '/' || trigger IN (SELECT value FROM json_each(?L2)))))";

fn limited_keys(l: &HistoryLimited) -> (String, String) {
    let json = |v: &Vec<String>| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    (json(&l.succeeded), json(&l.failed))
}

/// With `?L1`/`?L2` renumbered to `?{first}`/`?{first + 1}`.
fn limited_at(first: usize) -> String {
    LIMITED
        .replace("?L1", &format!("?{first}"))
        .replace("?L2", &format!("?{}", first + 1))
}

/// Deletes the finished tasks among `ids` in one transaction; returns those deleted.
fn delete_ids(c: &mut Connection, ids: &[i64]) -> Result<Vec<u64>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    let tx = immediate(c)?;
    let mut gone = Vec::with_capacity(ids.len());
    {
        let mut stmt =
            tx.prepare_cached(&format!("DELETE FROM tasks WHERE id = ?1 AND {DELETABLE}"))?;
        for id in ids {
            if stmt.execute(params![id])? == 1 {
                gone.push(id as u64);
            }
        }
    }
    tx.commit()?;
    Ok(gone)
}

/// The ids of a trigger's finished tasks beyond its `historyLimit`, at most `batch`: the
/// newest of them, which a walk down the trigger's index reaches after `keep + batch` entries
/// (choosing the oldest would read every task of the trigger at every batch).
fn trigger_excess(
    c: &Connection,
    project: &str,
    trigger: &str,
    keep_succeeded: Option<u32>,
    keep_failed: Option<u32>,
    batch: usize,
) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    for (states, keep) in [
        ("('succeeded')", keep_succeeded),
        ("('failed', 'cancelled')", keep_failed),
    ] {
        let Some(keep) = keep else { continue };
        let left = batch.saturating_sub(out.len());
        if left == 0 {
            break;
        }
        let mut stmt = c.prepare_cached(&format!(
            "SELECT id FROM tasks WHERE project = ?1 AND trigger = ?2 AND state IN {states}
             ORDER BY id DESC LIMIT ?4 OFFSET ?3"
        ))?;
        let rows = stmt.query_map(params![project, trigger, keep as i64, left as i64], |r| {
            r.get::<_, i64>(0)
        })?;
        for id in rows {
            out.push(id?);
        }
    }
    Ok(out)
}

/// See [`TaskStore::delete_finished`](crate::store::TaskStore::delete_finished).
pub(super) fn delete_task(c: &mut Connection, id: u64) -> Result<Deleted> {
    let tx = immediate(c)?;
    let state: Option<String> = {
        let mut stmt = tx.prepare_cached("SELECT state FROM tasks WHERE id = ?1")?;
        let mut rows = stmt.query(params![id as i64])?;
        match rows.next()? {
            Some(r) => Some(r.get(0)?),
            None => None,
        }
    };
    let Some(state) = state else {
        return Ok(Deleted::NotFound);
    };
    let state = TaskState::parse(&state).ok_or_else(|| StoreError::Corrupt {
        what: format!("task {id}"),
        detail: format!("unknown state {state:?}"),
    })?;
    if !state.is_finished() {
        return Ok(Deleted::NotFinished(state));
    }
    let n = tx
        .prepare_cached(&format!("DELETE FROM tasks WHERE id = ?1 AND {DELETABLE}"))?
        .execute(params![id as i64])?;
    tx.commit()?;
    Ok(if n == 1 {
        Deleted::Removed
    } else {
        Deleted::Newest
    })
}

/// See [`TaskStore::over_count`](crate::store::TaskStore::over_count).
pub(super) fn over_count(
    c: &Connection,
    keep: u64,
    limited: &HistoryLimited,
) -> Result<Vec<(String, String)>> {
    let (l1, l2) = limited_keys(limited);
    let mut stmt = c.prepare_cached(&format!(
        "SELECT project, workflow FROM tasks WHERE state IN {FINISHED} AND NOT {}
         GROUP BY project, workflow HAVING COUNT(*) > ?1",
        limited_at(2)
    ))?;
    let rows = stmt.query_map(params![keep as i64, l1, l2], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The ids of a workflow's finished tasks beyond its newest `keep`, at most `batch` (the newest
/// of them, as for a trigger).
fn workflow_excess(
    c: &Connection,
    project: &str,
    workflow: &str,
    keep: u64,
    limited: &HistoryLimited,
    batch: usize,
) -> Result<Vec<i64>> {
    let (l1, l2) = limited_keys(limited);
    let mut stmt = c.prepare_cached(&format!(
        "SELECT id FROM tasks
         WHERE project = ?1 AND workflow = ?2 AND state IN {FINISHED} AND NOT {}
         ORDER BY id DESC LIMIT ?4 OFFSET ?3",
        limited_at(5)
    ))?;
    let rows = stmt.query_map(
        params![project, workflow, keep as i64, batch as i64, l1, l2],
        |r| r.get::<_, i64>(0),
    )?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// The window of an age sweep: the ids after `after` (at most `batch`) that were created
/// before the cut-off, and whether tasks created after it were reached (or the table's end).
fn age_window(
    c: &Connection,
    after: u64,
    batch: usize,
    cutoff: DateTime<Utc>,
) -> Result<(Option<i64>, bool)> {
    let mut stmt =
        c.prepare_cached("SELECT id, created_at FROM tasks WHERE id > ?1 ORDER BY id LIMIT ?2")?;
    let rows = stmt.query_map(params![after as i64, batch as i64], |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?))
    })?;
    let cutoff = ts(cutoff);
    let (mut last, mut seen) = (None, 0);
    for row in rows {
        let (id, created) = row?;
        seen += 1;
        // A task finishes after it is created: none created after the cut-off can have
        // finished before it.
        if created >= cutoff {
            return Ok((last, true));
        }
        last = Some(id);
    }
    Ok((last, seen < batch))
}

/// See [`TaskStore::prune_older`](crate::store::TaskStore::prune_older): the window is read
/// on the reader, the delete runs on the writer.
pub(super) fn prune_older(pair: &Pair, scan: &AgeScan<'_>) -> Result<Swept> {
    let (last, end) = pair.read(|c| age_window(c, scan.after, scan.batch, scan.finished_before))?;
    let Some(last) = last else {
        return Ok(Swept {
            removed: Vec::new(),
            next: None,
        });
    };
    let none = HistoryLimited::default();
    let (l1, l2) = limited_keys(scan.limited.unwrap_or(&none));
    let cutoff = ts(scan.finished_before);
    let mut removed = pair.write(|c| {
        let tx = immediate(c)?;
        let gone = {
            let mut stmt = tx.prepare_cached(&format!(
                "DELETE FROM tasks
                 WHERE id > ?1 AND id <= ?2 AND {DELETABLE} AND finished_at < ?3
                   AND (?4 IS NULL OR project = ?4) AND NOT {}
                 RETURNING id",
                limited_at(5)
            ))?;
            let rows = stmt.query_map(
                params![scan.after as i64, last, cutoff, scan.project, l1, l2],
                |r| r.get::<_, i64>(0),
            )?;
            rows.map(|r| r.map(|id| id as u64))
                .collect::<rusqlite::Result<Vec<_>>>()?
        };
        tx.commit()?;
        Ok(gone)
    })?;
    removed.sort_unstable();
    Ok(Swept {
        removed,
        next: (!end).then_some(last as u64),
    })
}

/// See [`TaskStore::prune_trigger`](crate::store::TaskStore::prune_trigger).
pub(super) fn prune_trigger(
    pair: &Pair,
    project: &str,
    trigger: &str,
    keep: (Option<u32>, Option<u32>),
    batch: usize,
) -> Result<Vec<u64>> {
    let ids = pair.read(|c| trigger_excess(c, project, trigger, keep.0, keep.1, batch))?;
    pair.write(|c| delete_ids(c, &ids))
}

/// See [`TaskStore::prune_workflow`](crate::store::TaskStore::prune_workflow).
pub(super) fn prune_workflow(
    pair: &Pair,
    project: &str,
    workflow: &str,
    keep: u64,
    limited: &HistoryLimited,
    batch: usize,
) -> Result<Vec<u64>> {
    let ids = pair.read(|c| workflow_excess(c, project, workflow, keep, limited, batch))?;
    pair.write(|c| delete_ids(c, &ids))
}

/// See [`TaskStore::existing`](crate::store::TaskStore::existing).
pub(super) fn existing(c: &Connection, ids: &[u64]) -> Result<Vec<u64>> {
    let json = serde_json::to_string(ids).unwrap_or_else(|_| "[]".into());
    let mut stmt =
        c.prepare_cached("SELECT id FROM tasks WHERE id IN (SELECT value FROM json_each(?1))")?;
    let rows = stmt.query_map(params![json], |r| r.get::<_, i64>(0))?;
    rows.map(|r| r.map(|id| id as u64))
        .collect::<rusqlite::Result<_>>()
        .map_err(Into::into)
}

/// See [`TaskStore::reclaim`](crate::store::TaskStore::reclaim).
pub(super) fn reclaim(c: &mut Connection, max_pages: u32) -> Result<u64> {
    let free = |c: &Connection| c.query_row("PRAGMA freelist_count", [], |r| r.get::<_, i64>(0));
    if free(c)? == 0 || max_pages == 0 {
        return Ok(free(c)? as u64);
    }
    // The pragma frees one page per step (so it is stepped to its end), as its own write
    // transaction.
    let mut stmt = c.prepare(&format!("PRAGMA incremental_vacuum({max_pages})"))?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    drop(rows);
    drop(stmt);
    Ok(free(c)? as u64)
}

/// See [`TaskStore::storage`](crate::store::TaskStore::storage).
pub(super) fn storage(c: &Connection) -> Result<StorageInfo> {
    let pragma = |name: &str| c.query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, i64>(0));
    let page = pragma("page_size")? as u64;
    let free_pages = pragma("freelist_count")? as u64;
    let file: String = c.query_row(
        "SELECT file FROM pragma_database_list WHERE name = 'main'",
        [],
        |r| r.get(0),
    )?;
    let size = |p: &str| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let tasks: i64 = c.query_row("SELECT COUNT(*) FROM tasks", [], |r| r.get(0))?;
    let finished: i64 = c.query_row(
        &format!("SELECT COUNT(*) FROM tasks WHERE state IN {FINISHED}"),
        [],
        |r| r.get(0),
    )?;
    let oldest = {
        let mut stmt = c.prepare_cached("SELECT id, created_at FROM tasks ORDER BY id LIMIT 1")?;
        let mut rows = stmt.query([])?;
        match rows.next()? {
            Some(r) => Some((
                r.get::<_, i64>(0)? as u64,
                parse_ts(&r.get::<_, String>(1)?)?,
            )),
            None => None,
        }
    };
    Ok(StorageInfo {
        db_bytes: size(&file),
        wal_bytes: size(&format!("{file}-wal")),
        free_bytes: free_pages * page,
        tasks: tasks as u64,
        finished_tasks: finished as u64,
        oldest,
    })
}

/// Switches the database to incremental vacuum ([`incremental_vacuum_on`]); a failure (a
/// full disk) is logged and the database stays as it was.
pub(super) fn switch_to_incremental_vacuum(data_dir: &Path) {
    match incremental_vacuum_on(data_dir) {
        Ok(VacuumMode::Incremental) => {}
        Ok(VacuumMode::Switched { bytes }) => {
            tracing::info!(
                bytes,
                "the database now returns freed space to the file system (auto_vacuum=INCREMENTAL)"
            )
        }
        Err(e) => tracing::warn!(
            error = %e,
            "cannot switch the database to incremental vacuum (it needs free disk space about its own size): freed space is reused but not returned to the file system"
        ),
    }
}

/// How [`incremental_vacuum_on`] found the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum VacuumMode {
    /// Already incremental.
    Incremental,
    /// Switched now (a full rewrite of `bytes`, quick for a new database).
    Switched { bytes: u64 },
}

/// Switches the database in `data_dir` to `auto_vacuum=INCREMENTAL`, with the one full
/// `VACUUM` that SQLite needs for it (see the module doc), then truncates the write-ahead log
/// the rewrite filled. Runs before anything else has the database open.
pub(super) fn incremental_vacuum_on(data_dir: &Path) -> Result<VacuumMode> {
    let c = connect(data_dir, Durability::Full)?;
    let mode: i64 = c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0))?;
    if mode == 2 {
        return Ok(VacuumMode::Incremental);
    }
    let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
    let page: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    let bytes = (pages * page) as u64;
    if bytes > 64 << 20 {
        tracing::info!(
            bytes,
            "switching the database to incremental vacuum: a one-time rewrite, this may take a while"
        );
    }
    c.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")?;
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    Ok(VacuumMode::Switched { bytes })
}

#[cfg(test)]
mod tests;
