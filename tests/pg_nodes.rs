//! Tasks spread over nodes (issue 17): two daemons, `a` and `b`, on one PostgreSQL database.
//! A task runs a long `sleep` on `a`; `b` starting leaves it alone (its crash recovery takes
//! only its own runs); `a` is `kill -9`ed; `b`, leading, fails the task as interrupted once
//! `a`'s heartbeat is older than its TTL; `a`, restarted with the same id, kills the `sleep` it
//! left behind although the task was failed by `b`. The task that waited in `a`'s queue is
//! taken up by `b`.

use std::time::Duration;

use crate::common::{TestDaemon, eventually};
use crate::postgres::{database, key_file, node};

/// Whether process `pid` lives (a zombie does not count) and still runs `needle`.
fn runs(pid: u64, needle: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    !stat.is_empty()
        && !zombie
        && String::from_utf8_lossy(&cmd)
            .replace('\0', " ")
            .contains(needle)
}

#[test]
fn a_killed_nodes_task_fails_on_another_node_and_its_agent_dies_when_it_returns() {
    let Some(db) = database("a_killed_nodes_task_fails_on_another_node") else {
        return;
    };
    let keys = tempfile::tempdir().expect("temp dir");
    let key = key_file(&keys);
    let node = |id: &str| node(&db, &key, id);
    let mut a = node("a");
    a.apply(&format!(
        "{}---\napiVersion: orchestrator.dev/v2\nkind: Workflow\nmetadata: {{name: long}}\nspec:\n  max_parallel: 1\n  steps: [{{id: wait, command: \"sleep 6471\"}}]\n",
        a.workspace()
    ));
    let create = |d: &TestDaemon| -> u64 {
        d.cli(&["task", "create", "--workflow", "long"])
            .ok()
            .trim()
            .parse()
            .expect("task id")
    };
    let id = create(&a);
    let pid = eventually(Duration::from_secs(30), "the sleep to run", || {
        let t = a.task(id);
        t["steps"][0]["pid"]
            .as_u64()
            .filter(|p| runs(*p, "sleep 6471"))
    });
    let t = a.task(id);
    assert_eq!(
        (t["task"]["state"].as_str(), t["task"]["node"].as_str()),
        (Some("running"), Some("a")),
        "{t}"
    );
    let shown = a.cli(&["task", "show", &id.to_string()]).ok().to_owned();
    assert!(shown.contains("Node:       a\n"), "{shown}");

    // b's start resumes and kills nothing of a's.
    let b = node("b");
    let t = b.task(id);
    assert_eq!(
        (t["task"]["state"].as_str(), t["task"]["node"].as_str()),
        (Some("running"), Some("a")),
        "{t}"
    );
    assert!(runs(pid, "sleep 6471"), "b's start left a's agent alone");
    // A second task waits in a's queue (max_parallel 1): pending, on no node yet; b, started
    // before it existed, does not know of it.
    let queued = create(&a);
    let t = a.task(queued);
    assert_eq!(t["task"]["state"], "pending", "{t}");
    assert!(t["task"].get("node").is_none(), "{t}");

    a.kill9();
    assert!(
        runs(pid, "sleep 6471"),
        "the agent outlives its SIGKILLed daemon"
    );
    let t = eventually(Duration::from_secs(60), "b to fail a's task", || {
        let t = b.task(id);
        (t["task"]["state"] == "failed").then_some(t)
    });
    assert_eq!(
        t["task"]["reason"], "interrupted: node a stopped heartbeating",
        "{t}"
    );
    assert_eq!(t["task"]["node"], "a", "{t}");
    assert_eq!(t["steps"][0]["state"], "interrupted", "{t}");
    assert!(
        runs(pid, "sleep 6471"),
        "b cannot kill an agent on a's machine: a does when it returns"
    );
    // a's queue died with it: b takes up the task that waited there.
    let t = eventually(Duration::from_secs(30), "b to run the queued task", || {
        let t = b.task(queued);
        (t["task"]["state"] == "running").then_some(t)
    });
    assert_eq!(t["task"]["node"], "b", "{t}");

    a.spawn();
    eventually(
        Duration::from_secs(30),
        "a to kill its orphaned sleep",
        || (!runs(pid, "sleep 6471")).then_some(()),
    );
    let t = a.task(id);
    assert_eq!(t["task"]["state"], "failed", "a does not resume it: {t}");
    assert_eq!(
        t["task"]["reason"], "interrupted: node a stopped heartbeating",
        "{t}"
    );
    let t = a.task(queued);
    assert_eq!(
        (t["task"]["state"].as_str(), t["task"]["node"].as_str()),
        (Some("running"), Some("b")),
        "a's return leaves b's task alone: {t}"
    );
    drop(b);
    drop(a);
    drop(db);
}
