//! Hostile and careless input, one test per kind of attack (issue 12's table): every one gets a
//! clear error naming the problem and the fix, changes nothing (the store revision and the
//! resources stay as they were), and leaves the daemon alive and answering.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use orchestrator::domain::signature::{Scheme, sign};

use crate::common::{TestDaemon, post};

const SECRET: &str = "s3cr3t-signing-value";

fn base(d: &TestDaemon) -> String {
    format!(
        r#"{workspace}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {{name: quick}}
spec:
  steps: [{{id: s, command: "true"}}]
---
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {{name: hooks}}
spec:
  data: {{signing: "{SECRET}"}}
---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {{name: custom}}
spec:
  event:
    source: webhook
    webhook: {{secret: {{fromRef: hooks}}, scheme: hmac-sha256}}
  action: {{workflow: quick, workspace: default, start: false}}
"#,
        workspace = d.workspace()
    )
}

/// What `get -o json` and `daemon status` say about the daemon's state.
fn state(d: &TestDaemon) -> (u64, String, String, String) {
    let status = d.cli(&["daemon", "status", "-o", "json"]).json();
    let revision = status["revision"].as_u64().expect("revision");
    let get = |kind: &str| d.cli(&["get", kind, "-A", "-o", "json"]).ok().to_owned();
    (
        revision,
        get("triggers"),
        get("secretstores"),
        d.cli(&["task", "list", "-o", "json"]).ok().to_owned(),
    )
}

/// The daemon answers, and nothing changed since `before`; the real key still verifies.
#[track_caller]
fn unchanged(d: &TestDaemon, before: &(u64, String, String, String)) {
    assert_eq!(
        &state(d),
        before,
        "the hostile input changed the daemon's state"
    );
    let addr = d.webhook.expect("webhook server");
    let sig = sign(Scheme::HmacSha256, None, SECRET.as_bytes(), b"{}", 0, "");
    assert_eq!(post(addr, "/webhook/custom", &sig, b"{}").0, 202);
}

/// One request to the control API over its Unix socket, exactly as given.
fn control(socket: &Path, method: &str, path: &str, body: &[u8]) -> (u16, String) {
    let mut s = UnixStream::connect(socket).expect("connect to the control socket");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: orchestrator\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    // The daemon may answer before the whole body is written, then close.
    let _ = s
        .write_all(head.as_bytes())
        .and_then(|()| s.write_all(body));
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer to {method} {path}: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[track_caller]
fn refused(d: &TestDaemon, method: &str, path: &str, body: &str, want: &str) {
    let (code, text) = control(&d.socket, method, path, body.as_bytes());
    assert_eq!(code, 400, "{method} {path} {body:.200}: {text}");
    assert!(
        text.contains(want),
        "{method} {path} {body:.200}: {text} lacks {want:?}"
    );
}

fn condition_trigger(condition: &str) -> String {
    format!(
        "apiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: filtered}}\nspec:\n  event:\n    source: webhook\n    webhook: {{secret: {{fromRef: hooks}}, scheme: hmac-sha256}}\n    filter:\n      condition: '{condition}'\n  action: {{workflow: quick, workspace: default, start: false}}\n"
    )
}

#[test]
fn hostile_conditions_are_refused_and_the_daemon_lives() {
    let d = TestDaemon::start();
    d.apply(&base(&d));
    let before = state(&d);
    let deep = format!("payload{} == 1", ".a".repeat(5000));
    let list = format!("[{}].size() > 0 && ", vec!["1"; 50_000].join(","));
    let cases = [
        // Row 1: a tokio worker's stack overflowed and the daemon aborted.
        (deep, "the limit is 4096"),
        (
            format!("payload{} == 1", ".a".repeat(2000)),
            "deeper than 64",
        ),
        // Row 2: the parser panicked in the SecretStoreActor; six of them ended the daemon.
        (list.clone(), "the limit is 4096"),
        (
            format!("[{}].size() > 0 && ", vec!["1"; 1500].join(",")),
            "invalid CEL condition",
        ),
        // Row 10: a bad regular expression passed the apply, then filtered every delivery.
        (
            "payload.x.matches(\"(\")".to_owned(),
            "not a valid regular expression",
        ),
    ];
    for (condition, want) in &cases {
        let path = d.write("filtered.yaml", &condition_trigger(condition));
        let err = d
            .cli(&["apply", "-f", path.to_str().expect("path")])
            .fails()
            .to_owned();
        assert!(err.contains(want), "{err:.2000}");
        assert!(err.contains("spec.event.filter.condition"), "{err:.2000}");
        assert!(err.len() < 4096, "an error of {} bytes", err.len());
    }
    for _ in 0..8 {
        let path = d.write("filtered.yaml", &condition_trigger(&list));
        d.cli(&["apply", "-f", path.to_str().expect("path")])
            .fails();
    }
    unchanged(&d, &before);
    // A valid regular expression now works: `matches` is a known function.
    d.apply(&condition_trigger(
        "payload.ref.matches(\"^refs/heads/(main|dev)$\")",
    ));
    let addr = d.webhook.expect("webhook");
    let deliver = |body: &str| {
        let sig = sign(
            Scheme::HmacSha256,
            None,
            SECRET.as_bytes(),
            body.as_bytes(),
            0,
            "",
        );
        post(addr, "/webhook/filtered", &sig, body.as_bytes())
    };
    let (code, body) = deliver(r#"{"ref": "refs/heads/main"}"#);
    assert!(code == 202 && !body.contains("filtered"), "{code} {body}");
    let (code, body) = deliver(r#"{"ref": "refs/heads/feature"}"#);
    assert!(body.contains("filtered"), "{code} {body}");
}

#[test]
fn deep_documents_are_refused_by_the_scan() {
    let d = TestDaemon::start();
    d.apply(&base(&d));
    let before = state(&d);
    // Row 6: ~30 s of daemon CPU before `recursion limit exceeded`.
    let flow = format!("a: {}1{}\n", "{a: ".repeat(60_000), "}".repeat(60_000));
    let seq = format!("{}x\n", "- ".repeat(100_000));
    for text in [flow, seq] {
        let err = d.cli_stdin(&["apply", "-f", "-"], &text).fails().to_owned();
        assert!(err.contains("nests deeper than 64 levels"), "{err:.2000}");
        assert!(err.contains("-:1:"), "the line is named: {err:.2000}");
    }
    // Within the limit, a deep document reaches the parser, which names its real problem.
    let deep_ok: String = (0..40).map(|i| format!("{}k:\n", "  ".repeat(i))).collect();
    let err = d
        .cli_stdin(&["apply", "-f", "-"], &deep_ok)
        .fails()
        .to_owned();
    assert!(!err.contains("nests deeper"), "{err}");
    unchanged(&d, &before);
}

#[test]
fn control_api_bodies_are_checked_like_the_cli_checks_them() {
    let d = TestDaemon::start();
    d.apply(&base(&d));
    let before = state(&d);
    let key = "/v1/secrets/hooks/keys/signing";
    // Row 4: an empty value was stored; `{}` removed the key.
    refused(&d, "PUT", key, r#"{"value": ""}"#, "the value is empty");
    refused(&d, "PUT", key, r#"{}"#, "missing field `value`");
    // Row 7: a mask overwrote the real secret.
    for mask in [
        "***",
        "*****",
        "[REDACTED]",
        "*** (20 bytes, sha256:0a1b2c3d4e5f)",
    ] {
        refused(
            &d,
            "PUT",
            key,
            &format!(r#"{{"value": "{mask}"}}"#),
            "masked value",
        );
        let err = d
            .cli_stdin(&["secret", "set", "hooks", "signing"], mask)
            .fails()
            .to_owned();
        assert!(err.contains("masked value"), "{err}");
    }
    let err = d
        .cli_stdin(
            &["apply", "-f", "-"],
            "apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {name: hooks}\nspec:\n  data: {signing: '***'}\n",
        )
        .fails()
        .to_owned();
    assert!(
        err.contains("spec.data.signing") && err.contains("masked value"),
        "{err}"
    );
    // Row 9: unknown fields and wrong shapes were accepted silently.
    refused(
        &d,
        "POST",
        "/v1/triggers/custom/fire",
        r#"{"paylod": "{}"}"#,
        "unknown field `paylod`",
    );
    refused(&d, "POST", "/v1/triggers/custom/fire", "[]", "an array");
    refused(&d, "POST", "/v1/apply", "[]", "an array");
    refused(&d, "PUT", key, r#"["x"]"#, "an array");
    refused(
        &d,
        "PUT",
        key,
        r#"{"value": "v", "projet": "p"}"#,
        "unknown field `projet`",
    );
    refused(
        &d,
        "POST",
        "/v1/tasks",
        r#"{"workflow": "quick", "gaol": "g"}"#,
        "unknown field `gaol`",
    );
    refused(&d, "POST", "/v1/tasks", "null", "null");
    refused(&d, "POST", "/v1/tasks", "{\"workflow\": ", "not valid JSON");
    unchanged(&d, &before);
}

#[test]
fn oversized_values_are_refused_with_the_limit() {
    let d = TestDaemon::start();
    d.apply(&base(&d));
    let before = state(&d);
    // Row 8: a 60 MiB goal and a 50 MiB secret were stored; every `task list` returned 63 MB.
    let goal = "g".repeat(2 << 20);
    refused(
        &d,
        "POST",
        "/v1/tasks",
        &format!(r#"{{"workflow": "quick", "goal": "{goal}"}}"#),
        "goal is 2 MiB; the limit is 1 MiB",
    );
    let payload = format!("\"{}\"", "p".repeat(1 << 20));
    refused(
        &d,
        "POST",
        "/v1/triggers/custom/fire",
        &serde_json::json!({ "payload": payload }).to_string(),
        "payload is 1.0 MiB; the limit is 1 MiB",
    );
    let big = "v".repeat(100 << 10);
    refused(
        &d,
        "PUT",
        "/v1/secrets/hooks/keys/signing",
        &format!(r#"{{"value": "{big}"}}"#),
        "the value is 100 KiB; the limit is 64 KiB",
    );
    let err = d
        .cli_stdin(&["secret", "set", "hooks", "signing"], &big)
        .fails()
        .to_owned();
    assert!(err.contains("the limit is 64 KiB"), "{err}");
    let err = d
        .cli_stdin(
            &["apply", "-f", "-"],
            &format!(
                "apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {{name: hooks}}\nspec:\n  data: {{signing: '{big}'}}\n"
            ),
        )
        .fails()
        .to_owned();
    assert!(
        err.contains("spec.data.signing") && err.contains("the limit is 64 KiB"),
        "{err}"
    );
    // Row 11: a 70 MiB apply read `error sending request`.
    let file = d.dir.path().join("huge.yaml");
    let line = format!("# {}\n", "x".repeat(1021));
    std::fs::write(&file, line.repeat(17 << 10)).expect("write");
    let err = d
        .cli(&["apply", "-f", file.to_str().expect("path")])
        .fails()
        .to_owned();
    assert!(err.contains("is 17 MiB; the limit is 16 MiB"), "{err}");
    let sources = serde_json::json!({
        "sources": [{"name": "huge.yaml", "baseDir": "/", "text": line.repeat(17 << 10)}]
    });
    refused(
        &d,
        "POST",
        "/v1/apply",
        &sources.to_string(),
        "apply is 17 MiB; the limit is 16 MiB",
    );
    unchanged(&d, &before);
}

#[test]
fn a_user_without_access_to_the_socket_is_told_so() {
    use std::os::unix::process::CommandExt;
    let d = TestDaemon::start();
    // Row 11: `no daemon is answering … start it` instead of "permission denied". The tests
    // run as root, which may open any socket; `nobody` may not open this one.
    // `nobody` must be able to run the CLI: link it into a directory anyone may enter.
    let bin = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(
        bin.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let cli = bin.path().join("orchestrator");
    std::fs::hard_link(crate::common::CLI, &cli)
        .or_else(|_| std::fs::copy(crate::common::CLI, &cli).map(|_| ()))
        .expect("link the CLI");
    let out = std::process::Command::new(&cli)
        .args([
            "--socket",
            d.socket.to_str().expect("path"),
            "get",
            "triggers",
        ])
        .uid(65534)
        .gid(65534)
        .env_remove("ORCHESTRATOR_SOCKET")
        .output()
        .expect("run the CLI as nobody");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("permission denied on"), "{err}");
    assert!(err.contains("the daemon runs as root"), "{err}");
    assert!(!err.contains("no daemon is answering"), "{err}");
}

#[test]
fn every_problem_of_an_apply_is_reported_at_once_in_order() {
    let d = TestDaemon::start();
    d.apply(&base(&d));
    let before = state(&d);
    // Row 13: 4 schema errors, then 7 reference errors on the next try.
    let text = r#"apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: one}
spec:
  steps: [{id: a, template: missing-template, required_capability: code}]
---
apiVersion: orchestrator.dev/v2
kind: StepTemplate
metadata: {name: broken}
spec: {prompt: p, promt: q}
---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {name: nightly}
spec:
  cron: {schedule: "0 2 * * *"}
  action: {workflow: no-such-workflow, workspace: default}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: two}
spec:
  steps: [{id: a, template: broken}]
  unknown: 1
"#;
    let err = d.cli_stdin(&["apply", "-f", "-"], text).fails().to_owned();
    let at = |needle: &str| {
        err.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from:\n{err}"))
    };
    // Document 1's references, document 2's schema error, document 3's reference, document 4's.
    let order = [
        at("-:5: document 1 (workflow/one)"),
        at("missing-template"),
        at("-:10: document 2"),
        at("promt"),
        at("no-such-workflow"),
        at("unknown field `unknown`"),
    ];
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "out of order:\n{err}"
    );
    // The template that failed to parse is not reported as missing by the workflow using it.
    assert!(!err.contains("\"broken\""), "{err}");
    unchanged(&d, &before);
}

#[test]
fn the_command_providers_test_program_gets_the_new_value_on_stdin() {
    let d = TestDaemon::start();
    let platform = d.dir.path().join("platform-secret");
    let tested = d.dir.path().join("tested-with");
    // The test program asks the platform for a delivery, which the platform sends from outside.
    let ping = d.dir.path().join("ping-requested");
    let _platform = crate::common::FilePlatform::start(
        platform.clone(),
        ping.clone(),
        d.webhook.expect("webhook"),
        "/webhook/custom",
        orchestrator::domain::signature::Scheme::HmacSha256,
    );
    // Row 12: the `test` program got an empty stdin; the README says it gets the value.
    d.apply(&format!(
        r#"{workspace}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {{name: quick}}
spec:
  steps: [{{id: s, command: "true"}}]
---
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {{name: hooks}}
spec:
  data: {{signing: "{SECRET}"}}
  rotation:
    key: signing
    provider: command
    settings:
      set: "sh -c 'cat > {platform}'"
      test: "sh -c 'cat > {tested} && touch {ping}'"
      testTimeoutSeconds: 10
---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {{name: custom}}
spec:
  event:
    source: webhook
    webhook: {{secret: {{fromRef: hooks, keys: [signing]}}, scheme: hmac-sha256}}
  action: {{workflow: quick, workspace: default, start: false}}
"#,
        workspace = d.workspace(),
        platform = platform.display(),
        tested = tested.display(),
        ping = ping.display(),
    ));
    let out = d.cli(&["secret", "rotate", "hooks"]).ok().to_owned();
    assert!(out.contains("rotated with command"), "{out}");
    let set = std::fs::read_to_string(&platform).expect("the set program ran");
    let test = std::fs::read_to_string(&tested).expect("the test program ran");
    assert_ne!(set, SECRET);
    assert_eq!(
        test, set,
        "the test program gets the value the set program got"
    );
}

/// A bad `--store` or `--secret-key-file` stops the daemon before anything starts, with what to
/// do, and a password in the store URL is never echoed.
#[test]
fn bad_store_flags_are_refused_plainly_without_echoing_a_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data");
    let short = dir.path().join("short.key");
    std::fs::write(&short, b"12345").expect("write");
    std::fs::set_permissions(&short, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let missing = dir.path().join("missing.key");
    for (args, want) in [
        (
            vec![
                "--store".to_owned(),
                "mysql://admin:hunter2@db/prod".to_owned(),
            ],
            "unknown store \"mysql\": use `sqlite` (the default) or a postgres://",
        ),
        (
            vec![
                "--secret-key-file".to_owned(),
                missing.display().to_string(),
            ],
            "does not exist: put the key file every node shares there",
        ),
        (
            vec!["--secret-key-file".to_owned(), short.display().to_string()],
            "is 5 bytes, expected 32",
        ),
    ] {
        let out = std::process::Command::new(crate::common::DAEMON)
            .args(&args)
            .args([
                "--webhook-bind",
                "none",
                "--admin-bind",
                "none",
                "--data-dir",
            ])
            .arg(&data)
            .output()
            .expect("run orchestratord");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
        assert!(
            !stderr.contains("hunter2"),
            "the password is echoed: {stderr}"
        );
        assert_eq!(
            stderr.matches("No such file").count(),
            0,
            "{args:?}: {stderr}"
        );
    }
}
