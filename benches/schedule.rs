//! Benchmarks of the cron hot path: `Schedule::next_after`, which every TriggerActor calls once
//! per fire to re-arm its timer, for fixed-time and interval expressions, in UTC and across a
//! DST change, plus `Schedule::parse`, which runs once per apply.

use std::hint::black_box;

use chrono::{DateTime, TimeDelta, Utc};
use criterion::{Criterion, criterion_group, criterion_main};
use orchestrator::domain::schedule::Schedule;

/// Instants every 7 minutes 13 seconds over two days around New York's 2026-11-01 fall-back,
/// so the benchmark asks from before, inside and after the repeated hour.
fn starts_around_fall_back() -> Vec<DateTime<Utc>> {
    let first = DateTime::from_timestamp(1_793_426_400, 0) // 2026-10-31T06:00:00Z
        .unwrap_or(DateTime::UNIX_EPOCH);
    (0..400)
        .map(|i| first + TimeDelta::seconds(i * 433))
        .collect()
}

fn bench_next_after(c: &mut Criterion, name: &str, expr: &str, zone: Option<&str>) {
    let schedule = match Schedule::parse(expr, zone) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    let starts = starts_around_fall_back();
    let mut i = 0;
    c.bench_function(name, |b| {
        b.iter(|| {
            i = (i + 1) % starts.len();
            black_box(schedule.next_after(black_box(starts[i])))
        })
    });
}

fn next_after(c: &mut Criterion) {
    bench_next_after(c, "next_after/fixed_utc", "30 2 * * *", None);
    bench_next_after(
        c,
        "next_after/fixed_new_york_dst",
        "30 1 * * *",
        Some("America/New_York"),
    );
    bench_next_after(c, "next_after/interval_utc", "*/15 * * * *", None);
    bench_next_after(
        c,
        "next_after/interval_new_york_dst",
        "*/15 * * * *",
        Some("America/New_York"),
    );
}

fn parse(c: &mut Criterion) {
    c.bench_function("parse/5_fields_zone", |b| {
        b.iter(|| Schedule::parse(black_box("*/15 9-17 * * mon-fri"), Some("Europe/Berlin")))
    });
    c.bench_function("parse/vixie_two_schedules", |b| {
        b.iter(|| Schedule::parse(black_box("0 0 13 * 5"), None))
    });
}

criterion_group!(benches, next_after, parse);
criterion_main!(benches);
