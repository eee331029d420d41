//! Which node runs a task, on every backend: the claim that starts a pending task on one node,
//! the runs each node's crash recovery takes as its own, and the failing of a dead node's
//! tasks (its runs kept for the node to kill when it comes back).

use std::time::Duration;

use super::at;
use crate::api::{RunState, TaskQuery, TaskState};
use crate::store::cluster::{Beat, ClusterStore};
use crate::store::{NewTask, TaskStore};

fn pending(tasks: &dyn TaskStore, m: i64) -> u64 {
    let new = NewTask {
        project: "default".into(),
        workflow: "w".into(),
        workspace: "default".into(),
        workspace_root: "/tmp".into(),
        workflow_spec: serde_json::json!({"steps": []}),
        goal: None,
        payload: None,
        origin: "cli".into(),
        trigger: None,
        scheduled_at: None,
        state: TaskState::Pending,
        reason: None,
        held: false,
        worktree: false,
        fence: None,
    };
    tasks.create(&new, at(m)).expect("create").id
}

/// A task claimed by `node` at `m`, with a step run whose process group is `pid`.
fn running_on(tasks: &dyn TaskStore, node: &str, m: i64, pid: i32) -> (u64, u64) {
    let id = pending(tasks, m);
    assert!(tasks.claim(id, node, at(m)).expect("claim"));
    let run = tasks
        .start_run(id, "s", 1, 1, None, &["sleep".into()], "s.log", at(m))
        .expect("run");
    tasks.set_run_pid(run, pid, Some(9)).expect("pid");
    (id, run)
}

fn runs_of(tasks: &dyn TaskStore, node: &str) -> Vec<(u64, u64, Option<i32>)> {
    tasks
        .running_runs(node)
        .expect("running runs")
        .into_iter()
        .map(|r| (r.task_id, r.run_id, r.pid))
        .collect()
}

/// The first claim starts a pending task on its node (recorded on the task, shown by `get` and
/// `list`); a second claim, from any node, finds it running and writes nothing. Each node's
/// recovery lists the running runs of its own tasks and of tasks that name no node.
pub(crate) fn tasks_name_their_node(tasks: &dyn TaskStore) {
    let id = pending(tasks, 0);
    assert_eq!(tasks.get(id).expect("get").expect("task").node, None);
    assert!(tasks.claim(id, "a", at(1)).expect("claim"));
    let t = tasks.get(id).expect("get").expect("task");
    assert_eq!(
        (t.state, t.node.as_deref(), t.started_at),
        (TaskState::Running, Some("a"), Some(at(1)))
    );
    assert!(!tasks.claim(id, "b", at(2)).expect("claim"), "taken by a");
    assert!(!tasks.claim(id, "a", at(2)).expect("claim"), "running");
    let t = tasks.get(id).expect("get").expect("task");
    assert_eq!((t.node.as_deref(), t.started_at), (Some("a"), Some(at(1))));
    let events: Vec<String> = tasks
        .events(id)
        .expect("events")
        .into_iter()
        .map(|e| e.message)
        .collect();
    assert_eq!(
        events.iter().filter(|m| *m == "running").count(),
        1,
        "{events:?}"
    );
    let listed = tasks.list(&TaskQuery::default(), None).expect("list");
    assert_eq!(listed[0].node.as_deref(), Some("a"));
    let queued = tasks.ids_in_state(TaskState::Running).expect("running");
    assert_eq!(queued[0].node.as_deref(), Some("a"));
    let record = tasks.record(id).expect("record").expect("task");
    assert_eq!(record.info.node.as_deref(), Some("a"));
    assert_eq!(record.workspace_root, "/tmp");

    // A cancelled task is claimed by nobody.
    let cancelled = pending(tasks, 3);
    tasks
        .set_state(cancelled, TaskState::Cancelled, Some("by request"), at(3))
        .expect("cancel");
    assert!(!tasks.claim(cancelled, "a", at(4)).expect("claim"));
    assert_eq!(tasks.get(cancelled).expect("get").expect("task").node, None);

    // Whose runs each node's recovery takes: its own, and those of tasks that name no node.
    let a_run = tasks
        .start_run(id, "s", 1, 1, None, &["sleep".into()], "s.log", at(5))
        .expect("run");
    let (b_task, b_run) = running_on(tasks, "b", 6, 200);
    let legacy = pending(tasks, 7);
    tasks
        .set_state(legacy, TaskState::Running, None, at(7))
        .expect("running without a node");
    let legacy_run = tasks
        .start_run(legacy, "s", 1, 1, None, &["sleep".into()], "s.log", at(7))
        .expect("run");
    assert_eq!(
        runs_of(tasks, "a"),
        [(id, a_run, None), (legacy, legacy_run, None)]
    );
    assert_eq!(
        runs_of(tasks, "b"),
        [(b_task, b_run, Some(200)), (legacy, legacy_run, None)]
    );
    assert_eq!(runs_of(tasks, "c"), [(legacy, legacy_run, None)]);
}

fn beat(node: &str, instance: &str) -> Beat {
    Beat {
        node: node.into(),
        instance: instance.into(),
        host: "h".into(),
        pid: 42,
        version: "0.1.0".into(),
        started_at: at(0),
        revision: 1,
        ttl: Duration::from_secs(10),
        webhook: None,
        running: 1,
    }
}

/// A dead node's running tasks fail with the reason given, their running step runs are
/// interrupted and still listed for that node's recovery (until reaped); other nodes' tasks,
/// pending tasks, and a node that came back, stopped, or beat again since it was seen dead, are
/// left alone.
pub(crate) fn a_dead_nodes_tasks_fail(tasks: &dyn TaskStore, cluster: &dyn ClusterStore) {
    let reason = "interrupted: node a stopped heartbeating";
    cluster.join(&beat("a", "i1"), at(0)).expect("join a");
    cluster.join(&beat("b", "j1"), at(0)).expect("join b");
    let (a_task, a_run) = running_on(tasks, "a", 1, 100);
    let (b_task, b_run) = running_on(tasks, "b", 2, 200);
    let waiting = pending(tasks, 3);
    let a_done = pending(tasks, 4);
    assert!(tasks.claim(a_done, "a", at(4)).expect("claim"));
    tasks
        .set_state(a_done, TaskState::Succeeded, None, at(5))
        .expect("done");

    let seen = |n: &str| {
        cluster
            .nodes()
            .expect("nodes")
            .into_iter()
            .find(|r| r.node == n)
            .expect("the node")
    };
    let dead = seen("a");
    assert!(!dead.live(at(60_000)));
    assert_eq!(
        tasks.fail_node(&dead, reason, at(60_000)).expect("fail"),
        [a_task]
    );
    let t = tasks.get(a_task).expect("get").expect("task");
    assert_eq!(
        (
            t.state,
            t.reason.as_deref(),
            t.finished_at,
            t.node.as_deref()
        ),
        (TaskState::Failed, Some(reason), Some(at(60_000)), Some("a"))
    );
    let run = &tasks.runs(a_task).expect("runs")[0];
    assert_eq!(
        (run.state, run.reason.as_deref(), run.finished_at),
        (RunState::Interrupted, Some(reason), Some(at(60_000)))
    );
    let events = tasks.events(a_task).expect("events");
    assert_eq!(
        events.last().map(|e| e.message.as_str()),
        Some(format!("failed: {reason}").as_str())
    );
    for (id, state) in [
        (b_task, TaskState::Running),
        (waiting, TaskState::Pending),
        (a_done, TaskState::Succeeded),
    ] {
        assert_eq!(tasks.get(id).expect("get").expect("task").state, state);
    }
    // Node a's recovery still finds the run, with its process group, until it is reaped; b's
    // never does.
    assert_eq!(runs_of(tasks, "a"), [(a_task, a_run, Some(100))]);
    assert_eq!(runs_of(tasks, "b"), [(b_task, b_run, Some(200))]);
    tasks.reaped(&[a_run]).expect("reaped");
    tasks.reaped(&[]).expect("reaped nothing");
    assert!(runs_of(tasks, "a").is_empty());
    assert_eq!(runs_of(tasks, "b"), [(b_task, b_run, Some(200))]);
    assert!(
        tasks
            .fail_node(&dead, reason, at(61_000))
            .expect("again")
            .is_empty(),
        "nothing left to fail"
    );

    // A node seen dead that has come back since (a new instance, or a newer heartbeat of the
    // same one), or that stopped cleanly, keeps its tasks.
    let (again, _) = running_on(tasks, "a", 62, 101);
    cluster.join(&beat("a", "i2"), at(62_000)).expect("rejoin");
    assert!(
        tasks
            .fail_node(&dead, reason, at(63_000))
            .expect("fail")
            .is_empty()
    );
    let seen_again = seen("a");
    assert!(
        cluster
            .heartbeat(&beat("a", "i2"), at(64_000))
            .expect("beat")
    );
    assert!(
        tasks
            .fail_node(&seen_again, reason, at(80_000))
            .expect("fail")
            .is_empty()
    );
    let latest = seen("a");
    cluster.leave("a", "i2", at(65_000)).expect("leave");
    assert!(
        tasks
            .fail_node(&latest, reason, at(80_000))
            .expect("fail")
            .is_empty()
    );
    assert_eq!(
        tasks.get(again).expect("get").expect("task").state,
        TaskState::Running
    );
}
