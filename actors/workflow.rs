//! Tasks: the TaskSupervisor (`tasks`) and one WorkflowActor (`workflow/<task-id>`) per running
//! task.
//!
//! The TaskSupervisor creates tasks (a durable row first), queues them per workflow and starts at
//! most `max_parallel` of each workflow at once, in creation order. It supervises the
//! WorkflowActors with the shared [`ChildSet`]: a WorkflowActor that fails is restarted and
//! resumes from the task's durable state; one that keeps failing is given up on and its task
//! fails. At start it kills the process groups that a crashed daemon left behind and resumes the
//! tasks that were running.
//!
//! A WorkflowActor drives the pure state machine of `domain::workflow`: for each step it renders
//! the prompt, resolves the agent and its environment from the current snapshot, starts the
//! process and hands it to an AgentActor child; when the AgentActor reports the exit it records
//! the run and asks the plan what is next. A resumed task treats the step that was running as an
//! interrupted attempt: retried if the step has retries left, else the task fails with reason
//! `interrupted`.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use ractor::{ActorProcessingErr, RpcReplyPort, SupervisionEvent};
use serde_json::json;
use tokio::sync::watch;

use super::agent::{AgentActor, AgentArgs, AgentMsg};
use super::introspect::{self, Addr, Behaviour, Message};
use super::supervisor::{ChildEvent, ChildSet, ChildSpec, Exhausted, Intensity, Restart, start_fn};
use crate::api::{ApiError, TaskInfo};
use crate::domain::lower::{self, EnvSource, LowerError, LoweredAgent, LoweredWorkflow, Step};
use crate::domain::manifest::{Kind, PromptDelivery, Spec, WorkflowSpec};
use crate::domain::redact::SecretRegistry;
use crate::domain::render;
use crate::domain::snapshot::Snapshot;
use crate::domain::workflow::{Next, Plan, Position, RunState, StepResult, TaskState};
use crate::process::{self, Outcome, SpawnSpec};
use crate::store::{NewTask, RunEnd, StoreError, TaskRecord, TaskStore};

/// Registry name of the task supervisor.
pub const TASKS: &str = "tasks";

/// Default step timeout when neither the step nor the agent sets one.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// The environment variable that marks every process of a step run with the run's id.
pub const RUN_ID_VAR: &str = "ORCHESTRATOR_RUN_ID";

/// Registry name of a task's WorkflowActor.
pub fn workflow_name(id: u64) -> String {
    format!("workflow/{id}")
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// What the task actors share.
#[derive(Clone)]
pub struct TaskContext {
    pub store: Arc<dyn TaskStore>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// `<data-dir>/runs`: one directory per task with logs, prompt files and the payload.
    pub runs_dir: PathBuf,
    pub socket: PathBuf,
    /// `PATH HOME USER LANG TERM` as the daemon has them (PATH with the daemon's own directory
    /// first, so agents find the `orchestrator` CLI).
    pub base_env: Arc<Vec<(String, String)>>,
    /// SIGTERM → SIGKILL grace for agents.
    pub grace: Duration,
    /// Bytes of each output stream written to a run log.
    pub stream_cap: u64,
    /// Bytes of stdout kept for `{prev_stdout}` / `{<step>_output}`.
    pub capture_cap: usize,
    /// The daemon's live secret set; each step run redacts its output with a lease on it.
    pub secrets: Arc<SecretRegistry>,
}

impl TaskContext {
    fn task_dir(&self, id: u64) -> PathBuf {
        self.runs_dir.join(id.to_string())
    }
}

/// A request to create a task, from the CLI, a trigger or a webhook.
#[derive(Debug, Clone)]
pub struct TaskRequest {
    pub project: String,
    pub workflow: String,
    pub workspace: Option<String>,
    pub goal: Option<String>,
    pub payload: Option<String>,
    /// `cli`, `trigger/<name>`, `webhook/<name>`.
    pub origin: String,
    pub trigger: Option<String>,
    pub scheduled_at: Option<DateTime<Utc>>,
    pub start: bool,
}

/// Why a running task is being stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReason {
    /// `task cancel`.
    User,
    /// The daemon is shutting down.
    Shutdown,
    /// `concurrencyPolicy: Replace`: a newer task of the same trigger takes its place.
    Replaced(String),
}

type TaskReply = RpcReplyPort<Result<TaskInfo, ApiError>>;

// ---------------------------------------------------------------------------------------------
// TaskSupervisor
// ---------------------------------------------------------------------------------------------

pub enum TaskSupMsg {
    Create(TaskRequest, TaskReply),
    /// Start a task created with `start: false`.
    Start(u64, TaskReply),
    /// Cancel a pending or running task; answers once it is cancelled.
    Cancel(u64, CancelReason, TaskReply),
    /// Tasks of a trigger that are pending or running (for concurrency policies).
    Active {
        project: String,
        trigger: String,
        reply: RpcReplyPort<Vec<u64>>,
    },
    /// Stop every running task (agents get SIGTERM, then SIGKILL after the grace period);
    /// answers when all have ended.
    Shutdown(RpcReplyPort<()>),
    Retry(String),
}

impl Message for TaskSupMsg {
    fn kind(&self) -> &'static str {
        match self {
            TaskSupMsg::Create(..) => "Create",
            TaskSupMsg::Start(..) => "Start",
            TaskSupMsg::Cancel(..) => "Cancel",
            TaskSupMsg::Active { .. } => "Active",
            TaskSupMsg::Shutdown(..) => "Shutdown",
            TaskSupMsg::Retry(..) => "Retry",
        }
    }
}

pub struct TaskSupervisor;

pub struct TaskSupState {
    ctx: TaskContext,
    children: ChildSet,
    /// Waiting tasks per (project, workflow), oldest first.
    queues: BTreeMap<(String, String), VecDeque<u64>>,
    /// Running tasks and their (project, workflow).
    running: HashMap<u64, (String, String)>,
    /// Pending or running tasks per (project, trigger).
    by_trigger: HashMap<(String, String), Vec<u64>>,
    trigger_of: HashMap<u64, (String, String)>,
    shutting_down: Option<Vec<RpcReplyPort<()>>>,
    created: u64,
}

fn store_err(e: StoreError) -> ApiError {
    tracing::error!(error = %e, "task store failed");
    ApiError::internal(format!("the task store failed: {e}"))
}

impl TaskSupState {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.ctx.snapshots.borrow().clone()
    }

    fn running_of(&self, key: &(String, String)) -> usize {
        self.running.values().filter(|k| *k == key).count()
    }

    fn track_trigger(&mut self, id: u64, project: &str, trigger: Option<&str>) {
        if let Some(t) = trigger {
            let key = (project.to_owned(), t.to_owned());
            self.by_trigger.entry(key.clone()).or_default().push(id);
            self.trigger_of.insert(id, key);
        }
    }

    fn untrack(&mut self, id: u64) {
        if let Some(key) = self.trigger_of.remove(&id)
            && let Some(ids) = self.by_trigger.get_mut(&key)
        {
            ids.retain(|t| *t != id);
            if ids.is_empty() {
                self.by_trigger.remove(&key);
            }
        }
    }

    fn create(&mut self, req: TaskRequest) -> Result<(TaskInfo, bool), ApiError> {
        let snapshot = self.snapshot();
        let project = &req.project;
        let workflow = match snapshot
            .lookup(project, Kind::Workflow, &req.workflow)
            .map(|r| &r.spec)
        {
            Some(Spec::Workflow(w)) => w.clone(),
            _ => {
                return Err(ApiError::not_found(format!(
                    "workflow {:?} not found in project {project:?}: apply it first or check the name (orchestrator get workflows)",
                    req.workflow
                )));
            }
        };
        let workspace = match &req.workspace {
            Some(w) => w.clone(),
            None => {
                let all: Vec<_> = snapshot.list(Kind::Workspace, Some(project)).collect();
                if all.iter().any(|r| r.key.name == "default") {
                    "default".to_owned()
                } else if let [only] = all.as_slice() {
                    only.key.name.clone()
                } else if all.is_empty() {
                    return Err(ApiError::bad_request(format!(
                        "project {project:?} has no Workspace: apply one first"
                    )));
                } else {
                    return Err(ApiError::bad_request(format!(
                        "project {project:?} has several workspaces and none is named \"default\": pass --workspace"
                    )));
                }
            }
        };
        let root = match snapshot
            .lookup(project, Kind::Workspace, &workspace)
            .map(|r| &r.spec)
        {
            Some(Spec::Workspace(w)) => w.root_path.clone(),
            _ => {
                return Err(ApiError::not_found(format!(
                    "workspace {workspace:?} not found in project {project:?}"
                )));
            }
        };
        if !Path::new(&root).is_dir() {
            return Err(ApiError::new(
                422,
                format!(
                    "workspace {workspace:?}: root_path {root} does not exist or is not a directory; create it or fix the Workspace"
                ),
            ));
        }
        if let Some(p) = &req.payload
            && let Err(e) = serde_json::from_str::<serde_json::Value>(p)
        {
            return Err(ApiError::bad_request(format!(
                "payload is not valid JSON: {e}"
            )));
        }
        let new = NewTask {
            project: project.clone(),
            workflow: req.workflow.clone(),
            workspace,
            workspace_root: root,
            workflow_spec: serde_json::to_value(&workflow).unwrap_or_default(),
            goal: req.goal,
            payload: req.payload,
            origin: req.origin,
            trigger: req.trigger.clone(),
            scheduled_at: req.scheduled_at,
            state: TaskState::Pending,
            reason: None,
            held: !req.start,
        };
        let info = self.ctx.store.create(&new, now()).map_err(store_err)?;
        tracing::debug!(task = info.id, workflow = %info.workflow, origin = %info.origin, "task created");
        self.created += 1;
        self.track_trigger(info.id, project, req.trigger.as_deref());
        if req.start {
            self.queues
                .entry((project.clone(), req.workflow))
                .or_default()
                .push_back(info.id);
        }
        Ok((info, req.start))
    }

    /// Starts queued tasks while their workflow is under its `max_parallel`.
    async fn fill(&mut self, me: &Addr<TaskSupMsg>) {
        if self.shutting_down.is_some() {
            return;
        }
        let snapshot = self.snapshot();
        let keys: Vec<(String, String)> = self.queues.keys().cloned().collect();
        for key in keys {
            let max = match snapshot
                .lookup(&key.0, Kind::Workflow, &key.1)
                .map(|r| &r.spec)
            {
                Some(Spec::Workflow(w)) => w.max_parallel.max(1) as usize,
                _ => 1,
            };
            while self.running_of(&key) < max {
                let Some(id) = self.queues.get_mut(&key).and_then(VecDeque::pop_front) else {
                    break;
                };
                self.launch(me, id, key.clone()).await;
            }
            if self.queues.get(&key).is_some_and(VecDeque::is_empty) {
                self.queues.remove(&key);
            }
        }
    }

    async fn launch(&mut self, me: &Addr<TaskSupMsg>, id: u64, key: (String, String)) {
        let ctx = self.ctx.clone();
        let name = workflow_name(id);
        let spec = ChildSpec {
            name: name.clone(),
            restart: Restart::Transient,
            exhausted: Exhausted::GiveUp,
            start: start_fn(name, move || {
                (
                    WorkflowActor,
                    WorkflowArgs {
                        task_id: id,
                        ctx: ctx.clone(),
                    },
                )
            }),
        };
        self.running.insert(id, key);
        if let Err(e) = self.children.start(&me.cell(), spec).await {
            self.running.remove(&id);
            self.untrack(id);
            tracing::error!(task = id, error = %e, "cannot start the task");
            let _ = self.ctx.store.set_state(
                id,
                TaskState::Failed,
                Some(&format!("could not start: {e}")),
                now(),
            );
        }
    }

    /// A WorkflowActor is gone for good.
    fn exited(&mut self, name: &str, failed: bool, reason: &str) {
        let Some(id) = name
            .strip_prefix("workflow/")
            .and_then(|s| s.parse::<u64>().ok())
        else {
            return;
        };
        self.running.remove(&id);
        self.untrack(id);
        if failed {
            // The actor could not finish the task itself: record why.
            match self.ctx.store.get(id) {
                Ok(Some(t)) if !t.state.is_finished() => {
                    let why = format!("the workflow actor kept failing: {reason}");
                    let _ = self.ctx.store.interrupt_runs(id, &why, now());
                    let _ = self
                        .ctx
                        .store
                        .set_state(id, TaskState::Failed, Some(&why), now());
                }
                _ => {}
            }
        }
        if self.running.is_empty()
            && let Some(waiters) = self.shutting_down.as_mut()
        {
            for w in waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    fn cancel_pending(&mut self, id: u64) -> Option<Result<TaskInfo, ApiError>> {
        let queued = self.queues.values_mut().any(|q| {
            let before = q.len();
            q.retain(|t| *t != id);
            q.len() != before
        });
        let info = match self.ctx.store.get(id) {
            Ok(Some(t)) => t,
            Ok(None) => return Some(Err(ApiError::not_found(format!("task {id} not found")))),
            Err(e) => return Some(Err(store_err(e))),
        };
        if info.state.is_finished() {
            return Some(Err(ApiError::conflict(format!(
                "task {id} already {}; there is nothing to cancel",
                info.state.as_str()
            ))));
        }
        if queued || (info.state == TaskState::Pending && !self.running.contains_key(&id)) {
            self.untrack(id);
            return Some(
                self.ctx
                    .store
                    .set_state(
                        id,
                        TaskState::Cancelled,
                        Some("cancelled before it started"),
                        now(),
                    )
                    .map_err(store_err)
                    .and_then(|()| {
                        self.ctx
                            .store
                            .get(id)
                            .map_err(store_err)?
                            .ok_or_else(|| ApiError::not_found(format!("task {id} not found")))
                    }),
            );
        }
        None
    }
}

impl Behaviour for TaskSupervisor {
    type Msg = TaskSupMsg;
    type State = TaskSupState;
    type Args = TaskContext;
    const TYPE: &'static str = "TaskSupervisor";

    async fn init(
        &self,
        me: Addr<TaskSupMsg>,
        ctx: TaskContext,
    ) -> Result<TaskSupState, ActorProcessingErr> {
        // Crash recovery: kill what a previous daemon left running: by recorded process group,
        // and by the run marker in the environment (which also finds an agent whose group was
        // not recorded yet when the daemon died, and processes that left the group).
        let runs = ctx.store.running_runs()?;
        let marked: std::collections::HashSet<String> =
            runs.iter().map(|r| r.run_id.to_string()).collect();
        let scope = format!("ORCHESTRATOR_SOCKET={}", ctx.socket.display());
        let killed = process::kill_marked(&scope, RUN_ID_VAR, &marked);
        if killed > 0 {
            tracing::warn!(
                killed,
                "killed orphaned agent processes found by their run marker"
            );
        }
        for run in runs {
            if let Some(pid) = run.pid {
                let killed = process::kill_orphaned_group(pid, run.pid_start);
                if killed > 0 {
                    tracing::warn!(
                        task = run.task_id,
                        run = run.run_id,
                        pgid = pid,
                        killed,
                        "killed an orphaned agent process group"
                    );
                }
            }
        }
        let mut state = TaskSupState {
            ctx,
            children: ChildSet::new(Intensity::default()),
            queues: BTreeMap::new(),
            running: HashMap::new(),
            by_trigger: HashMap::new(),
            trigger_of: HashMap::new(),
            shutting_down: None,
            created: 0,
        };
        let running = state.ctx.store.ids_in_state(TaskState::Running)?;
        let pending = state.ctx.store.ids_in_state(TaskState::Pending)?;
        for t in &running {
            state.track_trigger(t.id, &t.project, t.trigger.as_deref());
            state
                .launch(&me, t.id, (t.project.clone(), t.workflow.clone()))
                .await;
        }
        for t in pending {
            state.track_trigger(t.id, &t.project, t.trigger.as_deref());
            if !t.held {
                state
                    .queues
                    .entry((t.project, t.workflow))
                    .or_default()
                    .push_back(t.id);
            }
        }
        if !running.is_empty() {
            tracing::info!(tasks = running.len(), "resuming tasks that were running");
        }
        state.fill(&me).await;
        Ok(state)
    }

    async fn handle(
        &self,
        me: &Addr<TaskSupMsg>,
        msg: TaskSupMsg,
        state: &mut TaskSupState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TaskSupMsg::Create(req, reply) => {
                if state.shutting_down.is_some() {
                    let _ = reply.send(Err(ApiError::unavailable("the daemon is shutting down")));
                    return Ok(());
                }
                match state.create(req) {
                    Ok((info, start)) => {
                        let _ = reply.send(Ok(info));
                        if start {
                            state.fill(me).await;
                        }
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            TaskSupMsg::Start(id, reply) => {
                let result = match state.ctx.store.get(id) {
                    Ok(Some(t))
                        if t.state == TaskState::Pending && !state.running.contains_key(&id) =>
                    {
                        let queued = state.queues.values().any(|q| q.contains(&id));
                        if queued {
                            Err(ApiError::conflict(format!(
                                "task {id} is already queued to start"
                            )))
                        } else {
                            state
                                .ctx
                                .store
                                .release(id, now())
                                .map_err(store_err)
                                .map(|()| {
                                    state
                                        .queues
                                        .entry((t.project.clone(), t.workflow.clone()))
                                        .or_default()
                                        .push_back(id);
                                    t
                                })
                        }
                    }
                    Ok(Some(t)) => Err(ApiError::conflict(format!(
                        "task {id} is {}; only a pending task created with --no-start can be started",
                        t.state.as_str()
                    ))),
                    Ok(None) => Err(ApiError::not_found(format!("task {id} not found"))),
                    Err(e) => Err(store_err(e)),
                };
                let _ = reply.send(result);
                state.fill(me).await;
            }
            TaskSupMsg::Cancel(id, reason, reply) => {
                if let Some(result) = state.cancel_pending(id) {
                    let _ = reply.send(result);
                    return Ok(());
                }
                // Running: the WorkflowActor answers once its agent is gone.
                let name = workflow_name(id);
                tokio::spawn(async move {
                    match Addr::<WorkflowMsg>::resolve(&name, Duration::from_secs(5)).await {
                        Ok(w) => {
                            if let Err(e) = w.cast(WorkflowMsg::Cancel {
                                reason,
                                reply: Some(reply),
                            }) {
                                tracing::warn!(task = id, error = %e, "cancel not delivered");
                            }
                        }
                        Err(e) => {
                            let _ = reply.send(Err(ApiError::unavailable(format!(
                                "task {id} is running but its actor does not answer ({e}); retry"
                            ))));
                        }
                    }
                });
            }
            TaskSupMsg::Active {
                project,
                trigger,
                reply,
            } => {
                let ids = state
                    .by_trigger
                    .get(&(project, trigger))
                    .cloned()
                    .unwrap_or_default();
                let _ = reply.send(ids);
            }
            TaskSupMsg::Shutdown(reply) => {
                state.queues.clear();
                let waiters = state.shutting_down.get_or_insert_with(Vec::new);
                waiters.push(reply);
                if state.running.is_empty() {
                    for w in waiters.drain(..) {
                        let _ = w.send(());
                    }
                }
                for id in state.running.keys() {
                    if let Some(w) = Addr::<WorkflowMsg>::lookup(&workflow_name(*id)) {
                        let _ = w.cast(WorkflowMsg::Cancel {
                            reason: CancelReason::Shutdown,
                            reply: None,
                        });
                    }
                }
            }
            TaskSupMsg::Retry(name) => {
                if let ChildEvent::Exited {
                    name,
                    failed,
                    reason,
                } = state.children.retry(me, &name, TaskSupMsg::Retry).await?
                {
                    state.exited(&name, failed, &reason);
                    state.fill(me).await;
                }
            }
        }
        Ok(())
    }

    fn inspect(&self, state: &TaskSupState) -> serde_json::Value {
        let queued: usize = state.queues.values().map(VecDeque::len).sum();
        json!({
            "running": state.running.len(),
            "queued": queued,
            "createdSinceStart": state.created,
            "shuttingDown": state.shutting_down.is_some(),
            "supervision": state.children.inspect(),
        })
    }

    async fn supervise(
        &self,
        me: &Addr<TaskSupMsg>,
        event: SupervisionEvent,
        state: &mut TaskSupState,
    ) -> Result<(), ActorProcessingErr> {
        if let ChildEvent::Exited {
            name,
            failed,
            reason,
        } = state
            .children
            .on_event(me, event, TaskSupMsg::Retry)
            .await?
        {
            state.exited(&name, failed, &reason);
            state.fill(me).await;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// WorkflowActor
// ---------------------------------------------------------------------------------------------

pub enum WorkflowMsg {
    /// Act on what the plan says.
    Advance(Next),
    /// The current step's process ended (from its AgentActor).
    StepExited {
        run_id: u64,
        result: Result<process::Finished, String>,
    },
    Cancel {
        reason: CancelReason,
        reply: Option<TaskReply>,
    },
    /// The task was already finished when this actor started: just stop.
    Halt,
}

impl Message for WorkflowMsg {
    fn kind(&self) -> &'static str {
        match self {
            WorkflowMsg::Advance(_) => "Advance",
            WorkflowMsg::StepExited { .. } => "StepExited",
            WorkflowMsg::Cancel { .. } => "Cancel",
            WorkflowMsg::Halt => "Halt",
        }
    }
}

pub struct WorkflowActor;

pub struct WorkflowArgs {
    pub task_id: u64,
    pub ctx: TaskContext,
}

/// The step that is running now.
struct Current {
    run_id: u64,
    pos: Position,
    step: String,
    agent: Option<String>,
    actor: Option<Addr<AgentMsg>>,
    pid: Option<u32>,
}

pub struct WorkflowState {
    span: tracing::Span,
    ctx: TaskContext,
    task: TaskRecord,
    spec: WorkflowSpec,
    /// What each step of `spec` runs, lowered once when the actor starts.
    steps: Result<LoweredWorkflow, LowerError>,
    plan: Plan,
    outputs: HashMap<String, String>,
    prev_stdout: String,
    runs: u32,
    current: Option<Current>,
    cancelling: Option<CancelReason>,
    waiters: Vec<TaskReply>,
    finished: bool,
}

/// The reason recorded for a step that was running when the daemon or this actor stopped.
const INTERRUPTED: &str =
    "interrupted: the daemon or the task's workflow actor stopped while the step ran";

impl WorkflowState {
    fn id(&self) -> u64 {
        self.task.info.id
    }

    fn step_index(&self, id: &str) -> Option<usize> {
        self.spec.steps.iter().position(|s| s.id == id)
    }

    /// The value of a prompt placeholder.
    fn var(&self, name: &str, pos: Position) -> Option<Cow<'_, str>> {
        let t = &self.task.info;
        Some(match name {
            "goal" => Cow::Borrowed(t.goal.as_deref().unwrap_or("")),
            "task_id" => Cow::Owned(t.id.to_string()),
            "workflow" => Cow::Borrowed(&t.workflow),
            "workspace_root" => Cow::Borrowed(&self.task.workspace_root),
            "cycle" => Cow::Owned(pos.cycle.to_string()),
            "payload" => Cow::Borrowed(self.task.payload.as_deref().unwrap_or("")),
            "payload_file" => match &self.task.payload {
                Some(_) => Cow::Owned(
                    self.ctx
                        .task_dir(t.id)
                        .join("payload.json")
                        .display()
                        .to_string(),
                ),
                None => Cow::Borrowed(""),
            },
            "prev_stdout" => Cow::Borrowed(&self.prev_stdout),
            "step_id" => Cow::Borrowed(self.spec.steps.get(pos.step).map_or("", |s| s.id.as_str())),
            "project" => Cow::Borrowed(&t.project),
            other => {
                let step = render::output_step(other)?;
                Cow::Borrowed(self.outputs.get(step).map_or("", String::as_str))
            }
        })
    }

    /// Starts the step at `pos`; an error is the reason the attempt failed.
    async fn start_step(&mut self, me: &Addr<WorkflowMsg>, pos: Position) -> Result<(), String> {
        // The lease comes first: it keeps every value the snapshot below may hand the agent,
        // even one the store removes before the agent ends.
        let secrets = self.ctx.secrets.lease();
        let snapshot = self.ctx.snapshots.borrow().clone();
        let project = self.task.info.project.clone();
        let step = self
            .spec
            .steps
            .get(pos.step)
            .cloned()
            .ok_or_else(|| format!("step {} does not exist", pos.step))?;
        let task_dir = self.ctx.task_dir(self.id());
        let stem = format!("{}-c{}-a{}", step.id, pos.cycle, pos.attempt);
        let log_path = task_dir.join(format!("{stem}.log"));
        std::fs::create_dir_all(&task_dir)
            .map_err(|e| format!("cannot create {}: {e}", task_dir.display()))?;

        let action = match &self.steps {
            Ok(w) => w.steps.get(pos.step).cloned(),
            Err(e) => {
                let reason = format!("the task's workflow does not lower: {e}");
                return self.fail_to_start(&step.id, pos, None, &log_path, reason);
            }
        };
        let mut env: Vec<(String, String)> = self.ctx.base_env.as_ref().clone();
        let mut stdin = None;
        let (argv, agent_name, timeout) = if let Some(Step::Template {
            template,
            capability,
        }) = &action
        {
            let prompt_template = match snapshot
                .lookup(&project, Kind::StepTemplate, template)
                .map(|r| &r.spec)
            {
                Some(Spec::StepTemplate(t)) => t.prompt.clone(),
                _ => {
                    return self.fail_to_start(
                        &step.id,
                        pos,
                        None,
                        &log_path,
                        format!("step template {template:?} no longer exists"),
                    );
                }
            };
            let Some(agent) = snapshot.agent_with(&project, capability) else {
                return self.fail_to_start(
                    &step.id,
                    pos,
                    None,
                    &log_path,
                    format!("no enabled agent has capability {capability:?}"),
                );
            };
            let agent_name = agent.name.to_owned();
            let prompt = render::render(&prompt_template, |n| self.var(n, pos));
            let prompt_file = task_dir.join(format!("{stem}.prompt"));
            match agent.spec.prompt_delivery {
                PromptDelivery::Arg => {}
                PromptDelivery::Stdin => stdin = Some(prompt.clone().into_bytes()),
                PromptDelivery::Env => env.push(("ORCH_PROMPT".into(), prompt.clone())),
                PromptDelivery::File => {
                    if let Err(e) = write_private(&prompt_file, prompt.as_bytes()) {
                        return self.fail_to_start(
                            &step.id,
                            pos,
                            Some(&agent_name),
                            &log_path,
                            format!("cannot write the prompt file: {e}"),
                        );
                    }
                    env.push(("ORCH_PROMPT_FILE".into(), prompt_file.display().to_string()));
                }
            }
            match agent_env(agent.lowered, &project, &snapshot) {
                Ok(extra) => merge_env(&mut env, extra),
                Err(e) => {
                    return self.fail_to_start(
                        &step.id,
                        pos,
                        Some(&agent_name),
                        &log_path,
                        format!("agent {agent_name:?}: {e}"),
                    );
                }
            }
            let words = &agent.lowered.words;
            let prompt_file_text = prompt_file.display().to_string();
            let argv = words
                .iter()
                .map(|w| {
                    render::render(w, |n| match n {
                        "prompt" => Some(Cow::Borrowed(prompt.as_str())),
                        "prompt_file" => Some(Cow::Borrowed(prompt_file_text.as_str())),
                        other => self.var(other, pos),
                    })
                })
                .collect::<Vec<_>>();
            let timeout = step
                .timeout_secs
                .or(agent.spec.timeout_secs)
                .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
            (argv, Some(agent_name), timeout)
        } else {
            let Some(Step::Command { words }) = &action else {
                let reason = format!("step {} of the workflow no longer exists", pos.step);
                return self.fail_to_start(&step.id, pos, None, &log_path, reason);
            };
            let argv = words
                .iter()
                .map(|w| render::render(w, |n| self.var(n, pos)))
                .collect::<Vec<_>>();
            let timeout = step
                .timeout_secs
                .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
            (argv, None, timeout)
        };
        merge_env(
            &mut env,
            vec![
                (
                    "ORCHESTRATOR_SOCKET".into(),
                    self.ctx.socket.display().to_string(),
                ),
                ("ORCHESTRATOR_TASK_ID".into(), self.id().to_string()),
                ("ORCHESTRATOR_STEP_ID".into(), step.id.clone()),
                ("ORCHESTRATOR_PROJECT".into(), project.clone()),
            ],
        );

        let run_id = self
            .ctx
            .store
            .start_run(
                self.id(),
                &step.id,
                pos.cycle,
                pos.attempt,
                agent_name.as_deref(),
                &argv,
                &log_path.display().to_string(),
                now(),
            )
            .map_err(|e| format!("cannot record the step run: {e}"))?;
        // Marks every process of this run: crash recovery finds them even when the daemon died
        // before the process group was recorded.
        merge_env(&mut env, vec![(RUN_ID_VAR.into(), run_id.to_string())]);
        let program = argv.first().cloned().unwrap_or_default();
        let spec = SpawnSpec {
            argv,
            cwd: PathBuf::from(&self.task.workspace_root),
            env,
            stdin,
            log_path: log_path.clone(),
            timeout,
            grace: self.ctx.grace,
            stream_cap: self.ctx.stream_cap,
            capture_cap: self.ctx.capture_cap,
            secrets,
        };
        let running = match process::spawn(spec) {
            Ok(r) => r,
            Err(e) => {
                let who = match &agent_name {
                    Some(a) => format!("agent {a:?}: "),
                    None => String::new(),
                };
                let reason = format!("{who}{e}");
                self.end_run(
                    run_id,
                    RunState::Error,
                    None,
                    None,
                    Some(reason.clone()),
                    String::new(),
                    0,
                    0,
                );
                return Err(reason);
            }
        };
        let pid = running.pid();
        self.runs += 1;
        let name = format!("agent/{}/{}/{}", self.id(), step.id, self.runs);
        let args = AgentArgs {
            run_id,
            step: step.id.clone(),
            agent: agent_name.clone(),
            program,
            timeout,
            running,
            store: self.ctx.store.clone(),
            workflow: me.clone(),
        };
        self.current = Some(Current {
            run_id,
            pos,
            step: step.id.clone(),
            agent: agent_name,
            actor: None,
            pid: Some(pid),
        });
        match introspect::spawn(name, AgentActor, args, Some(me.cell())).await {
            Ok(actor) => {
                if let Some(c) = self.current.as_mut() {
                    c.actor = Some(actor);
                }
                Ok(())
            }
            Err(e) => {
                // The Running was dropped with the failed actor, which killed its group.
                self.current = None;
                let reason = format!("cannot start the agent actor: {e}");
                self.end_run(
                    run_id,
                    RunState::Error,
                    None,
                    None,
                    Some(reason.clone()),
                    String::new(),
                    0,
                    0,
                );
                Err(reason)
            }
        }
    }

    /// Records a run that could not even start, and returns its reason as the attempt's failure.
    fn fail_to_start(
        &mut self,
        step: &str,
        pos: Position,
        agent: Option<&str>,
        log_path: &Path,
        reason: String,
    ) -> Result<(), String> {
        if let Ok(run_id) = self.ctx.store.start_run(
            self.id(),
            step,
            pos.cycle,
            pos.attempt,
            agent,
            &[],
            &log_path.display().to_string(),
            now(),
        ) {
            self.end_run(
                run_id,
                RunState::Error,
                None,
                None,
                Some(reason.clone()),
                String::new(),
                0,
                0,
            );
        }
        Err(reason)
    }

    #[allow(clippy::too_many_arguments)]
    fn end_run(
        &self,
        run_id: u64,
        state: RunState,
        exit_code: Option<i32>,
        signal: Option<i32>,
        reason: Option<String>,
        stdout: String,
        stdout_bytes: u64,
        stderr_bytes: u64,
    ) {
        let end = RunEnd {
            state,
            exit_code,
            signal,
            reason,
            stdout,
            stdout_bytes,
            stderr_bytes,
        };
        if let Err(e) = self.ctx.store.finish_run(run_id, &end, now()) {
            tracing::error!(task = self.id(), run = run_id, error = %e, "cannot record the end of a step run");
        }
    }

    /// Handles the end of the current step's process and returns what comes next.
    fn step_exited(&mut self, result: Result<process::Finished, String>) -> Option<Next> {
        let current = self.current.take()?;
        let (run_state, step_result, exit_code, signal, stdout, out_bytes, err_bytes) = match result
        {
            Ok(f) => {
                let (code, sig) = match f.exit {
                    process::Exit::Code(c) => (Some(c), None),
                    process::Exit::Signal(s) => (None, Some(s)),
                };
                let (state, result) = match f.outcome {
                    Outcome::Exited(0) => (RunState::Succeeded, StepResult::Succeeded),
                    Outcome::Exited(c) => (
                        RunState::Failed,
                        StepResult::Failed(format!("exit code {c}")),
                    ),
                    Outcome::Signaled(s) => (
                        RunState::Failed,
                        StepResult::Failed(format!("killed by signal {s}")),
                    ),
                    Outcome::TimedOut => (
                        RunState::TimedOut,
                        StepResult::Failed(
                            "timed out; the agent's process group was stopped".into(),
                        ),
                    ),
                    Outcome::Cancelled => {
                        (RunState::Cancelled, StepResult::Failed("cancelled".into()))
                    }
                };
                (
                    state,
                    result,
                    code,
                    sig,
                    f.stdout,
                    f.stdout_bytes,
                    f.stderr_bytes,
                )
            }
            Err(e) => (
                RunState::Error,
                StepResult::Failed(e),
                None,
                None,
                String::new(),
                0,
                0,
            ),
        };
        let reason = match &step_result {
            StepResult::Failed(r) => Some(r.clone()),
            StepResult::Succeeded => None,
        };
        self.end_run(
            current.run_id,
            run_state,
            exit_code,
            signal,
            reason,
            stdout.clone(),
            out_bytes,
            err_bytes,
        );
        if step_result == StepResult::Succeeded {
            // Like `$(…)` in a shell, the value drops trailing newlines.
            let value = stdout.trim_end_matches(['\n', '\r']).to_owned();
            self.outputs.insert(current.step.clone(), value.clone());
            self.prev_stdout = value;
        }
        if self.cancelling.is_some() {
            return None;
        }
        Some(self.plan.after(current.pos, &step_result))
    }

    fn finish(&mut self, me: &Addr<WorkflowMsg>, state: TaskState, reason: Option<String>) {
        if self.finished {
            return;
        }
        self.finished = true;
        let id = self.id();
        if let Err(e) = self
            .ctx
            .store
            .set_state(id, state, reason.as_deref(), now())
        {
            tracing::error!(task = id, error = %e, "cannot record the end of a task");
        }
        let info = self.ctx.store.get(id).ok().flatten();
        for w in self.waiters.drain(..) {
            let _ = w.send(
                info.clone()
                    .ok_or_else(|| ApiError::internal(format!("task {id} vanished"))),
            );
        }
        tracing::info!(
            task = id,
            state = state.as_str(),
            reason = reason.as_deref().unwrap_or(""),
            "task finished"
        );
        me.cell().stop(Some(format!("task {}", state.as_str())));
    }

    fn finish_cancelled(&mut self, me: &Addr<WorkflowMsg>) {
        let (state, reason) = match self.cancelling.clone() {
            Some(CancelReason::Shutdown) => (
                TaskState::Failed,
                "interrupted: the daemon was shut down".to_owned(),
            ),
            Some(CancelReason::Replaced(by)) => (TaskState::Cancelled, format!("replaced: {by}")),
            Some(CancelReason::User) | None => {
                (TaskState::Cancelled, "cancelled by request".to_owned())
            }
        };
        self.finish(me, state, Some(reason));
    }

    async fn advance(&mut self, me: &Addr<WorkflowMsg>, mut next: Next) {
        loop {
            if self.cancelling.is_some() {
                return self.finish_cancelled(me);
            }
            match next {
                Next::Done => return self.finish(me, TaskState::Succeeded, None),
                Next::Failed(reason) => return self.finish(me, TaskState::Failed, Some(reason)),
                // Boxed: the step start is a large future, and keeping it inline would make
                // every idle WorkflowActor's message loop that large too.
                Next::Run(pos) => match Box::pin(self.start_step(me, pos)).await {
                    Ok(()) => return,
                    Err(reason) => next = self.plan.after(pos, &StepResult::Failed(reason)),
                },
            }
        }
    }
}

/// Resolves an agent's `env` from the current snapshot.
fn agent_env(
    agent: &LoweredAgent,
    project: &str,
    snapshot: &Snapshot,
) -> Result<Vec<(String, String)>, String> {
    let store_data = |name: &str| -> Result<Vec<(String, String)>, String> {
        if let Some(s) = snapshot.secret_store(project, name) {
            return Ok(s
                .data
                .iter()
                .map(|(k, v)| (k.clone(), v.expose().to_owned()))
                .collect());
        }
        match snapshot
            .lookup(project, Kind::EnvStore, name)
            .map(|r| &r.spec)
        {
            Some(Spec::EnvStore(e)) => {
                Ok(e.data.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            }
            _ => Err(format!("store {name:?} no longer exists")),
        }
    };
    let mut out = Vec::new();
    for e in &agent.env {
        match e {
            EnvSource::Value { name, value } => out.push((name.clone(), value.clone())),
            EnvSource::Store { store } => {
                for (k, v) in store_data(store)? {
                    if crate::domain::validate::is_env_name(&k) {
                        out.push((k, v));
                    } else {
                        tracing::warn!(store = %store, key = %k, "key is not a valid environment variable name; not passed to the agent");
                    }
                }
            }
            EnvSource::Key { name, store, key } => {
                let value = store_data(store)?
                    .into_iter()
                    .find(|(k, _)| k == key)
                    .map(|(_, v)| v)
                    .ok_or_else(|| format!("store {store:?} has no key {key:?} any more"))?;
                out.push((name.clone(), value));
            }
        }
    }
    Ok(out)
}

/// Adds `extra` to `env`, replacing variables of the same name.
fn merge_env(env: &mut Vec<(String, String)>, extra: Vec<(String, String)>) {
    for (k, v) in extra {
        env.retain(|(name, _)| *name != k);
        env.push((k, v));
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

impl Behaviour for WorkflowActor {
    type Msg = WorkflowMsg;
    type State = WorkflowState;
    type Args = WorkflowArgs;
    const TYPE: &'static str = "WorkflowActor";

    async fn init(
        &self,
        me: Addr<WorkflowMsg>,
        args: WorkflowArgs,
    ) -> Result<WorkflowState, ActorProcessingErr> {
        let ctx = args.ctx;
        let id = args.task_id;
        let task = ctx
            .store
            .record(id)?
            .ok_or_else(|| format!("task {id} does not exist"))?;
        let spec: WorkflowSpec = serde_json::from_value(task.workflow_spec.clone())
            .map_err(|e| format!("task {id}: stored workflow spec is unreadable: {e}"))?;
        let plan = Plan::new(&spec);
        let mut state = WorkflowState {
            span: tracing::info_span!("task", id),
            ctx,
            plan,
            steps: lower::lower_workflow(&spec),
            spec,
            outputs: HashMap::new(),
            prev_stdout: String::new(),
            runs: 0,
            current: None,
            cancelling: None,
            waiters: Vec::new(),
            finished: false,
            task,
        };
        match state.task.info.state {
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled => {
                state.finished = true;
                me.cast(WorkflowMsg::Halt)?;
                return Ok(state);
            }
            TaskState::Pending => {
                state
                    .ctx
                    .store
                    .set_state(id, TaskState::Running, None, now())?;
                if let Some(p) = &state.task.payload {
                    let dir = state.ctx.task_dir(id);
                    std::fs::create_dir_all(&dir)?;
                    write_private(&dir.join("payload.json"), p.as_bytes())?;
                }
            }
            TaskState::Running => {
                let n = state.ctx.store.interrupt_runs(id, INTERRUPTED, now())?;
                if n > 0 {
                    state
                        .ctx
                        .store
                        .event(id, "resumed after an interruption", now())?;
                }
            }
        }
        // Rebuild what earlier runs produced, and find where to go on.
        let outputs = state.ctx.store.outputs(id)?;
        state.runs = outputs.len() as u32;
        for o in &outputs {
            if o.state == RunState::Succeeded {
                let value = o.stdout.trim_end_matches(['\n', '\r']).to_owned();
                state.outputs.insert(o.step.clone(), value.clone());
                state.prev_stdout = value;
            }
        }
        let next = match outputs.last() {
            None => state.plan.start(),
            Some(last) => {
                let pos = Position {
                    cycle: last.cycle,
                    step: state.step_index(&last.step).unwrap_or(0),
                    attempt: last.attempt,
                };
                match last.state {
                    RunState::Succeeded => state.plan.after(pos, &StepResult::Succeeded),
                    RunState::Cancelled => {
                        state.cancelling = Some(CancelReason::User);
                        Next::Done
                    }
                    RunState::Interrupted => state
                        .plan
                        .after(pos, &StepResult::Failed(INTERRUPTED.into())),
                    RunState::Running | RunState::Failed | RunState::TimedOut | RunState::Error => {
                        state.plan.after(
                            pos,
                            &StepResult::Failed(format!(
                                "{} in an earlier run",
                                last.state.as_str()
                            )),
                        )
                    }
                }
            }
        };
        me.cast(WorkflowMsg::Advance(next))?;
        Ok(state)
    }

    async fn handle(
        &self,
        me: &Addr<WorkflowMsg>,
        msg: WorkflowMsg,
        state: &mut WorkflowState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            WorkflowMsg::Advance(next) => state.advance(me, next).await,
            WorkflowMsg::StepExited { run_id, result } => {
                if state.current.as_ref().is_some_and(|c| c.run_id == run_id) {
                    match state.step_exited(result) {
                        Some(next) => state.advance(me, next).await,
                        None => state.finish_cancelled(me),
                    }
                }
            }
            WorkflowMsg::Cancel { reason, reply } => {
                if state.finished {
                    if let Some(r) = reply {
                        let _ = r.send(Err(ApiError::conflict(format!(
                            "task {} already finished",
                            state.id()
                        ))));
                    }
                    return Ok(());
                }
                if let Some(r) = reply {
                    state.waiters.push(r);
                }
                if state.cancelling.is_none() {
                    state.cancelling = Some(reason);
                }
                match state.current.as_ref().and_then(|c| c.actor.as_ref()) {
                    Some(agent) => {
                        let _ = agent.cast(AgentMsg::Cancel);
                    }
                    None => state.finish_cancelled(me),
                }
            }
            WorkflowMsg::Halt => me.cell().stop(Some("task already finished".into())),
        }
        Ok(())
    }

    fn span(&self, state: &WorkflowState) -> Option<tracing::Span> {
        Some(state.span.clone())
    }

    fn inspect(&self, state: &WorkflowState) -> serde_json::Value {
        let c = state.current.as_ref();
        json!({
            "task": state.id(),
            "project": state.task.info.project,
            "workflow": state.task.info.workflow,
            "cycle": c.map(|c| c.pos.cycle),
            "step": c.map(|c| c.step.clone()),
            "attempt": c.map(|c| c.pos.attempt),
            "agent": c.and_then(|c| c.agent.clone()),
            "agentPid": c.and_then(|c| c.pid),
            "run": c.map(|c| c.run_id),
            "cancelling": state.cancelling.is_some(),
        })
    }

    async fn supervise(
        &self,
        me: &Addr<WorkflowMsg>,
        event: SupervisionEvent,
        state: &mut WorkflowState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ActorFailed(cell, err) = event {
            // The AgentActor's state was dropped, which killed its process group.
            let is_current = state
                .current
                .as_ref()
                .and_then(|c| c.actor.as_ref())
                .is_some_and(|a| a.cell().get_id() == cell.get_id());
            if is_current {
                tracing::warn!(task = state.id(), error = %err, "agent actor failed");
                match state.step_exited(Err(format!("the agent actor failed: {err}"))) {
                    Some(next) => state.advance(me, next).await,
                    None => state.finish_cancelled(me),
                }
            }
        }
        Ok(())
    }
}
