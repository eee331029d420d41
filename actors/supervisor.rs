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
//! - A start that fails (the child's `init` returns an error) counts as a restart and is retried
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

use super::introspect::{self, Addr, Behaviour, Message};

/// Rebuilds a child under the given parent cell.
pub type StartFn = Arc<
    dyn Fn(ActorCell) -> Pin<Box<dyn Future<Output = Result<ActorCell, SpawnErr>> + Send>>
        + Send
        + Sync,
>;

/// Builds a [`StartFn`] from a behaviour constructor and cloneable arguments.
pub fn start_fn<B, F>(name: String, make: F) -> StartFn
where
    B: Behaviour,
    F: Fn() -> (B, B::Args) + Send + Sync + 'static,
{
    let make = Arc::new(make);
    Arc::new(move |parent: ActorCell| {
        let name = name.clone();
        let make = make.clone();
        Box::pin(async move {
            let (behaviour, args) = make();
            introspect::spawn(name, behaviour, args, Some(parent))
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
    pub start: StartFn,
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

pub enum SupervisorMsg {
    /// Start a child (replacing nothing: the name must be free).
    Start(ChildSpec, RpcReplyPort<Result<(), String>>),
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

pub struct Supervisor {
    pub actor_type: &'static str,
}

pub struct SupervisorArgs {
    pub intensity: Intensity,
    /// Children started in order before the supervisor takes messages.
    pub children: Vec<ChildSpec>,
}

struct Child {
    spec: ChildSpec,
    restarts: VecDeque<Instant>,
    /// Set when the child is not running and a retry timer is pending.
    pending_retry: bool,
    /// Set by `Stop`: the next termination is expected.
    stopping: bool,
    cell: Option<ActorCell>,
}

pub struct SupervisorState {
    intensity: Intensity,
    children: HashMap<String, Child>,
    total_restarts: u64,
    escalated: Option<String>,
}

impl SupervisorState {
    /// Records a restart of `name`; `Err` when the intensity is exceeded.
    fn count_restart(&mut self, name: &str, now: Instant) -> Result<(), String> {
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
            return Err(format!(
                "child {name} exceeded its restart intensity ({} restarts in {:?}); escalating",
                intensity.max_restarts, intensity.window
            ));
        }
        child.restarts.push_back(now);
        self.total_restarts += 1;
        if let Some(s) = introspect::stats(name) {
            s.note_restart();
        }
        Ok(())
    }

    /// Whether a stop of `name` (failed or not) calls for a restart.
    fn wants_restart(&mut self, name: &str, failed: bool) -> bool {
        let Some(child) = self.children.get_mut(name) else {
            return false;
        };
        child.cell = None;
        if child.stopping {
            self.children.remove(name);
            return false;
        }
        let restart = match child.spec.restart {
            Restart::Permanent => true,
            Restart::Transient => failed,
            Restart::Temporary => false,
        };
        if !restart {
            self.children.remove(name);
        }
        restart
    }

    fn backoff(&self, name: &str) -> Duration {
        let n = self
            .children
            .get(name)
            .map_or(0, |c| c.restarts.len() as u32);
        Duration::from_millis(100u64.saturating_mul(1 << n.min(6))).min(Duration::from_secs(5))
    }
}

async fn start_child(
    me: &Addr<SupervisorMsg>,
    state: &mut SupervisorState,
    name: &str,
) -> Result<(), String> {
    let Some(child) = state.children.get_mut(name) else {
        return Ok(());
    };
    child.pending_retry = false;
    match (child.spec.start)(me.cell()).await {
        Ok(cell) => {
            child.cell = Some(cell);
            Ok(())
        }
        Err(e) => Err(format!("starting {name} failed: {e}")),
    }
}

/// Restarts `name` after a stop, or escalates.
async fn restart(
    me: &Addr<SupervisorMsg>,
    state: &mut SupervisorState,
    name: &str,
) -> Result<(), ActorProcessingErr> {
    if let Err(e) = state.count_restart(name, Instant::now()) {
        tracing::error!(supervisor = me.name(), child = name, "{e}");
        state.escalated = Some(e.clone());
        return Err(e.into());
    }
    if let Err(e) = start_child(me, state, name).await {
        let delay = state.backoff(name);
        tracing::warn!(
            supervisor = me.name(),
            child = name,
            ?delay,
            "{e}; retrying"
        );
        if let Some(c) = state.children.get_mut(name) {
            c.pending_retry = true;
        }
        let retry = name.to_owned();
        me.send_after(delay, move || SupervisorMsg::Retry(retry));
    } else {
        tracing::info!(supervisor = me.name(), child = name, "restarted");
    }
    Ok(())
}

impl Behaviour for Supervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Args = SupervisorArgs;
    const TYPE: &'static str = "Supervisor";

    async fn init(
        &self,
        me: Addr<SupervisorMsg>,
        args: SupervisorArgs,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        let mut state = SupervisorState {
            intensity: args.intensity,
            children: HashMap::new(),
            total_restarts: 0,
            escalated: None,
        };
        for spec in args.children {
            let name = spec.name.clone();
            state.children.insert(
                name.clone(),
                Child {
                    spec,
                    restarts: VecDeque::new(),
                    pending_retry: false,
                    stopping: false,
                    cell: None,
                },
            );
            start_child(&me, &mut state, &name).await?;
        }
        Ok(state)
    }

    async fn handle(
        &self,
        me: &Addr<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Start(spec, reply) => {
                let name = spec.name.clone();
                if state.children.contains_key(&name) {
                    let _ = reply.send(Err(format!("{name} is already running")));
                    return Ok(());
                }
                state.children.insert(
                    name.clone(),
                    Child {
                        spec,
                        restarts: VecDeque::new(),
                        pending_retry: false,
                        stopping: false,
                        cell: None,
                    },
                );
                let result = start_child(me, state, &name).await;
                if result.is_err() {
                    state.children.remove(&name);
                }
                let _ = reply.send(result);
            }
            SupervisorMsg::Stop(name, reply) => {
                let existed = match state.children.get_mut(&name) {
                    Some(child) => {
                        child.stopping = true;
                        match &child.cell {
                            Some(cell) => cell.stop(Some("stopped by its supervisor".into())),
                            None => {
                                state.children.remove(&name);
                            }
                        }
                        true
                    }
                    None => false,
                };
                let _ = reply.send(existed);
            }
            SupervisorMsg::Retry(name) => {
                if state.children.get(&name).is_some_and(|c| c.pending_retry) {
                    restart(me, state, &name).await?;
                }
            }
            SupervisorMsg::Children(reply) => {
                let mut names: Vec<String> = state.children.keys().cloned().collect();
                names.sort();
                let _ = reply.send(names);
            }
        }
        Ok(())
    }

    fn inspect(&self, state: &SupervisorState) -> serde_json::Value {
        json!({
            "children": state.children.len(),
            "restartIntensity": {
                "maxRestarts": state.intensity.max_restarts,
                "windowSeconds": state.intensity.window.as_secs_f64(),
                "scope": "per child",
            },
            "totalRestarts": state.total_restarts,
            "pendingRetries": state.children.values().filter(|c| c.pending_retry).count(),
        })
    }

    async fn supervise(
        &self,
        me: &Addr<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        let (cell, failed, why) = match event {
            SupervisionEvent::ActorFailed(cell, err) => (cell, true, err.to_string()),
            SupervisionEvent::ActorTerminated(cell, _, reason) => {
                (cell, false, reason.unwrap_or_else(|| "stopped".into()))
            }
            SupervisionEvent::ActorStarted(_) | SupervisionEvent::ProcessGroupChanged(_) => {
                return Ok(());
            }
        };
        let Some(name) = cell.get_name() else {
            return Ok(());
        };
        // Ignore events of an incarnation we already replaced.
        if state
            .children
            .get(&name)
            .and_then(|c| c.cell.as_ref())
            .is_some_and(|c| c.get_id() != cell.get_id())
        {
            return Ok(());
        }
        if failed {
            tracing::warn!(supervisor = me.name(), child = %name, error = %why, "child failed");
        } else {
            tracing::debug!(supervisor = me.name(), child = %name, reason = %why, "child stopped");
        }
        if state.wants_restart(&name, failed) {
            restart(me, state, &name).await?;
        } else if !failed {
            introspect::forget(&name);
        }
        Ok(())
    }
}
