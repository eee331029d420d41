//! Rotation you can trust (issue 15): only a delivery from outside proves a new key (`webhook
//! test` and dry runs never do), rotation programs run beside the manifest that declared them,
//! `secret rotate` streams its stages, provider errors say what the platform said, and the
//! `manual` provider (Slack signing secrets) stages the operator's value and waits for the
//! platform. Real daemons, real HTTP on loopback, fake platforms written here.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use chrono::Utc;
use orchestrator::domain::manifest::fingerprint;
use orchestrator::domain::signature::{Scheme, sign};

use crate::common::{CLI, FilePlatform, TestDaemon, post};

const OLD: &str = "old-signing-secret-0123456789abcdef";

/// A delivery signed with `secret` in `scheme` to `/webhook/{trigger}`; its status.
fn deliver(d: &TestDaemon, trigger: &str, scheme: Scheme, secret: &str) -> u16 {
    let body = format!(r#"{{"type": "event_callback", "at": "{}"}}"#, Utc::now());
    let now = Utc::now();
    let mut h = sign(
        scheme,
        None,
        secret.as_bytes(),
        body.as_bytes(),
        now.timestamp(),
        &format!("d-{}", now.timestamp_nanos_opt().unwrap_or(0)),
    );
    h.push(("Content-Type".into(), "application/json".into()));
    post(
        d.webhook.expect("webhook"),
        &format!("/webhook/{trigger}"),
        &h,
        body.as_bytes(),
    )
    .0
}

/// The keys of a store as `describe -o json` shows them.
fn keys(d: &TestDaemon, store: &str) -> Vec<serde_json::Value> {
    d.cli(&["describe", "secretstore", store, "-o", "json"])
        .json()["keys"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn key_names(d: &TestDaemon, store: &str) -> Vec<String> {
    keys(d, store)
        .iter()
        .filter_map(|k| k["key"].as_str().map(str::to_owned))
        .collect()
}

fn workflow_and_trigger(trigger: &str, store: &str, scheme: &str) -> String {
    format!(
        r#"---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {{name: quick-{trigger}}}
spec:
  steps: [{{id: s, command: "true"}}]
---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {{name: {trigger}}}
spec:
  event:
    source: webhook
    webhook: {{secret: {{fromRef: {store}}}, scheme: {scheme}}}
  action: {{workflow: quick-{trigger}, workspace: default, start: false}}
"#
    )
}

fn write_script(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).expect("script");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The README's example, as written: `set: ./set-secret.sh`, `test: ./send-test.sh`, resolved
/// against the manifest's directory at apply — with the CLI applying from another directory
/// (by a relative path) and the daemon running in `/`. Its stages are printed as they happen.
/// Then a program that cannot start rolls back cleanly.
#[test]
fn the_readme_command_example_runs_beside_its_manifest_from_any_directory() {
    let d = TestDaemon::start_wrapped(&["sh", "-c", "cd / && exec \"$@\"", "sh"], &[]);
    let bundle = d.dir.path().join("bundle");
    let elsewhere = d.dir.path().join("elsewhere");
    std::fs::create_dir_all(&bundle).expect("bundle");
    std::fs::create_dir_all(&elsewhere).expect("elsewhere");
    // The platform keeps its secret in ./platform-secret and delivers when ./ping-requested
    // appears, both beside the manifest: relative paths that work only from there.
    write_script(
        &bundle.join("set-secret.sh"),
        "#!/bin/sh\ncat > ./platform-secret.tmp && mv ./platform-secret.tmp ./platform-secret\n",
    );
    write_script(
        &bundle.join("send-test.sh"),
        "#!/bin/sh\ntouch ./ping-requested\n",
    );
    std::fs::write(bundle.join("platform-secret"), OLD).expect("platform");
    let _platform = FilePlatform::start(
        bundle.join("platform-secret"),
        bundle.join("ping-requested"),
        d.webhook.expect("webhook"),
        "/webhook/custom",
        Scheme::HmacSha256,
    );
    let store = |set: &str| {
        format!(
            r#"{workspace}---
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {{name: hooks}}
spec:
  data: {{signing: "{OLD}"}}
  rotation:
    key: signing
    provider: command
    settings: {{set: "{set}", test: "./send-test.sh", testTimeoutSeconds: 20}}
    graceSeconds: 0
{rest}"#,
            workspace = d.workspace(),
            rest = workflow_and_trigger("custom", "hooks", "hmac-sha256"),
        )
    };
    std::fs::write(bundle.join("hooks.yaml"), store("./set-secret.sh")).expect("manifest");
    d.cli_in(&["apply", "-f", "../bundle/hooks.yaml"], None, &elsewhere)
        .ok();
    let spec = d.cli(&["get", "secretstore", "hooks", "-o", "json"]).json();
    assert_eq!(
        spec["spec"]["rotation"]["settings"]["workingDir"],
        bundle.display().to_string(),
        "{spec:#}"
    );

    let run = d.cli_in(&["secret", "rotate", "hooks"], None, &elsewhere);
    let out = run.ok().to_owned();
    let new = std::fs::read_to_string(bundle.join("platform-secret")).expect("platform");
    assert_ne!(
        new, OLD,
        "the set program did not run in the manifest's directory"
    );
    let lines: Vec<&str> = out.lines().collect();
    for (i, want) in [
        "create: adding a new random value as signing.next",
        "create: signing.next holds the new value",
        "set: running the set program",
        "set: the platform took the new value",
        "test: running the test program",
        "test: waiting up to 20 s for a delivery from outside verified with signing.next",
        "test: a delivery verified with signing.next at ",
        "finish: the old value of signing stays valid for the grace of 0 s",
        "finish: signing is the new value and signing.next is gone",
        "secretstore/hooks key signing rotated with command: ",
    ]
    .iter()
    .enumerate()
    {
        assert!(
            lines.get(i).is_some_and(|l| l.starts_with(want)),
            "line {i} is not {want:?}:\n{out}"
        );
    }
    assert!(out.contains(&fingerprint(&new)), "{out}");
    assert_eq!(keys(&d, "hooks")[0]["fingerprint"], fingerprint(&new));
    assert_eq!(deliver(&d, "custom", Scheme::HmacSha256, &new), 202);
    assert_eq!(deliver(&d, "custom", Scheme::HmacSha256, OLD), 401);
    assert!(!out.contains(&new) && !d.log().contains(&new));

    // A set program that does not exist never started: nothing to set back, no `.next` left.
    std::fs::write(bundle.join("hooks.yaml"), store("./no-such-script.sh")).expect("manifest");
    d.cli_in(&["apply", "-f", "hooks.yaml"], None, &bundle).ok();
    let err = d
        .cli_in(&["secret", "rotate", "hooks"], None, &elsewhere)
        .fails()
        .to_owned();
    assert!(
        err.contains("set: command not found: ./no-such-script.sh: ")
            && err.contains(&format!(
                "{}/no-such-script.sh is not a file",
                bundle.display()
            )),
        "{err}"
    );
    assert!(
        err.contains("the new value was removed and the old one stays valid"),
        "{err}"
    );
    assert_eq!(key_names(&d, "hooks"), ["signing"]);
    assert_eq!(
        keys(&d, "hooks")[0]["fingerprint"],
        fingerprint(OLD),
        "the re-apply put the file's value back"
    );
    assert_eq!(deliver(&d, "custom", Scheme::HmacSha256, OLD), 202);
    // A set program that is not executable never started either.
    std::fs::write(bundle.join("plain.sh"), "#!/bin/sh\ncat > /dev/null\n").expect("plain");
    std::fs::write(bundle.join("hooks.yaml"), store("./plain.sh")).expect("manifest");
    d.cli_in(&["apply", "-f", "hooks.yaml"], None, &bundle).ok();
    let err = d.cli(&["secret", "rotate", "hooks"]).fails().to_owned();
    assert!(err.contains("is not executable"), "{err}");
    assert!(err.contains("the new value was removed"), "{err}");
    assert_eq!(key_names(&d, "hooks"), ["signing"]);
}

/// A rotation whose only "proof" is the daemon's own `webhook test` and an outside dry run never
/// finishes: it times out and rolls back, the old key keeps working. A real delivery from the
/// platform finishes it. A forged own-request header makes nothing a test.
#[test]
fn only_a_delivery_from_outside_proves_a_new_key() {
    let d = TestDaemon::start();
    let dir = d.dir.path();
    let platform = dir.join("platform-secret");
    let ping = dir.join("ping-requested");
    std::fs::write(&platform, OLD).expect("platform");
    let outside = FilePlatform::start(
        platform.clone(),
        ping.clone(),
        d.webhook.expect("webhook"),
        "/webhook/custom",
        Scheme::HmacSha256,
    );
    outside
        .dry_runs
        .store(true, std::sync::atomic::Ordering::Relaxed);
    d.apply(&format!(
        r#"{workspace}---
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {{name: hooks}}
spec:
  data: {{signing: "{OLD}"}}
  rotation:
    key: signing
    provider: command
    settings:
      set: "sh -c 'cat > {platform}'"
      test: "sh -c 'orchestrator webhook test custom --key signing.next && touch {ping}'"
      testTimeoutSeconds: 3
    graceSeconds: 0
{rest}"#,
        workspace = d.workspace(),
        platform = platform.display(),
        ping = ping.display(),
        rest = workflow_and_trigger("custom", "hooks", "hmac-sha256"),
    ));
    let err = d.cli(&["secret", "rotate", "hooks"]).fails().to_owned();
    assert!(
        err.contains("test: no delivery signed with the new value arrived within 3 s"),
        "{err}"
    );
    assert!(
        err.contains("the platform was set back to the old value"),
        "{err}"
    );
    // The outside dry run did reach the server, verified, and was answered as a dry run.
    assert_eq!(*outside.answers.lock().expect("answers"), [200]);
    assert_eq!(std::fs::read_to_string(&platform).expect("platform"), OLD);
    assert_eq!(key_names(&d, "hooks"), ["signing"]);
    assert_eq!(deliver(&d, "custom", Scheme::HmacSha256, OLD), 202);
    let desc = d
        .cli(&["describe", "secretstore", "hooks", "-o", "json"])
        .json();
    assert_eq!(desc["rotations"][0]["stage"], "failed", "{desc:#}");
    assert!(desc["rotations"][0]["verifiedAt"].is_null(), "{desc:#}");

    // The same rotation, with the platform delivering for real: it finishes.
    outside
        .dry_runs
        .store(false, std::sync::atomic::Ordering::Relaxed);
    let out = d.cli(&["secret", "rotate", "hooks"]).ok().to_owned();
    assert!(
        out.contains("secretstore/hooks key signing rotated with command"),
        "{out}"
    );
    let new = std::fs::read_to_string(&platform).expect("platform");
    assert_ne!(new, OLD);
    assert_eq!(deliver(&d, "custom", Scheme::HmacSha256, &new), 202);
    assert_eq!(deliver(&d, "custom", Scheme::HmacSha256, OLD), 401);

    // An outside request cannot pass for the daemon's own: with a made-up token in the header
    // it is an ordinary delivery (202, which a dry run never answers: it answers 200).
    let body = br#"{"forged": true}"#;
    let mut h = sign(Scheme::HmacSha256, None, new.as_bytes(), body, 0, "");
    h.push(("X-Orchestrator-Own-Request".into(), "0".repeat(64)));
    let (status, answer) = post(d.webhook.expect("webhook"), "/webhook/custom", &h, body);
    assert_eq!(status, 202, "{answer}");
    assert!(!answer.contains("verified"), "{answer}");
}

/// Reads the JSON lines of a streaming `secret rotate -o json` until its end line; calls
/// `on_line` with each line as it arrives.
fn rotate_streaming(
    d: &TestDaemon,
    store: &str,
    value: &str,
    mut on_line: impl FnMut(&serde_json::Value),
) -> (Vec<serde_json::Value>, i32, String) {
    let mut child = Command::new(CLI)
        .args([
            "--socket",
            d.socket.to_str().expect("path"),
            "secret",
            "rotate",
            store,
            "--value-from-stdin",
            "-o",
            "json",
        ])
        .env_remove("ORCHESTRATOR_SOCKET")
        .env_remove("ORCHESTRATOR_PROJECT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn orchestrator");
    // The value on stdin, with a trailing newline as `echo` would give it.
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{value}\n").as_bytes())
        .expect("write the value");
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().expect("stdout")).lines() {
        let line = line.expect("a line");
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        on_line(&v);
        lines.push(v);
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    let code = crate::common::wait_child(&mut child, Duration::from_secs(60));
    (lines, code, stderr)
}

/// The `manual` provider (Slack signing secrets): the operator's value is staged beside the old
/// one, the rotation waits for a delivery from Slack verified with it, then retires the old one;
/// without such a delivery it rolls back and the old value stays in force. The stages stream as
/// JSON lines.
#[test]
fn a_manual_rotation_stages_the_operators_value_and_waits_for_the_platform() {
    let d = TestDaemon::start();
    let manual = |name: &str, timeout: u64| {
        format!(
            r#"---
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {{name: {name}}}
spec:
  data: {{slack: "{OLD}"}}
  rotation:
    key: slack
    provider: manual
    settings: {{testTimeoutSeconds: {timeout}}}
    graceSeconds: 1
"#
        )
    };
    d.apply(&format!(
        "{}{}{}{}{}",
        d.workspace(),
        manual("slack-secrets", 30),
        workflow_and_trigger("slack-events", "slack-secrets", "slack"),
        manual("slack-quiet", 2),
        workflow_and_trigger("slack-quiet-events", "slack-quiet", "slack"),
    ));
    let new = "8f742231b10e8888abcd99yyyzzz85a5";
    let mut delivered = None;
    let (lines, code, stderr) = rotate_streaming(&d, "slack-secrets", new, |line| {
        // Slack signs with the regenerated secret; its next event arrives once the rotation
        // waits for it.
        if line["stage"] == "test" && line["event"] == "waiting" {
            delivered = Some(deliver(&d, "slack-events", Scheme::Slack, new));
        }
    });
    assert_eq!(code, 0, "{stderr}\n{lines:#?}");
    assert_eq!(delivered, Some(202), "Slack's delivery during the rotation");
    let seen: Vec<(String, String)> = lines
        .iter()
        .map(|l| {
            (
                l["stage"].as_str().unwrap_or("?").to_owned(),
                l["event"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    let want = [
        ("create", "started"),
        ("create", "done"),
        ("set", "waiting"),
        ("test", "started"),
        ("test", "waiting"),
        ("test", "verified"),
        ("finish", "waiting"),
        ("finish", "done"),
        ("done", "end"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(s, e)| ((*s).to_owned(), (*e).to_owned()))
        .collect();
    assert_eq!(seen, want, "{lines:#?}");
    // The stable shape: camelCase fields, fingerprints only.
    assert_eq!(lines[1]["newFingerprint"], fingerprint(new));
    assert_eq!(lines[4]["timeoutSeconds"], 30);
    assert!(lines[5]["verifiedAt"].is_string());
    assert_eq!(lines[6]["graceSeconds"], 1);
    let end = &lines[8];
    assert_eq!(end["record"]["stage"], "done");
    assert_eq!(end["record"]["provider"], "manual");
    assert_eq!(end["provider"], "manual");
    assert!(lines.iter().all(|l| l["rotation"] == end["record"]["id"]));
    assert_eq!(key_names(&d, "slack-secrets"), ["slack"]);
    assert_eq!(
        keys(&d, "slack-secrets")[0]["fingerprint"],
        fingerprint(new)
    );
    assert_eq!(deliver(&d, "slack-events", Scheme::Slack, new), 202);
    assert_eq!(deliver(&d, "slack-events", Scheme::Slack, OLD), 401);

    // No delivery with the new value within testTimeoutSeconds: rolled back, the old value
    // stays in force, and the record says the platform is the operator's to set.
    let (lines, code, stderr) =
        rotate_streaming(&d, "slack-quiet", "another-regenerated-secret-42", |_| {});
    assert_eq!(code, 1, "{lines:#?}");
    assert!(
        stderr.contains("test: no delivery signed with the new value arrived within 2 s")
            && stderr.contains("provider manual")
            && stderr.contains("the new value was removed and the old one stays valid"),
        "{stderr}"
    );
    let events: Vec<&str> = lines.iter().filter_map(|l| l["event"].as_str()).collect();
    assert!(
        events.ends_with(&["waiting", "failed", "started", "end"]),
        "{lines:#?}"
    );
    assert_eq!(lines.last().expect("end")["stage"], "failed");
    assert_eq!(key_names(&d, "slack-quiet"), ["slack"]);
    assert_eq!(keys(&d, "slack-quiet")[0]["fingerprint"], fingerprint(OLD));
    assert_eq!(deliver(&d, "slack-quiet-events", Scheme::Slack, OLD), 202);
    assert_eq!(
        deliver(
            &d,
            "slack-quiet-events",
            Scheme::Slack,
            "another-regenerated-secret-42"
        ),
        401
    );

    // The value comes from stdin, and only for the manual provider.
    let err = d
        .cli(&["secret", "rotate", "slack-quiet"])
        .fails()
        .to_owned();
    assert!(
        err.contains("rotated by hand (provider manual): give the new value on stdin"),
        "{err}"
    );
    let err = d
        .cli_stdin(
            &["secret", "rotate", "slack-quiet", "--value-from-stdin"],
            &format!("{OLD}\n"),
        )
        .fails()
        .to_owned();
    assert!(err.contains("is the one in force already"), "{err}");
    let log = d.log();
    for secret in [new, OLD, "another-regenerated-secret-42"] {
        assert!(!log.contains(secret), "a secret value is in the daemon log");
        assert!(
            lines.iter().all(|l| !l.to_string().contains(secret)),
            "a secret value is in the progress"
        );
    }
}

/// A fake GitHub API on loopback that answers every request with `status` and `body`.
fn fake_github(status: u16, body: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let addr = listener.local_addr().expect("addr");
    std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(120);
        while std::time::Instant::now() < deadline {
            let mut stream = match listener.accept() {
                Ok((s, _)) => s,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            };
            let _ = stream.set_nonblocking(false);
            let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut length = 0usize;
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut req = vec![0; length];
            let _ = reader.read_exact(&mut req);
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// Provider errors name the host, the status and GitHub's own message; a lost connection names
/// the host and the cause, not just "error sending request".
#[test]
fn github_errors_say_what_the_platform_said() {
    let d = TestDaemon::start();
    let refusing = fake_github(401, r#"{"message": "Bad credentials", "status": "401"}"#);
    // A port nothing listens on.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    let store = |name: &str, api: SocketAddr| {
        format!(
            r#"---
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {{name: {name}}}
spec:
  data: {{github: "{OLD}"}}
  rotation:
    key: github
    provider: github
    settings: {{repository: acme/api, hookId: 42, apiUrl: "http://{api}"}}
    credentials: {{fromRef: github-api, key: token}}
"#
        )
    };
    d.apply(&format!(
        "{}{}{}---\napiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {{name: github-api}}\nspec: {{data: {{token: \"ghp_not_a_real_token_123456\"}}}}\n",
        d.workspace(),
        store("refused", refusing),
        store("unreachable", closed),
    ));
    let err = d.cli(&["secret", "rotate", "refused"]).fails().to_owned();
    assert!(
        err.contains(&format!(
            "set: github answered 401 Unauthorized to PATCH http://{refusing}/repos/acme/api/hooks/42/config: Bad credentials"
        )),
        "{err}"
    );
    assert!(err.contains("the old one stays valid"), "{err}");
    assert_eq!(key_names(&d, "refused"), ["github"]);

    let err = d
        .cli(&["secret", "rotate", "unreachable"])
        .fails()
        .to_owned();
    assert!(
        err.contains(&format!(
            "set: github: no answer from {closed} to PATCH http://{closed}/repos/acme/api/hooks/42/config: "
        )),
        "{err}"
    );
    assert!(err.to_lowercase().contains("connection refused"), "{err}");
    assert!(!err.contains("for url ("), "{err}");
    assert_eq!(key_names(&d, "unreachable"), ["github"]);
    assert!(!err.contains("ghp_not_a_real_token_123456"));

    // Only the manual provider takes the operator's value.
    let err = d
        .cli_stdin(
            &["secret", "rotate", "refused", "--value-from-stdin"],
            "a-value-of-my-own-123\n",
        )
        .fails()
        .to_owned();
    assert!(
        err.contains("provider github makes the new value itself: leave out --value-from-stdin"),
        "{err}"
    );
}
