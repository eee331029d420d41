//! The decisions of a cron trigger, as plain functions of (configuration, persisted state, now):
//! where a trigger resumes after it was not running (the [`Cursor`]), which fires it missed
//! meanwhile and whether the latest one still runs late (`startingDeadlineSeconds`), whether it
//! needs a resident TriggerActor or can wait in the supervisor's wake queue ([`plan`]), and what
//! a fire records ([`record_fire`], [`rearm`]). The trigger actors (`actors/trigger.rs`,
//! `actors/trigger_supervisor.rs`) read the clock, arm timers, send messages and write the
//! store; every decision they take comes from here.
//!
//! Persisted per trigger: [`TriggerState`] (the cursor and the counters) and a history of
//! [`TriggerEvent`]s. Fires are computed from the previous *scheduled* instant, never from "now",
//! so a late wake-up does not shift the schedule.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::manifest::TriggerSpec;
use super::schedule::{Schedule, missed_fires};
use super::snapshot::CronTrigger;

/// Most missed fires counted one by one after a long downtime (an every-second trigger down for
/// a week would otherwise be walked 600,000 times).
pub const MISSED_WALK: usize = 100_000;

// ---------------------------------------------------------------------------------------------
// Persisted state and history
// ---------------------------------------------------------------------------------------------

/// The persisted state of one trigger: its cursor (generation, last scheduled instant, armed
/// instant) and its counters.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TriggerState {
    /// The resource generation this state was computed for.
    pub generation: u64,
    #[serde(rename = "lastScheduled")]
    pub last_scheduled: Option<DateTime<Utc>>,
    #[serde(rename = "lastFire")]
    pub last_fire: Option<DateTime<Utc>>,
    #[serde(rename = "lastTask")]
    pub last_task: Option<u64>,
    #[serde(rename = "nextFire")]
    pub next_fire: Option<DateTime<Utc>>,
    pub fires: u64,
    pub skips: u64,
    pub missed: u64,
}

impl TriggerState {
    /// Drops the cursor, keeping the counters: the next [`resume`] starts afresh from now, as
    /// after a change of the trigger's spec.
    pub fn start_afresh(&mut self) {
        self.generation = 0;
    }
}

/// What happened at one scheduled instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventKind {
    Fired,
    Skipped,
    Missed,
    Failed,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Fired => "fired",
            EventKind::Skipped => "skipped",
            EventKind::Missed => "missed",
            EventKind::Failed => "failed",
        }
    }
    /// Reads a stored name back; an unknown name (written by a newer version) reads as
    /// `Failed`, the kind that asks for attention.
    pub fn parse(s: &str) -> EventKind {
        match s {
            "fired" => EventKind::Fired,
            "skipped" => EventKind::Skipped,
            "missed" => EventKind::Missed,
            _ => EventKind::Failed,
        }
    }
}

/// One history row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TriggerEvent {
    pub at: DateTime<Utc>,
    pub kind: EventKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheduled: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<u64>,
    /// Fire time minus scheduled instant.
    #[serde(
        rename = "latenessMs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub lateness_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

// ---------------------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------------------

/// What a cron trigger runs: an owned copy of the snapshot's lowered cron trigger.
#[derive(Debug, Clone)]
pub struct TriggerConfig {
    pub project: String,
    pub name: String,
    pub generation: u64,
    pub spec: TriggerSpec,
    pub schedule: Arc<Schedule>,
}

impl From<CronTrigger<'_>> for TriggerConfig {
    fn from(cron: CronTrigger<'_>) -> TriggerConfig {
        TriggerConfig {
            project: cron.resource.key.project.clone(),
            name: cron.resource.key.name.clone(),
            generation: cron.resource.generation,
            spec: cron.spec.clone(),
            schedule: cron.schedule.clone(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Resume: the cursor and the fires missed while the trigger was not running
// ---------------------------------------------------------------------------------------------

/// Where a trigger resumes from its persisted state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cursor {
    /// After this scheduled instant, which was handled (fired, skipped or recorded as missed).
    After(DateTime<Utc>),
    /// At this armed instant, not reached yet when the state was saved.
    Armed(DateTime<Utc>),
    /// From now: a new trigger, a changed spec, or a clock that went back.
    Fresh,
}

/// The cursor of `state` for a trigger of `generation` at `now`.
pub fn cursor(state: &TriggerState, generation: u64, now: DateTime<Utc>) -> Cursor {
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
pub enum Action {
    /// Arm the timer for this instant (none: the schedule never fires again).
    Arm(Option<DateTime<Utc>>),
    /// Run this missed fire now: it is inside `startingDeadlineSeconds`.
    CatchUp(DateTime<Utc>),
}

/// The outcome of [`resume`].
#[derive(Debug, Clone, PartialEq)]
pub struct Resumed {
    pub state: TriggerState,
    /// Whether `state` (and `event`) must be written before going on.
    pub save: bool,
    /// The record of fires missed while the trigger was not running.
    pub event: Option<TriggerEvent>,
    pub action: Action,
}

/// Resumes a trigger at `now` from its persisted state: what was missed since, and what comes
/// next. The TriggerActor's start and the supervisor's [`plan`] both use it.
pub fn resume(config: &TriggerConfig, state: TriggerState, now: DateTime<Utc>) -> Resumed {
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

// ---------------------------------------------------------------------------------------------
// Plan: resident TriggerActor or the supervisor's wake queue
// ---------------------------------------------------------------------------------------------

/// The resident window (`--trigger-resident-window`, opt-in): a trigger whose next fire is
/// further away than this waits in the supervisor's wake queue instead of holding a
/// TriggerActor. Without one ([`ResidentWindow::ALWAYS`], the default) every trigger keeps its
/// actor from apply to delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResidentWindow(Option<chrono::Duration>);

impl ResidentWindow {
    /// Every trigger resident: nothing is passivated.
    pub const ALWAYS: ResidentWindow = ResidentWindow(None);

    /// A window of `window`; `None` is [`ResidentWindow::ALWAYS`].
    pub fn new(window: Option<std::time::Duration>) -> ResidentWindow {
        ResidentWindow(
            window.map(|w| chrono::Duration::from_std(w).unwrap_or(chrono::Duration::MAX)),
        )
    }

    /// Whether a fire at `next` is beyond the window at `now`: its trigger is passivated.
    pub fn is_far(self, next: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.0.is_some_and(|w| next - now > w)
    }

    /// Whether a passivation request for a fire at `next` still holds at `now`: past half a
    /// window before the fire, the trigger would be woken again at once.
    pub fn still_far(self, next: DateTime<Utc>, now: DateTime<Utc>) -> bool {
        self.0.is_some_and(|w| next - now > w / 2)
    }

    /// When a dormant trigger that fires at `next` wakes: half a window before.
    pub fn wake_at(self, next: DateTime<Utc>) -> DateTime<Utc> {
        self.0.map_or(next, |w| next - w / 2)
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
    window: ResidentWindow,
) -> Plan {
    let r = resume(config, state.cloned().unwrap_or_default(), now);
    match r.action {
        Action::Arm(Some(next)) if window.is_far(next, now) => Plan::Dormant {
            next,
            save: r.save.then_some((r.state, r.event)),
        },
        _ => Plan::Resident,
    }
}

// ---------------------------------------------------------------------------------------------
// Fires: what one records, and where the schedule goes on
// ---------------------------------------------------------------------------------------------

/// What a fire's attempt to create its task came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The task with this id was created.
    Created(u64),
    /// No task, by the trigger's `concurrencyPolicy` (the reason says why).
    Skipped(String),
    /// No task: creating it failed.
    Failed(String),
}

/// Records in `state` the fire scheduled at `scheduled` and handled at `fired_at`; returns its
/// history row.
pub fn record_fire(
    state: &mut TriggerState,
    scheduled: DateTime<Utc>,
    fired_at: DateTime<Utc>,
    outcome: Outcome,
) -> TriggerEvent {
    let lateness_ms = (fired_at - scheduled)
        .num_microseconds()
        .map(|us| us as f64 / 1000.0);
    state.last_scheduled = Some(scheduled);
    let (kind, task, reason) = match outcome {
        Outcome::Created(id) => {
            state.fires += 1;
            state.last_fire = Some(fired_at);
            state.last_task = Some(id);
            (EventKind::Fired, Some(id), None)
        }
        Outcome::Skipped(reason) => {
            state.skips += 1;
            (EventKind::Skipped, None, Some(reason))
        }
        Outcome::Failed(reason) => {
            state.skips += 1;
            (EventKind::Failed, None, Some(reason))
        }
    };
    TriggerEvent {
        at: fired_at,
        kind,
        scheduled: Some(scheduled),
        task,
        lateness_ms,
        reason,
    }
}

/// Where a trigger goes on after handling the fire at `scheduled`, at `now`.
#[derive(Debug, Clone, PartialEq)]
pub struct Rearm {
    /// The fire to arm next (none: the schedule never fires again).
    pub next: Option<DateTime<Utc>>,
    /// Fires that passed while the previous one was handled.
    pub late: Option<Late>,
}

/// Fires that passed while the previous one was handled: counted as missed and recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct Late {
    pub count: u64,
    pub event: TriggerEvent,
}

impl Late {
    /// Counts these fires in `state`.
    pub fn count_in(&self, state: &mut TriggerState) {
        state.missed += self.count;
    }
}

/// Re-arms from the scheduled instant, never from `now`: fires that are already past by the
/// time the previous one was handled were missed.
pub fn rearm(schedule: &Schedule, scheduled: DateTime<Utc>, now: DateTime<Utc>) -> Rearm {
    let m = missed_fires(schedule, scheduled, now, None, MISSED_WALK);
    let late = (m.count > 0).then(|| Late {
        count: m.count,
        event: TriggerEvent {
            at: now,
            kind: EventKind::Missed,
            scheduled: None,
            task: None,
            lateness_ms: None,
            reason: Some(format!(
                "{} fire(s) passed while the previous one was handled",
                m.count
            )),
        },
    });
    Rearm {
        next: schedule.next_after(m.resume_from),
        late,
    }
}

#[cfg(test)]
mod tests;
