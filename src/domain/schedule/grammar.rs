//! The crontab grammar: 5- and 6-field expressions and the `@daily`-style macros, read field by
//! field (values, ranges, steps, month and weekday names) into [`WallClock`], the `cron` crate
//! schedules that match the expression's wall-clock times. Each refusal names the field and the
//! fix; Quartz's `? L W #`, `@reboot` and a year field are refused with what to write instead.

use std::str::FromStr;

use chrono::NaiveDateTime;

use super::{Kind, ScheduleError};

/// The wall-clock times an expression matches, as `cron` crate schedules read in naive time.
/// Under the Vixie rule (day-of-month and day-of-week both restricted) a day matches if either
/// field does, which takes two schedules: one per day field.
#[derive(Clone, Debug)]
pub(super) struct WallClock {
    primary: cron::Schedule,
    by_weekday: Option<cron::Schedule>,
}

impl WallClock {
    /// The first matching wall time strictly after `wall`.
    pub(super) fn next_after(&self, wall: NaiveDateTime) -> Option<NaiveDateTime> {
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
pub(super) struct Parsed {
    pub(super) kind: Kind,
    pub(super) wall: WallClock,
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

pub(super) fn parse_expression(expr: &str) -> Result<Parsed, ScheduleError> {
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
            problem: Box::new(FieldProblem::CronRejected(e.to_string())),
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
            problem: Box::new(FieldProblem::MacroNotAlone(name.to_owned())),
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
        problem: Box::new(problem),
    })?;
    Ok(Field {
        values,
        starred: text.starts_with('*'),
    })
}

/// What is wrong with one field of an expression; each message names the fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    #[error("a list has an empty item; remove the extra comma")]
    EmptyItem,
    /// A range whose bounds, as written, are `low-high` with `low > high`.
    #[error(
        "range {range} runs backwards; write the lower bound first, e.g. {high}-{low}, or split it into a list"
    )]
    Backwards { range: String, low: u32, high: u32 },
    #[error("a step of 0 never advances; use a step of 1 or more")]
    ZeroStep,
    #[error(
        "step {step} is larger than the field's range {min}-{max}; use a step of at most {}",
        .max - .min + 1
    )]
    StepTooLarge { step: u32, min: u32, max: u32 },
    #[error("a '/' needs a step after it, e.g. */15")]
    MissingStep,
    #[error("step {0:?} is not a number; write a step like */15")]
    StepNotANumber(String),
    #[error("a range is missing a bound; write values {min}-{max}{note}")]
    MissingBound {
        min: u32,
        max: u32,
        note: &'static str,
    },
    #[error("{text} is out of range; use values {min}-{max}{note}")]
    OutOfRange {
        text: String,
        min: u32,
        max: u32,
        note: &'static str,
    },
    #[error("'?' is not crontab syntax; use * instead")]
    QuestionMark,
    #[error(
        "{text:?} uses the L, W or # extensions, which are not supported; use plain values {min}-{max}"
    )]
    Quartz { text: String, min: u32, max: u32 },
    #[error("{text:?} is not a number; use values {min}-{max}")]
    NotANumber { text: String, min: u32, max: u32 },
    #[error("{text:?} is not a number or a three-letter name; use values {min}-{max}{note}")]
    NotANumberOrName {
        text: String,
        min: u32,
        max: u32,
        note: &'static str,
    },
    /// The `cron` crate refused the translated expression (a bug of this module).
    #[error("the cron library rejected it ({0}); please report this")]
    CronRejected(String),
    /// A macro followed by more text (`@daily 5`).
    #[error("{0} stands alone; remove what follows it")]
    MacroNotAlone(String),
}

/// The values a field allows, as a bit mask (day-of-week 7 folded onto 0), or the problem.
fn field_values(spec: &FieldSpec, text: &str) -> Result<u64, FieldProblem> {
    let mut values = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err(FieldProblem::EmptyItem);
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
                return Err(FieldProblem::Backwards {
                    range: range.to_owned(),
                    low,
                    high,
                });
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

fn parse_step(spec: &FieldSpec, text: &str) -> Result<u32, FieldProblem> {
    let span = spec.open_max - spec.min + 1;
    match text.parse::<u32>() {
        Ok(0) => Err(FieldProblem::ZeroStep),
        Ok(step) if step > span => Err(FieldProblem::StepTooLarge {
            step,
            min: spec.min,
            max: spec.open_max,
        }),
        Ok(step) => Ok(step),
        Err(_) if text.is_empty() => Err(FieldProblem::MissingStep),
        Err(_) => Err(FieldProblem::StepNotANumber(text.to_owned())),
    }
}

fn parse_value(spec: &FieldSpec, text: &str) -> Result<u32, FieldProblem> {
    let (min, max, note) = (spec.min, spec.max, spec.note);
    if text.is_empty() {
        return Err(FieldProblem::MissingBound { min, max, note });
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(v) if (spec.min..=spec.max).contains(&v) => Ok(v),
            _ => Err(FieldProblem::OutOfRange {
                text: text.to_owned(),
                min,
                max,
                note,
            }),
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
        return Err(FieldProblem::QuestionMark);
    }
    if text.contains(['L', 'W', '#']) && spec.names.iter().all(|n| !n.eq_ignore_ascii_case(text)) {
        let quartz = text
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, 'L' | 'W' | '#'));
        if quartz {
            return Err(FieldProblem::Quartz {
                text: text.to_owned(),
                min,
                max,
            });
        }
    }
    let text = text.to_owned();
    if spec.names.is_empty() {
        Err(FieldProblem::NotANumber { text, min, max })
    } else {
        Err(FieldProblem::NotANumberOrName {
            text,
            min,
            max,
            note,
        })
    }
}
