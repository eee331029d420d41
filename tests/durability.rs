//! Accepted means durable (issue 14): a webhook delivery answered `202 accepted` has its task
//! after the daemon is killed with SIGKILL while many others are in flight, and its delivery id
//! stays a replay across the restart (and across a restart of the webhook server), so the same
//! delivery sent before and after makes one task.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use orchestrator::domain::signature::{Scheme, sign};

use crate::common::{TestDaemon, eventually, http_raw};

const SECRET: &str = "durability-signing-secret-0123";
/// Concurrent senders.
const SENDERS: usize = 16;
/// Deliveries answered `accepted` before the kill.
const BEFORE_KILL: usize = 150;

fn setup(d: &TestDaemon) {
    d.apply(&format!(
        "{}---\napiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {{name: hooks}}\nspec: {{data: {{github: \"{SECRET}\"}}}}\n---\napiVersion: orchestrator.dev/v2\nkind: Workflow\nmetadata: {{name: quick}}\nspec:\n  steps: [{{id: s, command: \"true\"}}]\n---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: hook}}\nspec:\n  event:\n    source: webhook\n    webhook: {{secret: {{fromRef: hooks}}, scheme: github}}\n  action: {{workflow: quick, workspace: default, start: false}}\n  concurrencyPolicy: Allow\n",
        d.workspace()
    ));
}

/// Sends delivery `id` (body `{"delivery": id}`), signed; the status and the JSON answer, or
/// `None` when the daemon did not answer (it was killed).
fn deliver(addr: SocketAddr, id: &str) -> Option<(u16, serde_json::Value)> {
    let body = format!(r#"{{"delivery": "{id}"}}"#);
    let mut req = format!(
        "POST /webhook/hook HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in sign(
        Scheme::Github,
        None,
        SECRET.as_bytes(),
        body.as_bytes(),
        0,
        id,
    ) {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(&body);
    let (status, text) = http_raw(addr, req.as_bytes())?;
    Some((status, serde_json::from_str(&text).ok()?))
}

/// The ids of the tasks of trigger `hook`.
fn task_ids(d: &TestDaemon) -> BTreeSet<u64> {
    let list = d
        .cli(&[
            "task",
            "list",
            "--trigger",
            "hook",
            "--limit",
            "10000",
            "-o",
            "json",
        ])
        .json();
    list["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["id"].as_u64().expect("id"))
        .collect()
}

fn restarts(d: &TestDaemon, name: &str) -> u64 {
    let run = d.cli(&["actors", "inspect", name, "-o", "json"]);
    serde_json::from_str::<serde_json::Value>(&run.stdout)
        .ok()
        .and_then(|v| v["stats"]["restarts"].as_u64())
        .unwrap_or(0)
}

#[test]
fn every_delivery_answered_202_has_its_task_after_kill_9_and_stays_a_replay() {
    let mut d = TestDaemon::start();
    setup(&d);
    let addr = d.webhook.expect("webhook address");

    // Senders deliver unique ids as fast as they are answered until the daemon stops answering.
    let accepted: Arc<Mutex<BTreeMap<String, u64>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let senders: Vec<_> = (0..SENDERS)
        .map(|s| {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let id = format!("delivery-{s}-{n}");
                    match deliver(addr, &id) {
                        Some((202, v)) if v["status"] == "accepted" => {
                            let task = v["task"].as_u64().expect("task id");
                            accepted.lock().expect("lock").insert(id, task);
                        }
                        Some((status, v)) => panic!("{id}: {status} {v}"),
                        None => return, // killed while this one was in flight
                    }
                }
            })
        })
        .collect();
    eventually(Duration::from_secs(60), "deliveries accepted", || {
        (accepted.lock().expect("lock").len() >= BEFORE_KILL).then_some(())
    });
    // SIGKILL with the senders still sending: no chance to flush anything.
    d.kill9();
    stop.store(true, Ordering::Relaxed);
    for s in senders {
        s.join().expect("sender");
    }
    let accepted = accepted.lock().expect("lock").clone();
    assert!(accepted.len() >= BEFORE_KILL);

    d.spawn();
    let addr = d.webhook.expect("webhook address");
    let after = task_ids(&d);
    let missing: Vec<_> = accepted
        .iter()
        .filter(|(_, task)| !after.contains(task))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} deliveries answered 202 have no task after the restart: {missing:?}",
        missing.len(),
        accepted.len()
    );

    // The same deliveries again: each is a replay, after the daemon's restart and after the
    // webhook server's own restart; no task is added.
    let again = || {
        for id in accepted.keys() {
            let (status, v) = deliver(addr, id).expect("an answer");
            assert_eq!(
                (status, v["status"].as_str()),
                (202, Some("duplicate")),
                "{id}: {v}"
            );
        }
    };
    again();
    d.cli(&["actors", "kill", "webhook"]).ok();
    eventually(Duration::from_secs(10), "the webhook server back", || {
        (restarts(&d, "webhook") == 1).then_some(())
    });
    again();
    assert_eq!(task_ids(&d), after, "a replayed delivery made a task");
    // A new delivery still makes one.
    let (status, v) = deliver(addr, "a-new-one").expect("an answer");
    assert_eq!(
        (status, v["status"].as_str()),
        (202, Some("accepted")),
        "{v}"
    );
    assert_eq!(task_ids(&d).len(), after.len() + 1);
}

#[test]
fn a_delivery_sent_before_and_after_a_graceful_restart_makes_one_task() {
    let mut d = TestDaemon::start();
    setup(&d);
    let addr = d.webhook.expect("webhook address");
    let (status, v) = deliver(addr, "once").expect("an answer");
    assert_eq!(
        (status, v["status"].as_str()),
        (202, Some("accepted")),
        "{v}"
    );
    let first = v["task"].as_u64().expect("the task");
    d.restart();
    let addr = d.webhook.expect("webhook address");
    let (status, v) = deliver(addr, "once").expect("an answer");
    // The restarted server's cache is empty: the store's record answers, naming the task.
    assert_eq!(
        (status, v["status"].as_str(), v["task"].as_u64()),
        (202, Some("duplicate"), Some(first)),
        "{v}"
    );
    assert_eq!(task_ids(&d).len(), 1);
}
