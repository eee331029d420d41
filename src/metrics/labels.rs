//! The label sets of the metric families, and how each folds when its family is full. A field
//! is a [`Name`] (an operator-chosen name, folded to `other`), a closed enum, or a
//! `&'static str` the code spells: nothing here can hold an id or a secret.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};

use super::capped::{Fold, Name};
use crate::domain::signature::Scheme;
use crate::domain::workflow::TaskState;

fn write(encoder: &mut LabelValueEncoder, s: &str) -> Result<(), std::fmt::Error> {
    EncodeLabelValue::encode(&s, encoder)
}

/// A verification scheme as a label: its manifest name, or `none` (the request named no
/// webhook trigger).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SchemeLabel(pub Option<Scheme>);

impl EncodeLabelValue for SchemeLabel {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        write(encoder, self.0.map_or("none", Scheme::name))
    }
}

/// How a webhook request was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WebhookOutcome {
    /// A task was created (202, or 200 where the platform wants it).
    Accepted,
    /// The filter did not match.
    Filtered,
    /// A delivery id seen within the window.
    Duplicate,
    /// Verified but not fired: the trigger is suspended, or its concurrency policy said no.
    Skipped,
    /// Verified and answered without firing: a dry run, `webhook test`, Slack's URL check.
    Verified,
    /// 401: no key verified the signature.
    Unauthorized,
    /// 429: too many deliveries at once.
    RateLimited,
    /// Any other 4xx (404, 405, 408, 413, 400).
    ClientError,
    /// 5xx: the sender should retry.
    ServerError,
}

impl WebhookOutcome {
    pub const ALL: [WebhookOutcome; 9] = [
        WebhookOutcome::Accepted,
        WebhookOutcome::Filtered,
        WebhookOutcome::Duplicate,
        WebhookOutcome::Skipped,
        WebhookOutcome::Verified,
        WebhookOutcome::Unauthorized,
        WebhookOutcome::RateLimited,
        WebhookOutcome::ClientError,
        WebhookOutcome::ServerError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            WebhookOutcome::Accepted => "accepted",
            WebhookOutcome::Filtered => "filtered",
            WebhookOutcome::Duplicate => "duplicate",
            WebhookOutcome::Skipped => "skipped",
            WebhookOutcome::Verified => "verified",
            WebhookOutcome::Unauthorized => "unauthorized",
            WebhookOutcome::RateLimited => "rate_limited",
            WebhookOutcome::ClientError => "client_error",
            WebhookOutcome::ServerError => "server_error",
        }
    }

    /// The outcome of an answer with `status`, where the delivery log `noted` what the status
    /// alone does not say (`filtered`, `duplicate`, `skipped`, `dry run`, …).
    pub fn of(status: u16, noted: Option<&str>) -> WebhookOutcome {
        match (status, noted) {
            (429, _) => WebhookOutcome::RateLimited,
            (401, _) => WebhookOutcome::Unauthorized,
            (400..=499, _) => WebhookOutcome::ClientError,
            (500..=599, _) => WebhookOutcome::ServerError,
            (_, Some("filtered")) => WebhookOutcome::Filtered,
            (_, Some("duplicate")) => WebhookOutcome::Duplicate,
            (_, Some("skipped")) => WebhookOutcome::Skipped,
            (_, Some("dry run" | "webhook test" | "url verification")) => WebhookOutcome::Verified,
            _ => WebhookOutcome::Accepted,
        }
    }
}

impl EncodeLabelValue for WebhookOutcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        write(encoder, self.as_str())
    }
}

/// How an agent process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExitClass {
    Success,
    /// 1-127: the program's own failure.
    Failure,
    /// 128-255: by convention a shell reporting a child killed by signal `code - 128`.
    High,
    /// Killed by a signal (a timeout or a cancel ends this way).
    Signal,
}

impl ExitClass {
    pub fn of(code: Option<i32>) -> ExitClass {
        match code {
            None => ExitClass::Signal,
            Some(0) => ExitClass::Success,
            Some(1..=127) => ExitClass::Failure,
            Some(_) => ExitClass::High,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ExitClass::Success => "0",
            ExitClass::Failure => "1-127",
            ExitClass::High => "128-255",
            ExitClass::Signal => "signal",
        }
    }
}

impl EncodeLabelValue for ExitClass {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        write(encoder, self.as_str())
    }
}

/// A task's final state as a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FinalState(pub TaskState);

impl EncodeLabelValue for FinalState {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        write(encoder, self.0.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct WebhookRequest {
    pub project: Name,
    pub trigger: Name,
    pub scheme: SchemeLabel,
    pub outcome: WebhookOutcome,
}

impl Fold for WebhookRequest {
    const FOLDED: usize = (Scheme::ALL.len() + 1) * WebhookOutcome::ALL.len();
    fn fold(&self) -> Self {
        WebhookRequest {
            project: Name::other(),
            trigger: Name::other(),
            ..self.clone()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct SchemeOnly {
    pub scheme: SchemeLabel,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct KeyVerified {
    pub project: Name,
    pub trigger: Name,
    pub key: Name,
}

impl Fold for KeyVerified {
    const FOLDED: usize = 1;
    fn fold(&self) -> Self {
        KeyVerified {
            project: Name::other(),
            trigger: Name::other(),
            key: Name::other(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct TriggerLabels {
    pub project: Name,
    pub trigger: Name,
}

impl Fold for TriggerLabels {
    const FOLDED: usize = 1;
    fn fold(&self) -> Self {
        TriggerLabels {
            project: Name::other(),
            trigger: Name::other(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct TaskFinished {
    pub project: Name,
    pub workflow: Name,
    pub state: FinalState,
}

impl Fold for TaskFinished {
    /// Succeeded, failed, cancelled (and the two that are not final, to be safe).
    const FOLDED: usize = 5;
    fn fold(&self) -> Self {
        TaskFinished {
            project: Name::other(),
            workflow: Name::other(),
            state: self.state,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct StepLabels {
    pub project: Name,
    pub workflow: Name,
    pub step: Name,
}

impl Fold for StepLabels {
    const FOLDED: usize = 1;
    fn fold(&self) -> Self {
        StepLabels {
            project: Name::other(),
            workflow: Name::other(),
            step: Name::other(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct Exit {
    pub class: ExitClass,
}

/// An actor type is a constant of the code (`Behaviour::TYPE`): a closed set.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct ActorType {
    pub actor_type: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct RotationStage {
    pub stage: &'static str,
    pub outcome: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub(super) struct Version {
    pub version: &'static str,
}
