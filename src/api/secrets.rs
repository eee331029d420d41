//! Wire types of secrets: setting a key (the value in the body, never in a URL), rotations
//! and their stages, and signed test deliveries to the daemon's own webhook server.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::domain::rotation::RotationStage;

/// `PUT /v1/secrets/{store}/keys/{key}`: the value travels in the body, never in a URL or argv.
#[derive(Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretPatchRequest {
    #[serde(default)]
    pub project: Option<String>,
    /// The new value: not empty, not a mask, at most 64 KiB (`domain::limits`). A key is
    /// removed with `DELETE`, never by leaving the value out.
    pub value: String,
}

impl std::fmt::Debug for SecretPatchRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretPatchRequest")
            .field("project", &self.project)
            .field("value", &"***")
            .finish()
    }
}

/// `POST /v1/secrets/{store}/rotate[?stream=true]`: with `stream`, the answer is the rotation's
/// progress as JSON lines ([`RotationProgress`]), the last one with its record; without, the
/// record alone once the rotation has ended.
#[derive(Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RotateRequest {
    #[serde(default)]
    pub project: Option<String>,
    /// Default: the store's `rotation.key`.
    #[serde(default)]
    pub key: Option<String>,
    /// The new value, for the `manual` provider only (from `--value-from-stdin`; never argv).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

impl std::fmt::Debug for RotateRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RotateRequest")
            .field("project", &self.project)
            .field("key", &self.key)
            .field("value", &self.value.as_ref().map(|_| "***"))
            .finish()
    }
}

/// The query of `POST /v1/secrets/{store}/rotate`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct RotateQuery {
    #[serde(default)]
    pub stream: bool,
}

/// What a line of a rotation's progress tells ([`RotationProgress::event`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressEvent {
    /// A stage (or the rollback) began.
    Started,
    /// A stage waits: for a delivery (`test`, with `timeoutSeconds`), for the grace (`finish`,
    /// with `graceSeconds`), or for the operator (`set` of the `manual` provider).
    Waiting,
    /// `test`: a delivery from outside verified with the new value (`verifiedAt`).
    Verified,
    /// A stage completed.
    Done,
    /// A stage failed (`message` says why); a rollback follows.
    Failed,
    /// The last line: the rotation ended; `stage` is `done` or `failed`, `record` its record.
    End,
}

/// Where a rotation is, for its progress: the stages of [`RotationStage`], and the rollback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProgressStage {
    Create,
    Set,
    Test,
    Finish,
    Rollback,
    Done,
    Failed,
}

impl ProgressStage {
    pub fn as_str(self) -> &'static str {
        match self {
            ProgressStage::Create => "create",
            ProgressStage::Set => "set",
            ProgressStage::Test => "test",
            ProgressStage::Finish => "finish",
            ProgressStage::Rollback => "rollback",
            ProgressStage::Done => "done",
            ProgressStage::Failed => "failed",
        }
    }
}

/// One line of a rotation's progress, as it happens (`orchestrator secret rotate -o json`). A
/// stable shape: fields are only ever added. Fingerprints, never values.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RotationProgress {
    /// The rotation's id (its record's).
    pub rotation: u64,
    pub project: String,
    pub store: String,
    pub key: String,
    pub provider: String,
    pub at: DateTime<Utc>,
    pub stage: ProgressStage,
    pub event: ProgressEvent,
    /// What happened, in a sentence (what the table output prints).
    pub message: String,
    /// `create` done: the new value's fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_fingerprint: Option<String>,
    /// `test` waiting: how long it waits for a delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    /// `finish` waiting: the grace before the old value is retired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grace_seconds: Option<u64>,
    /// `test` verified: when the delivery verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<DateTime<Utc>>,
    /// `end`: the rotation's record as it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<RotationRecord>,
}

/// One rotation: stages, times, fingerprints (never values), outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RotationRecord {
    pub id: u64,
    pub project: String,
    pub store: String,
    pub key: String,
    pub provider: String,
    pub stage: RotationStage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old_fingerprint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_fingerprint: Option<String>,
    pub started_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<DateTime<Utc>>,
}

/// `POST /v1/webhooks/{trigger}/test`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WebhookTestRequest {
    #[serde(default)]
    pub project: Option<String>,
    /// The key of the trigger's SecretStore to sign with.
    pub key: String,
    #[serde(default)]
    pub payload: Option<String>,
}

/// What the daemon's own webhook server answered to a signed test delivery.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookTestResponse {
    pub status: u16,
    /// The key name the server verified the delivery with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_key: Option<String>,
    pub body: serde_json::Value,
}

/// A token that a provider (`oauth2`, `github-app`) refreshes, in `describe secretstore`: when
/// it expires and when the daemon refreshes it next (never its value).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct TokenStatus {
    /// The store's `rotation.key`.
    pub key: String,
    pub provider: String,
    /// When the token expires (none: unknown, or the platform gave no expiry; see `state`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When the daemon received it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<DateTime<Utc>>,
    /// When the daemon refreshes it next (none: only on demand, or not until the operator fixes
    /// what the last failure names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refreshes_at: Option<DateTime<Utc>>,
    pub state: TokenState,
    /// What the state means for the operator (a retry's attempt, why it is blocked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Where a token's refresh stands.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum TokenState {
    /// Refreshed ahead of its expiry, at `refreshesAt`.
    Scheduled,
    /// A refresh is running.
    Refreshing,
    /// The last refresh failed for a reason that may pass; retried at `refreshesAt`.
    Retrying,
    /// The last refresh failed for good; not retried until the store or its credentials change.
    Blocked,
    /// The platform gave the token no expiry: refreshed only by `secret rotate`.
    OnDemand,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Scheduled => "scheduled",
            TokenState::Refreshing => "refreshing",
            TokenState::Retrying => "retrying",
            TokenState::Blocked => "blocked",
            TokenState::OnDemand => "on demand",
        }
    }
}
