//! Wire types of secrets: setting a key (the value in the body, never in a URL), rotations
//! and their stages, and signed test deliveries to the daemon's own webhook server.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use crate::domain::rotation::RotationStage;

/// `PUT /v1/secrets/{store}/keys/{key}`: the value travels in the body, never in a URL or argv.
#[derive(Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
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

/// `POST /v1/secrets/{store}/rotate`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    #[serde(default)]
    pub project: Option<String>,
    /// Default: the store's `rotation.key`.
    #[serde(default)]
    pub key: Option<String>,
}

/// One rotation: stages, times, fingerprints (never values), outcome.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RotationRecord {
    pub id: u64,
    pub project: String,
    pub store: String,
    pub key: String,
    pub provider: String,
    pub stage: RotationStage,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(
        rename = "oldFingerprint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub old_fingerprint: Option<String>,
    #[serde(
        rename = "newFingerprint",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub new_fingerprint: Option<String>,
    #[serde(rename = "startedAt")]
    pub started_at: DateTime<Utc>,
    #[serde(rename = "setAt", default, skip_serializing_if = "Option::is_none")]
    pub set_at: Option<DateTime<Utc>>,
    #[serde(
        rename = "verifiedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub verified_at: Option<DateTime<Utc>>,
    #[serde(
        rename = "finishedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub finished_at: Option<DateTime<Utc>>,
}

/// `POST /v1/webhooks/{trigger}/test`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
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
pub struct WebhookTestResponse {
    pub status: u16,
    /// The key name the server verified the delivery with.
    #[serde(
        rename = "matchedKey",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub matched_key: Option<String>,
    pub body: serde_json::Value,
}

/// A token that a provider (`oauth2`, `github-app`) refreshes, in `describe secretstore`: when
/// it expires and when the daemon refreshes it next (never its value).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TokenStatus {
    /// The store's `rotation.key`.
    pub key: String,
    pub provider: String,
    /// When the token expires (none: unknown, or the platform gave no expiry; see `state`).
    #[serde(rename = "expiresAt", default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// When the daemon received it.
    #[serde(rename = "issuedAt", default, skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<DateTime<Utc>>,
    /// When the daemon refreshes it next (none: only on demand, or not until the operator fixes
    /// what the last failure names).
    #[serde(
        rename = "refreshesAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
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
