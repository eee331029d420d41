//! Tests of the trigger plan, one table per decision: resuming from a persisted state (downtime,
//! `startingDeadlineSeconds`, DST days, suspend and reconfigure), planning resident or dormant,
//! recording a fire, and re-arming after it.

use std::time::Duration;

use chrono::TimeZone;

use super::*;

mod resume;

/// An instant written as RFC 3339.
fn t(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339 instant")
        .with_timezone(&Utc)
}

/// `HH:MM:SS` on 2026-11-29, UTC.
fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 29, h, m, s)
        .single()
        .expect("valid instant")
}

fn config(expr: &str, zone: Option<&str>, generation: u64, extra: &str) -> TriggerConfig {
    let spec: TriggerSpec = serde_yaml::from_str(&format!(
        "cron: {{schedule: \"{expr}\"}}\naction: {{workflow: w, workspace: default}}\n{extra}"
    ))
    .expect("trigger spec");
    TriggerConfig {
        project: "default".into(),
        name: "t".into(),
        generation,
        spec,
        schedule: Arc::new(Schedule::parse(expr, zone).expect("schedule")),
    }
}

/// A persisted state with some history: 3 fires, 1 skip, nothing missed.
fn state(generation: u64, last: Option<&str>, next: Option<&str>) -> TriggerState {
    TriggerState {
        generation,
        last_scheduled: last.map(t),
        next_fire: next.map(t),
        fires: 3,
        skips: 1,
        ..TriggerState::default()
    }
}

const HOURLY: &str = "0 * * * *";
const BERLIN: Option<&str> = Some("Europe/Berlin");

// ---------------------------------------------------------------------------------------------
// plan
// ---------------------------------------------------------------------------------------------

/// Plans a generation-2 trigger at 12:00:00 with a 60 s window.
fn plan_at_noon(expr: &str, extra: &str, st: Option<&TriggerState>) -> Plan {
    plan(
        &config(expr, None, 2, extra),
        st,
        at(12, 0, 0),
        ResidentWindow::new(Some(Duration::from_secs(60))),
    )
}

#[test]
fn without_a_window_every_trigger_is_resident() {
    for expr in ["0 3 * * 1", "0 0 1 1 *", "* * * * *"] {
        let p = plan(
            &config(expr, None, 2, ""),
            None,
            at(12, 0, 0),
            ResidentWindow::ALWAYS,
        );
        assert_eq!(p, Plan::Resident, "{expr}");
    }
    let far = at(12, 0, 0) + chrono::Duration::days(300);
    assert!(!ResidentWindow::ALWAYS.is_far(far, at(12, 0, 0)));
    assert!(!ResidentWindow::ALWAYS.still_far(far, at(12, 0, 0)));
    // A window of a year passivates a yearly trigger until half a year before its fire.
    let year = ResidentWindow::new(Some(Duration::from_secs(31_536_000)));
    let in_two_years = at(12, 0, 0) + chrono::Duration::days(730);
    assert!(year.is_far(in_two_years, at(12, 0, 0)));
    assert_eq!(
        year.wake_at(in_two_years),
        in_two_years - chrono::Duration::days(365) / 2
    );
}

fn check_plan(expr: &str, st: Option<TriggerState>, want: Plan) {
    assert_eq!(
        plan_at_noon(expr, "", st.as_ref()),
        want,
        "{expr} from {st:?}"
    );
}

fn old_state(
    generation: u64,
    last: Option<DateTime<Utc>>,
    next: Option<DateTime<Utc>>,
) -> TriggerState {
    TriggerState {
        generation,
        last_scheduled: last,
        next_fire: next,
        fires: 3,
        ..TriggerState::default()
    }
}

#[test]
fn plans_triggers_without_an_actor() {
    // A new trigger: dormant until its first fire, whose cursor is persisted.
    let fresh = TriggerState {
        generation: 2,
        next_fire: Some(at(13, 0, 0)),
        ..TriggerState::default()
    };
    check_plan(
        HOURLY,
        None,
        Plan::Dormant {
            next: at(13, 0, 0),
            save: Some((fresh, None)),
        },
    );
    // Resuming after a handled fire, or at an armed instant not reached: that fire, nothing
    // to save.
    for st in [
        old_state(2, Some(at(12, 0, 0)), Some(at(13, 0, 0))),
        old_state(2, None, Some(at(13, 0, 0))),
    ] {
        let want = Plan::Dormant {
            next: at(13, 0, 0),
            save: None,
        };
        check_plan(HOURLY, Some(st), want);
    }
    // Fires inside the window keep the actor resident.
    check_plan("*/30 * * * * *", None, Plan::Resident);
    check_plan(
        "0 * * * * *",
        Some(old_state(2, Some(at(11, 59, 0)), None)),
        Plan::Resident,
    );
    // A fire exactly a window away is still inside it.
    check_plan(
        "1 * * * *",
        Some(old_state(2, None, Some(at(12, 1, 0)))),
        Plan::Resident,
    );
    // A schedule that never fires again holds its actor (nothing to wake for).
    let never = plan(
        &config("0 0 1 1 *", None, 2, ""),
        None,
        t("2100-06-01T00:00:00Z"),
        ResidentWindow::new(Some(Duration::from_secs(60))),
    );
    assert_eq!(never, Plan::Resident);
    // A changed spec, or a clock that went back behind the last fire: afresh from now,
    // keeping the counters.
    let afresh = TriggerState {
        generation: 2,
        next_fire: Some(at(13, 0, 0)),
        fires: 3,
        ..TriggerState::default()
    };
    for st in [
        old_state(1, Some(at(9, 0, 0)), Some(at(10, 0, 0))),
        old_state(2, Some(at(14, 0, 0)), Some(at(15, 0, 0))),
    ] {
        let want = Plan::Dormant {
            next: at(13, 0, 0),
            save: Some((afresh.clone(), None)),
        };
        check_plan(HOURLY, Some(st), want);
    }
}

#[test]
fn plans_record_missed_fires_without_an_actor_unless_one_runs_late() {
    // (last handled, armed, missed, last instant)
    let cases = [
        // Down since after the 09:00 fire: 10:00, 11:00 and 12:00 (due now) were missed.
        (
            Some(at(9, 0, 0)),
            Some(at(10, 0, 0)),
            3,
            "2026-11-29T10:00:00+00:00",
        ),
        // Armed for 11:00 and never reached it: 11:00 and 12:00.
        (None, Some(at(11, 0, 0)), 2, "2026-11-29T11:00:00+00:00"),
    ];
    for (last, armed, missed, first) in cases {
        let st = old_state(2, last, armed);
        let Plan::Dormant {
            next,
            save: Some((saved, Some(event))),
        } = plan_at_noon(HOURLY, "", Some(&st))
        else {
            panic!("{st:?}: not dormant with a missed record");
        };
        assert_eq!(next, at(13, 0, 0));
        assert_eq!(saved.missed, missed);
        assert_eq!(saved.last_scheduled, Some(at(12, 0, 0)));
        assert_eq!(saved.next_fire, Some(at(13, 0, 0)));
        assert_eq!(saved.fires, 3);
        assert_eq!(event.kind, EventKind::Missed);
        assert_eq!(event.scheduled, Some(at(12, 0, 0)));
        let reason = event.reason.unwrap_or_default();
        assert!(
            reason.contains(&format!("{missed} fire(s) from {first}")),
            "{reason}"
        );
    }
    // With startingDeadlineSeconds the latest missed fire runs now: that takes the actor.
    let st = old_state(2, Some(at(9, 0, 0)), Some(at(10, 0, 0)));
    let deadline = "startingDeadlineSeconds: 3600\n";
    assert_eq!(plan_at_noon(HOURLY, deadline, Some(&st)), Plan::Resident);
}

#[test]
fn the_resident_window() {
    let w = ResidentWindow::new(Some(Duration::from_secs(60)));
    // (next fire, now, far, still far after a passivation request)
    let rows = [
        (at(12, 1, 0), at(12, 0, 0), false, true),
        (at(12, 1, 1), at(12, 0, 0), true, true),
        (at(12, 0, 30), at(12, 0, 0), false, false),
        (at(12, 0, 31), at(12, 0, 0), false, true),
    ];
    for (next, now, far, still_far) in rows {
        assert_eq!(w.is_far(next, now), far, "{next} at {now}");
        assert_eq!(w.still_far(next, now), still_far, "{next} at {now}");
    }
    assert_eq!(w.wake_at(at(13, 0, 0)), at(12, 59, 30));
}

// ---------------------------------------------------------------------------------------------
// record_fire and rearm
// ---------------------------------------------------------------------------------------------

#[test]
fn a_fire_records_its_outcome() {
    let scheduled = at(12, 0, 0);
    let fired_at = scheduled + chrono::Duration::microseconds(2_500);
    // (outcome → kind, task, reason, fires, skips, last task, last fire)
    let rows = [
        (
            Outcome::Created(7),
            (EventKind::Fired, Some(7), None),
            (4, 1, Some(7), Some(fired_at)),
        ),
        (
            Outcome::Skipped("concurrencyPolicy Forbid: task 6 is running".into()),
            (
                EventKind::Skipped,
                None,
                Some("concurrencyPolicy Forbid: task 6 is running"),
            ),
            (3, 2, Some(6), None),
        ),
        (
            Outcome::Failed("the task supervisor is unavailable".into()),
            (
                EventKind::Failed,
                None,
                Some("the task supervisor is unavailable"),
            ),
            (3, 2, Some(6), None),
        ),
    ];
    for (outcome, (kind, task, reason), (fires, skips, last_task, last_fire)) in rows {
        let mut st = state(
            2,
            Some("2026-11-29T11:00:00Z"),
            Some("2026-11-29T12:00:00Z"),
        );
        st.last_task = Some(6);
        let what = format!("{outcome:?}");
        let e = record_fire(&mut st, scheduled, fired_at, outcome);
        assert_eq!(
            e,
            TriggerEvent {
                at: fired_at,
                kind,
                scheduled: Some(scheduled),
                task,
                lateness_ms: Some(2.5),
                reason: reason.map(str::to_owned),
            },
            "{what}"
        );
        assert_eq!(st.last_scheduled, Some(scheduled), "{what}");
        assert_eq!(
            (st.fires, st.skips, st.last_task, st.last_fire),
            (fires, skips, last_task, last_fire),
            "{what}"
        );
        assert_eq!(st.missed, 0, "{what}");
    }
}

#[test]
fn rearming_after_a_fire() {
    // (schedule, zone, scheduled, handled at → next, late)
    let rows = [
        (
            HOURLY,
            None,
            "2026-11-29T12:00:00Z",
            "2026-11-29T12:00:00.500Z",
            Some("2026-11-29T13:00:00Z"),
            0,
        ),
        // Handled 25 s late: 12:00:10 and 12:00:20 passed meanwhile.
        (
            "*/10 * * * * *",
            None,
            "2026-11-29T12:00:00Z",
            "2026-11-29T12:00:25Z",
            Some("2026-11-29T12:00:30Z"),
            2,
        ),
        // The fall-back day's 02:30 fired at its first occurrence; next is 02:30 CET tomorrow.
        (
            "30 2 * * *",
            BERLIN,
            "2026-10-25T00:30:00Z",
            "2026-10-25T00:30:01Z",
            Some("2026-10-26T01:30:00Z"),
            0,
        ),
        (
            "0 0 1 1 *",
            None,
            "2100-01-01T00:00:00Z",
            "2100-01-01T00:00:01Z",
            None,
            0,
        ),
    ];
    for (expr, zone, scheduled, now, next, late) in rows {
        let schedule = Schedule::parse(expr, zone).expect("schedule");
        let r = rearm(&schedule, t(scheduled), t(now));
        assert_eq!(r.next, next.map(t), "{expr} after {scheduled}");
        let mut st = state(2, Some(scheduled), None);
        match r.late {
            None => assert_eq!(late, 0, "{expr} after {scheduled}: nothing late"),
            Some(l) => {
                assert_eq!(l.count, late, "{expr} after {scheduled}");
                assert_eq!(l.event.kind, EventKind::Missed);
                assert_eq!(l.event.at, t(now));
                assert_eq!(
                    l.event.reason.as_deref(),
                    Some(
                        format!("{late} fire(s) passed while the previous one was handled")
                            .as_str()
                    )
                );
                l.count_in(&mut st);
            }
        }
        assert_eq!(st.missed, late, "{expr} after {scheduled}: missed counter");
    }
}
