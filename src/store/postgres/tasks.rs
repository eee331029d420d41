//! The task tables on PostgreSQL: [`Tasks`] implements [`TaskStore`] with SQLite's columns (see
//! `store::sqlite::tasks`) in PostgreSQL's types, decoded by the same code
//! (`store::task_rows`). Every write is one transaction on a pooled connection; the creation of
//! a task with the webhook delivery id it answers is `create.rs`, the pruning `retention.rs`.
//!
//! SQLite's task writes go through one writer connection; here every node writes at once, and
//! each statement is written so that it means the same under concurrency: the replay record is
//! an upsert the unique key arbitrates, and the deletes carry their own conditions.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::Db;
use crate::api::{StepRunInfo, TaskEvent, TaskInfo, TaskQuery, TaskState, WorktreeState};
use crate::domain::retention::HistoryLimited;
use crate::store::task_rows::{
    RUN_COLUMNS, RUN_STREAM_AT, StoredRun, StoredStream, StoredTask, TASK_COLUMNS, clamp,
    run_state, state_message, workflow_spec,
};
use crate::store::{
    AgeScan, Deleted, Interrupted, NewTask, NodeRecord, Output, Queued, Result, RunEnd,
    SeenDelivery, StorageInfo, Swept, TaskRecord, TaskStore,
};

mod create;
mod nodes;
mod retention;
#[cfg(test)]
mod tests;

/// The task tables of one PostgreSQL database.
pub struct Tasks {
    db: Arc<Db>,
}

impl Tasks {
    pub fn new(db: Arc<Db>) -> Tasks {
        Tasks { db }
    }
}

/// A task row ([`TASK_COLUMNS`]).
fn task_from_row(r: &Row) -> Result<StoredTask> {
    Ok(StoredTask {
        id: r.try_get(0)?,
        project: r.try_get(1)?,
        workflow: r.try_get(2)?,
        workspace: r.try_get(3)?,
        state: r.try_get(4)?,
        reason: r.try_get(5)?,
        origin: r.try_get(6)?,
        goal: r.try_get(7)?,
        scheduled_at: r.try_get(8)?,
        cycle: r.try_get(9)?,
        step: r.try_get(10)?,
        created_at: r.try_get(11)?,
        started_at: r.try_get(12)?,
        finished_at: r.try_get(13)?,
        worktree_state: r.try_get(14)?,
        worktree_path: r.try_get(15)?,
        node: r.try_get(16)?,
    })
}

/// The stream-json columns of a step run from column `at` on (`None`: not a stream-json run).
fn stream_of(r: &Row, at: usize) -> Result<Option<StoredStream>> {
    let Some(turns) = r.try_get::<_, Option<i64>>(at)? else {
        return Ok(None);
    };
    Ok(Some(StoredStream {
        turns,
        result: r.try_get(at + 1)?,
        result_truncated: r.try_get(at + 2)?,
        subtype: r.try_get(at + 3)?,
        is_error: r.try_get(at + 4)?,
        input_tokens: r.try_get(at + 5)?,
        output_tokens: r.try_get(at + 6)?,
        cost_usd: r.try_get(at + 7)?,
        session_id: r.try_get(at + 8)?,
        tools: r.try_get(at + 9)?,
        bad_lines: r.try_get(at + 10)?,
    }))
}

/// A step run row ([`RUN_COLUMNS`]).
fn run_from_row(r: &Row) -> Result<StoredRun> {
    Ok(StoredRun {
        id: r.try_get(0)?,
        step: r.try_get(1)?,
        cycle: r.try_get(2)?,
        attempt: r.try_get(3)?,
        agent: r.try_get(4)?,
        argv: r.try_get(5)?,
        pid: r.try_get(6)?,
        state: r.try_get(7)?,
        exit_code: r.try_get(8)?,
        signal: r.try_get(9)?,
        reason: r.try_get(10)?,
        stdout_bytes: r.try_get(11)?,
        stderr_bytes: r.try_get(12)?,
        log_path: r.try_get(13)?,
        started_at: r.try_get(14)?,
        finished_at: r.try_get(15)?,
        stream: stream_of(r, RUN_STREAM_AT)?,
    })
}

/// Text as PostgreSQL's `TEXT` can hold it: a NUL character (which an agent's output may
/// carry, and SQLite keeps) reads as U+FFFD.
pub(super) fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

fn opt_text(s: Option<&str>) -> Option<std::borrow::Cow<'_, str>> {
    s.map(text)
}

impl TaskStore for Tasks {
    fn create_with(
        &self,
        t: &NewTask,
        delivery: Option<&SeenDelivery>,
        now: DateTime<Utc>,
    ) -> Result<TaskInfo> {
        create::create_with(&self.db, t, delivery, now)
    }

    fn set_state(
        &self,
        id: u64,
        state: TaskState,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let reason = opt_text(reason);
        let message = state_message(state, reason.as_deref());
        self.db.block(async {
            let mut c = self.db.client().await?;
            let tx = c.transaction().await?;
            tx.execute(
                "UPDATE tasks SET state = $2, reason = $3,
                   started_at = CASE WHEN $2 = 'running' AND started_at IS NULL THEN $4 ELSE started_at END,
                   finished_at = CASE WHEN $2 IN ('succeeded', 'failed', 'cancelled') THEN $4 ELSE finished_at END
                 WHERE id = $1",
                &[&(id as i64), &state.as_str(), &reason, &now],
            )
            .await?;
            tx.execute(
                "INSERT INTO task_events (task_id, at, message) VALUES ($1, $2, $3)",
                &[&(id as i64), &now, &message],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn start_run(
        &self,
        task: u64,
        step: &str,
        cycle: u32,
        attempt: u32,
        agent: Option<&str>,
        argv: &[String],
        log_path: &str,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let argv = serde_json::to_string(argv).unwrap_or_else(|_| "[]".into());
        let argv = text(&argv);
        self.db.block(async {
            let mut c = self.db.client().await?;
            let tx = c.transaction().await?;
            let row = tx
                .query_one(
                    "INSERT INTO step_runs (task_id, step, cycle, attempt, agent, argv, state, log_path, started_at)
                     VALUES ($1, $2, $3, $4, $5, $6, 'running', $7, $8) RETURNING id",
                    &[
                        &(task as i64),
                        &step,
                        &i64::from(cycle),
                        &i64::from(attempt),
                        &agent,
                        &argv,
                        &text(log_path),
                        &now,
                    ],
                )
                .await?;
            let id: i64 = row.try_get(0)?;
            tx.execute(
                "UPDATE tasks SET cycle = $2, step = $3 WHERE id = $1",
                &[&(task as i64), &i64::from(cycle), &step],
            )
            .await?;
            tx.commit().await?;
            Ok(id as u64)
        })
    }

    fn set_run_pid(&self, run: u64, pid: i32, pid_start: Option<u64>) -> Result<()> {
        self.db.block(async {
            let c = self.db.client().await?;
            c.execute(
                "UPDATE step_runs SET pid = $2, pid_start = $3 WHERE id = $1",
                &[&(run as i64), &i64::from(pid), &pid_start.map(clamp)],
            )
            .await?;
            Ok(())
        })
    }

    fn finish_run(&self, run: u64, end: &RunEnd, now: DateTime<Utc>) -> Result<()> {
        let stdout = text(&end.stdout);
        let reason = opt_text(end.reason.as_deref());
        self.db.block(async {
            let mut c = self.db.client().await?;
            let tx = c.transaction().await?;
            tx.execute(
                "UPDATE step_runs SET state = $2, exit_code = $3, signal = $4, reason = $5, stdout = $6,
                   stdout_bytes = $7, stderr_bytes = $8, finished_at = $9 WHERE id = $1",
                &[
                    &(run as i64),
                    &end.state.as_str(),
                    &end.exit_code.map(i64::from),
                    &end.signal.map(i64::from),
                    &reason,
                    &stdout,
                    &clamp(end.stdout_bytes),
                    &clamp(end.stderr_bytes),
                    &now,
                ],
            )
            .await?;
            if let Some(s) = &end.stream {
                let tools = serde_json::to_string(&s.tools).unwrap_or_else(|_| "[]".into());
                tx.execute(
                    "UPDATE step_runs SET turns = $2, result = $3, result_truncated = $4,
                       result_subtype = $5, is_error = $6, input_tokens = $7, output_tokens = $8,
                       cost_usd = $9, session_id = $10, tools = $11, bad_lines = $12 WHERE id = $1",
                    &[
                        &(run as i64),
                        &i64::from(s.turns),
                        &opt_text(s.result.as_deref()),
                        &s.result_truncated,
                        &opt_text(s.subtype.as_deref()),
                        &s.is_error,
                        &s.input_tokens.map(clamp),
                        &s.output_tokens.map(clamp),
                        &s.cost_usd,
                        &opt_text(s.session_id.as_deref()),
                        &text(&tools),
                        &clamp(s.bad_lines),
                    ],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn set_worktree(&self, task: u64, state: WorktreeState, path: Option<&str>) -> Result<()> {
        self.db.block(async {
            let c = self.db.client().await?;
            c.execute(
                "UPDATE tasks SET worktree_state = $2, worktree_path = COALESCE($3, worktree_path)
                 WHERE id = $1",
                &[&(task as i64), &state.as_str(), &opt_text(path)],
            )
            .await?;
            Ok(())
        })
    }

    fn event(&self, task: u64, message: &str, now: DateTime<Utc>) -> Result<()> {
        self.db.block(async {
            let c = self.db.client().await?;
            c.execute(
                "INSERT INTO task_events (task_id, at, message) VALUES ($1, $2, $3)",
                &[&(task as i64), &now, &text(message)],
            )
            .await?;
            Ok(())
        })
    }

    fn record(&self, id: u64) -> Result<Option<TaskRecord>> {
        self.db.block(async {
            let c = self.db.client().await?;
            let Some(r) = c
                .query_opt(
                    &format!(
                        "SELECT {TASK_COLUMNS}, workspace_root, workflow_spec, payload FROM tasks WHERE id = $1"
                    ),
                    &[&(id as i64)],
                )
                .await?
            else {
                return Ok(None);
            };
            let spec: String = r.try_get(18)?;
            Ok(Some(TaskRecord {
                info: task_from_row(&r)?.decode()?,
                workspace_root: r.try_get(17)?,
                workflow_spec: workflow_spec(id, &spec)?,
                payload: r.try_get(19)?,
            }))
        })
    }

    fn outputs(&self, task: u64) -> Result<Vec<Output>> {
        self.db.block(async {
            let c = self.db.client().await?;
            let rows = c
                .query(
                    "SELECT step, cycle, attempt, state,
                       COALESCE(CASE WHEN turns IS NOT NULL THEN result END, stdout, '') FROM step_runs
                     WHERE task_id = $1 AND state != 'running' ORDER BY id",
                    &[&(task as i64)],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(Output {
                        step: r.try_get(0)?,
                        cycle: r.try_get::<_, i64>(1)? as u32,
                        attempt: r.try_get::<_, i64>(2)? as u32,
                        state: run_state(r.try_get(3)?),
                        stdout: r.try_get(4)?,
                    })
                })
                .collect()
        })
    }

    fn interrupt_runs(&self, task: u64, reason: &str, now: DateTime<Utc>) -> Result<usize> {
        self.db.block(async {
            let c = self.db.client().await?;
            let n = c
                .execute(
                    "UPDATE step_runs SET state = 'interrupted', reason = $2, finished_at = $3
                     WHERE task_id = $1 AND state = 'running'",
                    &[&(task as i64), &text(reason), &now],
                )
                .await?;
            Ok(n as usize)
        })
    }

    fn running_runs(&self, node: &str) -> Result<Vec<Interrupted>> {
        nodes::running_runs(&self.db, node)
    }

    fn reaped(&self, runs: &[u64]) -> Result<()> {
        nodes::reaped(&self.db, runs)
    }

    fn claim(&self, id: u64, node: &str, now: DateTime<Utc>) -> Result<bool> {
        nodes::claim(&self.db, id, node, now)
    }

    fn fail_node(&self, dead: &NodeRecord, reason: &str, now: DateTime<Utc>) -> Result<Vec<u64>> {
        nodes::fail_node(&self.db, dead, reason, now)
    }

    fn ids_in_state(&self, state: TaskState) -> Result<Vec<Queued>> {
        self.db.block(async {
            let c = self.db.client().await?;
            let rows = c
                .query(
                    "SELECT id, project, workflow, held, trigger, node FROM tasks WHERE state = $1 ORDER BY id",
                    &[&state.as_str()],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(Queued {
                        id: r.try_get::<_, i64>(0)? as u64,
                        project: r.try_get(1)?,
                        workflow: r.try_get(2)?,
                        held: r.try_get(3)?,
                        trigger: r.try_get(4)?,
                        node: r.try_get(5)?,
                    })
                })
                .collect()
        })
    }

    fn release(&self, id: u64, now: DateTime<Utc>) -> Result<()> {
        self.db.block(async {
            let mut c = self.db.client().await?;
            let tx = c.transaction().await?;
            tx.execute(
                "UPDATE tasks SET held = FALSE WHERE id = $1",
                &[&(id as i64)],
            )
            .await?;
            tx.execute(
                "INSERT INTO task_events (task_id, at, message) VALUES ($1, $2, $3)",
                &[&(id as i64), &now, &"started by request"],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn prune_trigger(
        &self,
        project: &str,
        trigger: &str,
        keep_succeeded: Option<u32>,
        keep_failed: Option<u32>,
        batch: usize,
    ) -> Result<Vec<u64>> {
        retention::prune_trigger(
            &self.db,
            project,
            trigger,
            (keep_succeeded, keep_failed),
            batch,
        )
    }

    fn delete_finished(&self, id: u64) -> Result<Deleted> {
        retention::delete_task(&self.db, id)
    }

    fn over_count(&self, keep: u64, limited: &HistoryLimited) -> Result<Vec<(String, String)>> {
        retention::over_count(&self.db, keep, limited)
    }

    fn prune_workflow(
        &self,
        project: &str,
        workflow: &str,
        keep: u64,
        limited: &HistoryLimited,
        batch: usize,
    ) -> Result<Vec<u64>> {
        retention::prune_workflow(&self.db, project, workflow, keep, limited, batch)
    }

    fn prune_older(&self, scan: &AgeScan<'_>) -> Result<Swept> {
        retention::prune_older(&self.db, scan)
    }

    fn existing(&self, ids: &[u64]) -> Result<Vec<u64>> {
        retention::existing(&self.db, ids)
    }

    fn reclaim(&self, _max_pages: u32) -> Result<u64> {
        // The server's autovacuum makes deleted rows' space reusable; no page of the database is
        // this node's to return, so none is left for it to reclaim.
        Ok(0)
    }

    fn storage(&self) -> Result<StorageInfo> {
        retention::storage(&self.db)
    }

    fn get(&self, id: u64) -> Result<Option<TaskInfo>> {
        self.db.block(async {
            let c = self.db.client().await?;
            let row = c
                .query_opt(
                    &format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = $1"),
                    &[&(id as i64)],
                )
                .await?;
            row.map(|r| task_from_row(&r)?.decode()).transpose()
        })
    }

    fn list(&self, q: &TaskQuery, project: Option<&str>) -> Result<Vec<TaskInfo>> {
        let limit = q.limit.unwrap_or(100).min(10_000) as i64;
        self.db.block(async {
            let c = self.db.client().await?;
            let rows = c
                .query(
                    &format!(
                        "SELECT {TASK_COLUMNS} FROM tasks
                         WHERE ($1::TEXT IS NULL OR project = $1) AND ($2::TEXT IS NULL OR state = $2)
                           AND ($3::TEXT IS NULL OR workflow = $3) AND ($4::TEXT IS NULL OR trigger = $4)
                         ORDER BY id DESC LIMIT $5"
                    ),
                    &[&project, &q.state, &q.workflow, &q.trigger, &limit],
                )
                .await?;
            rows.iter().map(|r| task_from_row(r)?.decode()).collect()
        })
    }

    fn payload(&self, id: u64) -> Result<Option<String>> {
        self.db.block(async {
            let c = self.db.client().await?;
            let row = c
                .query_opt("SELECT payload FROM tasks WHERE id = $1", &[&(id as i64)])
                .await?;
            Ok(match row {
                Some(r) => r.try_get(0)?,
                None => None,
            })
        })
    }

    fn runs(&self, task: u64) -> Result<Vec<StepRunInfo>> {
        self.db.block(async {
            let c = self.db.client().await?;
            let rows = c
                .query(
                    &format!("SELECT {RUN_COLUMNS} FROM step_runs WHERE task_id = $1 ORDER BY id"),
                    &[&(task as i64)],
                )
                .await?;
            rows.iter().map(|r| Ok(run_from_row(r)?.decode())).collect()
        })
    }

    fn events(&self, task: u64) -> Result<Vec<TaskEvent>> {
        self.db.block(async {
            let c = self.db.client().await?;
            let rows = c
                .query(
                    "SELECT at, message FROM task_events WHERE task_id = $1 ORDER BY id",
                    &[&(task as i64)],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(TaskEvent {
                        at: r.try_get(0)?,
                        message: r.try_get(1)?,
                    })
                })
                .collect()
        })
    }
}
