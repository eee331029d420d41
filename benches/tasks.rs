//! Tasks, end to end against a real release-built daemon (client and daemon on the same
//! machine):
//! - `create_to_exec`: from starting `orchestrator task create` to the agent's exec. The agent is
//!   `date +%s%N`, so the measured instant is when `date` read the clock, just after its exec.
//! - throughput: tasks per second with a trivial agent (`true`), created through the control API
//!   with 8 requests in flight, measured until every task has succeeded.
//! - 1,000 tasks running at once (`sleep 30`): `orchestrator task list` latency and the daemon's
//!   resident memory while they run.
//!
//! Run: `cargo bench --bench tasks`. The last two print their figures instead of going through
//! criterion, because one sample takes seconds.

#[path = "support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use criterion::{Criterion, criterion_group, criterion_main};
use support::{Daemon, median_ms, percentile_ms, rss_kib, workspace_manifest};

fn workflow(name: &str, command: &str, max_parallel: u32) -> String {
    format!(
        "apiVersion: orchestrator.dev/v2\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n  max_parallel: {max_parallel}\n  steps: [{{id: s, command: \"{command}\"}}]\n"
    )
}

fn create_to_exec(c: &mut Criterion) {
    let d = Daemon::start();
    let ws = d.path("ws");
    d.apply(&format!(
        "{}---\n{}",
        workspace_manifest(&ws),
        workflow("stamp", "date +%s%N", 64)
    ));
    let logs = d.dir.path().join("data/runs");
    c.bench_function("create_to_exec", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let t0 = SystemTime::now();
                let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
                    .arg("--socket")
                    .arg(&d.socket)
                    .args(["task", "create", "--workflow", "stamp"])
                    .output()
                    .expect("cli");
                let id = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                let log = logs.join(&id).join("s-c1-a1.log");
                let deadline = Instant::now() + Duration::from_secs(10);
                let stamp = loop {
                    let text = std::fs::read_to_string(&log).unwrap_or_default();
                    if let Some(ns) = text.lines().find_map(|l| {
                        l.split(" out ")
                            .nth(1)
                            .and_then(|n| n.trim().parse::<u128>().ok())
                    }) {
                        break ns;
                    }
                    assert!(Instant::now() < deadline, "task {id} never ran");
                    std::thread::sleep(Duration::from_micros(200));
                };
                let start = t0.duration_since(UNIX_EPOCH).expect("clock").as_nanos();
                total += Duration::from_nanos(stamp.saturating_sub(start) as u64);
            }
            total
        })
    });
}

/// A small async client of the control API.
struct Api {
    http: reqwest::Client,
}

impl Api {
    fn new(d: &Daemon) -> Api {
        Api {
            http: orchestrator::rotation::http_client()
                .unix_socket(d.socket.clone())
                .tls_certs_only(std::iter::empty())
                .build()
                .expect("client"),
        }
    }

    async fn create(&self, workflow: &str) {
        let resp = self
            .http
            .post("http://d/v1/tasks")
            .json(&serde_json::json!({"workflow": workflow}))
            .send()
            .await
            .expect("create");
        assert!(
            resp.status().is_success(),
            "{}",
            resp.text().await.unwrap_or_default()
        );
    }

    async fn count(&self, state: &str) -> usize {
        let v: serde_json::Value = self
            .http
            .get(format!("http://d/v1/tasks?state={state}&limit=10000"))
            .send()
            .await
            .expect("list")
            .json()
            .await
            .expect("json");
        v["tasks"].as_array().map_or(0, Vec::len)
    }

    /// Creates `n` tasks with `inflight` requests at a time.
    async fn create_many(&self, workflow: &str, n: usize, inflight: usize) {
        let mut left = n;
        while left > 0 {
            let batch = left.min(inflight);
            let calls: Vec<_> = (0..batch).map(|_| self.create(workflow)).collect();
            futures_util::future::join_all(calls).await;
            left -= batch;
        }
    }
}

fn throughput(_c: &mut Criterion) {
    let d = Daemon::start();
    let ws = d.path("ws");
    d.apply(&format!(
        "{}---\n{}",
        workspace_manifest(&ws),
        workflow("trivial", "true", 32)
    ));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let api = Api::new(&d);
    let n = 1000;
    let mut rates = Vec::new();
    for round in 1..=3 {
        let t0 = Instant::now();
        rt.block_on(async {
            api.create_many("trivial", n, 8).await;
            let deadline = Instant::now() + Duration::from_secs(120);
            while api.count("succeeded").await < n * round {
                assert!(Instant::now() < deadline, "tasks did not finish");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let secs = t0.elapsed().as_secs_f64();
        rates.push(n as f64 / secs);
        eprintln!(
            "throughput round {round}: {n} tasks in {secs:.2} s = {:.0} tasks/s",
            n as f64 / secs
        );
    }
    rates.sort_by(f64::total_cmp);
    eprintln!(
        "throughput median: {:.0} tasks/s (agent `true`, max_parallel 32)",
        rates[1]
    );
}

fn thousand_running(_c: &mut Criterion) {
    let d = Daemon::start();
    let ws = d.path("ws");
    d.apply(&format!(
        "{}---\n{}",
        workspace_manifest(&ws),
        workflow("sleepy", "sleep 30", 1000)
    ));
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let api = Api::new(&d);
    let idle = rss_kib(d.pid());
    rt.block_on(async {
        api.create_many("sleepy", 1000, 16).await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while api.count("running").await < 1000 {
            assert!(
                Instant::now() < deadline,
                "1000 tasks did not reach running"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let mut times = Vec::new();
    for _ in 0..20 {
        let t0 = Instant::now();
        d.cli(&["task", "list", "--limit", "1000"]);
        times.push(t0.elapsed());
    }
    let rss = rss_kib(d.pid());
    eprintln!(
        "1000 running agents: `task list --limit 1000` median {:.1} ms, max {:.1} ms; daemon RSS {:.1} MiB (idle before: {:.1} MiB)",
        median_ms(times.clone()),
        percentile_ms(times, 1.0),
        rss as f64 / 1024.0,
        idle as f64 / 1024.0
    );
}

criterion_group!(benches, create_to_exec, throughput, thousand_running);
criterion_main!(benches);
