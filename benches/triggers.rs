//! Cron triggers at scale, against a real release-built daemon (client and daemon on the same
//! machine):
//! - 10,000 cron triggers (1,440 distinct schedules) applied in one `orchestrator apply -f`:
//!   the apply's wall time, the daemon's resident memory once they are armed, and the time from
//!   starting the daemon to its ready line after a restart (and until every trigger is armed);
//!   then the same with every TriggerActor resident (the default), with
//!   `orchestrator actors` over those 10,006 actors;
//! - lateness (fire time − scheduled instant) of 100 every-second triggers (`start: false`) over
//!   10 seconds: p50 and p99.
//!
//! Run: `cargo bench --bench triggers`. It prints its figures (one sample takes seconds).

#[path = "support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use orchestrator::store::SaveRow;
use support::{Daemon, rss_kib, workspace_manifest};

fn bundle(n: usize, schedule: impl Fn(usize) -> String, extra: &str) -> String {
    let mut text = String::from(
        "apiVersion: orchestrator.dev/v2\nkind: Workflow\nmetadata: {name: quick}\nspec:\n  max_parallel: 100\n  steps: [{id: s, command: \"true\"}]\n",
    );
    for i in 0..n {
        text.push_str(&format!(
            "---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: t-{i}}}\nspec:\n  cron: {{schedule: \"{}\", timezone: Europe/Berlin}}\n  action: {{workflow: quick, workspace: default, start: false}}\n{extra}",
            schedule(i)
        ));
    }
    text
}

/// Moves every stored trigger's last scheduled instant and next fire two days back (the daemon
/// is stopped), through the store's API.
fn shift_back_two_days(data_dir: &std::path::Path) {
    let stores = orchestrator::store::sqlite::open(data_dir).expect("open the store");
    let two_days = chrono::Duration::days(2);
    let rows: Vec<SaveRow> = stores
        .triggers
        .all()
        .expect("trigger state")
        .into_iter()
        .map(|((project, name), mut state)| {
            state.next_fire = state.next_fire.map(|t| t - two_days);
            state.last_scheduled = state.last_scheduled.map(|t| t - two_days);
            SaveRow {
                project,
                name,
                state,
                event: None,
            }
        })
        .collect();
    stores
        .triggers
        .save_many(&rows, chrono::Utc::now())
        .expect("shift the trigger state back two days");
}

/// Number of armed TriggerActors, from the trigger supervisor's self-report.
fn armed(d: &Daemon) -> usize {
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .arg("--socket")
        .arg(&d.socket)
        .args(["actors", "inspect", "triggers", "-o", "json"])
        .output()
        .expect("cli");
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .ok()
        .and_then(|v| v["state"]["triggers"].as_u64())
        .unwrap_or(0) as usize
}

/// Applies the 10,000-trigger bundle; returns the apply's wall time and the time until every
/// trigger is armed.
fn apply_ten_thousand(d: &Daemon) -> (Duration, Duration) {
    let ws = d.path("ws");
    d.apply(&workspace_manifest(&ws));
    let file = d.dir.path().join("triggers.yaml");
    std::fs::write(
        &file,
        bundle(
            10_000,
            |i| format!("{} {} * * *", i % 60, (i / 60) % 24),
            "",
        ),
    )
    .expect("write");
    let t0 = Instant::now();
    d.cli(&["apply", "-f", file.to_str().expect("path")]);
    let apply = t0.elapsed();
    let deadline = Instant::now() + Duration::from_secs(60);
    while armed(d) < 10_000 {
        assert!(Instant::now() < deadline, "triggers not armed");
        std::thread::sleep(Duration::from_millis(50));
    }
    (apply, t0.elapsed())
}

/// Stops the daemon (SIGTERM) and waits for it.
fn stop(d: &mut Daemon) {
    let _ = Command::new("kill").arg(d.pid().to_string()).status();
    let _ = d.child.wait();
}

/// Starts the stopped daemon again on its data dir: the time to the ready line, and until every
/// trigger is armed again.
fn start_again(d: &mut Daemon) -> (Duration, Duration) {
    let data = d.dir.path().join("data");
    let t0 = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_orchestratord"))
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--webhook-bind",
            "127.0.0.1:0",
            "--admin-bind",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("restart");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    let ready = t0.elapsed();
    d.child = child;
    let deadline = Instant::now() + Duration::from_secs(60);
    while armed(d) < 10_000 {
        assert!(Instant::now() < deadline, "triggers not re-armed");
        std::thread::sleep(Duration::from_millis(20));
    }
    (ready, t0.elapsed())
}

fn ten_thousand(_c: &mut Criterion) {
    // Passivation opted into (resident window 60 s): daily triggers wait in the wake queue.
    let mut d = Daemon::start_with(&["--trigger-resident-window", "60"]);
    let (apply, armed_after_apply) = apply_ten_thousand(&d);
    let rss = rss_kib(d.pid());
    eprintln!(
        "10,000 cron triggers: apply {:.0} ms (all armed after {:.0} ms); daemon RSS {:.1} MiB",
        apply.as_secs_f64() * 1000.0,
        armed_after_apply.as_secs_f64() * 1000.0,
        rss as f64 / 1024.0
    );

    // Restart: time to the ready line and until every trigger is armed again.
    stop(&mut d);
    let (ready, armed_after) = start_again(&mut d);
    eprintln!(
        "restart with 10,000 triggers: ready line after {:.0} ms, all armed after {:.0} ms; RSS {:.1} MiB",
        ready.as_secs_f64() * 1000.0,
        armed_after.as_secs_f64() * 1000.0,
        rss_kib(d.pid()) as f64 / 1024.0
    );

    // A restart after two days down: every trigger missed two fires, which are recorded.
    stop(&mut d);
    shift_back_two_days(&d.dir.path().join("data"));
    let (ready, armed_after) = start_again(&mut d);
    eprintln!(
        "restart after 2 days down (20,000 missed fires recorded): ready line after {:.0} ms, all armed after {:.0} ms; RSS {:.1} MiB",
        ready.as_secs_f64() * 1000.0,
        armed_after.as_secs_f64() * 1000.0,
        rss_kib(d.pid()) as f64 / 1024.0
    );
    drop(d);

    // The daemon as shipped, every trigger resident: the memory passivation saves, and
    // `orchestrator actors` over more than 10,000 actors.
    let d = Daemon::start();
    let (apply, armed_after_apply) = apply_ten_thousand(&d);
    eprintln!(
        "10,000 resident TriggerActors: apply {:.0} ms (all armed after {:.0} ms); daemon RSS {:.1} MiB",
        apply.as_secs_f64() * 1000.0,
        armed_after_apply.as_secs_f64() * 1000.0,
        rss_kib(d.pid()) as f64 / 1024.0
    );
    let mut times = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        d.cli(&["actors", "-o", "json"]);
        times.push(t.elapsed());
    }
    let mut table = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        d.cli(&["actors"]);
        table.push(t.elapsed());
    }
    eprintln!(
        "`orchestrator actors` with 10,006 actors: -o json median {:.0} ms, table median {:.0} ms",
        support::median_ms(times),
        support::median_ms(table)
    );
}

fn lateness(_c: &mut Criterion) {
    let d = Daemon::start();
    let ws = d.path("ws");
    d.apply(&workspace_manifest(&ws));
    d.apply(&bundle(
        100,
        |_| "* * * * * *".to_owned(),
        "  concurrencyPolicy: Allow\n",
    ));
    std::thread::sleep(Duration::from_secs(11));
    let mut late = Vec::new();
    for i in 0..100 {
        let v: serde_json::Value =
            serde_json::from_str(&d.cli(&["describe", "trigger", &format!("t-{i}"), "-o", "json"]))
                .expect("json");
        for f in v["fires"].as_array().into_iter().flatten() {
            if let Some(ms) = f["latenessMs"].as_f64() {
                late.push(ms);
            }
        }
    }
    late.sort_by(f64::total_cmp);
    let pct = |p: f64| late[((late.len() - 1) as f64 * p).round() as usize];
    eprintln!(
        "lateness of 100 every-second triggers over ~10 s ({} fires): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        late.len(),
        pct(0.5),
        pct(0.99),
        pct(1.0)
    );
}

criterion_group!(benches, ten_thousand, lateness);
criterion_main!(benches);
