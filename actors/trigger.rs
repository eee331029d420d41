//! TriggerActor (`trigger/<project>/<name>`): one per cron trigger that is armed with an
//! actor (see `trigger_supervisor.rs` for the others, which wait in the supervisor's wake queue).
//!
//! A TriggerActor arms one timer for its next fire, computed from the previous *scheduled*
//! instant, never from "now"; when the timer message arrives it re-checks the clock (a wall-clock
//! step can wake it early), fires, records the fire and re-arms. At start it resumes from the
//! persisted state and handles what was missed while it was not running. Every such decision is
//! `domain::trigger_plan`'s; this actor reads the [`Clock`] of its context once per message, arms
//! the timer, creates the task and writes the store.
//!
//! When its next fire is further away than the resident window, the actor asks to be passivated
//! through the [`Passivator`] in its args; it does not know its supervisor's message type.
//!
//! [`fire`] applies a trigger's `concurrencyPolicy` and creates the task; cron fires, webhook
//! deliveries and `orchestrator trigger fire` all go through it.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::ActorProcessingErr;
use serde_json::json;
use tokio::sync::watch;

use super::clock::Clock;
use super::cluster::Leadership;
use super::runtime::{Addr, Behaviour, CallError, Message, Registry};
use super::task_supervisor::{ActiveTasks, TASKS, TaskRequest, TaskSupMsg};
use super::workflow::TaskError;
use crate::api::TaskInfo;
use crate::domain::manifest::{ConcurrencyPolicy, TriggerSpec};
use crate::domain::snapshot::Snapshot;
use crate::domain::trigger_plan::{
    Action, Outcome, ResidentWindow, TriggerConfig, TriggerEvent, TriggerState, rearm, record_fire,
    resume,
};
use crate::domain::workflow::CancelReason;
use crate::store::{Fence, SeenDelivery, StoreError, TriggerStore};

/// How long before its instant a trigger's timer wakes (then it waits out the rest).
const EARLY_WAKE_MICROS: i64 = 1_500;

/// Longest a trigger timer sleeps before the wall clock is looked at again. Cron instants are
/// wall-clock instants but tokio sleeps on the monotonic clock, which a clock step (NTP) does
/// not move and a suspended machine does not advance; re-checking bounds the error to this.
pub(super) const MAX_SLEEP: Duration = Duration::from_secs(60);

/// How long a fire waits for the task supervisor.
const TASKS_TIMEOUT: Duration = Duration::from_secs(30);

/// Registry name of a trigger's actor.
pub fn trigger_name(project: &str, name: &str) -> String {
    format!("trigger/{project}/{name}")
}

/// What the trigger actors share.
#[derive(Clone)]
pub struct TriggerContext {
    pub store: Arc<dyn TriggerStore>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// A trigger whose next fire is further away than this is passivated; `None` (the default):
    /// every trigger keeps its TriggerActor.
    pub resident_window: Option<Duration>,
    /// Where "now" comes from: the system clock in the daemon.
    pub clock: Clock,
    /// Whether this node leads (see `cluster.rs`): only the leader's TriggerActors run, and
    /// each fire carries the lease's fence into the task's commit.
    pub leadership: Leadership,
}

impl TriggerContext {
    pub fn window(&self) -> ResidentWindow {
        ResidentWindow::new(self.resident_window)
    }
}

/// The result of a fire.
#[derive(Debug, Clone)]
pub enum Fired {
    Created(Box<TaskInfo>),
    Skipped(String),
}

/// Why a fire created no task (a skip by the concurrency policy is not an error).
#[derive(Debug, thiserror::Error)]
pub enum FireError {
    /// The task supervisor is not there or did not answer.
    #[error("{0}")]
    Tasks(CallError),
    /// The task supervisor refused the task.
    #[error(transparent)]
    Task(#[from] TaskError),
}

/// Applies `spec.concurrencyPolicy` and creates the trigger's task (answering once it is
/// durable); `delivery` is the webhook delivery the task answers, recorded in its commit.
#[allow(clippy::too_many_arguments)]
pub async fn fire(
    actors: &Registry,
    project: &str,
    name: &str,
    spec: &TriggerSpec,
    origin: String,
    scheduled_at: Option<DateTime<Utc>>,
    payload: Option<String>,
    delivery: Option<SeenDelivery>,
    fence: Option<Fence>,
) -> Result<Fired, FireError> {
    let tasks = actors
        .resolve::<TaskSupMsg>(TASKS, Duration::from_secs(5))
        .await
        .map_err(FireError::Tasks)?;
    let gone = FireError::Tasks;
    let active = match spec.concurrency_policy {
        ConcurrencyPolicy::Allow => ActiveTasks::default(),
        ConcurrencyPolicy::Forbid | ConcurrencyPolicy::Replace => tasks
            .call(
                |reply| TaskSupMsg::Active {
                    project: project.to_owned(),
                    trigger: name.to_owned(),
                    reply,
                },
                TASKS_TIMEOUT,
            )
            .await
            .map_err(gone)?,
    };
    match spec.concurrency_policy {
        ConcurrencyPolicy::Allow => {}
        ConcurrencyPolicy::Forbid => {
            if let Some(id) = active.ids.first() {
                return Ok(Fired::Skipped(format!(
                    "concurrencyPolicy Forbid: task {id} of this trigger is still pending or running"
                )));
            }
            if active.creating > 0 {
                return Ok(Fired::Skipped(
                    "concurrencyPolicy Forbid: a task of this trigger is being created".to_owned(),
                ));
            }
        }
        ConcurrencyPolicy::Replace => {
            // A task still being committed cannot be cancelled yet: it runs.
            for id in active.ids {
                let why = format!("a newer fire of trigger {name:?} replaced it");
                // A task that ended meanwhile answers with an error; either way it is gone.
                let _ = tasks
                    .call(
                        |reply| TaskSupMsg::Cancel(id, CancelReason::Replaced(why), reply),
                        TASKS_TIMEOUT,
                    )
                    .await
                    .map_err(gone)?;
            }
        }
    }
    let goal = spec.action.goal.clone().or_else(|| {
        Some(match scheduled_at {
            Some(at) => format!("Run of trigger {name:?} scheduled for {}", at.to_rfc3339()),
            None => format!("Run of trigger {name:?}"),
        })
    });
    let request = TaskRequest {
        project: project.to_owned(),
        workflow: spec.action.workflow.clone(),
        workspace: Some(spec.action.workspace.clone()),
        goal,
        payload,
        origin,
        trigger: Some(name.to_owned()),
        scheduled_at,
        start: spec.action.start,
        delivery,
        fence,
    };
    let info = tasks
        .call(|reply| TaskSupMsg::Create(request, reply), TASKS_TIMEOUT)
        .await
        .map_err(gone)??;
    Ok(Fired::Created(Box::new(info)))
}

// ---------------------------------------------------------------------------------------------
// TriggerActor
// ---------------------------------------------------------------------------------------------

pub enum TriggerMsg {
    /// The timer for the fire scheduled at this instant.
    Fire(DateTime<Utc>),
    /// The trigger's spec changed: re-arm from now with the new schedule.
    Reconfigure(Arc<TriggerConfig>),
}

impl Message for TriggerMsg {
    fn kind(&self) -> &'static str {
        match self {
            TriggerMsg::Fire(_) => "Fire",
            TriggerMsg::Reconfigure(_) => "Reconfigure",
        }
    }
}

/// A TriggerActor's request to be stopped until shortly before its next fire, which is beyond
/// the resident window. The state is already persisted; a stale request is ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passivate {
    pub project: String,
    pub name: String,
    pub generation: u64,
    pub next: DateTime<Utc>,
}

/// Where a TriggerActor sends its [`Passivate`] requests (its supervisor, wrapped).
pub type Passivator = Arc<dyn Fn(Passivate) + Send + Sync>;

pub struct TriggerArgs {
    pub config: Arc<TriggerConfig>,
    /// The persisted state, when the supervisor already loaded it.
    pub state: Option<TriggerState>,
    pub ctx: Arc<TriggerContext>,
    /// Asked to passivate this actor when its next fire is far.
    pub passivate: Passivator,
}

pub struct TriggerActor;

pub struct TriggerActorState {
    config: Arc<TriggerConfig>,
    ctx: Arc<TriggerContext>,
    passivate: Passivator,
    state: TriggerState,
    /// The armed fire.
    next: Option<DateTime<Utc>>,
    timer: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for TriggerActorState {
    fn drop(&mut self) {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
    }
}

impl TriggerActorState {
    fn now(&self) -> DateTime<Utc> {
        self.ctx.clock.now()
    }

    fn save(&self, event: Option<&TriggerEvent>) {
        if let Err(e) = self.ctx.store.save(
            &self.config.project,
            &self.config.name,
            &self.state,
            event,
            self.now(),
        ) {
            tracing::error!(trigger = %self.config.name, error = %e, "cannot record trigger state");
        }
    }

    /// Arms the one timer for `at`.
    fn arm(&mut self, me: &Addr<TriggerMsg>, at: Option<DateTime<Utc>>) {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
        self.next = at;
        self.state.next_fire = at;
        if let Some(at) = at {
            // Tokio's timer has millisecond ticks and rounds up; waking a little early and
            // waiting out the rest (see `fire`) keeps fires on time.
            // A far instant is approached in steps of at most MAX_SLEEP (`fire` re-arms when it
            // is woken before the instant).
            let delay = (at - self.now() - chrono::Duration::microseconds(EARLY_WAKE_MICROS))
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(MAX_SLEEP);
            self.timer = Some(me.send_after(delay, move || TriggerMsg::Fire(at)));
        }
    }

    /// Resumes from the persisted state: records what was missed, then arms the next fire or
    /// runs the missed one that is still inside `startingDeadlineSeconds`.
    fn start(&mut self, me: &Addr<TriggerMsg>, now: DateTime<Utc>) {
        let r = resume(&self.config, std::mem::take(&mut self.state), now);
        self.state = r.state;
        if r.save {
            self.save(r.event.as_ref());
        }
        match r.action {
            Action::Arm(next) => self.arm(me, next),
            Action::CatchUp(at) => {
                // Fire it now; re-arming follows from that fire.
                self.next = Some(at);
                let _ = me.cast(TriggerMsg::Fire(at));
            }
        }
    }

    /// Arms the fire after `scheduled` without recording anything: this node does not lead, so
    /// the trigger's state is the new leader's to write.
    fn pass_over(&mut self, me: &Addr<TriggerMsg>, scheduled: DateTime<Utc>) {
        let r = rearm(&self.config.schedule, scheduled, self.now());
        self.arm(me, r.next);
    }

    async fn fire(&mut self, me: &Addr<TriggerMsg>, scheduled: DateTime<Utc>) {
        if self.next != Some(scheduled) {
            return; // A timer of a previous configuration.
        }
        let mut fired_at = self.now();
        if fired_at < scheduled {
            if scheduled - fired_at > chrono::Duration::microseconds(3 * EARLY_WAKE_MICROS) {
                // Woken well before the instant (a step towards a far instant, or the wall
                // clock moved): arm again.
                self.arm(me, Some(scheduled));
                return;
            }
            // The planned early wake: wait out the instant, letting other work run.
            fired_at = self.ctx.clock.wait_until(scheduled).await;
        }
        let c = &self.config;
        // Only the leader fires; one that lost the lease (or stopped renewing it) records
        // nothing, so the new leader's view of this trigger stays whole.
        let lead = self.ctx.leadership.borrow().clone();
        let Some(lead) = lead.filter(|l| l.holds()) else {
            tracing::info!(trigger = %c.name, scheduled = %scheduled.to_rfc3339(), "not firing: this node no longer leads");
            return self.pass_over(me, scheduled);
        };
        let result = fire(
            me.registry(),
            &c.project,
            &c.name,
            &c.spec,
            format!("trigger/{}", c.name),
            Some(scheduled),
            None,
            None,
            Some(lead.fence),
        )
        .await;
        let outcome = match result {
            Ok(Fired::Created(task)) => Outcome::Created(task.id),
            Ok(Fired::Skipped(reason)) => Outcome::Skipped(reason),
            Err(FireError::Task(TaskError::Store(StoreError::Fenced))) => {
                tracing::warn!(trigger = %c.name, scheduled = %scheduled.to_rfc3339(), "not fired: another node took the leader lease");
                return self.pass_over(me, scheduled);
            }
            Err(FireError::Task(TaskError::Store(StoreError::AlreadyFired { task }))) => {
                // Fired by an earlier leader, which did not get to record it.
                Outcome::Skipped(format!(
                    "this instant was already fired by another node (task {task})"
                ))
            }
            Err(e) => {
                tracing::warn!(trigger = %c.name, error = %e, "trigger could not create its task");
                Outcome::Failed(e.to_string())
            }
        };
        let event = record_fire(&mut self.state, scheduled, fired_at, outcome);
        if let Some(ms) = event.lateness_ms {
            me.registry().metrics().fire_lateness(ms / 1000.0);
        }
        // Re-arm from the scheduled instant; fires that are already past were missed.
        let r = rearm(&self.config.schedule, scheduled, self.now());
        self.arm(me, r.next);
        self.save(Some(&event));
        if let Some(late) = r.late {
            late.count_in(&mut self.state);
            self.save(Some(&late.event));
        }
    }

    /// The trigger's counts so far: fires that created a task, skipped fires, missed fires.
    fn counts(&self) -> [u64; 3] {
        [self.state.fires, self.state.skips, self.state.missed]
    }

    /// Counts in the daemon's metrics what the trigger's counts gained since `before`.
    fn count_since(&self, me: &Addr<TriggerMsg>, before: [u64; 3]) {
        let [fires, skips, missed] = self.counts();
        me.registry().metrics().cron(
            &self.config.project,
            &self.config.name,
            fires.saturating_sub(before[0]),
            skips.saturating_sub(before[1]),
            missed.saturating_sub(before[2]),
        );
    }

    /// Asks the supervisor to passivate this actor when its next fire is beyond the resident
    /// window. The state is already persisted; the supervisor ignores a stale request.
    fn passivate_if_far(&self) {
        let Some(next) = self.next else { return };
        if !self.ctx.window().is_far(next, self.now()) {
            return;
        }
        (self.passivate)(Passivate {
            project: self.config.project.clone(),
            name: self.config.name.clone(),
            generation: self.config.generation,
            next,
        });
    }
}

impl Behaviour for TriggerActor {
    type Msg = TriggerMsg;
    type State = TriggerActorState;
    type Args = TriggerArgs;
    const TYPE: &'static str = "TriggerActor";

    async fn pre_start(
        &self,
        me: Addr<TriggerMsg>,
        args: TriggerArgs,
    ) -> Result<TriggerActorState, ActorProcessingErr> {
        let state = match args.state {
            Some(s) => s,
            None => args
                .ctx
                .store
                .get(&args.config.project, &args.config.name)?
                .unwrap_or_default(),
        };
        let mut st = TriggerActorState {
            config: args.config,
            ctx: args.ctx,
            passivate: args.passivate,
            state,
            next: None,
            timer: None,
        };
        let now = st.now();
        let before = st.counts();
        st.start(&me, now);
        st.count_since(&me, before);
        st.passivate_if_far();
        Ok(st)
    }

    async fn handle(
        &self,
        me: &Addr<TriggerMsg>,
        msg: TriggerMsg,
        state: &mut TriggerActorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            // Boxed: the fire is a large future, and keeping it inline would make every idle
            // TriggerActor's message loop that large too.
            TriggerMsg::Fire(at) => {
                use tracing::Instrument;
                // A root span per fire, linked to the timer that armed it: nested in the message's
                // span (the previous fire's), every log line would carry every earlier fire.
                let span = tracing::info_span!(parent: None, "fire", trigger = %state.config.name, scheduled = %at.to_rfc3339());
                span.follows_from(tracing::Span::current());
                let before = state.counts();
                Box::pin(state.fire(me, at)).instrument(span).await;
                state.count_since(me, before);
            }
            TriggerMsg::Reconfigure(config) => {
                state.config = config;
                state.state.start_afresh();
                let now = state.now();
                let before = state.counts();
                state.start(me, now);
                state.count_since(me, before);
            }
        }
        state.passivate_if_far();
        Ok(())
    }

    fn inspect(&self, state: &TriggerActorState) -> serde_json::Value {
        let tz = state.config.schedule.timezone();
        json!({
            "project": state.config.project,
            "trigger": state.config.name,
            "generation": state.config.generation,
            "schedule": state.config.schedule.expression(),
            "timezone": tz.name(),
            "concurrencyPolicy": format!("{:?}", state.config.spec.concurrency_policy),
            "nextFire": state.next.map(|n| n.to_rfc3339()),
            "nextFireLocal": state.next.map(|n| n.with_timezone(&tz).to_rfc3339()),
            "lastScheduled": state.state.last_scheduled.map(|t| t.to_rfc3339()),
            "lastFire": state.state.last_fire.map(|t| t.to_rfc3339()),
            "lastTask": state.state.last_task,
            "fires": state.state.fires,
            "skips": state.state.skips,
            "missed": state.state.missed,
        })
    }
}
