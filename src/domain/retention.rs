//! Retention rules, pure: how long finished tasks are kept and how many per workflow (the
//! daemon-wide [`Policy`]), which triggers' `historyLimit` takes their tasks out of that policy
//! ([`HistoryLimited`]), and the duration syntax operators write them in ([`Age`]: `30d`,
//! `12h`). The retention actor (`actors/retention.rs`) applies them through the task store.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use super::manifest::{Kind, Spec};
use super::snapshot::Snapshot;

/// A length of time as operators write it: a whole number and a unit (`s`, `m`, `h`, `d`, `w`),
/// at least one second and at most 100 years (36500d).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Age(Duration);

/// The longest [`Age`]: 100 years.
pub const MAX_AGE_SECS: u64 = 36_500 * 86_400;

/// Why a duration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgeError {
    #[error(
        "invalid duration {0:?}: use a whole number and a unit: s, m, h, d or w (e.g. 30d, 12h, 90m)"
    )]
    Syntax(String),
    #[error("invalid duration {0:?}: it must be at least 1s")]
    Zero(String),
    #[error("invalid duration {0:?}: it must be at most 36500d (100 years)")]
    TooLong(String),
}

impl Age {
    /// `secs` seconds, if that is within the range.
    pub fn from_secs(secs: u64) -> Option<Age> {
        (1..=MAX_AGE_SECS)
            .contains(&secs)
            .then(|| Age(Duration::from_secs(secs)))
    }

    pub fn as_duration(self) -> Duration {
        self.0
    }

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }

    /// As chrono's duration, for arithmetic on timestamps.
    pub fn as_chrono(self) -> chrono::Duration {
        chrono::Duration::seconds(self.0.as_secs() as i64)
    }
}

const UNITS: [(char, u64); 5] = [
    ('w', 7 * 86_400),
    ('d', 86_400),
    ('h', 3_600),
    ('m', 60),
    ('s', 1),
];

impl FromStr for Age {
    type Err = AgeError;

    fn from_str(s: &str) -> Result<Age, AgeError> {
        let syntax = || AgeError::Syntax(s.to_owned());
        let t = s.trim();
        let unit = t.chars().last().ok_or_else(syntax)?;
        let (_, scale) = UNITS
            .iter()
            .find(|(u, _)| *u == unit.to_ascii_lowercase())
            .ok_or_else(syntax)?;
        let digits = &t[..t.len() - unit.len_utf8()];
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let n: u64 = digits
            .parse()
            .map_err(|_| AgeError::TooLong(s.to_owned()))?;
        let secs = n
            .checked_mul(*scale)
            .ok_or_else(|| AgeError::TooLong(s.to_owned()))?;
        if secs == 0 {
            return Err(AgeError::Zero(s.to_owned()));
        }
        Age::from_secs(secs).ok_or_else(|| AgeError::TooLong(s.to_owned()))
    }
}

impl fmt::Display for Age {
    /// In the largest unit that divides it: `30d`, `36h`, `90s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let (unit, scale) = UNITS
            .iter()
            .find(|(_, scale)| secs.is_multiple_of(*scale))
            .copied()
            .unwrap_or(('s', 1));
        write!(f, "{}{unit}", secs / scale)
    }
}

/// The daemon-wide retention of finished (succeeded, failed, cancelled) tasks: a task goes when
/// it finished longer than `max_age` ago, or when its workflow has more than `max_count`
/// newer finished tasks. Tasks of a trigger with a `historyLimit` are kept by that limit
/// instead (see [`HistoryLimited`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub max_age: Age,
    pub max_count: u64,
}

/// The most finished tasks per workflow a [`Policy`] may keep.
pub const MAX_COUNT: u64 = 100_000_000;

impl Default for Policy {
    /// 30 days and 10,000 finished tasks per workflow.
    fn default() -> Policy {
        Policy {
            max_age: Age(Duration::from_secs(30 * 86_400)),
            max_count: 10_000,
        }
    }
}

/// The triggers whose `historyLimit` governs their finished tasks, by outcome: a trigger that
/// sets `successful` keeps its succeeded tasks by that count alone, one that sets `failed` its
/// failed and cancelled tasks; the daemon-wide [`Policy`] (age and count) leaves those tasks
/// alone. Each entry is [`key`]`(project, trigger)`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HistoryLimited {
    pub succeeded: Vec<String>,
    pub failed: Vec<String>,
}

/// The one string a (project, trigger) pair is known by in [`HistoryLimited`]: names cannot
/// contain `/`, so the pair is unambiguous.
pub fn key(project: &str, trigger: &str) -> String {
    format!("{project}/{trigger}")
}

impl HistoryLimited {
    /// The triggers of `snapshot` with a `historyLimit`.
    pub fn of(snapshot: &Snapshot) -> HistoryLimited {
        let mut out = HistoryLimited::default();
        for r in snapshot.list(Kind::Trigger, None) {
            let Spec::Trigger(t) = &r.spec else { continue };
            let Some(limit) = t.history_limit else {
                continue;
            };
            if limit.successful.is_some() {
                out.succeeded.push(key(&r.key.project, &r.key.name));
            }
            if limit.failed.is_some() {
                out.failed.push(key(&r.key.project, &r.key.name));
            }
        }
        out
    }
}

/// How many of a trigger's finished tasks its `historyLimit` keeps: (succeeded, failed or
/// cancelled); `None` when the trigger does not exist or sets neither.
pub fn history_limit(
    snapshot: &Snapshot,
    project: &str,
    trigger: &str,
) -> Option<(Option<u32>, Option<u32>)> {
    let limit = snapshot.trigger(project, trigger)?.history_limit?;
    (limit.successful.is_some() || limit.failed.is_some())
        .then_some((limit.successful, limit.failed))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, want: Result<u64, &str>) {
        let got = input
            .parse::<Age>()
            .map(Age::as_secs)
            .map_err(|e| e.to_string());
        match want {
            Ok(secs) => assert_eq!(got, Ok(secs), "{input:?}"),
            Err(part) => {
                let e = got.expect_err(input);
                assert!(e.contains(part), "{input:?}: {e}");
            }
        }
    }

    #[test]
    fn durations_parse_with_their_unit() {
        check("30d", Ok(30 * 86_400));
        check("12h", Ok(12 * 3_600));
        check("90m", Ok(5_400));
        check("1s", Ok(1));
        check("2w", Ok(14 * 86_400));
        check(" 7D ", Ok(7 * 86_400));
        check("36500d", Ok(MAX_AGE_SECS));
        check("7", Err("use a whole number and a unit"));
        check("d", Err("use a whole number and a unit"));
        check("", Err("use a whole number and a unit"));
        check("1.5h", Err("use a whole number and a unit"));
        check("-3d", Err("use a whole number and a unit"));
        check("7x", Err("use a whole number and a unit"));
        check("0d", Err("at least 1s"));
        check("36501d", Err("at most 36500d"));
        check("99999999999999999999s", Err("at most 36500d"));
        check("9999999999999999w", Err("at most 36500d"));
    }

    #[test]
    fn durations_print_in_their_largest_unit() {
        for (secs, shown) in [
            (30 * 86_400, "30d"),
            (14 * 86_400, "2w"),
            (36 * 3_600, "36h"),
            (90, "90s"),
            (120, "2m"),
        ] {
            assert_eq!(Age::from_secs(secs).expect("in range").to_string(), shown);
        }
        assert_eq!(Age::from_secs(0), None);
        assert_eq!(Policy::default().max_age.to_string(), "30d");
    }

    #[test]
    fn history_limited_triggers_are_listed_by_outcome() {
        let text = "apiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {name: a, project: default}\nspec:\n  cron: {schedule: '* * * * *'}\n  action: {workflow: w, workspace: ws}\n  historyLimit: {successful: 3}\n---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {name: b, project: p}\nspec:\n  cron: {schedule: '* * * * *'}\n  action: {workflow: w, workspace: ws}\n  historyLimit: {successful: 1, failed: 0}\n---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {name: c, project: default}\nspec:\n  cron: {schedule: '* * * * *'}\n  action: {workflow: w, workspace: ws}\n";
        let snapshot = snapshot_of(text);
        let limited = HistoryLimited::of(&snapshot);
        assert_eq!(limited.succeeded, vec!["default/a", "p/b"]);
        assert_eq!(limited.failed, vec!["p/b"]);
        assert_eq!(
            history_limit(&snapshot, "default", "a"),
            Some((Some(3), None))
        );
        assert_eq!(history_limit(&snapshot, "p", "b"), Some((Some(1), Some(0))));
        assert_eq!(history_limit(&snapshot, "default", "c"), None);
        assert_eq!(history_limit(&snapshot, "default", "nope"), None);
    }

    fn snapshot_of(text: &str) -> Snapshot {
        let (docs, problems) = crate::domain::manifest::parse_documents("f", text);
        assert!(problems.is_empty(), "{problems:?}");
        let docs: Vec<_> = docs.into_iter().map(|d| d.manifest).collect();
        let empty = Snapshot::default();
        empty.apply(&empty.plan(&docs, chrono::DateTime::UNIX_EPOCH))
    }
}
