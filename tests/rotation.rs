//! Secret rotation end to end (issue: rotation): the bundled weekly rotation against a fake GitHub
//! API on loopback. The fake keeps the repository webhook's secret, checks the token, and on a
//! ping request delivers a real signed `ping` event to the daemon's webhook URL, as GitHub does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use orchestrator::domain::manifest::fingerprint;
use orchestrator::domain::signature::{Scheme, sign};

use crate::common::{FilePlatform, TestDaemon, eventually, manifests_dir, post};

pub(crate) const OLD: &str = "old-github-webhook-secret-0123456789";
const TOKEN: &str = "ghp_faketoken_abcdefghijklmnopqrstuvwxyz";

/// The fake GitHub API.
pub(crate) struct FakeGithub {
    addr: SocketAddr,
    state: Arc<Mutex<Hook>>,
    fail_set: Arc<AtomicBool>,
    pub(crate) drop_pings: Arc<AtomicBool>,
    pings: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

struct Hook {
    secret: String,
    /// Where pings are delivered: the daemon's webhook address and path.
    deliver_to: Option<(SocketAddr, String)>,
}

impl FakeGithub {
    pub(crate) fn start() -> FakeGithub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fake github");
        listener.set_nonblocking(true).expect("nonblocking");
        let fake = FakeGithub {
            addr: listener.local_addr().expect("addr"),
            state: Arc::new(Mutex::new(Hook {
                secret: OLD.into(),
                deliver_to: None,
            })),
            fail_set: Arc::new(AtomicBool::new(false)),
            drop_pings: Arc::new(AtomicBool::new(false)),
            pings: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
        };
        let (state, fail, drop_pings, pings, stop) = (
            fake.state.clone(),
            fake.fail_set.clone(),
            fake.drop_pings.clone(),
            fake.pings.clone(),
            fake.stop.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (state, fail, drop_pings, pings) = (
                            state.clone(),
                            fail.clone(),
                            drop_pings.clone(),
                            pings.clone(),
                        );
                        std::thread::spawn(move || {
                            serve(stream, &state, &fail, &drop_pings, &pings)
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        fake
    }

    pub(crate) fn secret(&self) -> String {
        self.state.lock().expect("lock").secret.clone()
    }

    pub(crate) fn deliver_to(&self, addr: SocketAddr, path: &str) {
        self.state.lock().expect("lock").deliver_to = Some((addr, path.to_owned()));
    }
}

impl Drop for FakeGithub {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Handles one request on a connection, then closes it.
fn serve(
    stream: TcpStream,
    state: &Mutex<Hook>,
    fail: &AtomicBool,
    drop_pings: &AtomicBool,
    pings: &AtomicU64,
) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_owned(),
        parts.next().unwrap_or("").to_owned(),
    );
    let (mut length, mut auth) = (0usize, String::new());
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h == "\r\n" || h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("authorization:") {
            auth = h["authorization:".len()..].trim().to_owned();
        }
    }
    let mut body = vec![0; length];
    let _ = reader.read_exact(&mut body);
    let (status, reply) = if auth != format!("Bearer {TOKEN}") {
        (401, r#"{"message": "Bad credentials"}"#.to_owned())
    } else if method == "PATCH" && path == "/repos/acme/api/hooks/42/config" {
        if fail.load(Ordering::Relaxed) {
            (500, r#"{"message": "Server Error"}"#.to_owned())
        } else {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            match v["secret"].as_str() {
                Some(s) => {
                    state.lock().expect("lock").secret = s.to_owned();
                    (
                        200,
                        r#"{"content_type": "json", "insecure_ssl": "0"}"#.to_owned(),
                    )
                }
                None => (422, r#"{"message": "Validation Failed"}"#.to_owned()),
            }
        }
    } else if method == "POST" && path == "/repos/acme/api/hooks/42/pings" {
        pings.fetch_add(1, Ordering::Relaxed);
        if !drop_pings.load(Ordering::Relaxed) {
            let (secret, target) = {
                let s = state.lock().expect("lock");
                (s.secret.clone(), s.deliver_to.clone())
            };
            if let Some((addr, hook_path)) = target {
                std::thread::spawn(move || {
                    let body = r#"{"zen": "Design for failure.", "hook_id": 42, "hook": {"type": "Repository", "id": 42}}"#;
                    let mut h = sign(
                        Scheme::Github,
                        None,
                        secret.as_bytes(),
                        body.as_bytes(),
                        0,
                        &format!("ping-{}", Utc::now().timestamp_nanos_opt().unwrap_or(0)),
                    );
                    h.push(("X-GitHub-Event".into(), "ping".into()));
                    h.push(("Content-Type".into(), "application/json".into()));
                    let _ = post(addr, &hook_path, &h, body.as_bytes());
                });
            }
        }
        (204, String::new())
    } else {
        (404, r#"{"message": "Not Found"}"#.to_owned())
    };
    let mut out = stream;
    let _ = write!(
        out,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    );
}

/// The bundle applied, with its stores pointed at the fake and a zero grace period.
pub(crate) fn setup(d: &TestDaemon, fake: &FakeGithub, test_timeout: u64) {
    let bundle = manifests_dir().join("secret-rotation");
    d.cli(&["apply", "-f", bundle.to_str().expect("path")]).ok();
    d.apply(&format!(
        r#"apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {{name: webhook-secrets}}
spec:
  data: {{github: "{OLD}"}}
  rotation:
    key: github
    provider: github
    settings: {{repository: acme/api, hookId: 42, apiUrl: "http://{}", testTimeoutSeconds: {test_timeout}}}
    credentials: {{fromRef: github-api, key: token}}
    graceSeconds: 0
---
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {{name: github-api}}
spec: {{data: {{token: "{TOKEN}"}}}}
"#,
        fake.addr
    ));
    fake.deliver_to(d.webhook.expect("webhook"), "/webhook/github-events");
}

/// A delivery to the bundle's GitHub trigger, signed with `secret`; answers the status.
pub(crate) fn deliver(d: &TestDaemon, secret: &str, n: u64) -> u16 {
    let body = format!(r#"{{"ref": "refs/heads/main", "n": {n}}}"#);
    let h = sign(
        Scheme::Github,
        None,
        secret.as_bytes(),
        body.as_bytes(),
        0,
        &format!("t-{n}-{}", Utc::now().timestamp_nanos_opt().unwrap_or(0)),
    );
    post(
        d.webhook.expect("webhook"),
        "/webhook/github-events",
        &h,
        body.as_bytes(),
    )
    .0
}

/// Posts deliveries signed with whatever secret the fake platform holds, until stopped; returns
/// the statuses that were not 202.
fn traffic(d: &TestDaemon, fake: &FakeGithub, stop: &AtomicBool) -> (u64, Vec<u16>) {
    let (mut sent, mut bad) = (0, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        let secret = fake.secret();
        let status = deliver(d, &secret, sent);
        // A delivery signed just before the platform switched can race the switch itself;
        // what matters is that the secret the platform holds always verifies.
        if status != 202 && fake.secret() == secret {
            bad.push(status);
        }
        sent += 1;
    }
    (sent, bad)
}

fn store_keys(d: &TestDaemon) -> Vec<serde_json::Value> {
    d.cli(&["describe", "secretstore", "webhook-secrets", "-o", "json"])
        .json()["keys"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn wait_task(d: &TestDaemon, id: &str) -> serde_json::Value {
    eventually(Duration::from_secs(60), "the rotation task", || {
        let t = d.cli(&["task", "show", id, "-o", "json"]).json();
        let s = t["task"]["state"].as_str().unwrap_or("").to_owned();
        (s != "running" && s != "pending").then_some(t)
    })
}

fn assert_no_secret(d: &TestDaemon, texts: &[String], new: &str) {
    let log = d.log();
    for (what, text) in texts
        .iter()
        .map(|t| ("output", t))
        .chain([("daemon log", &log)])
    {
        for secret in [OLD, new, TOKEN] {
            assert!(!text.contains(secret), "a secret value is in the {what}");
        }
    }
}

#[test]
fn the_weekly_rotation_rotates_under_traffic_without_a_single_refusal() {
    let d = TestDaemon::start();
    let fake = FakeGithub::start();
    setup(&d, &fake, 10);
    assert_eq!(deliver(&d, OLD, 0), 202);

    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let (task, (sent, bad)) = std::thread::scope(|s| {
        let sender = s.spawn(|| traffic(&d, &fake, &stop));
        let id = d
            .cli(&["trigger", "fire", "weekly-secret-rotation"])
            .ok()
            .trim()
            .to_owned();
        let task = wait_task(&d, &id);
        stop.store(true, Ordering::Relaxed);
        (task, sender.join().expect("sender"))
    });
    eprintln!(
        "rotation task took {:.2} s; {sent} deliveries during it",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(task["task"]["state"], "succeeded", "{task:#}");
    assert!(sent > 10, "too little traffic to prove anything: {sent}");
    assert!(
        bad.is_empty(),
        "deliveries refused during the rotation: {bad:?}"
    );

    // The report is in the task log.
    let id = task["task"]["id"].to_string();
    let logs = d.cli(&["task", "logs", &id]).ok().to_owned();
    assert!(
        logs.contains("rotated:   secretstore/webhook-secrets key github rotated with github"),
        "{logs}"
    );
    assert!(
        logs.contains("unchanged: secretstore/github-api (no rotation block)"),
        "{logs}"
    );
    assert!(logs.contains("1 rotated, 1 unchanged, 0 failed"), "{logs}");
    // The report holds the stages `secret rotate` printed, before the outcome.
    let stage = logs
        .find("           create: ")
        .expect("the create stage in the log");
    let outcome = logs.find("rotated:   ").expect("the outcome");
    assert!(stage < outcome, "{logs}");

    // The platform and the store agree on the new key; the old one is refused, the new accepted.
    let new = fake.secret();
    assert_ne!(new, OLD);
    let keys = store_keys(&d);
    assert_eq!(keys.len(), 1, "{keys:#?}");
    assert_eq!(keys[0]["key"], "github");
    assert_eq!(keys[0]["fingerprint"], fingerprint(&new));
    assert_eq!(deliver(&d, OLD, 1_000_000), 401);
    assert_eq!(deliver(&d, &new, 1_000_001), 202);
    let desc = d
        .cli(&["describe", "secretstore", "webhook-secrets"])
        .ok()
        .to_owned();
    assert!(desc.contains("via github: done"), "{desc}");

    // `webhook test` signs with a named key through the daemon's own server.
    let t = d
        .cli(&["webhook", "test", "github-events", "--key", "github"])
        .ok()
        .to_owned();
    assert!(t.contains("verifies (matched key \"github\")"), "{t}");

    assert_no_secret(
        &d,
        &[
            logs,
            desc,
            d.cli(&["describe", "secretstore", "webhook-secrets", "-o", "json"])
                .stdout,
        ],
        &new,
    );
}

#[test]
fn a_short_schedule_runs_the_rotation_workflow() {
    let d = TestDaemon::start();
    let fake = FakeGithub::start();
    setup(&d, &fake, 10);
    d.apply(
        "apiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {name: weekly-secret-rotation}\nspec:\n  cron: {schedule: \"*/2 * * * * *\"}\n  action: {workflow: secret-rotation, workspace: default}\n",
    );
    let task = eventually(Duration::from_secs(30), "a scheduled rotation task", || {
        let v = d
            .cli(&[
                "task",
                "list",
                "--trigger",
                "weekly-secret-rotation",
                "-o",
                "json",
            ])
            .json();
        v["tasks"].as_array().and_then(|t| t.last().cloned())
    });
    d.cli(&["trigger", "suspend", "weekly-secret-rotation"])
        .ok();
    let t = wait_task(&d, &task["id"].to_string());
    assert_eq!(t["task"]["state"], "succeeded", "{t:#}");
    assert!(t["task"]["scheduledAt"].is_string());
    let new = fake.secret();
    assert_ne!(new, OLD);
    assert_eq!(store_keys(&d)[0]["fingerprint"], fingerprint(&new));
    assert_eq!(deliver(&d, &new, 1), 202);
}

#[test]
fn a_platform_error_or_a_missing_ping_rolls_back_and_keeps_the_old_key() {
    let d = TestDaemon::start();
    let fake = FakeGithub::start();
    setup(&d, &fake, 2);

    // The platform answers 500 on set.
    fake.fail_set.store(true, Ordering::Relaxed);
    let run = d.cli(&["secret", "rotate", "webhook-secrets"]);
    let err = run.fails();
    assert!(
        err.contains("failed (failed): set: github answered 500"),
        "{err}"
    );
    assert!(err.contains("the old one stays valid"), "{err}");
    assert_eq!(fake.secret(), OLD);
    assert_eq!(store_keys(&d).len(), 1);
    assert_eq!(deliver(&d, OLD, 1), 202);
    // Through the workflow: the task fails with the reason in its log.
    let id = d
        .cli(&["trigger", "fire", "weekly-secret-rotation"])
        .ok()
        .trim()
        .to_owned();
    let t = wait_task(&d, &id);
    assert_eq!(t["task"]["state"], "failed");
    assert!(
        t["task"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("exit code 1"),
        "{t:#}"
    );
    let logs = d.cli(&["task", "logs", &id]).ok().to_owned();
    assert!(
        logs.contains("failed:    rotation of secretstore/webhook-secrets key github failed"),
        "{logs}"
    );
    assert!(logs.contains("github answered 500"), "{logs}");
    fake.fail_set.store(false, Ordering::Relaxed);

    // The ping never arrives: the platform is set back and the old key stays.
    fake.drop_pings.store(true, Ordering::Relaxed);
    let run = d.cli(&["secret", "rotate", "webhook-secrets"]);
    let err = run.fails();
    assert!(
        err.contains("test: no delivery signed with the new value arrived within 2 s"),
        "{err}"
    );
    assert!(
        err.contains("the platform was set back to the old value"),
        "{err}"
    );
    assert_eq!(fake.secret(), OLD);
    assert_eq!(store_keys(&d).len(), 1);
    assert_eq!(deliver(&d, OLD, 2), 202);
    assert!(fake.pings.load(Ordering::Relaxed) >= 1);
    let desc = d
        .cli(&["describe", "secretstore", "webhook-secrets"])
        .ok()
        .to_owned();
    assert_eq!(desc.matches("via github: failed").count(), 3, "{desc}");
    assert_no_secret(&d, &[err.to_owned(), logs, desc], "never-created");
}

#[test]
fn a_daemon_killed_mid_rotation_resumes_it_and_both_invariants_hold() {
    let mut d = TestDaemon::start();
    let fake = FakeGithub::start();
    setup(&d, &fake, 30);
    fake.drop_pings.store(true, Ordering::Relaxed);
    let socket = d.socket.clone();
    let rotate = std::thread::spawn(move || {
        std::process::Command::new(crate::common::CLI)
            .args([
                "--socket",
                socket.to_str().expect("path"),
                "secret",
                "rotate",
                "webhook-secrets",
            ])
            .output()
    });
    // Wait until the platform holds the new value and the rotation waits for its ping.
    eventually(Duration::from_secs(20), "the test stage", || {
        let desc = d
            .cli(&["describe", "secretstore", "webhook-secrets", "-o", "json"])
            .json();
        (desc["rotations"][0]["stage"] == "test" && fake.secret() != OLD).then_some(())
    });
    let new = fake.secret();
    // Both keys verify at this point: the old one and the platform's new one.
    assert_eq!(deliver(&d, OLD, 1), 202);
    assert_eq!(deliver(&d, &new, 2), 202);
    d.kill9();
    let _ = rotate.join();
    fake.drop_pings.store(false, Ordering::Relaxed);
    d.spawn();
    fake.deliver_to(d.webhook.expect("webhook"), "/webhook/github-events");
    // The rotation resumes from its test stage and finishes.
    let done = eventually(Duration::from_secs(30), "the resumed rotation", || {
        let desc = d
            .cli(&["describe", "secretstore", "webhook-secrets", "-o", "json"])
            .json();
        (desc["rotations"][0]["stage"] == "done").then_some(desc)
    });
    assert_eq!(done["rotations"][0]["newFingerprint"], fingerprint(&new));
    assert_eq!(store_keys(&d).len(), 1);
    assert_eq!(store_keys(&d)[0]["fingerprint"], fingerprint(&new));
    assert_eq!(deliver(&d, &new, 3), 202);
    assert_eq!(deliver(&d, OLD, 4), 401);
    assert!(d.log().contains("resuming an interrupted rotation"));
}

#[test]
fn secret_set_and_unset_patch_one_key() {
    let d = TestDaemon::start();
    let fake = FakeGithub::start();
    setup(&d, &fake, 10);
    let out = d
        .cli_stdin(
            &["secret", "set", "webhook-secrets", "extra"],
            "extra-value-123\n",
        )
        .ok()
        .to_owned();
    assert!(
        out.contains("secretstore/webhook-secrets configured"),
        "{out}"
    );
    let keys = store_keys(&d);
    let names: Vec<&str> = keys.iter().filter_map(|k| k["key"].as_str()).collect();
    assert_eq!(names, ["extra", "github"]);
    assert_eq!(
        keys[0]["fingerprint"],
        fingerprint("extra-value-123"),
        "the trailing newline was kept"
    );
    assert_eq!(
        deliver(&d, "extra-value-123", 1),
        202,
        "the new key verifies at once"
    );
    let file = d.write("value.txt", "from-a-file-456");
    d.cli(&[
        "secret",
        "set",
        "webhook-secrets",
        "extra",
        "--from-file",
        file.to_str().expect("path"),
    ])
    .ok();
    assert_eq!(
        store_keys(&d)[0]["fingerprint"],
        fingerprint("from-a-file-456")
    );
    assert!(
        d.cli(&["secret", "unset", "webhook-secrets", "extra"])
            .ok()
            .contains("configured")
    );
    assert_eq!(store_keys(&d).len(), 1);
    assert_eq!(deliver(&d, "from-a-file-456", 2), 401);
    let run = d.cli(&["secret", "unset", "webhook-secrets", "nope"]);
    assert!(
        run.fails().contains("has no key \"nope\""),
        "{}",
        run.stderr
    );
    let run = d.cli_stdin(&["secret", "set", "webhook-secrets", "x"], "");
    assert!(run.fails().contains("the value is empty"), "{}", run.stderr);
    // History records fingerprints, never values.
    let desc = d
        .cli(&["describe", "secretstore", "webhook-secrets", "-o", "json"])
        .stdout;
    assert!(
        desc.contains("\"removed\": [\n") || desc.contains("removed"),
        "{desc}"
    );
    for v in ["extra-value-123", "from-a-file-456", OLD] {
        assert!(!desc.contains(v));
    }
}

#[test]
fn the_command_provider_plugs_in_any_platform() {
    let d = TestDaemon::start();
    let platform = d.dir.path().join("platform-secret");
    let ping = d.dir.path().join("ping-requested");
    std::fs::write(&platform, OLD).expect("platform");
    // The test program asks the platform for a delivery; the platform sends it from outside.
    let _platform = FilePlatform::start(
        platform.clone(),
        ping.clone(),
        d.webhook.expect("webhook"),
        "/webhook/custom",
        Scheme::HmacSha256,
    );
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
  data: {{signing: "{OLD}"}}
  rotation:
    key: signing
    provider: command
    settings:
      set: "sh -c 'cat > {platform}'"
      test: "touch {ping}"
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
        ping = ping.display(),
    ));
    let out = d.cli(&["secret", "rotate", "hooks"]).ok().to_owned();
    assert!(
        out.contains("secretstore/hooks key signing rotated with command"),
        "{out}"
    );
    let new = std::fs::read_to_string(&platform).expect("platform secret");
    assert_ne!(new, OLD);
    let desc = d
        .cli(&["describe", "secretstore", "hooks", "-o", "json"])
        .json();
    assert_eq!(desc["keys"][0]["fingerprint"], fingerprint(&new));
    let sig = |secret: &str| sign(Scheme::HmacSha256, None, secret.as_bytes(), b"{}", 0, "");
    let a = d.webhook.expect("webhook");
    assert_eq!(post(a, "/webhook/custom", &sig(&new), b"{}").0, 202);
    assert_eq!(post(a, "/webhook/custom", &sig(OLD), b"{}").0, 401);
    // A failing set program is reported with its (redacted) stderr and rolled back.
    d.apply(&format!(
        "apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {{name: hooks}}\nspec:\n  data: {{signing: \"{new}\"}}\n  rotation:\n    key: signing\n    provider: command\n    settings: {{set: \"sh -c 'echo refused >&2; cat >&2; exit 4'\"}}\n"
    ));
    let err = d.cli(&["secret", "rotate", "hooks"]).fails().to_owned();
    assert!(
        err.contains("exited with exit status: 4") && err.contains("refused"),
        "{err}"
    );
    assert!(err.contains("[REDACTED]") && !err.contains(&new), "{err}");
    // A failing program may have taken the value: both values stay valid.
    assert!(err.contains("so both values stay valid"), "{err}");
    assert_eq!(post(a, "/webhook/custom", &sig(&new), b"{}").0, 202);
}

/// Every file under `dir`, recursively, with its bytes.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("read dir").flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => todo.push(path),
                Ok(t) if t.is_file() => {
                    // A file can go between listing and reading (a WAL checkpoint).
                    if let Ok(bytes) = std::fs::read(&path) {
                        out.push((path, bytes));
                    }
                }
                _ => {}
            }
        }
    }
    out
}

/// Issue 12, row 3: values that become secrets while an agent runs are redacted from its output.
/// The agent starts a rotation of the store it was given the old value from, prints the new
/// value while it is `signing.next` (the rotation waits in its test stage until it has), then —
/// after the rotation removed the old value — sets a value of its own with `secret set`, applies
/// another with `apply -f`, and prints all of them, one cut across two writes. `task logs`, the
/// next step's `{prev_stdout}` and every byte under the data dir show none of them.
#[test]
fn values_that_become_secrets_while_an_agent_runs_never_reach_the_data_dir() {
    let d = TestDaemon::start();
    let dir = d.dir.path();
    let platform = dir.join("platform-secret");
    let ping = dir.join("ping-requested");
    let _platform = FilePlatform::start(
        platform.clone(),
        ping.clone(),
        d.webhook.expect("webhook"),
        "/webhook/custom",
        Scheme::HmacSha256,
    );
    let printed = dir.join("printed");
    let own = dir.join("own-value");
    let half = "?".repeat(32);
    d.apply(&format!(
        r#"{workspace}
---
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {{name: hooks}}
spec:
  data: {{signing: "{OLD}"}}
  rotation:
    key: signing
    provider: command
    settings:
      set: "sh -c 'cat > {platform}.tmp && mv {platform}.tmp {platform}'"
      test: "sh -c 'while [ ! -e {printed} ]; do sleep 0.02; done; touch {ping}'"
      testTimeoutSeconds: 30
---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {{name: custom}}
spec:
  event:
    source: webhook
    webhook: {{secret: {{fromRef: hooks, keys: [signing]}}, scheme: hmac-sha256}}
  action: {{workflow: rotate-and-print, workspace: default, start: false}}
---
apiVersion: orchestrator.dev/v2
kind: StepTemplate
metadata: {{name: say}}
spec: {{prompt: "{{goal}}"}}
---
apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {{name: rotator}}
spec:
  command: >-
    sh -c 'echo "old at start: $SIGNING";
    orchestrator secret rotate hooks > /dev/null & rotation=$!;
    while [ ! -s {platform} ]; do sleep 0.02; done; new=$(cat {platform});
    echo "while next: $new"; touch {printed};
    wait $rotation || exit 3;
    od -An -N16 -tx1 /dev/urandom | tr -d " \n" > {own};
    orchestrator secret set hooks own < {own} || exit 4; own=$(cat {own});
    printf "apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {{name: applied}}\nspec: {{data: {{k: \"%s-applied\"}}}}\n" "$own"
    | orchestrator apply -f - > /dev/null || exit 5;
    echo "old=$SIGNING new=$new own=$own applied=$own-applied";
    printf %.32s "$new"; sleep 0.2; printf "%s\n" "${{new#{half}}}"; echo {{prompt}}'
  capabilities: [rotate]
  env: [{{name: SIGNING, refValue: {{name: hooks, key: signing}}}}]
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {{name: rotate-and-print}}
spec:
  steps:
    - {{id: rotate, template: say, required_capability: rotate, timeout_secs: 60}}
    - {{id: again, command: "printf %s {{prev_stdout}}"}}
"#,
        workspace = d.workspace(),
        platform = platform.display(),
        printed = printed.display(),
        own = own.display(),
        ping = ping.display(),
    ));
    let id = d
        .cli(&[
            "task",
            "create",
            "--workflow",
            "rotate-and-print",
            "--goal",
            "done",
        ])
        .ok()
        .trim()
        .to_owned();
    let task = eventually(Duration::from_secs(90), "the task to finish", || {
        let t = d.cli(&["task", "show", &id, "-o", "json"]).json();
        let state = t["task"]["state"].as_str().unwrap_or("").to_owned();
        matches!(state.as_str(), "succeeded" | "failed" | "cancelled").then_some(t)
    });
    let logs = d.cli(&["task", "logs", &id]).ok().to_owned();
    assert_eq!(task["task"]["state"], "succeeded", "{task:#}\n{logs}");

    // The rotation really happened: the new value replaced the old one.
    let new = std::fs::read_to_string(&platform).expect("the new value at the platform");
    let own = std::fs::read_to_string(&own).expect("the agent's own value");
    let applied = format!("{own}-applied");
    assert_eq!(new.len(), 64, "a generated value");
    let desc = d
        .cli(&["describe", "secretstore", "hooks", "-o", "json"])
        .json();
    let keys: Vec<_> = desc["keys"].as_array().expect("keys").iter().collect();
    assert!(
        keys.iter()
            .any(|k| k["key"] == "signing" && k["fingerprint"] == fingerprint(&new)),
        "{desc:#}"
    );
    assert!(!keys.iter().any(|k| k["key"] == "signing.next"), "{desc:#}");

    for line in [
        "out old at start: [REDACTED]",
        "out while next: [REDACTED]",
        "out old=[REDACTED] new=[REDACTED] own=[REDACTED] applied=[REDACTED]",
        "out [REDACTED]",
    ] {
        assert!(
            logs.lines().filter(|l| l.ends_with(line)).count() >= 1,
            "{line:?} missing from task logs:\n{logs}"
        );
    }
    let values = [
        OLD,
        new.as_str(),
        &new[..32],
        &new[32..],
        own.as_str(),
        applied.as_str(),
    ];
    for shown in [&logs, &d.cli(&["task", "show", &id, "-o", "json"]).stdout] {
        for v in values {
            assert!(!shown.contains(v), "a secret is shown:\n{shown}");
        }
    }
    let files = files_under(&d.data_dir);
    assert!(
        files
            .iter()
            .any(|(p, _)| p.to_string_lossy().ends_with("state.db-wal")),
        "the scan must see the WAL"
    );
    for (path, bytes) in &files {
        for v in values {
            assert!(
                !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
                "a secret in plain text in {}",
                path.display()
            );
        }
    }
}
