//! Membership on one node: `cluster status` names this daemon, live and leading, with the
//! revision it published; `--node-id` is checked; a clean stop marks the node stopped and gives
//! the lease up. (Several daemons on one PostgreSQL database: `cluster_pg.rs`.)

use std::time::Duration;

use crate::common::{DAEMON, TestDaemon, eventually};

fn status(d: &TestDaemon) -> serde_json::Value {
    d.cli(&["cluster", "status", "-o", "json"]).json()
}

#[test]
fn one_sqlite_node_is_live_leads_and_reports_its_revision_and_tasks() {
    let d = TestDaemon::start_with(&["--node-id", "solo-1"]);
    let s = status(&d);
    assert_eq!(s["store"], "sqlite");
    assert_eq!(s["thisNode"], "solo-1");
    assert_eq!(s["leader"]["node"], "solo-1", "{s}");
    assert_eq!(s["leader"]["expired"], false);
    let nodes = s["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 1, "{s}");
    assert_eq!(nodes[0]["state"], "live");
    assert_eq!(nodes[0]["leader"], true);
    assert_eq!(nodes[0]["pid"], d.pid());
    assert_eq!(nodes[0]["ttlSeconds"], 10.0);

    // An apply moves the revision the node reports, within a heartbeat or two.
    d.apply(&d.workspace());
    let revision = d.cli(&["daemon", "status", "-o", "json"]).json()["revision"].clone();
    eventually(Duration::from_secs(10), "the heartbeat's revision", || {
        (status(&d)["nodes"][0]["revision"] == revision).then_some(())
    });

    let table = d.cli(&["cluster", "status"]).ok().to_owned();
    assert!(table.contains("Leader:   solo-1 (token 1"), "{table}");
    assert!(
        table.contains("solo-1 (this)") && table.contains("live"),
        "{table}"
    );
}

#[test]
fn the_default_node_id_is_the_host_and_a_hash_of_the_data_dir_and_survives_a_restart() {
    let mut d = TestDaemon::start();
    let id = status(&d)["thisNode"].as_str().expect("id").to_owned();
    let host = nix_hostname();
    assert!(
        id.starts_with(&format!("{host}-")) && id.len() == host.len() + 9,
        "{id}"
    );
    let token = status(&d)["leader"]["token"].as_u64().expect("token");
    d.restart();
    let s = status(&d);
    assert_eq!(s["thisNode"], id.as_str(), "same data dir, same id");
    assert_eq!(s["nodes"].as_array().map(Vec::len), Some(1), "{s}");
    // The clean stop released the lease: the restarted node took it again with a new token.
    assert_eq!(s["leader"]["token"].as_u64(), Some(token + 1), "{s}");
}

fn nix_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("hostname")
        .trim()
        .to_owned()
}

#[test]
fn a_bad_node_id_or_ttl_is_refused_before_anything_starts() {
    let dir = tempfile::tempdir().expect("dir");
    for (flag, value, says) in [
        ("--node-id", "", "invalid node id"),
        ("--node-id", "has space", "invalid node id \"has space\""),
        ("--node-id", &"x".repeat(65), "1 to 64 letters"),
        ("--node-ttl", "1", "3..=3600"),
    ] {
        let out = std::process::Command::new(DAEMON)
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--webhook-bind", "none", flag, value])
            .output()
            .expect("run");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value:?}: {err}");
        assert!(err.contains(says), "{flag} {value:?}: {err}");
    }
    assert!(!dir.path().join("data").exists(), "nothing was created");
}
