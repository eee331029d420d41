//! Actor introspection and fault isolation (issue: actors): the live tree, inspect, trace
//! --follow, `actors kill` of each kind of actor with what must happen next, escalation past the
//! restart intensity, and request spans across actors in the daemon's log.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use orchestrator::domain::signature::{Scheme, sign};

use crate::common::{CLI, TestDaemon, eventually, post};

const SECRET: &str = "actors-test-signing-secret";

fn setup(d: &TestDaemon, extra: &str) {
    d.apply(&format!(
        r#"{}
---
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {{name: hooks}}
spec: {{data: {{github: "{SECRET}"}}}}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {{name: quick}}
spec:
  max_parallel: 50
  steps: [{{id: s, command: "true"}}]
---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {{name: hook}}
spec:
  event:
    source: webhook
    webhook: {{secret: {{fromRef: hooks}}, scheme: github}}
  action: {{workflow: quick, workspace: default, start: false}}
  concurrencyPolicy: Allow
{extra}"#,
        d.workspace()
    ));
}

fn deliver(d: &TestDaemon, n: u64) -> u16 {
    let body = format!(r#"{{"n": {n}}}"#);
    let headers = sign(
        Scheme::Github,
        None,
        SECRET.as_bytes(),
        body.as_bytes(),
        Utc::now().timestamp(),
        &format!("d-{n}-{}", Utc::now().timestamp_nanos_opt().unwrap_or(0)),
    );
    post(
        d.webhook.expect("webhook"),
        "/webhook/hook",
        &headers,
        body.as_bytes(),
    )
    .0
}

fn tree(d: &TestDaemon) -> serde_json::Value {
    d.cli(&["actors", "-o", "json"]).json()
}

fn running(d: &TestDaemon) -> Vec<String> {
    d.actor_names()
}

/// The actor's restart count; 0 while it is between incarnations.
fn restarts(d: &TestDaemon, name: &str) -> u64 {
    let run = d.cli(&["actors", "inspect", name, "-o", "json"]);
    if run.code != 0 {
        return 0;
    }
    serde_json::from_str::<serde_json::Value>(&run.stdout)
        .ok()
        .and_then(|v| v["stats"]["restarts"].as_u64())
        .unwrap_or(0)
}

fn tick_trigger(name: &str) -> String {
    format!(
        "---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: {name}}}\nspec:\n  cron: {{schedule: \"* * * * * *\"}}\n  action: {{workflow: quick, workspace: default, start: false}}\n  concurrencyPolicy: Allow\n"
    )
}

#[test]
fn the_tree_inspect_and_trace_follow() {
    let d = TestDaemon::start();
    setup(&d, &tick_trigger("ticker"));
    let names = eventually(Duration::from_secs(10), "the trigger actor", || {
        let n = running(&d);
        n.contains(&"trigger/default/ticker".to_owned())
            .then_some(n)
    });
    for want in ["root", "secret-store", "tasks", "triggers", "webhook"] {
        assert!(
            names.contains(&want.to_owned()),
            "{want} missing: {names:?}"
        );
    }
    let table = d.cli(&["actors"]).ok().to_owned();
    assert!(
        table.contains("└── trigger/default/ticker") && table.contains("TriggerActor"),
        "{table}"
    );
    let t = tree(&d);
    assert_eq!(t["type"], "Supervisor");
    assert!(
        t["uptimeMillis"].as_u64().is_some() && t["queueDepth"].as_u64().is_some(),
        "{t}"
    );

    // inspect: each actor reports its own state.
    let trig = d
        .cli(&["actors", "inspect", "trigger/default/ticker", "-o", "json"])
        .json();
    assert_eq!(trig["state"]["schedule"], "* * * * * *");
    assert!(trig["state"]["nextFire"].is_string(), "{trig}");
    let store = d
        .cli(&["actors", "inspect", "secret-store", "-o", "json"])
        .json();
    assert!(
        store["state"]["revision"].as_u64().unwrap_or(0) >= 1,
        "{store}"
    );
    assert_eq!(store["state"]["resources"]["Trigger"], 2);
    assert_eq!(deliver(&d, 1), 202);
    let hook = d
        .cli(&["actors", "inspect", "webhook", "-o", "json"])
        .json();
    assert!(
        hook["state"]["requests"]["202"].as_u64().unwrap_or(0) >= 1,
        "{hook}"
    );

    // trace --follow shows fire messages as they happen.
    let mut follow = Command::new(CLI)
        .args([
            "--socket",
            d.socket.to_str().expect("path"),
            "actors",
            "trace",
            "trigger/default/ticker",
            "--follow",
            "-n",
            "0",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("trace --follow");
    let mut lines = BufReader::new(follow.stdout.take().expect("stdout")).lines();
    let fire = lines.next().and_then(Result::ok).unwrap_or_default();
    let _ = follow.kill();
    let _ = follow.wait();
    assert!(fire.contains("Fire") && fire.contains("ok"), "{fire:?}");
    // Without --follow: the recent messages, by kind.
    let recent = d
        .cli(&["actors", "trace", "trigger/default/ticker", "-o", "json"])
        .json();
    let kinds: Vec<&str> = recent["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["kind"].as_str())
        .collect();
    assert!(kinds.contains(&"Fire"), "{kinds:?}");
}

#[test]
fn killing_a_trigger_actor_leaves_the_rest_running() {
    let d = TestDaemon::start();
    setup(
        &d,
        &format!("{}{}", tick_trigger("victim"), tick_trigger("bystander")),
    );
    eventually(Duration::from_secs(10), "both trigger actors", || {
        let n = running(&d);
        (n.contains(&"trigger/default/victim".to_owned())
            && n.contains(&"trigger/default/bystander".to_owned()))
        .then_some(())
    });
    d.cli(&["actors", "kill", "trigger/default/victim"]).ok();
    // It is back, with its schedule, and counted as restarted.
    eventually(Duration::from_secs(10), "the victim back", || {
        (restarts(&d, "trigger/default/victim") == 1).then_some(())
    });
    let v = d
        .cli(&["actors", "inspect", "trigger/default/victim", "-o", "json"])
        .json();
    assert_eq!(v["state"]["schedule"], "* * * * * *");
    assert_eq!(restarts(&d, "trigger/default/bystander"), 0);
    // Webhooks kept answering.
    assert_eq!(deliver(&d, 2), 202);
}

#[test]
fn killing_a_workflow_actor_kills_its_agent_and_ends_or_resumes_the_task() {
    let d = TestDaemon::start();
    setup(
        &d,
        r#"---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: fragile}
spec:
  steps: [{id: wait, command: "sh -c 'sleep 6201 & sleep 6201'"}]
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: resumable}
spec:
  steps:
    - id: wait
      command: "sh -c 'test -f resumed && exit 0; touch resumed; sleep 6202 & sleep 6202'"
      retries: 1
"#,
    );
    let procs = |needle: &str| {
        std::fs::read_dir("/proc")
            .expect("/proc")
            .flatten()
            .filter(|e| {
                let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
                let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
                let zombie = stat
                    .rsplit_once(')')
                    .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
                !zombie
                    && String::from_utf8_lossy(&cmd)
                        .replace('\0', " ")
                        .contains(needle)
            })
            .count()
    };
    for (workflow, needle, want_state) in [
        ("fragile", "sleep 6201", "failed"),
        ("resumable", "sleep 6202", "succeeded"),
    ] {
        let id: u64 = d
            .cli(&["task", "create", "--workflow", workflow])
            .ok()
            .trim()
            .parse()
            .expect("id");
        eventually(Duration::from_secs(20), "the agent running", || {
            (procs(needle) >= 2).then_some(())
        });
        d.cli(&["actors", "kill", &format!("workflow/{id}")]).ok();
        eventually(Duration::from_secs(20), "no agent process left", || {
            (procs(needle) == 0).then_some(())
        });
        let t = eventually(Duration::from_secs(20), "the task to end", || {
            let t = d
                .cli(&["task", "show", &id.to_string(), "-o", "json"])
                .json();
            let s = t["task"]["state"].as_str().unwrap_or("").to_owned();
            (s != "running" && s != "pending").then_some(t)
        });
        assert_eq!(t["task"]["state"], want_state, "{t:#}");
        assert_eq!(t["steps"][0]["state"], "interrupted", "{t:#}");
        if want_state == "failed" {
            assert!(
                t["task"]["reason"]
                    .as_str()
                    .unwrap_or("")
                    .contains("interrupted"),
                "{t:#}"
            );
        } else {
            assert_eq!(t["steps"][1]["state"], "succeeded", "{t:#}");
        }
    }
}

#[test]
fn killing_the_store_and_the_webhook_actor() {
    let d = TestDaemon::start();
    setup(&d, "");
    let before = d
        .cli(&["actors", "inspect", "secret-store", "-o", "json"])
        .json()["state"]["revision"]
        .clone();
    d.cli(&["actors", "kill", "secret-store"]).ok();
    eventually(Duration::from_secs(10), "the store back", || {
        (restarts(&d, "secret-store") == 1).then_some(())
    });
    let after = d
        .cli(&["actors", "inspect", "secret-store", "-o", "json"])
        .json()["state"]["revision"]
        .clone();
    assert_eq!(before, after, "the revision changed across the restart");
    // The next apply works and the webhook still verifies with the current keys.
    let out = d.apply("apiVersion: orchestrator.dev/v2\nkind: StepTemplate\nmetadata: {name: after-restart}\nspec: {prompt: p}\n");
    assert!(out.contains("steptemplate/after-restart created"), "{out}");
    assert_eq!(deliver(&d, 3), 202);

    d.cli(&["actors", "kill", "webhook"]).ok();
    let answered = eventually(
        Duration::from_secs(10),
        "the webhook server answering again",
        || (restarts(&d, "webhook") == 1).then(|| deliver(&d, 4)),
    );
    assert_eq!(answered, 202);
}

#[test]
fn past_the_restart_intensity_a_trigger_is_given_up_and_the_store_escalates() {
    let mut d = TestDaemon::start();
    setup(&d, &tick_trigger("doomed"));
    eventually(Duration::from_secs(10), "the trigger actor", || {
        running(&d)
            .contains(&"trigger/default/doomed".to_owned())
            .then_some(())
    });
    // A trigger that keeps failing is given up on; its siblings are untouched.
    for i in 1..=6 {
        let _ = d.cli(&["actors", "kill", "trigger/default/doomed"]);
        if i < 6 {
            eventually(Duration::from_secs(10), "the restart", || {
                (restarts(&d, "trigger/default/doomed") == i).then_some(())
            });
        }
    }
    eventually(Duration::from_secs(10), "the trigger given up", || {
        (!running(&d).contains(&"trigger/default/doomed".to_owned())).then_some(())
    });
    assert!(d.log().contains("giving up on it"), "no give-up in the log");
    assert_eq!(deliver(&d, 5), 202);
    d.cli(&["daemon", "status"]).ok();

    // The store is a static child of the root: past its intensity the root fails and the daemon
    // exits with status 1, for its service manager to restart it.
    for i in 1..=6 {
        let _ = d.cli(&["actors", "kill", "secret-store"]);
        if i < 6 {
            eventually(Duration::from_secs(10), "the restart", || {
                (restarts(&d, "secret-store") == i).then_some(())
            });
        }
    }
    let mut child = d.take_child();
    let code = crate::common::wait_child(&mut child, Duration::from_secs(30));
    assert_eq!(code, 1);
    let log = d.log();
    assert!(
        log.contains("secret-store exceeded its restart intensity (5 restarts in 10s); escalating"),
        "{log}"
    );
    // It starts again on the same data dir with everything in place.
    d.spawn();
    assert!(d.cli(&["get", "trigger", "doomed"]).ok().contains("doomed"));
}

#[test]
fn one_request_can_be_followed_across_actors_in_the_log() {
    let d = TestDaemon::start();
    setup(&d, "");
    let log = d.log();
    let apply = log
        .lines()
        .find(|l| l.contains("apply committed"))
        .unwrap_or_default()
        .to_owned();
    assert!(apply.contains("request{id="), "{apply}");
    assert!(apply.contains("path=/v1/apply"), "{apply}");
    assert_eq!(deliver(&d, 6), 202);
    let created = eventually(Duration::from_secs(10), "the task-created line", || {
        d.log()
            .lines()
            .find(|l| l.contains("task created") && l.contains("origin=webhook/hook"))
            .map(str::to_owned)
    });
    assert!(created.contains("delivery{id="), "{created}");
    let id: u64 = d
        .cli(&["task", "create", "--workflow", "quick"])
        .ok()
        .trim()
        .parse()
        .expect("id");
    let finished = eventually(Duration::from_secs(20), "the task-finished line", || {
        d.log()
            .lines()
            .find(|l| l.contains("task finished") && l.contains(&format!("task{{id={id}}}")))
            .map(str::to_owned)
    });
    assert!(finished.contains("state=\"succeeded\""), "{finished}");
}

#[test]
fn a_closed_stdout_ends_the_cli_quietly_but_a_missing_daemon_is_still_an_error() {
    let d = TestDaemon::start();
    for args in [&["actors"][..], &["actors", "-o", "json"][..]] {
        // The reader is gone before the CLI writes a byte (`orchestrator actors | head -0`).
        let mut child = Command::new(CLI)
            .arg("--socket")
            .arg(&d.socket)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cli");
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{args:?}: {:?}", out.status);
        assert_eq!(String::from_utf8_lossy(&out.stderr), "", "{args:?}");
    }
    let gone = d.dir.path().join("nowhere.sock");
    let out = Command::new(CLI)
        .arg("--socket")
        .arg(&gone)
        .arg("actors")
        .output()
        .expect("cli");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("orchestrator: "));
}
