//! Durable task state: tasks, their step runs (agent, argv, process group, exit, times, log
//! path) and events. The task actors write it; the control API reads it (`task list`,
//! `task describe`). The records below are what the actors hand in and get back.

use chrono::{DateTime, Utc};

use super::{NodeRecord, Result, SeenDelivery};
use crate::api::{
    RunState, StepRunInfo, StreamSummary, TaskEvent, TaskInfo, TaskQuery, TaskState, WorktreeState,
};
use crate::domain::retention::HistoryLimited;

/// Everything a new task row needs.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub project: String,
    pub workflow: String,
    pub workspace: String,
    pub workspace_root: String,
    /// The workflow spec as JSON, fixed at creation.
    pub workflow_spec: serde_json::Value,
    pub goal: Option<String>,
    pub payload: Option<String>,
    pub origin: String,
    pub trigger: Option<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub state: TaskState,
    pub reason: Option<String>,
    /// Created with `--no-start`: pending until `task start`.
    pub held: bool,
    /// The workspace has `worktree: true`: the task gets its own git worktree.
    pub worktree: bool,
    /// A cron fire: created only while the leader lease still holds this fence, and once per
    /// (trigger, scheduled instant) — else [`StoreError::Fenced`](super::StoreError::Fenced) or
    /// [`StoreError::AlreadyFired`](super::StoreError::AlreadyFired), and nothing is written.
    pub fence: Option<super::Fence>,
}

/// What a WorkflowActor loads to run (or resume) a task.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    pub info: TaskInfo,
    pub workspace_root: String,
    pub workflow_spec: serde_json::Value,
    pub payload: Option<String>,
}

/// A finished step run's output, for `{prev_stdout}` and `{<step>_output}` on resume (a
/// stream-json run's final result).
#[derive(Debug, Clone)]
pub struct Output {
    pub step: String,
    pub cycle: u32,
    pub attempt: u32,
    pub state: RunState,
    pub stdout: String,
}

/// A task waiting (or running) in the queue.
#[derive(Debug, Clone)]
pub struct Queued {
    pub id: u64,
    pub project: String,
    pub workflow: String,
    pub held: bool,
    pub trigger: Option<String>,
    /// The node that runs it (`None`: not started, or started before tasks named their node).
    pub node: Option<String>,
}

/// A step run that was running when the daemon stopped.
#[derive(Debug, Clone)]
pub struct Interrupted {
    pub run_id: u64,
    pub task_id: u64,
    pub pid: Option<i32>,
    pub pid_start: Option<u64>,
}

/// The end of one step run.
#[derive(Debug, Clone)]
pub struct RunEnd {
    pub state: RunState,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub reason: Option<String>,
    pub stdout: String,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// What a stream-json run reported.
    pub stream: Option<StreamSummary>,
}

/// The task tables. The actors' writes must not hold up the control API's reads: a busy
/// `task list` never waits behind a commit.
pub trait TaskStore: Send + Sync {
    /// Inserts a task and its first event; returns it once it is durable (as
    /// [`create_with`](Self::create_with) does).
    fn create(&self, t: &NewTask, now: DateTime<Utc>) -> Result<TaskInfo> {
        self.create_with(t, None, now)
    }

    /// Inserts a task, its first event and (for a webhook delivery) the delivery id it answers
    /// in one transaction, and returns only once that transaction is durable: fsynced, so the
    /// task survives a power cut. Concurrent calls share one fsync (group commit: SQLite's
    /// writer thread batches them in one transaction; PostgreSQL batches the WAL flushes of
    /// their transactions). A delivery id whose record has not expired writes nothing and is
    /// [`StoreError::DuplicateDelivery`](super::StoreError::DuplicateDelivery) with the task
    /// it created. Blocks the calling thread while it waits.
    fn create_with(
        &self,
        t: &NewTask,
        delivery: Option<&SeenDelivery>,
        now: DateTime<Utc>,
    ) -> Result<TaskInfo>;

    /// Sets a task's state (and reason), with an event; sets the start or finish time.
    fn set_state(
        &self,
        id: u64,
        state: TaskState,
        reason: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Records a step run starting; returns its id.
    #[allow(clippy::too_many_arguments)]
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
    ) -> Result<u64>;

    /// Records the process group of a running step (for crash recovery).
    fn set_run_pid(&self, run: u64, pid: i32, pid_start: Option<u64>) -> Result<()>;

    /// Records the end of a step run.
    fn finish_run(&self, run: u64, end: &RunEnd, now: DateTime<Utc>) -> Result<()>;

    /// Records what became of a task's git worktree (and where it is).
    fn set_worktree(&self, task: u64, state: WorktreeState, path: Option<&str>) -> Result<()>;

    /// Appends an event to a task.
    fn event(&self, task: u64, message: &str, now: DateTime<Utc>) -> Result<()>;

    /// A task with what is needed to run it.
    fn record(&self, id: u64) -> Result<Option<TaskRecord>>;

    /// Finished step runs of a task, oldest first.
    fn outputs(&self, task: u64) -> Result<Vec<Output>>;

    /// Marks the step runs of `task` still recorded as running as interrupted.
    fn interrupt_runs(&self, task: u64, reason: &str, now: DateTime<Utc>) -> Result<usize>;

    /// The step runs whose process groups may still live on `node` after a crash: the runs
    /// recorded as running of its tasks (and of tasks that name no node: those from before
    /// tasks named their node), and the runs that another node interrupted when `node` stopped
    /// heartbeating ([`fail_node`](Self::fail_node)) and that [`reaped`](Self::reaped) has not
    /// cleared yet. Other nodes' runs are theirs.
    fn running_runs(&self, node: &str) -> Result<Vec<Interrupted>>;

    /// The process groups of these runs are known gone (killed by the crash recovery of their
    /// node): they are no longer listed by [`running_runs`](Self::running_runs) unless they are
    /// still recorded as running.
    fn reaped(&self, runs: &[u64]) -> Result<()>;

    /// Starts pending task `id` on `node`: marks it running there (with its start time and an
    /// event) and returns `true` — unless it is no longer pending (another node started it, or
    /// it was cancelled), which writes nothing and returns `false`.
    fn claim(&self, id: u64, node: &str, now: DateTime<Utc>) -> Result<bool>;

    /// A node died: fails its running tasks with `reason` (their step runs still recorded as
    /// running are interrupted, and kept for the node's own crash recovery to kill their
    /// process groups when it comes back), in one transaction, if the node's row still is what
    /// `dead` saw — the same instance, no newer heartbeat, not stopped — so that a node that
    /// came back in the meantime keeps its tasks. Returns the failed tasks' ids (ascending).
    fn fail_node(&self, dead: &NodeRecord, reason: &str, now: DateTime<Utc>) -> Result<Vec<u64>>;

    /// Tasks in `state`, oldest first.
    fn ids_in_state(&self, state: TaskState) -> Result<Vec<Queued>>;

    /// Releases a held task (`task start`).
    fn release(&self, id: u64, now: DateTime<Utc>) -> Result<()>;

    /// Deletes up to `batch` of a trigger's finished tasks beyond the newest `keep_succeeded`
    /// succeeded and `keep_failed` failed or cancelled ones (`historyLimit`), in one
    /// transaction; returns the deleted ids (ascending) so that their run directories can go
    /// too. Fewer than `batch` means nothing is left beyond the limit.
    fn prune_trigger(
        &self,
        project: &str,
        trigger: &str,
        keep_succeeded: Option<u32>,
        keep_failed: Option<u32>,
        batch: usize,
    ) -> Result<Vec<u64>>;

    /// Deletes one finished task with its step runs and events (`task delete`); a pending or
    /// running task is left alone, and so is the newest task. No prune deletes the newest task
    /// either: a task id is never reused.
    fn delete_finished(&self, id: u64) -> Result<Deleted>;

    /// The workflows (project, workflow) with more than `keep` finished tasks, not counting the
    /// tasks that `limited` leaves to their trigger's `historyLimit`.
    fn over_count(&self, keep: u64, limited: &HistoryLimited) -> Result<Vec<(String, String)>>;

    /// Deletes up to `batch` of a workflow's finished tasks beyond its newest `keep` (the tasks
    /// `limited` leaves to their trigger neither count nor go), in one transaction; returns the
    /// deleted ids (ascending). Fewer than `batch` means the workflow is at most at `keep`.
    fn prune_workflow(
        &self,
        project: &str,
        workflow: &str,
        keep: u64,
        limited: &HistoryLimited,
        batch: usize,
    ) -> Result<Vec<u64>>;

    /// Looks at the next `scan.batch` tasks after `scan.after` (by id, oldest first) and
    /// deletes those that finished before `scan.finished_before`, in one transaction.
    fn prune_older(&self, scan: &AgeScan<'_>) -> Result<Swept>;

    /// Which of `ids` are tasks (to find run directories whose task is gone).
    fn existing(&self, ids: &[u64]) -> Result<Vec<u64>>;

    /// Returns up to `max_pages` free database pages to the file system (incremental vacuum);
    /// returns how many free pages are left.
    fn reclaim(&self, max_pages: u32) -> Result<u64>;

    /// The database's size and the oldest task (`daemon status`).
    fn storage(&self) -> Result<StorageInfo>;

    /// One task.
    fn get(&self, id: u64) -> Result<Option<TaskInfo>>;

    /// Tasks matching `q`, newest first.
    fn list(&self, q: &TaskQuery, project: Option<&str>) -> Result<Vec<TaskInfo>>;

    /// The payload a task was created with.
    fn payload(&self, id: u64) -> Result<Option<String>>;

    /// Step runs of a task, oldest first.
    fn runs(&self, task: u64) -> Result<Vec<StepRunInfo>>;

    /// Events of a task, oldest first.
    fn events(&self, task: u64) -> Result<Vec<TaskEvent>>;

    /// The histogram of the task writer's commit durations, for the daemon's metrics (a backend
    /// without a writer of its own has none).
    fn commit_seconds(&self) -> Option<prometheus_client::metrics::histogram::Histogram> {
        None
    }
}

/// What [`TaskStore::delete_finished`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    /// The task and its rows are gone.
    Removed,
    NotFound,
    /// The task is pending or running (in this state): nothing was deleted.
    NotFinished(TaskState),
    /// The task is the newest one, which is kept so that its id is never given to another
    /// task; it can go once a newer task exists.
    Newest,
}

/// One step of an age sweep over the tasks ([`TaskStore::prune_older`]).
#[derive(Debug, Clone, Copy)]
pub struct AgeScan<'a> {
    /// Finished tasks that finished before this go.
    pub finished_before: DateTime<Utc>,
    /// Only tasks of this project (`None`: every project).
    pub project: Option<&'a str>,
    /// Tasks left to their trigger's `historyLimit` (`None`: none are).
    pub limited: Option<&'a HistoryLimited>,
    /// Look at tasks with a larger id than this.
    pub after: u64,
    /// How many tasks to look at.
    pub batch: usize,
}

/// What one step of an age sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    pub removed: Vec<u64>,
    /// Where the next step starts (`AgeScan::after`); `None` when no older task is left to
    /// look at (the tasks after this one were all created after the cut-off).
    pub next: Option<u64>,
}

/// The database's size and its oldest task.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageInfo {
    /// The database file.
    pub db_bytes: u64,
    /// Its write-ahead log.
    pub wal_bytes: u64,
    /// Free pages inside the database file (reclaimed by the incremental vacuum).
    pub free_bytes: u64,
    pub tasks: u64,
    pub finished_tasks: u64,
    /// The oldest task: its id and creation time.
    pub oldest: Option<(u64, DateTime<Utc>)>,
}
