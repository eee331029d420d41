//! What every backend stores of a task, in the backend-neutral form its rows hold: a task row,
//! a step run row and a step run's stream-json columns, each with its times already read in the
//! backend's own type. Each backend reads these with its own SQL; the decoding — which state
//! names are known, what an unknown one reads as, the JSON columns — is the same for all.

use chrono::{DateTime, Utc};

use super::{Result, StoreError};
use crate::api::{
    RunState, StepRunInfo, StreamSummary, TaskInfo, TaskState, ToolCount, WorktreeInfo,
    WorktreeState,
};

/// The task columns both backends select for a [`TaskInfo`], in this order.
pub(crate) const TASK_COLUMNS: &str = "id, project, workflow, workspace, state, reason, origin, goal, scheduled_at, cycle, step, created_at, started_at, finished_at, worktree_state, worktree_path, node";

/// The step run columns both backends select for a [`StepRunInfo`], in this order; the
/// stream-json columns start at [`RUN_STREAM_AT`].
pub(crate) const RUN_COLUMNS: &str =
    "id, step, cycle, attempt, agent, argv, pid, state, exit_code, signal, reason,
   stdout_bytes, stderr_bytes, log_path, started_at, finished_at,
   turns, result, result_truncated, result_subtype, is_error, input_tokens,
   output_tokens, cost_usd, session_id, tools, bad_lines";

/// Where the stream-json columns start in [`RUN_COLUMNS`].
pub(crate) const RUN_STREAM_AT: usize = 16;

/// One row of the tasks table ([`TASK_COLUMNS`]).
pub(crate) struct StoredTask {
    pub id: i64,
    pub project: String,
    pub workflow: String,
    pub workspace: String,
    pub state: String,
    pub reason: Option<String>,
    pub origin: String,
    pub goal: Option<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub cycle: i64,
    pub step: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub worktree_state: Option<String>,
    pub worktree_path: Option<String>,
    pub node: Option<String>,
}

impl StoredTask {
    /// The task this row holds; an unknown state is corrupt.
    pub fn decode(self) -> Result<TaskInfo> {
        let state = TaskState::parse(&self.state).ok_or_else(|| StoreError::Corrupt {
            what: format!("task {}", self.id),
            detail: format!("unknown state {:?}", self.state),
        })?;
        Ok(TaskInfo {
            id: self.id as u64,
            project: self.project,
            workflow: self.workflow,
            workspace: self.workspace,
            state,
            reason: self.reason,
            origin: self.origin,
            goal: self.goal,
            scheduled_at: self.scheduled_at,
            cycle: u32::try_from(self.cycle.max(0)).unwrap_or(u32::MAX),
            step: self.step,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            worktree: worktree_of(self.worktree_state, self.worktree_path),
            node: self.node,
        })
    }
}

/// A task's worktree columns; an unknown state reads as `requested` (nothing known to exist).
fn worktree_of(state: Option<String>, path: Option<String>) -> Option<WorktreeInfo> {
    let state = state?;
    Some(WorktreeInfo {
        state: WorktreeState::parse(&state).unwrap_or(WorktreeState::Requested),
        path,
    })
}

/// A task's workflow spec column (JSON text, fixed at creation).
pub(crate) fn workflow_spec(task: u64, text: &str) -> Result<serde_json::Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt {
        what: format!("workflow spec of task {task}"),
        detail: e.to_string(),
    })
}

/// A step run's state column; an unknown state reads as `error`.
pub(crate) fn run_state(s: &str) -> RunState {
    RunState::parse(s).unwrap_or(RunState::Error)
}

/// One row of the step runs table ([`RUN_COLUMNS`]).
pub(crate) struct StoredRun {
    pub id: i64,
    pub step: String,
    pub cycle: i64,
    pub attempt: i64,
    pub agent: Option<String>,
    /// JSON array text.
    pub argv: String,
    pub pid: Option<i64>,
    pub state: String,
    pub exit_code: Option<i64>,
    pub signal: Option<i64>,
    pub reason: Option<String>,
    pub stdout_bytes: i64,
    pub stderr_bytes: i64,
    pub log_path: String,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub stream: Option<StoredStream>,
}

impl StoredRun {
    pub fn decode(self) -> StepRunInfo {
        let small = |n: i64| i32::try_from(n).ok();
        StepRunInfo {
            id: self.id as u64,
            step: self.step,
            cycle: u32::try_from(self.cycle.max(0)).unwrap_or(u32::MAX),
            attempt: u32::try_from(self.attempt.max(0)).unwrap_or(u32::MAX),
            agent: self.agent,
            argv: serde_json::from_str(&self.argv).unwrap_or_default(),
            pid: self.pid.and_then(small),
            state: run_state(&self.state),
            exit_code: self.exit_code.and_then(small),
            signal: self.signal.and_then(small),
            reason: self.reason,
            stdout_bytes: self.stdout_bytes.max(0) as u64,
            stderr_bytes: self.stderr_bytes.max(0) as u64,
            log_path: self.log_path,
            started_at: self.started_at,
            finished_at: self.finished_at,
            stream_json: self.stream.map(StoredStream::decode),
        }
    }
}

/// The stream-json columns of a step run (present when `turns` is not null).
pub(crate) struct StoredStream {
    pub turns: i64,
    pub result: Option<String>,
    pub result_truncated: bool,
    pub subtype: Option<String>,
    pub is_error: Option<bool>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost_usd: Option<f64>,
    pub session_id: Option<String>,
    /// JSON array text of [`ToolCount`]s.
    pub tools: Option<String>,
    pub bad_lines: Option<i64>,
}

impl StoredStream {
    pub fn decode(self) -> StreamSummary {
        let count = |n: Option<i64>| n.map(|n| n.max(0) as u64);
        StreamSummary {
            turns: u32::try_from(self.turns.max(0)).unwrap_or(u32::MAX),
            result: self.result,
            result_truncated: self.result_truncated,
            subtype: self.subtype,
            is_error: self.is_error,
            input_tokens: count(self.input_tokens),
            output_tokens: count(self.output_tokens),
            cost_usd: self.cost_usd,
            session_id: self.session_id,
            tools: self
                .tools
                .and_then(|t| serde_json::from_str::<Vec<ToolCount>>(&t).ok())
                .unwrap_or_default(),
            bad_lines: count(self.bad_lines).unwrap_or(0),
            stopped: None,
            has_result: false,
        }
    }
}

/// A count as both backends store it (a signed 64-bit integer).
pub(crate) fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The first event of a new task.
pub(crate) fn created_message(origin: &str) -> String {
    format!("created by {origin}")
}

/// The event a state change appends.
pub(crate) fn state_message(state: TaskState, reason: Option<&str>) -> String {
    match reason {
        Some(r) => format!("{}: {r}", state.as_str()),
        None => state.as_str().to_owned(),
    }
}

/// What [`TaskStore::create_with`](super::TaskStore::create_with) answers for a task it
/// inserted with id `id` at `now`.
pub(crate) fn created_info(t: &super::NewTask, id: u64, now: DateTime<Utc>) -> TaskInfo {
    TaskInfo {
        id,
        project: t.project.clone(),
        workflow: t.workflow.clone(),
        workspace: t.workspace.clone(),
        state: t.state,
        reason: t.reason.clone(),
        origin: t.origin.clone(),
        goal: t.goal.clone(),
        scheduled_at: t.scheduled_at,
        cycle: 0,
        step: None,
        created_at: now,
        started_at: None,
        finished_at: t.state.is_finished().then_some(now),
        worktree: t.worktree.then_some(WorktreeInfo {
            state: WorktreeState::Requested,
            path: None,
        }),
        node: None,
    }
}
