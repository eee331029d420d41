//! Soak: the release daemon runs for a given time under a steady load, and every quantity that
//! could grow without bound is sampled and fitted with a line, so that a leak shows as a
//! growth per hour well away from zero.
//!
//! The load: `SOAK_TRIGGERS` every-second cron triggers (half of them with
//! `historyLimit: {successful: 10, failed: 10}`), and one webhook trigger with the same limit fed
//! `SOAK_RATE` signed deliveries per second; every step is `true`. Every `SOAK_SAMPLE` seconds it
//! samples the daemon's RSS, open file descriptors and threads, the database with its WAL, the
//! run logs on disk, the daemon's log file and the longest log line written since the previous
//! sample. After `SOAK_SECONDS` it prints each quantity at the end of the warm-up
//! (`SOAK_WARMUP`) and at the end, and its growth per hour fitted over the samples after the
//! warm-up (least squares).
//!
//! `cargo bench --bench soak` runs 15 minutes with 20 triggers and 50 deliveries/s; for a quick
//! look: `SOAK_SECONDS=120 SOAK_WARMUP=30 SOAK_SAMPLE=10 cargo bench --bench soak`.
//! `SOAK_DAEMON_ARGS` adds daemon flags (e.g. `--task-retention-count 1000`, so that retention
//! bounds the database within the run: its default keeps 10,000 tasks per workflow).

mod support;

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use orchestrator::layout;
use support::{env_u64, github_delivery, hook_manifests, rss_kib};

const SECRET: &str = "soak-signing-secret";

/// Bytes of every file below `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

fn file_bytes(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// The longest line in what the log file gained since `offset`; moves `offset` to its end.
fn longest_new_line(log: &Path, offset: &mut u64) -> u64 {
    let Ok(mut f) = std::fs::File::open(log) else {
        return 0;
    };
    if f.seek(SeekFrom::Start(*offset)).is_err() {
        return 0;
    }
    let mut longest = 0;
    let mut reader = BufReader::new(&mut f);
    let mut line = Vec::new();
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                *offset += n as u64;
                longest = longest.max(n as u64);
            }
        }
    }
    longest
}

struct Sample {
    at: f64,
    values: Vec<f64>,
}

const QUANTITIES: [(&str, &str); 8] = [
    ("daemon RSS", "MiB"),
    ("open fds", ""),
    ("threads", ""),
    ("database + WAL", "MiB"),
    ("run logs", "MiB"),
    ("daemon log file", "MiB"),
    ("longest new log line", "B"),
    ("run-log dirs (tasks kept)", ""),
];

/// Least-squares slope of `ys` over `xs`.
fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let n = xs.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let cov: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let var: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if var == 0.0 { 0.0 } else { cov / var }
}

fn manifests(ws: &Path, triggers: u64) -> String {
    let mut text = hook_manifests(ws, SECRET);
    for i in 0..triggers {
        let limit = if i % 2 == 0 {
            "  historyLimit: {successful: 10, failed: 10}\n"
        } else {
            ""
        };
        text.push_str(&format!(
            "---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: tick-{i}}}\nspec:\n  cron: {{schedule: \"* * * * * *\"}}\n  action: {{workflow: quick, workspace: default}}\n  concurrencyPolicy: Allow\n{limit}"
        ));
    }
    text
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let seconds = env_u64("SOAK_SECONDS", 900);
    let warmup = env_u64("SOAK_WARMUP", 120).min(seconds);
    let every = env_u64("SOAK_SAMPLE", 30).max(1);
    let triggers = env_u64("SOAK_TRIGGERS", 20);
    let rate = env_u64("SOAK_RATE", 50);
    eprintln!(
        "soak: {seconds} s ({warmup} s warm-up, a sample every {every} s), {triggers} every-second triggers, {rate} deliveries/s"
    );

    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let log_path = dir.path().join("daemon.log");
    let log = std::fs::File::create(&log_path).expect("log file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchestratord"))
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--webhook-bind",
            "127.0.0.1:0",
            "--admin-bind",
            "127.0.0.1:0",
        ])
        .args(
            std::env::var("SOAK_DAEMON_ARGS")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start daemon");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    let webhook = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("webhook="))
        .expect("webhook address")
        .to_owned();
    let pid = child.id();
    let socket = data.join(layout::SOCKET_FILE);
    let ws = dir.path().join("ws");
    std::fs::create_dir_all(&ws).expect("workspace");
    let manifest = dir.path().join("soak.yaml");
    std::fs::write(&manifest, manifests(&ws, triggers)).expect("manifest");
    let applied = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .arg("--socket")
        .arg(&socket)
        .args(["apply", "-f"])
        .arg(&manifest)
        .output()
        .expect("apply");
    assert!(applied.status.success(), "{applied:?}");

    // The webhook feed: one delivery every 1/rate s, each with a fresh id.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let feeder = {
        let (stop, sent) = (stop.clone(), sent.clone());
        let url = format!("http://{webhook}/webhook/hook");
        std::thread::spawn(move || feed(&url, rate, &stop, &sent))
    };

    let started = Instant::now();
    let mut samples = Vec::new();
    let mut offset = 0;
    let runs = data.join(layout::RUNS_DIR);
    let db = data.join(layout::DB_FILE);
    let wal = PathBuf::from(format!("{}-wal", db.display()));
    while started.elapsed() < Duration::from_secs(seconds) {
        std::thread::sleep(Duration::from_secs(every));
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()) as f64;
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let tasks = std::fs::read_dir(&runs).map_or(0, |d| d.count()) as f64;
        let values = vec![
            rss_kib(pid) as f64 / 1024.0,
            fds,
            status_field(pid, "Threads:") as f64,
            mib(file_bytes(&db) + file_bytes(&wal)),
            mib(dir_bytes(&runs)),
            mib(file_bytes(&log_path)),
            longest_new_line(&log_path, &mut offset) as f64,
            tasks,
        ];
        let at = started.elapsed().as_secs_f64();
        eprintln!(
            "{at:>6.0} s  rss {:.1} MiB  fds {}  threads {}  db {:.1} MiB  runs {:.1} MiB  log {:.1} MiB  longest line {} B  run-log dirs {}",
            values[0], values[1], values[2], values[3], values[4], values[5], values[6], values[7]
        );
        samples.push(Sample { at, values });
    }
    stop.store(true, Ordering::Relaxed);
    let _ = feeder.join();
    let _ = child.kill();
    let _ = child.wait();

    let after: Vec<&Sample> = samples.iter().filter(|s| s.at >= warmup as f64).collect();
    let xs: Vec<f64> = after.iter().map(|s| s.at / 3600.0).collect();
    eprintln!(
        "\n{} deliveries sent; growth fitted over {} samples after the warm-up",
        sent.load(Ordering::Relaxed),
        after.len()
    );
    eprintln!(
        "{:<26} {:>14} {:>14} {:>16}",
        "quantity", "after warm-up", "at the end", "growth per hour"
    );
    for (i, (name, unit)) in QUANTITIES.iter().enumerate() {
        let ys: Vec<f64> = after.iter().map(|s| s.values[i]).collect();
        let (Some(first), Some(last)) = (ys.first(), ys.last()) else {
            continue;
        };
        eprintln!(
            "{name:<26} {first:>11.1} {unit:<2} {last:>11.1} {unit:<2} {:>+13.1} {unit}",
            slope(&xs, &ys)
        );
    }
}

/// Sends signed deliveries at `rate` per second until `stop`.
fn feed(url: &str, rate: u64, stop: &AtomicBool, sent: &AtomicU64) {
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
        let period = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
        let mut next = tokio::time::Instant::now();
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            next += period;
            tokio::time::sleep_until(next).await;
            n += 1;
            let req = github_delivery(&client, url, SECRET, &body, &format!("soak-{n}"));
            if let Ok(resp) = req.send().await {
                let _ = resp.bytes().await;
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
}
