//! In-process tests of the RetentionActor: the real actor over a SQLite store in a temporary
//! data dir, with task rows written straight into the store at chosen instants and run
//! directories made by hand. Time is tokio's paused clock (the actor's [`Clock`] follows it), so
//! "40 days later" takes no wall time.

use std::time::Instant;

use super::*;
use crate::actors::runtime::Registry;
use crate::domain::manifest::parse_documents;
use crate::store::{NewTask, Stores};

/// How long a test waits for something that takes milliseconds (wall time).
const PATIENCE: Duration = Duration::from_secs(30);

const DAY: i64 = 86_400;

struct Harness {
    actors: Registry,
    dir: tempfile::TempDir,
    store: Arc<dyn TaskStore>,
    clock: Clock,
    publish: watch::Sender<Arc<Snapshot>>,
    actor: Option<Addr<RetentionMsg>>,
}

/// A trigger `name` of workflow `w` with `limit` as its `historyLimit` (YAML flow mapping).
fn trigger(name: &str, limit: &str) -> String {
    format!(
        "apiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: {name}, project: default}}\nspec:\n  event: {{source: webhook, webhook: {{secret: {{fromRef: s}}}}}}\n  action: {{workflow: w, workspace: default}}\n  historyLimit: {limit}\n"
    )
}

impl Harness {
    fn new(resources: &str) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let (docs, problems) = parse_documents("t.yaml", resources);
        assert!(problems.is_empty(), "{problems:?}");
        let manifests: Vec<_> = docs.into_iter().map(|d| d.manifest).collect();
        let empty = Snapshot::default();
        let snapshot = Arc::new(empty.apply(&empty.plan(&manifests, Utc::now())));
        let Stores { tasks, .. } = crate::store::sqlite::open(dir.path()).expect("store");
        Harness {
            actors: Registry::new(),
            dir,
            store: tasks,
            clock: Clock::following_tokio(Utc::now()),
            publish: watch::channel(snapshot).0,
            actor: None,
        }
    }

    fn runs(&self) -> PathBuf {
        self.dir.path().join("runs")
    }

    /// A task of `workflow` (from `trigger`) created `created` seconds from now (negative: in
    /// the past) that ended in `state` a second later, with a run directory holding a log.
    fn task(&self, workflow: &str, trigger: Option<&str>, state: TaskState, created: i64) -> u64 {
        let t0 = self.clock.now() + chrono::Duration::seconds(created);
        let new = NewTask {
            project: "default".into(),
            workflow: workflow.into(),
            workspace: "default".into(),
            workspace_root: "/tmp".into(),
            workflow_spec: serde_json::json!({"steps": []}),
            goal: None,
            payload: None,
            origin: "test".into(),
            trigger: trigger.map(str::to_owned),
            scheduled_at: None,
            state: TaskState::Pending,
            reason: None,
            held: false,
            worktree: false,
            fence: None,
        };
        let id = self.store.create(&new, t0).expect("create").id;
        if state != TaskState::Pending {
            self.store
                .set_state(id, TaskState::Running, None, t0)
                .expect("running");
        }
        if state.is_finished() {
            self.store
                .set_state(id, state, None, t0 + chrono::Duration::seconds(1))
                .expect("finish");
        }
        let dir = self.runs().join(id.to_string());
        std::fs::create_dir_all(&dir).expect("run dir");
        std::fs::write(dir.join("s-c1-a1.log"), "a line\n").expect("log");
        id
    }

    async fn start(&mut self, retention: Retention) -> Addr<RetentionMsg> {
        let args = RetentionArgs {
            store: self.store.clone(),
            snapshots: self.publish.subscribe(),
            runs_dir: self.runs(),
            retention,
            clock: self.clock,
        };
        let addr = self
            .actors
            .spawn(NAME.to_owned(), RetentionActor, args, None)
            .await
            .expect("the retention actor starts");
        self.actor = Some(addr.clone());
        addr
    }

    /// The ids of every task, oldest first.
    fn ids(&self) -> Vec<u64> {
        let q = crate::api::TaskQuery {
            limit: Some(10_000),
            ..Default::default()
        };
        let mut ids: Vec<u64> = self
            .store
            .list(&q, None)
            .expect("list")
            .iter()
            .map(|t| t.id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The names under `runs/`, sorted.
    fn dirs(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.runs())
            .expect("runs")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Polls (letting paused time run) until the tasks are `want`; a wall-clock deadline.
    async fn until_tasks(&self, want: &[u64]) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let ids = self.ids();
            if ids == want {
                return;
            }
            assert!(Instant::now() < deadline, "tasks {ids:?}, want {want:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Lets every queued step run: the actor answers an inspect only after them.
    async fn settle(&self) -> serde_json::Value {
        let actor = self.actor.as_ref().expect("started");
        loop {
            let state = actor.inspect(PATIENCE).await.expect("inspect");
            if state["queued"] == 0 {
                return state;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}

fn names(ids: &[u64]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(u64::to_string).collect();
    v.sort();
    v
}

fn policy(max_age_secs: u64, max_count: u64, interval_secs: u64) -> Retention {
    Retention {
        policy: Policy {
            max_age: Age::from_secs(max_age_secs).expect("age"),
            max_count,
        },
        interval: Duration::from_secs(interval_secs),
    }
}

#[tokio::test(start_paused = true)]
async fn the_first_pass_removes_old_and_excess_tasks_with_their_run_logs_never_running_ones() {
    let mut h = Harness::new(&trigger("t", "{successful: 1}"));
    let ancient_running = h.task("w", None, TaskState::Running, -90 * DAY);
    let ancient_pending = h.task("w", None, TaskState::Pending, -80 * DAY);
    let old = h.task("w", None, TaskState::Succeeded, -40 * DAY);
    let old_failed = h.task("v", None, TaskState::Failed, -31 * DAY);
    // The trigger's historyLimit wins: its old task stays (it is its newest succeeded one).
    let limited = h.task("w", Some("t"), TaskState::Succeeded, -35 * DAY);
    let recent: Vec<u64> = (1..=5)
        .map(|i| h.task("w", None, TaskState::Succeeded, -DAY + i))
        .collect();
    std::fs::create_dir_all(h.runs().join("999")).expect("an orphaned run dir");
    std::fs::create_dir_all(h.runs().join("not-a-task")).expect("another dir");
    h.start(policy(30 * DAY as u64, 3, 3600)).await;

    // Age: `old` and `old_failed` go; count: `w` keeps its 3 newest finished tasks (the
    // limited one not counted); running and pending tasks stay however old.
    let kept = vec![
        ancient_running,
        ancient_pending,
        limited,
        recent[2],
        recent[3],
        recent[4],
    ];
    h.until_tasks(&kept).await;
    let state = h.settle().await;
    assert_eq!(state["removedTasks"], 4, "{state}");
    let mut want = names(&kept);
    want.push("not-a-task".into());
    want.sort();
    assert_eq!(
        h.dirs(),
        want,
        "the run dirs of removed tasks (and 999's) are gone"
    );
    let _ = (old, old_failed);
}

#[tokio::test(start_paused = true)]
async fn a_finished_task_over_its_triggers_history_limit_is_pruned_at_once() {
    let mut h = Harness::new(&format!(
        "{}---\n{}",
        trigger("hook", "{successful: 2, failed: 1}"),
        trigger("free", "{failed: 5}")
    ));
    // A pass a day away: only the finish notification can prune.
    let actor = h.start(policy(30 * DAY as u64, 10_000, 86_400)).await;
    h.settle().await;
    let ok: Vec<u64> = (0..4)
        .map(|i| h.task("w", Some("hook"), TaskState::Succeeded, i))
        .collect();
    let failed: Vec<u64> = (0..2)
        .map(|i| h.task("w", Some("hook"), TaskState::Failed, 10 + i))
        .collect();
    let running = h.task("w", Some("hook"), TaskState::Running, -DAY);
    let free = h.task("w", Some("free"), TaskState::Succeeded, 20);
    actor
        .cast(RetentionMsg::Finished(Finished {
            project: "default".into(),
            workflow: "w".into(),
            trigger: Some("hook".into()),
        }))
        .expect("cast");
    h.until_tasks(&[ok[2], ok[3], failed[1], running, free])
        .await;
    h.settle().await;
    assert_eq!(
        h.dirs(),
        names(&[ok[2], ok[3], failed[1], running, free]),
        "their run logs go with them"
    );
}

#[tokio::test(start_paused = true)]
async fn tasks_go_once_they_are_older_than_the_age_as_time_passes() {
    let mut h = Harness::new("");
    let first = h.task("w", None, TaskState::Succeeded, 0);
    h.start(policy(3600, 10_000, 60)).await;
    h.settle().await;
    let second = h.task("w", None, TaskState::Cancelled, 1800);
    // The newest task is never removed (its id would be reused): a pending one here.
    let newest = h.task("w", None, TaskState::Pending, 1801);
    assert_eq!(
        h.ids(),
        vec![first, second, newest],
        "nothing is an hour old yet"
    );
    // An hour and a pass later the first has aged out; half an hour more, the second.
    tokio::time::sleep(Duration::from_secs(3600 + 61)).await;
    h.until_tasks(&[second, newest]).await;
    tokio::time::sleep(Duration::from_secs(1800)).await;
    h.until_tasks(&[newest]).await;
    h.settle().await;
    assert_eq!(h.dirs(), names(&[newest]));
}

#[tokio::test(start_paused = true)]
async fn delete_and_prune_answer_what_they_removed_and_refuse_unfinished_tasks() {
    let mut h = Harness::new(&trigger("t", "{successful: 5}"));
    let running = h.task("w", None, TaskState::Running, -10 * DAY);
    let pending = h.task("w", None, TaskState::Pending, -10 * DAY);
    let done = h.task("w", None, TaskState::Failed, -5);
    let old: Vec<u64> = (0..3)
        .map(|i| h.task("w", Some("t"), TaskState::Succeeded, -3 * DAY + i))
        .collect();
    let newest = h.task("w", None, TaskState::Succeeded, -2 * DAY);
    let actor = h.start(policy(30 * DAY as u64, 10_000, 86_400)).await;
    h.settle().await;
    assert_eq!(h.ids().len(), 7, "nothing is due");

    let delete = |id: u64| {
        let actor = actor.clone();
        async move {
            actor
                .call(|r| RetentionMsg::Delete(id, r), PATIENCE)
                .await
                .expect("answers")
        }
    };
    let e = delete(running).await.expect_err("running");
    assert_eq!(
        e.to_string(),
        format!(
            "task {running} is running: only a finished task can be deleted; cancel it first (orchestrator task cancel {running})"
        )
    );
    assert!(matches!(
        delete(pending).await,
        Err(RetentionError::NotFinished { .. })
    ));
    delete(done).await.expect("deleted");
    assert!(matches!(
        delete(done).await,
        Err(RetentionError::NotFound(_))
    ));
    assert!(
        !h.runs().join(done.to_string()).exists(),
        "its run logs are gone"
    );
    let e = delete(newest).await.expect_err("the newest task");
    assert!(
        e.to_string().contains(
            "is the newest task and is kept so that its id is never given to another task"
        ),
        "{e}"
    );

    // A prune by request removes the history-limited tasks too: the operator asked.
    let removed = actor
        .call(
            |r| {
                RetentionMsg::Prune(
                    PruneRequest {
                        older_than: Age::from_secs(DAY as u64).expect("age"),
                        project: Some("default".into()),
                    },
                    r,
                )
            },
            PATIENCE,
        )
        .await
        .expect("answers")
        .expect("pruned");
    assert_eq!(removed, 3, "all but the newest");
    assert_eq!(h.ids(), vec![running, pending, newest]);
    h.settle().await;
    assert_eq!(h.dirs(), names(&[running, pending, newest]));
    let _ = old;
}
