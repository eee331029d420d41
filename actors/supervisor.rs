//! The one restarting supervisor, reused by every parent in the tree (root, `triggers`, `tasks`).
//!
//! Children are started from a [`ChildSpec`]: a name, a restart policy and a start function that
//! can be called again to rebuild the child (it captures the child's arguments). Policy:
//! - `Permanent` children are restarted whenever they stop without being asked to (failure,
//!   panic, or an unexpected normal exit); `Transient` ones only when they fail; `Temporary`
//!   ones never.
//! - Restart intensity is counted **per child**: more than `max_restarts` restarts of one child
//!   within `window` means that child cannot be kept alive, and the supervisor escalates by
//!   failing itself, so its own parent restarts it (with all its children). A crash-looping
//!   trigger therefore takes down at most the trigger supervisor, never the webhook server, and
//!   many unrelated single failures (one per task) never add up to an escalation.
//! - A start that fails (the child's `pre_start` returns an error) counts as a restart and is retried
//!   with exponential backoff (100 ms doubling to 5 s) through a timer message.
//!
//! ractor's default `handle_supervisor_evt` stops the parent when any child stops; this
//! supervisor replaces it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{ActorCell, ActorProcessingErr, RpcReplyPort, SpawnErr, SupervisionEvent};
use serde_json::json;

use super::runtime::{Addr, Behaviour, Message, Registry};

/// Rebuilds a child under the given parent cell.
pub type StartFn = Arc<
    dyn Fn(ActorCell) -> Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send>>
        + Send
        + Sync,
>;

/// Builds a [`StartFn`] from a behaviour constructor and cloneable arguments; the child is
/// spawned as `name` in `registry`.
pub fn start_fn<B, F>(registry: &Registry, name: String, make: F) -> StartFn
where
    B: Behaviour,
    F: Fn() -> (B, B::Args) + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let registry = registry.clone();
    Arc::new(move |parent: ActorCell| {
        let name = name.clone();
        let make = make.clone();
        let registry = registry.clone();
        Box::pin(async move {
            let (behaviour, args) = make();
            registry
                .spawn(name, behaviour, args, Some(parent))
                .await
                .map(|a| a.cell())
        })
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    Permanent,
    Transient,
    Temporary,
}

pub struct ChildSpec {
    pub name: String,
    pub restart: Restart,
    /// What happens when the child exceeds its restart intensity.
    pub exhausted: Exhausted,
    pub start: StartFn,
}

/// What to do with a child that keeps failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// Fail the supervisor, so that its parent restarts it (static children of the root).
    Escalate,
    /// Stop restarting this child and report it as exited (dynamic children: one trigger or
    /// one task that keeps crashing must not take its siblings down).
    GiveUp,
}

/// Restart intensity: at most `max_restarts` restarts of one child within `window`.
#[derive(Debug, Clone, Copy)]
pub struct Intensity {
    pub max_restarts: usize,
    pub window: Duration,
}

impl Default for Intensity {
    fn default() -> Self {
        Intensity {
            max_restarts: 5,
            window: Duration::from_secs(10),
        }
    }
}

/// Why a child could not be started or kept.
#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    #[error("{0} is already running")]
    AlreadyRunning(String),
    #[error("starting {name} failed: {source}")]
    Start { name: String, source: SpawnErr },
    #[error("{name} exceeded its restart intensity ({} restarts in {:?})", .intensity.max_restarts, .intensity.window)]
    Exhausted { name: String, intensity: Intensity },
}

pub enum SupervisorMsg {
    /// Start a child (the name must be free).
    Start(ChildSpec, RpcReplyPort<Result<(), ChildError>>),
    /// Stop a child for good; answers whether it existed.
    Stop(String, RpcReplyPort<bool>),
    /// Retry a restart whose start failed.
    Retry(String),
    /// Names of the children it supervises.
    Children(RpcReplyPort<Vec<String>>),
}

impl Message for SupervisorMsg {
    fn kind(&self) -> &'static str {
        match self {
            SupervisorMsg::Start(..) => "Start",
            SupervisorMsg::Stop(..) => "Stop",
            SupervisorMsg::Retry(..) => "Retry",
            SupervisorMsg::Children(..) => "Children",
        }
    }
}

struct Child {
    spec: ChildSpec,
    restarts: VecDeque<Instant>,
    /// Set when the child is not running and a retry timer is pending.
    pending_retry: bool,
    /// Set by `stop`: the next termination is expected.
    stopping: bool,
    cell: Option<ActorCell>,
}

/// What a supervision event meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChildEvent {
    /// Nothing for the owner to do (started, restarted, or an event of an old incarnation).
    Handled,
    /// The child is gone for good: stopped normally, stopped on request, or given up on.
    Exited {
        name: String,
        failed: bool,
        reason: String,
    },
}

/// The restart machinery every supervising actor embeds: the children, their specs and their
/// restart history. The plain [`Supervisor`] is a thin behaviour around it; the trigger and task
/// supervisors embed it beside their own state.
pub struct ChildSet {
    intensity: Intensity,
    children: HashMap<String, Child>,
    total_restarts: u64,
}

impl ChildSet {
    pub fn new(intensity: Intensity) -> ChildSet {
        ChildSet {
            intensity,
            children: HashMap::new(),
            total_restarts: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.children.len()
    }

    pub fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.children.contains_key(name)
    }

    /// Whether `name` was asked to stop and has not terminated yet.
    pub fn is_stopping(&self, name: &str) -> bool {
        self.children.get(name).is_some_and(|c| c.stopping)
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.children.keys().cloned().collect();
        names.sort();
        names
    }

    /// Starts a new child under `parent`.
    pub async fn start(&mut self, parent: &ActorCell, spec: ChildSpec) -> Result<(), ChildError> {
        let name = spec.name.clone();
        if self.children.contains_key(&name) {
            return Err(ChildError::AlreadyRunning(name));
        }
        self.children.insert(
            name.clone(),
            Child {
                spec,
                restarts: VecDeque::new(),
                pending_retry: false,
                stopping: false,
                cell: None,
            },
        );
        let result = self.start_existing(parent, &name).await;
        if result.is_err() {
            self.children.remove(&name);
        }
        result
    }

    async fn start_existing(&mut self, parent: &ActorCell, name: &str) -> Result<(), ChildError> {
        let Some(child) = self.children.get_mut(name) else {
            return Ok(());
        };
        child.pending_retry = false;
        match (child.spec.start)(parent.clone()).await {
            Ok(cell) => {
                child.cell = Some(cell);
                Ok(())
            }
            Err(source) => Err(ChildError::Start {
                name: name.to_owned(),
                source,
            }),
        }
    }

    /// Stops a child for good; returns whether it existed.
    pub fn stop(&mut self, name: &str) -> bool {
        let Some(child) = self.children.get_mut(name) else {
            return false;
        };
        child.stopping = true;
        match &child.cell {
            Some(cell) => cell.stop(Some("stopped by its supervisor".into())),
            None => {
                self.children.remove(name);
            }
        }
        true
    }

    /// Records a restart of `name`; `Err` when the intensity is exceeded.
    fn count_restart(
        &mut self,
        registry: &Registry,
        name: &str,
        now: Instant,
    ) -> Result<(), ChildError> {
        let intensity = self.intensity;
        let Some(child) = self.children.get_mut(name) else {
            return Ok(());
        };
        while child
            .restarts
            .front()
            .is_some_and(|t| now.duration_since(*t) > intensity.window)
        {
            child.restarts.pop_front();
        }
        if child.restarts.len() >= intensity.max_restarts {
            return Err(ChildError::Exhausted {
                name: name.to_owned(),
                intensity,
            });
        }
        child.restarts.push_back(now);
        self.total_restarts += 1;
        if let Some(s) = registry.stats(name) {
            s.note_restart();
            registry.metrics().actor_restarted(s.actor_type);
        }
        Ok(())
    }

    fn backoff(&self, name: &str) -> Duration {
        let n = self
            .children
            .get(name)
            .map_or(0, |c| c.restarts.len() as u32);
        Duration::from_millis(100u64.saturating_mul(1 << n.min(6))).min(Duration::from_secs(5))
    }

    /// Restarts `name`, or escalates / gives up when its intensity is exceeded.
    async fn restart<M: Message>(
        &mut self,
        me: &Addr<M>,
        name: &str,
        retry: fn(String) -> M,
    ) -> Result<ChildEvent, ActorProcessingErr> {
        if let Err(e) = self.count_restart(me.registry(), name, Instant::now()) {
            let exhausted = self
                .children
                .get(name)
                .map_or(Exhausted::Escalate, |c| c.spec.exhausted);
            match exhausted {
                Exhausted::Escalate => {
                    tracing::error!(supervisor = me.name(), child = name, "{e}; escalating");
                    return Err(format!("{e}; escalating").into());
                }
                Exhausted::GiveUp => {
                    tracing::error!(supervisor = me.name(), child = name, "{e}; giving up on it");
                    self.children.remove(name);
                    me.registry().forget(name);
                    return Ok(ChildEvent::Exited {
                        name: name.to_owned(),
                        failed: true,
                        reason: format!("{e}; given up"),
                    });
                }
            }
        }
        if let Err(e) = self.start_existing(&me.cell(), name).await {
            let delay = self.backoff(name);
            tracing::warn!(
                supervisor = me.name(),
                child = name,
                ?delay,
                "{e}; retrying"
            );
            if let Some(c) = self.children.get_mut(name) {
                c.pending_retry = true;
            }
            let retry_name = name.to_owned();
            me.send_after(delay, move || retry(retry_name));
        } else {
            tracing::info!(supervisor = me.name(), child = name, "restarted");
        }
        Ok(ChildEvent::Handled)
    }

    /// Handles a timer set by a failed restart.
    pub async fn retry<M: Message>(
        &mut self,
        me: &Addr<M>,
        name: &str,
        retry: fn(String) -> M,
    ) -> Result<ChildEvent, ActorProcessingErr> {
        if self.children.get(name).is_some_and(|c| c.pending_retry) {
            return self.restart(me, name, retry).await;
        }
        Ok(ChildEvent::Handled)
    }

    /// Handles a supervision event: restarts the child per its policy, or reports it gone.
    pub async fn on_event<M: Message>(
        &mut self,
        me: &Addr<M>,
        event: SupervisionEvent,
        retry: fn(String) -> M,
    ) -> Result<ChildEvent, ActorProcessingErr> {
        let (cell, failed, why) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, true, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, false, reason.unwrap_or_else(|| "stopped".into()))
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {
                return Ok(ChildEvent::Handled);
            }
        };
        let Some(name) = me.registry().name_of(&cell) else {
            return Ok(ChildEvent::Handled);
        };
        let Some(child) = self.children.get_mut(&name) else {
            return Ok(ChildEvent::Handled);
        };
        // Ignore events of an incarnation that was already replaced.
        if child
            .cell
            .as_ref()
            .is_some_and(|c| c.get_id() != cell.get_id())
        {
            return Ok(ChildEvent::Handled);
        }
        child.cell = None;
        if failed {
            tracing::warn!(supervisor = me.name(), child = %name, error = %why, "child failed");
        } else {
            tracing::debug!(supervisor = me.name(), child = %name, reason = %why, "child stopped");
        }
        let restart = !child.stopping
            && match child.spec.restart {
                Restart::Permanent => true,
                Restart::Transient => failed,
                Restart::Temporary => false,
            };
        if restart {
            return self.restart(me, &name, retry).await;
        }
        self.children.remove(&name);
        if !failed {
            me.registry().forget(&name);
        }
        Ok(ChildEvent::Exited {
            name,
            failed,
            reason: why,
        })
    }

    pub fn inspect(&self) -> serde_json::Value {
        json!({
            "children": self.children.len(),
            "restartIntensity": {
                "maxRestarts": self.intensity.max_restarts,
                "windowSeconds": self.intensity.window.as_secs_f64(),
                "scope": "per child",
            },
            "totalRestarts": self.total_restarts,
            "pendingRetries": self.children.values().filter(|c| c.pending_retry).count(),
        })
    }
}

/// The plain supervisor: children given at start, plus `Start`/`Stop` requests.
pub struct Supervisor {
    pub actor_type: &'static str,
}

pub struct SupervisorArgs {
    pub intensity: Intensity,
    /// Children started in order before the supervisor takes messages.
    pub children: Vec<ChildSpec>,
}

pub struct SupervisorState {
    children: ChildSet,
}

impl Behaviour for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Args = SupervisorArgs;
    const TYPE: &'static str = "Supervisor";

    async fn pre_start(
        &self,
        me: Addr<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let mut children = ChildSet::new(args.intensity);
        for spec in args.children {
            children.start(&me.cell(), spec).await?;
        }
        Ok(SupervisorState { children })
    }

    async fn handle(
        &self,
        me: &Addr<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Start(spec, reply) => {
                let _ = reply.send(state.children.start(&me.cell(), spec).await);
            }
            SupervisorMsg::Stop(name, reply) => {
                let _ = reply.send(state.children.stop(&name));
            }
            SupervisorMsg::Retry(name) => {
                state
                    .children
                    .retry(me, &name, SupervisorMsg::Retry)
                    .await?;
            }
            SupervisorMsg::Children(reply) => {
                let _ = reply.send(state.children.names());
            }
        }
        Ok(())
    }

    fn inspect(&self, state: &SupervisorState) -> serde_json::Value {
        let mut v = state.children.inspect();
        v["type"] = json!(self.actor_type);
        v
    }

    async fn handle_supervisor_evt(
        &self,
        me: &Addr<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        state
            .children
            .on_event(me, event, SupervisorMsg::Retry)
            .await
            .map(|_| ())
    }
}
