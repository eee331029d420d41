//! The DST walk: the next fire instant of a [`Schedule`] in its zone. A fixed-time schedule walks
//! matching wall-clock times and maps each into the zone (a gap time to the end of the gap, an
//! overlap time to its first occurrence); an interval schedule searches each stretch of constant
//! offset as one wall-clock range. Every loop is bounded, and nothing is searched outside the
//! years the `cron` crate knows (1970 to 2100).

use chrono::{DateTime, LocalResult, NaiveDateTime, Offset, TimeDelta, TimeZone, Utc};
use chrono_tz::{GapInfo, Tz};

use super::{Kind, Schedule};

impl Schedule {
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
pub(super) fn offset_at(tz: Tz, secs: i64) -> Option<i64> {
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
pub(super) fn first_offset_change(tz: Tz, from: i64, to: i64, offset: i64) -> Option<i64> {
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
