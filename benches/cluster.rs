//! Several daemons on one PostgreSQL database (issue 17), measured in one run beside SQLite:
//! - accepted webhooks/s (task durable before 202, 16 connections, 5 s) on SQLite, on
//!   PostgreSQL with one node, and with three nodes (connections spread over the nodes);
//! - apply latency with three nodes: `orchestrator apply` of a changed SecretStore, until it
//!   returns (every live node serves the revision);
//! - leader failover: `kill -9` of the leader of an every-second trigger, to the first task of
//!   an instant after the kill (fired by the new leader);
//! - create-to-exec with three nodes: `task create` on one node, from the task's creation to its
//!   step's start (the claim that starts it on one node included), as the store records both.
//!
//! Needs the PostgreSQL server of `ORCHESTRATOR_TEST_POSTGRES` (default the local one); each
//! scenario runs on a database of its own, dropped after. Run: `cargo bench --bench cluster`.

#[path = "support/mod.rs"]
mod support;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use orchestrator::domain::signature::{Scheme, sign};
use orchestrator::store::postgres::{create_database, drop_database};
use support::load::{load, report};
use support::{Daemon, median_ms, workspace_manifest};

const SECRET: &str = "cluster-bench-signing-secret";

fn server() -> String {
    std::env::var("ORCHESTRATOR_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

/// A fresh database, dropped with the guard.
struct Db(String, String);

impl Db {
    fn new(tag: &str) -> Db {
        let nanos = Utc::now().timestamp_nanos_opt().unwrap_or(0);
        let name = format!("orch_bench_{tag}_{nanos}");
        let url = create_database(&server(), &name).expect("a PostgreSQL server for the bench");
        Db(url, name)
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = drop_database(&server(), &self.1);
    }
}

fn key_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("shared.key");
    std::fs::write(&path, [7u8; 32]).expect("key");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path.display().to_string()
}

/// `n` nodes on `db` (ids n0, n1, …).
fn nodes(db: &Db, key: &str, n: usize) -> Vec<Daemon> {
    (0..n)
        .map(|i| {
            Daemon::start_with(&[
                "--store",
                &db.0,
                "--secret-key-file",
                key,
                "--node-id",
                &format!("n{i}"),
                "--node-ttl",
                "3",
            ])
        })
        .collect()
}

fn hook_manifests(d: &Daemon, secret: &str) -> String {
    format!(
        "{}---\napiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {{name: hooks}}\nspec: {{data: {{github: \"{secret}\"}}}}\n---\napiVersion: orchestrator.dev/v2\nkind: Workflow\nmetadata: {{name: quick}}\nspec:\n  steps: [{{id: s, command: \"true\"}}]\n---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: load}}\nspec:\n  event:\n    source: webhook\n    webhook: {{secret: {{fromRef: hooks}}, scheme: github}}\n  action: {{workflow: quick, workspace: default, start: false}}\n  concurrencyPolicy: Allow\n",
        workspace_manifest(&d.path("ws"))
    )
}

/// Accepted deliveries/s over `daemons` (the first one is applied to).
fn accepted(name: &str, daemons: &[Daemon]) -> f64 {
    daemons[0].apply(&hook_manifests(&daemons[0], SECRET));
    let urls: Vec<String> = daemons
        .iter()
        .map(|d| {
            format!(
                "http://{}/webhook/load",
                d.webhook.clone().expect("webhook")
            )
        })
        .collect();
    let body = br#"{"action": "push"}"#.to_vec();
    let tag = name.replace(' ', "-");
    report(
        name,
        &load(urls, 202, move |n| {
            (
                sign(
                    Scheme::Github,
                    None,
                    SECRET.as_bytes(),
                    &body,
                    0,
                    &format!("{tag}-{n}"),
                ),
                body.clone(),
            )
        }),
    )
}

fn leader(d: &Daemon) -> Option<String> {
    let s: serde_json::Value =
        serde_json::from_str(&d.cli(&["cluster", "status", "-o", "json"])).ok()?;
    (s["leader"]["expired"] == false)
        .then(|| s["leader"]["node"].as_str().map(str::to_owned))
        .flatten()
}

fn this_node(d: &Daemon) -> String {
    let s: serde_json::Value =
        serde_json::from_str(&d.cli(&["cluster", "status", "-o", "json"])).expect("json");
    s["thisNode"].as_str().unwrap_or_default().to_owned()
}

fn latest_fire(d: &Daemon) -> Option<DateTime<Utc>> {
    let list: serde_json::Value = serde_json::from_str(&d.cli(&[
        "task",
        "list",
        "--trigger",
        "tick",
        "--limit",
        "5",
        "-o",
        "json",
    ]))
    .ok()?;
    list["tasks"]
        .as_array()?
        .iter()
        .filter_map(|t| t["scheduledAt"].as_str())
        .filter_map(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
        .max()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let keys = tempfile::tempdir().expect("dir");
    let key = key_file(&keys);

    // Throughput: SQLite, PostgreSQL with one node, with three.
    let sqlite = accepted("sqlite 1 node", &[Daemon::start()]);
    let one = {
        let db = Db::new("one");
        let n = nodes(&db, &key, 1);
        let r = accepted("pg 1 node", &n);
        drop(n);
        r
    };
    let three = {
        let db = Db::new("three");
        let n = nodes(&db, &key, 3);
        let r = accepted("pg 3 nodes", &n);
        drop(n);
        r
    };
    eprintln!(
        "pg 1 node / sqlite = {:.0} %; pg 3 nodes / pg 1 node = {:.0} %",
        100.0 * one / sqlite,
        100.0 * three / one
    );

    // Apply latency with three nodes.
    {
        let db = Db::new("apply");
        let n = nodes(&db, &key, 3);
        n[0].apply(&hook_manifests(&n[0], SECRET));
        let file = n[0].path("apply").join("store.yaml");
        let mut times = Vec::new();
        for i in 0..20 {
            std::fs::write(
                &file,
                format!("apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {{name: hooks}}\nspec: {{data: {{github: \"rotated-{i}-{SECRET}\"}}}}\n"),
            )
            .expect("write");
            let t0 = Instant::now();
            let out = n[0].cli(&["apply", "-f", file.to_str().expect("path")]);
            times.push(t0.elapsed());
            assert!(out.contains("served by every live node"), "{out}");
        }
        eprintln!(
            "apply, 3 nodes: median {:.1} ms, max {:.1} ms (20 applies, CLI start included)",
            median_ms(times.clone()),
            times.iter().max().map_or(0.0, |d| d.as_secs_f64() * 1e3)
        );
    }

    // Create-to-exec with three nodes.
    {
        let db = Db::new("exec");
        let n = nodes(&db, &key, 3);
        n[0].apply(&hook_manifests(&n[0], SECRET));
        let mut gaps = Vec::new();
        for _ in 0..20 {
            let created: serde_json::Value = serde_json::from_str(&n[0].cli(&[
                "task",
                "create",
                "--workflow",
                "quick",
                "--wait",
                "-o",
                "json",
            ]))
            .expect("json");
            let id = created["id"]
                .as_u64()
                .or_else(|| created["task"]["id"].as_u64())
                .expect("id");
            let shown: serde_json::Value =
                serde_json::from_str(&n[1].cli(&["task", "show", &id.to_string(), "-o", "json"]))
                    .expect("json");
            let at = |v: &serde_json::Value| {
                v.as_str()
                    .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                    .map(|t| t.with_timezone(&Utc))
                    .expect("a time")
            };
            let gap = at(&shown["steps"][0]["startedAt"]) - at(&shown["task"]["createdAt"]);
            gaps.push(gap.to_std().unwrap_or_default());
        }
        eprintln!(
            "create-to-exec, 3 nodes: median {:.1} ms, max {:.1} ms (20 tasks, store times in ms)",
            median_ms(gaps.clone()),
            gaps.iter().max().map_or(0.0, |d| d.as_secs_f64() * 1e3)
        );
    }

    // Failover: kill -9 of the leader to the first fire of the new one.
    {
        let db = Db::new("failover");
        let ws = keys.path().join("ws");
        std::fs::create_dir_all(&ws).expect("workspace");
        let mut n = nodes(&db, &key, 3);
        n[0].apply(&format!(
            "{}---\napiVersion: orchestrator.dev/v2\nkind: Workflow\nmetadata: {{name: quick}}\nspec:\n  max_parallel: 1000\n  steps: [{{id: s, command: \"true\"}}]\n---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: tick}}\nspec:\n  cron: {{schedule: \"* * * * * *\"}}\n  action: {{workflow: quick, workspace: default}}\n  concurrencyPolicy: Allow\n",
            // Not in a node's own dir: the killed nodes' dirs go with them.
            workspace_manifest(&ws)
        ));
        let mut failovers = Vec::new();
        for _ in 0..3 {
            let wait = |n: &[Daemon], f: &dyn Fn(&Daemon) -> bool| {
                let deadline = Instant::now() + Duration::from_secs(30);
                while Instant::now() < deadline {
                    if f(&n[0]) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                panic!("timed out");
            };
            wait(&n, &|d| latest_fire(d).is_some());
            let old = leader(&n[0]).expect("a leader");
            let i = n
                .iter()
                .position(|d| this_node(d) == old)
                .expect("the leader's daemon");
            let mut victim = n.remove(i);
            let killed = Utc::now();
            let t0 = Instant::now();
            let _ = victim.child.kill();
            let _ = victim.child.wait();
            wait(&n, &|d| latest_fire(d).is_some_and(|t| t > killed));
            failovers.push(t0.elapsed());
            drop(victim);
            n.push(Daemon::start_with(&[
                "--store",
                &db.0,
                "--secret-key-file",
                &key,
                "--node-id",
                &old,
                "--node-ttl",
                "3",
            ]));
        }
        eprintln!(
            "failover (--node-ttl 3): median {:.0} ms, max {:.0} ms (kill -9 to the first fire after it, 3 kills)",
            median_ms(failovers.clone()),
            failovers
                .iter()
                .max()
                .map_or(0.0, |d| d.as_secs_f64() * 1e3)
        );
    }
}
