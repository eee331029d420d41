//! AgentActor (`agent/<task-id>/<step>/<n>`): wraps one agent subprocess. The WorkflowActor
//! starts the process (own process group, cleared environment, argv without a shell, see
//! `process/`) so that a start failure is an ordinary step error; this actor's `pre_start` records
//! the process group in the database and hands the wait — timeout, output streaming, reaping —
//! to a spawned task that reports back with `Exited`. The mailbox therefore stays free for `Cancel` (SIGTERM to the group, grace, SIGKILL).
//!
//! The actor reports the exit through a [`Recipient`] of [`AgentExited`] that its starter hands it
//! (the WorkflowActor derives one from its own address), so it never names its parent's message
//! type.
//!
//! The state holds a [`GroupGuard`]: if this actor fails or is killed with its parent, dropping
//! the state SIGKILLs the whole process group, so no agent outlives its actor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::ActorProcessingErr;
use serde_json::json;
use tracing::Instrument;

use super::runtime::{Addr, Behaviour, Message, Recipient};
use crate::process::{self, Canceller, Finished, GroupGuard, ProcessError, Running};
use crate::store::TaskStore;

pub enum AgentMsg {
    /// Stop the process: SIGTERM to its group, then SIGKILL after the grace period.
    Cancel,
    /// The process ended (sent by the wait task).
    Exited(Result<Finished, ProcessError>),
}

impl Message for AgentMsg {
    fn kind(&self) -> &'static str {
        match self {
            AgentMsg::Cancel => "Cancel",
            AgentMsg::Exited(_) => "Exited",
        }
    }
}

/// What an AgentActor reports to whoever started it: the process of its run ended.
pub struct AgentExited {
    pub run_id: u64,
    pub result: Result<Finished, ProcessError>,
}

pub struct AgentActor;

pub struct AgentArgs {
    pub run_id: u64,
    pub step: String,
    pub agent: Option<String>,
    pub program: String,
    pub timeout: Duration,
    pub running: Running,
    pub store: Arc<dyn TaskStore>,
    /// Where the exit goes.
    pub report: Recipient<AgentExited>,
}

pub struct AgentState {
    run_id: u64,
    step: String,
    agent: Option<String>,
    program: String,
    pid: u32,
    started: Instant,
    timeout: Duration,
    canceller: Canceller,
    cancelled: bool,
    guard: GroupGuard,
    report: Recipient<AgentExited>,
}

impl Behaviour for AgentActor {
    type Msg = AgentMsg;
    type State = AgentState;
    type Args = AgentArgs;
    const TYPE: &'static str = "AgentActor";
    const FORGET_ON_STOP: bool = true;

    async fn pre_start(
        &self,
        me: Addr<AgentMsg>,
        args: AgentArgs,
    ) -> Result<AgentState, ActorProcessingErr> {
        let AgentArgs {
            run_id,
            step,
            agent,
            program,
            timeout,
            running,
            store,
            report,
        } = args;
        let pid = running.pid();
        let guard = GroupGuard::new(pid as i32);
        let pid_start = process::start_time(pid as i32);
        // Record the group before anything else: after a crash, startup kills what is recorded.
        if let Err(e) = store.set_run_pid(run_id, pid as i32, pid_start) {
            tracing::warn!(run = run_id, error = %e, "cannot record the agent's process group");
        }
        let canceller = running.canceller();
        let reporter = me.clone();
        tokio::spawn(
            async move {
                let result = running.wait().await;
                let _ = reporter.cast(AgentMsg::Exited(result));
            }
            .instrument(tracing::Span::current()),
        );
        tracing::debug!(run = run_id, pid, program = %program, "agent started");
        Ok(AgentState {
            run_id,
            step,
            agent,
            program,
            pid,
            started: Instant::now(),
            timeout,
            canceller,
            cancelled: false,
            guard,
            report,
        })
    }

    async fn handle(
        &self,
        me: &Addr<AgentMsg>,
        msg: AgentMsg,
        state: &mut AgentState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            AgentMsg::Cancel => {
                state.cancelled = true;
                state.canceller.cancel();
            }
            AgentMsg::Exited(result) => {
                // The leader is reaped and the rest of its group killed by `wait`.
                state.guard.disarm();
                let _ = state.report.cast(AgentExited {
                    run_id: state.run_id,
                    result,
                });
                me.cell().stop(Some("agent exited".into()));
            }
        }
        Ok(())
    }

    fn inspect(&self, state: &AgentState) -> serde_json::Value {
        json!({
            "run": state.run_id,
            "step": state.step,
            "agent": state.agent,
            "program": state.program,
            "pid": state.pid,
            "runningSeconds": state.started.elapsed().as_secs_f64(),
            "timeoutSeconds": state.timeout.as_secs(),
            "cancelRequested": state.cancelled,
        })
    }
}
