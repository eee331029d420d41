//! Benchmarks of the Prometheus metrics (issue 18):
//! - `scrape/1000 triggers`: one `GET /metrics` body (`http::admin::scrape`: the mailbox
//!   gauges set from the actor registry, then the text encoding) with every trigger- and
//!   workflow-keyed family at its cap: 1,000 triggers' webhook requests, verifications, cron
//!   fires and skips, 1,000 workflows' finished tasks and step histograms. Target ≤ 10 ms.
//! - `record/one webhook`: what one delivery adds to its request: the verification histogram,
//!   the key-name counter and the request counter, for a trigger already seen, among 1,000.
//!   Compared with the cost of a delivery in benches/README.md (throughput with metrics within
//!   5 % of without).
//!
//! Run: `cargo bench --bench metrics -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use orchestrator::actors::runtime::Registry;
use orchestrator::domain::signature::Scheme;
use orchestrator::domain::workflow::TaskState;
use orchestrator::http::admin::scrape;
use orchestrator::metrics::{Metrics, WebhookOutcome, commit_histogram};

const TRIGGERS: usize = 1000;

/// Every family filled as 1,000 triggers and 1,000 workflows fill it.
fn fill(m: &Metrics) {
    m.adopt_store_commits(commit_histogram());
    for i in 0..TRIGGERS {
        let name = format!("trigger-{i:04}");
        let workflow = format!("workflow-{i:04}");
        m.webhook_request(
            Some(("default", &name)),
            Some(Scheme::Github),
            WebhookOutcome::Accepted,
        );
        m.verification_took(Scheme::Github, 2e-6);
        m.verified("default", &name, "current");
        m.cron("default", &name, 3, 1, 1);
        m.fire_lateness(0.001);
        m.task_finished("default", &workflow, TaskState::Succeeded);
        m.step_took("default", &workflow, "only", 0.5);
        m.agent_exited(Some(0));
    }
    m.actor_restarted("TriggerActor");
    m.rotation_stage("test", "verified");
}

fn scrape_bench(c: &mut Criterion) {
    let actors = Registry::new();
    fill(actors.metrics());
    let text = scrape(&actors);
    let lines = text.lines().count();
    eprintln!(
        "scrape of {TRIGGERS} triggers: {lines} lines, {} KiB",
        text.len() / 1024
    );
    c.bench_function("scrape/1000 triggers", |b| {
        b.iter(|| black_box(scrape(&actors)))
    });
}

fn record_bench(c: &mut Criterion) {
    let m = Metrics::new();
    fill(&m);
    let (project, trigger) = ("default", "trigger-0500");
    c.bench_function("record/one webhook", |b| {
        b.iter(|| {
            m.verification_took(Scheme::Github, black_box(2e-6));
            m.verified(project, black_box(trigger), "current");
            m.webhook_request(
                Some((project, black_box(trigger))),
                Some(Scheme::Github),
                WebhookOutcome::Accepted,
            );
        })
    });
}

criterion_group!(benches, scrape_bench, record_bench);
criterion_main!(benches);
