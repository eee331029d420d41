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

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::{GapInfo, TZ_VARIANTS, Tz};

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
        problem: String,
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

    /// The first fire instant strictly after `after`.
    ///
    /// Pass the previous *scheduled* instant, not the current time, to walk the schedule.
    /// Returns `None` when the schedule has no fire time left before the end of 2100.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if after >= search_end() {
            return None;
        }
        let after = after.max(search_start());
        if self.timezone == Tz::UTC {
            return self.wall.next_after(after.naive_utc()).map(|w| w.and_utc());
        }
        match self.kind {
            Kind::FixedTime => self.next_fixed_time(after),
            Kind::Interval => self.next_interval(after),
        }
    }

    /// The next `n` fire instants strictly after `after`, strictly increasing. Fewer than `n`
    /// come back only when the schedule runs out (see [`Schedule::next_after`]).
    pub fn upcoming(&self, after: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(n.min(1024));
        let mut last = after;
        while out.len() < n {
            match self.next_after(last) {
                Some(next) => {
                    out.push(next);
                    last = next;
                }
                None => break,
            }
        }
        out
    }

    /// Fixed-time rule: walk matching wall times in order and map each into the zone; a gap
    /// time maps to the end of the gap, an overlap time to its first occurrence. The mapping
    /// never decreases, so the first wall time that maps past `after` is the answer.
    fn next_fixed_time(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tz = self.timezone;
        // Every wall time up to the local time of `after` maps to `after` or earlier.
        let mut wall = after.with_timezone(&tz).naive_local();
        for _ in 0..MAX_STEPS {
            let candidate = self.wall.next_after(wall)?;
            match tz.from_local_datetime(&candidate) {
                LocalResult::Single(at) => {
                    let at = at.to_utc();
                    if at > after {
                        return Some(at);
                    }
                    wall = candidate;
                }
                LocalResult::Ambiguous(first, second) => {
                    let first_utc = first.to_utc();
                    if first_utc > after {
                        return Some(first_utc);
                    }
                    // `after` lies in the repeated stretch, whose wall times already fired in
                    // their first occurrence: continue from the wall time the overlap ends at.
                    let old_offset = i64::from(first.offset().fix().local_minus_utc());
                    let change = first_offset_change(
                        tz,
                        first_utc.timestamp(),
                        second.to_utc().timestamp(),
                        old_offset,
                    );
                    wall = match change.and_then(|t| wall_time(t, old_offset)) {
                        Some(end) => (end - TimeDelta::seconds(1)).max(candidate),
                        None => candidate,
                    };
                }
                LocalResult::None => {
                    let gap_end = GapInfo::new(&candidate, &tz).and_then(|gap| gap.end);
                    match gap_end {
                        Some(end) if end.to_utc() > after => return Some(end.to_utc()),
                        // Every wall time in this gap maps to its end, which already fired.
                        Some(end) => {
                            wall = (end.naive_local() - TimeDelta::seconds(1)).max(candidate);
                        }
                        None => wall = candidate,
                    }
                }
            }
        }
        None
    }

    /// Interval rule: find the first real instant after `after` whose local wall time
    /// matches. Between two offset changes the local time runs in step with real time, so
    /// each stretch of constant offset is searched as one wall-clock range.
    fn next_interval(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let tz = self.timezone;
        // Fire times are whole seconds, so the answer is at or after `low`.
        let mut low = after.timestamp().checked_add(1)?;
        for _ in 0..MAX_STEPS {
            let offset = offset_at(tz, low)?;
            let from_wall = wall_time(low, offset)? - TimeDelta::seconds(1);
            let candidate = self.wall.next_after(from_wall)?;
            let at = candidate.and_utc().timestamp() - offset;
            match first_offset_change(tz, low, at, offset) {
                None => return DateTime::from_timestamp(at, 0),
                Some(change) => low = change,
            }
        }
        None
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.expression, self.timezone.name())
    }
}

/// Parses an IANA time zone name such as `Europe/Berlin`, suggesting the closest known name
/// when it is misspelt.
pub fn parse_timezone(name: &str) -> Result<Tz, ScheduleError> {
    Tz::from_str(name).map_err(|_| ScheduleError::UnknownTimeZone {
        name: name.to_owned(),
        suggestion: suggest_timezone(name),
    })
}

/// The known zone name closest to `name` by edit distance, ignoring case; for a common
/// abbreviation such as `PST`, the zone it usually stands for; else a well-known zone.
fn suggest_timezone(name: &str) -> String {
    /// Abbreviations people write that are not themselves tzdb names.
    const ABBREVIATIONS: [(&str, &str); 18] = [
        ("pst", "America/Los_Angeles"),
        ("pdt", "America/Los_Angeles"),
        ("edt", "America/New_York"),
        ("cst", "America/Chicago"),
        ("cdt", "America/Chicago"),
        ("mdt", "America/Denver"),
        ("akst", "America/Anchorage"),
        ("akdt", "America/Anchorage"),
        ("bst", "Europe/London"),
        ("cest", "Europe/Berlin"),
        ("eest", "Europe/Athens"),
        ("ist", "Asia/Kolkata"),
        ("jst", "Asia/Tokyo"),
        ("kst", "Asia/Seoul"),
        ("aest", "Australia/Sydney"),
        ("aedt", "Australia/Sydney"),
        ("nzst", "Pacific/Auckland"),
        ("nzdt", "Pacific/Auckland"),
    ];
    let wanted = name.trim().to_lowercase();
    if let Some((_, zone)) = ABBREVIATIONS.iter().find(|(abbr, _)| *abbr == wanted) {
        return (*zone).to_owned();
    }
    let wanted_has_area = wanted.contains('/');
    // Short names are too easy to match by accident ("PST" is one edit from "EST").
    let length = wanted.chars().count();
    let limit = if length <= 4 { 0 } else { (length / 4).max(1) };
    // The distance is at least the difference in length, so a name whose length is beyond the
    // limit from a zone's is not compared with it: a megabyte-long name in a manifest costs
    // one pass over the zones instead of a megabyte of work for each of them.
    let distance = |known: &str| {
        let reachable = known.chars().count().abs_diff(length) <= limit;
        if reachable {
            levenshtein(&wanted, known)
        } else {
            usize::MAX
        }
    };
    // Ranked by distance, then preferring a whole-name match to a city-only one.
    let mut best: Option<((usize, bool), &'static str)> = None;
    for tz in TZ_VARIANTS.iter() {
        let known = tz.name();
        let lower = known.to_lowercase();
        let mut rank = (distance(&lower), false);
        if !wanted_has_area {
            // Let "Tokyo" find "Asia/Tokyo".
            if let Some((_, city)) = lower.rsplit_once('/') {
                rank = rank.min((distance(city), true));
            }
        }
        if best.is_none_or(|(r, _)| rank < r) {
            best = Some((rank, known));
        }
    }
    match best {
        Some(((distance, _), known)) if distance <= limit => known.to_owned(),
        _ => "America/New_York".to_owned(),
    }
}

/// The edit distance (insertions, deletions, substitutions) between two strings.
fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    let mut current = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        current[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current[j + 1] = substitute.min(previous[j + 1] + 1).min(current[j] + 1);
        }
        std::mem::swap(&mut previous, &mut current);
    }
    previous[b.len()]
}

/// The most search steps one call may take. Each step either answers or moves past a DST
/// change (or a skipped stretch of one), so real schedules use a handful; the bound only
/// guarantees termination.
const MAX_STEPS: usize = 1024;

/// How far apart offsets are sampled when looking for a DST change. No zone changes its
/// offset twice within a day, so sampling daily finds the first change.
const PROBE_SECONDS: i64 = 86_400;

/// The earliest instant searched from; the `cron` crate knows no year before 1970.
fn search_start() -> DateTime<Utc> {
    DateTime::from_timestamp(-2 * 86_400, 0).unwrap_or(DateTime::UNIX_EPOCH)
}

/// The instant after which nothing fires; the `cron` crate knows no year after 2100.
fn search_end() -> DateTime<Utc> {
    // 2101-01-02T00:00:00Z, a day of slack for zones east of UTC.
    DateTime::from_timestamp(4_133_980_800 + 86_400, 0).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The zone's offset from UTC, in seconds, at the Unix time `secs`.
fn offset_at(tz: Tz, secs: i64) -> Option<i64> {
    let instant = DateTime::from_timestamp(secs, 0)?;
    let offset = tz.offset_from_utc_datetime(&instant.naive_utc()).fix();
    Some(i64::from(offset.local_minus_utc()))
}

/// The wall-clock time at Unix time `secs` under `offset`.
fn wall_time(secs: i64, offset: i64) -> Option<NaiveDateTime> {
    Some(DateTime::from_timestamp(secs.checked_add(offset)?, 0)?.naive_utc())
}

/// The first Unix time in `(from, to]` whose offset differs from `offset`, which must be the
/// offset at `from`. Samples daily, then bisects to the second.
fn first_offset_change(tz: Tz, from: i64, to: i64, offset: i64) -> Option<i64> {
    let mut same = from;
    while same < to {
        let probe = same.saturating_add(PROBE_SECONDS).min(to);
        if offset_at(tz, probe)? != offset {
            let mut changed = probe;
            while changed - same > 1 {
                let middle = same + (changed - same) / 2;
                if offset_at(tz, middle)? == offset {
                    same = middle;
                } else {
                    changed = middle;
                }
            }
            return Some(changed);
        }
        same = probe;
    }
    None
}

/// The wall-clock times an expression matches, as `cron` crate schedules read in naive time.
/// Under the Vixie rule (day-of-month and day-of-week both restricted) a day matches if either
/// field does, which takes two schedules: one per day field.
#[derive(Clone, Debug)]
struct WallClock {
    primary: cron::Schedule,
    by_weekday: Option<cron::Schedule>,
}

impl WallClock {
    /// The first matching wall time strictly after `wall`.
    fn next_after(&self, wall: NaiveDateTime) -> Option<NaiveDateTime> {
        let at = wall.and_utc();
        let first = self.primary.after(&at).next();
        let second = self.by_weekday.as_ref().and_then(|s| s.after(&at).next());
        let next = match (first, second) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        next.map(|t| t.naive_utc())
    }
}

/// The result of parsing the expression text, before a zone is attached.
struct Parsed {
    kind: Kind,
    wall: WallClock,
}

/// Allowed values and names of one field.
struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    /// The upper end of `*` and of an open step such as `3/5`; below `max` only for
    /// day-of-week, whose 7 repeats Sunday.
    open_max: u32,
    /// Three-letter names, the first standing for `min`.
    names: &'static [&'static str],
    /// Extra words for an out-of-range message.
    note: &'static str,
    /// Day-of-week: 7 is folded onto 0, and the `cron` crate gets names.
    weekday: bool,
}

const SECOND: FieldSpec = FieldSpec {
    name: "second",
    min: 0,
    max: 59,
    open_max: 59,
    names: &[],
    note: "",
    weekday: false,
};
const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    open_max: 59,
    names: &[],
    note: "",
    weekday: false,
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    open_max: 23,
    names: &[],
    note: "",
    weekday: false,
};
const DAY_OF_MONTH: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    open_max: 31,
    names: &[],
    note: "",
    weekday: false,
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    open_max: 12,
    names: &[
        "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
    ],
    note: " or a name JAN-DEC",
    weekday: false,
};
const DAY_OF_WEEK: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    open_max: 6,
    names: &["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"],
    note: " (0 and 7 are Sunday) or a name SUN-SAT",
    weekday: true,
};

/// Day-of-week names in the `cron` crate's spelling, indexed by crontab number 0-6.
const WEEKDAY_NAMES: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

/// One parsed field: the set of values as a bit mask, and whether its text starts with `*`
/// (which matters to the Vixie day rule).
struct Field {
    values: u64,
    starred: bool,
}

impl Field {
    /// The field in the `cron` crate's grammar: `*` when every value is allowed, else an
    /// explicit list (weekdays by name, since the crate numbers them from Sunday = 1).
    fn to_cron(&self, spec: &FieldSpec) -> String {
        let mut all = 0u64;
        for v in spec.min..=spec.open_max {
            all |= 1 << v;
        }
        if self.values & all == all {
            return "*".to_owned();
        }
        let items: Vec<String> = (spec.min..=spec.open_max)
            .filter(|v| self.values & (1 << v) != 0)
            .map(|v| {
                if spec.weekday {
                    WEEKDAY_NAMES[v as usize].to_owned()
                } else {
                    v.to_string()
                }
            })
            .collect();
        items.join(",")
    }
}

fn parse_expression(expr: &str) -> Result<Parsed, ScheduleError> {
    let text = expr.trim();
    if text.is_empty() {
        return Err(ScheduleError::Empty {
            expression: expr.to_owned(),
        });
    }
    let expanded;
    let fields: Vec<&str> = if text.starts_with('@') {
        expanded = expand_macro(expr, text)?;
        expanded.split_whitespace().collect()
    } else {
        text.split_whitespace().collect()
    };
    let (seconds, rest) = match fields.len() {
        5 => ("0", &fields[..]),
        6 => (fields[0], &fields[1..]),
        7 => {
            return Err(ScheduleError::YearField {
                expression: expr.to_owned(),
            });
        }
        found => {
            return Err(ScheduleError::FieldCount {
                expression: expr.to_owned(),
                found,
            });
        }
    };
    let [minutes, hours, days, months, weekdays] = [rest[0], rest[1], rest[2], rest[3], rest[4]];

    let second = parse_field(expr, &SECOND, seconds)?;
    let minute = parse_field(expr, &MINUTE, minutes)?;
    let hour = parse_field(expr, &HOUR, hours)?;
    let day = parse_field(expr, &DAY_OF_MONTH, days)?;
    let month = parse_field(expr, &MONTH, months)?;
    let weekday = parse_field(expr, &DAY_OF_WEEK, weekdays)?;

    let fixed = [seconds, minutes, hours]
        .iter()
        .all(|f| !f.contains('*') && !f.contains('/'));
    let kind = if fixed {
        Kind::FixedTime
    } else {
        Kind::Interval
    };

    // Vixie cron: when both day fields are restricted (neither starts with `*`), a day
    // matches if either does; otherwise both must, which the `cron` crate does by itself.
    let either_day = !day.starred && !weekday.starred;
    if !either_day && !any_day_exists(day.values, month.values) {
        return Err(ScheduleError::NeverFires {
            expression: expr.to_owned(),
        });
    }
    let time = format!(
        "{} {} {}",
        second.to_cron(&SECOND),
        minute.to_cron(&MINUTE),
        hour.to_cron(&HOUR)
    );
    let month_text = month.to_cron(&MONTH);
    let build = |day_text: &str, weekday_text: &str| {
        let source = format!("{time} {day_text} {month_text} {weekday_text}");
        cron::Schedule::from_str(&source).map_err(|e| ScheduleError::InvalidField {
            expression: expr.to_owned(),
            field: "translated",
            text: source.clone(),
            problem: format!("the cron library rejected it ({e}); please report this"),
        })
    };
    let wall = if either_day {
        WallClock {
            primary: build(&day.to_cron(&DAY_OF_MONTH), "*")?,
            by_weekday: Some(build("*", &weekday.to_cron(&DAY_OF_WEEK))?),
        }
    } else {
        WallClock {
            primary: build(&day.to_cron(&DAY_OF_MONTH), &weekday.to_cron(&DAY_OF_WEEK))?,
            by_weekday: None,
        }
    };
    Ok(Parsed { kind, wall })
}

/// The five fields a macro stands for.
fn expand_macro(expr: &str, text: &str) -> Result<String, ScheduleError> {
    let name = text.split_whitespace().next().unwrap_or(text);
    let fields = match name.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => {
            return Err(ScheduleError::UnknownMacro {
                expression: expr.to_owned(),
                name: name.to_owned(),
            });
        }
    };
    if name.len() != text.len() {
        return Err(ScheduleError::InvalidField {
            expression: expr.to_owned(),
            field: "macro",
            text: text.to_owned(),
            problem: format!("{name} stands alone; remove what follows it"),
        });
    }
    Ok(fields.to_owned())
}

/// Whether some chosen day of the month exists in some chosen month (February counts 29).
fn any_day_exists(days: u64, months: u64) -> bool {
    const LONGEST: [u32; 12] = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    (1..=12u32).any(|m| {
        months & (1 << m) != 0 && (1..=LONGEST[(m - 1) as usize]).any(|d| days & (1 << d) != 0)
    })
}

fn parse_field(expr: &str, spec: &FieldSpec, text: &str) -> Result<Field, ScheduleError> {
    let values = field_values(spec, text).map_err(|problem| ScheduleError::InvalidField {
        expression: expr.to_owned(),
        field: spec.name,
        text: text.to_owned(),
        problem,
    })?;
    Ok(Field {
        values,
        starred: text.starts_with('*'),
    })
}

/// The values a field allows, as a bit mask (day-of-week 7 folded onto 0), or the problem.
fn field_values(spec: &FieldSpec, text: &str) -> Result<u64, String> {
    let mut values = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err("a list has an empty item; remove the extra comma".to_owned());
        }
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(parse_step(spec, step)?)),
            None => (item, None),
        };
        let (low, high) = if range == "*" {
            (spec.min, spec.open_max)
        } else if let Some((low, high)) = range.split_once('-') {
            let (low, high) = (parse_value(spec, low)?, parse_value(spec, high)?);
            if low > high {
                return Err(format!(
                    "range {range} runs backwards; write the lower bound first, e.g. {high}-{low}, or split it into a list"
                ));
            }
            (low, high)
        } else {
            let value = parse_value(spec, range)?;
            match step {
                // `5/15` means from 5 to the end of the field in steps of 15.
                Some(_) => (value, spec.open_max.max(value)),
                None => (value, value),
            }
        };
        let mut value = low;
        while value <= high {
            values |= 1 << (if spec.weekday && value == 7 { 0 } else { value });
            value += step.unwrap_or(1);
        }
    }
    Ok(values)
}

fn parse_step(spec: &FieldSpec, text: &str) -> Result<u32, String> {
    let span = spec.open_max - spec.min + 1;
    match text.parse::<u32>() {
        Ok(0) => Err("a step of 0 never advances; use a step of 1 or more".to_owned()),
        Ok(step) if step > span => Err(format!(
            "step {step} is larger than the field's range {}-{}; use a step of at most {span}",
            spec.min, spec.open_max
        )),
        Ok(step) => Ok(step),
        Err(_) if text.is_empty() => Err("a '/' needs a step after it, e.g. */15".to_owned()),
        Err(_) => Err(format!(
            "step {text:?} is not a number; write a step like */15"
        )),
    }
}

fn parse_value(spec: &FieldSpec, text: &str) -> Result<u32, String> {
    let range = format!("{}-{}", spec.min, spec.max);
    if text.is_empty() {
        return Err(format!(
            "a range is missing a bound; write values {range}{}",
            spec.note
        ));
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(v) if (spec.min..=spec.max).contains(&v) => Ok(v),
            _ => Err(format!(
                "{text} is out of range; use values {range}{}",
                spec.note
            )),
        };
    }
    if let Some(index) = spec
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(text))
    {
        return Ok(spec.min + index as u32);
    }
    if text == "?" {
        return Err("'?' is not crontab syntax; use * instead".to_owned());
    }
    if text.contains(['L', 'W', '#']) && spec.names.iter().all(|n| !n.eq_ignore_ascii_case(text)) {
        let quartz = text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, 'L' | 'W' | '#'));
        if quartz {
            return Err(format!(
                "{text:?} uses the L, W or # extensions, which are not supported; use plain values {range}"
            ));
        }
    }
    if spec.names.is_empty() {
        Err(format!("{text:?} is not a number; use values {range}"))
    } else {
        Err(format!(
            "{text:?} is not a number or a three-letter name; use values {range}{}",
            spec.note
        ))
    }
}

/// Fires that fell between a trigger's last scheduled instant and now (a daemon that was down,
/// an actor that restarted, a fire handled late).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missed {
    /// How many scheduled instants in `(last, now]` (at most `cap`).
    pub count: u64,
    pub first: Option<DateTime<Utc>>,
    pub latest: Option<DateTime<Utc>>,
    /// The latest missed instant when it is within the starting deadline: run it now, once.
    pub catch_up: Option<DateTime<Utc>>,
    /// Where the next fire is computed from: the latest missed instant, or `last`.
    pub resume_from: DateTime<Utc>,
}

impl Missed {
    /// Missed fires that are only recorded (not caught up).
    pub fn recorded(&self) -> u64 {
        self.count - u64::from(self.catch_up.is_some())
    }
}

/// What was missed in `(last, now]`, and whether the latest one is still within
/// `deadline_secs` of `now` (Kubernetes CronJob's `startingDeadlineSeconds`). Walks at most
/// `cap` instants.
pub fn missed_fires(
    schedule: &Schedule,
    last: DateTime<Utc>,
    now: DateTime<Utc>,
    deadline_secs: Option<u64>,
    cap: usize,
) -> Missed {
    let (mut count, mut first, mut latest) = (0u64, None, None);
    let mut t = last;
    while let Some(n) = schedule.next_after(t) {
        if n > now || count as usize >= cap {
            break;
        }
        count += 1;
        first.get_or_insert(n);
        latest = Some(n);
        t = n;
    }
    let catch_up =
        latest.filter(|l| deadline_secs.is_some_and(|d| (now - *l).num_seconds() <= d as i64));
    Missed {
        count,
        first,
        latest,
        catch_up,
        resume_from: latest.unwrap_or(last),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

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

    fn clone_want(want: &Want) -> Want {
        match want {
            Fires(f) => Fires(f),
            Error(e) => Error(e),
        }
    }

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
                Error(
                    "unknown time zone \"PST\": use an IANA name such as \"America/Los_Angeles\"",
                ),
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
    fn brute_force(
        schedule: &Schedule,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<DateTime<Utc>> {
        let tz = schedule.timezone();
        let matches = |wall: NaiveDateTime| {
            schedule.wall.next_after(wall - TimeDelta::seconds(1)) == Some(wall)
        };
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

    #[test]
    fn long_zone_names_are_refused_without_comparing_them() {
        // Found by tests/props.rs: a 4 KiB name took seconds and a 1 MiB one hours, because
        // it was compared by edit distance with every zone name.
        let long = "Europe/".repeat(150_000);
        match parse_timezone(&long) {
            Err(ScheduleError::UnknownTimeZone { suggestion, .. }) => {
                assert_eq!(suggestion, "America/New_York");
            }
            other => panic!("a 1 MiB zone name gave {other:?}"),
        }
        // Near misses of ordinary length still get the zone they meant.
        for (name, want) in [
            ("Europe/Berln", "Europe/Berlin"),
            ("Tokio", "Asia/Tokyo"),
            ("america/new_yrok", "America/New_York"),
            ("PST", "America/Los_Angeles"),
        ] {
            assert_eq!(suggest_timezone(name), want, "{name}");
        }
    }

    #[test]
    fn levenshtein_distances() {
        let cases = [
            ("", "", 0),
            ("abc", "", 3),
            ("kitten", "sitting", 3),
            ("tokio", "tokyo", 1),
        ];
        for (a, b, want) in cases {
            assert_eq!(levenshtein(a, b), want, "{a} {b}");
        }
    }

    #[test]
    fn missed_fires_and_the_starting_deadline() {
        let s = Schedule::parse("0 * * * *", None).expect("hourly");
        let t = |h: u32, m: u32| {
            Utc.with_ymd_and_hms(2026, 3, 1, h, m, 0)
                .single()
                .expect("time")
        };
        // Down from 01:00 to 04:30: 02:00, 03:00 and 04:00 were missed.
        let m = missed_fires(&s, t(1, 0), t(4, 30), None, 1000);
        assert_eq!(
            (m.count, m.first, m.latest, m.catch_up),
            (3, Some(t(2, 0)), Some(t(4, 0)), None)
        );
        assert_eq!((m.recorded(), m.resume_from), (3, t(4, 0)));
        // A 45-minute deadline covers 04:00 (30 minutes ago): it runs once, two are recorded.
        let m = missed_fires(&s, t(1, 0), t(4, 30), Some(45 * 60), 1000);
        assert_eq!((m.catch_up, m.recorded()), (Some(t(4, 0)), 2));
        // A 10-minute deadline does not.
        let m = missed_fires(&s, t(1, 0), t(4, 30), Some(600), 1000);
        assert_eq!((m.catch_up, m.recorded()), (None, 3));
        // Nothing missed.
        let m = missed_fires(&s, t(4, 0), t(4, 30), Some(600), 1000);
        assert_eq!((m.count, m.catch_up, m.resume_from), (0, None, t(4, 0)));
        // The walk is capped.
        let every_second = Schedule::parse("* * * * * *", None).expect("every second");
        let m = missed_fires(&every_second, t(0, 0), t(4, 0), None, 100);
        assert_eq!(m.count, 100);
    }
}
