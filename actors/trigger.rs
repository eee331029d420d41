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
//! [`fire`] applies a trigger's `concurrencyPolicy` and creates the task; cron fires, webhook
//! deliveries and `orchestrator trigger fire` all go through it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::{ActorProcessingErr, SupervisionEvent};
use serde_json::json;
use tokio::sync::watch;

use super::introspect::{Addr, Behaviour, Message};
use super::supervisor::{ChildEvent, ChildSet, ChildSpec, Exhausted, Intensity, Restart, start_fn};
use super::workflow::{CancelReason, TASKS, TaskRequest, TaskSupMsg};
use crate::api::{ApiError, TaskInfo};
use crate::domain::manifest::{ConcurrencyPolicy, Kind, Spec, TriggerSpec};
use crate::domain::schedule::{Schedule, missed_fires};
use crate::domain::snapshot::Snapshot;
use crate::task_store::TaskStore;
use crate::trigger_store::{EventKind, TriggerEvent, TriggerState, TriggerStore};

/// Registry name of the trigger supervisor.
pub const TRIGGERS: &str = "triggers";

/// How long before its instant a trigger's timer wakes (then it yields until the instant).
const EARLY_WAKE_MICROS: i64 = 1_500;

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
    pub store: TriggerStore,
    pub tasks: TaskStore,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub runs_dir: PathBuf,
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
    match spec.concurrency_policy {
        ConcurrencyPolicy::Allow => {}
        ConcurrencyPolicy::Forbid => {
            let active = tasks
                .call(
                    |reply| TaskSupMsg::Active {
                        project: project.to_owned(),
                        trigger: name.to_owned(),
                        reply,
                    },
                    TASKS_TIMEOUT,
                )
                .await
                .map_err(gone)?;
            if let Some(id) = active.first() {
                return Ok(Fired::Skipped(format!(
                    "concurrencyPolicy Forbid: task {id} of this trigger is still pending or running"
                )));
            }
        }
        ConcurrencyPolicy::Replace => {
            let active = tasks
                .call(
                    |reply| TaskSupMsg::Active {
                        project: project.to_owned(),
                        trigger: name.to_owned(),
                        reply,
                    },
                    TASKS_TIMEOUT,
                )
                .await
                .map_err(gone)?;
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

pub struct TriggerArgs {
    pub config: Arc<TriggerConfig>,
    /// The persisted state, when the supervisor already loaded it.
    pub state: Option<TriggerState>,
    pub ctx: Arc<TriggerContext>,
}

pub struct TriggerActor;

pub struct TriggerActorState {
    config: Arc<TriggerConfig>,
    ctx: Arc<TriggerContext>,
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
            let delay = (at - now() - chrono::Duration::microseconds(EARLY_WAKE_MICROS))
                .to_std()
                .unwrap_or(Duration::ZERO);
            self.timer = Some(me.send_after(delay, move || TriggerMsg::Fire(at)));
        }
    }

    /// Works out what was missed since the last scheduled fire, and what comes next.
    /// Returns a missed fire to run now (inside `startingDeadlineSeconds`), if any.
    fn start(&mut self, me: &Addr<TriggerMsg>, now: DateTime<Utc>) {
        let schedule = self.config.schedule.clone();
        let anchor = match self.state.last_scheduled {
            Some(last) if self.state.generation == self.config.generation && last <= now => last,
            _ => {
                // New trigger, or a changed spec: start from now.
                self.state.generation = self.config.generation;
                let next = schedule.next_after(now);
                self.arm(me, next);
                return;
            }
        };
        let m = missed_fires(
            &schedule,
            anchor,
            now,
            self.config.spec.starting_deadline_seconds,
            MISSED_WALK,
        );
        let missed = m.recorded();
        // When one runs now, the span names only those that do not.
        let recorded_latest = if m.catch_up.is_some() {
            m.latest.and_then(|l| {
                let before: Vec<_> = schedule.upcoming(anchor, missed as usize);
                before.last().copied().filter(|b| *b < l)
            })
        } else {
            m.latest
        };
        if missed > 0 {
            self.state.missed += missed;
            let span = format!(
                "{missed} fire(s) from {} to {} were missed",
                m.first.map_or_else(String::new, |f| f.to_rfc3339()),
                recorded_latest.map_or_else(String::new, |l| l.to_rfc3339()),
            );
            let why = match (self.config.spec.starting_deadline_seconds, m.catch_up) {
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
            let event = TriggerEvent {
                at: now,
                kind: EventKind::Missed,
                scheduled: m.latest,
                task: None,
                lateness_ms: None,
                reason: Some(why),
            };
            if m.catch_up.is_none() {
                self.state.last_scheduled = m.latest;
            }
            self.save(Some(&event));
        }
        let catch_up = m.catch_up;
        let latest = m.latest;
        match catch_up {
            Some(at) => {
                // Fire it now; re-arming follows from that fire.
                self.next = Some(at);
                let _ = me.cast(TriggerMsg::Fire(at));
            }
            None => {
                let next = schedule.next_after(latest.unwrap_or(anchor));
                self.arm(me, next);
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
                // Woken well before the instant (the wall clock moved): arm again.
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
            state,
            next: None,
            timer: None,
        };
        st.start(&me, now());
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

pub enum TriggerSupMsg {
    /// A new snapshot was published.
    Reconcile,
    Retry(String),
}

impl Message for TriggerSupMsg {
    fn kind(&self) -> &'static str {
        match self {
            TriggerSupMsg::Reconcile => "Reconcile",
            TriggerSupMsg::Retry(_) => "Retry",
        }
    }
}

pub struct TriggerSupervisor;

pub struct TriggerSupState {
    ctx: Arc<TriggerContext>,
    children: ChildSet,
    /// Generation each running TriggerActor was configured with.
    running: HashMap<(String, String), u64>,
    /// Parsed schedules shared by every trigger with the same expression and zone.
    schedules: HashMap<(String, Option<String>), Arc<Schedule>>,
    watcher: tokio::task::JoinHandle<()>,
    revision: u64,
}

impl Drop for TriggerSupState {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

impl TriggerSupState {
    fn schedule(&mut self, expr: &str, tz: Option<&str>) -> Option<Arc<Schedule>> {
        let key = (expr.to_owned(), tz.map(str::to_owned));
        if let Some(s) = self.schedules.get(&key) {
            return Some(s.clone());
        }
        match Schedule::parse(expr, tz) {
            Ok(s) => {
                let s = Arc::new(s);
                self.schedules.insert(key, s.clone());
                Some(s)
            }
            Err(e) => {
                // Validated at apply; a parse failure here means the grammar changed.
                tracing::error!(schedule = expr, error = %e, "stored cron schedule no longer parses");
                None
            }
        }
    }

    async fn reconcile(&mut self, me: &Addr<TriggerSupMsg>) {
        let snapshot = self.ctx.snapshots.borrow().clone();
        self.revision = snapshot.revision;
        let mut desired: HashMap<(String, String), (u64, TriggerSpec)> = HashMap::new();
        for r in snapshot.list(Kind::Trigger, None) {
            if let Spec::Trigger(t) = &r.spec
                && t.cron.is_some()
                && !t.suspend
            {
                desired.insert(
                    (r.key.project.clone(), r.key.name.clone()),
                    (r.generation, t.clone()),
                );
            }
        }
        // Stop what is no longer wanted; forget the state of deleted triggers.
        let running: Vec<(String, String)> = self.running.keys().cloned().collect();
        for key in running {
            if !desired.contains_key(&key) {
                self.children.stop(&trigger_name(&key.0, &key.1));
                self.running.remove(&key);
                if snapshot.lookup(&key.0, Kind::Trigger, &key.1).is_none()
                    && let Err(e) = self.ctx.store.remove(&key.0, &key.1)
                {
                    tracing::warn!(trigger = %key.1, error = %e, "cannot forget a deleted trigger");
                }
            }
        }
        let mut states = None;
        let mut retry = false;
        for (key, (generation, spec)) in desired {
            let Some(cron) = &spec.cron else { continue };
            let Some(schedule) = self.schedule(&cron.schedule, cron.timezone.as_deref()) else {
                continue;
            };
            let name = trigger_name(&key.0, &key.1);
            let config = Arc::new(TriggerConfig {
                project: key.0.clone(),
                name: key.1.clone(),
                generation,
                spec,
                schedule,
            });
            match self.running.get(&key) {
                Some(g) if *g == generation => {}
                Some(_) => {
                    if let Some(a) = Addr::<TriggerMsg>::lookup(&name) {
                        let _ = a.cast(TriggerMsg::Reconfigure(config));
                    }
                    self.running.insert(key, generation);
                }
                None if self.children.is_stopping(&name) => retry = true,
                None => {
                    let all = match &mut states {
                        Some(s) => s,
                        None => states.insert(self.ctx.store.all().unwrap_or_default()),
                    };
                    let state = all.remove(&key);
                    let ctx = self.ctx.clone();
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
                                    },
                                )
                            })
                        },
                    };
                    match self.children.start(&me.cell(), spec).await {
                        Ok(()) => {
                            self.running.insert(key, generation);
                        }
                        Err(e) => {
                            tracing::warn!(trigger = %key.1, error = %e, "cannot start trigger; retrying");
                            retry = true;
                        }
                    }
                }
            }
        }
        if retry {
            me.send_after(Duration::from_millis(50), || TriggerSupMsg::Reconcile);
        }
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
            schedules: HashMap::new(),
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
        json!({
            "triggers": state.running.len(),
            "distinctSchedules": state.schedules.len(),
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
