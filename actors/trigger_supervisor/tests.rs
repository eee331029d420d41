//! The cron side on paused time: the real TriggerSupervisor, TriggerActors and TaskSupervisor
//! run in-process against SQLite in a temp dir, with a [`Clock`] that follows tokio's paused time
//! from a fixed UTC instant. Days of schedule run in milliseconds, and every instant is exact,
//! so the tests check that fires land on their scheduled instants, that dormant triggers wake
//! for them, and what happens to fires missed while the daemon was down.
//!
//! Tasks are created with `start: false`: the TaskSupervisor creates each one (held), so no agent
//! process runs, whose real-time wait would let paused time jump ahead.
//!
//! The actors register under fixed names (`tasks`, `triggers`, `trigger/<project>/<name>`), each
//! rig in a [`Registry`] of its own, so the tests run side by side; each stops its actors before
//! its outcome is reported.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::FutureExt;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{TRIGGERS, TriggerSupMsg, TriggerSupervisor};
use crate::actors::clock::Clock;
use crate::actors::runtime::{Addr, Registry};
use crate::actors::task_supervisor::{TASKS, TaskSupMsg, TaskSupervisor};
use crate::actors::trigger::{TriggerContext, trigger_name};
use crate::actors::workflow::TaskContext;
use crate::api::Armed;
use crate::domain::manifest::Kind;
use crate::domain::manifest::{Manifest, parse_documents};
use crate::domain::redact::SecretRegistry;
use crate::domain::snapshot::{Change, Outcome, ResourceKey, Snapshot};
use crate::domain::trigger_plan::{EventKind, TriggerEvent, TriggerState};
use crate::store::{Stores, sqlite};

const CALL: Duration = Duration::from_secs(5);

/// An instant written as RFC 3339.
fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339 instant")
        .with_timezone(&Utc)
}

/// A cron Trigger document of project `default`. Its tasks are created held.
fn trigger(name: &str, schedule: &str, zone: Option<&str>, extra: &str) -> String {
    let zone = zone.map_or_else(String::new, |z| format!(", timezone: {z}"));
    format!(
        "---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: {name}, project: default}}\nspec:\n  cron: {{schedule: \"{schedule}\"{zone}}}\n  action: {{workflow: quick, workspace: default, start: false}}\n{extra}"
    )
}

const ALLOW: &str = "  concurrencyPolicy: Allow\n";

/// The actors under test, their stores and the clock they read.
struct Rig {
    dir: tempfile::TempDir,
    stores: Stores,
    snapshot: Arc<Snapshot>,
    publish: watch::Sender<Arc<Snapshot>>,
    start: DateTime<Utc>,
    origin: tokio::time::Instant,
    window: Duration,
    tasks: Option<(Addr<TaskSupMsg>, JoinHandle<()>)>,
    triggers: Option<(Addr<TriggerSupMsg>, JoinHandle<()>)>,
    /// The actors' names: every rig has its own, so the tests run in parallel.
    actors: Registry,
}

impl Rig {
    /// A data dir holding the `default` Workspace, the Workflow `quick` (one step, `true`) and
    /// `triggers`; the clock reads `start` now. Nothing runs until [`Rig::start`].
    fn new(start: &str, triggers: &str) -> Rig {
        let dir = tempfile::tempdir().expect("temp dir");
        let ws = dir.path().join("ws");
        std::fs::create_dir_all(&ws).expect("workspace dir");
        let stores = sqlite::open(dir.path()).expect("stores");
        let base = format!(
            "apiVersion: orchestrator.dev/v2\nkind: Workspace\nmetadata: {{name: default, project: default}}\nspec: {{root_path: \"{}\"}}\n---\napiVersion: orchestrator.dev/v2\nkind: Workflow\nmetadata: {{name: quick, project: default}}\nspec:\n  max_parallel: 100\n  steps: [{{id: s, command: \"true\"}}]\n",
            ws.display()
        );
        let start = t(start);
        let empty = Arc::new(Snapshot::default());
        let (publish, _) = watch::channel(empty.clone());
        let mut rig = Rig {
            dir,
            stores,
            snapshot: empty,
            publish,
            start,
            origin: tokio::time::Instant::now(),
            window: Duration::from_secs(60),
            tasks: None,
            triggers: None,
            actors: Registry::new(),
        };
        rig.apply(&format!("{base}{triggers}"));
        rig
    }

    fn clock(&self) -> Clock {
        Clock::Tokio {
            start: self.start,
            origin: self.origin,
        }
    }

    /// Applies manifests on top of the current snapshot and publishes the result.
    fn apply(&mut self, text: &str) {
        let (docs, problems) = parse_documents("test.yaml", text);
        assert!(problems.is_empty(), "{problems:?}");
        let manifests: Vec<Manifest> = docs.into_iter().map(|d| d.manifest).collect();
        let changes = self.snapshot.plan(&manifests, self.clock().now());
        self.snapshot = Arc::new(self.snapshot.apply(&changes));
        self.publish.send_replace(self.snapshot.clone());
    }

    /// Deletes the trigger `name` from the snapshot and publishes the result.
    fn delete(&mut self, name: &str) {
        let key = ResourceKey::new("default", Kind::Trigger, name);
        let resource = self.snapshot.get(&key).expect("the trigger exists");
        let change = Change {
            outcome: Outcome::Deleted,
            resource: (**resource).clone(),
            keys: Vec::new(),
        };
        self.snapshot = Arc::new(self.snapshot.apply(&[change]));
        self.publish.send_replace(self.snapshot.clone());
    }

    fn generation(&self, name: &str) -> u64 {
        self.snapshot
            .cron_trigger("default", name)
            .map(|c| c.resource.generation)
            .expect("a cron trigger")
    }

    /// Persists a trigger's state, as a daemon that stopped would have left it.
    fn seed(&self, name: &str, state: TriggerState) {
        self.stores
            .triggers
            .save("default", name, &state, None, self.start)
            .expect("seed trigger state");
    }

    /// Starts the TaskSupervisor, then the TriggerSupervisor.
    async fn start(&mut self) {
        let tasks = TaskContext {
            store: self.stores.tasks.clone(),
            snapshots: self.publish.subscribe(),
            runs_dir: self.dir.path().join("runs"),
            socket: self.dir.path().join("orchestrator.sock"),
            base_env: Arc::new(crate::process::base_env()),
            grace: Duration::from_secs(5),
            stream_cap: 1024 * 1024,
            capture_cap: 1024 * 1024,
            secrets: Arc::new(SecretRegistry::new()),
            running: Default::default(),
            node: "test-node".into(),
            max_running: 64,
        };
        let spawned = self
            .actors
            .spawn_joinable(TASKS.into(), TaskSupervisor, tasks, None)
            .await;
        self.tasks = Some(spawned.expect("task supervisor"));
        self.start_triggers().await;
    }

    /// Starts the TriggerSupervisor.
    async fn start_triggers(&mut self) {
        let ctx = TriggerContext {
            store: self.stores.triggers.clone(),
            snapshots: self.publish.subscribe(),
            resident_window: Some(self.window),
            clock: self.clock(),
            leadership: crate::actors::cluster::lead_alone(&*self.stores.cluster, "test")
                .expect("the lease"),
        };
        let spawned = self
            .actors
            .spawn_joinable(TRIGGERS.into(), TriggerSupervisor, ctx, None)
            .await;
        self.triggers = Some(spawned.expect("trigger supervisor"));
    }

    /// Stops the TriggerSupervisor and its TriggerActors and starts a fresh one, as the root
    /// supervisor does when it fails: everything it knew comes back from the store.
    async fn restart_triggers(&mut self) {
        if let Some((sup, join)) = self.triggers.take() {
            sup.cell().stop_children_and_wait(None, Some(CALL)).await;
            sup.cell().stop(None);
            let _ = join.await;
        }
        self.start_triggers().await;
    }

    /// Lets paused time run until the clock reads `at`.
    async fn until(&self, at: &str) {
        let after = (t(at) - self.start)
            .to_std()
            .expect("an instant after the start");
        tokio::time::sleep_until(self.origin + after).await;
        assert_eq!(self.clock().now(), t(at));
    }

    /// Where the supervisor has armed `name`.
    async fn armed(&self, name: &str) -> Armed {
        let (sup, _) = self.triggers.as_ref().expect("started");
        let key = ("default".to_owned(), name.to_owned());
        sup.call(|reply| TriggerSupMsg::Where { key, reply }, CALL)
            .await
            .expect("the trigger supervisor answers")
    }

    /// The history of `name`, oldest first.
    fn events(&self, name: &str) -> Vec<TriggerEvent> {
        let mut e = self
            .stores
            .triggers
            .events("default", name, 1000)
            .expect("events");
        e.reverse();
        e
    }

    /// The scheduled instants of `kind` events of `name`, oldest first; fires also check that
    /// each happened exactly on its instant and created its task.
    fn scheduled(&self, name: &str, kind: EventKind) -> Vec<DateTime<Utc>> {
        let mut out = Vec::new();
        for e in self.events(name).into_iter().filter(|e| e.kind == kind) {
            let at = e.scheduled.expect("a scheduled instant");
            if kind == EventKind::Fired {
                assert_eq!(e.at, at, "{name}: fired on its instant");
                assert_eq!(e.lateness_ms, Some(0.0), "{name}");
                let id = e.task.expect("a task");
                let task = self.stores.tasks.get(id).expect("task store");
                let task = task.expect("the fire's task exists");
                assert_eq!(task.scheduled_at, Some(at), "{name}: task {id}");
            }
            out.push(at);
        }
        out
    }

    fn state(&self, name: &str) -> TriggerState {
        self.stores
            .triggers
            .get("default", name)
            .expect("trigger store")
            .unwrap_or_default()
    }

    /// Stops the actors and waits until their names are free.
    async fn stop(&mut self) {
        if let Some((sup, join)) = self.triggers.take() {
            sup.cell().stop_children_and_wait(None, Some(CALL)).await;
            sup.cell().stop(None);
            let _ = join.await;
        }
        if let Some((sup, join)) = self.tasks.take() {
            sup.cell().stop_children_and_wait(None, Some(CALL)).await;
            sup.cell().stop(None);
            let _ = join.await;
        }
    }
}

/// Runs `body` on a started rig, stops the actors, then reports the body's outcome.
async fn run(mut rig: Rig, body: impl AsyncFnOnce(&mut Rig)) {
    rig.start().await;
    let outcome = AssertUnwindSafe(body(&mut rig)).catch_unwind().await;
    rig.stop().await;
    for name in [TASKS, TRIGGERS] {
        assert!(rig.actors.cell(name).is_none(), "{name} still registered");
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn instants(texts: &[&str]) -> Vec<DateTime<Utc>> {
    texts.iter().map(|s| t(s)).collect()
}

#[tokio::test(start_paused = true)]
async fn fires_land_on_their_instants_with_a_resident_actor() {
    let rig = Rig::new(
        "2026-11-29T12:00:05Z",
        &trigger("often", "*/10 * * * * *", None, ALLOW),
    );
    run(rig, async |rig: &mut Rig| {
        rig.until("2026-11-29T12:00:35Z").await;
        let want = [
            "2026-11-29T12:00:10Z",
            "2026-11-29T12:00:20Z",
            "2026-11-29T12:00:30Z",
        ];
        assert_eq!(rig.scheduled("often", EventKind::Fired), instants(&want));
        let actor = trigger_name("default", "often");
        assert_eq!(rig.armed("often").await, Armed::Actor { actor });
        let st = rig.state("often");
        assert_eq!((st.fires, st.skips, st.missed), (3, 0, 0));
        assert_eq!(st.next_fire, Some(t("2026-11-29T12:00:40Z")));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_dormant_trigger_wakes_for_its_fire_and_goes_back_to_sleep() {
    let rig = Rig::new(
        "2026-11-29T12:30:00Z",
        &trigger("hourly", "0 * * * *", None, ALLOW),
    );
    run(rig, async |rig: &mut Rig| {
        // Planned without an actor: its first fire is persisted and queued.
        rig.until("2026-11-29T12:31:00Z").await;
        let dormant = |wake_at: &str, next_fire: &str| Armed::WakeQueue {
            wake_at: t(wake_at),
            next_fire: t(next_fire),
        };
        let want = dormant("2026-11-29T12:59:30Z", "2026-11-29T13:00:00Z");
        assert_eq!(rig.armed("hourly").await, want);
        assert_eq!(
            rig.state("hourly").next_fire,
            Some(t("2026-11-29T13:00:00Z"))
        );
        // Half a window before the fire its actor runs.
        rig.until("2026-11-29T12:59:45Z").await;
        let actor = trigger_name("default", "hourly");
        assert_eq!(rig.armed("hourly").await, Armed::Actor { actor });
        assert!(rig.events("hourly").is_empty());
        // It fires on the instant and is passivated again until the next one.
        rig.until("2026-11-29T13:00:30Z").await;
        let want = dormant("2026-11-29T13:59:30Z", "2026-11-29T14:00:00Z");
        assert_eq!(rig.armed("hourly").await, want);
        rig.until("2026-11-29T15:00:30Z").await;
        let want = [
            "2026-11-29T13:00:00Z",
            "2026-11-29T14:00:00Z",
            "2026-11-29T15:00:00Z",
        ];
        assert_eq!(rig.scheduled("hourly", EventKind::Fired), instants(&want));
        assert_eq!(rig.events("hourly").len(), 3, "only fires were recorded");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn fires_missed_while_down_are_recorded_or_run_once_within_the_deadline() {
    let mut rig = Rig::new(
        "2026-11-29T12:30:00Z",
        &format!(
            "{}{}",
            trigger("recorded", "0 * * * *", None, ALLOW),
            trigger(
                "late",
                "0 * * * *",
                None,
                &format!("{ALLOW}  startingDeadlineSeconds: 3600\n")
            ),
        ),
    );
    // The daemon stopped after the 09:00 fires; it starts again at 12:30.
    for name in ["recorded", "late"] {
        let state = TriggerState {
            generation: rig.generation(name),
            last_scheduled: Some(t("2026-11-29T09:00:00Z")),
            next_fire: Some(t("2026-11-29T10:00:00Z")),
            fires: 5,
            ..TriggerState::default()
        };
        rig.seed(name, state);
    }
    rig.window = Duration::from_secs(60);
    run(rig, async |rig: &mut Rig| {
        rig.until("2026-11-29T12:30:01Z").await;
        // Without a deadline: 10:00, 11:00 and 12:00 are recorded, no actor is needed.
        let missed = rig.events("recorded");
        assert_eq!(missed.len(), 1, "{missed:?}");
        assert_eq!(missed[0].kind, EventKind::Missed);
        assert_eq!(missed[0].at, t("2026-11-29T12:30:00Z"));
        assert_eq!(missed[0].scheduled, Some(t("2026-11-29T12:00:00Z")));
        let st = rig.state("recorded");
        assert_eq!((st.fires, st.missed), (5, 3));
        assert!(matches!(
            rig.armed("recorded").await,
            Armed::WakeQueue { .. }
        ));
        // Within the deadline: 12:00 runs now, once; 10:00 and 11:00 are recorded.
        let kinds: Vec<EventKind> = rig.events("late").iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::Missed, EventKind::Fired]);
        let fired = &rig.events("late")[1];
        assert_eq!(fired.scheduled, Some(t("2026-11-29T12:00:00Z")));
        assert_eq!(fired.at, t("2026-11-29T12:30:00Z"), "runs at the restart");
        assert_eq!(fired.lateness_ms, Some(30.0 * 60.0 * 1000.0));
        let st = rig.state("late");
        assert_eq!((st.fires, st.missed), (6, 2));
        // Both go on at 13:00.
        rig.until("2026-11-29T13:00:30Z").await;
        let next = t("2026-11-29T13:00:00Z");
        assert_eq!(rig.scheduled("recorded", EventKind::Fired), [next]);
        let late = rig.events("late");
        assert_eq!(late.last().and_then(|e| e.scheduled), Some(next));
        assert_eq!(late.last().map(|e| e.at), Some(next));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_reconfigured_trigger_rearms_from_now_with_its_new_schedule() {
    let rig = Rig::new(
        "2026-11-29T12:00:05Z",
        &trigger("t", "*/10 * * * * *", None, ALLOW),
    );
    run(rig, async |rig: &mut Rig| {
        rig.until("2026-11-29T12:00:25Z").await;
        rig.apply(&trigger("t", "*/15 * * * * *", None, ALLOW));
        rig.until("2026-11-29T12:00:50Z").await;
        let want = [
            "2026-11-29T12:00:10Z",
            "2026-11-29T12:00:20Z",
            "2026-11-29T12:00:30Z",
            "2026-11-29T12:00:45Z",
        ];
        assert_eq!(rig.scheduled("t", EventKind::Fired), instants(&want));
        assert_eq!(rig.scheduled("t", EventKind::Missed), instants(&[]));
        assert_eq!(rig.state("t").generation, 2);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_suspended_trigger_stops_and_resumes_afresh() {
    let rig = Rig::new(
        "2026-11-29T12:00:05Z",
        &trigger("t", "*/10 * * * * *", None, ALLOW),
    );
    run(rig, async |rig: &mut Rig| {
        rig.until("2026-11-29T12:00:25Z").await;
        rig.apply(&trigger("t", "*/10 * * * * *", None, "  suspend: true\n"));
        rig.until("2026-11-29T12:00:26Z").await;
        assert_eq!(rig.armed("t").await, Armed::NotArmed);
        // Resumed at 12:00:55: the fires of the suspension are not owed.
        rig.until("2026-11-29T12:00:55Z").await;
        rig.apply(&trigger("t", "*/10 * * * * *", None, ALLOW));
        rig.until("2026-11-29T12:01:15Z").await;
        let want = [
            "2026-11-29T12:00:10Z",
            "2026-11-29T12:00:20Z",
            "2026-11-29T12:01:00Z",
            "2026-11-29T12:01:10Z",
        ];
        assert_eq!(rig.scheduled("t", EventKind::Fired), instants(&want));
        assert_eq!(rig.scheduled("t", EventKind::Missed), instants(&[]));
        let st = rig.state("t");
        assert_eq!((st.fires, st.missed), (4, 0));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn forbid_skips_fires_while_the_previous_task_is_pending() {
    let rig = Rig::new(
        "2026-11-29T12:00:05Z",
        &trigger("t", "*/10 * * * * *", None, "  concurrencyPolicy: Forbid\n"),
    );
    run(rig, async |rig: &mut Rig| {
        rig.until("2026-11-29T12:00:35Z").await;
        let events = rig.events("t");
        let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            [EventKind::Fired, EventKind::Skipped, EventKind::Skipped]
        );
        let task = events[0].task.expect("the first fire's task");
        for skipped in &events[1..] {
            let reason = skipped.reason.clone().unwrap_or_default();
            assert!(
                reason.contains(&format!("task {task} of this trigger")),
                "{reason}"
            );
        }
        let st = rig.state("t");
        assert_eq!((st.fires, st.skips, st.last_task), (1, 2, Some(task)));
    })
    .await;
}

/// Fixed-time and interval schedules in Berlin, fired from the wake queue across a DST change.
async fn check_dst(start: &str, until: &str, fixed: &[&str], interval: &[&str]) {
    let rig = Rig::new(
        start,
        &format!(
            "{}{}",
            trigger("fixed", "30 2 * * *", Some("Europe/Berlin"), ALLOW),
            trigger("interval", "*/30 2 * * *", Some("Europe/Berlin"), ALLOW),
        ),
    );
    run(rig, async |rig: &mut Rig| {
        rig.until(until).await;
        assert_eq!(rig.scheduled("fixed", EventKind::Fired), instants(fixed));
        assert_eq!(
            rig.scheduled("interval", EventKind::Fired),
            instants(interval)
        );
        assert_eq!(rig.scheduled("fixed", EventKind::Missed), instants(&[]));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn spring_forward_fires_a_skipped_fixed_time_after_the_gap() {
    // Berlin springs forward 2026-03-29 02:00 CET -> 03:00 CEST: 02:30 fires at 03:00 CEST,
    // and no 02:xx interval time exists that day.
    check_dst(
        "2026-03-27T12:00:00Z",
        "2026-03-30T12:00:00Z",
        &[
            "2026-03-28T01:30:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z",
        ],
        &[
            "2026-03-28T01:00:00Z",
            "2026-03-28T01:30:00Z",
            "2026-03-30T00:00:00Z",
            "2026-03-30T00:30:00Z",
        ],
    )
    .await;
}

#[tokio::test(start_paused = true)]
async fn fall_back_fires_a_fixed_time_once_and_intervals_in_both_halves() {
    // Berlin falls back 2026-10-25 03:00 CEST -> 02:00 CET: 02:00-03:00 happens twice.
    check_dst(
        "2026-10-24T12:00:00Z",
        "2026-10-26T12:00:00Z",
        &["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"],
        &[
            "2026-10-25T00:00:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-25T01:00:00Z",
            "2026-10-25T01:30:00Z",
            "2026-10-26T01:00:00Z",
            "2026-10-26T01:30:00Z",
        ],
    )
    .await;
}

/// A trigger that fires every 6 s with a 2 s resident window spends two thirds of its time
/// dormant. Its supervisor restarting (as the root restarts a failed one) rebuilds the wake
/// queue from the store: no fire is lost or doubled.
#[tokio::test(start_paused = true)]
async fn a_dormant_trigger_survives_a_restart_of_its_supervisor() {
    let mut rig = Rig::new(
        "2026-11-29T12:00:01Z",
        &trigger("sparse", "*/6 * * * * *", None, ALLOW),
    );
    rig.window = Duration::from_secs(2);
    run(rig, async |rig: &mut Rig| {
        rig.until("2026-11-29T12:00:13Z").await;
        let queued = Armed::WakeQueue {
            wake_at: t("2026-11-29T12:00:17Z"),
            next_fire: t("2026-11-29T12:00:18Z"),
        };
        assert_eq!(rig.armed("sparse").await, queued);
        rig.restart_triggers().await;
        assert_eq!(
            rig.armed("sparse").await,
            queued,
            "queued again from the store"
        );
        rig.until("2026-11-29T12:00:31Z").await;
        let want = [
            "2026-11-29T12:00:06Z",
            "2026-11-29T12:00:12Z",
            "2026-11-29T12:00:18Z",
            "2026-11-29T12:00:24Z",
            "2026-11-29T12:00:30Z",
        ];
        assert_eq!(rig.scheduled("sparse", EventKind::Fired), instants(&want));
        let kinds: Vec<EventKind> = rig.events("sparse").iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::Fired; 5], "only fires were recorded");
        // A restart while its actor is resident (woken at 12:00:35 for the 36 s fire).
        rig.until("2026-11-29T12:00:35.500Z").await;
        let actor = trigger_name("default", "sparse");
        assert_eq!(rig.armed("sparse").await, Armed::Actor { actor });
        rig.restart_triggers().await;
        rig.until("2026-11-29T12:00:43Z").await;
        let fired = rig.scheduled("sparse", EventKind::Fired);
        assert_eq!(
            fired[5..],
            instants(&["2026-11-29T12:00:36Z", "2026-11-29T12:00:42Z"])
        );
    })
    .await;
}

/// A dormant trigger takes a new schedule at once; suspending disarms it and resuming arms it
/// again; deleting it disarms it for good.
#[tokio::test(start_paused = true)]
async fn a_dormant_trigger_is_reconfigured_suspended_resumed_and_deleted() {
    let mut rig = Rig::new(
        "2026-11-29T12:00:01Z",
        &trigger("sparse", "*/6 * * * * *", None, ALLOW),
    );
    rig.window = Duration::from_secs(2);
    run(rig, async |rig: &mut Rig| {
        rig.until("2026-11-29T12:00:07Z").await;
        assert!(matches!(rig.armed("sparse").await, Armed::WakeQueue { .. }));
        rig.apply(&trigger("sparse", "*/4 * * * * *", None, ALLOW));
        rig.until("2026-11-29T12:00:17Z").await;
        let want = [
            "2026-11-29T12:00:06Z",
            "2026-11-29T12:00:08Z",
            "2026-11-29T12:00:12Z",
            "2026-11-29T12:00:16Z",
        ];
        assert_eq!(rig.scheduled("sparse", EventKind::Fired), instants(&want));

        rig.apply(&trigger(
            "sparse",
            "*/4 * * * * *",
            None,
            "  suspend: true\n",
        ));
        rig.until("2026-11-29T12:00:18Z").await;
        assert_eq!(rig.armed("sparse").await, Armed::NotArmed);
        rig.until("2026-11-29T12:00:29Z").await;
        assert_eq!(rig.scheduled("sparse", EventKind::Fired).len(), 4);
        rig.apply(&trigger("sparse", "*/4 * * * * *", None, ALLOW));
        rig.until("2026-11-29T12:00:33Z").await;
        let fired = rig.scheduled("sparse", EventKind::Fired);
        assert_eq!(fired[4..], instants(&["2026-11-29T12:00:32Z"]));

        rig.delete("sparse");
        rig.until("2026-11-29T12:00:34Z").await;
        assert_eq!(rig.armed("sparse").await, Armed::NotArmed);
        let (sup, _) = rig.triggers.as_ref().expect("started");
        let inspect = sup.inspect(CALL).await.expect("inspect");
        assert_eq!(inspect["triggers"], 0, "{inspect}");
        // Its history went with it, and nothing fires it again.
        assert!(rig.events("sparse").is_empty());
        rig.until("2026-11-29T12:00:45Z").await;
        assert!(
            rig.events("sparse").is_empty(),
            "{:?}",
            rig.events("sparse")
        );
    })
    .await;
}
