//! A rotation's progress as it happens: each stage's start, wait, outcome and the rotation's end,
//! as [`RotationProgress`] lines sent on a broadcast channel that whoever started the rotation
//! listens to (the control API streams them to `orchestrator secret rotate` as JSON lines). A
//! rotation nobody listens to (one resumed at start-up) reports all the same, into the void; a
//! listener that falls more than [`BACKLOG`] lines behind misses some, never the rotation. Each
//! line is also logged at debug level. Lines carry fingerprints, never values.

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::broadcast;

use crate::api::{ProgressEvent as E, ProgressStage as P, RotationProgress, RotationRecord};
use crate::api::{ProgressEvent, ProgressStage, RotationStage};
use crate::domain::manifest::fingerprint;
use crate::domain::rotation::Event;
use crate::metrics::Metrics;

/// How many lines a listener may fall behind.
pub const BACKLOG: usize = 256;

/// Sends one rotation's progress.
#[derive(Clone)]
pub struct Reporter {
    tx: broadcast::Sender<RotationProgress>,
    rotation: u64,
    project: String,
    store: String,
    key: String,
    provider: String,
    /// Where each stage's outcome is counted.
    metrics: Metrics,
}

impl Reporter {
    /// A reporter for the rotation `record` describes, sending on `tx` and counting each stage's
    /// outcome in `metrics`.
    pub fn new(
        tx: broadcast::Sender<RotationProgress>,
        record: &RotationRecord,
        metrics: Metrics,
    ) -> Reporter {
        Reporter {
            tx,
            metrics,
            rotation: record.id,
            project: record.project.clone(),
            store: record.store.clone(),
            key: record.key.clone(),
            provider: record.provider.clone(),
        }
    }

    /// A line about `stage`, to fill in and [`Line::send`].
    pub fn line(
        &self,
        stage: ProgressStage,
        event: ProgressEvent,
        message: impl Into<String>,
    ) -> Line<'_> {
        Line {
            reporter: self,
            progress: RotationProgress {
                rotation: self.rotation,
                project: self.project.clone(),
                store: self.store.clone(),
                key: self.key.clone(),
                provider: self.provider.clone(),
                at: Utc::now().trunc_subsecs(3),
                stage,
                event,
                message: message.into(),
                new_fingerprint: None,
                timeout_seconds: None,
                grace_seconds: None,
                verified_at: None,
                record: None,
            },
        }
    }

    /// Sends a line with nothing more than its message.
    pub fn say(&self, stage: ProgressStage, event: ProgressEvent, message: impl Into<String>) {
        self.line(stage, event, message).send();
    }

    /// `test` waits for a delivery verified with `staging`.
    pub fn waiting_for_delivery(&self, staging: &str, timeout: Duration) {
        let secs = timeout.as_secs();
        self.line(
            P::Test,
            E::Waiting,
            format!(
                "waiting up to {secs} s for a delivery from outside verified with {staging} (dry runs and `webhook test` do not count)"
            ),
        )
        .timeout(secs)
        .send();
    }

    /// `finish` waits out the grace before `key`'s old value is retired.
    pub fn waiting_for_grace(&self, key: &str, grace: Duration) {
        let secs = grace.as_secs();
        self.line(
            P::Finish,
            E::Waiting,
            format!("the old value of {key} stays valid for the grace of {secs} s"),
        )
        .grace(secs)
        .send();
    }

    /// Reports what an action of the rotation of `key` (staged as `staging`) came to; `manual`:
    /// the provider is the operator.
    pub fn told(&self, event: &Event, manual: bool, key: &str, staging: &str, timeout: Duration) {
        match event {
            Event::Enter { .. } | Event::GraceElapsed { .. } => {}
            Event::Created { value } => self
                .line(
                    P::Create,
                    E::Done,
                    format!(
                        "{staging} holds the new value: deliveries signed with either value verify"
                    ),
                )
                .fingerprint(fingerprint(value.expose()))
                .send(),
            Event::CreateFailed(e) => self.say(P::Create, E::Failed, e.clone()),
            // The operator's set has no outcome the daemon could see.
            Event::SetDone if manual => {}
            Event::SetDone => self.say(P::Set, E::Done, "the platform took the new value"),
            Event::SetFailed { error, .. } => self.say(P::Set, E::Failed, error.clone()),
            Event::TestFailed(e) => self.say(P::Test, E::Failed, e.clone()),
            Event::Verified { at } => self
                .line(
                    P::Test,
                    E::Verified,
                    format!("a delivery verified with {staging} at {}", at.to_rfc3339()),
                )
                .verified(*at)
                .send(),
            Event::TimedOut => self.say(
                P::Test,
                E::Failed,
                format!(
                    "no delivery signed with the new value arrived within {} s",
                    timeout.as_secs()
                ),
            ),
            Event::Committed => self.say(
                P::Finish,
                E::Done,
                format!(
                    "{key} is the new value and {staging} is gone: the old value no longer verifies"
                ),
            ),
            Event::CommitFailed(e) => self.say(P::Finish, E::Failed, e.clone()),
        }
    }

    /// The last line: how the rotation of `record` ended (`error`: why driving it stopped short).
    pub fn end(&self, record: &RotationRecord, error: Option<String>) {
        let (stage, message) = match (record.stage, error) {
            (RotationStage::Done, _) => (
                P::Done,
                format!(
                    "secretstore/{} key {} rotated with {}: {} -> {}",
                    record.store,
                    record.key,
                    record.provider,
                    record.old_fingerprint.as_deref().unwrap_or("?"),
                    record.new_fingerprint.as_deref().unwrap_or("?")
                ),
            ),
            (_, Some(e)) => (P::Failed, e),
            (_, None) => (
                P::Failed,
                record
                    .reason
                    .clone()
                    .unwrap_or_else(|| "no reason recorded".into()),
            ),
        };
        self.line(stage, E::End, message)
            .record(record.clone())
            .send();
    }
}

/// One line being filled in.
pub struct Line<'a> {
    reporter: &'a Reporter,
    progress: RotationProgress,
}

impl Line<'_> {
    pub fn fingerprint(mut self, fingerprint: String) -> Self {
        self.progress.new_fingerprint = Some(fingerprint);
        self
    }

    pub fn timeout(mut self, seconds: u64) -> Self {
        self.progress.timeout_seconds = Some(seconds);
        self
    }

    pub fn grace(mut self, seconds: u64) -> Self {
        self.progress.grace_seconds = Some(seconds);
        self
    }

    pub fn verified(mut self, at: DateTime<Utc>) -> Self {
        self.progress.verified_at = Some(at);
        self
    }

    pub fn record(mut self, record: RotationRecord) -> Self {
        self.progress.record = Some(record);
        self
    }

    /// Logs the line and sends it to whoever listens (nobody may).
    pub fn send(self) {
        let p = &self.progress;
        tracing::debug!(
            rotation = p.rotation,
            store = %p.store,
            key = %p.key,
            stage = p.stage.as_str(),
            event = ?p.event,
            message = %p.message,
            "rotation progress"
        );
        // Outcomes only: a stage's start and its waits are not outcomes. The last line counts
        // the rotation's own end as stage `rotation`.
        let counted = match p.event {
            E::Started | E::Waiting => None,
            E::Verified => Some((p.stage.as_str(), "verified")),
            E::Done => Some((p.stage.as_str(), "done")),
            E::Failed => Some((p.stage.as_str(), "failed")),
            E::End => Some(("rotation", p.stage.as_str())),
        };
        if let Some((stage, outcome)) = counted {
            self.reporter.metrics.rotation_stage(stage, outcome);
        }
        let _ = self.reporter.tx.send(self.progress);
    }
}
