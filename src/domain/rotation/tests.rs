//! The rotation stage machine, table by table: every stage transition, the test timeout, the
//! rollback from each stage (with each outcome of its undo steps), the resume of a rotation left
//! at each stage, and whole rotations walked from create to their end.

use chrono::TimeZone;

use super::*;

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 2, 0, 0).unwrap() + chrono::Duration::seconds(seconds)
}

const NOW: i64 = 1000;

fn value(s: &str) -> SecretValue {
    SecretValue::new(s.to_owned())
}

const TIMING: Timing = Timing {
    grace: Duration::from_secs(30),
    test_timeout: Duration::from_secs(2),
};

/// A rotation recorded at `stage`, started at `at(0)`, rotating away from "old", the platform
/// not (yet) set.
fn rotation(stage: RotationStage) -> Rotation {
    Rotation {
        stage,
        started_at: at(0),
        set_at: None,
        platform_set: false,
        reason: None,
        old: Some(value("old")),
        timing: TIMING,
    }
}

/// The same rotation once the platform may hold the new value (set at `at(10)`).
fn set(stage: RotationStage) -> Rotation {
    Rotation {
        set_at: Some(at(10)),
        platform_set: true,
        ..rotation(stage)
    }
}

fn check(r: &Rotation, event: Event, want: Action) {
    let got = advance(r, event.clone(), at(NOW));
    assert_eq!(got, want, "{:?} + {event:?}", r.stage);
}

fn record(stage: RotationStage, f: impl FnOnce(&mut RotationUpdate)) -> Action {
    let mut r = Record::to(stage);
    f(&mut r.set);
    Action::Record(r)
}

use RotationStage as S;

#[test]
fn every_stage_transition() {
    let new = value("new");
    let table: Vec<(Rotation, Event, Action)> = vec![
        // create
        (
            rotation(S::Create),
            Event::Enter { staged: None },
            Action::Create,
        ),
        (
            rotation(S::Create),
            Event::Created { value: new.clone() },
            record(S::Set, |r| r.new_fingerprint = Some(fingerprint("new"))),
        ),
        // set
        (
            rotation(S::Set),
            Event::Enter {
                staged: Some(new.clone()),
            },
            Action::Set {
                mark: Record::new(
                    S::Set,
                    RotationUpdate {
                        platform_set: Some(true),
                        ..RotationUpdate::default()
                    },
                ),
                value: new.clone(),
            },
        ),
        (
            set(S::Set),
            Event::SetDone,
            record(S::Test, |r| r.set_at = Some(at(NOW))),
        ),
        // test
        (
            set(S::Test),
            Event::Enter {
                staged: Some(new.clone()),
            },
            Action::Test {
                value: new.clone(),
                since: at(10),
                timeout: Duration::from_secs(2),
            },
        ),
        (
            set(S::Test),
            Event::Verified { at: at(11) },
            record(S::Finish, |r| r.verified_at = Some(at(11))),
        ),
        // finish
        (
            set(S::Finish),
            Event::Enter {
                staged: Some(new.clone()),
            },
            Action::Wait(Duration::from_secs(30)),
        ),
        (
            set(S::Finish),
            Event::GraceElapsed {
                staged: Some(new.clone()),
            },
            Action::Commit { value: new.clone() },
        ),
        (
            set(S::Finish),
            Event::Committed,
            record(S::Done, |r| r.finished_at = Some(at(NOW))),
        ),
        (
            set(S::Finish),
            Event::CommitFailed("secretstore/hooks: refused".into()),
            record(S::Failed, |r| {
                r.reason = Some("finish: secretstore/hooks: refused; both values stay valid, run the rotation again to finish".into());
                r.finished_at = Some(at(NOW));
            }),
        ),
        // ended
        (
            set(S::Done),
            Event::Enter { staged: None },
            Action::End(End::Done),
        ),
        (
            Rotation {
                reason: Some("set: no".into()),
                ..rotation(S::Failed)
            },
            Event::Enter { staged: None },
            Action::End(End::Failed("set: no".into())),
        ),
    ];
    for (r, event, want) in table {
        check(&r, event, want);
    }
}

#[test]
fn the_test_waits_from_the_set_or_else_from_the_start() {
    let new = value("new");
    let want = |since| Action::Test {
        value: new.clone(),
        since,
        timeout: Duration::from_secs(2),
    };
    let staged = || Event::Enter {
        staged: Some(new.clone()),
    };
    check(&set(S::Test), staged(), want(at(10)));
    check(
        &Rotation {
            set_at: None,
            ..set(S::Test)
        },
        staged(),
        want(at(0)),
    );
}

#[test]
fn the_timing_comes_from_the_rotation_block() {
    let spec = |settings: serde_json::Value, grace| RotationSpec {
        key: "github".into(),
        provider: crate::domain::manifest::RotationProvider::Command,
        settings: serde_json::from_value(settings).unwrap(),
        credentials: None,
        grace_seconds: grace,
    };
    let table = [
        (None, 0, 60),
        (Some(spec(serde_json::json!({}), 5)), 5, 60),
        (
            Some(spec(serde_json::json!({"testTimeoutSeconds": 7}), 0)),
            0,
            7,
        ),
        (
            Some(spec(serde_json::json!({"testTimeoutSeconds": "7"}), 0)),
            0,
            60,
        ),
    ];
    for (spec, grace, timeout) in table {
        assert_eq!(
            Timing::of(spec.as_ref()),
            Timing {
                grace: Duration::from_secs(grace),
                test_timeout: Duration::from_secs(timeout),
            },
            "{spec:?}"
        );
    }
}

/// Runs the rollback `action` like the driver does, with the undo steps going as given; returns
/// whether the platform was set back, whether the staging key was removed, and the final record.
fn undo(action: Action, reset: Reset, removal: Removal) -> (bool, bool, Record) {
    let Action::Rollback(mut rb) = action else {
        panic!("not a rollback: {action:?}");
    };
    let set_back = rb.set_back.take().is_some();
    if set_back {
        rb.platform_reset(reset);
    }
    let removed = rb.removes_staging();
    if removed {
        rb.staging_removed(removal);
    }
    (set_back, removed, rb.record(at(NOW)))
}

const REMOVED: &str = "; the new value was removed and the old one stays valid";
const RESET: &str = "; the platform was set back to the old value";

#[test]
fn a_failure_at_each_stage_rolls_back() {
    // (rotation, event, platform set back, staging key removed, reason, platform_set recorded)
    let table: Vec<(Rotation, Event, bool, bool, String, Option<bool>)> = vec![
        (
            rotation(S::Create),
            Event::CreateFailed("secretstore/hooks: invalid".into()),
            false,
            true,
            format!("create: secretstore/hooks: invalid{REMOVED}"),
            None,
        ),
        (
            rotation(S::Set),
            Event::Enter { staged: None },
            false,
            true,
            format!("set: the new value vanished from the store{REMOVED}"),
            None,
        ),
        (
            set(S::Set),
            Event::SetFailed {
                error: "github answered 500 to PATCH u".into(),
                maybe_applied: false,
            },
            false,
            true,
            format!("set: github answered 500 to PATCH u{REMOVED}"),
            Some(false),
        ),
        (
            set(S::Set),
            Event::SetFailed {
                error: "github: PATCH u failed: timeout".into(),
                maybe_applied: true,
            },
            true,
            true,
            format!("set: github: PATCH u failed: timeout{RESET}{REMOVED}"),
            None,
        ),
        (
            set(S::Test),
            Event::Enter { staged: None },
            true,
            true,
            format!("test: the new value vanished from the store{RESET}{REMOVED}"),
            None,
        ),
        (
            set(S::Test),
            Event::TestFailed("github answered 404 to POST u".into()),
            true,
            true,
            format!("test: github answered 404 to POST u{RESET}{REMOVED}"),
            None,
        ),
        (
            set(S::Test),
            Event::TimedOut,
            true,
            true,
            format!(
                "test: no delivery signed with the new value arrived within 2 s (the old value stays in force){RESET}{REMOVED}"
            ),
            None,
        ),
    ];
    for (r, event, want_set_back, want_removed, reason, platform_set) in table {
        let what = format!("{:?} + {event:?}", r.stage);
        let got = undo(advance(&r, event, at(NOW)), Reset::Done, Removal::Removed);
        let mut want = Record::failed(reason, at(NOW));
        want.set.platform_set = platform_set;
        assert_eq!(got, (want_set_back, want_removed, want), "{what}");
    }
}

#[test]
fn the_platform_is_set_back_only_when_it_may_hold_the_new_value_and_there_is_an_old_one() {
    let timed_out = |r: &Rotation| match advance(r, Event::TimedOut, at(NOW)) {
        Action::Rollback(rb) => rb.set_back,
        other => panic!("not a rollback: {other:?}"),
    };
    assert_eq!(timed_out(&set(S::Test)), Some(value("old")));
    let not_set = Rotation {
        platform_set: false,
        ..set(S::Test)
    };
    assert_eq!(timed_out(&not_set), None);
    let no_old = Rotation {
        old: None,
        ..set(S::Test)
    };
    assert_eq!(timed_out(&no_old), None);
}

#[test]
fn the_undo_steps_outcomes_are_told_in_the_reason() {
    let test_failed = || advance(&set(S::Test), Event::TestFailed("no".into()), at(NOW));
    // (reset, removal, staging key removed, reason)
    let table = [
        (Reset::Done, Removal::Removed, true, format!("test: no{RESET}{REMOVED}")),
        (
            Reset::Done,
            Removal::Absent,
            true,
            format!("test: no{RESET}; the old value stays valid"),
        ),
        (
            Reset::Done,
            Removal::Failed("actor gone".into()),
            true,
            format!("test: no{RESET}; removing the new value failed (actor gone)"),
        ),
        (
            Reset::Failed("github answered 500".into()),
            Removal::Removed,
            false,
            "test: no; setting the platform back to the old value failed (github answered 500), so both values stay valid".to_owned(),
        ),
        (
            Reset::ByHand,
            Removal::Removed,
            true,
            format!("test: no; the platform is set by hand (provider manual), so nothing was set back there: if it already uses the new value, rotate again with that value{REMOVED}"),
        ),
    ];
    for (reset, removal, want_removed, reason) in table {
        let what = format!("{reset:?}, {removal:?}");
        let (set_back, removed, record) = undo(test_failed(), reset, removal);
        assert!(set_back, "{what}");
        assert_eq!(removed, want_removed, "{what}");
        assert_eq!(record, Record::failed(reason, at(NOW)), "{what}");
    }
}

#[test]
fn a_rotation_that_cannot_go_on_gives_up() {
    let staged_removal = |reason: &str| {
        let rb = Rollback::new(&set(S::Test), reason.into(), false);
        assert_eq!(rb.set_back, None, "never set back without a provider");
        Abandon::Rollback(rb)
    };
    let table = [
        (
            Gone::Store,
            Abandon::Fail(Record::failed(
                "the SecretStore was deleted during the rotation".into(),
                at(NOW),
            )),
        ),
        (
            Gone::Rotation,
            staged_removal("the store's rotation block was removed"),
        ),
        (
            Gone::Provider("github rotation needs settings.repository (owner/name)".into()),
            staged_removal("github rotation needs settings.repository (owner/name)"),
        ),
    ];
    for (gone, want) in table {
        assert_eq!(
            give_up(&set(S::Test), gone.clone(), at(NOW)),
            want,
            "{gone:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Whole rotations and resumes
// ---------------------------------------------------------------------------------------------

/// What the fake world answers to each action of a walk.
struct World {
    /// The staging key's value, as the store holds it.
    staged: Option<SecretValue>,
    set: Event,
    test: Event,
}

impl World {
    fn ok() -> World {
        World {
            staged: None,
            set: Event::SetDone,
            test: Event::Verified { at: at(12) },
        }
    }
}

/// Drives `r` from entering its stage to its end against `world`; returns one line per action.
fn walk(mut r: Rotation, mut world: World) -> Vec<String> {
    let mut seen = Vec::new();
    let mut action = advance(
        &r,
        Event::Enter {
            staged: world.staged.clone(),
        },
        at(NOW),
    );
    for _ in 0..20 {
        let event = match action {
            Action::End(end) => {
                seen.push(format!("end {end:?}"));
                return seen;
            }
            Action::Record(rec) => {
                seen.push(format!("record {}", rec.stage.as_str()));
                r.apply(&rec);
                Event::Enter {
                    staged: world.staged.clone(),
                }
            }
            Action::Create => {
                seen.push("create".into());
                world.staged = Some(value("new"));
                Event::Created {
                    value: value("new"),
                }
            }
            Action::Set { mark, .. } => {
                seen.push("set".into());
                r.apply(&mark);
                world.set.clone()
            }
            Action::Test { since, .. } => {
                seen.push(format!("test since {}", (since - at(0)).num_seconds()));
                world.test.clone()
            }
            Action::Wait(grace) => {
                seen.push(format!("wait {}", grace.as_secs()));
                Event::GraceElapsed {
                    staged: world.staged.clone(),
                }
            }
            Action::Commit { .. } => {
                seen.push("commit".into());
                world.staged = None;
                Event::Committed
            }
            Action::Rollback(mut rb) => {
                seen.push(format!("rollback set back {}", rb.set_back.is_some()));
                if rb.set_back.take().is_some() {
                    rb.platform_reset(Reset::Done);
                }
                if rb.removes_staging() {
                    rb.staging_removed(match world.staged.take() {
                        Some(_) => Removal::Removed,
                        None => Removal::Absent,
                    });
                }
                let rec = rb.record(at(NOW));
                r.apply(&rec);
                Event::Enter {
                    staged: world.staged.clone(),
                }
            }
        };
        action = advance(&r, event, at(NOW));
    }
    panic!("the walk did not end: {seen:?}");
}

#[test]
fn whole_rotations() {
    let happy = [
        "create",
        "record set",
        "set",
        "record test",
        "test since 1000",
        "record finish",
        "wait 30",
        "commit",
        "record done",
        "end Done",
    ];
    assert_eq!(walk(rotation(S::Create), World::ok()), happy);
    let refused = World {
        set: Event::SetFailed {
            error: "github answered 500 to PATCH u".into(),
            maybe_applied: false,
        },
        ..World::ok()
    };
    assert_eq!(
        walk(rotation(S::Create), refused),
        [
            "create",
            "record set",
            "set",
            "rollback set back false",
            "end Failed(\"set: github answered 500 to PATCH u; the new value was removed and the old one stays valid\")",
        ]
    );
    let silent = World {
        test: Event::TimedOut,
        ..World::ok()
    };
    let seen = walk(rotation(S::Create), silent);
    assert_eq!(seen[4..6], ["test since 1000", "rollback set back true"]);
}

#[test]
fn a_rotation_left_at_each_stage_resumes_from_it() {
    let staged = World {
        staged: Some(value("new")),
        ..World::ok()
    };
    // (recorded rotation, staging key present, the walk)
    let table: Vec<(Rotation, bool, Vec<&str>)> = vec![
        // Stopped before the staging key was added: create it.
        (
            rotation(S::Create),
            false,
            vec!["create", "record set", "set"],
        ),
        // Stopped after adding it: keep the value created.
        (rotation(S::Create), true, vec!["record set", "set"]),
        // Stopped while the provider set it: set it again.
        (
            set(S::Set),
            true,
            vec!["set", "record test", "test since 1000"],
        ),
        // Stopped while waiting for the test: wait from the recorded set.
        (set(S::Test), true, vec!["test since 10", "record finish"]),
        // Stopped in the grace: wait again, then commit.
        (
            set(S::Finish),
            true,
            vec!["wait 30", "commit", "record done"],
        ),
        // Stopped after the commit: done.
        (
            set(S::Finish),
            false,
            vec!["wait 30", "record done", "end Done"],
        ),
        // The staging key vanished meanwhile.
        (
            set(S::Set),
            false,
            vec![
                "rollback set back false",
                "end Failed(\"set: the new value vanished from the store; the old value stays valid\")",
            ],
        ),
        (
            set(S::Test),
            false,
            vec![
                "rollback set back true",
                "end Failed(\"test: the new value vanished from the store; the platform was set back to the old value; the old value stays valid\")",
            ],
        ),
        (set(S::Done), false, vec!["end Done"]),
    ];
    for (r, present, want) in table {
        let what = format!("{:?} (staged: {present})", r.stage);
        let world = if present {
            World {
                staged: staged.staged.clone(),
                ..World::ok()
            }
        } else {
            World::ok()
        };
        let seen = walk(r, world);
        assert_eq!(seen[..want.len()], want[..], "{what}: {seen:?}");
    }
}
