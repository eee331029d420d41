//! The control API's wire types, shared by the daemon's server (`http::control`) and the CLI's
//! client, so the two cannot drift apart. Paths are versioned under `/v1`. Every error is an
//! [`ErrorBody`] `{error, details[]}` with a fitting HTTP status. `-o json` output of the CLI is
//! these types serialized, which keeps it stable for agents to parse.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::diagnostic::Diagnostic;
use crate::domain::manifest::{API_VERSION, Kind, SecretValue, Spec};
use crate::domain::snapshot::{Outcome, Resource};
use crate::store::{HistoryEntry, KeyMeta, fingerprint};

/// An error answer: a one-line summary and, for validation failures, one entry per problem.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Diagnostic>,
}

/// One manifest source sent by the CLI: a file's text and the directory that relative paths in it
/// (Workspace `root_path`) are resolved against.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The file as the user named it (`-` for stdin).
    pub name: String,
    /// Absolute directory of the file (the CLI's working directory for stdin).
    pub base_dir: String,
    pub text: String,
}

/// `POST /v1/apply`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
pub struct ResultLine {
    pub kind: Kind,
    pub project: String,
    pub name: String,
    pub outcome: Outcome,
    pub generation: u64,
}

/// Answer to an apply or a delete.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChangeResponse {
    pub dry_run: bool,
    /// The store revision after the change.
    pub revision: u64,
    pub results: Vec<ResultLine>,
}

/// A resource named on the command line.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub kind: Kind,
    pub name: String,
}

/// `POST /v1/delete`: named targets and/or the documents of manifest sources.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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
pub struct MetadataView {
    pub name: String,
    pub project: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub generation: u64,
    #[serde(rename = "createdAt")]
    pub created_at: DateTime<Utc>,
    #[serde(rename = "updatedAt")]
    pub updated_at: DateTime<Utc>,
}

/// A resource as `get` shows it: the manifest with metadata extended and secret values masked.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResourceView {
    #[serde(rename = "apiVersion")]
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
}

/// `GET /v1/resources/{kind}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResourceList {
    pub items: Vec<ResourceView>,
}

/// `GET /v1/resources/{kind}/{name}/describe`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Describe {
    pub resource: ResourceView,
    /// Resources that reference this one (`trigger/weekly (spec.action.workflow)`).
    #[serde(rename = "referencedBy")]
    pub referenced_by: Vec<String>,
    /// Per-key metadata of a SecretStore (never values).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<KeyMeta>,
    /// Recent changes, newest first.
    pub history: Vec<HistoryEntry>,
    /// A trigger's recent fires, skips and missed fires, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fires: Vec<crate::trigger_store::TriggerEvent>,
    /// A SecretStore's current and recent rotations, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rotations: Vec<RotationRecord>,
    /// Where a cron trigger is armed right now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub armed: Option<Armed>,
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
pub struct DaemonStatus {
    pub version: String,
    pub pid: u32,
    #[serde(rename = "startedAt")]
    pub started_at: DateTime<Utc>,
    #[serde(rename = "uptimeSeconds")]
    pub uptime_seconds: u64,
    #[serde(rename = "dataDir")]
    pub data_dir: String,
    pub socket: String,
    /// The bound webhook address, or `None` when webhooks are disabled.
    #[serde(rename = "webhookAddr")]
    pub webhook_addr: Option<String>,
    pub revision: u64,
    pub resources: BTreeMap<Kind, usize>,
}

/// Query of `GET /v1/resources/{kind}` and of describe.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ResourceQuery {
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    /// Every project (`get -A`).
    #[serde(default)]
    pub all: bool,
}

/// A failed control request as the server produces it: a status and the body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: u16, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: error.into(),
                details: Vec::new(),
            },
        }
    }
    pub fn with_details(mut self, details: Vec<Diagnostic>) -> ApiError {
        self.body.details = details;
        self
    }
    /// 422: the request was understood but its manifests are invalid.
    pub fn invalid(what: &str, details: Vec<Diagnostic>) -> ApiError {
        let n = details.len();
        let plural = if n == 1 { "problem" } else { "problems" };
        ApiError::new(
            422,
            format!("{what} refused: {n} {plural}; nothing was changed"),
        )
        .with_details(details)
    }
    pub fn bad_request(error: impl Into<String>) -> ApiError {
        ApiError::new(400, error)
    }
    pub fn not_found(error: impl Into<String>) -> ApiError {
        ApiError::new(404, error)
    }
    pub fn conflict(error: impl Into<String>) -> ApiError {
        ApiError::new(409, error)
    }
    pub fn internal(error: impl Into<String>) -> ApiError {
        ApiError::new(500, error)
    }
    pub fn unavailable(error: impl Into<String>) -> ApiError {
        ApiError::new(503, error)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.body.error)
    }
}

// ---------------------------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------------------------

pub use crate::domain::workflow::{RunState, TaskState};

/// `POST /v1/tasks`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskRequest {
    #[serde(default)]
    pub project: Option<String>,
    pub workflow: String,
    /// Default: the workspace named `default`, or the project's only workspace.
    #[serde(default)]
    pub workspace: Option<String>,
    #[serde(default)]
    pub goal: Option<String>,
    /// JSON text handed to the task as `{payload}`.
    #[serde(default)]
    pub payload: Option<String>,
    /// False: create the task pending and leave it until `task start`.
    #[serde(default = "yes")]
    pub start: bool,
}

fn yes() -> bool {
    true
}

/// A task as `task list` shows it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskInfo {
    pub id: u64,
    pub project: String,
    pub workflow: String,
    pub workspace: String,
    pub state: TaskState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// `cli`, `trigger/<name>`, `webhook/<name>`.
    pub origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
    #[serde(
        rename = "scheduledAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub scheduled_at: Option<DateTime<Utc>>,
    /// Current (or last) cycle and step.
    pub cycle: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(rename = "createdAt")]
    pub created_at: DateTime<Utc>,
    #[serde(rename = "startedAt", default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<DateTime<Utc>>,
    #[serde(
        rename = "finishedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub finished_at: Option<DateTime<Utc>>,
}

/// One run of one step.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StepRunInfo {
    pub id: u64,
    pub step: String,
    pub cycle: u32,
    pub attempt: u32,
    /// The agent that ran a template step (none for a command step).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub argv: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub state: RunState,
    #[serde(rename = "exitCode", default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(rename = "stdoutBytes")]
    pub stdout_bytes: u64,
    #[serde(rename = "stderrBytes")]
    pub stderr_bytes: u64,
    #[serde(rename = "logPath")]
    pub log_path: String,
    #[serde(rename = "startedAt")]
    pub started_at: DateTime<Utc>,
    #[serde(
        rename = "finishedAt",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub finished_at: Option<DateTime<Utc>>,
}

/// Something that happened to a task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskEvent {
    pub at: DateTime<Utc>,
    pub message: String,
}

/// `GET /v1/tasks/{id}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskDetail {
    pub task: TaskInfo,
    /// The JSON payload the task was created with (a webhook delivery, `--payload`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    pub steps: Vec<StepRunInfo>,
    pub events: Vec<TaskEvent>,
}

/// `GET /v1/tasks`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TaskList {
    pub tasks: Vec<TaskInfo>,
}

/// Query of `GET /v1/tasks`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TaskQuery {
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub all: bool,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub workflow: Option<String>,
    #[serde(default)]
    pub trigger: Option<String>,
    #[serde(default)]
    pub limit: Option<usize>,
}

// ---------------------------------------------------------------------------------------------
// Triggers
// ---------------------------------------------------------------------------------------------

/// `POST /v1/triggers/{name}/fire`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct FireRequest {
    #[serde(default)]
    pub project: Option<String>,
    /// JSON text for `{payload}`.
    #[serde(default)]
    pub payload: Option<String>,
}

/// What a fire did: a task, or why none was created.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FireResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<TaskInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skipped: Option<String>,
}

/// A fire instant shown in a trigger's zone and in UTC.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FireTime {
    pub utc: String,
    pub local: String,
}

impl FireTime {
    pub fn new(t: DateTime<Utc>, tz: chrono_tz::Tz) -> FireTime {
        FireTime {
            utc: t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            local: t
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:%M:%S %Z")
                .to_string(),
        }
    }
}

/// `status` of a Trigger in `get`/`describe`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TriggerStatus {
    #[serde(rename = "lastFire", default, skip_serializing_if = "Option::is_none")]
    pub last_fire: Option<FireTime>,
    #[serde(rename = "nextFire", default, skip_serializing_if = "Option::is_none")]
    pub next_fire: Option<FireTime>,
    #[serde(rename = "lastTask", default, skip_serializing_if = "Option::is_none")]
    pub last_task: Option<u64>,
    pub fires: u64,
    pub skips: u64,
    pub missed: u64,
}

/// `POST /v1/actors/{name}/kill`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct KillResponse {
    pub actor: String,
    pub killed: bool,
}

/// `GET /v1/actors/{name}/inspect`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ActorInspect {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<crate::actors::introspect::StatsSummary>,
    /// What the actor reports about itself.
    pub state: serde_json::Value,
}

/// `GET /v1/actors/{name}/trace`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ActorTrace {
    pub name: String,
    pub messages: Vec<crate::actors::introspect::TraceEntry>,
}

// ---------------------------------------------------------------------------------------------
// Secrets and rotation
// ---------------------------------------------------------------------------------------------

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

/// Where a rotation is (or ended).
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
