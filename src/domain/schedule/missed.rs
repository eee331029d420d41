//! Missed fires: what a trigger's schedule owed between its last scheduled instant and now, and
//! whether the latest is still within the starting deadline and runs late, once.

use chrono::{DateTime, Utc};

use super::Schedule;

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
    use chrono::TimeZone;

    use super::*;

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
