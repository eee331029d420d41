//! TaskSupervisor (`tasks`): creates tasks (a durable row first), queues them per workflow and
//! starts at most `max_parallel` of each workflow at once, in creation order, each as a
//! WorkflowActor (`workflow/<task-id>`, see `workflow.rs`). It supervises the WorkflowActors with
//! the shared [`ChildSet`]: a WorkflowActor that fails is restarted and resumes from the task's
//! durable state; one that keeps failing is given up on and its task fails. At start it kills
//! the process groups that this node's crashed daemon left behind and resumes this node's tasks
//! that were running (`recovery.rs`); a pending task is started by whichever node claims it
//! first.
//!
//! A creation is answered only once its row is durable, and without holding up the mailbox: the
//! request is checked here, the row is written by the store's group commit on a blocking thread
//! (concurrent creations share one fsync), and the commit comes back as a message
//! (`Committed`) that queues the task and answers the caller.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::{ActorProcessingErr, RpcReplyPort, SupervisionEvent};
use serde_json::json;

use super::retention::{self, Finished, RetentionMsg};
use super::runtime::{Addr, Behaviour, Message, Registry};
use super::supervisor::{ChildEvent, ChildSet, ChildSpec, Exhausted, Intensity, Restart, start_fn};
use super::workflow::{
    TaskContext, TaskError, TaskReply, WorkflowActor, WorkflowArgs, WorkflowMsg, now, workflow_name,
};
use crate::api::TaskInfo;
use crate::domain::manifest::{Kind, Spec};
use crate::domain::snapshot::Snapshot;
use crate::domain::workflow::{CancelReason, TaskState};
use crate::store::{Fence, NewTask, SeenDelivery, StoreError};

/// Registry name of the task supervisor.
pub const TASKS: &str = "tasks";

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
    /// The webhook delivery this task answers: recorded in the task's commit, so that the
    /// replay window outlives a restart.
    pub delivery: Option<SeenDelivery>,
    /// A cron fire's lease (see [`NewTask::fence`]).
    pub fence: Option<Fence>,
}

/// A trigger's tasks that are pending or running, and how many are still being committed.
#[derive(Debug, Clone, Default)]
pub struct ActiveTasks {
    pub ids: Vec<u64>,
    pub creating: usize,
}

/// A checked request, ready for its commit.
struct Prepared {
    new: NewTask,
    delivery: Option<SeenDelivery>,
    start: bool,
}

pub enum TaskSupMsg {
    Create(TaskRequest, TaskReply),
    /// A creation's commit came back (from the blocking thread that waited for it).
    Committed {
        result: Result<TaskInfo, StoreError>,
        start: bool,
        project: String,
        trigger: Option<String>,
        reply: TaskReply,
    },
    /// Start a task created with `start: false`.
    Start(u64, TaskReply),
    /// Cancel a pending or running task; answers once it is cancelled.
    Cancel(u64, CancelReason, TaskReply),
    /// Tasks of a trigger that are pending or running, or being created (for concurrency
    /// policies).
    Active {
        project: String,
        trigger: String,
        reply: RpcReplyPort<ActiveTasks>,
    },
    /// Stop every running task (agents get SIGTERM, then SIGKILL after the grace period);
    /// answers when all have ended.
    Shutdown(RpcReplyPort<()>),
    Retry(String),
    /// A node died (the leader's cluster actor says so): queue the pending tasks, not held,
    /// that this node neither queues nor runs — the dead node's queue among them. Of two nodes
    /// that start one task, the store's claim lets one run it.
    Adopt,
}

impl Message for TaskSupMsg {
    fn kind(&self) -> &'static str {
        match self {
            TaskSupMsg::Create(..) => "Create",
            TaskSupMsg::Committed { .. } => "Committed",
            TaskSupMsg::Start(..) => "Start",
            TaskSupMsg::Cancel(..) => "Cancel",
            TaskSupMsg::Active { .. } => "Active",
            TaskSupMsg::Shutdown(..) => "Shutdown",
            TaskSupMsg::Retry(..) => "Retry",
            TaskSupMsg::Adopt => "Adopt",
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
    /// Creations waiting for their commit per (project, trigger).
    creating: HashMap<(String, String), usize>,
    shutting_down: Option<Vec<RpcReplyPort<()>>>,
    created: u64,
    /// Where the retention actor is found (told of every task that finishes).
    registry: Registry,
}

fn store_err(e: StoreError) -> TaskError {
    tracing::error!(error = %e, "task store failed");
    TaskError::Store(e)
}

impl TaskSupState {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.ctx.snapshots.borrow().clone()
    }

    /// Publishes how many tasks run (for the node's heartbeat).
    fn count_running(&self) {
        self.ctx
            .running
            .store(self.running.len(), std::sync::atomic::Ordering::Relaxed);
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

    /// Tells the retention actor that task `id` of `(project, workflow)` finished, so that its
    /// trigger's `historyLimit` and its workflow's count hold right away.
    fn ended(&self, id: u64, project: &str, workflow: &str) {
        if let Some(r) = self.registry.lookup::<RetentionMsg>(retention::NAME) {
            let _ = r.cast(RetentionMsg::Finished(Finished {
                project: project.to_owned(),
                workflow: workflow.to_owned(),
                trigger: self.trigger_of.get(&id).map(|(_, t)| t.clone()),
            }));
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

    /// Checks a creation request against the current snapshot and builds its row.
    fn prepare(&self, req: TaskRequest) -> Result<Prepared, TaskError> {
        let snapshot = self.snapshot();
        let project = &req.project;
        let workflow = match snapshot
            .lookup(project, Kind::Workflow, &req.workflow)
            .map(|r| &r.spec)
        {
            Some(Spec::Workflow(w)) => w.clone(),
            _ => {
                return Err(TaskError::NoWorkflow {
                    workflow: req.workflow,
                    project: project.clone(),
                });
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
                    return Err(TaskError::NoWorkspaces(project.clone()));
                } else {
                    return Err(TaskError::AmbiguousWorkspace(project.clone()));
                }
            }
        };
        let (root, worktree) = match snapshot
            .lookup(project, Kind::Workspace, &workspace)
            .map(|r| &r.spec)
        {
            Some(Spec::Workspace(w)) => (w.root_path.clone(), w.worktree),
            _ => {
                return Err(TaskError::NoWorkspace {
                    workspace,
                    project: project.clone(),
                });
            }
        };
        if !Path::new(&root).is_dir() {
            return Err(TaskError::NoWorkspaceRoot { workspace, root });
        }
        if let Some(p) = &req.payload
            && let Err(e) = serde_json::from_str::<serde_json::Value>(p)
        {
            return Err(TaskError::PayloadNotJson(e));
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
            worktree,
            fence: req.fence,
        };
        Ok(Prepared {
            new,
            delivery: req.delivery,
            start: req.start,
        })
    }

    /// Hands a checked creation to the store's group commit on a blocking thread (which also
    /// keeps paused test time from jumping ahead while it waits); the commit comes back as
    /// [`TaskSupMsg::Committed`].
    fn commit(&mut self, me: &Addr<TaskSupMsg>, p: Prepared, reply: TaskReply) {
        if let Some(t) = &p.new.trigger {
            *self
                .creating
                .entry((p.new.project.clone(), t.clone()))
                .or_default() += 1;
        }
        let (store, me) = (self.ctx.store.clone(), me.clone());
        let at = now();
        // The answer is handled in the request's span (a fire's, a delivery's), as the request
        // was: its log lines name what created the task.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _span = span.enter();
            let result = store.create_with(&p.new, p.delivery.as_ref(), at);
            if let Err(e) = me.cast(TaskSupMsg::Committed {
                result,
                start: p.start,
                project: p.new.project,
                trigger: p.new.trigger,
                reply,
            }) {
                // The supervisor is restarting: it finds the task in the store when it starts.
                tracing::warn!(error = %e, "a created task's commit came back to no supervisor");
            }
        });
    }

    /// A creation's commit is over (whether or not it succeeded).
    fn uncreating(&mut self, project: &str, trigger: Option<&str>) {
        let Some(t) = trigger else { return };
        let key = (project.to_owned(), t.to_owned());
        if let Some(n) = self.creating.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.creating.remove(&key);
            }
        }
    }

    /// A creation is durable: track and queue it, then answer.
    fn committed(&mut self, info: &TaskInfo, start: bool, trigger: Option<&str>) {
        tracing::debug!(task = info.id, workflow = %info.workflow, origin = %info.origin, "task created");
        self.created += 1;
        self.track_trigger(info.id, &info.project, trigger);
        if start && self.shutting_down.is_none() {
            self.queues
                .entry((info.project.clone(), info.workflow.clone()))
                .or_default()
                .push_back(info.id);
        }
    }

    /// Starts queued tasks, oldest first, while this node runs fewer than `max_running` and
    /// their workflow fewer than its `max_parallel`.
    async fn fill(&mut self, me: &Addr<TaskSupMsg>) {
        if self.shutting_down.is_some() {
            return;
        }
        let snapshot = self.snapshot();
        let max_parallel = |key: &(String, String)| match snapshot
            .lookup(&key.0, Kind::Workflow, &key.1)
            .map(|r| &r.spec)
        {
            Some(Spec::Workflow(w)) => w.max_parallel.max(1) as usize,
            _ => 1,
        };
        self.queues.retain(|_, q| !q.is_empty());
        while self.running.len() < self.ctx.max_running {
            // The oldest task at the head of a workflow's queue that has room.
            let next = self
                .queues
                .iter()
                .filter(|(key, _)| self.running_of(key) < max_parallel(key))
                .filter_map(|(key, q)| q.front().map(|id| (*id, key.clone())))
                .min_by_key(|(id, _)| *id);
            let Some((id, key)) = next else { break };
            if let Some(q) = self.queues.get_mut(&key) {
                q.pop_front();
                if q.is_empty() {
                    self.queues.remove(&key);
                }
            }
            self.launch(me, id, key).await;
        }
    }

    async fn launch(&mut self, me: &Addr<TaskSupMsg>, id: u64, key: (String, String)) {
        let ctx = self.ctx.clone();
        let name = workflow_name(id);
        let spec = ChildSpec {
            name: name.clone(),
            restart: Restart::Transient,
            exhausted: Exhausted::GiveUp,
            start: start_fn(me.registry(), name, move || {
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
        self.count_running();
        if let Err(e) = self.children.start(&me.cell(), spec).await {
            let key = self.running.remove(&id);
            self.count_running();
            tracing::error!(task = id, error = %e, "cannot start the task");
            let _ = self.ctx.store.set_state(
                id,
                TaskState::Failed,
                Some(&format!("could not start: {e}")),
                now(),
            );
            if let Some((project, workflow)) = key {
                self.ended(id, &project, &workflow);
            }
            self.untrack(id);
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
        let key = self.running.remove(&id);
        self.count_running();
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
        if let Some((project, workflow)) = key {
            self.ended(id, &project, &workflow);
        }
        self.untrack(id);
        if self.running.is_empty()
            && let Some(waiters) = self.shutting_down.as_mut()
        {
            for w in waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }

    fn cancel_pending(&mut self, id: u64) -> Option<Result<TaskInfo, TaskError>> {
        let queued = self.queues.values_mut().any(|q| {
            let before = q.len();
            q.retain(|t| *t != id);
            q.len() != before
        });
        let info = match self.ctx.store.get(id) {
            Ok(Some(t)) => t,
            Ok(None) => return Some(Err(TaskError::NotFound(id))),
            Err(e) => return Some(Err(store_err(e))),
        };
        if info.state.is_finished() {
            return Some(Err(TaskError::NothingToCancel {
                id,
                state: info.state,
            }));
        }
        if queued || (info.state == TaskState::Pending && !self.running.contains_key(&id)) {
            let cancelled = self.ctx.store.set_state(
                id,
                TaskState::Cancelled,
                Some("cancelled before it started"),
                now(),
            );
            if cancelled.is_ok() {
                self.ended(id, &info.project, &info.workflow);
            }
            self.untrack(id);
            return Some(cancelled.map_err(store_err).and_then(|()| {
                self.ctx
                    .store
                    .get(id)
                    .map_err(store_err)?
                    .ok_or(TaskError::NotFound(id))
            }));
        }
        None
    }
}

impl Behaviour for TaskSupervisor {
    type Msg = TaskSupMsg;
    type State = TaskSupState;
    type Args = TaskContext;
    const TYPE: &'static str = "TaskSupervisor";

    async fn pre_start(
        &self,
        me: Addr<TaskSupMsg>,
        ctx: TaskContext,
    ) -> Result<TaskSupState, ActorProcessingErr> {
        recovery::kill_orphans(&ctx)?;
        let mut state = TaskSupState {
            ctx,
            children: ChildSet::new(Intensity::default()),
            queues: BTreeMap::new(),
            running: HashMap::new(),
            by_trigger: HashMap::new(),
            trigger_of: HashMap::new(),
            creating: HashMap::new(),
            shutting_down: None,
            created: 0,
            registry: me.registry().clone(),
        };
        // Only this node's running tasks are resumed: another node's are that node's.
        let node = state.ctx.node.clone();
        let running: Vec<_> = state
            .ctx
            .store
            .ids_in_state(TaskState::Running)?
            .into_iter()
            .filter(|t| recovery::ours(t, &node))
            .collect();
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
                    let _ = reply.send(Err(TaskError::ShuttingDown));
                    return Ok(());
                }
                match state.prepare(req) {
                    Ok(prepared) => state.commit(me, prepared, reply),
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            TaskSupMsg::Committed {
                result,
                start,
                project,
                trigger,
                reply,
            } => match result {
                Ok(info) => {
                    state.uncreating(&project, trigger.as_deref());
                    state.committed(&info, start, trigger.as_deref());
                    let _ = reply.send(Ok(info));
                    if start {
                        state.fill(me).await;
                    }
                }
                // A replayed delivery is an answer, not a store failure.
                Err(e @ StoreError::DuplicateDelivery { .. }) => {
                    state.uncreating(&project, trigger.as_deref());
                    let _ = reply.send(Err(TaskError::Store(e)));
                }
                Err(e) => {
                    state.uncreating(&project, trigger.as_deref());
                    let _ = reply.send(Err(store_err(e)));
                }
            },
            TaskSupMsg::Start(id, reply) => {
                let result = match state.ctx.store.get(id) {
                    Ok(Some(t))
                        if t.state == TaskState::Pending && !state.running.contains_key(&id) =>
                    {
                        let queued = state.queues.values().any(|q| q.contains(&id));
                        if queued {
                            Err(TaskError::AlreadyQueued(id))
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
                    Ok(Some(t)) => Err(TaskError::NotStartable { id, state: t.state }),
                    Ok(None) => Err(TaskError::NotFound(id)),
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
                let actors = me.registry().clone();
                tokio::spawn(async move {
                    match actors
                        .resolve::<WorkflowMsg>(&name, Duration::from_secs(5))
                        .await
                    {
                        Ok(w) => {
                            if let Err(e) = w.cast(WorkflowMsg::Cancel {
                                reason,
                                reply: Some(reply),
                            }) {
                                tracing::warn!(task = id, error = %e, "cancel not delivered");
                            }
                        }
                        Err(error) => {
                            let _ = reply.send(Err(TaskError::NotAnswering { id, error }));
                        }
                    }
                });
            }
            TaskSupMsg::Active {
                project,
                trigger,
                reply,
            } => {
                let key = (project, trigger);
                let _ = reply.send(ActiveTasks {
                    ids: state.by_trigger.get(&key).cloned().unwrap_or_default(),
                    creating: state.creating.get(&key).copied().unwrap_or(0),
                });
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
                    if let Some(w) = me.registry().lookup::<WorkflowMsg>(&workflow_name(*id)) {
                        let _ = w.cast(WorkflowMsg::Cancel {
                            reason: CancelReason::Shutdown,
                            reply: None,
                        });
                    }
                }
            }
            TaskSupMsg::Adopt => {
                if state.shutting_down.is_some() {
                    return Ok(());
                }
                let pending = state.ctx.store.ids_in_state(TaskState::Pending)?;
                let mut adopted = 0;
                for t in pending {
                    let known = state.running.contains_key(&t.id)
                        || state.queues.values().any(|q| q.contains(&t.id));
                    if t.held || known {
                        continue;
                    }
                    if !state.trigger_of.contains_key(&t.id) {
                        state.track_trigger(t.id, &t.project, t.trigger.as_deref());
                    }
                    state
                        .queues
                        .entry((t.project, t.workflow))
                        .or_default()
                        .push_back(t.id);
                    adopted += 1;
                }
                if adopted > 0 {
                    tracing::info!(tasks = adopted, "queued pending tasks after a node died");
                    state.fill(me).await;
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

    async fn handle_supervisor_evt(
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

mod recovery;
#[cfg(test)]
mod tests;
