//! Cron triggers: the TriggerSupervisor (`triggers`) and one TriggerActor
//! (`trigger/<project>/<name>`) per cron trigger that is not suspended.
//!
//! The TriggerSupervisor reconciles on every published snapshot: new triggers start, deleted and
//! suspended ones stop, changed ones are reconfigured in place. It supervises the TriggerActors
//! with the shared [`ChildSet`]; a TriggerActor that keeps failing is given up on rather than
//! escalated, so one bad trigger never stops the others.
//!
//! A TriggerActor arms one timer for its next fire, computed from the previous *scheduled*
//! instant, never from "now"; when the timer message arrives it re-checks the clock (a wall-clock
//! step can wake it early), fires, records the fire and re-arms. At start it looks at what was
//! missed while it was not running: with `startingDeadlineSeconds`, the most recent missed fire
//! inside the deadline runs once; everything else is recorded as missed.
//!
//! Passivation: a TriggerActor whose next fire is further away than the resident window
//! (`--trigger-resident-window`, 60 s by default) asks the supervisor to passivate it. The
//! supervisor stops it and keeps only the trigger's next fire in a wake queue; half a window
//! before that fire it starts the TriggerActor again, which resumes from the persisted state
//! exactly as after a restart. A trigger the supervisor starts for the first time is planned the
//! same way ([`plan`]) without starting its actor at all. So only triggers that fire soon (or
//! often) hold an actor: 10,000 daily triggers cost a queue entry each, not an actor each.
//!
//! [`fire`] applies a trigger's `concurrencyPolicy` and creates the task; cron fires, webhook
//! deliveries and `orchestrator trigger fire` all go through it.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::{ActorProcessingErr, SupervisionEvent};
use serde_json::json;
use tokio::sync::watch;

use super::introspect::{Addr, Behaviour, Message};
use super::supervisor::{ChildEvent, ChildSet, ChildSpec, Exhausted, Intensity, Restart, start_fn};
use super::task_supervisor::{TASKS, TaskRequest, TaskSupMsg};
use crate::api::{ApiError, Armed, TaskInfo};
use crate::api::{EventKind, TriggerEvent};
use crate::domain::manifest::{ConcurrencyPolicy, Kind, TriggerSpec};
use crate::domain::schedule::{Schedule, missed_fires};
use crate::domain::snapshot::{CronTrigger, Snapshot};
use crate::domain::workflow::CancelReason;
use crate::store::{SaveRow, TaskStore, TriggerState, TriggerStore};

/// Registry name of the trigger supervisor.
pub const TRIGGERS: &str = "triggers";

/// How long before its instant a trigger's timer wakes (then it yields until the instant).
const EARLY_WAKE_MICROS: i64 = 1_500;

/// Longest a trigger timer sleeps before the wall clock is looked at again. Cron instants are
/// wall-clock instants but tokio sleeps on the monotonic clock, which a clock step (NTP) does
/// not move and a suspended machine does not advance; re-checking bounds the error to this.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// How long a fire waits for the task supervisor.
const TASKS_TIMEOUT: Duration = Duration::from_secs(30);

/// Most missed fires counted one by one after a long downtime (an every-second trigger down for
/// a week would otherwise be walked 600,000 times).
const MISSED_WALK: usize = 100_000;

/// Registry name of a trigger's actor.
pub fn trigger_name(project: &str, name: &str) -> String {
    format!("trigger/{project}/{name}")
}

fn now() -> DateTime<Utc> {
    Utc::now()
}

/// What the trigger actors share.
#[derive(Clone)]
pub struct TriggerContext {
    pub store: Arc<dyn TriggerStore>,
    pub tasks: Arc<dyn TaskStore>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub runs_dir: PathBuf,
    /// A trigger whose next fire is further away than this is passivated.
    pub resident_window: Duration,
}

/// The result of a fire.
#[derive(Debug, Clone)]
pub enum Fired {
    Created(Box<TaskInfo>),
    Skipped(String),
}

/// Applies `spec.concurrencyPolicy` and creates the trigger's task.
pub async fn fire(
    project: &str,
    name: &str,
    spec: &TriggerSpec,
    origin: String,
    scheduled_at: Option<DateTime<Utc>>,
    payload: Option<String>,
) -> Result<Fired, ApiError> {
    let tasks = Addr::<TaskSupMsg>::resolve(TASKS, Duration::from_secs(5))
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    let gone = |e: super::introspect::CallError| ApiError::unavailable(e.to_string());
    let active = match spec.concurrency_policy {
        ConcurrencyPolicy::Allow => Vec::new(),
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
            if let Some(id) = active.first() {
                return Ok(Fired::Skipped(format!(
                    "concurrencyPolicy Forbid: task {id} of this trigger is still pending or running"
                )));
            }
        }
        ConcurrencyPolicy::Replace => {
            for id in active {
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
    };
    let info = tasks
        .call(|reply| TaskSupMsg::Create(request, reply), TASKS_TIMEOUT)
        .await
        .map_err(gone)??;
    Ok(Fired::Created(Box::new(info)))
}

/// Where a trigger resumes from its persisted state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cursor {
    /// After this scheduled instant, which was handled (fired, skipped or recorded as missed).
    After(DateTime<Utc>),
    /// At this armed instant, not reached yet when the state was saved.
    Armed(DateTime<Utc>),
    /// From now: a new trigger, a changed spec, or a clock that went back.
    Fresh,
}

fn cursor(state: &TriggerState, generation: u64, now: DateTime<Utc>) -> Cursor {
    if state.generation != generation {
        return Cursor::Fresh;
    }
    match (state.last_scheduled, state.next_fire) {
        (Some(last), _) if last <= now => Cursor::After(last),
        (None, Some(next)) => Cursor::Armed(next),
        _ => Cursor::Fresh,
    }
}

/// The state of a trigger started afresh from `now`: same counters, new cursor.
fn fresh_state(
    mut state: TriggerState,
    generation: u64,
    next: Option<DateTime<Utc>>,
) -> TriggerState {
    state.generation = generation;
    state.last_scheduled = None;
    state.next_fire = next;
    state
}

/// What a trigger resuming from its persisted state does next.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    /// Arm the timer for this instant (none: the schedule never fires again).
    Arm(Option<DateTime<Utc>>),
    /// Run this missed fire now: it is inside `startingDeadlineSeconds`.
    CatchUp(DateTime<Utc>),
}

/// The outcome of [`resume`].
#[derive(Debug, Clone, PartialEq)]
struct Resumed {
    state: TriggerState,
    /// Whether `state` (and `event`) must be written before going on.
    save: bool,
    /// The record of fires missed while the trigger was not running.
    event: Option<TriggerEvent>,
    action: Action,
}

/// Resumes a trigger at `now` from its persisted state: what was missed since, and what comes
/// next. Pure: the TriggerActor's start and the supervisor's [`plan`] both use it.
fn resume(config: &TriggerConfig, state: TriggerState, now: DateTime<Utc>) -> Resumed {
    let schedule = &config.schedule;
    let anchor = match cursor(&state, config.generation, now) {
        Cursor::After(last) => last,
        Cursor::Armed(next) if next > now => {
            return Resumed {
                state,
                save: false,
                event: None,
                action: Action::Arm(Some(next)),
            };
        }
        // Fires are on whole seconds: the armed instant is the first one after this.
        Cursor::Armed(next) => next - chrono::Duration::milliseconds(1),
        Cursor::Fresh => {
            // New trigger, or a changed spec: start from now, and persist where, so that a
            // daemon stopped before the first fire knows what it missed.
            let next = schedule.next_after(now);
            return Resumed {
                state: fresh_state(state, config.generation, next),
                save: true,
                event: None,
                action: Action::Arm(next),
            };
        }
    };
    let deadline = config.spec.starting_deadline_seconds;
    let m = missed_fires(schedule, anchor, now, deadline, MISSED_WALK);
    let missed = m.recorded();
    let mut state = state;
    let mut event = None;
    if missed > 0 {
        // When one runs now, the span names only those that do not.
        let recorded_latest = if m.catch_up.is_some() {
            m.latest.and_then(|l| {
                let before: Vec<_> = schedule.upcoming(anchor, missed as usize);
                before.last().copied().filter(|b| *b < l)
            })
        } else {
            m.latest
        };
        state.missed += missed;
        let span = format!(
            "{missed} fire(s) from {} to {} were missed",
            m.first.map_or_else(String::new, |f| f.to_rfc3339()),
            recorded_latest.map_or_else(String::new, |l| l.to_rfc3339()),
        );
        let why = match (deadline, m.catch_up) {
            (Some(_), Some(_)) => format!(
                "the trigger was not running (daemon stopped or actor restarting): {span}; the latest one runs now"
            ),
            (Some(d), None) => format!(
                "the trigger was not running (daemon stopped or actor restarting): {span} (outside startingDeadlineSeconds {d})"
            ),
            (None, _) => format!(
                "the trigger was not running (daemon stopped or actor restarting): {span} (set startingDeadlineSeconds to run the latest one late)"
            ),
        };
        event = Some(TriggerEvent {
            at: now,
            kind: EventKind::Missed,
            scheduled: m.latest,
            task: None,
            lateness_ms: None,
            reason: Some(why),
        });
        if m.catch_up.is_none() {
            state.last_scheduled = m.latest;
        }
    }
    let action = match m.catch_up {
        Some(at) => Action::CatchUp(at),
        None => {
            let next = schedule.next_after(m.latest.unwrap_or(anchor));
            state.next_fire = next;
            Action::Arm(next)
        }
    };
    Resumed {
        state,
        save: event.is_some(),
        event,
        action,
    }
}

/// Where a trigger that has no TriggerActor belongs.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Start its TriggerActor: the next fire is inside the resident window, a missed fire is to
    /// run now (`startingDeadlineSeconds`), or the schedule never fires again.
    Resident,
    /// Keep it dormant until `next`. `save`: the state to persist first (with the record of what
    /// was missed, if anything), so that a restart meanwhile resumes at `next`.
    Dormant {
        next: DateTime<Utc>,
        save: Option<(TriggerState, Option<TriggerEvent>)>,
    },
}

/// Plans a trigger the supervisor is about to arm: the same decisions a TriggerActor's start
/// makes ([`resume`]), without starting one. Fires missed while the daemon was down are recorded
/// here too, so a restart after a long downtime does not start an actor per trigger.
pub fn plan(
    config: &TriggerConfig,
    state: Option<&TriggerState>,
    now: DateTime<Utc>,
    window: Duration,
) -> Plan {
    let r = resume(config, state.cloned().unwrap_or_default(), now);
    let window = chrono::Duration::from_std(window).unwrap_or(chrono::Duration::MAX);
    match r.action {
        Action::Arm(Some(next)) if next - now > window => Plan::Dormant {
            next,
            save: r.save.then_some((r.state, r.event)),
        },
        _ => Plan::Resident,
    }
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

/// What a TriggerActor runs.
#[derive(Clone)]
pub struct TriggerConfig {
    pub project: String,
    pub name: String,
    pub generation: u64,
    pub spec: TriggerSpec,
    pub schedule: Arc<Schedule>,
}

/// A TriggerActor's configuration, from the snapshot's lowered cron trigger.
fn config(key: &Key, cron: CronTrigger<'_>) -> Arc<TriggerConfig> {
    Arc::new(TriggerConfig {
        project: key.0.clone(),
        name: key.1.clone(),
        generation: cron.resource.generation,
        spec: cron.spec.clone(),
        schedule: cron.schedule.clone(),
    })
}

pub struct TriggerArgs {
    pub config: Arc<TriggerConfig>,
    /// The persisted state, when the supervisor already loaded it.
    pub state: Option<TriggerState>,
    pub ctx: Arc<TriggerContext>,
    /// The supervisor, asked to passivate this actor when its next fire is far.
    pub supervisor: Addr<TriggerSupMsg>,
}

pub struct TriggerActor;

pub struct TriggerActorState {
    config: Arc<TriggerConfig>,
    ctx: Arc<TriggerContext>,
    supervisor: Addr<TriggerSupMsg>,
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
    fn save(&self, event: Option<&TriggerEvent>) {
        if let Err(e) = self.ctx.store.save(
            &self.config.project,
            &self.config.name,
            &self.state,
            event,
            now(),
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
            let delay = (at - now() - chrono::Duration::microseconds(EARLY_WAKE_MICROS))
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

    async fn fire(&mut self, me: &Addr<TriggerMsg>, scheduled: DateTime<Utc>) {
        if self.next != Some(scheduled) {
            return; // A timer of a previous configuration.
        }
        let mut fired_at = now();
        if fired_at < scheduled {
            if scheduled - fired_at > chrono::Duration::microseconds(3 * EARLY_WAKE_MICROS) {
                // Woken well before the instant (a step towards a far instant, or the wall
                // clock moved): arm again.
                self.arm(me, Some(scheduled));
                return;
            }
            // The planned early wake: yield until the instant, letting other work run.
            while fired_at < scheduled {
                tokio::task::yield_now().await;
                fired_at = now();
            }
        }
        let lateness_ms = (fired_at - scheduled)
            .num_microseconds()
            .map(|us| us as f64 / 1000.0);
        let c = &self.config;
        let result = fire(
            &c.project,
            &c.name,
            &c.spec,
            format!("trigger/{}", c.name),
            Some(scheduled),
            None,
        )
        .await;
        self.state.last_scheduled = Some(scheduled);
        let event = match result {
            Ok(Fired::Created(task)) => {
                self.state.fires += 1;
                self.state.last_fire = Some(fired_at);
                self.state.last_task = Some(task.id);
                TriggerEvent {
                    at: fired_at,
                    kind: EventKind::Fired,
                    scheduled: Some(scheduled),
                    task: Some(task.id),
                    lateness_ms,
                    reason: None,
                }
            }
            Ok(Fired::Skipped(reason)) => {
                self.state.skips += 1;
                TriggerEvent {
                    at: fired_at,
                    kind: EventKind::Skipped,
                    scheduled: Some(scheduled),
                    task: None,
                    lateness_ms,
                    reason: Some(reason),
                }
            }
            Err(e) => {
                self.state.skips += 1;
                tracing::warn!(trigger = %c.name, error = %e, "trigger could not create its task");
                TriggerEvent {
                    at: fired_at,
                    kind: EventKind::Failed,
                    scheduled: Some(scheduled),
                    task: None,
                    lateness_ms,
                    reason: Some(e.to_string()),
                }
            }
        };
        // Re-arm from the scheduled instant; fires that are already past were missed.
        let schedule = self.config.schedule.clone();
        let now = now();
        let m = missed_fires(&schedule, scheduled, now, None, MISSED_WALK);
        let late = m.count;
        self.arm(me, schedule.next_after(m.resume_from));
        self.save(Some(&event));
        if late > 0 {
            self.state.missed += late;
            let missed = TriggerEvent {
                at: now,
                kind: EventKind::Missed,
                scheduled: None,
                task: None,
                lateness_ms: None,
                reason: Some(format!(
                    "{late} fire(s) passed while the previous one was handled"
                )),
            };
            self.save(Some(&missed));
        }
        self.prune();
    }

    /// Asks the supervisor to passivate this actor when its next fire is beyond the resident
    /// window. The state is already persisted; the supervisor ignores a stale request.
    fn passivate_if_far(&self) {
        let Some(next) = self.next else { return };
        let window =
            chrono::Duration::from_std(self.ctx.resident_window).unwrap_or(chrono::Duration::MAX);
        if next - now() <= window {
            return;
        }
        let _ = self.supervisor.cast(TriggerSupMsg::Passivate {
            key: (self.config.project.clone(), self.config.name.clone()),
            generation: self.config.generation,
            next,
        });
    }

    /// Applies `historyLimit`: old finished tasks of this trigger and their logs go.
    fn prune(&self) {
        let Some(limit) = self.config.spec.history_limit else {
            return;
        };
        match self.ctx.tasks.prune_trigger(
            &self.config.project,
            &self.config.name,
            limit.successful,
            limit.failed,
        ) {
            Ok(ids) => {
                for id in ids {
                    let _ = std::fs::remove_dir_all(self.ctx.runs_dir.join(id.to_string()));
                }
            }
            Err(e) => {
                tracing::warn!(trigger = %self.config.name, error = %e, "cannot prune trigger history")
            }
        }
    }
}

impl Behaviour for TriggerActor {
    type Msg = TriggerMsg;
    type State = TriggerActorState;
    type Args = TriggerArgs;
    const TYPE: &'static str = "TriggerActor";

    async fn init(
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
            supervisor: args.supervisor,
            state,
            next: None,
            timer: None,
        };
        st.start(&me, now());
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
                let span = tracing::info_span!("fire", trigger = %state.config.name, scheduled = %at.to_rfc3339());
                Box::pin(state.fire(me, at)).instrument(span).await
            }
            TriggerMsg::Reconfigure(config) => {
                state.config = config;
                state.state.generation = 0; // Forces a fresh start from now.
                state.start(me, now());
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

// ---------------------------------------------------------------------------------------------
// TriggerSupervisor
// ---------------------------------------------------------------------------------------------

/// (project, name) of a trigger.
type Key = (String, String);

pub enum TriggerSupMsg {
    /// A new snapshot was published.
    Reconcile,
    Retry(String),
    /// A TriggerActor's next fire is beyond the resident window: stop it until shortly before.
    Passivate {
        key: Key,
        generation: u64,
        next: DateTime<Utc>,
    },
    /// The wake queue's earliest instant came: start the TriggerActors due.
    Wake,
    /// Where a trigger is armed (`describe trigger`).
    Where {
        key: Key,
        reply: ractor::RpcReplyPort<Armed>,
    },
}

impl Message for TriggerSupMsg {
    fn kind(&self) -> &'static str {
        match self {
            TriggerSupMsg::Reconcile => "Reconcile",
            TriggerSupMsg::Retry(_) => "Retry",
            TriggerSupMsg::Passivate { .. } => "Passivate",
            TriggerSupMsg::Wake => "Wake",
            TriggerSupMsg::Where { .. } => "Where",
        }
    }
}

/// A passivated trigger: armed, without an actor.
#[derive(Debug, Clone, Copy)]
struct Dormant {
    generation: u64,
    next: DateTime<Utc>,
    wake_at: DateTime<Utc>,
}

pub struct TriggerSupervisor;

pub struct TriggerSupState {
    ctx: Arc<TriggerContext>,
    children: ChildSet,
    /// Generation each running TriggerActor was configured with.
    running: HashMap<Key, u64>,
    /// Passivated triggers, and the order they wake in.
    dormant: HashMap<Key, Dormant>,
    wakes: BTreeSet<(DateTime<Utc>, Key)>,
    /// The armed wake timer and its instant.
    wake_timer: Option<(DateTime<Utc>, tokio::task::JoinHandle<()>)>,
    watcher: tokio::task::JoinHandle<()>,
    revision: u64,
}

impl Drop for TriggerSupState {
    fn drop(&mut self) {
        self.watcher.abort();
        if let Some((_, t)) = self.wake_timer.take() {
            t.abort();
        }
    }
}

impl TriggerSupState {
    fn window(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.ctx.resident_window).unwrap_or(chrono::Duration::MAX)
    }

    /// Parks a trigger in the wake queue: it is started half a window before `next`.
    fn sleep(&mut self, key: Key, generation: u64, next: DateTime<Utc>) {
        let wake_at = next - self.window() / 2;
        self.park(
            key,
            Dormant {
                generation,
                next,
                wake_at,
            },
        );
    }

    fn park(&mut self, key: Key, d: Dormant) {
        self.wake(&key);
        self.wakes.insert((d.wake_at, key.clone()));
        self.dormant.insert(key, d);
    }

    /// Takes a trigger out of the wake queue.
    fn wake(&mut self, key: &Key) -> Option<Dormant> {
        let d = self.dormant.remove(key)?;
        self.wakes.remove(&(d.wake_at, key.clone()));
        Some(d)
    }

    /// Arms the one wake timer for the queue's earliest instant.
    fn arm_wake(&mut self, me: &Addr<TriggerSupMsg>) {
        let first = self.wakes.first().map(|(at, _)| *at);
        if let Some((armed, t)) = &self.wake_timer {
            if Some(*armed) == first {
                return;
            }
            t.abort();
        }
        self.wake_timer = first.map(|at| {
            // Far wakes are approached in steps of MAX_SLEEP, following the wall clock.
            let delay = (at - now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(MAX_SLEEP);
            (at, me.send_after(delay, || TriggerSupMsg::Wake))
        });
    }

    /// Starts the TriggerActors whose wake instant came.
    async fn wake_due(&mut self, me: &Addr<TriggerSupMsg>) {
        // This timer has fired, or this Wake is a stale one: either way `arm_wake` re-arms.
        if let Some((_, t)) = self.wake_timer.take() {
            t.abort();
        }
        let now = now();
        let due: Vec<Key> = self
            .wakes
            .iter()
            .take_while(|(at, _)| *at <= now)
            .map(|(_, k)| k.clone())
            .collect();
        let snapshot = self.ctx.snapshots.borrow().clone();
        for key in due {
            let Some(d) = self.wake(&key) else { continue };
            let name = trigger_name(&key.0, &key.1);
            let config = match snapshot.cron_trigger(&key.0, &key.1) {
                Some(c) if !c.spec.suspend => config(&key, c),
                _ => continue,
            };
            if self.children.is_stopping(&name) {
                // Its previous actor has not finished stopping: look again shortly.
                let wake_at = now + chrono::Duration::milliseconds(50);
                self.park(key, Dormant { wake_at, ..d });
                continue;
            }
            // The actor resumes from the persisted state.
            if let Err(e) = self.start_actor(me, key.clone(), config, None).await {
                tracing::warn!(trigger = %key.1, error = %e, "cannot wake trigger; retrying");
                me.send_after(Duration::from_millis(50), || TriggerSupMsg::Reconcile);
            }
        }
        self.arm_wake(me);
    }

    /// Starts a trigger's actor under the supervisor.
    async fn start_actor(
        &mut self,
        me: &Addr<TriggerSupMsg>,
        key: Key,
        config: Arc<TriggerConfig>,
        state: Option<TriggerState>,
    ) -> Result<(), String> {
        let name = trigger_name(&key.0, &key.1);
        let generation = config.generation;
        let ctx = self.ctx.clone();
        let supervisor = me.clone();
        let spec = ChildSpec {
            name: name.clone(),
            restart: Restart::Permanent,
            exhausted: Exhausted::GiveUp,
            start: {
                let state = std::sync::Mutex::new(state);
                start_fn(name, move || {
                    // The loaded state serves the first start; restarts reload it.
                    let state = state.lock().ok().and_then(|mut s| s.take());
                    (
                        TriggerActor,
                        TriggerArgs {
                            config: config.clone(),
                            state,
                            ctx: ctx.clone(),
                            supervisor: supervisor.clone(),
                        },
                    )
                })
            },
        };
        self.children.start(&me.cell(), spec).await?;
        self.running.insert(key, generation);
        Ok(())
    }

    async fn reconcile(&mut self, me: &Addr<TriggerSupMsg>) {
        let snapshot = self.ctx.snapshots.borrow().clone();
        self.revision = snapshot.revision;
        let desired: HashMap<Key, CronTrigger<'_>> = snapshot
            .cron_triggers()
            .filter(|c| !c.spec.suspend)
            .map(|c| {
                let key = &c.resource.key;
                ((key.project.clone(), key.name.clone()), c)
            })
            .collect();
        // Stop what is no longer wanted; forget the state of deleted triggers.
        let armed: Vec<Key> = self
            .running
            .keys()
            .chain(self.dormant.keys())
            .cloned()
            .collect();
        for key in armed {
            if !desired.contains_key(&key) {
                if self.running.remove(&key).is_some() {
                    self.children.stop(&trigger_name(&key.0, &key.1));
                }
                self.wake(&key);
                if snapshot.lookup(&key.0, Kind::Trigger, &key.1).is_none()
                    && let Err(e) = self.ctx.store.remove(&key.0, &key.1)
                {
                    tracing::warn!(trigger = %key.1, error = %e, "cannot forget a deleted trigger");
                }
            }
        }
        let mut states = None;
        let mut saves = Vec::new();
        let mut retry = false;
        let now = now();
        for (key, cron) in desired {
            let generation = cron.resource.generation;
            match (self.running.get(&key), self.dormant.get(&key)) {
                (Some(g), _) if *g == generation => continue,
                (None, Some(d)) if d.generation == generation => continue,
                _ => {}
            }
            let config = config(&key, cron);
            let name = trigger_name(&key.0, &key.1);
            if let Some(g) = self.running.get_mut(&key) {
                if let Some(a) = Addr::<TriggerMsg>::lookup(&name) {
                    let _ = a.cast(TriggerMsg::Reconfigure(config));
                }
                *g = generation;
                continue;
            }
            // Not running (new, changed while dormant, or the daemon just started).
            let was_dormant = self.wake(&key).is_some();
            let all = match &mut states {
                Some(s) => s,
                None => states.insert(self.ctx.store.all().unwrap_or_default()),
            };
            let mut state = all.remove(&key);
            if was_dormant && let Some(s) = &mut state {
                s.generation = 0; // Changed while dormant: start afresh, as a Reconfigure does.
            }
            match plan(&config, state.as_ref(), now, self.ctx.resident_window) {
                Plan::Dormant { next, save } => {
                    if let Some((state, event)) = save {
                        saves.push(SaveRow {
                            project: key.0.clone(),
                            name: key.1.clone(),
                            state,
                            event,
                        });
                    }
                    self.sleep(key, generation, next);
                }
                Plan::Resident if self.children.is_stopping(&name) => retry = true,
                Plan::Resident => {
                    if let Err(e) = self.start_actor(me, key.clone(), config, state).await {
                        tracing::warn!(trigger = %key.1, error = %e, "cannot start trigger; retrying");
                        retry = true;
                    }
                }
            }
        }
        if let Err(e) = self.ctx.store.save_many(&saves, now) {
            // The triggers stay armed; a restart before their first fire starts them from then.
            tracing::error!(error = %e, "cannot record the state of passivated triggers");
        }
        self.arm_wake(me);
        if retry {
            me.send_after(Duration::from_millis(50), || TriggerSupMsg::Reconcile);
        }
    }

    fn armed(&self, key: &Key) -> Armed {
        if self.running.contains_key(key) {
            Armed::Actor {
                actor: trigger_name(&key.0, &key.1),
            }
        } else if let Some(d) = self.dormant.get(key) {
            Armed::WakeQueue {
                wake_at: d.wake_at,
                next_fire: d.next,
            }
        } else {
            Armed::NotArmed
        }
    }

    /// Stops a TriggerActor that asked to be passivated, unless it changed meanwhile.
    fn passivate(
        &mut self,
        me: &Addr<TriggerSupMsg>,
        key: Key,
        generation: u64,
        next: DateTime<Utc>,
    ) {
        if self.running.get(&key) != Some(&generation) || next - now() <= self.window() / 2 {
            return;
        }
        self.running.remove(&key);
        self.children.stop(&trigger_name(&key.0, &key.1));
        self.sleep(key, generation, next);
        self.arm_wake(me);
    }
}

impl Behaviour for TriggerSupervisor {
    type Msg = TriggerSupMsg;
    type State = TriggerSupState;
    type Args = TriggerContext;
    const TYPE: &'static str = "TriggerSupervisor";

    async fn init(
        &self,
        me: Addr<TriggerSupMsg>,
        ctx: TriggerContext,
    ) -> Result<TriggerSupState, ActorProcessingErr> {
        let mut rx = ctx.snapshots.clone();
        let notify = me.clone();
        let watcher = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                if notify.cast(TriggerSupMsg::Reconcile).is_err() {
                    break;
                }
            }
        });
        // Arm the triggers after the daemon is ready, not inside its start-up.
        me.cast(TriggerSupMsg::Reconcile)?;
        Ok(TriggerSupState {
            ctx: Arc::new(ctx),
            children: ChildSet::new(Intensity::default()),
            running: HashMap::new(),
            dormant: HashMap::new(),
            wakes: BTreeSet::new(),
            wake_timer: None,
            watcher,
            revision: 0,
        })
    }

    async fn handle(
        &self,
        me: &Addr<TriggerSupMsg>,
        msg: TriggerSupMsg,
        state: &mut TriggerSupState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TriggerSupMsg::Reconcile => state.reconcile(me).await,
            TriggerSupMsg::Passivate {
                key,
                generation,
                next,
            } => state.passivate(me, key, generation, next),
            TriggerSupMsg::Wake => state.wake_due(me).await,
            TriggerSupMsg::Where { key, reply } => {
                let _ = reply.send(state.armed(&key));
            }
            TriggerSupMsg::Retry(name) => {
                if let ChildEvent::Exited { name, .. } = state
                    .children
                    .retry(me, &name, TriggerSupMsg::Retry)
                    .await?
                {
                    state
                        .running
                        .retain(|k, _| trigger_name(&k.0, &k.1) != name);
                }
            }
        }
        Ok(())
    }

    fn inspect(&self, state: &TriggerSupState) -> serde_json::Value {
        let upcoming: Vec<_> = state
            .wakes
            .iter()
            .take(10)
            .map(|(at, k)| {
                json!({
                    "trigger": trigger_name(&k.0, &k.1),
                    "wakeAt": at.to_rfc3339(),
                    "nextFire": state.dormant.get(k).map(|d| d.next.to_rfc3339()),
                })
            })
            .collect();
        json!({
            "triggers": state.running.len() + state.dormant.len(),
            "resident": state.running.len(),
            "dormant": state.dormant.len(),
            "residentWindowSeconds": state.ctx.resident_window.as_secs(),
            "nextWakes": upcoming,
            "snapshotRevision": state.revision,
            "supervision": state.children.inspect(),
        })
    }

    async fn supervise(
        &self,
        me: &Addr<TriggerSupMsg>,
        event: SupervisionEvent,
        state: &mut TriggerSupState,
    ) -> Result<(), ActorProcessingErr> {
        if let ChildEvent::Exited {
            name,
            failed,
            reason,
        } = state
            .children
            .on_event(me, event, TriggerSupMsg::Retry)
            .await?
        {
            state
                .running
                .retain(|k, _| trigger_name(&k.0, &k.1) != name);
            if failed {
                tracing::error!(trigger = %name, %reason, "trigger stopped after repeated failures; re-apply it to start it again");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, h, m, s)
            .single()
            .expect("valid instant")
    }

    fn config(expr: &str, generation: u64, extra: &str) -> TriggerConfig {
        let spec: TriggerSpec = serde_yaml::from_str(&format!(
            "cron: {{schedule: \"{expr}\"}}\naction: {{workflow: w, workspace: default}}\n{extra}"
        ))
        .expect("trigger spec");
        TriggerConfig {
            project: "default".into(),
            name: "t".into(),
            generation,
            spec,
            schedule: Arc::new(Schedule::parse(expr, None).expect("schedule")),
        }
    }

    fn state(
        generation: u64,
        last: Option<DateTime<Utc>>,
        next: Option<DateTime<Utc>>,
    ) -> TriggerState {
        TriggerState {
            generation,
            last_scheduled: last,
            next_fire: next,
            fires: 3,
            ..TriggerState::default()
        }
    }

    /// Plans a generation-2 trigger at 12:00:00 with a 60 s window.
    fn plan_at_noon(expr: &str, extra: &str, st: Option<&TriggerState>) -> Plan {
        plan(
            &config(expr, 2, extra),
            st,
            at(12, 0, 0),
            Duration::from_secs(60),
        )
    }

    fn check(expr: &str, st: Option<TriggerState>, want: Plan) {
        assert_eq!(
            plan_at_noon(expr, "", st.as_ref()),
            want,
            "{expr} from {st:?}"
        );
    }

    const HOURLY: &str = "0 * * * *";

    #[test]
    fn plans_triggers_without_an_actor() {
        // A new trigger: dormant until its first fire, whose cursor is persisted.
        let fresh = TriggerState {
            generation: 2,
            next_fire: Some(at(13, 0, 0)),
            ..TriggerState::default()
        };
        check(
            HOURLY,
            None,
            Plan::Dormant {
                next: at(13, 0, 0),
                save: Some((fresh, None)),
            },
        );
        // Resuming after a handled fire, or at an armed instant not reached: that fire, nothing
        // to save.
        for st in [
            state(2, Some(at(12, 0, 0)), Some(at(13, 0, 0))),
            state(2, None, Some(at(13, 0, 0))),
        ] {
            let want = Plan::Dormant {
                next: at(13, 0, 0),
                save: None,
            };
            check(HOURLY, Some(st), want);
        }
        // Fires inside the window keep the actor resident.
        check("*/30 * * * * *", None, Plan::Resident);
        check(
            "0 * * * * *",
            Some(state(2, Some(at(11, 59, 0)), None)),
            Plan::Resident,
        );
        // A changed spec, or a clock that went back behind the last fire: afresh from now,
        // keeping the counters.
        let afresh = TriggerState {
            generation: 2,
            next_fire: Some(at(13, 0, 0)),
            fires: 3,
            ..TriggerState::default()
        };
        for st in [
            state(1, Some(at(9, 0, 0)), Some(at(10, 0, 0))),
            state(2, Some(at(14, 0, 0)), Some(at(15, 0, 0))),
        ] {
            let want = Plan::Dormant {
                next: at(13, 0, 0),
                save: Some((afresh.clone(), None)),
            };
            check(HOURLY, Some(st), want);
        }
    }

    #[test]
    fn plans_record_missed_fires_without_an_actor_unless_one_runs_late() {
        // (last handled, armed, missed, last instant)
        let cases = [
            // Down since after the 09:00 fire: 10:00, 11:00 and 12:00 (due now) were missed.
            (
                Some(at(9, 0, 0)),
                Some(at(10, 0, 0)),
                3,
                "2026-11-29T10:00:00+00:00",
            ),
            // Armed for 11:00 and never reached it: 11:00 and 12:00.
            (None, Some(at(11, 0, 0)), 2, "2026-11-29T11:00:00+00:00"),
        ];
        for (last, armed, missed, first) in cases {
            let st = state(2, last, armed);
            let Plan::Dormant {
                next,
                save: Some((saved, Some(event))),
            } = plan_at_noon(HOURLY, "", Some(&st))
            else {
                panic!("{st:?}: not dormant with a missed record");
            };
            assert_eq!(next, at(13, 0, 0));
            assert_eq!(saved.missed, missed);
            assert_eq!(saved.last_scheduled, Some(at(12, 0, 0)));
            assert_eq!(saved.next_fire, Some(at(13, 0, 0)));
            assert_eq!(saved.fires, 3);
            assert_eq!(event.kind, EventKind::Missed);
            assert_eq!(event.scheduled, Some(at(12, 0, 0)));
            let reason = event.reason.unwrap_or_default();
            assert!(
                reason.contains(&format!("{missed} fire(s) from {first}")),
                "{reason}"
            );
        }
        // With startingDeadlineSeconds the latest missed fire runs now: that takes the actor.
        let st = state(2, Some(at(9, 0, 0)), Some(at(10, 0, 0)));
        let deadline = "startingDeadlineSeconds: 3600\n";
        assert_eq!(plan_at_noon(HOURLY, deadline, Some(&st)), Plan::Resident);
    }
}
