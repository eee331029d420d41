//! Webhooks end to end (issue: webhooks): real HTTP on loopback against the daemon's webhook
//! server, signed with the platforms' schemes by the library's own `sign` (whose output is checked
//! against the platforms' published vectors in `domain::signature`).

use std::net::SocketAddr;
use std::time::Duration;

use chrono::Utc;
use orchestrator::domain::signature::{Scheme, sign};

use crate::common::{TestDaemon, eventually, http_raw, post};

pub(crate) const STORE_OLD: &str = "old-signing-secret-value-111";

pub(crate) fn setup(d: &TestDaemon, triggers: &str) {
    d.apply(&format!(
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
  max_parallel: 50
  steps: [{{id: s, command: "true"}}]
{triggers}"#,
        d.workspace()
    ));
}

pub(crate) fn hook(name: &str, scheme: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: {name}}}\nspec:\n  event:\n    source: webhook\n    webhook:\n      secret: {{fromRef: hooks}}\n      scheme: {scheme}\n{extra}  action: {{workflow: quick, workspace: default, start: false}}\n  concurrencyPolicy: Allow\n"
    )
}

pub(crate) fn addr(d: &TestDaemon) -> SocketAddr {
    d.webhook.expect("webhook address")
}

pub(crate) fn signed(scheme: Scheme, secret: &str, body: &str, id: &str) -> Vec<(String, String)> {
    let mut h = sign(
        scheme,
        None,
        secret.as_bytes(),
        body.as_bytes(),
        Utc::now().timestamp(),
        id,
    );
    h.push(("Content-Type".into(), "application/json".into()));
    h
}

pub(crate) fn tasks_of(d: &TestDaemon, trigger: &str) -> usize {
    d.cli(&[
        "task",
        "list",
        "--trigger",
        trigger,
        "--limit",
        "10000",
        "-o",
        "json",
    ])
    .json()["tasks"]
        .as_array()
        .map_or(0, Vec::len)
}

pub(crate) fn status_of(resp: &(u16, String)) -> (u16, serde_json::Value) {
    (
        resp.0,
        serde_json::from_str(&resp.1).unwrap_or(serde_json::Value::Null),
    )
}

#[test]
fn every_scheme_accepts_its_platform_format_and_refuses_forgeries() {
    let d = TestDaemon::start();
    let schemes = [
        Scheme::HmacSha256,
        Scheme::Github,
        Scheme::Slack,
        Scheme::Line,
        Scheme::Stripe,
        Scheme::StandardWebhooks,
    ];
    let triggers: String = schemes
        .iter()
        .map(|s| hook(&format!("h-{}", s.name()), s.name(), ""))
        .collect();
    setup(&d, &triggers);
    let a = addr(&d);
    let body = r#"{"event": "ping", "n": 1}"#;
    for (i, scheme) in schemes.into_iter().enumerate() {
        let path = format!("/webhook/h-{}", scheme.name());
        let id = format!("msg_{i}");
        // The real format is accepted and creates a task.
        let (status, v) = status_of(&post(
            a,
            &path,
            &signed(scheme, STORE_OLD, body, &id),
            body.as_bytes(),
        ));
        // LINE counts only a 200 as delivered (README, Webhooks).
        let want = if scheme == Scheme::Line { 200 } else { 202 };
        assert_eq!(status, want, "{}: {v}", scheme.name());
        assert_eq!(v["status"], "accepted");
        assert!(v["task"].as_u64().is_some());
        // A wrong key, one flipped body byte, a missing header: 401 with a generic body.
        let wrong = signed(scheme, "some-other-secret", body, &format!("{id}-w"));
        assert_eq!(
            post(a, &path, &wrong, body.as_bytes()),
            (401, r#"{"error":"unauthorized"}"#.into()),
            "{}",
            scheme.name()
        );
        let flipped = body.replace("ping", "pong");
        let h = signed(scheme, STORE_OLD, body, &format!("{id}-f"));
        assert_eq!(
            post(a, &path, &h, flipped.as_bytes()).0,
            401,
            "{}: flipped byte",
            scheme.name()
        );
        let none = vec![("Content-Type".to_string(), "application/json".to_string())];
        assert_eq!(
            post(a, &path, &none, body.as_bytes()).0,
            401,
            "{}: no signature",
            scheme.name()
        );
        // Timestamped schemes refuse a stale signature.
        if scheme.is_timestamped() {
            let stale = sign(
                scheme,
                None,
                STORE_OLD.as_bytes(),
                body.as_bytes(),
                Utc::now().timestamp() - 3600,
                &format!("{id}-s"),
            );
            assert_eq!(
                post(a, &path, &stale, body.as_bytes()).0,
                401,
                "{}: stale",
                scheme.name()
            );
        }
    }
    // Nothing secret reached the log, and every refusal is explained there at debug level.
    let log = d.log();
    assert!(!log.contains(STORE_OLD));
    assert!(
        log.contains("webhook refused: signature"),
        "no debug reason in the log"
    );
}

#[test]
fn rotating_keys_never_leaves_a_gap() {
    let d = TestDaemon::start();
    setup(&d, &hook("rotating", "github", ""));
    let a = addr(&d);
    let apply_store = |data: &str| {
        d.apply(&format!(
            "apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {{name: hooks}}\nspec: {{data: {{{data}}}}}\n"
        ));
    };
    let send = |secret: &str, n: usize| {
        let body = format!(r#"{{"n": {n}}}"#);
        post(
            a,
            "/webhook/rotating",
            &signed(Scheme::Github, secret, &body, ""),
            body.as_bytes(),
        )
        .0
    };
    let mut old = STORE_OLD.to_owned();
    let mut misses = Vec::new();
    for cycle in 0..100 {
        let new = format!("rotated-secret-{cycle}-{}", cycle * 7919);
        // Only the old key.
        apply_store(&format!("current: \"{old}\""));
        if send(&old, cycle) != 202 {
            misses.push(format!("cycle {cycle}: old refused with only old"));
        }
        // Both keys.
        apply_store(&format!("current: \"{old}\", next: \"{new}\""));
        if send(&old, cycle) != 202 {
            misses.push(format!("cycle {cycle}: old refused with both"));
        }
        if send(&new, cycle) != 202 {
            misses.push(format!("cycle {cycle}: new refused with both"));
        }
        // Only the new key: the old one is refused at once.
        apply_store(&format!("current: \"{new}\""));
        if send(&old, cycle) != 401 {
            misses.push(format!(
                "cycle {cycle}: old still accepted after it was removed"
            ));
        }
        if send(&new, cycle) != 202 {
            misses.push(format!("cycle {cycle}: new refused alone"));
        }
        old = new;
    }
    assert!(misses.is_empty(), "{} misses: {misses:#?}", misses.len());
    // The trigger itself was applied once; it kept working through 300 store applies.
    let t = d.cli(&["get", "trigger", "rotating", "-o", "json"]).json();
    assert_eq!(t["metadata"]["generation"], 1);
}

#[test]
fn one_request_fires_exactly_one_trigger() {
    let d = TestDaemon::start();
    let triggers = format!(
        "{}{}{}{}---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: nightly}}\nspec:\n  cron: {{schedule: '0 3 * * *'}}\n  action: {{workflow: quick, workspace: default}}\n",
        hook("a", "github", ""),
        hook("b", "github", ""),
        hook("slack", "slack", ""),
        hook(
            "only-pushes",
            "github",
            "    filter: {condition: \"payload.action == 'push' && payload_ref == 'refs/heads/main'\"}\n"
        ),
    );
    setup(&d, &triggers);
    let a = addr(&d);
    let body = r#"{"action": "push", "ref": "refs/heads/dev"}"#;
    let (status, v) = status_of(&post(
        a,
        "/webhook/a",
        &signed(Scheme::Github, STORE_OLD, body, "d-1"),
        body.as_bytes(),
    ));
    assert_eq!((status, v["status"].as_str()), (202, Some("accepted")));
    assert_eq!(
        post(
            a,
            "/webhook/default/a",
            &signed(Scheme::Github, STORE_OLD, body, "d-2"),
            body.as_bytes()
        )
        .0,
        202
    );
    assert_eq!((tasks_of(&d, "a"), tasks_of(&d, "b")), (2, 0));

    // A cron trigger is not reachable over HTTP; unknown triggers and projects are 404.
    for path in [
        "/webhook/nightly",
        "/webhook/nope",
        "/webhook/other-project/a",
        "/webhook/a/b/c",
    ] {
        assert_eq!(
            post(
                a,
                path,
                &signed(Scheme::Github, STORE_OLD, body, "x"),
                body.as_bytes()
            )
            .0,
            404,
            "{path}"
        );
    }

    // The filter: no match → 202 filtered, nothing fires; a match fires.
    let (status, v) = status_of(&post(
        a,
        "/webhook/only-pushes",
        &signed(Scheme::Github, STORE_OLD, body, "f-1"),
        body.as_bytes(),
    ));
    assert_eq!((status, v["status"].as_str()), (202, Some("filtered")));
    let main = r#"{"action": "push", "ref": "refs/heads/main"}"#;
    let (status, v) = status_of(&post(
        a,
        "/webhook/only-pushes",
        &signed(Scheme::Github, STORE_OLD, main, "f-2"),
        main.as_bytes(),
    ));
    assert_eq!((status, v["status"].as_str()), (202, Some("accepted")));
    assert_eq!(tasks_of(&d, "only-pushes"), 1);

    // Slack's url_verification is answered with its challenge and fires nothing.
    let challenge = r#"{"type": "url_verification", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}"#;
    let (status, v) = status_of(&post(
        a,
        "/webhook/slack",
        &signed(Scheme::Slack, STORE_OLD, challenge, ""),
        challenge.as_bytes(),
    ));
    assert_eq!(status, 200);
    assert_eq!(
        v["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    assert_eq!(tasks_of(&d, "slack"), 0);

    // A duplicate delivery id is answered without a second task.
    let (status, v) = status_of(&post(
        a,
        "/webhook/a",
        &signed(Scheme::Github, STORE_OLD, body, "d-1"),
        body.as_bytes(),
    ));
    assert_eq!((status, v["status"].as_str()), (202, Some("duplicate")));
    assert_eq!(tasks_of(&d, "a"), 2);

    // Slack retries repeat the event id.
    let event = r#"{"type": "event_callback", "event_id": "Ev01"}"#;
    let mut retry = signed(Scheme::Slack, STORE_OLD, event, "");
    assert_eq!(
        status_of(&post(a, "/webhook/slack", &retry, event.as_bytes())).1["status"],
        "accepted"
    );
    retry.push(("X-Slack-Retry-Num".into(), "1".into()));
    assert_eq!(
        status_of(&post(a, "/webhook/slack", &retry, event.as_bytes())).1["status"],
        "duplicate"
    );
}

#[test]
fn a_webhook_triggers_history_limit_keeps_exactly_its_newest_tasks() {
    let d = TestDaemon::start();
    setup(
        &d,
        "---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {name: limited}\nspec:\n  event:\n    source: webhook\n    webhook: {secret: {fromRef: hooks}, scheme: github}\n  action: {workflow: quick, workspace: default}\n  concurrencyPolicy: Allow\n  historyLimit: {successful: 2}\n",
    );
    let a = addr(&d);
    let body = r#"{"action": "push"}"#;
    let mut accepted = Vec::new();
    for i in 0..8 {
        let (status, v) = status_of(&post(
            a,
            "/webhook/limited",
            &signed(Scheme::Github, STORE_OLD, body, &format!("limit-{i}")),
            body.as_bytes(),
        ));
        assert_eq!(status, 202, "{v}");
        accepted.push(v["task"].as_u64().expect("a task id"));
    }
    // Once every task has finished, the trigger keeps exactly its two newest, and their run
    // logs only.
    let newest: Vec<u64> = accepted[6..].to_vec();
    eventually(
        Duration::from_secs(30),
        "exactly the two newest tasks",
        || {
            let tasks = d
                .cli(&["task", "list", "--trigger", "limited", "-o", "json"])
                .json();
            let mut ids: Vec<u64> = tasks["tasks"]
                .as_array()
                .expect("tasks")
                .iter()
                .filter(|t| t["state"] == "succeeded")
                .map(|t| t["id"].as_u64().expect("id"))
                .collect();
            ids.sort_unstable();
            (ids == newest && tasks_of(&d, "limited") == 2).then_some(())
        },
    );
    eventually(Duration::from_secs(30), "only their run logs", || {
        let mut dirs: Vec<u64> = std::fs::read_dir(d.data_dir.join("runs"))
            .expect("runs")
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        dirs.sort_unstable();
        (dirs == newest).then_some(())
    });
}

#[test]
fn dry_runs_forms_suspension_and_last_verified_apart_from_last_tested() {
    let d = TestDaemon::start();
    setup(
        &d,
        &format!(
            "{}{}",
            hook("probe", "github", ""),
            hook("slash", "slack", "")
        ),
    );
    let a = addr(&d);
    d.apply("apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {name: hooks}\nspec: {data: {current: \"old-signing-secret-value-111\", next: \"next-signing-secret-value-222\"}}\n");
    let body = r#"{"zen": "Keep it logically awesome."}"#;
    let mut h = signed(Scheme::Github, "next-signing-secret-value-222", body, "p-1");
    h.push(("X-Orchestrator-Dry-Run".into(), "1".into()));
    let (status, v) = status_of(&post(a, "/webhook/probe", &h, body.as_bytes()));
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["key"].as_str()),
        (Some("verified"), Some("next"))
    );
    assert_eq!(tasks_of(&d, "probe"), 0, "a dry run created a task");

    // A dry run is a test, never a verification: "last tested at" shows the key that matched,
    // "last verified at" stays empty.
    let key_of = |keys: &[serde_json::Value], name: &str| {
        keys.iter()
            .find(|k| k["key"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no key {name}: {keys:?}"))
    };
    let describe_keys = || {
        d.cli(&["describe", "secretstore", "hooks", "-o", "json"])
            .json()["keys"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    };
    let keys = eventually(
        Duration::from_secs(10),
        "the next key to be stamped as tested",
        || {
            let keys = describe_keys();
            key_of(&keys, "next")["lastTestedAt"]
                .is_string()
                .then_some(keys)
        },
    );
    let next = key_of(&keys, "next");
    assert_eq!(next["lastTestedBy"], "dry run", "{next}");
    assert_eq!(next["lastTestedTrigger"], "probe", "{next}");
    assert!(
        next["lastVerifiedAt"].is_null(),
        "a dry run verified: {next}"
    );
    let current = key_of(&keys, "current");
    assert!(
        current["lastVerifiedAt"].is_null() && current["lastTestedAt"].is_null(),
        "current was never used: {current}"
    );
    let text = d.cli(&["describe", "secretstore", "hooks"]).ok().to_owned();
    assert!(text.contains("(dry run, trigger probe)"), "{text}");

    // The daemon's own `webhook test` is a test too, named as such.
    d.cli(&["webhook", "test", "probe", "--key", "current"])
        .ok();
    eventually(
        Duration::from_secs(10),
        "current to be stamped as tested",
        || {
            let current = key_of(&describe_keys(), "current");
            (current["lastTestedBy"] == "webhook test" && current["lastVerifiedAt"].is_null())
                .then_some(())
        },
    );

    // A real delivery is what "last verified at" shows.
    let h = signed(Scheme::Github, "next-signing-secret-value-222", body, "p-3");
    let (status, v) = status_of(&post(a, "/webhook/probe", &h, body.as_bytes()));
    assert_eq!(status, 202, "{v}");
    eventually(
        Duration::from_secs(10),
        "next to be stamped as verified",
        || {
            key_of(&describe_keys(), "next")["lastVerifiedAt"]
                .is_string()
                .then_some(())
        },
    );
    let text = d.cli(&["describe", "secretstore", "hooks"]).ok().to_owned();
    assert!(text.contains("(trigger probe)"), "{text}");

    // A Slack slash command arrives as a form and reaches the task as a JSON object.
    let form = "command=%2Fdeploy&text=prod+now&user_name=ana";
    let mut h = sign(
        Scheme::Slack,
        None,
        STORE_OLD.as_bytes(),
        form.as_bytes(),
        Utc::now().timestamp(),
        "",
    );
    h.push((
        "Content-Type".into(),
        "application/x-www-form-urlencoded".into(),
    ));
    // Slack wants a 200 without a body for a command (a body would be posted as its reply).
    let answer = post(a, "/webhook/slash", &h, form.as_bytes());
    assert_eq!(answer, (200, String::new()));
    let id = d
        .cli(&["task", "list", "--trigger", "slash", "-o", "json"])
        .json()["tasks"][0]["id"]
        .as_u64()
        .expect("task");
    let detail = d
        .cli(&["task", "show", &id.to_string(), "-o", "json"])
        .json();
    assert_eq!(detail["task"]["origin"], "webhook/slash");
    // The payload is stored with the task; the form fields became JSON.
    let payload: serde_json::Value =
        serde_json::from_str(detail["payload"].as_str().expect("payload")).expect("payload json");
    assert_eq!(
        (payload["command"].as_str(), payload["text"].as_str()),
        (Some("/deploy"), Some("prod now"))
    );

    // A suspended trigger answers 202 skipped.
    d.cli(&["trigger", "suspend", "probe"]).ok();
    let h = signed(Scheme::Github, STORE_OLD, body, "p-2");
    let (status, v) = status_of(&post(a, "/webhook/probe", &h, body.as_bytes()));
    assert_eq!((status, v["status"].as_str()), (202, Some("skipped")));
}

#[test]
fn a_trigger_without_a_usable_key_refuses_everything() {
    let d = TestDaemon::start();
    setup(&d, &hook("closed", "github", ""));
    d.apply("apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {name: hooks}\nspec: {data: {current: \"\"}}\n");
    let a = addr(&d);
    let body = r#"{"n": 1}"#;
    // Even a request "signed" with the empty key is refused.
    let (status, text) = post(
        a,
        "/webhook/closed",
        &signed(Scheme::Github, "", body, "c-1"),
        body.as_bytes(),
    );
    assert_eq!(
        (status, text.as_str()),
        (401, r#"{"error":"unauthorized"}"#)
    );
    assert!(d.log().contains("no usable (non-empty, listed) key"));
}

#[test]
fn bad_input_never_takes_the_server_down() {
    let d = TestDaemon::start();
    setup(&d, &hook("sturdy", "github", ""));
    let a = addr(&d);
    let good = r#"{"ok": true}"#;
    let signed_body = |body: &[u8]| sign(Scheme::Github, None, STORE_OLD.as_bytes(), body, 0, "");

    // Invalid UTF-8, malformed JSON and empty bodies that are correctly signed: 400.
    let invalid: &[u8] = b"{\"x\": \"\xff\xfe\"}";
    assert_eq!(
        post(a, "/webhook/sturdy", &signed_body(invalid), invalid).0,
        400
    );
    let broken = b"{\"x\": ";
    let (status, text) = post(a, "/webhook/sturdy", &signed_body(broken), broken);
    assert_eq!(status, 400);
    assert!(text.contains("not valid JSON"), "{text}");
    assert_eq!(post(a, "/webhook/sturdy", &signed_body(b""), b"").0, 400);
    // Unsigned garbage is 401.
    assert_eq!(
        post(
            a,
            "/webhook/sturdy",
            &[("X-Hub-Signature-256".into(), "sha256=zz".into())],
            b"\x00\x01"
        )
        .0,
        401
    );

    // 1 MiB is accepted; 1 MiB + 1 is 413, declared or chunked.
    let big = {
        let mut v = br#"{"pad": ""#.to_vec();
        v.resize(1024 * 1024 - 2, b'a');
        v.extend_from_slice(br#""}"#);
        v
    };
    assert_eq!(big.len(), 1024 * 1024);
    assert_eq!(post(a, "/webhook/sturdy", &signed_body(&big), &big).0, 202);
    let mut too_big = big.clone();
    too_big.insert(2, b' ');
    assert_eq!(
        post(a, "/webhook/sturdy", &signed_body(&too_big), &too_big).0,
        413
    );
    let mut chunked = b"POST /webhook/sturdy HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for piece in too_big.chunks(64 * 1024) {
        chunked.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        chunked.extend_from_slice(piece);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    assert_eq!(http_raw(a, &chunked).map(|r| r.0), Some(413));
    // A small chunked delivery is fine.
    let sig = signed_body(good.as_bytes());
    let mut small = b"POST /webhook/sturdy HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n".to_vec();
    for (k, v) in &sig {
        small.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
    }
    small.extend_from_slice(format!("\r\n{:x}\r\n{good}\r\n0\r\n\r\n", good.len()).as_bytes());
    assert_eq!(http_raw(a, &small).map(|r| r.0), Some(202));

    // Garbage on the wire: the server may refuse it or close the connection; it must survive.
    for garbage in [
        &b"GARBAGE\r\n\r\n"[..],
        b"POST /webhook/sturdy HTTP/1.1\r\nHost: x\r\nX-Bad: \x00\x01\x02\r\nContent-Length: 2\r\n\r\n{}",
        b"POST /webhook/sturdy HTTP/1.1\r\nContent-Length: -5\r\n\r\n",
        b"POST /webhook/%ff%fe HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        b"GET /webhook/sturdy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ] {
        let _ = http_raw(a, garbage);
    }
    let health = http_raw(
        a,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(health.map(|r| r.0), Some(200));
    // And it still verifies and fires.
    let (status, _) = post(
        a,
        "/webhook/sturdy",
        &signed(Scheme::Github, STORE_OLD, good, "late"),
        good.as_bytes(),
    );
    assert_eq!(status, 202);
    d.cli(&["daemon", "status"]).ok();
}

/// Starts a delivery whose body never finishes: headers and 10 of the 100 bytes it announces.
fn slow_sender(addr: SocketAddr) -> std::net::TcpStream {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("read timeout");
    s.write_all(
        b"POST /webhook/gh HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"slow\": 1",
    )
    .expect("write");
    s
}

#[test]
fn slow_senders_fill_the_delivery_slots_until_their_body_deadline() {
    let d = TestDaemon::start_with(&[
        "--webhook-max-in-flight",
        "2",
        "--webhook-body-timeout",
        "2",
    ]);
    setup(&d, &hook("gh", "github", ""));
    let body = r#"{"zen": "ok"}"#;
    let deliver = |id: &str| {
        post(
            addr(&d),
            "/webhook/gh",
            &signed(Scheme::Github, STORE_OLD, body, id),
            body.as_bytes(),
        )
    };
    assert_eq!(deliver("before").0, 202);

    let slow: Vec<_> = (0..2).map(|_| slow_sender(addr(&d))).collect();
    // The webhook actor reports the slots in use.
    eventually(Duration::from_secs(5), "both slots taken", || {
        let s = d
            .cli(&["actors", "inspect", "webhook", "-o", "json"])
            .json()["state"]
            .clone();
        (s["inFlight"] == 2 && s["maxInFlight"] == 2).then_some(())
    });
    // A good delivery is turned away meanwhile, and told to retry.
    let (status, text) = deliver("during");
    assert_eq!(status, 429, "{text}");
    assert!(text.contains("retry later"), "{text}");

    // The body deadline frees the slots: the slow senders get 408, deliveries get through.
    for mut s in slow {
        use std::io::Read;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        assert!(out.contains("did not arrive within 2 s"), "{out}");
    }
    assert_eq!(deliver("after").0, 202);
    assert_eq!(tasks_of(&d, "gh"), 2, "only the whole deliveries fired");
}

/// Whether the server closed `s` (a read returns end-of-file) within `limit`.
fn closed_within(s: &mut std::net::TcpStream, limit: Duration) -> bool {
    use std::io::Read;
    s.set_read_timeout(Some(limit)).expect("read timeout");
    let mut buf = [0u8; 512];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue, // An answer (408) before the close is fine.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false, // Timed out: still open.
        }
    }
}

#[test]
fn connections_that_send_no_headers_are_closed_at_the_header_deadline() {
    use std::io::Write;
    let d = TestDaemon::start_with(&["--webhook-header-timeout", "1"]);
    setup(&d, &hook("gh", "github", ""));
    // One says nothing, one never finishes its headers.
    let mut silent = std::net::TcpStream::connect(addr(&d)).expect("connect");
    let mut partial = std::net::TcpStream::connect(addr(&d)).expect("connect");
    partial
        .write_all(b"POST /webhook/gh HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        .expect("write");
    assert!(
        closed_within(&mut silent, Duration::from_secs(10)),
        "silent connection kept"
    );
    assert!(
        closed_within(&mut partial, Duration::from_secs(10)),
        "slow headers kept"
    );
}

/// The webhook actor's connection figures: open, evicted and refused so far, and the cap.
fn connection_counts(d: &TestDaemon) -> (u64, u64, u64, u64) {
    let s = d
        .cli(&["actors", "inspect", "webhook", "-o", "json"])
        .json()["state"]
        .clone();
    let n = |k: &str| {
        s[k].as_u64()
            .unwrap_or_else(|| panic!("no {k} in the webhook state: {s}"))
    };
    (
        n("openConnections"),
        n("evictedConnections"),
        n("refusedConnections"),
        n("maxConnections"),
    )
}

/// Reads one HTTP/1.1 answer (head and `Content-Length` body) and leaves the connection open.
fn read_answer(s: &mut std::net::TcpStream) -> Option<(u16, String)> {
    use std::io::Read;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let (head, mut body) = loop {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break (
                String::from_utf8_lossy(&got[..i]).into_owned(),
                got[i + 4..].to_vec(),
            );
        }
    };
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())
                .flatten()
        })
        .unwrap_or(0);
    while body.len() < length {
        let n = s.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&buf[..n]);
    }
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

/// A signed GitHub delivery's request bytes, from the headers on (`keep_alive`: no
/// `Connection: close`).
fn delivery_request(id: &str, keep_alive: bool) -> Vec<u8> {
    let body = r#"{"zen": "ok"}"#;
    let mut req = format!(
        "POST /webhook/gh HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n",
        body.len()
    );
    if !keep_alive {
        req.push_str("Connection: close\r\n");
    }
    for (k, v) in signed(Scheme::Github, STORE_OLD, body, id) {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    req.into_bytes()
}

/// Raises this process's soft limit on open files to the hard limit; returns the limit.
fn raise_open_files() -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard).expect("setrlimit");
    }
    hard
}

#[test]
fn a_flood_of_idle_connections_cannot_keep_a_signed_delivery_out() {
    let hard = raise_open_files();
    // The daemon raises its own soft limit to the same hard limit, and keeps half of it for
    // webhook connections: 4,096 (the default) unless the hard limit is below 8,192.
    // The header deadline is 10 minutes: nothing but the cap closes a connection here.
    let d = TestDaemon::start_with(&["--webhook-header-timeout", "600"]);
    setup(&d, &hook("gh", "github", ""));
    let (_, _, _, cap) = connection_counts(&d);
    // 5,000 as the issue asks; fewer only if this process may not open that many (a hard
    // limit below ~5,200), but always more than the daemon's cap.
    let flood = 5000.min(hard.saturating_sub(200));
    assert!(
        flood > cap,
        "the open-files hard limit {hard} leaves room for {flood} connections, not more than the cap {cap}"
    );
    // Opened in batches that the listen backlog (128) holds, each accepted before the next:
    // connecting faster than the daemon accepts would only measure the kernel's SYN retries.
    let accepted = |n: u64| {
        eventually(Duration::from_secs(30), "the connections accepted", || {
            let (open, evicted, refused, _) = connection_counts(&d);
            (open + evicted + refused >= n).then_some(())
        })
    };
    let mut held = Vec::new();
    for i in 0..flood {
        let s = std::net::TcpStream::connect_timeout(&addr(&d), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("idle connection {i}: {e}"));
        held.push(s);
        if (i + 1) % 100 == 0 {
            accepted(i + 1);
        }
    }
    // Every one accepted: the port is full of connections that say nothing.
    accepted(flood);
    assert_eq!(connection_counts(&d).0, cap, "the port is full");
    let started = std::time::Instant::now();
    let answer = http_raw(addr(&d), &delivery_request("through-the-flood", false));
    let took = started.elapsed();
    let (status, body) = answer.unwrap_or_else(|| {
        panic!(
            "the delivery's connection was closed without an answer, {flood} idle connections open"
        )
    });
    assert_eq!(status, 202, "{body}");
    assert_eq!(status_of(&(status, body)).1["status"], "accepted");
    assert!(
        took < Duration::from_secs(1),
        "the delivery took {took:?} with {flood} idle connections open"
    );
    assert_eq!(tasks_of(&d, "gh"), 1);
    // The oldest idle connections made room, for the flood's surplus and for the delivery.
    let (_, evicted, refused, _) = connection_counts(&d);
    assert_eq!(
        refused, 0,
        "a connection was refused rather than another evicted"
    );
    assert!(evicted > flood - cap, "{evicted} evicted");
    drop(held);
}

#[test]
fn at_the_cap_idle_connections_go_first_and_a_request_in_progress_stays() {
    use std::io::Write;
    // The header deadline is the default 30 s: nothing but the cap closes a connection here.
    let d = TestDaemon::start_with(&["--webhook-max-connections", "3"]);
    setup(&d, &hook("gh", "github", ""));
    let connect = || std::net::TcpStream::connect(addr(&d)).expect("connect");
    // The oldest connection is in the middle of a request: half of its head sent.
    let request = delivery_request("mid-request", false);
    let (first_half, second_half) = request.split_at(40);
    let mut mid = connect();
    mid.write_all(first_half).expect("write");
    // A keep-alive connection that completed a request: idle between requests.
    let mut kept = connect();
    kept.write_all(&delivery_request("keep-alive", true))
        .expect("write");
    let (status, text) = read_answer(&mut kept).expect("an answer on the keep-alive connection");
    assert_eq!(status, 202, "{text}");
    // A connection that has sent nothing, opened after the keep-alive one's answer.
    let mut silent = connect();
    eventually(Duration::from_secs(5), "three connections open", || {
        (connection_counts(&d).0 == 3).then_some(())
    });

    // At the cap: the keep-alive connection has been idle longest, and makes room first.
    let _newer = connect();
    assert!(
        closed_within(&mut kept, Duration::from_secs(5)),
        "the idle keep-alive connection was not evicted"
    );
    assert_eq!(connection_counts(&d).1, 1, "one eviction");
    // Then the silent one; the half-sent request is still not chosen, though it is the oldest.
    let mut newest = connect();
    assert!(
        closed_within(&mut silent, Duration::from_secs(5)),
        "the silent connection was not evicted"
    );
    let (open, evicted, refused, _) = connection_counts(&d);
    assert_eq!((open, evicted, refused), (3, 2, 0));

    // The request in progress completes, on its own connection.
    mid.write_all(second_half).expect("write");
    let (status, text) = read_answer(&mut mid).expect("an answer to the half-sent request");
    assert_eq!(status, 202, "{text}");
    // And the newest connection delivers too.
    newest
        .write_all(&delivery_request("newest", false))
        .expect("write");
    let (status, text) = read_answer(&mut newest).expect("an answer on the newest connection");
    assert_eq!(status, 202, "{text}");
    assert_eq!(tasks_of(&d, "gh"), 3);
}

#[test]
fn connections_being_answered_are_never_evicted_and_surplus_ones_close_until_a_slot_frees() {
    let d = TestDaemon::start_with(&[
        "--webhook-max-connections",
        "2",
        "--webhook-body-timeout",
        "2",
    ]);
    setup(&d, &hook("gh", "github", ""));
    // Two deliveries whose bodies never finish: both being answered (their body is read).
    let slow: Vec<_> = (0..2).map(|_| slow_sender(addr(&d))).collect();
    eventually(Duration::from_secs(5), "both deliveries in flight", || {
        let s = d
            .cli(&["actors", "inspect", "webhook", "-o", "json"])
            .json()["state"]
            .clone();
        (s["inFlight"] == 2).then_some(())
    });
    // Nothing can make room: a third connection is closed at once.
    let mut third = std::net::TcpStream::connect(addr(&d)).expect("connect");
    assert!(
        closed_within(&mut third, Duration::from_secs(5)),
        "a surplus connection was kept"
    );
    let (open, evicted, refused, _) = connection_counts(&d);
    assert_eq!((open, evicted), (2, 0));
    assert!(refused >= 1);
    // The slow deliveries were not evicted: each gets its answer at the body deadline.
    for mut s in slow {
        use std::io::Read;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
    }
    // Their slots freed, a delivery gets through.
    let body = r#"{"zen": "ok"}"#;
    eventually(Duration::from_secs(5), "a delivery through", || {
        let r = post(
            addr(&d),
            "/webhook/gh",
            &signed(Scheme::Github, STORE_OLD, body, "after"),
            body.as_bytes(),
        );
        (r.0 == 202).then_some(())
    });
}

#[test]
fn webhook_connections_keep_half_the_open_file_limit_for_the_rest() {
    // A hard limit of 256 open files: at most 128 webhook connections, and the log says why.
    let d = TestDaemon::start_wrapped(&["sh", "-c", "ulimit -n 256 && exec \"$@\"", "sh"], &[]);
    let state = d
        .cli(&["actors", "inspect", "webhook", "-o", "json"])
        .json()["state"]
        .clone();
    assert_eq!(state["maxConnections"], 128, "{state}");
    assert!(
        d.log().contains("webhook max connections lowered to 128"),
        "{}",
        d.log()
    );
    // Without a low limit the flag's value stands.
    let d = TestDaemon::start_with(&["--webhook-max-connections", "100"]);
    let state = d
        .cli(&["actors", "inspect", "webhook", "-o", "json"])
        .json()["state"]
        .clone();
    assert_eq!(state["maxConnections"], 100, "{state}");
}
