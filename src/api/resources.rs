//! Wire types of desired state: apply and delete requests and their per-resource results,
//! resources as `get` and `describe` show them (secret values masked), and the daemon's status.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::manifest::{API_VERSION, Kind, SecretValue, Spec, fingerprint};
use crate::domain::secret_merge::{KeyDiff, SetBy};
use crate::domain::snapshot::{Outcome, Resource};
use crate::domain::trigger_plan::TriggerEvent;

use super::{RotationRecord, TriggerStatus};

/// One manifest source sent by the CLI: a file's text and the directory that relative paths in it
/// (Workspace `root_path`, a `command` rotation's `workingDir`) are resolved against.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// The file as the user named it (`-` for stdin).
    pub name: String,
    /// Absolute directory of the file (the CLI's working directory for stdin).
    pub base_dir: String,
    pub text: String,
}

/// `POST /v1/apply`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApplyRequest {
    /// The CLI's `-p/--project`, when given.
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    pub sources: Vec<Source>,
}

/// What happened to one resource.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResultLine {
    pub kind: Kind,
    pub project: String,
    pub name: String,
    pub outcome: Outcome,
    pub generation: u64,
    /// A SecretStore apply: what the three-way merge did (or, in a dry run, would do) to each
    /// key whose live value is not simply the manifest's — fingerprints, never values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyDiff>,
}

/// Answer to an apply or a delete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ChangeResponse {
    pub dry_run: bool,
    /// The store revision after the change.
    pub revision: u64,
    pub results: Vec<ResultLine>,
    /// On a store several nodes share: which live nodes serve the new revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nodes: Option<NodesServing>,
}

/// Which live nodes had published a change's revision when the change returned.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct NodesServing {
    /// Live nodes that serve it (this one included).
    pub serving: Vec<String>,
    /// Live nodes that did not within the wait: each refuses webhooks until it catches up.
    pub behind: Vec<String>,
}

/// A resource named on the command line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    pub kind: Kind,
    pub name: String,
}

/// `POST /v1/delete`: named targets and/or the documents of manifest sources.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DeleteRequest {
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub targets: Vec<Target>,
    #[serde(default)]
    pub sources: Vec<Source>,
}

/// Metadata as shown by `get`/`describe`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetadataView {
    pub name: String,
    pub project: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub generation: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A resource as `get` shows it: the manifest with metadata extended and secret values masked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceView {
    pub api_version: String,
    pub kind: Kind,
    pub metadata: MetadataView,
    pub spec: serde_json::Value,
    /// Live state reported by the subsystem that owns the resource (trigger fire times, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// How a secret value is shown: never the value, only `***`, its length and a fingerprint.
pub fn mask(value: &SecretValue) -> String {
    format!(
        "{} ({} bytes, {})",
        SecretValue::MASK,
        value.len(),
        fingerprint(value.expose())
    )
}

impl ResourceView {
    pub fn from_resource(r: &Resource) -> ResourceView {
        let mut spec = r.spec.to_json();
        if let (Spec::SecretStore(s), Some(data)) = (&r.spec, spec.get_mut("data")) {
            *data = serde_json::Value::Object(
                s.data
                    .iter()
                    .map(|(k, v)| (k.clone(), serde_json::Value::String(mask(v))))
                    .collect(),
            );
        }
        ResourceView {
            api_version: API_VERSION.to_owned(),
            kind: r.key.kind,
            metadata: MetadataView {
                name: r.key.name.clone(),
                project: r.key.project.clone(),
                labels: r.metadata.labels.clone(),
                annotations: r.metadata.annotations.clone(),
                generation: r.generation,
                created_at: r.created_at,
                updated_at: r.updated_at,
            },
            spec,
            status: None,
        }
    }

    /// The spec read back as its kind's type (a SecretStore's values are their masks).
    pub fn typed_spec(&self) -> Result<Spec, serde_json::Error> {
        Spec::from_json(self.kind, self.spec.clone())
    }

    /// A Trigger's live status, when the daemon reported one.
    pub fn trigger_status(&self) -> Result<Option<TriggerStatus>, serde_json::Error> {
        self.status
            .as_ref()
            .map(TriggerStatus::deserialize)
            .transpose()
    }
}

/// `GET /v1/resources/{kind}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ResourceList {
    pub items: Vec<ResourceView>,
}

/// `GET /v1/resources/{kind}/{name}/describe`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Describe {
    pub resource: ResourceView,
    /// Resources that reference this one (`trigger/weekly (spec.action.workflow)`).
    pub referenced_by: Vec<String>,
    /// Per-key metadata of a SecretStore (never values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyMeta>,
    /// A SecretStore's keys declared `{keep: true}` that have no value yet (they verify nothing
    /// until `orchestrator secret set` gives them one).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
    /// Recent changes, newest first.
    pub history: Vec<HistoryEntry>,
    /// A trigger's recent fires, skips and missed fires, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fires: Vec<TriggerEvent>,
    /// A SecretStore's current and recent rotations, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<RotationRecord>,
    /// Where a cron trigger is armed right now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub armed: Option<Armed>,
    /// A SecretStore's token that a provider refreshes: its expiry and next refresh.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<super::TokenStatus>,
}

/// Where a cron trigger is armed (`describe trigger`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "by", rename_all = "camelCase")]
pub enum Armed {
    /// Its TriggerActor holds the timer.
    Actor { actor: String },
    /// Passivated: the trigger supervisor's wake queue holds the next fire, and the TriggerActor
    /// is started at `wakeAt`.
    WakeQueue {
        #[serde(rename = "wakeAt")]
        wake_at: DateTime<Utc>,
        #[serde(rename = "nextFire")]
        next_fire: DateTime<Utc>,
    },
    /// Nothing will fire it: suspended, or its actor was given up after repeated failures.
    NotArmed,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct DaemonStatus {
    pub version: String,
    pub pid: u32,
    pub started_at: DateTime<Utc>,
    pub uptime_seconds: u64,
    pub data_dir: String,
    pub socket: String,
    /// The bound webhook address, or `None` when webhooks are disabled.
    pub webhook_addr: Option<String>,
    pub revision: u64,
    pub resources: BTreeMap<Kind, usize>,
    /// The database, the run logs and the retention of finished tasks (absent when the store
    /// could not be read).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageStatus>,
}

/// What the daemon keeps on disk (`daemon status`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct StorageStatus {
    /// The SQLite database file.
    pub database_bytes: u64,
    /// Its write-ahead log.
    pub wal_bytes: u64,
    /// Free space inside the database file, not yet returned to the file system.
    pub free_bytes: u64,
    /// Everything under `<data-dir>/runs` (run logs, prompt and payload files).
    pub run_log_bytes: u64,
    pub tasks: u64,
    pub finished_tasks: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_task: Option<OldestTask>,
    /// How long finished tasks are kept (`30d`).
    pub retention_age: String,
    /// How many finished tasks each workflow keeps.
    pub retention_count: u64,
}

/// The oldest task the daemon keeps.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct OldestTask {
    pub id: u64,
    pub created_at: DateTime<Utc>,
}

/// Query of `GET /v1/resources/{kind}` and of describe.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResourceQuery {
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Every project (`get -A`).
    #[serde(default)]
    pub all: bool,
}

/// One row of a resource's change history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HistoryEntry {
    pub at: DateTime<Utc>,
    pub revision: u64,
    pub generation: u64,
    pub action: Outcome,
    /// For SecretStores: `{"keys": {name: fingerprint}, "added": [...], "removed": [...],
    /// "changed": [...], "by": "apply"|"secret-set"|"rotation"}`; for other kinds the masked
    /// spec.
    pub detail: serde_json::Value,
}

impl HistoryEntry {
    /// What a SecretStore's row records about its keys; `None` for the rows of other kinds
    /// (whose detail is the spec) and for deletions.
    pub fn key_changes(&self) -> Option<KeyChanges> {
        KeyChanges::deserialize(&self.detail).ok()
    }
}

/// The `detail` of a SecretStore's history row: every key's fingerprint after the change, and
/// the keys the change added, removed and changed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KeyChanges {
    pub keys: BTreeMap<String, String>,
    #[serde(default)]
    pub added: Vec<String>,
    #[serde(default)]
    pub removed: Vec<String>,
    #[serde(default)]
    pub changed: Vec<String>,
    /// Who made the change (absent in rows written before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<SetBy>,
}

/// Metadata of one SecretStore key (never its value).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct KeyMeta {
    pub key: String,
    pub fingerprint: String,
    pub length: usize,
    pub updated_at: DateTime<Utc>,
    /// The last real delivery from an outside sender that verified with this key.
    pub last_verified_at: Option<DateTime<Utc>>,
    pub last_verified_trigger: Option<String>,
    /// The last dry run or `webhook test` that verified with this key: a check, never a proof.
    #[serde(default)]
    pub last_tested_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub last_tested_trigger: Option<String>,
    /// `dry run` or `webhook test`.
    #[serde(default)]
    pub last_tested_by: Option<String>,
    /// Who set the live value (absent for values set before this was recorded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set_by: Option<SetBy>,
}
