//! Unit tests of schedules: the shared table runner and the accessors here, the grammar and its
//! refusals in `grammar.rs`, and the DST rules (tables, long walks and the brute-force oracle) in
//! `dst.rs`.

mod dst;
mod grammar;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;

use super::*;

/// What a case expects: fire times (RFC 3339, any offset) or an error message fragment.
enum Want {
    Fires(&'static [&'static str]),
    Error(&'static str),
}
use Want::{Error, Fires};

fn at(text: &str) -> DateTime<Utc> {
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => t.to_utc(),
        Err(e) => panic!("bad test instant {text:?}: {e}"),
    }
}

/// Parses `expr` in `zone` and compares the fire times after `from` (or the error) with
/// `want`, also walking with `next_after` on its own output.
fn check(expr: &str, zone: Option<&str>, from: &str, want: Want) {
    let parsed = Schedule::parse(expr, zone);
    match want {
        Fires(want) => {
            let schedule = match parsed {
                Ok(s) => s,
                Err(e) => panic!("{expr:?} in {zone:?}: unexpected error: {e}"),
            };
            let got = schedule.upcoming(at(from), want.len());
            let want: Vec<DateTime<Utc>> = want.iter().map(|w| at(w)).collect();
            let show = |v: &[DateTime<Utc>]| -> Vec<String> {
                v.iter()
                    .map(|t| t.with_timezone(&schedule.timezone()).to_rfc3339())
                    .collect()
            };
            assert_eq!(show(&got), show(&want), "{expr:?} in {zone:?} after {from}");
            let mut last = at(from);
            for w in &want {
                let next = schedule.next_after(last);
                assert_eq!(next, Some(*w), "{expr:?} next_after({last})");
                last = *w;
            }
        }
        Error(fragment) => match parsed {
            Ok(s) => panic!("{expr:?} in {zone:?}: expected an error, parsed {s:?}"),
            Err(e) => {
                let message = e.to_string();
                assert!(
                    message.contains(fragment),
                    "{expr:?} in {zone:?}: message {message:?} lacks {fragment:?}"
                );
            }
        },
    }
}

const NY: Option<&str> = Some("America/New_York");
const BERLIN: Option<&str> = Some("Europe/Berlin");
const LORD_HOWE: Option<&str> = Some("Australia/Lord_Howe");
const TOKYO: Option<&str> = Some("Asia/Tokyo");

fn clone_want(want: &Want) -> Want {
    match want {
        Fires(f) => Fires(f),
        Error(e) => Error(e),
    }
}

#[test]
fn accessors() {
    let schedule = match Schedule::parse(" 30 2 * * * ", NY) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    };
    assert_eq!(schedule.expression(), " 30 2 * * * ");
    assert_eq!(schedule.timezone(), chrono_tz::America::New_York);
    assert_eq!(schedule.to_string(), " 30 2 * * *  (America/New_York)");
    let kinds = [
        ("30 2 * * *", true),
        ("0,30 1-3 * * 1-5", true),
        ("15 30 2 * * *", true),
        ("@daily", true),
        ("@weekly", true),
        ("@monthly", true),
        ("@yearly", true),
        ("@hourly", false),
        ("*/15 * * * *", false),
        ("0 * * * *", false),
        ("0 */2 * * *", false),
        ("0-59/5 2 * * *", false),
        ("* 30 2 * * *", false),
    ];
    for (expr, fixed) in kinds {
        match Schedule::parse(expr, None) {
            Ok(s) => assert_eq!(s.is_fixed_time(), fixed, "{expr}"),
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(parse_timezone("UTC"), Ok(Tz::UTC));
    fn assert_traits<T: Clone + fmt::Debug + Send + Sync>() {}
    assert_traits::<Schedule>();
    assert_traits::<ScheduleError>();
}
