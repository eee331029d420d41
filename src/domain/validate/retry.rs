//! The rules of a step's retry timing: `backoff` (each number finite; an initial delay of at
//! most a day, a factor from 1 to 10, a cap not below the initial delay, jitter a fraction) and
//! `idle_timeout_secs` on steps and agents (a positive number of seconds).

use super::local::{Problem, problem_hint};
use crate::domain::manifest::{Backoff, StepSpec};

/// The longest wait a backoff may name (a day).
const MAX_DELAY_SECS: f64 = 86_400.0;

pub(super) fn step_timing(s: &StepSpec, at: &str, out: &mut Vec<Problem>) {
    if let Some(b) = &s.backoff {
        backoff(b, &format!("{at}.backoff"), out);
    }
    idle_timeout(s.idle_timeout_secs, &format!("{at}.idle_timeout_secs"), out);
}

pub(super) fn idle_timeout(secs: Option<u64>, at: &str, out: &mut Vec<Problem>) {
    if secs == Some(0) {
        out.push(problem_hint(
            at,
            "idle_timeout_secs is 0",
            "give the seconds a run may stay silent before it is stopped, or leave it out",
        ));
    }
}

fn backoff(b: &Backoff, at: &str, out: &mut Vec<Problem>) {
    let mut check = |field: &str, value: f64, ok: bool, want: &str| {
        if !(value.is_finite() && ok) {
            out.push(problem_hint(
                format!("{at}.{field}"),
                format!("{field} {value} is out of range"),
                want.to_owned(),
            ));
        }
    };
    let initial = b.initial_delay_secs;
    check(
        "initial_delay_secs",
        initial,
        initial > 0.0 && initial <= MAX_DELAY_SECS,
        "use a number of seconds above 0 and at most 86400 (0.2 is 200 ms)",
    );
    check(
        "factor",
        b.factor,
        (1.0..=10.0).contains(&b.factor),
        "use a factor from 1 (the same wait each time) to 10",
    );
    if let Some(max) = b.max_delay_secs {
        check(
            "max_delay_secs",
            max,
            max >= initial && max <= MAX_DELAY_SECS,
            "use a number of seconds at least initial_delay_secs and at most 86400",
        );
    }
    check(
        "jitter",
        b.jitter,
        (0.0..=1.0).contains(&b.jitter),
        "use a fraction from 0 (none) to 1 (each wait anywhere from 0 to twice its value)",
    );
}
