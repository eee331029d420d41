//! Memory over many tasks: the release daemon accepts and completes `MEMORY_TASKS` webhook
//! tasks (default 250,000) and its RSS is sampled, with the daemon idle, after
//! `MEMORY_CHECKPOINT` tasks (default 10,000) and after every further `MEMORY_EVERY` (default
//! 40,000) and at the end. Issue 14's target: RSS at the end within 10 MB of RSS at the
//! checkpoint.
//!
//! The load: one webhook trigger (GitHub scheme, `historyLimit: {successful: 10, failed: 10}`,
//! `concurrencyPolicy: Allow`) whose workflow's one step is `true`; `MEMORY_CONNECTIONS` (8)
//! keep-alive connections send signed deliveries with fresh ids, and stop sending while more
//! than `MEMORY_BACKLOG` (2,000) accepted tasks have not finished, so that every task is both
//! accepted and run. A sample waits until every accepted task has finished, then 3 s more, so
//! that retention has run. `SOAK_DAEMON_ARGS`-style extra daemon flags: `MEMORY_DAEMON_ARGS`.
//!
//! Run: `cargo bench --bench memory`; quicker: `MEMORY_TASKS=50000 cargo bench --bench memory`.

#[path = "support/mod.rs"]
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use support::{Daemon, env_u64, github_delivery, hook_manifests, rss_kib};

const SECRET: &str = "memory-signing-secret";

/// Tasks the daemon holds and how many of them finished (`daemon status -o json`).
fn task_counts(d: &Daemon) -> (u64, u64) {
    let out = d.cli(&["daemon", "status", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).expect("status json");
    let storage = &v["storage"];
    (
        storage["tasks"].as_u64().unwrap_or(0),
        storage["finishedTasks"].as_u64().unwrap_or(0),
    )
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let total = env_u64("MEMORY_TASKS", 250_000);
    let checkpoint = env_u64("MEMORY_CHECKPOINT", 10_000).min(total);
    let every = env_u64("MEMORY_EVERY", 40_000).max(1);
    let connections = env_u64("MEMORY_CONNECTIONS", 8).max(1);
    let backlog = env_u64("MEMORY_BACKLOG", 2_000).max(1);
    let extra = std::env::var("MEMORY_DAEMON_ARGS").unwrap_or_default();
    let extra: Vec<&str> = extra.split_whitespace().collect();

    let d = Daemon::start_with(&extra);
    let ws = d.path("ws");
    d.apply(&hook_manifests(&ws, SECRET));
    let url = format!(
        "http://{}/webhook/hook",
        d.webhook.as_deref().expect("webhook address")
    );
    let pid = d.pid();
    eprintln!(
        "memory: {total} tasks ({connections} connections, at most {backlog} unfinished), idle RSS {:.1} MiB",
        rss_kib(pid) as f64 / 1024.0
    );

    // `accepted`: 202s so far; `limit`: how many the senders may have accepted by now (moved on
    // by the main thread as tasks finish); `stop`: the end.
    let accepted = Arc::new(AtomicU64::new(0));
    let limit = Arc::new(AtomicU64::new(backlog.min(checkpoint)));
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (accepted, limit, stop) = (accepted.clone(), limit.clone(), stop.clone());
        std::thread::spawn(move || send(&url, connections, &accepted, &limit, &stop))
    };

    let started = Instant::now();
    // Tasks finished and deleted by retention are counted by what was accepted minus what is
    // still unfinished.
    let mut next_sample = checkpoint;
    let mut samples: Vec<(u64, f64, f64)> = Vec::new();
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let (tasks, finished) = task_counts(&d);
        let unfinished = tasks.saturating_sub(finished);
        let done = accepted.load(Ordering::Relaxed).saturating_sub(unfinished);
        let target = next_sample.min(total);
        limit.store((done + backlog).min(target), Ordering::Relaxed);
        if done >= target && unfinished == 0 {
            std::thread::sleep(Duration::from_secs(3));
            let rss = rss_kib(pid) as f64 / 1024.0;
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "{done:>8} tasks  rss {rss:>6.1} MiB  {tasks} kept  {:.0} tasks/s",
                done as f64 / secs
            );
            samples.push((done, rss, secs));
            if done >= total {
                break;
            }
            next_sample = if next_sample == checkpoint && checkpoint < every {
                every
            } else {
                next_sample + every
            };
        }
    }
    stop.store(true, Ordering::Relaxed);
    let _ = sender.join();

    let (Some(first), Some(last)) = (samples.first(), samples.last()) else {
        return;
    };
    eprintln!(
        "\nRSS after {} tasks: {:.1} MiB; after {}: {:.1} MiB; difference {:+.1} MiB ({:.0} s in all)",
        first.0,
        first.1,
        last.0,
        last.1,
        last.1 - first.1,
        last.2
    );
}

/// Sends signed deliveries on `connections` connections while `accepted` is below `limit`.
fn send(url: &str, connections: u64, accepted: &AtomicU64, limit: &AtomicU64, stop: &AtomicBool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = orchestrator::rotation::http_client()
            .tls_certs_only(std::iter::empty())
            .build()
            .expect("client");
        let body = br#"{"action": "push"}"#.to_vec();
        let ids = AtomicU64::new(0);
        let one = || async {
            while !stop.load(Ordering::Relaxed) {
                if accepted.load(Ordering::Relaxed) >= limit.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
                let n = ids.fetch_add(1, Ordering::Relaxed);
                let req = github_delivery(&client, url, SECRET, &body, &format!("memory-{n}"));
                match req.send().await {
                    Ok(resp) if resp.status().as_u16() == 202 => {
                        let _ = resp.bytes().await;
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(resp) => {
                        let _ = resp.bytes().await;
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        };
        let all: Vec<_> = (0..connections).map(|_| one()).collect();
        futures_util::future::join_all(all).await;
    });
}
