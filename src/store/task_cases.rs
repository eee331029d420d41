//! What every backend's task store must do, as checks that take the store and run the same
//! cases on each: `sqlite::conformance_tests` and `postgres::conformance_tests` call these on a
//! fresh database of their own. Retention (what each prune keeps, that no pending or running
//! task is ever deleted, batching), a task's life (runs, events, outputs, worktree, release),
//! the replay record of webhook deliveries, and the step runs a crash leaves running.

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::api::{
    RunState, StreamSummary, TaskQuery, TaskState, ToolCount, WorktreeInfo, WorktreeState,
};
use crate::domain::retention::{HistoryLimited, key};
use crate::store::{
    AgeScan, Deleted, NewTask, ReplayStore, RunEnd, SeenDelivery, StoreError, TaskStore,
};

/// A task store under test, with helpers that make tasks in a given state.
pub(crate) struct Db<'a> {
    pub tasks: &'a dyn TaskStore,
}

/// Minute `m` of a fixed day.
pub(crate) fn at(m: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .expect("time")
        + Duration::minutes(m)
}

impl Db<'_> {
    /// A task of `workflow` (from `trigger`) created at minute `created`; it ends in `state` at
    /// minute `created + 1` when that state is a finished one.
    pub(crate) fn task(
        &self,
        workflow: &str,
        trigger: Option<&str>,
        state: TaskState,
        created: i64,
    ) -> u64 {
        self.task_in("default", workflow, trigger, state, created, None)
    }

    pub(crate) fn task_in(
        &self,
        project: &str,
        workflow: &str,
        trigger: Option<&str>,
        state: TaskState,
        created: i64,
        payload: Option<String>,
    ) -> u64 {
        let new = NewTask {
            project: project.into(),
            workflow: workflow.into(),
            workspace: "default".into(),
            workspace_root: "/tmp".into(),
            workflow_spec: serde_json::json!({"steps": []}),
            goal: None,
            payload,
            origin: "cli".into(),
            trigger: trigger.map(str::to_owned),
            scheduled_at: None,
            state: TaskState::Pending,
            reason: None,
            held: false,
            worktree: false,
            fence: None,
        };
        let id = self.tasks.create(&new, at(created)).expect("create").id;
        if state != TaskState::Pending {
            self.tasks
                .set_state(id, TaskState::Running, None, at(created))
                .expect("running");
            self.tasks
                .start_run(id, "s", 1, 1, None, &["true".into()], "s.log", at(created))
                .expect("run");
        }
        if state.is_finished() {
            self.tasks
                .set_state(id, state, None, at(created + 1))
                .expect("finish");
        }
        id
    }

    /// The ids of every task, oldest first.
    pub(crate) fn ids(&self) -> Vec<u64> {
        let q = crate::api::TaskQuery {
            limit: Some(10_000),
            ..Default::default()
        };
        let mut ids: Vec<u64> = self
            .tasks
            .list(&q, None)
            .expect("list")
            .iter()
            .map(|t| t.id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

use TaskState::{Cancelled, Failed, Pending, Running, Succeeded};

pub(crate) fn a_history_limit_keeps_exactly_the_newest_n_of_each_outcome(tasks: &dyn TaskStore) {
    let d = Db { tasks };
    let s: Vec<u64> = (0..5)
        .map(|i| d.task("w", Some("t"), Succeeded, i))
        .collect();
    let f1 = d.task("w", Some("t"), Failed, 10);
    let c = d.task("w", Some("t"), Cancelled, 11);
    let running = d.task("w", Some("t"), Running, -100);
    let pending = d.task("w", Some("t"), Pending, -99);
    let other = d.task("w", Some("u"), Succeeded, -98);
    // A batch of 2 leaves more to do: the caller comes back.
    let first = d
        .tasks
        .prune_trigger("default", "t", Some(2), Some(1), 2)
        .expect("prune");
    assert_eq!(first, vec![s[1], s[2]], "the newest beyond the limit first");
    let second = d
        .tasks
        .prune_trigger("default", "t", Some(2), Some(1), 2)
        .expect("prune");
    assert_eq!(second, vec![s[0], f1]);
    let last = d
        .tasks
        .prune_trigger("default", "t", Some(2), Some(1), 2)
        .expect("prune");
    assert!(last.is_empty(), "{last:?}");
    assert_eq!(d.ids(), {
        let mut want = vec![s[3], s[4], c, running, pending, other];
        want.sort_unstable();
        want
    });
    // Only the limits given apply; zero keeps none.
    let gone = d
        .tasks
        .prune_trigger("default", "t", None, Some(0), 500)
        .expect("prune");
    assert_eq!(gone, vec![c]);
    assert!(d.tasks.get(running).expect("get").is_some());
    assert!(d.tasks.get(pending).expect("get").is_some());
}

pub(crate) fn the_count_keeps_each_workflows_newest_and_leaves_history_limited_tasks_alone(
    tasks: &dyn TaskStore,
) {
    let d = Db { tasks };
    let old_running = d.task("w", None, Running, 0);
    let plain: Vec<u64> = (1..=5).map(|i| d.task("w", None, Succeeded, i)).collect();
    let limited_ok = d.task("w", Some("t"), Succeeded, 6);
    let limited_failed = d.task("w", Some("t"), Failed, 7);
    let newest = d.task("w", None, Failed, 8);
    let small = d.task("v", None, Succeeded, 9);
    let limited = HistoryLimited {
        succeeded: vec![key("default", "t")],
        failed: vec![],
    };
    // w has 5 + 1 (t's failed task: its trigger limits only succeeded ones) + 1 = 7 counted.
    assert_eq!(
        d.tasks.over_count(3, &limited).expect("over"),
        vec![("default".to_owned(), "w".to_owned())]
    );
    let gone = d
        .tasks
        .prune_workflow("default", "w", 3, &limited, 500)
        .expect("prune");
    assert_eq!(gone, vec![plain[0], plain[1], plain[2], plain[3]]);
    assert_eq!(d.ids(), {
        let mut want = vec![
            old_running,
            plain[4],
            limited_ok,
            limited_failed,
            newest,
            small,
        ];
        want.sort_unstable();
        want
    });
    assert!(d.tasks.over_count(3, &limited).expect("over").is_empty());
    assert!(
        d.tasks
            .prune_workflow("default", "w", 3, &limited, 500)
            .expect("prune")
            .is_empty(),
        "at the count: nothing more goes"
    );
}

pub(crate) fn the_age_sweep_removes_what_finished_before_the_cut_off_in_batches(
    tasks: &dyn TaskStore,
) {
    let d = Db { tasks };
    let a = d.task("w", None, Succeeded, 0); // finished at 1
    let b = d.task("w", None, Running, 1); // old, but running
    let c = d.task("w", Some("t"), Succeeded, 2); // limited
    let e = d.task_in("p", "w", None, Failed, 3, None); // another project
    let f = d.task("w", None, Cancelled, 4); // finished at 5
    let g = d.task("w", None, Succeeded, 9); // finished at 10: after the cut-off
    let h = d.task("w", None, Succeeded, 20); // created after the cut-off
    let limited = HistoryLimited {
        succeeded: vec![key("default", "t")],
        failed: vec![],
    };
    let mut after = 0;
    let mut removed = Vec::new();
    let mut steps = 0;
    loop {
        let swept = d
            .tasks
            .prune_older(&AgeScan {
                finished_before: at(10),
                project: Some("default"),
                limited: Some(&limited),
                after,
                batch: 2,
            })
            .expect("sweep");
        removed.extend(swept.removed);
        steps += 1;
        match swept.next {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(removed, vec![a, f]);
    assert!(steps >= 3, "batches of two: {steps} steps");
    assert_eq!(d.ids(), vec![b, c, e, g, h]);
    // Every project, no limit: the limited task and the other project's go too.
    let swept = d
        .tasks
        .prune_older(&AgeScan {
            finished_before: at(10),
            project: None,
            limited: None,
            after: 0,
            batch: 500,
        })
        .expect("sweep");
    assert_eq!(swept.removed, vec![c, e]);
    assert_eq!(swept.next, None);
    assert_eq!(d.ids(), vec![b, g, h]);
}

pub(crate) fn delete_removes_a_finished_task_with_its_rows_and_refuses_the_others(
    tasks: &dyn TaskStore,
) {
    let d = Db { tasks };
    let done = d.task("w", None, Failed, 0);
    let running = d.task("w", None, Running, 1);
    let pending = d.task("w", None, Pending, 2);
    assert!(!d.tasks.runs(done).expect("runs").is_empty());
    assert_eq!(
        d.tasks.delete_finished(done).expect("delete"),
        Deleted::Removed
    );
    assert!(d.tasks.get(done).expect("get").is_none());
    assert!(d.tasks.runs(done).expect("runs").is_empty(), "step runs go");
    assert!(
        d.tasks.events(done).expect("events").is_empty(),
        "events go"
    );
    assert_eq!(
        d.tasks.delete_finished(done).expect("delete"),
        Deleted::NotFound
    );
    assert_eq!(
        d.tasks.delete_finished(running).expect("delete"),
        Deleted::NotFinished(Running)
    );
    assert_eq!(
        d.tasks.delete_finished(pending).expect("delete"),
        Deleted::NotFinished(Pending)
    );
    assert_eq!(d.ids(), vec![running, pending]);
    assert_eq!(
        d.tasks.existing(&[done, running, 999]).expect("existing"),
        vec![running]
    );
    // The newest task stays until a newer one exists, so that its id is never reused.
    let newest = d.task("w", None, Succeeded, 3);
    assert_eq!(
        d.tasks.delete_finished(newest).expect("delete"),
        Deleted::Newest
    );
    let swept = d
        .tasks
        .prune_older(&AgeScan {
            finished_before: at(100),
            project: None,
            limited: None,
            after: 0,
            batch: 500,
        })
        .expect("sweep");
    assert!(swept.removed.is_empty(), "{swept:?}");
    assert!(
        d.tasks
            .prune_workflow("default", "w", 0, &HistoryLimited::default(), 500)
            .expect("prune")
            .is_empty()
    );
    let newer = d.task("w", None, Pending, 4);
    assert!(newer > newest);
    assert_eq!(
        d.tasks.delete_finished(newest).expect("delete"),
        Deleted::Removed
    );
    let next = d.task("w", None, Pending, 5);
    assert!(next > newer, "ids are never reused");
}

/// A new task of project `default` (held, from webhook trigger `hook`).
pub(crate) fn new_task(workflow: &str, payload: &str) -> NewTask {
    NewTask {
        project: "default".into(),
        workflow: workflow.into(),
        workspace: "ws".into(),
        workspace_root: "/srv/ws".into(),
        workflow_spec: serde_json::json!({"steps": [{"name": "s", "run": ["true"]}]}),
        goal: Some("the goal".into()),
        payload: Some(payload.into()),
        origin: "webhook/hook".into(),
        trigger: Some("hook".into()),
        scheduled_at: None,
        state: TaskState::Pending,
        reason: None,
        held: true,
        worktree: false,
        fence: None,
    }
}

fn end(state: RunState, stdout: &str, stream: Option<StreamSummary>) -> RunEnd {
    RunEnd {
        state,
        exit_code: Some(if state == RunState::Succeeded { 0 } else { 3 }),
        signal: None,
        reason: (state != RunState::Succeeded).then(|| "exit 3".to_owned()),
        stdout: stdout.into(),
        stdout_bytes: stdout.len() as u64,
        stderr_bytes: 7,
        stream,
    }
}

/// A task from creation to success: what each write leaves for the reads (`task show`, the
/// workflow actor's resume), and the list's filters.
pub(crate) fn task_life(tasks: &dyn TaskStore) {
    let mut t = new_task("w", "{\"n\": 1}");
    t.worktree = true;
    t.scheduled_at = Some(at(-1));
    let created = tasks.create(&t, at(0)).expect("create");
    assert_eq!(
        tasks.get(created.id).expect("get").as_ref(),
        Some(&created),
        "what create answers is what is stored"
    );
    assert_eq!(
        created.worktree,
        Some(WorktreeInfo {
            state: WorktreeState::Requested,
            path: None
        })
    );
    let queued = tasks.ids_in_state(TaskState::Pending).expect("queued");
    assert_eq!(queued.len(), 1);
    assert!(queued[0].held && queued[0].id == created.id);
    assert_eq!(queued[0].trigger.as_deref(), Some("hook"));
    tasks.release(created.id, at(1)).expect("release");
    assert!(!tasks.ids_in_state(TaskState::Pending).expect("queued")[0].held);
    tasks
        .set_state(created.id, TaskState::Running, None, at(2))
        .expect("running");
    tasks
        .set_worktree(created.id, WorktreeState::Created, Some("/srv/wt/1"))
        .expect("worktree");

    let first = tasks
        .start_run(
            created.id,
            "s",
            1,
            1,
            None,
            &["sh".into(), "-c".into(), "exit 3".into()],
            "s.log",
            at(3),
        )
        .expect("run");
    tasks.set_run_pid(first, 4242, Some(99)).expect("pid");
    let running = tasks.running_runs("n").expect("running");
    assert_eq!(running.len(), 1);
    assert_eq!((running[0].run_id, running[0].task_id), (first, created.id));
    assert_eq!(
        (running[0].pid, running[0].pid_start),
        (Some(4242), Some(99))
    );
    tasks
        .finish_run(first, &end(RunState::Failed, "plain out", None), at(4))
        .expect("finish");
    let stream = StreamSummary {
        result: Some("the result".into()),
        result_truncated: true,
        subtype: Some("success".into()),
        is_error: Some(false),
        turns: 3,
        input_tokens: Some(120),
        output_tokens: Some(45),
        cost_usd: Some(0.25),
        session_id: Some("sess-1".into()),
        tools: vec![ToolCount {
            name: "Bash".into(),
            count: 2,
        }],
        bad_lines: 1,
        stopped: None,
        has_result: false,
    };
    let second = tasks
        .start_run(
            created.id,
            "s",
            2,
            2,
            Some("claude"),
            &["claude".into()],
            "s2.log",
            at(5),
        )
        .expect("run");
    tasks
        .finish_run(
            second,
            &end(
                RunState::Succeeded,
                "{\"type\":\"result\"}",
                Some(stream.clone()),
            ),
            at(6),
        )
        .expect("finish");
    assert!(tasks.running_runs("n").expect("running").is_empty());

    let runs = tasks.runs(created.id).expect("runs");
    assert_eq!(runs.len(), 2);
    let (a, b) = (&runs[0], &runs[1]);
    assert_eq!(
        (a.id, a.cycle, a.attempt, a.state),
        (first, 1, 1, RunState::Failed)
    );
    assert_eq!(a.argv, vec!["sh", "-c", "exit 3"]);
    assert_eq!((a.pid, a.exit_code, a.signal), (Some(4242), Some(3), None));
    assert_eq!(a.reason.as_deref(), Some("exit 3"));
    assert_eq!((a.stdout_bytes, a.stderr_bytes), (9, 7));
    assert_eq!(
        (a.log_path.as_str(), a.started_at, a.finished_at),
        ("s.log", at(3), Some(at(4)))
    );
    assert_eq!(a.stream_json, None);
    assert_eq!(
        (b.id, b.agent.as_deref(), b.state),
        (second, Some("claude"), RunState::Succeeded)
    );
    assert_eq!(b.stream_json.as_ref(), Some(&stream));

    let outputs = tasks.outputs(created.id).expect("outputs");
    let outs: Vec<_> = outputs
        .iter()
        .map(|o| {
            (
                o.step.as_str(),
                o.cycle,
                o.attempt,
                o.state,
                o.stdout.as_str(),
            )
        })
        .collect();
    assert_eq!(
        outs,
        vec![
            ("s", 1, 1, RunState::Failed, "plain out"),
            ("s", 2, 2, RunState::Succeeded, "the result"),
        ],
        "a stream-json run's output is its result"
    );

    tasks
        .set_worktree(created.id, WorktreeState::Removed, None)
        .expect("worktree");
    tasks
        .set_state(
            created.id,
            TaskState::Succeeded,
            Some("all steps done"),
            at(7),
        )
        .expect("done");
    tasks.event(created.id, "a note", at(8)).expect("event");
    let record = tasks.record(created.id).expect("record").expect("a record");
    let info = &record.info;
    assert_eq!(info.state, TaskState::Succeeded);
    assert_eq!(info.reason.as_deref(), Some("all steps done"));
    assert_eq!((info.cycle, info.step.as_deref()), (2, Some("s")));
    assert_eq!(
        (info.created_at, info.started_at, info.finished_at),
        (at(0), Some(at(2)), Some(at(7)))
    );
    assert_eq!(info.scheduled_at, Some(at(-1)));
    assert_eq!(
        info.worktree,
        Some(WorktreeInfo {
            state: WorktreeState::Removed,
            path: Some("/srv/wt/1".into())
        }),
        "a later state without a path keeps the path"
    );
    assert_eq!(record.workspace_root, "/srv/ws");
    assert_eq!(record.workflow_spec, t.workflow_spec);
    assert_eq!(record.payload.as_deref(), Some("{\"n\": 1}"));
    assert_eq!(
        tasks.payload(created.id).expect("payload").as_deref(),
        Some("{\"n\": 1}")
    );
    let events: Vec<_> = tasks
        .events(created.id)
        .expect("events")
        .into_iter()
        .map(|e| (e.at, e.message))
        .collect();
    assert_eq!(
        events,
        vec![
            (at(0), "created by webhook/hook".to_owned()),
            (at(1), "started by request".to_owned()),
            (at(2), "running".to_owned()),
            (at(7), "succeeded: all steps done".to_owned()),
            (at(8), "a note".to_owned()),
        ]
    );

    // The list: newest first, each filter, the limit, the project.
    let mut other = new_task("v", "{}");
    other.trigger = None;
    let v = tasks.create(&other, at(9)).expect("create").id;
    let mut elsewhere = new_task("w", "{}");
    elsewhere.project = "p".into();
    let p = tasks.create(&elsewhere, at(10)).expect("create").id;
    let list = |q: TaskQuery, project: Option<&str>| -> Vec<u64> {
        tasks
            .list(&q, project)
            .expect("list")
            .iter()
            .map(|t| t.id)
            .collect()
    };
    assert_eq!(list(TaskQuery::default(), None), vec![p, v, created.id]);
    assert_eq!(
        list(TaskQuery::default(), Some("default")),
        vec![v, created.id]
    );
    let q = |f: fn(&mut TaskQuery)| {
        let mut q = TaskQuery::default();
        f(&mut q);
        q
    };
    assert_eq!(
        list(q(|q| q.state = Some("succeeded".into())), None),
        vec![created.id]
    );
    assert_eq!(
        list(q(|q| q.workflow = Some("w".into())), None),
        vec![p, created.id]
    );
    assert_eq!(
        list(q(|q| q.trigger = Some("hook".into())), Some("default")),
        vec![created.id]
    );
    assert_eq!(list(q(|q| q.limit = Some(1)), None), vec![p]);
    assert_eq!(tasks.get(p + 1000).expect("get"), None);
    assert!(tasks.record(p + 1000).expect("record").is_none());
    assert_eq!(tasks.payload(p + 1000).expect("payload"), None);
}

/// A delivery id creates one task within its replay window — a second creation writes
/// nothing and names the first task — and a new task after it; the same id under another
/// trigger is another delivery.
pub(crate) fn delivery_replay(tasks: &dyn TaskStore, replay: &dyn ReplayStore) {
    let delivery = |trigger: &str, id: &str, expires: i64| SeenDelivery {
        project: "default".into(),
        trigger: trigger.into(),
        id: id.into(),
        expires_at: at(expires),
    };
    let count = || tasks.list(&TaskQuery::default(), None).expect("list").len();
    let first = tasks
        .create_with(
            &new_task("w", "1"),
            Some(&delivery("hook", "d-1", 5)),
            at(0),
        )
        .expect("created");
    assert_eq!(
        replay.seen("default", "hook", "d-1", at(1)).expect("seen"),
        Some(first.id)
    );
    match tasks.create_with(
        &new_task("w", "2"),
        Some(&delivery("hook", "d-1", 6)),
        at(1),
    ) {
        Err(StoreError::DuplicateDelivery { task }) => assert_eq!(task, first.id),
        other => panic!("a replay was not refused: {other:?}"),
    }
    assert_eq!(count(), 1, "the replay wrote nothing");
    assert_eq!(
        replay.seen("default", "hook", "d-1", at(4)).expect("seen"),
        Some(first.id),
        "the refused replay did not extend the window"
    );
    let other = tasks
        .create_with(
            &new_task("w", "3"),
            Some(&delivery("other", "d-1", 5)),
            at(1),
        )
        .expect("another trigger's delivery");
    assert_ne!(other.id, first.id);
    assert_eq!(
        replay.seen("default", "hook", "d-1", at(5)).expect("seen"),
        None,
        "expired"
    );
    assert_eq!(
        replay.seen("default", "hook", "d-9", at(1)).expect("seen"),
        None
    );
    let again = tasks
        .create_with(
            &new_task("w", "4"),
            Some(&delivery("hook", "d-1", 11)),
            at(6),
        )
        .expect("created after the window");
    assert!(again.id > other.id);
    assert_eq!(
        replay.seen("default", "hook", "d-1", at(7)).expect("seen"),
        Some(again.id)
    );
    assert_eq!(count(), 3);
    let plain = tasks.create(&new_task("w", "5"), at(7)).expect("created");
    assert_eq!(
        tasks.payload(plain.id).expect("payload").as_deref(),
        Some("5")
    );
}

/// The step runs a stopped daemon left running: listed with their process groups, and
/// marked interrupted task by task.
pub(crate) fn interrupted_runs(tasks: &dyn TaskStore) {
    let d = Db { tasks };
    let a = d.task("w", None, Running, 0);
    let b = d.task("w", None, Running, 1);
    let done = d.task("w", None, Succeeded, 2);
    let second = tasks
        .start_run(a, "t", 1, 2, None, &["sleep".into()], "t.log", at(3))
        .expect("run");
    tasks.set_run_pid(second, 77, None).expect("pid");
    let mut running: Vec<_> = tasks
        .running_runs("n")
        .expect("running")
        .into_iter()
        .map(|r| (r.task_id, r.run_id, r.pid))
        .collect();
    running.sort_unstable();
    // The helper leaves each task's first run running, whatever the task's state.
    let tasks_of: Vec<u64> = running.iter().map(|r| r.0).collect();
    assert_eq!(tasks_of, vec![a, a, b, done], "{running:?}");
    assert!(running.contains(&(a, second, Some(77))));
    assert_eq!(
        tasks
            .interrupt_runs(a, "the daemon stopped", at(4))
            .expect("interrupt"),
        2
    );
    assert_eq!(
        tasks.interrupt_runs(a, "again", at(5)).expect("interrupt"),
        0
    );
    for r in tasks.runs(a).expect("runs") {
        assert_eq!(r.state, RunState::Interrupted);
        assert_eq!(r.reason.as_deref(), Some("the daemon stopped"));
        assert_eq!(r.finished_at, Some(at(4)));
    }
    let left: Vec<u64> = tasks
        .running_runs("n")
        .expect("running")
        .iter()
        .map(|r| r.task_id)
        .collect();
    assert!(left.contains(&b) && !left.contains(&a), "{left:?}");
}

/// What `daemon status` shows of the store: the task counts and the oldest task, and a
/// database that has a size.
pub(crate) fn storage(tasks: &dyn TaskStore) {
    let empty = tasks.storage().expect("storage");
    assert_eq!(
        (empty.tasks, empty.finished_tasks, empty.oldest),
        (0, 0, None)
    );
    let d = Db { tasks };
    let first = d.task("w", None, Succeeded, 3);
    d.task("w", None, Running, 4);
    d.task("w", None, Failed, 5);
    let s = tasks.storage().expect("storage");
    assert_eq!((s.tasks, s.finished_tasks), (3, 2));
    assert_eq!(s.oldest, Some((first, at(3))));
    assert!(s.db_bytes > 0, "{s:?}");
}
