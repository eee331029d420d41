//! The daylight saving rules: a table across the transitions of several zones, the transition
//! dates themselves, long walks that must strictly increase, and agreement with a brute-force
//! oracle written straight from the definitions in the module documentation.

use std::collections::BTreeSet;

use chrono::{LocalResult, NaiveDateTime, TimeDelta, TimeZone};
use chrono_tz::GapInfo;

use super::*;
use crate::domain::schedule::walk::{first_offset_change, offset_at};

#[test]
fn daylight_saving() {
    let cases: &[(&str, Option<&str>, &str, Want)] = &[
        // New York springs forward 2026-03-08 02:00 EST -> 03:00 EDT.
        // A fixed time in the gap fires once, when the gap ends.
        (
            "30 2 * * *",
            NY,
            "2026-03-07T12:00:00Z",
            Fires(&["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
        ),
        (
            "30 2 * * *",
            NY,
            "2026-03-08T07:00:00Z",
            Fires(&["2026-03-09T02:30:00-04:00"]),
        ),
        (
            "0 2 * * 0",
            NY,
            "2026-03-01T12:00:00Z",
            Fires(&["2026-03-08T03:00:00-04:00", "2026-03-15T02:00:00-04:00"]),
        ),
        // Several fixed times in one gap still fire once, then the 03:00 time is the same
        // instant and does not fire again.
        (
            "0,30 2,3 * * *",
            NY,
            "2026-03-08T06:00:00Z",
            Fires(&[
                "2026-03-08T03:00:00-04:00",
                "2026-03-08T03:30:00-04:00",
                "2026-03-09T02:00:00-04:00",
            ]),
        ),
        // An interval skips the times that do not exist.
        (
            "*/15 * * * *",
            NY,
            "2026-03-08T06:30:00Z",
            Fires(&[
                "2026-03-08T01:45:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-08T03:15:00-04:00",
            ]),
        ),
        (
            "@hourly",
            NY,
            "2026-03-08T05:30:00Z",
            Fires(&[
                "2026-03-08T01:00:00-05:00",
                "2026-03-08T03:00:00-04:00",
                "2026-03-08T04:00:00-04:00",
            ]),
        ),
        // New York falls back 2026-11-01 02:00 EDT -> 01:00 EST.
        // A fixed time in the overlap fires once, at its first occurrence.
        (
            "30 1 * * *",
            NY,
            "2026-10-31T12:00:00Z",
            Fires(&["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
        ),
        // Asked from inside the repeated hour, it has already fired.
        (
            "30 1 * * *",
            NY,
            "2026-11-01T06:15:00Z",
            Fires(&["2026-11-02T01:30:00-05:00"]),
        ),
        (
            "0,20,40 1 * * *",
            NY,
            "2026-11-01T06:25:00Z",
            Fires(&["2026-11-02T01:00:00-05:00"]),
        ),
        (
            "0-59 1 * * *",
            NY,
            "2026-11-01T06:25:00Z",
            Fires(&["2026-11-02T01:00:00-05:00"]),
        ),
        // A step makes it an interval, which fires in the second half too.
        (
            "0-59/20 1 * * *",
            NY,
            "2026-11-01T06:25:00Z",
            Fires(&["2026-11-01T01:40:00-05:00"]),
        ),
        // An interval fires in both halves, in order.
        (
            "*/30 * * * *",
            NY,
            "2026-11-01T04:45:00Z",
            Fires(&[
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:30:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T01:30:00-05:00",
                "2026-11-01T02:00:00-05:00",
            ]),
        ),
        // The raw crate answers 01:00 EDT again from 01:45 EDT; the wrapper moves on.
        (
            "*/15 * * * *",
            NY,
            "2026-11-01T05:45:00Z",
            Fires(&["2026-11-01T01:00:00-05:00", "2026-11-01T01:15:00-05:00"]),
        ),
        (
            "*/30 * * * *",
            NY,
            "2026-11-01T06:15:00Z",
            Fires(&["2026-11-01T01:30:00-05:00"]),
        ),
        (
            "@hourly",
            NY,
            "2026-11-01T04:30:00Z",
            Fires(&[
                "2026-11-01T01:00:00-04:00",
                "2026-11-01T01:00:00-05:00",
                "2026-11-01T02:00:00-05:00",
            ]),
        ),
        (
            "0 30 1 * * *",
            NY,
            "2026-10-31T12:00:00Z",
            Fires(&["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
        ),
        // Berlin springs forward 2026-03-29 02:00 CET -> 03:00 CEST.
        (
            "30 2 * * *",
            BERLIN,
            "2026-03-28T12:00:00Z",
            Fires(&["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]),
        ),
        (
            "*/30 * * * *",
            BERLIN,
            "2026-03-29T00:00:00Z",
            Fires(&[
                "2026-03-29T01:30:00+01:00",
                "2026-03-29T03:00:00+02:00",
                "2026-03-29T03:30:00+02:00",
            ]),
        ),
        // Berlin falls back 2026-10-25 03:00 CEST -> 02:00 CET.
        (
            "30 2 * * *",
            BERLIN,
            "2026-10-24T12:00:00Z",
            Fires(&["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]),
        ),
        (
            "*/30 2 * * *",
            BERLIN,
            "2026-10-24T12:00:00Z",
            Fires(&[
                "2026-10-25T02:00:00+02:00",
                "2026-10-25T02:30:00+02:00",
                "2026-10-25T02:00:00+01:00",
                "2026-10-25T02:30:00+01:00",
                "2026-10-26T02:00:00+01:00",
            ]),
        ),
        // Lord Howe shifts by 30 minutes: 02:00 -> 02:30 on 2026-10-04.
        (
            "15 2 * * *",
            LORD_HOWE,
            "2026-10-03T00:00:00Z",
            Fires(&["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"]),
        ),
        (
            "*/15 * * * *",
            LORD_HOWE,
            "2026-10-03T15:10:00Z",
            Fires(&[
                "2026-10-04T01:45:00+10:30",
                "2026-10-04T02:30:00+11:00",
                "2026-10-04T02:45:00+11:00",
            ]),
        ),
        // And back on 2026-04-05: 02:00 +11:00 -> 01:30 +10:30.
        (
            "45 1 * * *",
            LORD_HOWE,
            "2026-04-04T00:00:00Z",
            Fires(&["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"]),
        ),
        (
            "*/15 * * * *",
            LORD_HOWE,
            "2026-04-04T14:20:00Z",
            Fires(&[
                "2026-04-05T01:30:00+11:00",
                "2026-04-05T01:45:00+11:00",
                "2026-04-05T01:30:00+10:30",
                "2026-04-05T01:45:00+10:30",
                "2026-04-05T02:00:00+10:30",
            ]),
        ),
        // Tokyo has no DST.
        (
            "30 8 * * *",
            TOKYO,
            "2026-03-08T00:00:00Z",
            Fires(&["2026-03-09T08:30:00+09:00", "2026-03-10T08:30:00+09:00"]),
        ),
        (
            "*/30 * * * *",
            TOKYO,
            "2026-11-01T05:10:00Z",
            Fires(&["2026-11-01T14:30:00+09:00", "2026-11-01T15:00:00+09:00"]),
        ),
    ];
    for (expr, zone, from, want) in cases {
        check(expr, *zone, from, clone_want(want));
    }
}

/// The DST transitions the tests rely on, checked against chrono-tz itself.
#[test]
fn transition_dates() {
    // Offsets in minutes east of UTC.
    let cases = [
        ("America/New_York", "2026-03-08T07:00:00Z", -300, -240),
        ("America/New_York", "2026-11-01T06:00:00Z", -240, -300),
        ("Europe/Berlin", "2026-03-29T01:00:00Z", 60, 120),
        ("Europe/Berlin", "2026-10-25T01:00:00Z", 120, 60),
        // 2026-10-04 02:00 +10:30 -> 02:30 +11:00.
        ("Australia/Lord_Howe", "2026-10-03T15:30:00Z", 630, 660),
        // 2026-04-05 02:00 +11:00 -> 01:30 +10:30.
        ("Australia/Lord_Howe", "2026-04-04T15:00:00Z", 660, 630),
    ];
    for (zone, change, before, after) in cases {
        let tz = match parse_timezone(zone) {
            Ok(tz) => tz,
            Err(e) => panic!("{e}"),
        };
        let change = at(change).timestamp();
        let minutes = |secs| offset_at(tz, secs).map(|o| o / 60);
        assert_eq!(minutes(change - 1), Some(before), "{zone} before");
        assert_eq!(minutes(change), Some(after), "{zone} after");
        assert_eq!(
            first_offset_change(tz, change - 3 * 86_400, change + 86_400, before * 60),
            Some(change),
            "{zone}"
        );
    }
}

const ZONES: [&str; 6] = [
    "UTC",
    "America/New_York",
    "Europe/Berlin",
    "Australia/Lord_Howe",
    "Asia/Tokyo",
    "America/Santiago",
];

#[test]
fn long_walks_strictly_increase() {
    let exprs = [
        "*/15 * * * *",
        "0 */5 * * *",
        "30 2 * * *",
        "0,30 1,2 * * *",
        "0 0 13 * 5",
        "@hourly",
        "@weekly",
        "45 1 * * 0",
        "*/7 */3 * * *",
    ];
    let from = at("2026-01-01T00:00:00Z");
    for zone in ZONES {
        for expr in exprs {
            let schedule = match Schedule::parse(expr, Some(zone)) {
                Ok(s) => s,
                Err(e) => panic!("{e}"),
            };
            let fires = schedule.upcoming(from, 500);
            assert_eq!(fires.len(), 500, "{expr} in {zone}");
            assert!(fires[0] > from, "{expr} in {zone}");
            for pair in fires.windows(2) {
                assert!(pair[0] < pair[1], "{expr} in {zone}: {pair:?}");
            }
        }
    }
    // A year of daily fires really does span the transitions.
    let daily = Schedule::parse("30 2 * * *", NY).map(|s| s.upcoming(from, 500));
    assert!(daily.is_ok_and(|f| f.last().is_some_and(|t| *t > at("2027-05-01T00:00:00Z"))));
}

/// The fire times by brute force over every minute of `[from, to]`, straight from the
/// definitions in the module documentation.
fn brute_force(schedule: &Schedule, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let tz = schedule.timezone();
    let matches =
        |wall: NaiveDateTime| schedule.wall.next_after(wall - TimeDelta::seconds(1)) == Some(wall);
    let mut fires = BTreeSet::new();
    if schedule.is_fixed_time() {
        let mut wall = from.naive_utc() - TimeDelta::days(1);
        while wall <= to.naive_utc() + TimeDelta::days(1) {
            if matches(wall) {
                let instant = match tz.from_local_datetime(&wall) {
                    LocalResult::Single(t) | LocalResult::Ambiguous(t, _) => Some(t),
                    LocalResult::None => GapInfo::new(&wall, &tz).and_then(|g| g.end),
                };
                fires.extend(instant.map(|t| t.to_utc()));
            }
            wall += TimeDelta::minutes(1);
        }
    } else {
        let mut instant = from;
        while instant <= to {
            if matches(instant.with_timezone(&tz).naive_local()) {
                fires.insert(instant);
            }
            instant += TimeDelta::minutes(1);
        }
    }
    fires
        .into_iter()
        .filter(|t| *t > from && *t <= to)
        .collect()
}

#[test]
fn agrees_with_brute_force_around_transitions() {
    let exprs = [
        "*/15 * * * *",
        "*/7 * * * *",
        "0 * * * *",
        "30 * * * *",
        "30 2 * * *",
        "0,30 1,2,3 * * *",
        "15,45 0-3 * * *",
        "59 1 * * *",
        "0 2 * * *",
        "0 3 * * *",
        "0 0 * * *",
        "*/20 0-4 * * *",
    ];
    let windows = [
        (
            "America/New_York",
            "2026-03-07T20:00:00Z",
            "2026-03-08T16:00:00Z",
        ),
        (
            "America/New_York",
            "2026-10-31T20:00:00Z",
            "2026-11-01T16:00:00Z",
        ),
        (
            "Europe/Berlin",
            "2026-03-28T20:00:00Z",
            "2026-03-29T16:00:00Z",
        ),
        (
            "Europe/Berlin",
            "2026-10-24T20:00:00Z",
            "2026-10-25T16:00:00Z",
        ),
        (
            "Australia/Lord_Howe",
            "2026-10-03T08:00:00Z",
            "2026-10-04T08:00:00Z",
        ),
        (
            "Australia/Lord_Howe",
            "2026-04-04T08:00:00Z",
            "2026-04-05T08:00:00Z",
        ),
        // Santiago changes at local midnight, so "0 0 * * *" meets the gap.
        (
            "America/Santiago",
            "2026-04-04T12:00:00Z",
            "2026-04-05T12:00:00Z",
        ),
        (
            "America/Santiago",
            "2026-09-05T12:00:00Z",
            "2026-09-06T12:00:00Z",
        ),
    ];
    for (zone, from, to) in windows {
        let (from, to) = (at(from), at(to));
        for expr in exprs {
            let schedule = match Schedule::parse(expr, Some(zone)) {
                Ok(s) => s,
                Err(e) => panic!("{e}"),
            };
            let want = brute_force(&schedule, from, to);
            let got: Vec<DateTime<Utc>> = schedule
                .upcoming(from, want.len() + 1)
                .into_iter()
                .filter(|t| *t <= to)
                .collect();
            assert_eq!(got, want, "{expr} in {zone} from {from}");
            // Starting from every minute of the window gives the same next fire.
            let mut start = from;
            while start < to {
                let want_next = want.iter().find(|t| **t > start).copied();
                if let Some(next) = want_next {
                    assert_eq!(
                        schedule.next_after(start),
                        Some(next),
                        "{expr} in {zone} after {start}"
                    );
                }
                start += TimeDelta::minutes(5);
            }
        }
    }
}
