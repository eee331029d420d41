//! TriggerSupervisor (`triggers`): arms every cron trigger that is not suspended, either with a
//! TriggerActor (`trigger/<project>/<name>`, see `trigger.rs`) or as an entry of its wake queue.
//!
//! It reconciles on every published snapshot: new triggers are armed, deleted and suspended ones
//! stop, changed ones are reconfigured in place. It supervises the TriggerActors with the shared
//! [`ChildSet`]; a TriggerActor that keeps failing is given up on rather than escalated, so one
//! bad trigger never stops the others.
//!
//! By default every trigger that is not suspended has its TriggerActor, from apply to delete.
//!
//! Passivation (opt-in, for very large installations): with a resident window
//! (`--trigger-resident-window`), a TriggerActor whose next fire is further away asks to be
//! passivated. The supervisor stops it
//! and keeps only the trigger's next fire in a wake queue; half a window before that fire it
//! starts the TriggerActor again, which resumes from the persisted state exactly as after a
//! restart. A trigger the supervisor arms for the first time is planned the same way
//! (`domain::trigger_plan::plan`) without starting its actor at all. So only triggers that fire
//! soon (or often) hold an actor: 10,000 daily triggers cost a queue entry each, not an actor
//! each. The decisions are the domain's; this actor reads the [`Clock`](super::clock::Clock) of
//! its context, keeps the queue, arms its one wake timer and starts and stops the actors.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::{ActorProcessingErr, SupervisionEvent};
use serde_json::json;

use super::runtime::{Addr, Behaviour, Message};
use super::supervisor::{
    ChildError, ChildEvent, ChildSet, ChildSpec, Exhausted, Intensity, Restart, start_fn,
};
use super::trigger::{
    MAX_SLEEP, Passivate, Passivator, TriggerActor, TriggerArgs, TriggerContext, TriggerMsg,
    trigger_name,
};
use crate::api::Armed;
use crate::domain::manifest::Kind;
use crate::domain::snapshot::CronTrigger;
use crate::domain::trigger_plan::{Plan, TriggerConfig, TriggerState, plan};
use crate::store::SaveRow;

/// Registry name of the trigger supervisor.
pub const TRIGGERS: &str = "triggers";

/// (project, name) of a trigger.
type Key = (String, String);

pub enum TriggerSupMsg {
    /// A new snapshot was published.
    Reconcile,
    Retry(String),
    /// A TriggerActor's next fire is beyond the resident window: stop it until shortly before.
    Passivate(Passivate),
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
            TriggerSupMsg::Passivate(_) => "Passivate",
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
    /// Follows this node's leadership.
    leader_watcher: tokio::task::JoinHandle<()>,
    revision: u64,
    /// The lease token the armed triggers run under; `None`: this node does not lead, and
    /// nothing is armed.
    led: Option<u64>,
}

impl Drop for TriggerSupState {
    fn drop(&mut self) {
        self.watcher.abort();
        self.leader_watcher.abort();
        if let Some((_, t)) = self.wake_timer.take() {
            t.abort();
        }
    }
}

impl TriggerSupState {
    fn now(&self) -> DateTime<Utc> {
        self.ctx.clock.now()
    }

    /// Parks a trigger in the wake queue: it is started half a window before `next`.
    fn sleep(&mut self, key: Key, generation: u64, next: DateTime<Utc>) {
        let wake_at = self.ctx.window().wake_at(next);
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
            let delay = (at - self.now())
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
        let now = self.now();
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
                Some(c) if !c.spec.suspend => Arc::new(TriggerConfig::from(c)),
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
    ) -> Result<(), ChildError> {
        let name = trigger_name(&key.0, &key.1);
        let generation = config.generation;
        let ctx = self.ctx.clone();
        let passivate: Passivator = {
            let me = me.clone();
            Arc::new(move |p: Passivate| {
                let _ = me.cast(TriggerSupMsg::Passivate(p));
            })
        };
        let spec = ChildSpec {
            name: name.clone(),
            restart: Restart::Permanent,
            exhausted: Exhausted::GiveUp,
            start: {
                let state = std::sync::Mutex::new(state);
                start_fn(me.registry(), name, move || {
                    // The loaded state serves the first start; restarts reload it.
                    let state = state.lock().ok().and_then(|mut s| s.take());
                    (
                        TriggerActor,
                        TriggerArgs {
                            config: config.clone(),
                            state,
                            ctx: ctx.clone(),
                            passivate: passivate.clone(),
                        },
                    )
                })
            },
        };
        self.children.start(&me.cell(), spec).await?;
        self.running.insert(key, generation);
        Ok(())
    }

    /// Follows a change of leadership: every trigger is disarmed, and (when this node now
    /// leads) armed again from the stored state, exactly as after a restart — so the fires
    /// missed during a failover are handled by the trigger's missed-fire rules.
    fn follow_leadership(&mut self) -> bool {
        let token = self.ctx.leadership.borrow().as_ref().map(|l| l.fence.token);
        if token != self.led {
            for key in std::mem::take(&mut self.running).into_keys() {
                self.children.stop(&trigger_name(&key.0, &key.1));
            }
            for key in self.dormant.keys().cloned().collect::<Vec<_>>() {
                self.wake(&key);
            }
            self.led = token;
        }
        token.is_some()
    }

    async fn reconcile(&mut self, me: &Addr<TriggerSupMsg>) {
        let snapshot = self.ctx.snapshots.borrow().clone();
        self.revision = snapshot.revision;
        if !self.follow_leadership() {
            self.arm_wake(me);
            return;
        }
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
        let now = self.now();
        for (key, cron) in desired {
            let generation = cron.resource.generation;
            match (self.running.get(&key), self.dormant.get(&key)) {
                (Some(g), _) if *g == generation => continue,
                (None, Some(d)) if d.generation == generation => continue,
                _ => {}
            }
            let config = Arc::new(TriggerConfig::from(cron));
            let name = trigger_name(&key.0, &key.1);
            if let Some(g) = self.running.get_mut(&key) {
                if let Some(a) = me.registry().lookup::<TriggerMsg>(&name) {
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
                s.start_afresh(); // Changed while dormant, as a Reconfigure does.
            }
            match plan(&config, state.as_ref(), now, self.ctx.window()) {
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
        if self.running.get(&key) != Some(&generation)
            || !self.ctx.window().still_far(next, self.now())
        {
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

    async fn pre_start(
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
        let mut leads = ctx.leadership.clone();
        let notify = me.clone();
        let leader_watcher = tokio::spawn(async move {
            while leads.changed().await.is_ok() {
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
            leader_watcher,
            revision: 0,
            led: None,
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
            TriggerSupMsg::Passivate(p) => {
                state.passivate(me, (p.project, p.name), p.generation, p.next)
            }
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
            "residentWindowSeconds": state.ctx.resident_window.map(|w| w.as_secs()),
            "nextWakes": upcoming,
            "snapshotRevision": state.revision,
            "leaderToken": state.led,
            "supervision": state.children.inspect(),
        })
    }

    async fn handle_supervisor_evt(
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
mod tests;
