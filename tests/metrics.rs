//! Prometheus metrics end to end (issue 18): a real daemon's admin listener scraped over real
//! HTTP and read with a Prometheus text parser (`prometheus-parse`, not our own encoder's
//! view). Counters move as signed webhooks are accepted and refused, as a cron trigger fires and
//! as tasks finish; no label holds a secret value, a task id or a delivery id; `--admin-bind
//! none` serves nothing, and a bad `--admin-bind` is refused plainly.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::Duration;

use orchestrator::domain::signature::Scheme;

use crate::common::{DAEMON, TestDaemon, eventually, post};
use crate::webhooks::signed;

const SECRET: &str = "metrics-signing-secret-value-4d2c9";
const DELIVERY: &str = "delivery-0f6b1e2a-metrics";

/// `GET path` on `addr`: status, the Content-Type header and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connect to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("write request");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read answer");
    let (head, body) = out.split_once("\r\n\r\n").expect("a head");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let content_type = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-type")
                .then(|| v.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// One scrape of `d`'s admin listener, parsed.
fn scrape(d: &TestDaemon) -> (String, prometheus_parse::Scrape) {
    let (status, content_type, body) = get(d.admin.expect("admin address"), "/metrics");
    assert_eq!(status, 200, "{body}");
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let parsed = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned())))
        .expect("a Prometheus text scrape");
    (body, parsed)
}

/// The value of the sample `metric` whose labels include `labels` (a histogram: its count).
fn value(s: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .and_then(|x| match &x.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) => Some(*v),
            prometheus_parse::Value::Histogram(h) => h.iter().map(|b| b.count).reduce(f64::max),
            _ => None,
        })
}

fn setup(d: &TestDaemon) {
    d.apply(&format!(
        r#"{}
---
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {{name: hooks}}
spec: {{data: {{current: "{SECRET}"}}}}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {{name: quick}}
spec:
  max_parallel: 50
  steps: [{{id: only, command: "true"}}]
---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {{name: gh}}
spec:
  event:
    source: webhook
    webhook: {{secret: {{fromRef: hooks}}, scheme: github}}
  action: {{workflow: quick, workspace: default}}
  concurrencyPolicy: Allow
---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {{name: pushes}}
spec:
  event:
    source: webhook
    webhook: {{secret: {{fromRef: hooks}}, scheme: github}}
    filter: {{condition: "payload.action == 'push'"}}
  action: {{workflow: quick, workspace: default}}
---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {{name: every-second}}
spec:
  cron: {{schedule: "* * * * * *"}}
  action: {{workflow: quick, workspace: default}}
  concurrencyPolicy: Allow
"#,
        d.workspace()
    ));
}

#[test]
fn counters_move_with_deliveries_fires_and_tasks() {
    let d = TestDaemon::start();
    setup(&d);
    let hook = d.webhook.expect("webhook address");
    let (_, before) = scrape(&d);
    let requests = "orchestrator_webhook_requests_total";
    let gh = |outcome| {
        [
            ("trigger", "gh"),
            ("scheme", "github"),
            ("outcome", outcome),
        ]
    };
    assert_eq!(value(&before, requests, &gh("accepted")), None);
    assert_eq!(
        value(
            &before,
            "orchestrator_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );

    let body = r#"{"action": "opened"}"#;
    let accepted = post(
        hook,
        "/webhook/gh",
        &signed(Scheme::Github, SECRET, body, DELIVERY),
        body.as_bytes(),
    );
    assert_eq!(accepted.0, 202, "{}", accepted.1);
    let task: serde_json::Value = serde_json::from_str(&accepted.1).expect("json");
    let task = task["task"].as_u64().expect("a task id");
    d.finished_task(task);
    let duplicate = post(
        hook,
        "/webhook/gh",
        &signed(Scheme::Github, SECRET, body, DELIVERY),
        body.as_bytes(),
    );
    assert!(duplicate.1.contains("duplicate"), "{}", duplicate.1);
    let forged = post(
        hook,
        "/webhook/gh",
        &signed(Scheme::Github, "not-the-secret", body, "delivery-forged"),
        body.as_bytes(),
    );
    assert_eq!(forged.0, 401);
    let filtered = post(
        hook,
        "/webhook/pushes",
        &signed(Scheme::Github, SECRET, body, "delivery-filtered"),
        body.as_bytes(),
    );
    assert!(filtered.1.contains("filtered"), "{}", filtered.1);
    let nowhere = post(hook, "/webhook/no-such-trigger", &[], b"{}");
    assert_eq!(nowhere.0, 404);

    // The cron trigger fires and its tasks finish.
    let (text, s) = eventually(
        Duration::from_secs(30),
        "a cron fire's task to finish",
        || {
            let (text, s) = scrape(&d);
            let fired = value(
                &s,
                "orchestrator_cron_fires_total",
                &[("trigger", "every-second")],
            )?;
            let finished = value(
                &s,
                "orchestrator_tasks_finished_total",
                &[("workflow", "quick"), ("state", "succeeded")],
            )?;
            (fired >= 1.0 && finished >= 2.0).then_some((text, s))
        },
    );
    for (outcome, n) in [("accepted", 1.0), ("duplicate", 1.0), ("unauthorized", 1.0)] {
        assert_eq!(value(&s, requests, &gh(outcome)), Some(n), "{outcome}");
    }
    assert_eq!(
        value(
            &s,
            requests,
            &[("trigger", "pushes"), ("outcome", "filtered")]
        ),
        Some(1.0)
    );
    assert_eq!(
        value(
            &s,
            requests,
            &[
                ("trigger", ""),
                ("scheme", "none"),
                ("outcome", "client_error")
            ]
        ),
        Some(1.0),
        "a path that names no trigger is counted without one"
    );
    // The accepted delivery and its duplicate verified with the key named `current`; the
    // forged one did not.
    assert_eq!(
        value(
            &s,
            "orchestrator_webhook_verifications_total",
            &[("trigger", "gh"), ("key", "current")]
        ),
        Some(2.0)
    );
    let at_least_one = [
        (
            "orchestrator_webhook_verification_duration_seconds",
            &[("scheme", "github")][..],
        ),
        ("orchestrator_cron_fire_lateness_seconds", &[]),
        (
            "orchestrator_step_duration_seconds",
            &[("workflow", "quick"), ("step", "only")],
        ),
        ("orchestrator_agent_exits_total", &[("class", "0")]),
        ("orchestrator_store_commit_duration_seconds", &[]),
    ];
    for (metric, labels) in at_least_one {
        let v = value(&s, metric, labels).unwrap_or(0.0);
        assert!(v >= 1.0, "{metric} {labels:?} = {v}\n{text}");
    }
    assert!(
        value(
            &s,
            "orchestrator_actor_mailbox_depth",
            &[("actor_type", "TriggerActor")]
        )
        .is_some(),
        "{text}"
    );

    // No label holds a secret value, a task id or a delivery id.
    let tasks = d
        .cli(&["task", "list", "--limit", "1000", "-o", "json"])
        .json();
    let ids: Vec<String> = tasks["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .filter_map(|t| t["id"].as_u64())
        .map(|id| id.to_string())
        .collect();
    assert!(ids.contains(&task.to_string()));
    for sample in &s.samples {
        for (name, v) in sample.labels.iter() {
            let bad = v == SECRET
                || v == DELIVERY
                || v.starts_with("delivery-")
                || ids.iter().any(|id| id == v);
            assert!(!bad, "{} has label {name}={v:?}", sample.metric);
        }
    }
    assert!(!text.contains(SECRET) && !text.contains(DELIVERY), "{text}");
}

#[test]
fn admin_none_serves_nothing_and_the_webhook_port_has_no_metrics() {
    let d = TestDaemon::start_with(&["--admin-bind", "none"]);
    assert!(
        d.ready_line.ends_with(" admin=none"),
        "the ready line reports admin=none: {}",
        d.ready_line
    );
    assert_eq!(d.admin, None);
    let hook = d.webhook.expect("webhook address");
    // The public webhook port never serves /metrics (it refuses a GET: 405).
    let (status, _, body) = get(hook, "/metrics");
    assert_eq!(status, 405, "{body}");
    assert!(!body.contains("orchestrator_"), "{body}");

    // With a listener, the ready line names the port actually bound, and only /metrics is
    // served there.
    let d = TestDaemon::start();
    let admin = d.admin.expect("admin address");
    assert!(d.ready_line.contains(&format!(" admin={admin}")));
    assert_ne!(admin.port(), 0);
    assert_ne!(Some(admin), d.webhook);
    let (status, _, body) = get(admin, "/");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("GET /metrics"), "{body}");
}

#[test]
fn a_bad_admin_bind_is_refused_plainly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let run = |args: &[&str], env: Option<&str>| {
        let mut cmd = std::process::Command::new(DAEMON);
        cmd.args(["--webhook-bind", "none", "--data-dir"])
            .arg(&data)
            .args(args)
            .env_remove("ORCHESTRATOR_ADMIN_BIND");
        if let Some(v) = env {
            cmd.env("ORCHESTRATOR_ADMIN_BIND", v);
        }
        let out = cmd.output().expect("run orchestratord");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["--admin-bind", "localhost-ish"], None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(r#"invalid admin address "localhost-ish""#)
            && stderr.contains("127.0.0.1:19091")
            && stderr.contains("`none`"),
        "{stderr}"
    );
    let (code, stderr) = run(&[], Some("10.0.0.1"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(r#"invalid admin address "10.0.0.1""#),
        "{stderr}"
    );

    // An address that is taken: the daemon says which flag and which address, and stops.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let (code, stderr) = run(&["--admin-bind", &addr], None);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot bind the admin listener (--admin-bind) to {addr}"
        )),
        "{stderr}"
    );
    assert!(!data.join("orchestrator.sock").exists());
}
