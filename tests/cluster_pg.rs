//! Three daemons on one PostgreSQL database (issue 17), each test on a database of its own:
//! an apply on one node is served by every node when it returns — a new key is accepted on
//! another node at its first try, the retired one refused on a third — and the cron triggers
//! fire each instant at most once while leaders are killed and stopped.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use orchestrator::domain::signature::Scheme;

use crate::common::{TestDaemon, eventually, post, signal};
use crate::postgres::{database, key_file, manifests, node};
use crate::webhooks::{STORE_OLD, signed, status_of};

const STORE_NEW: &str = "new-signing-secret-value-222";

fn cluster(d: &TestDaemon) -> serde_json::Value {
    d.cli(&["cluster", "status", "-o", "json"]).json()
}

fn leader(d: &TestDaemon) -> Option<String> {
    let s = cluster(d);
    (s["leader"]["expired"] == false)
        .then(|| s["leader"]["node"].as_str().map(str::to_owned))
        .flatten()
}

#[test]
fn an_apply_on_one_node_is_in_force_on_every_node_when_it_returns() {
    let Some(db) = database("an_apply_on_one_node_is_in_force_on_every_node") else {
        return;
    };
    let keys = tempfile::tempdir().expect("temp dir");
    let key = key_file(&keys);
    let a = node(&db, &key, "a");
    let b = node(&db, &key, "b");
    let c = node(&db, &key, "c");
    let s = cluster(&b);
    let live: Vec<_> = s["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["state"] == "live")
        .filter_map(|n| n["node"].as_str())
        .collect();
    assert_eq!(live, ["a", "b", "c"], "{s}");
    assert_eq!(s["leader"]["node"], "a", "the first node leads: {s}");

    let out = a
        .cli(&[
            "apply",
            "-f",
            a.write("all.yaml", &manifests(&a)).to_str().expect("path"),
        ])
        .ok()
        .to_owned();
    assert!(
        out.contains("is served by every live node (a, b, c)"),
        "{out}"
    );
    // The rotation's end, as an apply: the new key replaces the old one.
    let rotated = format!(
        "apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {{name: hooks}}\nspec: {{data: {{current: \"{STORE_NEW}\"}}}}\n"
    );
    let run = a.cli(&[
        "apply",
        "-f",
        a.write("rotated.yaml", &rotated).to_str().expect("path"),
    ]);
    assert!(
        run.ok().contains("is served by every live node"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains(STORE_NEW) && !run.stderr.contains(STORE_NEW));

    // At once, without retrying: node C accepts the new key, node B refuses the retired one.
    let body = r#"{"event": "push"}"#;
    let deliver = |d: &TestDaemon, secret: &str, id: &str| {
        status_of(&post(
            d.webhook.expect("webhook address"),
            "/webhook/gh",
            &signed(Scheme::Github, secret, body, id),
            body.as_bytes(),
        ))
    };
    let (status, v) = deliver(&c, STORE_NEW, "d-new");
    assert_eq!(
        (status, v["status"].as_str()),
        (202, Some("accepted")),
        "{v}"
    );
    let (status, v) = deliver(&b, STORE_OLD, "d-old");
    assert_eq!(status, 401, "the retired key is refused on node b: {v}");

    // The same delivery id on two nodes makes one task.
    let (s1, v1) = deliver(&a, STORE_NEW, "d-twice");
    let (s2, v2) = deliver(&b, STORE_NEW, "d-twice");
    assert_eq!((s1, s2), (202, 202), "{v1} {v2}");
    assert_eq!(v1["status"], "accepted", "{v1}");
    assert_eq!(v2["status"], "duplicate", "{v2}");
    assert_eq!(v1["task"], v2["task"], "{v1} {v2}");

    // Every node reports the revision it serves.
    let revision = a.cli(&["daemon", "status", "-o", "json"]).json()["revision"].clone();
    let s = cluster(&c);
    for n in s["nodes"].as_array().expect("nodes") {
        assert_eq!(n["revision"], revision, "{s}");
    }
    drop((a, b, c));
}

fn any(nodes: &BTreeMap<String, TestDaemon>) -> &TestDaemon {
    nodes.values().next().expect("a node")
}

/// The scheduled instants of every cron task, from any node's view of the shared store.
fn fires(d: &TestDaemon) -> Vec<DateTime<Utc>> {
    let list = d
        .cli(&[
            "task",
            "list",
            "--trigger",
            "tick",
            "--limit",
            "1000",
            "-o",
            "json",
        ])
        .json();
    let mut out: Vec<DateTime<Utc>> = list["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["scheduledAt"].as_str())
        .filter_map(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .collect();
    out.sort();
    out
}

#[test]
fn each_cron_instant_fires_at_most_once_while_leaders_are_killed_and_stopped() {
    let Some(db) = database("each_cron_instant_fires_at_most_once") else {
        return;
    };
    let keys = tempfile::tempdir().expect("temp dir");
    let key = key_file(&keys);
    let mut nodes: BTreeMap<String, TestDaemon> = ["a", "b", "c"]
        .into_iter()
        .map(|id| (id.to_owned(), node(&db, &key, id)))
        .collect();
    let text = format!(
        "{}---\napiVersion: orchestrator.dev/v2\nkind: Workflow\nmetadata: {{name: quick}}\nspec:\n  max_parallel: 1000\n  steps: [{{id: s, command: \"true\"}}]\n---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: tick}}\nspec:\n  cron: {{schedule: \"* * * * * *\"}}\n  action: {{workflow: quick, workspace: default}}\n  concurrencyPolicy: Allow\n",
        nodes["a"].workspace()
    );
    nodes["a"].apply(&text);
    let started = Utc::now();
    // Asked of one node that is not stopped (a stopped node's CLI would wait).
    let wait_fires = |d: &TestDaemon, n: usize| {
        eventually(Duration::from_secs(60), "more fires", || {
            (fires(d).len() >= n).then_some(())
        })
    };
    let current_leader = |nodes: &BTreeMap<String, TestDaemon>| {
        eventually(Duration::from_secs(15), "a leader", || leader(any(nodes)))
    };
    wait_fires(any(&nodes), 5);

    // Two kill -9 of the leader: another node takes the lease within the TTL.
    for _ in 0..2 {
        let old = current_leader(&nodes);
        let before = fires(any(&nodes)).len();
        let mut victim = nodes.remove(&old).expect("the leader is ours");
        victim.kill9();
        let new = eventually(Duration::from_secs(15), "a new leader", || {
            leader(any(&nodes)).filter(|l| *l != old)
        });
        assert_ne!(new, old);
        wait_fires(any(&nodes), before + 3);
        // The killed node comes back as a follower (its data dir, same id).
        victim.spawn();
        nodes.insert(old, victim);
    }

    // SIGSTOP the leader past its TTL, then continue it: it fires nothing more.
    let stopped = current_leader(&nodes);
    let pid = nodes[&stopped].pid();
    let before = fires(any(&nodes)).len();
    signal(pid, 19); // SIGSTOP
    let others = |nodes: &BTreeMap<String, TestDaemon>| -> Vec<String> {
        nodes.keys().filter(|k| **k != stopped).cloned().collect()
    };
    let watcher = others(&nodes)[0].clone();
    let new = eventually(
        Duration::from_secs(15),
        "a leader while one is stopped",
        || leader(&nodes[&watcher]).filter(|l| *l != stopped),
    );
    wait_fires(&nodes[&watcher], before + 3);
    signal(pid, 18); // SIGCONT
    // Until 60 instants have passed since the apply.
    eventually(Duration::from_secs(90), "60 instants", || {
        (Utc::now() - started > chrono::Duration::seconds(62)).then_some(())
    });
    assert_eq!(leader(&nodes[&watcher]).as_deref(), Some(new.as_str()));
    let log = nodes[&stopped].log();

    let all = fires(&nodes[&watcher]);
    let mut seen = std::collections::BTreeSet::new();
    for at in &all {
        assert!(seen.insert(*at), "instant {at} has two tasks: {all:?}");
    }
    assert!(all.len() >= 40, "too few fires over 60 s: {}", all.len());
    // Instants are lost only within a failover: the TTL (3 s), a heartbeat (1 s), and the time
    // a loaded machine takes to start the new leader's trigger.
    for w in all.windows(2) {
        let gap = w[1] - w[0];
        assert!(
            gap <= chrono::Duration::seconds(8),
            "a gap of {gap} between fires {} and {}",
            w[0],
            w[1]
        );
    }
    // The continued node knew it no longer led and created nothing.
    assert!(
        log.contains("no longer leads") || log.contains("another node took the leader lease"),
        "the stopped leader's log:\n{log}"
    );
    drop(nodes);
}

#[test]
fn three_hundred_deliveries_over_three_nodes_make_three_hundred_tasks_each_run_once() {
    let Some(db) = database("three_hundred_deliveries_over_three_nodes") else {
        return;
    };
    let keys = tempfile::tempdir().expect("temp dir");
    let key = key_file(&keys);
    let nodes: Vec<TestDaemon> = ["a", "b", "c"]
        .iter()
        .map(|id| node(&db, &key, id))
        .collect();
    nodes[0].apply(&manifests(&nodes[0]).replace(
        "spec:\n  steps: [{id: s, command: \"echo on-postgres\"}]",
        "spec:\n  max_parallel: 1000\n  steps: [{id: s, command: \"echo on-postgres\"}]",
    ));
    let body = r#"{"event": "push"}"#;
    let mut ids = std::collections::BTreeSet::new();
    for i in 0..300 {
        let d = &nodes[i % 3];
        let (status, v) = status_of(&post(
            d.webhook.expect("webhook address"),
            "/webhook/gh",
            &signed(Scheme::Github, STORE_OLD, body, &format!("spread-{i}")),
            body.as_bytes(),
        ));
        assert_eq!(
            (status, v["status"].as_str()),
            (202, Some("accepted")),
            "{i}: {v}"
        );
        assert!(
            ids.insert(v["task"].as_u64().expect("task")),
            "{i}: a task id twice"
        );
    }
    let list = |d: &TestDaemon| {
        d.cli(&["task", "list", "--limit", "1000", "-o", "json"])
            .json()["tasks"]
            .as_array()
            .expect("tasks")
            .clone()
    };
    let tasks = eventually(Duration::from_secs(180), "300 tasks to finish", || {
        let tasks = list(&nodes[1]);
        (tasks.len() == 300 && tasks.iter().all(|t| t["state"] == "succeeded")).then_some(tasks)
    });
    let listed: std::collections::BTreeSet<u64> =
        tasks.iter().filter_map(|t| t["id"].as_u64()).collect();
    assert_eq!(listed, ids);
    let ran_on: std::collections::BTreeSet<&str> =
        tasks.iter().filter_map(|t| t["node"].as_str()).collect();
    assert!(ran_on.len() > 1, "every task ran on one node: {ran_on:?}");
    // Each ran exactly once: one step run, its first attempt.
    for id in &ids {
        let t = nodes[2].task(*id);
        let steps = t["steps"].as_array().expect("steps");
        assert_eq!(steps.len(), 1, "task {id}: {t}");
        assert_eq!(steps[0]["attempt"], 1, "task {id}: {t}");
        assert_eq!(steps[0]["state"], "succeeded", "task {id}: {t}");
    }
    drop(nodes);
}

#[test]
fn a_node_with_another_key_file_refuses_to_start_and_names_both_fingerprints() {
    let Some(db) = database("a_node_with_another_key_file_refuses_to_start") else {
        return;
    };
    let keys = tempfile::tempdir().expect("temp dir");
    let key = key_file(&keys);
    let a = node(&db, &key, "a");
    a.apply(&manifests(&a));
    let other = keys.path().join("other.key");
    std::fs::write(&other, [9u8; 32]).expect("key");
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let dir = tempfile::tempdir().expect("dir");
    let out = std::process::Command::new(crate::common::DAEMON)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .args([
            "--webhook-bind",
            "none",
            "--admin-bind",
            "none",
            "--node-id",
            "b",
        ])
        .args(["--store", &db.url, "--secret-key-file"])
        .arg(&other)
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("is not the key this database was sealed with")
            && err.contains("other.key")
            && err.contains("start every node with the same --secret-key-file"),
        "{err}"
    );
    let last = err.lines().last().unwrap_or_default();
    assert_eq!(last.matches("fingerprint ").count(), 2, "{err}");
    // Neither key's bytes, nor a stored value, appear.
    assert!(!err.contains(STORE_OLD), "{err}");
    // The first node is untouched: it still serves.
    assert_eq!(cluster(&a)["nodes"].as_array().map(Vec::len), Some(1));
    drop(a);
}
