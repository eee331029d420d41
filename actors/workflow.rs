//! WorkflowActor (`workflow/<task-id>`): drives one task through its steps, one per running task,
//! started and supervised by the TaskSupervisor (`task_supervisor.rs`). It also holds what the
//! task actors share ([`TaskContext`]).
//!
//! The actor drives the pure state machine of `domain::workflow`: for each step it asks
//! `domain::launch` what to start (argv, environment, stdin, prompt file and timeout, from the
//! step's lowered action and the current snapshot), then does the IO: creates the task
//! directory, writes the prompt file, records the run, spawns the process and hands it to an
//! AgentActor child, which reports the exit through a recipient derived from this actor's
//! address. It then records the run and asks the plan what is next. At start it asks
//! `domain::workflow` how to open the task: a resumed task treats the step that was running as an
//! interrupted attempt, retried if the step has retries left, else the task fails with reason
//! `interrupted`.
//!
//! A task of a Workspace with `worktree: true` runs in its own git worktree (`worktree.rs`):
//! checked out before the first step, removed when the task ends (kept after a failure), both by
//! spawned tasks that report back, so the mailbox stays free. A stream-json agent's run is
//! judged by what its stream reported as well as by its exit (`domain::stream_json`), and its
//! final result, not its raw stdout, is the step's output (`run_end.rs`, which also counts each
//! run in the daemon's metrics; a task's end is counted where it is recorded).

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, SubsecRound, Utc};
use ractor::{ActorProcessingErr, RpcReplyPort, SupervisionEvent};
use serde_json::json;

use super::agent::{AgentActor, AgentArgs, AgentExited, AgentMsg};
use super::runtime::{self, Addr, Behaviour, Message};
use crate::api::TaskInfo;
use crate::domain::launch::{self, Launch, LaunchError, RunFiles, StepRun, TaskVars};
use crate::domain::lower::{self, LowerError, LoweredWorkflow};
use crate::domain::manifest::WorkflowSpec;
use crate::domain::workflow::{
    CancelReason, INTERRUPTED, Next, Opening, PastRun, Plan, Position, RunState, StepResult,
    TaskState, output_value,
};
use crate::metrics::Metrics;
use crate::process::{self, ProcessError, SpawnSpec};
use crate::store::{RunEnd, StoreError, TaskRecord};
use worktree::{Worktree, WorktreeMsg};

mod context;
mod retry;
mod run_end;
mod worktree;

pub use context::TaskContext;
use run_end::{errored, judge};

/// Registry name of a task's WorkflowActor.
pub fn workflow_name(id: u64) -> String {
    format!("workflow/{id}")
}

/// The task actors' clock: now, to the millisecond the task tables keep.
pub(super) fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// How a task request or cancel is answered: the task as it is then.
pub type TaskReply = RpcReplyPort<Result<TaskInfo, TaskError>>;

/// Why a task request (create, start, cancel) was refused, by the TaskSupervisor or by a task's
/// WorkflowActor. The control API gives each its status (`http::control`).
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    #[error(
        "workflow {workflow:?} not found in project {project:?}: apply it first or check the name (orchestrator get workflows)"
    )]
    NoWorkflow { workflow: String, project: String },
    #[error("project {0:?} has no Workspace: apply one first")]
    NoWorkspaces(String),
    #[error("project {0:?} has several workspaces and none is named \"default\": pass --workspace")]
    AmbiguousWorkspace(String),
    #[error("workspace {workspace:?} not found in project {project:?}")]
    NoWorkspace { workspace: String, project: String },
    #[error(
        "workspace {workspace:?}: root_path {root} does not exist or is not a directory; create it or fix the Workspace"
    )]
    NoWorkspaceRoot { workspace: String, root: String },
    #[error("payload is not valid JSON: {0}")]
    PayloadNotJson(serde_json::Error),
    #[error("the task store failed: {0}")]
    Store(StoreError),
    #[error("task {0} not found")]
    NotFound(u64),
    #[error("task {id} already {}; there is nothing to cancel", .state.as_str())]
    NothingToCancel { id: u64, state: TaskState },
    #[error("task {0} already finished")]
    AlreadyFinished(u64),
    #[error("task {0} is already queued to start")]
    AlreadyQueued(u64),
    #[error(
        "task {id} is {}; only a pending task created with --no-start can be started",
        .state.as_str()
    )]
    NotStartable { id: u64, state: TaskState },
    #[error("the daemon is shutting down")]
    ShuttingDown,
    #[error("task {id} is running but its actor does not answer ({error}); retry")]
    NotAnswering { id: u64, error: runtime::CallError },
    #[error("task {0} vanished")]
    Vanished(u64),
}

/// Why a step attempt failed without an exit of its own process (or with a failed wait): the
/// reason recorded on the run and handed to the plan.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("step {0} does not exist")]
    NoStep(usize),
    #[error("cannot create {}: {source}", .path.display())]
    TaskDir { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Launch(LaunchError),
    #[error("cannot write the prompt file: {0}")]
    PromptFile(io::Error),
    #[error("cannot record the step run: {0}")]
    RecordRun(StoreError),
    #[error("{}{source}", .agent.as_ref().map(|a| format!("agent {a:?}: ")).unwrap_or_default())]
    Spawn {
        agent: Option<String>,
        source: ProcessError,
    },
    #[error("cannot start the agent actor: {0}")]
    AgentActor(ractor::SpawnErr),
    /// Waiting for the agent's process failed.
    #[error(transparent)]
    Wait(ProcessError),
    #[error("the agent actor failed: {0}")]
    AgentFailed(ActorProcessingErr),
}

pub enum WorkflowMsg {
    /// Act on what the plan says.
    Advance(Next),
    /// The current step's process ended (from its AgentActor).
    StepExited {
        run_id: u64,
        result: Result<process::Finished, ProcessError>,
    },
    Cancel {
        reason: CancelReason,
        reply: Option<TaskReply>,
    },
    /// The task was already finished when this actor started: just stop.
    Halt,
    /// The task's git worktree was prepared or removed (see `worktree.rs`).
    Worktree(WorktreeMsg),
}

impl Message for WorkflowMsg {
    fn kind(&self) -> &'static str {
        match self {
            WorkflowMsg::Advance(_) => "Advance",
            WorkflowMsg::StepExited { .. } => "StepExited",
            WorkflowMsg::Cancel { .. } => "Cancel",
            WorkflowMsg::Halt => "Halt",
            WorkflowMsg::Worktree(m) => m.kind(),
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
    metrics: Metrics,
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
    /// Where the steps run: the workspace root, or the same place in the task's worktree.
    workdir: String,
    /// The task's git worktree, if its workspace asks for one.
    worktree: Option<Worktree>,
    /// The worktree is being checked out: the steps wait for it.
    preparing: bool,
    /// The task has ended and waits for its worktree to be removed: how it ended.
    finishing: Option<(TaskState, Option<String>)>,
    /// The retry whose backoff has been waited for (see `retry.rs`).
    backed_off: Option<Position>,
    /// The session the last failed stream-json run reported, by step index (a retry resumes it).
    session: Option<(usize, String)>,
}

impl WorkflowState {
    fn id(&self) -> u64 {
        self.task.info.id
    }

    /// The task as its placeholders see it.
    fn vars<'a>(&'a self, payload_file: &'a Path) -> TaskVars<'a> {
        let t = &self.task.info;
        TaskVars {
            id: t.id,
            project: &t.project,
            workflow: &t.workflow,
            goal: t.goal.as_deref(),
            workspace_root: &self.workdir,
            payload: self.task.payload.as_deref(),
            payload_file,
            prev_stdout: &self.prev_stdout,
            outputs: &self.outputs,
        }
    }

    /// Starts the step at `pos`; an error is the reason the attempt failed.
    async fn start_step(&mut self, me: &Addr<WorkflowMsg>, pos: Position) -> Result<(), StepError> {
        // The lease comes first: it keeps every value the snapshot below may hand the agent,
        // even one the store removes before the agent ends.
        let secrets = self.ctx.secrets.lease();
        let snapshot = self.ctx.snapshots.borrow().clone();
        let step = self
            .spec
            .steps
            .get(pos.step)
            .cloned()
            .ok_or(StepError::NoStep(pos.step))?;
        let task_dir = self.ctx.task_dir(self.id());
        let files = RunFiles::new(&task_dir, &step.id, pos);
        std::fs::create_dir_all(&task_dir).map_err(|source| StepError::TaskDir {
            path: task_dir.clone(),
            source,
        })?;
        let payload_file = task_dir.join("payload.json");
        let planned = launch::launch(&StepRun {
            task: self.vars(&payload_file),
            step: &step,
            pos,
            steps: self.steps.as_ref(),
            snapshot: &snapshot,
            base_env: &self.ctx.base_env,
            socket: &self.ctx.socket,
            files: &files,
            resume_session: self.session_of(pos),
        });
        let mut launch = match planned {
            Ok(l) => l,
            Err(e) => return self.fail_launch(&step.id, pos, &files.log, e),
        };
        for k in &launch.skipped {
            tracing::warn!(store = %k.store, key = %k.key, "key is not a valid environment variable name; not passed to the agent");
        }
        if let Some((path, prompt)) = &launch.prompt_file
            && let Err(e) = write_private(path, prompt.as_bytes())
        {
            let reason = StepError::PromptFile(e);
            let agent = launch.agent.clone();
            return self.fail_to_start(&step.id, pos, agent.as_deref(), &files.log, reason);
        }

        let run_id = self
            .ctx
            .store
            .start_run(
                self.id(),
                &step.id,
                pos.cycle,
                pos.attempt,
                launch.agent.as_deref(),
                &launch.argv,
                &files.log.display().to_string(),
                now(),
            )
            .map_err(StepError::RecordRun)?;
        launch.mark_run(run_id);
        let Launch {
            agent: agent_name,
            argv,
            env,
            stdin,
            timeout,
            idle_timeout,
            stream,
            ..
        } = launch;
        let program = argv.first().cloned().unwrap_or_default();
        let spec = SpawnSpec {
            argv,
            cwd: PathBuf::from(&self.workdir),
            env,
            stdin,
            log_path: files.log.clone(),
            timeout,
            grace: self.ctx.grace,
            stream_cap: self.ctx.stream_cap,
            capture_cap: self.ctx.capture_cap,
            secrets,
            stream,
            idle_timeout,
        };
        let running = match process::spawn(spec) {
            Ok(r) => r,
            Err(source) => {
                let agent = agent_name;
                return self.run_failed(run_id, StepError::Spawn { agent, source });
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
            report: me.derive(|e: AgentExited| WorkflowMsg::StepExited {
                run_id: e.run_id,
                result: e.result,
            }),
        };
        self.current = Some(Current {
            run_id,
            pos,
            step: step.id.clone(),
            agent: agent_name,
            actor: None,
            pid: Some(pid),
        });
        match me
            .registry()
            .spawn(name, AgentActor, args, Some(me.cell()))
            .await
        {
            Ok(actor) => {
                if let Some(c) = self.current.as_mut() {
                    c.actor = Some(actor);
                }
                Ok(())
            }
            Err(e) => {
                // The Running was dropped with the failed actor, which killed its group.
                self.current = None;
                self.run_failed(run_id, StepError::AgentActor(e))
            }
        }
    }

    /// Records run `run_id` as an error with `reason`, which is the attempt's failure.
    fn run_failed(&self, run_id: u64, reason: StepError) -> Result<(), StepError> {
        self.end_run(run_id, &errored(reason.to_string()));
        Err(reason)
    }

    /// Records a run that `domain::launch` refused to start.
    fn fail_launch(
        &mut self,
        step: &str,
        pos: Position,
        log_path: &Path,
        e: LaunchError,
    ) -> Result<(), StepError> {
        let agent = e.agent().map(str::to_owned);
        self.fail_to_start(step, pos, agent.as_deref(), log_path, StepError::Launch(e))
    }

    /// Records a run that could not even start, and returns its reason as the attempt's failure.
    fn fail_to_start(
        &mut self,
        step: &str,
        pos: Position,
        agent: Option<&str>,
        log_path: &Path,
        reason: StepError,
    ) -> Result<(), StepError> {
        match self.ctx.store.start_run(
            self.id(),
            step,
            pos.cycle,
            pos.attempt,
            agent,
            &[],
            &log_path.display().to_string(),
            now(),
        ) {
            Ok(run_id) => self.run_failed(run_id, reason),
            Err(_) => Err(reason),
        }
    }

    fn end_run(&self, run_id: u64, end: &RunEnd) {
        if let Err(e) = self.ctx.store.finish_run(run_id, end, now()) {
            tracing::error!(task = self.id(), run = run_id, error = %e, "cannot record the end of a step run");
        }
    }

    /// Handles the end of the current step's process and returns what comes next.
    fn step_exited(&mut self, result: Result<process::Finished, StepError>) -> Option<Next> {
        let current = self.current.take()?;
        let end = match result {
            Ok(f) => {
                self.count_run(&current.step, &f);
                judge(f)
            }
            Err(e) => errored(e.to_string()),
        };
        self.end_run(current.run_id, &end);
        let step_result = match (&end.reason, end.state) {
            (None, RunState::Succeeded) => StepResult::Succeeded,
            (reason, _) => StepResult::Failed(reason.clone().unwrap_or_else(|| "failed".into())),
        };
        self.session = end
            .stream
            .as_ref()
            .and_then(|s| s.session_id.clone())
            .filter(|_| step_result != StepResult::Succeeded)
            .map(|id| (current.pos.step, id));
        if step_result == StepResult::Succeeded {
            // A stream-json run's output is its final result, not the raw stream.
            let output = match &end.stream {
                Some(s) => s.result.as_deref().unwrap_or(""),
                None => &end.stdout,
            };
            let value = output_value(output).to_owned();
            self.outputs.insert(current.step.clone(), value.clone());
            self.prev_stdout = value;
        }
        if self.cancelling.is_some() {
            return None;
        }
        Some(self.plan.after(current.pos, &step_result))
    }

    /// Records the end of the task, answers who waits for it and stops the actor. Called through
    /// `finish` (in `worktree.rs`), which removes or keeps the task's worktree first.
    fn finish_now(&mut self, me: &Addr<WorkflowMsg>, state: TaskState, reason: Option<String>) {
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
        let t = &self.task.info;
        self.metrics.task_finished(&t.project, &t.workflow, state);
        let info = self.ctx.store.get(id).ok().flatten();
        for w in self.waiters.drain(..) {
            let _ = w.send(info.clone().ok_or(TaskError::Vanished(id)));
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
        let (state, reason) = self
            .cancelling
            .as_ref()
            .unwrap_or(&CancelReason::User)
            .ending();
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
                Next::Run(pos) if self.wait_before(me, pos) => return,
                Next::Run(pos) => match Box::pin(self.start_step(me, pos)).await {
                    Ok(()) => return,
                    Err(e) => next = self.plan.after(pos, &StepResult::Failed(e.to_string())),
                },
            }
        }
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

    async fn pre_start(
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
        let task_dir = ctx.task_dir(id);
        let mut state = WorkflowState {
            span: {
                // A root span per task, linked to what created it (a fire, a delivery, a
                // request): nested in it, a queued task would carry every task before it.
                let span = tracing::info_span!(parent: None, "task", id);
                span.follows_from(tracing::Span::current());
                span
            },
            ctx,
            metrics: me.registry().metrics().clone(),
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
            workdir: task.workspace_root.clone(),
            worktree: Worktree::of(&task, &task_dir),
            preparing: false,
            finishing: None,
            backed_off: None,
            session: None,
            task,
        };
        let opening = Opening::of(state.task.info.state);
        if opening == Opening::Halt
            || (opening == Opening::Begin && !state.ctx.store.claim(id, &state.ctx.node, now())?)
        {
            state.finished = true;
            me.cast(WorkflowMsg::Halt)?;
            return Ok(state);
        }
        match opening {
            Opening::Halt => {}
            Opening::Begin => {
                if let Some(p) = &state.task.payload {
                    let dir = state.ctx.task_dir(id);
                    std::fs::create_dir_all(&dir)?;
                    write_private(&dir.join("payload.json"), p.as_bytes())?;
                }
            }
            Opening::Resume => {
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
        let resume = state.plan.resume(outputs.iter().map(|o| PastRun {
            step: &o.step,
            cycle: o.cycle,
            attempt: o.attempt,
            state: o.state,
            stdout: &o.stdout,
        }));
        state.runs = resume.runs;
        state.outputs = resume.outputs;
        state.prev_stdout = resume.prev_stdout;
        state.cancelling = resume.cancelling;
        state.open(&me, resume.next)?;
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
                    match state.step_exited(result.map_err(StepError::Wait)) {
                        Some(next) => state.advance(me, next).await,
                        None => state.finish_cancelled(me),
                    }
                }
            }
            WorkflowMsg::Cancel { reason, reply } => {
                if state.finishing.is_some() {
                    // Ended already; answered once its worktree is removed.
                    state.waiters.extend(reply);
                    return Ok(());
                }
                if state.finished {
                    if let Some(r) = reply {
                        let _ = r.send(Err(TaskError::AlreadyFinished(state.id())));
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
                    // Ends once the checkout is done, so that it is removed too.
                    None if state.preparing => {}
                    None => state.finish_cancelled(me),
                }
            }
            WorkflowMsg::Halt => me.cell().stop(Some("task already finished".into())),
            WorkflowMsg::Worktree(m) => state.worktree_done(me, m).await,
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
            "workdir": state.workdir,
            "worktree": state.worktree.as_ref().map(|w| w.inspect()),
        })
    }

    async fn handle_supervisor_evt(
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
                match state.step_exited(Err(StepError::AgentFailed(err))) {
                    Some(next) => state.advance(me, next).await,
                    None => state.finish_cancelled(me),
                }
            }
        }
        Ok(())
    }
}
