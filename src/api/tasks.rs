//! Wire types of tasks: create, list and show, with each step run and the task's events.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::domain::stream_json::{StreamSummary, ToolCount};
pub use crate::domain::workflow::{RunState, TaskState};
pub use crate::domain::worktree::WorktreeState;

/// `POST /v1/tasks`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateTaskRequest {
    #[serde(default)]
    pub project: Option<String>,
    pub workflow: String,
    /// Default: the workspace named `default`, or the project's only workspace.
    #[serde(default)]
    pub workspace: Option<String>,
    #[serde(default)]
    pub goal: Option<String>,
    /// JSON text handed to the task as `{payload}`.
    #[serde(default)]
    pub payload: Option<String>,
    /// False: create the task pending and leave it until `task start`.
    #[serde(default = "yes")]
    pub start: bool,
}

fn yes() -> bool {
    true
}

/// A task as `task list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskInfo {
    pub id: u64,
    pub project: String,
    pub workflow: String,
    pub workspace: String,
    pub state: TaskState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `cli`, `trigger/<name>`, `webhook/<name>`.
    pub origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Current (or last) cycle and step.
    pub cycle: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// The task's own git worktree (a Workspace with `worktree: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worktree: Option<WorktreeInfo>,
    /// The node that runs (or ran) the task: set when it starts running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A task's git worktree: where it is (once created) and what became of it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WorktreeInfo {
    pub state: WorktreeState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// One run of one step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StepRunInfo {
    pub id: u64,
    pub step: String,
    pub cycle: u32,
    pub attempt: u32,
    /// The agent that ran a template step (none for a command step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub state: RunState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    pub log_path: String,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
    /// What a stream-json agent's run reported (its Agent has `output: stream-json`).
    #[serde(
        rename = "streamJson",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub stream_json: Option<StreamSummary>,
}

/// Something that happened to a task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskEvent {
    pub at: DateTime<Utc>,
    pub message: String,
}

/// `GET /v1/tasks/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskDetail {
    pub task: TaskInfo,
    /// The JSON payload the task was created with (a webhook delivery, `--payload`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    pub steps: Vec<StepRunInfo>,
    pub events: Vec<TaskEvent>,
}

/// `GET /v1/tasks`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TaskList {
    pub tasks: Vec<TaskInfo>,
}

/// Query of `GET /v1/tasks`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TaskQuery {
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub workflow: Option<String>,
    #[serde(default)]
    pub trigger: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
}

/// `POST /v1/tasks/prune`: removes the finished tasks that finished more than
/// `olderThanSeconds` ago (whatever their trigger's `historyLimit`), with their run logs.
#[derive(Debug, Clone, Serialize, Deserialize, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PruneTasksRequest {
    pub older_than_seconds: u64,
    /// Default: the `default` project.
    #[serde(default)]
    pub project: Option<String>,
    /// Every project.
    #[serde(default)]
    pub all: bool,
}

/// The answer of `POST /v1/tasks/prune`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PruneTasksResponse {
    /// How many tasks were removed.
    pub removed: u64,
}

/// The answer of `DELETE /v1/tasks/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DeleteTaskResponse {
    pub id: u64,
    pub deleted: bool,
}
