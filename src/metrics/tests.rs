use super::*;

/// The scrape, parsed by a Prometheus text parser.
fn scrape(m: &Metrics) -> prometheus_parse::Scrape {
    let text = m.encode();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parse")
}

fn value(s: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    s.samples
        .iter()
        .find(|x| x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .map(|x| match x.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(ref h) => {
                h.iter().map(|b| b.count).fold(0.0, f64::max)
            }
            prometheus_parse::Value::Summary(_) => f64::NAN,
        })
}

#[test]
fn every_family_is_named_by_the_conventions() {
    let m = Metrics::new();
    m.adopt_store_commits(commit_histogram());
    // A family without a label set yet is left out of the text (Prometheus needs no empty
    // families): give each one.
    m.webhook_request(None, None, WebhookOutcome::ClientError);
    m.verification_took(Scheme::Slack, 1e-6);
    m.verified("p", "t", "k");
    m.cron("p", "t", 1, 1, 1);
    m.task_finished("p", "w", TaskState::Succeeded);
    m.step_took("p", "w", "s", 1.0);
    m.agent_exited(Some(0));
    m.actor_restarted("TriggerActor");
    m.set_mailbox_depths([("TriggerActor", 0)]);
    m.rotation_stage("create", "done");
    let text = m.encode();
    for (name, kind) in [
        ("orchestrator_webhook_requests_total", "counter"),
        (
            "orchestrator_webhook_verification_duration_seconds",
            "histogram",
        ),
        ("orchestrator_webhook_verifications_total", "counter"),
        ("orchestrator_cron_fires_total", "counter"),
        ("orchestrator_cron_missed_total", "counter"),
        ("orchestrator_cron_skipped_total", "counter"),
        ("orchestrator_cron_fire_lateness_seconds", "histogram"),
        ("orchestrator_tasks_finished_total", "counter"),
        ("orchestrator_step_duration_seconds", "histogram"),
        ("orchestrator_agent_exits_total", "counter"),
        ("orchestrator_actor_restarts_total", "counter"),
        ("orchestrator_actor_mailbox_depth", "gauge"),
        ("orchestrator_rotation_stages_total", "counter"),
        ("orchestrator_store_commit_duration_seconds", "histogram"),
        ("orchestrator_build_info", "gauge"),
    ] {
        let line = format!("# TYPE {name} {kind}\n");
        assert!(text.contains(&line), "no {line:?} in\n{text}");
    }
    let s = scrape(&m);
    assert_eq!(
        value(
            &s,
            "orchestrator_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))]
        ),
        Some(1.0)
    );
}

#[test]
fn records_land_under_their_labels() {
    let m = Metrics::new();
    m.webhook_request(
        Some(("default", "gh")),
        Some(Scheme::Github),
        WebhookOutcome::Accepted,
    );
    m.webhook_request(
        Some(("default", "gh")),
        Some(Scheme::Github),
        WebhookOutcome::Accepted,
    );
    m.webhook_request(None, None, WebhookOutcome::ClientError);
    m.verified("default", "gh", "current");
    m.verification_took(Scheme::Github, 2e-6);
    m.cron("default", "nightly", 1, 2, 3);
    m.fire_lateness(0.002);
    m.task_finished("default", "build", TaskState::Failed);
    m.step_took("default", "build", "compile", 1.5);
    m.agent_exited(Some(0));
    m.agent_exited(Some(3));
    m.agent_exited(Some(130));
    m.agent_exited(None);
    m.actor_restarted("TriggerActor");
    m.set_mailbox_depths([("WorkflowActor", 4)]);
    m.rotation_stage("test", "verified");
    let s = scrape(&m);
    type Labels<'a> = &'a [(&'a str, &'a str)];
    let want: &[(&str, Labels<'_>, f64)] = &[
        (
            "orchestrator_webhook_requests_total",
            &[
                ("trigger", "gh"),
                ("scheme", "github"),
                ("outcome", "accepted"),
            ],
            2.0,
        ),
        (
            "orchestrator_webhook_requests_total",
            &[
                ("trigger", ""),
                ("scheme", "none"),
                ("outcome", "client_error"),
            ],
            1.0,
        ),
        (
            "orchestrator_webhook_verifications_total",
            &[("trigger", "gh"), ("key", "current")],
            1.0,
        ),
        (
            "orchestrator_cron_fires_total",
            &[("trigger", "nightly")],
            1.0,
        ),
        (
            "orchestrator_cron_skipped_total",
            &[("trigger", "nightly")],
            2.0,
        ),
        (
            "orchestrator_cron_missed_total",
            &[("trigger", "nightly")],
            3.0,
        ),
        (
            "orchestrator_tasks_finished_total",
            &[("workflow", "build"), ("state", "failed")],
            1.0,
        ),
        ("orchestrator_agent_exits_total", &[("class", "0")], 1.0),
        ("orchestrator_agent_exits_total", &[("class", "1-127")], 1.0),
        (
            "orchestrator_agent_exits_total",
            &[("class", "128-255")],
            1.0,
        ),
        (
            "orchestrator_agent_exits_total",
            &[("class", "signal")],
            1.0,
        ),
        (
            "orchestrator_actor_restarts_total",
            &[("actor_type", "TriggerActor")],
            1.0,
        ),
        (
            "orchestrator_actor_mailbox_depth",
            &[("actor_type", "WorkflowActor")],
            4.0,
        ),
        (
            "orchestrator_rotation_stages_total",
            &[("stage", "test"), ("outcome", "verified")],
            1.0,
        ),
        (
            "orchestrator_step_duration_seconds",
            &[("workflow", "build"), ("step", "compile")],
            1.0,
        ),
        ("orchestrator_cron_fire_lateness_seconds", &[], 1.0),
        (
            "orchestrator_webhook_verification_duration_seconds",
            &[("scheme", "github")],
            1.0,
        ),
    ];
    for (metric, labels, v) in want {
        assert_eq!(value(&s, metric, labels), Some(*v), "{metric} {labels:?}");
    }
}

#[test]
fn outcomes_follow_the_status_and_the_noted_reason() {
    let check = |status, noted, want: WebhookOutcome| {
        assert_eq!(
            WebhookOutcome::of(status, noted),
            want,
            "{status} {noted:?}"
        );
    };
    check(202, None, WebhookOutcome::Accepted);
    check(200, None, WebhookOutcome::Accepted);
    check(202, Some("filtered"), WebhookOutcome::Filtered);
    check(202, Some("duplicate"), WebhookOutcome::Duplicate);
    check(202, Some("skipped"), WebhookOutcome::Skipped);
    check(200, Some("dry run"), WebhookOutcome::Verified);
    check(200, Some("url verification"), WebhookOutcome::Verified);
    check(401, None, WebhookOutcome::Unauthorized);
    check(429, None, WebhookOutcome::RateLimited);
    check(404, None, WebhookOutcome::ClientError);
    check(413, None, WebhookOutcome::ClientError);
    check(503, None, WebhookOutcome::ServerError);
}

#[test]
fn a_flood_of_trigger_names_folds_into_other() {
    let m = Metrics::new();
    for i in 0..3000 {
        let name = format!("t{i}");
        m.webhook_request(
            Some(("default", &name)),
            Some(Scheme::HmacSha256),
            WebhookOutcome::Unauthorized,
        );
        m.verified("default", &name, "k");
        m.cron("default", &name, 1, 0, 0);
    }
    assert!(m.0.webhook_requests.len() <= CAP);
    assert!(m.0.verifications.len() <= CAP);
    assert!(m.0.cron_fires.len() <= CAP);
    let s = scrape(&m);
    let folded = value(
        &s,
        "orchestrator_webhook_requests_total",
        &[("trigger", OTHER), ("outcome", "unauthorized")],
    )
    .expect("folded requests");
    let admitted = (CAP - <labels::WebhookRequest as Fold>::FOLDED) as f64;
    assert_eq!(folded, 3000.0 - admitted);
    assert_eq!(
        value(&s, "orchestrator_cron_fires_total", &[("trigger", OTHER)]),
        Some(3000.0 - (CAP - 1) as f64)
    );
}
