//! The rotation stage machine (SPEC §7), pure: which action a rotation takes next, what its
//! record says after each stage, how a failure before finish is rolled back, and how a rotation
//! a stopped daemon left behind resumes. The driver (`src/rotation/`) performs each [`Action`]
//! (a record write, a provider call, a wait, a store commit) and feeds what it saw back as an
//! [`Event`], so every rule is tested here without a store, an actor or a platform.
//!
//! The stages, each recorded before the next begins: **create** adds the new value beside the
//! old one as `<key>.next`; **set** has the provider put it at the platform; **test** waits for a
//! delivery verified with it after the set; **finish** waits out the grace, then one commit makes
//! `<key>` the new value and removes `<key>.next`. A resumed rotation re-enters its recorded
//! stage: create keeps a staging value it finds, and a finish without one has already committed.
//! A failure before finish rolls back: the platform is set back to the old value when it may hold
//! the new one, then the staging key is removed — unless setting the platform back failed, in
//! which case both keys stay valid and the reason says so.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::manifest::{RotationSpec, SecretValue, fingerprint};

#[cfg(test)]
mod tests;

/// The name suffix of a rotation's staging value: `github.next` is the new value of `github`
/// while a rotation runs, and verifies wherever `github` does.
pub const NEXT_SUFFIX: &str = ".next";

/// How long the test stage waits for a verified delivery unless `testTimeoutSeconds` says.
pub const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The `command` provider's setting that holds where its programs run: the directory of the
/// manifest that declared the store (relative paths resolve against it), made absolute at apply.
pub const WORKING_DIR: &str = "workingDir";

/// The staging key of `key`: `github` → `github.next`.
pub fn staging_key(key: &str) -> String {
    format!("{key}{NEXT_SUFFIX}")
}

// ---------------------------------------------------------------------------------------------
// Stages and the machine's view of a rotation
// ---------------------------------------------------------------------------------------------

/// Where a rotation is (or ended). The control API shows it as is (`api::RotationStage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RotationStage {
    /// The new value is being added beside the old one.
    Create,
    /// The new value is being set at the platform.
    Set,
    /// Waiting for a delivery signed with the new value.
    Test,
    /// Waiting out the grace period, then removing the old value.
    Finish,
    Done,
    Failed,
}

impl RotationStage {
    pub fn as_str(self) -> &'static str {
        match self {
            RotationStage::Create => "create",
            RotationStage::Set => "set",
            RotationStage::Test => "test",
            RotationStage::Finish => "finish",
            RotationStage::Done => "done",
            RotationStage::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Option<RotationStage> {
        [
            RotationStage::Create,
            RotationStage::Set,
            RotationStage::Test,
            RotationStage::Finish,
            RotationStage::Done,
            RotationStage::Failed,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
    pub fn is_finished(self) -> bool {
        matches!(self, RotationStage::Done | RotationStage::Failed)
    }
}

/// The waits a store's rotation block sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Between a verified test and finish (`graceSeconds`).
    pub grace: Duration,
    /// How long test waits for a verified delivery (`settings.testTimeoutSeconds`).
    pub test_timeout: Duration,
}

impl Timing {
    /// The waits of `spec`; without a rotation block, no grace and the default test timeout.
    pub fn of(spec: Option<&RotationSpec>) -> Timing {
        Timing {
            grace: Duration::from_secs(spec.map_or(0, |r| r.grace_seconds)),
            test_timeout: spec
                .and_then(|r| r.settings.get("testTimeoutSeconds"))
                .and_then(|v| v.as_u64())
                .map_or(DEFAULT_TEST_TIMEOUT, Duration::from_secs),
        }
    }
}

/// What the machine knows of one rotation: its record, and what the store held when the driver
/// took the rotation up.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotation {
    pub stage: RotationStage,
    pub started_at: DateTime<Utc>,
    /// When the platform took the new value.
    pub set_at: Option<DateTime<Utc>>,
    /// Whether the platform may hold the new value: recorded before the provider is asked, so
    /// that a rollback (also one after a crash) sets the platform back.
    pub platform_set: bool,
    /// Why a failed rotation failed.
    pub reason: Option<String>,
    /// The value being rotated away from; a rollback sets the platform back to it.
    pub old: Option<SecretValue>,
    pub timing: Timing,
}

impl Rotation {
    /// The rotation once `record` is written.
    pub fn apply(&mut self, record: &Record) {
        self.stage = record.stage;
        if let Some(at) = record.set.set_at {
            self.set_at = Some(at);
        }
        if let Some(set) = record.set.platform_set {
            self.platform_set = set;
        }
        if let Some(reason) = &record.set.reason {
            self.reason = Some(reason.clone());
        }
    }
}

/// What a stage change records besides the stage; `None` leaves a column as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RotationUpdate {
    pub reason: Option<String>,
    pub new_fingerprint: Option<String>,
    /// Whether the platform may hold the new value (a rollback then sets it back).
    pub platform_set: Option<bool>,
    pub set_at: Option<DateTime<Utc>>,
    pub verified_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A write to a rotation's record: its new stage and the columns it sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub stage: RotationStage,
    pub set: RotationUpdate,
}

impl Record {
    /// A move to `stage` that sets nothing else.
    pub fn to(stage: RotationStage) -> Record {
        Record::new(stage, RotationUpdate::default())
    }

    pub fn new(stage: RotationStage, set: RotationUpdate) -> Record {
        Record { stage, set }
    }

    /// The end of create: the new value's fingerprint, and on to set.
    fn staged(value: &SecretValue) -> Record {
        Record::new(
            RotationStage::Set,
            RotationUpdate {
                new_fingerprint: Some(fingerprint(value.expose())),
                ..RotationUpdate::default()
            },
        )
    }

    fn failed(reason: String, now: DateTime<Utc>) -> Record {
        Record::new(
            RotationStage::Failed,
            RotationUpdate {
                reason: Some(reason),
                finished_at: Some(now),
                ..RotationUpdate::default()
            },
        )
    }

    fn done(now: DateTime<Utc>) -> Record {
        Record::new(
            RotationStage::Done,
            RotationUpdate {
                finished_at: Some(now),
                ..RotationUpdate::default()
            },
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Events and actions
// ---------------------------------------------------------------------------------------------

/// What the driver saw: the newest snapshot as a stage begins, or how the last action went.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A stage begins (also after a restart): the staging key's value in the newest snapshot.
    Enter { staged: Option<SecretValue> },
    /// create: a new value was generated and added as the staging key.
    Created { value: SecretValue },
    /// create: adding the staging key failed.
    CreateFailed(String),
    /// set: the provider put the new value at the platform.
    SetDone,
    /// set: the provider failed; `maybe_applied` unless the platform's answer refused the value.
    SetFailed { error: String, maybe_applied: bool },
    /// test: the provider could not ask for a delivery.
    TestFailed(String),
    /// test: a delivery verified with the staging key at `at`, at or after the set.
    Verified { at: DateTime<Utc> },
    /// test: no such delivery within the test timeout.
    TimedOut,
    /// finish: the grace has passed; the staging key's value in the newest snapshot.
    GraceElapsed { staged: Option<SecretValue> },
    /// finish: the commit went through.
    Committed,
    /// finish: the commit failed.
    CommitFailed(String),
}

/// What the driver does next.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write the record, then enter the stage it names.
    Record(Record),
    /// create: generate a new value and add it to the store as the staging key.
    Create,
    /// set: write `mark` first (from then on a rollback sets the platform back), then have the
    /// provider put `value` at the platform.
    Set { mark: Record, value: SecretValue },
    /// test: have the provider ask for a delivery signed with `value`, then wait up to `timeout`
    /// for one verified with the staging key at or after `since`.
    Test {
        value: SecretValue,
        since: DateTime<Utc>,
        timeout: Duration,
    },
    /// finish: wait out the grace, then look at the staging key again.
    Wait(Duration),
    /// finish: one commit makes `value` the key's value and removes the staging key.
    Commit { value: SecretValue },
    /// Undo what the stages before did, then write [`Rollback::record`].
    Rollback(Rollback),
    /// The rotation has ended.
    End(End),
}

/// How a rotation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Done,
    Failed(String),
}

/// Why a rotation cannot go on before any stage runs: what the newest snapshot lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gone {
    /// The SecretStore was deleted.
    Store,
    /// The store has no rotation block any more.
    Rotation,
    /// The provider's settings do not work (the text says why).
    Provider(String),
}

/// What [`give_up`] decides: a failure to record, or a rollback first.
#[derive(Debug, Clone, PartialEq)]
pub enum Abandon {
    Fail(Record),
    Rollback(Rollback),
}

/// A rotation that cannot go on: without the store there is nothing to undo; otherwise the
/// staging key is removed. The platform is never set back here: there is no usable provider.
pub fn give_up(r: &Rotation, gone: Gone, now: DateTime<Utc>) -> Abandon {
    match gone {
        Gone::Store => Abandon::Fail(Record::failed(
            "the SecretStore was deleted during the rotation".into(),
            now,
        )),
        Gone::Rotation => Abandon::Rollback(Rollback::new(
            r,
            "the store's rotation block was removed".into(),
            false,
        )),
        Gone::Provider(why) => Abandon::Rollback(Rollback::new(r, why, false)),
    }
}

/// The next action of rotation `r` after `event`, at `now`.
pub fn advance(r: &Rotation, event: Event, now: DateTime<Utc>) -> Action {
    match event {
        Event::Enter { staged } => enter(r, staged),
        Event::Created { value } => Action::Record(Record::staged(&value)),
        Event::CreateFailed(e) => rollback(r, format!("create: {e}"), false),
        Event::SetDone => Action::Record(Record::new(
            RotationStage::Test,
            RotationUpdate {
                set_at: Some(now),
                ..RotationUpdate::default()
            },
        )),
        Event::SetFailed {
            error,
            maybe_applied,
        } => {
            let mut rb = Rollback::new(r, format!("set: {error}"), maybe_applied);
            if !maybe_applied {
                // The platform refused the value: it still holds the old one.
                rb.platform_set = Some(false);
            }
            Action::Rollback(rb)
        }
        Event::TestFailed(e) => rollback(r, format!("test: {e}"), true),
        Event::Verified { at } => Action::Record(Record::new(
            RotationStage::Finish,
            RotationUpdate {
                verified_at: Some(at),
                ..RotationUpdate::default()
            },
        )),
        Event::TimedOut => rollback(
            r,
            format!(
                "test: no delivery signed with the new value arrived within {} s (the old value stays in force)",
                r.timing.test_timeout.as_secs()
            ),
            true,
        ),
        Event::GraceElapsed {
            staged: Some(value),
        } => Action::Commit { value },
        // A resumed finish whose commit already happened.
        Event::GraceElapsed { staged: None } => Action::Record(Record::done(now)),
        Event::Committed => Action::Record(Record::done(now)),
        // The platform uses the new value and both keys stay valid: nothing breaks.
        Event::CommitFailed(e) => Action::Record(Record::failed(
            format!("finish: {e}; both values stay valid, run the rotation again to finish"),
            now,
        )),
    }
}

/// The action that begins `r`'s recorded stage, given the staging key's value.
fn enter(r: &Rotation, staged: Option<SecretValue>) -> Action {
    use RotationStage as S;
    match (r.stage, staged) {
        // A resumed rotation keeps the value it created.
        (S::Create, Some(value)) => Action::Record(Record::staged(&value)),
        (S::Create, None) => Action::Create,
        // The new value is gone (removed by hand, or by a concurrent change). A set that has not
        // asked the provider yet in this run leaves the platform alone.
        (S::Set | S::Test, None) => rollback(
            r,
            format!(
                "{}: the new value vanished from the store",
                r.stage.as_str()
            ),
            r.stage == S::Test,
        ),
        (S::Set, Some(value)) => Action::Set {
            mark: Record::new(
                S::Set,
                RotationUpdate {
                    platform_set: Some(true),
                    ..RotationUpdate::default()
                },
            ),
            value,
        },
        (S::Test, Some(value)) => Action::Test {
            value,
            since: r.set_at.unwrap_or(r.started_at),
            timeout: r.timing.test_timeout,
        },
        (S::Finish, _) => Action::Wait(r.timing.grace),
        (S::Done, _) => Action::End(End::Done),
        (S::Failed, _) => Action::End(End::Failed(r.reason.clone().unwrap_or_default())),
    }
}

fn rollback(r: &Rotation, reason: String, platform: bool) -> Action {
    Action::Rollback(Rollback::new(r, reason, platform))
}

// ---------------------------------------------------------------------------------------------
// Rollback
// ---------------------------------------------------------------------------------------------

/// A failure before finish, being undone. The driver sets the platform back to
/// [`Rollback::set_back`] (if any) and reports how that went, removes the staging key if
/// [`Rollback::removes_staging`] and reports that, then writes [`Rollback::record`].
#[derive(Debug, Clone, PartialEq)]
pub struct Rollback {
    /// The old value, when the platform may hold the new one and is to be set back first.
    pub set_back: Option<SecretValue>,
    reason: String,
    remove_staging: bool,
    platform_set: Option<bool>,
}

/// How setting the platform back to the old value went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reset {
    Done,
    Failed(String),
    /// The provider does not set the platform (`manual`): the operator does, so nothing was
    /// set back; the new value, never proven, is removed all the same.
    ByHand,
}

/// How removing the staging key went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    Removed,
    /// The store had no staging key (any more).
    Absent,
    Failed(String),
}

impl Rollback {
    /// A rollback of `r` because of `reason`; `platform` says whether this failure may leave the
    /// platform holding the new value (then, if the record says it may, it is set back).
    fn new(r: &Rotation, reason: String, platform: bool) -> Rollback {
        Rollback {
            set_back: if platform && r.platform_set {
                r.old.clone()
            } else {
                None
            },
            reason,
            remove_staging: true,
            platform_set: None,
        }
    }

    /// Records how setting the platform back went. If it failed, the staging key stays: the
    /// platform may use the new value, so both values must keep verifying.
    pub fn platform_reset(&mut self, outcome: Reset) {
        match outcome {
            Reset::Done => self
                .reason
                .push_str("; the platform was set back to the old value"),
            Reset::Failed(e) => {
                self.remove_staging = false;
                self.reason.push_str(&format!(
                    "; setting the platform back to the old value failed ({e}), so both values stay valid"
                ));
            }
            Reset::ByHand => self.reason.push_str(
                "; the platform is set by hand (provider manual), so nothing was set back there: if it already uses the new value, rotate again with that value",
            ),
        }
    }

    /// Whether the staging key is to be removed.
    pub fn removes_staging(&self) -> bool {
        self.remove_staging
    }

    /// Records how removing the staging key went.
    pub fn staging_removed(&mut self, outcome: Removal) {
        match outcome {
            Removal::Removed => self
                .reason
                .push_str("; the new value was removed and the old one stays valid"),
            Removal::Absent => self.reason.push_str("; the old value stays valid"),
            Removal::Failed(e) => self
                .reason
                .push_str(&format!("; removing the new value failed ({e})")),
        }
    }

    /// The failed record the rollback ends with, at `now`.
    pub fn record(self, now: DateTime<Utc>) -> Record {
        let mut record = Record::failed(self.reason, now);
        record.set.platform_set = self.platform_set;
        record
    }
}
