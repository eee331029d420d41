//! The resource model: the `orchestrator.dev/v2` envelope, [`Kind`], [`Metadata`] and one spec type
//! per kind. Field names follow the established v2 manifests (snake_case, camelCase only where
//! SPEC §3 lists it) so existing files apply unchanged.
//!
//! The parser that turns manifest text into typed documents with located diagnostics lives in
//! `parse.rs`. [`SecretValue`], whose `Debug` and `Serialize` never reveal the value, and the
//! string-map readers that refuse non-string YAML scalars live in `secret.rs`.

mod parse;
mod secret;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

pub use parse::{Document, declared_identity, parse_documents, split_documents};
pub use secret::{DataEntry, Declared, LastApplied, SecretValue, fingerprint};
use secret::{SecretData, string_map};

/// The only accepted `apiVersion`.
pub const API_VERSION: &str = "orchestrator.dev/v2";

/// The project used when neither the manifest nor the CLI names one.
pub const DEFAULT_PROJECT: &str = "default";

/// The resource kinds, in the order an apply reports them (dependencies first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    Workspace,
    EnvStore,
    SecretStore,
    StepTemplate,
    Agent,
    Workflow,
    Trigger,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Workspace,
        Kind::EnvStore,
        Kind::SecretStore,
        Kind::StepTemplate,
        Kind::Agent,
        Kind::Workflow,
        Kind::Trigger,
    ];

    /// The kind as written in manifests (`SecretStore`).
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Workspace => "Workspace",
            Kind::EnvStore => "EnvStore",
            Kind::SecretStore => "SecretStore",
            Kind::StepTemplate => "StepTemplate",
            Kind::Agent => "Agent",
            Kind::Workflow => "Workflow",
            Kind::Trigger => "Trigger",
        }
    }

    /// The lowercase form used in `kind/name` output (`secretstore/github`).
    pub fn lower(self) -> &'static str {
        match self {
            Kind::Workspace => "workspace",
            Kind::EnvStore => "envstore",
            Kind::SecretStore => "secretstore",
            Kind::StepTemplate => "steptemplate",
            Kind::Agent => "agent",
            Kind::Workflow => "workflow",
            Kind::Trigger => "trigger",
        }
    }

    fn aliases(self) -> &'static [&'static str] {
        match self {
            Kind::Workspace => &["workspace", "workspaces", "ws"],
            Kind::EnvStore => &["envstore", "envstores", "es", "env"],
            Kind::SecretStore => &["secretstore", "secretstores", "ss", "secret", "secrets"],
            Kind::StepTemplate => &[
                "steptemplate",
                "steptemplates",
                "st",
                "template",
                "templates",
            ],
            Kind::Agent => &["agent", "agents", "ag"],
            Kind::Workflow => &["workflow", "workflows", "wf"],
            Kind::Trigger => &["trigger", "triggers", "tr"],
        }
    }

    /// Parses a kind as a user types it on the command line: singular, plural or short name, any
    /// case (`triggers`, `Trigger`, `tr`).
    pub fn from_cli(s: &str) -> Option<Kind> {
        let lower = s.to_ascii_lowercase();
        Kind::ALL
            .into_iter()
            .find(|k| k.aliases().contains(&lower.as_str()))
    }

    /// Parses the `kind` field of a manifest, which must be spelled exactly.
    pub fn from_manifest(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Every spelling accepted on the command line, for error hints.
    pub fn cli_names() -> Vec<&'static str> {
        Kind::ALL
            .iter()
            .flat_map(|k| k.aliases().iter().copied())
            .collect()
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `metadata` of every resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Metadata {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A typed spec, one variant per kind.
#[derive(Debug, Clone, PartialEq)]
pub enum Spec {
    Workspace(WorkspaceSpec),
    EnvStore(EnvStoreSpec),
    SecretStore(SecretStoreSpec),
    StepTemplate(StepTemplateSpec),
    Agent(AgentSpec),
    Workflow(WorkflowSpec),
    Trigger(TriggerSpec),
}

impl Spec {
    pub fn kind(&self) -> Kind {
        match self {
            Spec::Workspace(_) => Kind::Workspace,
            Spec::EnvStore(_) => Kind::EnvStore,
            Spec::SecretStore(_) => Kind::SecretStore,
            Spec::StepTemplate(_) => Kind::StepTemplate,
            Spec::Agent(_) => Kind::Agent,
            Spec::Workflow(_) => Kind::Workflow,
            Spec::Trigger(_) => Kind::Trigger,
        }
    }

    /// The spec as JSON, with secret values masked (see [`SecretValue`]). This is the canonical
    /// form that is stored and compared to decide `unchanged`.
    pub fn to_json(&self) -> serde_json::Value {
        let value = match self {
            Spec::Workspace(s) => serde_json::to_value(s),
            Spec::EnvStore(s) => serde_json::to_value(s),
            Spec::SecretStore(s) => serde_json::to_value(s),
            Spec::StepTemplate(s) => serde_json::to_value(s),
            Spec::Agent(s) => serde_json::to_value(s),
            Spec::Workflow(s) => serde_json::to_value(s),
            Spec::Trigger(s) => serde_json::to_value(s),
        };
        // Serializing plain structs of strings, numbers and maps into a Value cannot fail.
        value.unwrap_or(serde_json::Value::Null)
    }

    /// Rebuilds a spec from its canonical JSON (as stored). Secret values come back as empty
    /// placeholders; the store fills them in from the encrypted column.
    pub fn from_json(kind: Kind, value: serde_json::Value) -> Result<Spec, serde_json::Error> {
        Ok(match kind {
            Kind::Workspace => Spec::Workspace(serde_json::from_value(value)?),
            Kind::EnvStore => Spec::EnvStore(serde_json::from_value(value)?),
            Kind::SecretStore => Spec::SecretStore(serde_json::from_value(value)?),
            Kind::StepTemplate => Spec::StepTemplate(serde_json::from_value(value)?),
            Kind::Agent => Spec::Agent(serde_json::from_value(value)?),
            Kind::Workflow => Spec::Workflow(serde_json::from_value(value)?),
            Kind::Trigger => Spec::Trigger(serde_json::from_value(value)?),
        })
    }
}

/// One parsed resource: kind, metadata and spec.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub metadata: Metadata,
    pub spec: Spec,
}

impl Manifest {
    pub fn kind(&self) -> Kind {
        self.spec.kind()
    }
    pub fn name(&self) -> &str {
        &self.metadata.name
    }
}

// ---------------------------------------------------------------------------------------------
// Specs
// ---------------------------------------------------------------------------------------------

fn default_true() -> bool {
    true
}
fn is_true(b: &bool) -> bool {
    *b
}
fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceSpec {
    /// Absolute after apply: the CLI's base directory resolves a relative path.
    pub root_path: String,
    /// Each task gets its own `git worktree` of `root_path` (a git repository): see
    /// `domain::worktree`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub worktree: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvStoreSpec {
    #[serde(default, deserialize_with = "string_map")]
    pub data: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A SecretStore. In a parsed manifest, `data` holds the values it gives and `keep` the keys it
/// declares with `{keep: true}`; in a stored resource, `data` holds the live values, `keep` is
/// empty and `applied` records what the last apply declared (the three-way merge of
/// `domain::secret_merge` turns the one into the other).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "RawSecretStoreSpec")]
pub struct SecretStoreSpec {
    pub data: BTreeMap<String, SecretValue>,
    /// Keys a manifest declares without a value (`key: {keep: true}`).
    #[serde(skip)]
    pub keep: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// What the last apply declared per key (a stored resource's; `None` in a manifest, and in a
    /// store written before the three-way merge existed, where the live keys stand for it).
    #[serde(skip)]
    pub applied: Option<LastApplied>,
}

impl SecretStoreSpec {
    /// Keys the last apply declared with `{keep: true}` that have no value yet: they verify
    /// nothing until `orchestrator secret set` gives them one.
    pub fn pending(&self) -> impl Iterator<Item = &str> {
        self.applied
            .iter()
            .flatten()
            .filter(|(k, d)| **d == Declared::Keep && !self.data.contains_key(*k))
            .map(|(k, _)| k.as_str())
    }

    /// Every key the store has or declares: its values, its `{keep: true}` keys and its pending
    /// keys, in order.
    pub fn key_names(&self) -> BTreeSet<&str> {
        self.data
            .keys()
            .chain(&self.keep)
            .map(String::as_str)
            .chain(self.pending())
            .collect()
    }
}

/// `SecretStoreSpec` as written: `data` entries are values or `{keep: true}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename = "SecretStoreSpec")]
struct RawSecretStoreSpec {
    #[serde(default)]
    data: SecretData,
    #[serde(default)]
    rotation: Option<RotationSpec>,
    #[serde(default)]
    description: Option<String>,
}

impl From<RawSecretStoreSpec> for SecretStoreSpec {
    fn from(raw: RawSecretStoreSpec) -> SecretStoreSpec {
        SecretStoreSpec {
            data: raw.data.values,
            keep: raw.data.keep,
            rotation: raw.rotation,
            description: raw.description,
            applied: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RotationProvider {
    Github,
    Command,
    /// The operator sets the platform by hand (Slack signing secrets): the new value comes from
    /// `secret rotate --value-from-stdin`.
    Manual,
    /// The OAuth 2.0 refresh-token grant (Slack, Google, Atlassian, Zoom): see
    /// `domain::token`.
    Oauth2,
    /// A GitHub App's installation token, minted with the App's private key.
    #[serde(rename = "github-app")]
    GithubApp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotationSpec {
    /// The key of `data` that is rotated.
    pub key: String,
    pub provider: RotationProvider,
    /// Provider settings (repository and hook id for `github`, programs for `command`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub settings: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<KeyRef>,
    #[serde(rename = "graceSeconds", default)]
    pub grace_seconds: u64,
}

/// A reference to one key of a store: `{fromRef: store, key: KEY}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRef {
    #[serde(rename = "fromRef")]
    pub from_ref: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepTemplateSpec {
    pub prompt: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PromptDelivery {
    #[default]
    Arg,
    Stdin,
    File,
    Env,
}

/// What an agent prints on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentOutput {
    /// Plain text: `{<step>_output}` is its stdout.
    #[default]
    Text,
    /// One JSON event per line, as `claude -p --output-format stream-json --verbose` prints
    /// (see `domain::stream_json`): `{<step>_output}` is the final result.
    StreamJson,
}

impl AgentOutput {
    fn is_text(&self) -> bool {
        *self == AgentOutput::Text
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// A command template split into argv with shell-word rules (never run through a shell).
    pub command: String,
    #[serde(default)]
    pub capabilities: Vec<String>,
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub enabled: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvEntry>,
    #[serde(rename = "promptDelivery", default)]
    pub prompt_delivery: PromptDelivery,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// Stops a run that writes nothing for this many seconds (a step's own value wins).
    #[serde(
        default,
        alias = "idleTimeoutSecs",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "AgentOutput::is_text")]
    pub output: AgentOutput,
    /// Words added to `command` when a stream-json step is retried after a run that reported
    /// its session id, with `{session_id}` (e.g. `--resume {session_id}` for `claude -p`).
    #[serde(
        rename = "resumeArgs",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub resume_args: Option<String>,
    /// Stops a stream-json run after this many turns.
    #[serde(rename = "maxTurns", default, skip_serializing_if = "Option::is_none")]
    pub max_turns: Option<u32>,
    /// Stops a stream-json run whose reported cost exceeds this many US dollars.
    #[serde(
        rename = "maxCostUsd",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub max_cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One agent `env` entry. The three shapes (`{name, value}`, `{fromRef}`, `{name, refValue}`) are
/// one struct so that a wrong combination gets a precise message from validation instead of
/// serde's "did not match any variant".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvEntry {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(rename = "fromRef", default, skip_serializing_if = "Option::is_none")]
    pub from_ref: Option<String>,
    #[serde(rename = "refValue", default, skip_serializing_if = "Option::is_none")]
    pub ref_value: Option<RefValue>,
}

/// `refValue: {name: STORE, key: KEY}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefValue {
    pub name: String,
    pub key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSpec {
    pub steps: Vec<StepSpec>,
    #[serde(rename = "loop", default)]
    pub loop_: LoopSpec,
    #[serde(default = "default_one")]
    pub max_parallel: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn default_one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepScope {
    #[default]
    Task,
    /// Reserved by the v2 format; refused by validation until item fan-out exists.
    Item,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepSpec {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub required_capability: Option<String>,
    #[serde(default)]
    pub scope: StepScope,
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub enabled: bool,
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    pub repeatable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// The wait before each retry (Temporal's defaults when `retries` is set without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
    /// Stops a run that writes nothing (stdout or stderr) for this many seconds; the agent's
    /// when the step sets none.
    #[serde(
        default,
        alias = "idleTimeoutSecs",
        skip_serializing_if = "Option::is_none"
    )]
    pub idle_timeout_secs: Option<u64>,
    /// Accepted for compatibility with older manifests and ignored.
    #[serde(rename = "type", default, skip_serializing)]
    pub type_: Option<Ignored>,
}

/// A step's wait before retry `n` (1 for the second attempt): `initial_delay_secs ×
/// factor^(n-1)`, at most `max_delay_secs`, spread by ± `jitter` (a fraction) so that the
/// retries of many tasks do not arrive together. The defaults are Temporal's: 1 s, × 2, at most
/// 100 × the initial delay, no jitter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backoff {
    #[serde(default = "Backoff::default_initial", alias = "initialDelaySecs")]
    pub initial_delay_secs: f64,
    #[serde(default = "Backoff::default_factor")]
    pub factor: f64,
    #[serde(
        default,
        alias = "maxDelaySecs",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_delay_secs: Option<f64>,
    #[serde(default)]
    pub jitter: f64,
}

/// Validation refuses what is not finite, so equality is total.
impl Eq for Backoff {}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            initial_delay_secs: Backoff::default_initial(),
            factor: Backoff::default_factor(),
            max_delay_secs: None,
            jitter: 0.0,
        }
    }
}

impl Backoff {
    fn default_initial() -> f64 {
        1.0
    }

    fn default_factor() -> f64 {
        2.0
    }

    /// The cap: `max_delay_secs`, else 100 × the initial delay.
    pub fn max_delay(&self) -> f64 {
        self.max_delay_secs
            .unwrap_or(100.0 * self.initial_delay_secs)
    }

    /// The wait before retry `retry` (≥ 1), with `unit` in [0, 1) drawn by the caller for the
    /// jitter (0.5 gives the middle of the spread).
    pub fn delay(&self, retry: u32, unit: f64) -> std::time::Duration {
        let exp = i32::try_from(retry.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = (self.initial_delay_secs * self.factor.powi(exp)).min(self.max_delay());
        let spread = 1.0 + self.jitter * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        let secs = (base * spread).clamp(0.0, self.max_delay());
        std::time::Duration::try_from_secs_f64(secs).unwrap_or_default()
    }
}

/// A field that is accepted and ignored (its value is skipped, whatever its shape).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ignored;

impl<'de> Deserialize<'de> for Ignored {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        de::IgnoredAny::deserialize(d).map(|_| Ignored)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoopMode {
    #[default]
    Once,
    Fixed,
    Infinite,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopSpec {
    #[serde(default)]
    pub mode: LoopMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_cycles: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ConcurrencyPolicy {
    Allow,
    #[default]
    Forbid,
    Replace,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cron: Option<CronSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<EventSpec>,
    pub action: ActionSpec,
    #[serde(rename = "concurrencyPolicy", default)]
    pub concurrency_policy: ConcurrencyPolicy,
    #[serde(default, skip_serializing_if = "is_false")]
    pub suspend: bool,
    #[serde(
        rename = "startingDeadlineSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub starting_deadline_seconds: Option<u64>,
    #[serde(
        rename = "historyLimit",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub history_limit: Option<HistoryLimit>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CronSpec {
    pub schedule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EventSource {
    Webhook,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    pub source: EventSource,
    pub webhook: WebhookSpec,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<FilterSpec>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSpec {
    pub secret: WebhookSecret,
    #[serde(
        rename = "signatureHeader",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub signature_header: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    #[serde(
        rename = "toleranceSeconds",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub tolerance_seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSecret {
    #[serde(rename = "fromRef")]
    pub from_ref: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keys: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionSpec {
    pub workflow: String,
    pub workspace: String,
    #[serde(default = "default_true")]
    pub start: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successful: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<u32>,
}
