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
