//! The resume table: a trigger coming back from its persisted state after a downtime, with and
//! without `startingDeadlineSeconds`, over DST days, after a suspension and a reconfigure.

use super::*;

fn afresh(mut s: TriggerState) -> TriggerState {
    s.start_afresh();
    s
}

/// One row of the resume table.
struct Case {
    what: &'static str,
    schedule: &'static str,
    zone: Option<&'static str>,
    /// `startingDeadlineSeconds`.
    deadline: Option<u64>,
    /// The resource generation the trigger runs.
    generation: u64,
    state: TriggerState,
    now: &'static str,
    want: Want,
}

/// What `resume` comes to. The fires and skips counters never change on a resume.
struct Want {
    action: Action,
    /// The `missed` counter after.
    missed: u64,
    last_scheduled: Option<&'static str>,
    next_fire: Option<&'static str>,
    save: bool,
    /// Part of the missed record's reason (none: nothing is recorded).
    record: Option<&'static str>,
}

fn arm(next: &str) -> Action {
    Action::Arm(Some(t(next)))
}

fn check(case: Case) {
    let Case {
        what,
        schedule,
        zone,
        deadline,
        generation,
        state,
        now,
        want,
    } = case;
    let extra = deadline.map_or_else(String::new, |d| format!("startingDeadlineSeconds: {d}\n"));
    let config = config(schedule, zone, generation, &extra);
    let before = state.clone();
    let r = resume(&config, state, t(now));
    assert_eq!(r.action, want.action, "{what}: action");
    assert_eq!(r.state.missed, want.missed, "{what}: missed");
    assert_eq!(
        r.state.last_scheduled,
        want.last_scheduled.map(t),
        "{what}: last scheduled"
    );
    assert_eq!(
        r.state.next_fire,
        want.next_fire.map(t),
        "{what}: next fire"
    );
    assert_eq!(
        (r.state.fires, r.state.skips),
        (before.fires, before.skips),
        "{what}: counters"
    );
    assert_eq!(r.save, want.save, "{what}: save");
    match (&r.event, want.record) {
        (None, None) => {}
        (Some(e), Some(part)) => {
            assert_eq!(e.kind, EventKind::Missed, "{what}");
            assert_eq!(e.at, t(now), "{what}: recorded at");
            let reason = e.reason.clone().unwrap_or_default();
            assert!(reason.contains(part), "{what}: {reason:?} lacks {part:?}");
        }
        (e, part) => panic!("{what}: recorded {e:?}, want {part:?}"),
    }
    assert_eq!(r.state.generation, generation, "{what}: generation");
}

#[test]
fn resume_from_the_persisted_state() {
    let rows = [
        Case {
            what: "a new trigger starts from now and persists its first fire",
            schedule: HOURLY,
            zone: None,
            deadline: None,
            generation: 2,
            state: TriggerState::default(),
            now: "2026-11-29T12:30:00Z",
            want: Want {
                action: arm("2026-11-29T13:00:00Z"),
                missed: 0,
                last_scheduled: None,
                next_fire: Some("2026-11-29T13:00:00Z"),
                save: true,
                record: None,
            },
        },
        Case {
            what: "after a handled fire, nothing missed",
            schedule: HOURLY,
            zone: None,
            deadline: None,
            generation: 2,
            state: state(
                2,
                Some("2026-11-29T12:00:00Z"),
                Some("2026-11-29T13:00:00Z"),
            ),
            now: "2026-11-29T12:30:00Z",
            want: Want {
                action: arm("2026-11-29T13:00:00Z"),
                missed: 0,
                last_scheduled: Some("2026-11-29T12:00:00Z"),
                next_fire: Some("2026-11-29T13:00:00Z"),
                save: false,
                record: None,
            },
        },
        Case {
            what: "at an armed instant not reached yet",
            schedule: HOURLY,
            zone: None,
            deadline: None,
            generation: 2,
            state: state(2, None, Some("2026-11-29T13:00:00Z")),
            now: "2026-11-29T12:30:00Z",
            want: Want {
                action: arm("2026-11-29T13:00:00Z"),
                missed: 0,
                last_scheduled: None,
                next_fire: Some("2026-11-29T13:00:00Z"),
                save: false,
                record: None,
            },
        },
        Case {
            what: "down three hours without a deadline: all recorded as missed",
            schedule: HOURLY,
            zone: None,
            deadline: None,
            generation: 2,
            state: state(
                2,
                Some("2026-11-29T09:00:00Z"),
                Some("2026-11-29T10:00:00Z"),
            ),
            now: "2026-11-29T12:30:00Z",
            want: Want {
                action: arm("2026-11-29T13:00:00Z"),
                missed: 3,
                last_scheduled: Some("2026-11-29T12:00:00Z"),
                next_fire: Some("2026-11-29T13:00:00Z"),
                save: true,
                record: Some(
                    "3 fire(s) from 2026-11-29T10:00:00+00:00 to 2026-11-29T12:00:00+00:00 were missed (set startingDeadlineSeconds",
                ),
            },
        },
        Case {
            what: "down three hours, the latest within the deadline: it runs now",
            schedule: HOURLY,
            zone: None,
            deadline: Some(3600),
            generation: 2,
            state: state(
                2,
                Some("2026-11-29T09:00:00Z"),
                Some("2026-11-29T10:00:00Z"),
            ),
            now: "2026-11-29T12:30:00Z",
            want: Want {
                action: Action::CatchUp(t("2026-11-29T12:00:00Z")),
                missed: 2,
                // The fire that runs now moves the cursor.
                last_scheduled: Some("2026-11-29T09:00:00Z"),
                next_fire: Some("2026-11-29T10:00:00Z"),
                save: true,
                record: Some(
                    "2 fire(s) from 2026-11-29T10:00:00+00:00 to 2026-11-29T11:00:00+00:00 were missed; the latest one runs now",
                ),
            },
        },
        Case {
            what: "down three hours, the latest past the deadline",
            schedule: HOURLY,
            zone: None,
            deadline: Some(600),
            generation: 2,
            state: state(
                2,
                Some("2026-11-29T09:00:00Z"),
                Some("2026-11-29T10:00:00Z"),
            ),
            now: "2026-11-29T12:30:00Z",
            want: Want {
                action: arm("2026-11-29T13:00:00Z"),
                missed: 3,
                last_scheduled: Some("2026-11-29T12:00:00Z"),
                next_fire: Some("2026-11-29T13:00:00Z"),
                save: true,
                record: Some("were missed (outside startingDeadlineSeconds 600)"),
            },
        },
        Case {
            what: "one missed fire exactly at the deadline runs, nothing recorded",
            schedule: HOURLY,
            zone: None,
            deadline: Some(600),
            generation: 2,
            state: state(
                2,
                Some("2026-11-29T11:00:00Z"),
                Some("2026-11-29T12:00:00Z"),
            ),
            now: "2026-11-29T12:10:00Z",
            want: Want {
                action: Action::CatchUp(t("2026-11-29T12:00:00Z")),
                missed: 0,
                last_scheduled: Some("2026-11-29T11:00:00Z"),
                next_fire: Some("2026-11-29T12:00:00Z"),
                save: false,
                record: None,
            },
        },
        Case {
            what: "an armed instant that passed counts itself",
            schedule: HOURLY,
            zone: None,
            deadline: None,
            generation: 2,
            state: state(2, None, Some("2026-11-29T11:00:00Z")),
            now: "2026-11-29T12:30:00Z",
            want: Want {
                action: arm("2026-11-29T13:00:00Z"),
                missed: 2,
                last_scheduled: Some("2026-11-29T12:00:00Z"),
                next_fire: Some("2026-11-29T13:00:00Z"),
                save: true,
                record: Some("2 fire(s) from 2026-11-29T11:00:00+00:00 to"),
            },
        },
        Case {
            what: "a clock that went back behind the last fire: afresh from now",
            schedule: HOURLY,
            zone: None,
            deadline: None,
            generation: 2,
            state: state(
                2,
                Some("2026-11-29T14:00:00Z"),
                Some("2026-11-29T15:00:00Z"),
            ),
            now: "2026-11-29T12:30:00Z",
            want: Want {
                action: arm("2026-11-29T13:00:00Z"),
                missed: 0,
                last_scheduled: None,
                next_fire: Some("2026-11-29T13:00:00Z"),
                save: true,
                record: None,
            },
        },
        Case {
            what: "a changed spec (newer generation): afresh, nothing missed",
            schedule: "*/15 * * * *",
            zone: None,
            deadline: Some(3600),
            generation: 3,
            state: state(
                2,
                Some("2026-11-29T09:00:00Z"),
                Some("2026-11-29T10:00:00Z"),
            ),
            now: "2026-11-29T12:30:00Z",
            want: Want {
                action: arm("2026-11-29T12:45:00Z"),
                missed: 0,
                last_scheduled: None,
                next_fire: Some("2026-11-29T12:45:00Z"),
                save: true,
                record: None,
            },
        },
        Case {
            what: "reconfigured in place (start_afresh): afresh with the new schedule",
            schedule: "*/15 * * * *",
            zone: None,
            deadline: None,
            generation: 2,
            state: afresh(state(2, Some("2026-11-29T12:00:00Z"), None)),
            now: "2026-11-29T12:31:00Z",
            want: Want {
                action: arm("2026-11-29T12:45:00Z"),
                missed: 0,
                last_scheduled: None,
                next_fire: Some("2026-11-29T12:45:00Z"),
                save: true,
                record: None,
            },
        },
        Case {
            what: "resumed after a suspension (suspend and resume each bump the generation)",
            schedule: HOURLY,
            zone: None,
            deadline: Some(86_400),
            generation: 4,
            state: state(
                2,
                Some("2026-11-28T09:00:00Z"),
                Some("2026-11-28T10:00:00Z"),
            ),
            now: "2026-11-29T12:30:00Z",
            want: Want {
                action: arm("2026-11-29T13:00:00Z"),
                missed: 0,
                last_scheduled: None,
                next_fire: Some("2026-11-29T13:00:00Z"),
                save: true,
                record: None,
            },
        },
        Case {
            // Berlin springs forward 2026-03-29 02:00 CET -> 03:00 CEST: 02:30 does not exist
            // and fires at 03:00 CEST (01:00Z).
            what: "a daily fixed time down over the spring-forward day",
            schedule: "30 2 * * *",
            zone: BERLIN,
            deadline: None,
            generation: 2,
            state: state(
                2,
                Some("2026-03-28T01:30:00Z"),
                Some("2026-03-29T01:00:00Z"),
            ),
            now: "2026-03-30T12:00:00Z",
            want: Want {
                action: arm("2026-03-31T00:30:00Z"),
                missed: 2,
                last_scheduled: Some("2026-03-30T00:30:00Z"),
                next_fire: Some("2026-03-31T00:30:00Z"),
                save: true,
                record: Some(
                    "2 fire(s) from 2026-03-29T01:00:00+00:00 to 2026-03-30T00:30:00+00:00 were missed",
                ),
            },
        },
        Case {
            what: "the gap-shifted fire of the spring-forward day runs within the deadline",
            schedule: "30 2 * * *",
            zone: BERLIN,
            deadline: Some(3600),
            generation: 2,
            state: state(
                2,
                Some("2026-03-28T01:30:00Z"),
                Some("2026-03-29T01:00:00Z"),
            ),
            now: "2026-03-29T01:20:00Z",
            want: Want {
                action: Action::CatchUp(t("2026-03-29T01:00:00Z")),
                missed: 0,
                last_scheduled: Some("2026-03-28T01:30:00Z"),
                next_fire: Some("2026-03-29T01:00:00Z"),
                save: false,
                record: None,
            },
        },
        Case {
            // Berlin falls back 2026-10-25 03:00 CEST -> 02:00 CET: 02:30 happens twice and a
            // fixed time fires at the first (00:30Z) only.
            what: "a daily fixed time down over the fall-back overlap misses one fire",
            schedule: "30 2 * * *",
            zone: BERLIN,
            deadline: None,
            generation: 2,
            state: state(
                2,
                Some("2026-10-24T00:30:00Z"),
                Some("2026-10-25T00:30:00Z"),
            ),
            now: "2026-10-25T01:45:00Z",
            want: Want {
                action: arm("2026-10-26T01:30:00Z"),
                missed: 1,
                last_scheduled: Some("2026-10-25T00:30:00Z"),
                next_fire: Some("2026-10-26T01:30:00Z"),
                save: true,
                record: Some(
                    "1 fire(s) from 2026-10-25T00:30:00+00:00 to 2026-10-25T00:30:00+00:00 were missed",
                ),
            },
        },
        Case {
            what: "an interval schedule down over the fall-back overlap misses both halves",
            schedule: "*/30 * * * *",
            zone: BERLIN,
            deadline: None,
            generation: 2,
            state: state(
                2,
                Some("2026-10-25T00:00:00Z"),
                Some("2026-10-25T00:30:00Z"),
            ),
            now: "2026-10-25T01:45:00Z",
            want: Want {
                action: arm("2026-10-25T02:00:00Z"),
                missed: 3,
                last_scheduled: Some("2026-10-25T01:30:00Z"),
                next_fire: Some("2026-10-25T02:00:00Z"),
                save: true,
                record: Some(
                    "3 fire(s) from 2026-10-25T00:30:00+00:00 to 2026-10-25T01:30:00+00:00",
                ),
            },
        },
        Case {
            what: "a schedule that never fires again arms nothing",
            schedule: "0 0 1 1 *",
            zone: None,
            deadline: None,
            generation: 2,
            state: TriggerState::default(),
            now: "2100-06-01T00:00:00Z",
            want: Want {
                action: Action::Arm(None),
                missed: 0,
                last_scheduled: None,
                next_fire: None,
                save: true,
                record: None,
            },
        },
        Case {
            what: "a long downtime of an every-second trigger is walked at most MISSED_WALK",
            schedule: "* * * * * *",
            zone: None,
            deadline: None,
            generation: 2,
            state: state(2, Some("2026-11-29T00:00:00Z"), None),
            now: "2026-12-01T08:00:00Z",
            want: Want {
                action: arm("2026-11-30T03:46:41Z"),
                missed: MISSED_WALK as u64,
                last_scheduled: Some("2026-11-30T03:46:40Z"),
                next_fire: Some("2026-11-30T03:46:41Z"),
                save: true,
                record: Some("100000 fire(s) from 2026-11-29T00:00:01+00:00"),
            },
        },
    ];
    for row in rows {
        check(row);
    }
}
