//! Cron schedules: parsing crontab expressions and computing the next fire instant in a time
//! zone. This module owns the grammar users write in `cron` triggers (5-field crontab lines,
//! 6-field lines with a leading seconds field, and the `@daily`-style macros) and the daylight
//! saving rules of SPEC §4. It wraps the `cron` crate, which does the calendar search, because
//! that crate on its own reads day-of-week 1 as Sunday, needs a seconds field, ANDs
//! day-of-month with day-of-week, skips fixed-time jobs that fall into a spring-forward gap,
//! fires them twice in a fall-back overlap, and drops interval times in the second half of an
//! overlap. Everything here is pure: time is a parameter, and the caller passes the previous
//! scheduled instant to [`Schedule::next_after`].
//!
//! Grammar. Five fields, `minute hour day-of-month month day-of-week`, or six with a leading
//! seconds field; each a list of values, ranges and steps (`1,15`, `9-17`, `*/15`, `1-5/2`,
//! `5/15` = from 5 to the end in steps of 15). Day-of-week is 0-7 with 0 and 7 both Sunday;
//! months and weekdays also take three-letter names in any case. When both day fields are
//! restricted (neither starts with `*`) a day matches if either does, as in Vixie cron;
//! otherwise both must. Not accepted: a seventh (year) field, `@reboot`, and Quartz's
//! `? L W #`; each fails with a message that says what to write instead.
//!
//! DST rules. A *fixed-time* schedule (its seconds, minute and hour fields contain no `*` and
//! no `/`, e.g. `30 2 * * *` or `@daily`) is walked in local wall-clock time: a wall time that
//! falls into a spring-forward gap fires once at the first instant after the gap, and a wall
//! time that occurs twice in a fall-back overlap fires once, at its first occurrence. An
//! *interval* schedule (`*/15 * * * *`, `@hourly`) fires at every real instant whose local
//! wall-clock time matches: times inside a gap do not exist and are skipped, and both halves
//! of an overlap fire, in order. Either way the fire times are strictly increasing.
//!
//! Limits. Expressions that can never fire (`0 0 30 2 *`) are rejected by [`Schedule::parse`].
//! The `cron` crate searches the years 1970 to 2100, so [`Schedule::next_after`] returns
//! `None` past 2100, and every search loop here is bounded.
//!
//! Layout: the grammar (`grammar.rs`), the DST walk that answers [`Schedule::next_after`]
//! (`walk.rs`), time zone names and suggestions (`zone.rs`), and the fires missed while a trigger
//! was not running (`missed.rs`).

mod grammar;
mod missed;
#[cfg(test)]
mod tests;
mod walk;
mod zone;

use std::fmt;

use chrono_tz::Tz;

pub use grammar::FieldProblem;
use grammar::{WallClock, parse_expression};
pub use missed::{Missed, missed_fires};
pub use zone::parse_timezone;

/// A parsed cron expression bound to a time zone, ready to answer "when does it fire next".
///
/// Parse once and keep it: [`Schedule::next_after`] reuses the `cron` schedules built here.
#[derive(Clone, Debug)]
pub struct Schedule {
    expression: String,
    timezone: Tz,
    kind: Kind,
    wall: WallClock,
}

/// How a schedule meets daylight saving transitions; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    FixedTime,
    Interval,
}

/// Why an expression or a time zone was rejected. Every message names the problem and the fix.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ScheduleError {
    /// The expression is empty or blank.
    #[error(
        "invalid cron schedule {expression:?}: the expression is empty; write 5 fields (minute hour day-of-month month day-of-week) such as \"0 2 * * *\", or a macro like @daily"
    )]
    Empty { expression: String },
    /// The expression has a number of fields that no accepted form has.
    #[error(
        "invalid cron schedule {expression:?}: expected 5 fields (minute hour day-of-month month day-of-week), 6 with a leading seconds field, or a macro like @daily"
    )]
    FieldCount { expression: String, found: usize },
    /// The expression has 7 fields; the trailing year field is not supported.
    #[error(
        "invalid cron schedule {expression:?}: 7 fields (a trailing year field) are not supported; use 5 fields (minute hour day-of-month month day-of-week) or 6 with a leading seconds field"
    )]
    YearField { expression: String },
    /// An `@` macro this module does not know, such as `@reboot`.
    #[error(
        "invalid cron schedule {expression:?}: unknown macro {name:?}; use @yearly, @annually, @monthly, @weekly, @daily, @midnight or @hourly, or write the fields out"
    )]
    UnknownMacro { expression: String, name: String },
    /// One field holds a bad value, range, step or name.
    #[error("invalid cron schedule {expression:?}: {field} field {text:?}: {problem}")]
    InvalidField {
        expression: String,
        field: &'static str,
        text: String,
        /// Boxed: it is the largest part, and a schedule error travels inside others.
        problem: Box<FieldProblem>,
    },
    /// The fields are each valid but no date satisfies them, such as February 30.
    #[error(
        "invalid cron schedule {expression:?}: it never fires, because none of the chosen months has any of the chosen days of the month; check the day-of-month and month fields"
    )]
    NeverFires { expression: String },
    /// The time zone is not an IANA name that `chrono-tz` knows.
    #[error("unknown time zone {name:?}: use an IANA name such as {suggestion:?}")]
    UnknownTimeZone { name: String, suggestion: String },
}

impl Schedule {
    /// Parses `expr` for the IANA zone `timezone`; `None` means UTC.
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let timezone = match timezone {
            Some(name) => parse_timezone(name)?,
            None => Tz::UTC,
        };
        let parsed = parse_expression(expr)?;
        Ok(Schedule {
            expression: expr.to_owned(),
            timezone,
            kind: parsed.kind,
            wall: parsed.wall,
        })
    }

    /// The expression as the user wrote it.
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The zone the expression's wall-clock times are read in.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// Whether the schedule names fixed wall-clock times (fires once per matching wall time
    /// across DST changes) rather than an interval (follows real elapsed time).
    pub fn is_fixed_time(&self) -> bool {
        self.kind == Kind::FixedTime
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.expression, self.timezone.name())
    }
}
