//! In-process tests of the task actors: the real TaskSupervisor and WorkflowActors (and their
//! AgentActors) over a SQLite store in a temporary data dir, running real subprocesses (`sh`,
//! `sleep`). Timeouts run on paused tokio time, so a one-hour timeout takes no wall time.
//!
//! Each harness spawns its actors in a [`Registry`] of its own, so the tests run in parallel
//! although every data dir numbers its tasks from 1 (`workflow/1` exists in several at once);
//! each stops its supervisor (and with it every actor it started) at its end.

use std::time::Instant;

use super::*;
use crate::actors::runtime::Registry;
use crate::api::{RunState, StepRunInfo};
use crate::domain::manifest::parse_documents;
use crate::domain::redact::SecretRegistry;
use crate::store::{Stores, TaskStore};

/// How long a test waits for something that takes milliseconds (wall time).
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

struct Harness {
    actors: Registry,
    dir: tempfile::TempDir,
    store: Arc<dyn TaskStore>,
    snapshot: Arc<Snapshot>,
    tasks: Option<(Addr<TaskSupMsg>, tokio::task::JoinHandle<()>)>,
    /// How long [`Harness::until`] sleeps between looks. On paused time each sleep is also how
    /// far the clock may jump while the runtime is idle, so a test of long timeouts looks
    /// seldom.
    poll: Duration,
    /// `--max-running`.
    max_running: usize,
}

impl Harness {
    /// A data dir with the workspace `default` (an empty directory) and the `resources` (YAML
    /// documents without `apiVersion`; `{ws}` is the workspace root). The supervisor is not
    /// started yet.
    async fn new(resources: &str) -> Harness {
        let dir = tempfile::tempdir().expect("temp dir");
        let ws = dir.path().join("ws");
        std::fs::create_dir(&ws).expect("workspace");
        let text = format!(
            "kind: Workspace\nmetadata: {{name: default}}\nspec: {{root_path: {ws:?}}}\n---\n{resources}"
        )
        .replace("kind:", "apiVersion: orchestrator.dev/v2\nkind:")
        .replace("{ws}", &ws.display().to_string());
        let (docs, problems) = parse_documents("t.yaml", &text);
        assert!(problems.is_empty(), "{problems:?}");
        let manifests: Vec<_> = docs
            .into_iter()
            .map(|d| {
                let mut m = d.manifest;
                m.metadata.project = Some("default".into());
                m
            })
            .collect();
        let empty = Snapshot::default();
        let snapshot = Arc::new(empty.apply(&empty.plan(&manifests, now())));
        let Stores { tasks, .. } = crate::store::sqlite::open(dir.path()).expect("store");
        Harness {
            actors: Registry::new(),
            dir,
            store: tasks,
            snapshot,
            tasks: None,
            poll: Duration::from_millis(5),
            max_running: 64,
        }
    }

    fn ws(&self) -> std::path::PathBuf {
        self.dir.path().join("ws")
    }

    async fn start(&mut self) -> Addr<TaskSupMsg> {
        let (_publish, snapshots) = tokio::sync::watch::channel(self.snapshot.clone());
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into());
        let ctx = TaskContext {
            store: self.store.clone(),
            snapshots,
            runs_dir: self.dir.path().join("runs"),
            socket: self.dir.path().join("orchestrator.sock"),
            base_env: Arc::new(vec![("PATH".into(), path)]),
            grace: Duration::from_millis(200),
            stream_cap: 1 << 20,
            capture_cap: 1 << 20,
            secrets: Arc::new(SecretRegistry::new()),
            running: Default::default(),
            node: "test-node".into(),
            max_running: self.max_running,
        };
        let (addr, join) = self
            .actors
            .spawn_joinable(TASKS.to_owned(), TaskSupervisor, ctx, None)
            .await
            .expect("the task supervisor starts");
        self.tasks = Some((addr.clone(), join));
        addr
    }

    async fn create(&self, tasks: &Addr<TaskSupMsg>, workflow: &str) -> Result<u64, TaskError> {
        let req = TaskRequest {
            project: "default".into(),
            workflow: workflow.into(),
            workspace: None,
            goal: Some("the goal".into()),
            payload: None,
            origin: "cli".into(),
            trigger: None,
            scheduled_at: None,
            start: true,
            delivery: None,
            fence: None,
        };
        tasks
            .call(|r| TaskSupMsg::Create(req, r), Duration::from_secs(10))
            .await
            .expect("the supervisor answers")
            .map(|t| t.id)
    }

    /// Polls until `done` holds for task `id`, with a wall-clock deadline (on paused time the
    /// runtime runs everything that is ready, then jumps to its next timer).
    async fn until(&self, id: u64, what: &str, done: impl Fn(&TaskInfo, &[StepRunInfo]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let task = self.store.get(id).expect("get").expect("the task exists");
            let runs = self.store.runs(id).expect("runs");
            if done(&task, &runs) {
                return;
            }
            assert!(Instant::now() < deadline, "task {id}: {what}: {task:?}");
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn finished(&self, id: u64) -> (TaskInfo, Vec<StepRunInfo>) {
        self.until(id, "finished", |t, _| t.state.is_finished())
            .await;
        let task = self.store.get(id).expect("get").expect("the task exists");
        (task, self.store.runs(id).expect("runs"))
    }

    /// Shuts the supervisor down and waits until every actor it started has stopped.
    async fn stop(mut self) {
        if let Some((addr, join)) = self.tasks.take() {
            addr.call(TaskSupMsg::Shutdown, PATIENCE)
                .await
                .expect("shutdown answers");
            addr.cell().stop(None);
            join.await.expect("the supervisor stops");
        }
    }
}

/// `(step, attempt, state, reason)` of each run.
fn runs_of(runs: &[StepRunInfo]) -> Vec<(&str, u32, RunState, Option<&str>)> {
    runs.iter()
        .map(|r| (r.step.as_str(), r.attempt, r.state, r.reason.as_deref()))
        .collect()
}

#[tokio::test]
async fn steps_pass_their_output_and_the_prompt_reaches_the_agent() {
    let mut h = Harness::new(
        r#"
kind: StepTemplate
metadata: {name: review}
spec: {prompt: "review {a_output} for {goal}"}
---
kind: Agent
metadata: {name: reader}
spec: {command: "sh -c 'cat > prompt.txt'", capabilities: [review], promptDelivery: stdin}
---
kind: Workflow
metadata: {name: w}
spec:
  steps:
    - {id: a, command: "printf 'hello\n\n'"}
    - {id: b, command: "sh -c 'test \"$1\" = hello' sh {prev_stdout}"}
    - {id: c, template: review, required_capability: review}
"#,
    )
    .await;
    let tasks = h.start().await;
    let missing = h
        .create(&tasks, "nope")
        .await
        .expect_err("unknown workflow");
    assert!(
        missing.to_string().contains("workflow \"nope\" not found"),
        "{missing:?}"
    );
    let id = h.create(&tasks, "w").await.expect("created");
    let (task, runs) = h.finished(id).await;
    assert_eq!(task.state, TaskState::Succeeded, "{runs:?}");
    let want = [
        ("a", 1, RunState::Succeeded, None),
        ("b", 1, RunState::Succeeded, None),
        ("c", 1, RunState::Succeeded, None),
    ];
    assert_eq!(runs_of(&runs), want);
    assert_eq!(runs[2].agent.as_deref(), Some("reader"));
    let prompt = std::fs::read_to_string(h.ws().join("prompt.txt")).expect("prompt");
    assert_eq!(prompt, "review hello for the goal");
    h.stop().await;
}

#[tokio::test]
async fn failed_attempts_are_retried_then_fail_the_task_with_the_reason() {
    let mut h = Harness::new(
        r#"
kind: Workflow
metadata: {name: flaky}
spec:
  steps:
    - {id: s, command: "sh -c 'if test -e marker; then exit 0; fi; touch marker; exit 1'", retries: 1}
---
kind: Workflow
metadata: {name: broken}
spec:
  steps:
    - {id: s, command: "sh -c 'exit 3'", retries: 2}
    - {id: never, command: "true"}
"#,
    )
    .await;
    let tasks = h.start().await;
    let flaky = h.create(&tasks, "flaky").await.expect("created");
    let (task, runs) = h.finished(flaky).await;
    assert_eq!(task.state, TaskState::Succeeded);
    let exit1 = Some("exit code 1");
    assert_eq!(
        runs_of(&runs),
        [
            ("s", 1, RunState::Failed, exit1),
            ("s", 2, RunState::Succeeded, None)
        ]
    );

    let broken = h.create(&tasks, "broken").await.expect("created");
    let (task, runs) = h.finished(broken).await;
    assert_eq!(task.state, TaskState::Failed);
    assert_eq!(
        task.reason.as_deref(),
        Some("step \"s\" failed after 3 attempts: exit code 3")
    );
    let exit3 = Some("exit code 3");
    assert_eq!(
        runs_of(&runs),
        [
            ("s", 1, RunState::Failed, exit3),
            ("s", 2, RunState::Failed, exit3),
            ("s", 3, RunState::Failed, exit3)
        ]
    );
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_timed_out_attempt_is_stopped_and_retried_on_paused_time() {
    let mut h = Harness::new(
        r#"
kind: Agent
metadata: {name: slow}
spec: {command: "sleep 7200", capabilities: [wait], timeout_secs: 3600}
---
kind: StepTemplate
metadata: {name: wait}
spec: {prompt: "wait"}
---
kind: Workflow
metadata: {name: w}
spec:
  steps:
    - {id: s, template: wait, required_capability: wait, retries: 1}
"#,
    )
    .await;
    h.poll = Duration::from_secs(10);
    let tasks = h.start().await;
    let started = Instant::now();
    let id = h.create(&tasks, "w").await.expect("created");
    let (task, runs) = h.finished(id).await;
    let timed_out = Some("timed out; the agent's process group was stopped");
    assert_eq!(
        runs_of(&runs),
        [
            ("s", 1, RunState::TimedOut, timed_out),
            ("s", 2, RunState::TimedOut, timed_out)
        ]
    );
    assert_eq!(task.state, TaskState::Failed);
    assert_eq!(
        task.reason.as_deref(),
        Some(
            "step \"s\" failed after 2 attempts: timed out; the agent's process group was stopped"
        )
    );
    // Two hours of timeouts on the paused clock, well under a minute of wall time.
    assert!(started.elapsed() < PATIENCE, "{:?}", started.elapsed());
    h.stop().await;
}

#[tokio::test]
async fn cancel_stops_the_running_agent_and_answers_with_the_task() {
    let mut h = Harness::new(
        r#"
kind: Workflow
metadata: {name: w}
spec:
  steps:
    - {id: s, command: "sleep 30"}
"#,
    )
    .await;
    let tasks = h.start().await;
    let id = h.create(&tasks, "w").await.expect("created");
    h.until(id, "its step runs", |_, runs| {
        runs.first().is_some_and(|r| r.pid.is_some())
    })
    .await;
    let info = tasks
        .call(|r| TaskSupMsg::Cancel(id, CancelReason::User, r), PATIENCE)
        .await
        .expect("the supervisor answers")
        .expect("cancelled");
    assert_eq!(info.state, TaskState::Cancelled);
    assert_eq!(info.reason.as_deref(), Some("cancelled by request"));
    let runs = h.store.runs(id).expect("runs");
    assert_eq!(
        runs_of(&runs),
        [("s", 1, RunState::Cancelled, Some("cancelled"))]
    );
    let again = tasks
        .call(|r| TaskSupMsg::Cancel(id, CancelReason::User, r), PATIENCE)
        .await
        .expect("the supervisor answers")
        .expect_err("nothing to cancel");
    assert!(again.to_string().contains("already cancelled"), "{again:?}");
    h.stop().await;
}

/// Records task `workflow` as a daemon that died mid-step would have left it: running, with a
/// run of its first step still running.
fn interrupted_task(h: &Harness, workflow: &str) -> u64 {
    let Some(crate::domain::snapshot::Resource {
        spec: Spec::Workflow(spec),
        ..
    }) = h
        .snapshot
        .lookup("default", Kind::Workflow, workflow)
        .map(|r| &**r)
    else {
        panic!("workflow {workflow} exists");
    };
    let new = NewTask {
        project: "default".into(),
        workflow: workflow.into(),
        workspace: "default".into(),
        workspace_root: h.ws().display().to_string(),
        workflow_spec: serde_json::to_value(spec).expect("spec"),
        goal: None,
        payload: None,
        origin: "cli".into(),
        trigger: None,
        scheduled_at: None,
        state: TaskState::Running,
        reason: None,
        held: false,
        worktree: false,
        fence: None,
    };
    let id = h.store.create(&new, now()).expect("task").id;
    h.store
        .start_run(id, "s", 1, 1, None, &["true".into()], "s.log", now())
        .expect("run");
    id
}

#[tokio::test]
async fn a_task_found_running_at_start_resumes_its_interrupted_step() {
    let mut h = Harness::new(
        r#"
kind: Workflow
metadata: {name: retried}
spec:
  steps:
    - {id: s, command: "true", retries: 1}
    - {id: t, command: "true"}
---
kind: Workflow
metadata: {name: once}
spec:
  steps:
    - {id: s, command: "true"}
"#,
    )
    .await;
    let retried = interrupted_task(&h, "retried");
    let once = interrupted_task(&h, "once");
    h.start().await;

    let (task, runs) = h.finished(retried).await;
    assert_eq!(task.state, TaskState::Succeeded, "{runs:?}");
    let interrupted = Some(crate::domain::workflow::INTERRUPTED);
    assert_eq!(
        runs_of(&runs),
        [
            ("s", 1, RunState::Interrupted, interrupted),
            ("s", 2, RunState::Succeeded, None),
            ("t", 1, RunState::Succeeded, None)
        ]
    );
    let events = h.store.events(retried).expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.message == "resumed after an interruption"),
        "{events:?}"
    );

    let (task, runs) = h.finished(once).await;
    assert_eq!(task.state, TaskState::Failed);
    assert_eq!(
        task.reason,
        Some(format!(
            "step \"s\" failed: {}",
            crate::domain::workflow::INTERRUPTED
        ))
    );
    assert_eq!(
        runs_of(&runs),
        [("s", 1, RunState::Interrupted, interrupted)]
    );
    h.stop().await;
}

/// A finished task leaves no record behind in the actor registry: its WorkflowActor is forgotten
/// by its supervisor, its AgentActors (one per attempt) when they stop.
#[tokio::test]
async fn finished_tasks_leave_only_the_supervisor_in_the_registry() {
    let mut h = Harness::new(
        r#"
kind: Agent
metadata: {name: echo}
spec: {command: "cat", capabilities: [say], promptDelivery: stdin}
---
kind: StepTemplate
metadata: {name: say}
spec: {prompt: "hi"}
---
kind: Workflow
metadata: {name: w}
spec:
  max_parallel: 4
  steps:
    - {id: a, command: "true"}
    - {id: b, template: say, required_capability: say}
    - {id: c, command: "sh -c 'test -e marker-{task_id} || { touch marker-{task_id}; exit 1; }'", retries: 1}
"#,
    )
    .await;
    let tasks = h.start().await;
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(h.create(&tasks, "w").await.expect("created"));
    }
    for id in ids {
        let (task, runs) = h.finished(id).await;
        assert_eq!(task.state, TaskState::Succeeded, "{runs:?}");
        assert_eq!(runs.len(), 4, "the failed attempt of c counts: {runs:?}");
    }
    let deadline = Instant::now() + PATIENCE;
    loop {
        let names = h.actors.names();
        if names == ["tasks"] {
            break;
        }
        assert!(Instant::now() < deadline, "left behind: {names:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.stop().await;
}

/// A creation is answered once its commit is back, and while it is on its way the trigger's
/// concurrency policy already counts it (`Forbid` skips a fire while the previous fire's task is
/// being committed).
#[tokio::test]
async fn a_creation_waiting_for_its_commit_counts_as_active_for_its_trigger() {
    let mut h = Harness::new(
        r#"
kind: Workflow
metadata: {name: w}
spec:
  steps: [{id: s, command: "true"}]
"#,
    )
    .await;
    let tasks = h.start().await;
    let active = || async {
        tasks
            .call(
                |reply| TaskSupMsg::Active {
                    project: "default".into(),
                    trigger: "t".into(),
                    reply,
                },
                PATIENCE,
            )
            .await
            .expect("the supervisor answers")
    };
    let req = TaskRequest {
        project: "default".into(),
        workflow: "w".into(),
        workspace: None,
        goal: None,
        payload: None,
        origin: "trigger/t".into(),
        trigger: Some("t".into()),
        scheduled_at: None,
        start: false,
        delivery: None,
        fence: None,
    };
    // On this single-threaded runtime the supervisor handles the creation, then the question,
    // before the commit can come back as a message.
    let (reply, created) = ractor::concurrency::oneshot();
    tasks
        .cast(TaskSupMsg::Create(req, reply.into()))
        .expect("sent");
    let during = active().await;
    assert_eq!((during.ids.len(), during.creating), (0, 1), "{during:?}");
    let info = created
        .await
        .expect("answered")
        .expect("the task is created");
    let after = active().await;
    assert_eq!((after.ids, after.creating), (vec![info.id], 0));
    assert!(h.store.get(info.id).expect("get").is_some());
    h.stop().await;
}

#[tokio::test]
async fn max_running_caps_the_tasks_of_all_workflows_and_starts_the_oldest_first() {
    let step = r#"{id: s, command: "sh -c 'echo start-$1 >> ../order; sleep 0.2; echo end-$1 >> ../order' sh {task_id}"}"#;
    let mut h = Harness::new(&format!(
        "kind: Workflow\nmetadata: {{name: a}}\nspec: {{max_parallel: 5, steps: [{step}]}}\n---\nkind: Workflow\nmetadata: {{name: b}}\nspec: {{max_parallel: 5, steps: [{step}]}}\n"
    ))
    .await;
    h.max_running = 1;
    let tasks = h.start().await;
    let mut ids = Vec::new();
    for w in ["a", "b", "a", "b"] {
        ids.push(h.create(&tasks, w).await.expect("created"));
    }
    for id in &ids {
        let (task, runs) = h.finished(*id).await;
        assert_eq!(task.state, TaskState::Succeeded, "{runs:?}");
        assert_eq!(task.node.as_deref(), Some("test-node"));
    }
    let order = std::fs::read_to_string(h.dir.path().join("order")).expect("order");
    let want: String = ids
        .iter()
        .map(|id| format!("start-{id}\nend-{id}\n"))
        .collect();
    assert_eq!(order, want, "one task at a time, oldest first");
    h.stop().await;
}
