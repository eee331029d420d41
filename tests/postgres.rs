//! A real daemon on PostgreSQL (issue 17): `orchestratord --store postgres://… --secret-key-file
//! …` on a database of the test's own, created on the server `ORCHESTRATOR_TEST_POSTGRES` names
//! (default: the local server, user `root`, database `test`) and dropped after. Without a
//! server the test prints one line saying it did not run — except under `CI=true`, where that
//! is a failure.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use orchestrator::domain::signature::Scheme;
use orchestrator::store::postgres::{create_database, drop_database};

use crate::common::{TestDaemon, eventually, post};
use crate::webhooks::{STORE_OLD, signed, status_of};

fn server() -> String {
    std::env::var("ORCHESTRATOR_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

/// A database of one test, dropped with it.
pub(crate) struct Database {
    pub(crate) url: String,
    name: String,
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Err(e) = drop_database(&server(), &self.name) {
            eprintln!("cannot drop test database {}: {e}", self.name);
        }
    }
}

/// A new empty database, or `None` (with one line saying why) when there is no server outside
/// CI.
pub(crate) fn database(test: &str) -> Option<Database> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("orch_it_{nanos}");
    let server = server();
    match create_database(&server, &name) {
        Ok(url) => Some(Database { url, name }),
        Err(e) => {
            assert!(
                !std::env::var("CI").is_ok_and(|v| v == "true"),
                "CI=true and PostgreSQL at {server} is not usable: {e}"
            );
            eprintln!("{test}: did not run: PostgreSQL at {server} is not usable ({e})");
            None
        }
    }
}

/// A key file every node of the test shares (32 bytes, mode 0600), in a directory of its own.
pub(crate) fn key_file(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("shared.key");
    std::fs::write(&path, [42u8; 32]).expect("write the key file");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

/// Node `id` on `db`, with the shared key and a 3 s TTL.
pub(crate) fn node(db: &Database, key: &std::path::Path, id: &str) -> TestDaemon {
    TestDaemon::start_with(&[
        "--store",
        &db.url,
        "--secret-key-file",
        key.to_str().expect("utf-8 path"),
        "--node-id",
        id,
        "--node-ttl",
        "3",
    ])
}

pub(crate) fn manifests(d: &TestDaemon) -> String {
    format!(
        r#"{}
---
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {{name: hooks}}
spec: {{data: {{current: "{STORE_OLD}"}}}}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {{name: quick}}
spec:
  steps: [{{id: s, command: "echo on-postgres"}}]
---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {{name: gh}}
spec:
  event:
    source: webhook
    webhook:
      secret: {{fromRef: hooks}}
      scheme: github
  action: {{workflow: quick, workspace: default}}
  concurrencyPolicy: Allow
"#,
        d.workspace()
    )
}

fn task_ids(d: &TestDaemon) -> Vec<u64> {
    d.cli(&["task", "list", "-o", "json"]).json()["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["id"].as_u64())
        .collect()
}

#[test]
fn a_daemon_on_postgres_runs_a_webhook_task_and_keeps_it_across_a_restart() {
    let Some(db) = database("a_daemon_on_postgres_runs_a_webhook_task") else {
        return;
    };
    let keys = tempfile::tempdir().expect("temp dir");
    let key = key_file(&keys);
    let mut d = TestDaemon::start_with(&[
        "--store",
        &db.url,
        "--secret-key-file",
        key.to_str().expect("utf-8 path"),
    ]);
    d.apply(&manifests(&d));
    let body = r#"{"event": "push"}"#;
    let deliver = |d: &TestDaemon| {
        let addr = d.webhook.expect("webhook address");
        status_of(&post(
            addr,
            "/webhook/gh",
            &signed(Scheme::Github, STORE_OLD, body, "pg-delivery-1"),
            body.as_bytes(),
        ))
    };
    let (status, v) = deliver(&d);
    assert_eq!(
        (status, v["status"].as_str()),
        (202, Some("accepted")),
        "{v}"
    );
    let id = v["task"].as_u64().expect("the task");
    let done = d.finished_task(id);
    assert_eq!(done["task"]["state"], "succeeded", "{done}");
    assert_eq!(done["task"]["origin"], "webhook/gh", "{done}");
    assert_eq!(done["steps"][0]["state"], "succeeded", "{done}");
    assert_eq!(done["payload"], body, "{done}");
    assert!(
        !std::path::Path::new(&d.data_dir).join("state.db").exists(),
        "no SQLite database was made beside the PostgreSQL one"
    );

    d.restart();
    assert_eq!(task_ids(&d), vec![id], "the task survives the restart");
    let again = d.task(id);
    assert_eq!(again["task"]["state"], "succeeded", "{again}");
    // The restarted node's replay cache is empty: the database's record answers.
    let (status, v) = deliver(&d);
    assert_eq!(
        (status, v["status"].as_str(), v["task"].as_u64()),
        (202, Some("duplicate"), Some(id)),
        "{v}"
    );
    // A new delivery after the restart runs too.
    let addr = d.webhook.expect("webhook address");
    let (status, v) = status_of(&post(
        addr,
        "/webhook/gh",
        &signed(Scheme::Github, STORE_OLD, body, "pg-delivery-2"),
        body.as_bytes(),
    ));
    assert_eq!(
        (status, v["status"].as_str()),
        (202, Some("accepted")),
        "{v}"
    );
    let second = v["task"].as_u64().expect("the task");
    assert!(second > id);
    eventually(
        Duration::from_secs(60),
        "the second task to succeed",
        || (d.task(second)["task"]["state"] == "succeeded").then_some(()),
    );
    drop(d);
    drop(db);
}
