//! The grammar table (fields, ranges, steps, names, macros, the Vixie day rule) and the table of
//! refused expressions with the words their messages must contain.

use super::*;

#[test]
fn grammar() {
    // Wednesday 2026-01-07 12:00 UTC.
    let wed = "2026-01-07T12:00:00Z";
    let cases: &[(&str, Option<&str>, &str, Want)] = &[
        // Crontab Sunday is 0 or 7; the cron crate alone would read 7 as Saturday.
        (
            "0 2 * * 0",
            None,
            wed,
            Fires(&["2026-01-11T02:00:00Z", "2026-01-18T02:00:00Z"]),
        ),
        (
            "0 2 * * 7",
            None,
            wed,
            Fires(&["2026-01-11T02:00:00Z", "2026-01-18T02:00:00Z"]),
        ),
        ("0 2 * * sun", None, wed, Fires(&["2026-01-11T02:00:00Z"])),
        (
            "0 2 * * 0",
            TOKYO,
            "2026-11-29T00:00:00Z",
            Fires(&["2026-12-06T02:00:00+09:00", "2026-12-13T02:00:00+09:00"]),
        ),
        // Six fields: a leading seconds field, and the same weekday numbers.
        (
            "0 0 10 * * 1",
            None,
            wed,
            Fires(&["2026-01-12T10:00:00Z", "2026-01-19T10:00:00Z"]),
        ),
        (
            "15 0 10 * * 1",
            None,
            wed,
            Fires(&["2026-01-12T10:00:15Z", "2026-01-19T10:00:15Z"]),
        ),
        (
            "*/20 * * * * *",
            None,
            wed,
            Fires(&[
                "2026-01-07T12:00:20Z",
                "2026-01-07T12:00:40Z",
                "2026-01-07T12:01:00Z",
            ]),
        ),
        (
            "0 9 * * 1-5",
            None,
            wed,
            Fires(&[
                "2026-01-08T09:00:00Z",
                "2026-01-09T09:00:00Z",
                "2026-01-12T09:00:00Z",
                "2026-01-13T09:00:00Z",
                "2026-01-14T09:00:00Z",
            ]),
        ),
        (
            "0 9 * * mon-FRI",
            None,
            wed,
            Fires(&[
                "2026-01-08T09:00:00Z",
                "2026-01-09T09:00:00Z",
                "2026-01-12T09:00:00Z",
            ]),
        ),
        (
            "0 0 1 jan,Jul *",
            None,
            wed,
            Fires(&["2026-07-01T00:00:00Z", "2027-01-01T00:00:00Z"]),
        ),
        (
            "0 0 1 2-4,NOV-dec/1 *",
            None,
            wed,
            Fires(&[
                "2026-02-01T00:00:00Z",
                "2026-03-01T00:00:00Z",
                "2026-04-01T00:00:00Z",
                "2026-11-01T00:00:00Z",
                "2026-12-01T00:00:00Z",
            ]),
        ),
        // Fri, Sat, Sun.
        (
            "0 0 * * 5-7",
            None,
            wed,
            Fires(&[
                "2026-01-09T00:00:00Z",
                "2026-01-10T00:00:00Z",
                "2026-01-11T00:00:00Z",
                "2026-01-16T00:00:00Z",
            ]),
        ),
        // Sun, Tue, Thu, Sat.
        (
            "0 0 * * */2",
            None,
            wed,
            Fires(&[
                "2026-01-08T00:00:00Z",
                "2026-01-10T00:00:00Z",
                "2026-01-11T00:00:00Z",
                "2026-01-13T00:00:00Z",
            ]),
        ),
        // Mon, Wed, Fri.
        (
            "0 0 * * 1/2",
            None,
            wed,
            Fires(&[
                "2026-01-09T00:00:00Z",
                "2026-01-12T00:00:00Z",
                "2026-01-14T00:00:00Z",
            ]),
        ),
        (
            "*/15 * * * *",
            None,
            "2026-01-07T12:05:30Z",
            Fires(&[
                "2026-01-07T12:15:00Z",
                "2026-01-07T12:30:00Z",
                "2026-01-07T12:45:00Z",
                "2026-01-07T13:00:00Z",
            ]),
        ),
        (
            "5,10 8-10/2 * * *",
            None,
            wed,
            Fires(&[
                "2026-01-08T08:05:00Z",
                "2026-01-08T08:10:00Z",
                "2026-01-08T10:05:00Z",
                "2026-01-08T10:10:00Z",
                "2026-01-09T08:05:00Z",
            ]),
        ),
        (
            "50/5 23 * * *",
            None,
            wed,
            Fires(&[
                "2026-01-07T23:50:00Z",
                "2026-01-07T23:55:00Z",
                "2026-01-08T23:50:00Z",
            ]),
        ),
        // Strictly after: an instant on a fire time does not return that fire time.
        ("0 12 * * *", None, wed, Fires(&["2026-01-08T12:00:00Z"])),
        (
            "0 12 * * *",
            None,
            "2026-01-07T11:59:59.999Z",
            Fires(&["2026-01-07T12:00:00Z"]),
        ),
        (
            "  0   12 * * *  ",
            None,
            wed,
            Fires(&["2026-01-08T12:00:00Z"]),
        ),
        // Macros.
        (
            "@yearly",
            None,
            wed,
            Fires(&["2027-01-01T00:00:00Z", "2028-01-01T00:00:00Z"]),
        ),
        ("@annually", None, wed, Fires(&["2027-01-01T00:00:00Z"])),
        (
            "@monthly",
            None,
            wed,
            Fires(&["2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"]),
        ),
        (
            "@weekly",
            None,
            wed,
            Fires(&["2026-01-11T00:00:00Z", "2026-01-18T00:00:00Z"]),
        ),
        (
            "@daily",
            None,
            wed,
            Fires(&["2026-01-08T00:00:00Z", "2026-01-09T00:00:00Z"]),
        ),
        ("@midnight", None, wed, Fires(&["2026-01-08T00:00:00Z"])),
        (
            "@HOURLY",
            None,
            wed,
            Fires(&["2026-01-07T13:00:00Z", "2026-01-07T14:00:00Z"]),
        ),
        (
            "@daily",
            TOKYO,
            wed,
            Fires(&["2026-01-08T00:00:00+09:00", "2026-01-09T00:00:00+09:00"]),
        ),
        // Vixie: both day fields restricted, so the 13th OR any Friday.
        (
            "0 0 13 * 5",
            None,
            "2026-01-01T00:00:00Z",
            Fires(&[
                "2026-01-02T00:00:00Z",
                "2026-01-09T00:00:00Z",
                "2026-01-13T00:00:00Z",
                "2026-01-16T00:00:00Z",
                "2026-01-23T00:00:00Z",
                "2026-01-30T00:00:00Z",
                "2026-02-06T00:00:00Z",
                "2026-02-13T00:00:00Z",
                "2026-02-20T00:00:00Z",
            ]),
        ),
        // A day field starting with `*` means both must match: odd days that are Mondays.
        (
            "0 0 */2 * 1",
            None,
            "2026-01-01T00:00:00Z",
            Fires(&[
                "2026-01-05T00:00:00Z",
                "2026-01-19T00:00:00Z",
                "2026-02-09T00:00:00Z",
                "2026-02-23T00:00:00Z",
            ]),
        ),
        // Only the weekday restricted: the day-of-month `*` does not widen it.
        (
            "0 0 * * 5",
            None,
            "2026-01-01T00:00:00Z",
            Fires(&["2026-01-02T00:00:00Z", "2026-01-09T00:00:00Z"]),
        ),
        // February 29 waits for the next leap year.
        (
            "0 0 29 2 *",
            None,
            "2026-01-01T00:00:00Z",
            Fires(&["2028-02-29T00:00:00Z", "2032-02-29T00:00:00Z"]),
        ),
        // 31st: months without one are skipped.
        (
            "0 0 31 * *",
            None,
            "2026-01-31T00:00:00Z",
            Fires(&["2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z"]),
        ),
        // Nothing past the cron crate's last year.
        ("@yearly", None, "2100-06-01T00:00:00Z", Fires(&[])),
        (
            "@yearly",
            NY,
            "2099-06-01T00:00:00Z",
            Fires(&["2100-01-01T00:00:00-05:00"]),
        ),
    ];
    for (expr, zone, from, want) in cases {
        check(expr, *zone, from, clone_want(want));
    }
}

#[test]
fn errors() {
    let from = "2026-01-01T00:00:00Z";
    let cases: &[(&str, Option<&str>, Want)] = &[
        (
            "0 2 * *",
            None,
            Error(
                "invalid cron schedule \"0 2 * *\": expected 5 fields (minute hour day-of-month month day-of-week), 6 with a leading seconds field, or a macro like @daily",
            ),
        ),
        ("", None, Error("the expression is empty")),
        ("   ", None, Error("the expression is empty")),
        (
            "0 0 2 * * * 2026",
            None,
            Error("7 fields (a trailing year field) are not supported"),
        ),
        ("1 2 3 4 5 6 7 8", None, Error("expected 5 fields")),
        (
            "@reboot",
            None,
            Error("unknown macro \"@reboot\"; use @yearly"),
        ),
        ("@daily 5", None, Error("@daily stands alone")),
        (
            "60 * * * *",
            None,
            Error("minute field \"60\": 60 is out of range; use values 0-59"),
        ),
        (
            "0 24 * * *",
            None,
            Error("hour field \"24\": 24 is out of range; use values 0-23"),
        ),
        (
            "0 0 0 * *",
            None,
            Error("day-of-month field \"0\": 0 is out of range; use values 1-31"),
        ),
        (
            "0 0 * 13 *",
            None,
            Error("month field \"13\": 13 is out of range; use values 1-12"),
        ),
        (
            "0 2 * * 8",
            None,
            Error(
                "day-of-week field \"8\": 8 is out of range; use values 0-7 (0 and 7 are Sunday)",
            ),
        ),
        (
            "60 0 0 * * *",
            None,
            Error("second field \"60\": 60 is out of range"),
        ),
        (
            "0 5-1 * * *",
            None,
            Error("hour field \"5-1\": range 5-1 runs backwards"),
        ),
        (
            "0 0 * * FRI-MON",
            None,
            Error("range FRI-MON runs backwards"),
        ),
        ("*/0 * * * *", None, Error("a step of 0 never advances")),
        (
            "*/61 * * * *",
            None,
            Error("step 61 is larger than the field's range 0-59"),
        ),
        ("*/x * * * *", None, Error("step \"x\" is not a number")),
        ("*/ * * * *", None, Error("a '/' needs a step after it")),
        ("1,,2 * * * *", None, Error("a list has an empty item")),
        ("-5 * * * *", None, Error("a range is missing a bound")),
        (
            "0 0 * * MONDAY",
            None,
            Error("\"MONDAY\" is not a number or a three-letter name"),
        ),
        ("0 0 1 JANUARY *", None, Error("month field \"JANUARY\"")),
        (
            "0 MON * * *",
            None,
            Error("hour field \"MON\": \"MON\" is not a number"),
        ),
        (
            "0 0 ? * MON",
            None,
            Error("'?' is not crontab syntax; use * instead"),
        ),
        ("0 0 L * *", None, Error("L, W or # extensions")),
        ("0 0 * * 5#3", None, Error("L, W or # extensions")),
        ("0 0 30 2 *", None, Error("it never fires")),
        ("0 0 31 4,6,9,11 *", None, Error("it never fires")),
        (
            "0 0 1 * *",
            Some("Asia/Tokio"),
            Error("unknown time zone \"Asia/Tokio\": use an IANA name such as \"Asia/Tokyo\""),
        ),
        (
            "0 0 1 * *",
            Some("europe/berlin"),
            Error("such as \"Europe/Berlin\""),
        ),
        ("0 0 1 * *", Some("Tokyo"), Error("such as \"Asia/Tokyo\"")),
        ("0 0 1 * *", Some(""), Error("unknown time zone \"\"")),
        (
            "0 0 1 * *",
            Some("Nowhere/Zzzzzzzzzz"),
            Error("such as \"America/New_York\""),
        ),
        (
            "0 0 1 * *",
            Some("PST"),
            Error("unknown time zone \"PST\": use an IANA name such as \"America/Los_Angeles\""),
        ),
        (
            "0 0 1 * *",
            Some("Amerca/New_Yrok"),
            Error("such as \"America/New_York\""),
        ),
        ("0 0 1 * *", Some("utc"), Error("such as \"UTC\"")),
        (
            "0 0 1 * *",
            Some("Europe/Berlin "),
            Error("such as \"Europe/Berlin\""),
        ),
    ];
    for (expr, zone, want) in cases {
        check(expr, *zone, from, clone_want(want));
    }
    // Both day fields restricted: February 30 or any Monday in February, so it fires.
    check(
        "0 0 30 2 1",
        None,
        "2026-01-01T00:00:00Z",
        Fires(&["2026-02-02T00:00:00Z", "2026-02-09T00:00:00Z"]),
    );
}
