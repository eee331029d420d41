//! The task tables on SQLite (migration 2; 9 added what stream-json runs report and the tasks'
//! worktrees): [`Tasks`] implements [`TaskStore`] on a
//! connection `Pair`: the task actors write through the writer (`synchronous=NORMAL`), the
//! control API reads through the reader. New tasks are the exception: they are written by the
//! group commit (`commit.rs`) on the same writer connection, durably (`synchronous=FULL`).

use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};

use super::commit::GroupCommit;
use super::{Pair, immediate, parse_ts, retention, task_nodes as nodes, ts};
use crate::api::{StepRunInfo, TaskEvent, TaskInfo, TaskQuery, TaskState, WorktreeState};
use crate::domain::retention::HistoryLimited;
use crate::store::task_rows::{
    RUN_COLUMNS, RUN_STREAM_AT, StoredRun, StoredStream, StoredTask, TASK_COLUMNS, clamp,
    created_info, run_state, state_message, workflow_spec,
};
use crate::store::{
    AgeScan, Deleted, Interrupted, NewTask, NodeRecord, Output, Queued, Result, RunEnd,
    SeenDelivery, StorageInfo, Swept, TaskRecord, TaskStore,
};

/// The task tables of one SQLite database.
pub struct Tasks {
    pair: Arc<Pair>,
    commits: GroupCommit,
}

/// A task row, its times parsed.
fn task_from_row(r: &Row<'_>) -> rusqlite::Result<Result<StoredTask>> {
    let times = (
        r.get::<_, Option<String>>(8)?,
        r.get::<_, String>(11)?,
        r.get::<_, Option<String>>(12)?,
        r.get::<_, Option<String>>(13)?,
    );
    let (id, project, workflow, workspace, state) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
    let (reason, origin, goal, cycle, step) =
        (r.get(5)?, r.get(6)?, r.get(7)?, r.get(9)?, r.get(10)?);
    let (worktree_state, worktree_path, node) = (r.get(14)?, r.get(15)?, r.get(16)?);
    Ok((|| {
        Ok(StoredTask {
            id,
            project,
            workflow,
            workspace,
            state,
            reason,
            origin,
            goal,
            scheduled_at: times.0.as_deref().map(parse_ts).transpose()?,
            cycle,
            step,
            created_at: parse_ts(&times.1)?,
            started_at: times.2.as_deref().map(parse_ts).transpose()?,
            finished_at: times.3.as_deref().map(parse_ts).transpose()?,
            worktree_state,
            worktree_path,
            node,
        })
    })())
}

/// The stream-json columns of a step run, from column `at` on (`turns` first): `None` for a
/// run of a plain agent or command.
fn stream_of(r: &Row<'_>, at: usize) -> rusqlite::Result<Option<StoredStream>> {
    let Some(turns) = r.get::<_, Option<i64>>(at)? else {
        return Ok(None);
    };
    Ok(Some(StoredStream {
        turns,
        result: r.get(at + 1)?,
        result_truncated: r.get(at + 2)?,
        subtype: r.get(at + 3)?,
        is_error: r.get(at + 4)?,
        input_tokens: r.get(at + 5)?,
        output_tokens: r.get(at + 6)?,
        cost_usd: r.get(at + 7)?,
        session_id: r.get(at + 8)?,
        tools: r.get(at + 9)?,
        bad_lines: r.get(at + 10)?,
    }))
}

/// A step run row ([`RUN_COLUMNS`]), its times parsed.
fn run_from_row(r: &Row<'_>) -> rusqlite::Result<Result<StoredRun>> {
    let started: String = r.get(14)?;
    let finished: Option<String> = r.get(15)?;
    let run = StoredRun {
        id: r.get(0)?,
        step: r.get(1)?,
        cycle: r.get(2)?,
        attempt: r.get(3)?,
        agent: r.get(4)?,
        argv: r.get(5)?,
        pid: r.get(6)?,
        state: r.get(7)?,
        exit_code: r.get(8)?,
        signal: r.get(9)?,
        reason: r.get(10)?,
        stdout_bytes: r.get(11)?,
        stderr_bytes: r.get(12)?,
        log_path: r.get(13)?,
        started_at: DateTime::UNIX_EPOCH,
        finished_at: None,
        stream: stream_of(r, RUN_STREAM_AT)?,
    };
    Ok((|| {
        Ok(StoredRun {
            started_at: parse_ts(&started)?,
            finished_at: finished.as_deref().map(parse_ts).transpose()?,
            ..run
        })
    })())
}

impl Tasks {
    /// Opens the task tables of the database in `data_dir` (migrations already ran).
    pub fn open(data_dir: &Path) -> Result<Tasks> {
        let pair = Arc::new(Pair::open(data_dir)?);
        Ok(Tasks {
            commits: GroupCommit::start(pair.clone())?,
            pair,
        })
    }
}

impl TaskStore for Tasks {
    fn commit_seconds(&self) -> Option<prometheus_client::metrics::histogram::Histogram> {
        Some(self.commits.counts.seconds.clone())
    }

    fn create_with(
        &self,
        t: &NewTask,
        delivery: Option<&SeenDelivery>,
        now: DateTime<Utc>,
    ) -> Result<TaskInfo> {
        let id = self.commits.create(t, delivery, now)?;
        Ok(created_info(t, id, now))
    }

    fn set_state(
        &self,
        id: u64,
        state: TaskState,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.pair.write(|c| {
            let tx = immediate(c)?;
            tx.prepare_cached(
                "UPDATE tasks SET state = ?2, reason = ?3,
                   started_at = CASE WHEN ?2 = 'running' AND started_at IS NULL THEN ?4 ELSE started_at END,
                   finished_at = CASE WHEN ?2 IN ('succeeded', 'failed', 'cancelled') THEN ?4 ELSE finished_at END
                 WHERE id = ?1",
            )?
            .execute(params![id as i64, state.as_str(), reason, ts(now)])?;
            let message = state_message(state, reason);
            tx.prepare_cached("INSERT INTO task_events (task_id, at, message) VALUES (?1, ?2, ?3)")?
                .execute(params![id as i64, ts(now), message])?;
            tx.commit()?;
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
        self.pair.write(|c| {
            let tx = immediate(c)?;
            tx.prepare_cached(
                "INSERT INTO step_runs (task_id, step, cycle, attempt, agent, argv, state, log_path, started_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'running', ?7, ?8)",
            )?
            .execute(params![task as i64, step, cycle, attempt, agent, argv, log_path, ts(now)])?;
            let id = tx.last_insert_rowid() as u64;
            tx.prepare_cached("UPDATE tasks SET cycle = ?2, step = ?3 WHERE id = ?1")?
                .execute(params![task as i64, cycle, step])?;
            tx.commit()?;
            Ok(id)
        })
    }

    fn set_run_pid(&self, run: u64, pid: i32, pid_start: Option<u64>) -> Result<()> {
        self.pair.write(|c| {
            c.prepare_cached("UPDATE step_runs SET pid = ?2, pid_start = ?3 WHERE id = ?1")?
                .execute(params![run as i64, pid, pid_start.map(|s| s as i64)])?;
            Ok(())
        })
    }

    fn finish_run(&self, run: u64, end: &RunEnd, now: DateTime<Utc>) -> Result<()> {
        self.pair.write(|c| {
            let tx = immediate(c)?;
            tx.prepare_cached(
                "UPDATE step_runs SET state = ?2, exit_code = ?3, signal = ?4, reason = ?5, stdout = ?6,
                   stdout_bytes = ?7, stderr_bytes = ?8, finished_at = ?9 WHERE id = ?1",
            )?
            .execute(params![
                run as i64,
                end.state.as_str(),
                end.exit_code,
                end.signal,
                end.reason,
                end.stdout,
                end.stdout_bytes as i64,
                end.stderr_bytes as i64,
                ts(now)
            ])?;
            if let Some(s) = &end.stream {
                let tools = serde_json::to_string(&s.tools).unwrap_or_else(|_| "[]".into());
                tx.prepare_cached(
                    "UPDATE step_runs SET turns = ?2, result = ?3, result_truncated = ?4,
                       result_subtype = ?5, is_error = ?6, input_tokens = ?7, output_tokens = ?8,
                       cost_usd = ?9, session_id = ?10, tools = ?11, bad_lines = ?12 WHERE id = ?1",
                )?
                .execute(params![
                    run as i64,
                    s.turns,
                    s.result,
                    s.result_truncated,
                    s.subtype,
                    s.is_error,
                    s.input_tokens.map(clamp),
                    s.output_tokens.map(clamp),
                    s.cost_usd,
                    s.session_id,
                    tools,
                    clamp(s.bad_lines),
                ])?;
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn set_worktree(&self, task: u64, state: WorktreeState, path: Option<&str>) -> Result<()> {
        self.pair.write(|c| {
            c.prepare_cached(
                "UPDATE tasks SET worktree_state = ?2, worktree_path = COALESCE(?3, worktree_path)
                 WHERE id = ?1",
            )?
            .execute(params![task as i64, state.as_str(), path])?;
            Ok(())
        })
    }

    fn event(&self, task: u64, message: &str, now: DateTime<Utc>) -> Result<()> {
        self.pair.write(|c| {
            c.prepare_cached("INSERT INTO task_events (task_id, at, message) VALUES (?1, ?2, ?3)")?
                .execute(params![task as i64, ts(now), message])?;
            Ok(())
        })
    }

    fn record(&self, id: u64) -> Result<Option<TaskRecord>> {
        self.pair.write(|c| {
            let row = c
                .prepare_cached(&format!(
                    "SELECT {TASK_COLUMNS}, workspace_root, workflow_spec, payload FROM tasks WHERE id = ?1"
                ))?
                .query_row(params![id as i64], |r| {
                    Ok((task_from_row(r)?, r.get::<_, String>(17)?, r.get::<_, String>(18)?, r.get::<_, Option<String>>(19)?))
                })
                .optional()?;
            let Some((t, root, spec, payload)) = row else {
                return Ok(None);
            };
            Ok(Some(TaskRecord {
                info: t?.decode()?,
                workspace_root: root,
                workflow_spec: workflow_spec(id, &spec)?,
                payload,
            }))
        })
    }

    fn outputs(&self, task: u64) -> Result<Vec<Output>> {
        self.pair.write(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT step, cycle, attempt, state,
                   COALESCE(CASE WHEN turns IS NOT NULL THEN result END, stdout, '') FROM step_runs
                 WHERE task_id = ?1 AND state != 'running' ORDER BY id",
            )?;
            let rows = stmt.query_map(params![task as i64], |r| {
                Ok(Output {
                    step: r.get(0)?,
                    cycle: r.get::<_, i64>(1)? as u32,
                    attempt: r.get::<_, i64>(2)? as u32,
                    state: run_state(&r.get::<_, String>(3)?),
                    stdout: r.get(4)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn interrupt_runs(&self, task: u64, reason: &str, now: DateTime<Utc>) -> Result<usize> {
        self.pair.write(|c| {
            Ok(c.prepare_cached(
                "UPDATE step_runs SET state = 'interrupted', reason = ?2, finished_at = ?3
                 WHERE task_id = ?1 AND state = 'running'",
            )?
            .execute(params![task as i64, reason, ts(now)])?)
        })
    }

    fn running_runs(&self, node: &str) -> Result<Vec<Interrupted>> {
        self.pair.write(|c| nodes::running_runs(c, node))
    }

    fn reaped(&self, runs: &[u64]) -> Result<()> {
        self.pair.write(|c| nodes::reaped(c, runs))
    }

    fn claim(&self, id: u64, node: &str, now: DateTime<Utc>) -> Result<bool> {
        self.pair.write(|c| nodes::claim(c, id, node, now))
    }

    fn fail_node(&self, dead: &NodeRecord, reason: &str, now: DateTime<Utc>) -> Result<Vec<u64>> {
        self.pair.write(|c| nodes::fail_node(c, dead, reason, now))
    }

    fn ids_in_state(&self, state: TaskState) -> Result<Vec<Queued>> {
        self.pair.write(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, project, workflow, held, trigger, node FROM tasks WHERE state = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![state.as_str()], |r| {
                Ok(Queued {
                    id: r.get::<_, i64>(0)? as u64,
                    project: r.get(1)?,
                    workflow: r.get(2)?,
                    held: r.get(3)?,
                    trigger: r.get(4)?,
                    node: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn release(&self, id: u64, now: DateTime<Utc>) -> Result<()> {
        self.pair.write(|c| {
            let tx = immediate(c)?;
            tx.prepare_cached("UPDATE tasks SET held = 0 WHERE id = ?1")?
                .execute(params![id as i64])?;
            tx.prepare_cached(
                "INSERT INTO task_events (task_id, at, message) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![id as i64, ts(now), "started by request"])?;
            tx.commit()?;
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
            &self.pair,
            project,
            trigger,
            (keep_succeeded, keep_failed),
            batch,
        )
    }

    fn delete_finished(&self, id: u64) -> Result<Deleted> {
        self.pair.write(|c| retention::delete_task(c, id))
    }

    fn over_count(&self, keep: u64, limited: &HistoryLimited) -> Result<Vec<(String, String)>> {
        self.pair.read(|c| retention::over_count(c, keep, limited))
    }

    fn prune_workflow(
        &self,
        project: &str,
        workflow: &str,
        keep: u64,
        limited: &HistoryLimited,
        batch: usize,
    ) -> Result<Vec<u64>> {
        retention::prune_workflow(&self.pair, project, workflow, keep, limited, batch)
    }

    fn prune_older(&self, scan: &AgeScan<'_>) -> Result<Swept> {
        retention::prune_older(&self.pair, scan)
    }

    fn existing(&self, ids: &[u64]) -> Result<Vec<u64>> {
        self.pair.read(|c| retention::existing(c, ids))
    }

    fn reclaim(&self, max_pages: u32) -> Result<u64> {
        self.pair.write(|c| retention::reclaim(c, max_pages))
    }

    fn storage(&self) -> Result<StorageInfo> {
        self.pair.read(retention::storage)
    }

    fn get(&self, id: u64) -> Result<Option<TaskInfo>> {
        self.pair.read(|c| {
            let row = c
                .prepare_cached(&format!("SELECT {TASK_COLUMNS} FROM tasks WHERE id = ?1"))?
                .query_row(params![id as i64], task_from_row)
                .optional()?;
            row.map(|t| t?.decode()).transpose()
        })
    }

    fn list(&self, q: &TaskQuery, project: Option<&str>) -> Result<Vec<TaskInfo>> {
        let limit = q.limit.unwrap_or(100).min(10_000) as i64;
        self.pair.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {TASK_COLUMNS} FROM tasks
                 WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR state = ?2)
                   AND (?3 IS NULL OR workflow = ?3) AND (?4 IS NULL OR trigger = ?4)
                 ORDER BY id DESC LIMIT ?5"
            ))?;
            let rows = stmt.query_map(
                params![project, q.state, q.workflow, q.trigger, limit],
                task_from_row,
            )?;
            rows.map(|r| r??.decode()).collect()
        })
    }

    fn payload(&self, id: u64) -> Result<Option<String>> {
        self.pair.read(|c| {
            Ok(c.prepare_cached("SELECT payload FROM tasks WHERE id = ?1")?
                .query_row(params![id as i64], |r| r.get::<_, Option<String>>(0))
                .optional()?
                .flatten())
        })
    }

    fn runs(&self, task: u64) -> Result<Vec<StepRunInfo>> {
        self.pair.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {RUN_COLUMNS} FROM step_runs WHERE task_id = ?1 ORDER BY id"
            ))?;
            let rows = stmt.query_map(params![task as i64], run_from_row)?;
            rows.map(|r| Ok(r??.decode())).collect()
        })
    }

    fn events(&self, task: u64) -> Result<Vec<TaskEvent>> {
        self.pair.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT at, message FROM task_events WHERE task_id = ?1 ORDER BY id",
            )?;
            let rows = stmt.query_map(params![task as i64], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (at, message) = row?;
                out.push(TaskEvent {
                    at: parse_ts(&at)?,
                    message,
                });
            }
            Ok(out)
        })
    }
}
