//! The resource model: the `orchestrator.dev/v2` envelope, one spec type per kind, and the parser
//! that turns manifest text into typed documents. Field names follow the established v2 manifests
//! (snake_case, camelCase only where SPEC §3 lists it) so existing files apply unchanged.
//!
//! Parsing is strict (`deny_unknown_fields` everywhere) and reports problems as [`Diagnostic`]s that
//! carry the document index, the line, the field path and a hint. Secret values are wrapped in
//! [`SecretValue`], whose `Debug` and `Serialize` never reveal the value.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use zeroize::Zeroizing;

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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretStoreSpec {
    #[serde(default, deserialize_with = "secret_map")]
    pub data: BTreeMap<String, SecretValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rotation: Option<RotationSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RotationProvider {
    Github,
    Command,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
    /// Accepted for compatibility with older manifests and ignored.
    #[serde(rename = "type", default, skip_serializing)]
    pub type_: Option<Ignored>,
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

// ---------------------------------------------------------------------------------------------
// Secret values
// ---------------------------------------------------------------------------------------------

/// `sha256:` and the first 8 hex digits of the SHA-256 of a value: enough to tell keys apart and
/// to compare with a platform's copy, not enough to recover anything.
pub fn fingerprint(value: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(value.as_bytes());
    format!("sha256:{}", hex::encode(&digest[..4]))
}

/// A secret string. It is zeroized when dropped; `Debug` prints `***` and `Serialize` writes `***`,
/// so a secret cannot leak through logs, API responses or stored spec JSON by accident. The real
/// value is reachable only through [`SecretValue::expose`].
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretValue(Zeroizing<String>);

impl SecretValue {
    pub const MASK: &'static str = "***";

    pub fn new(value: String) -> Self {
        SecretValue(Zeroizing::new(value))
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(Self::MASK)
    }
}

impl Serialize for SecretValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(Self::MASK)
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SecretScalar).map(SecretValue::new)
    }
}

/// Accepts only a string and never echoes the value in its error: YAML turns `012345` or `yes`
/// into numbers and booleans, which would silently change a secret, so those are refused with a
/// hint to quote the value.
struct SecretScalar;

impl<'de> Visitor<'de> for SecretScalar {
    type Value = String;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_owned())
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<String, E> {
        Ok(v)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<String, E> {
        Err(E::custom(NOT_A_STRING))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<String, E> {
        Err(E::custom(NOT_A_STRING))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<String, E> {
        Err(E::custom(NOT_A_STRING))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<String, E> {
        Err(E::custom(NOT_A_STRING))
    }
    fn visit_unit<E: de::Error>(self) -> Result<String, E> {
        Err(E::custom("value is empty: give a quoted string"))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(de::Error::custom("value is a list: values must be strings"))
    }
    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<String, A::Error> {
        Err(de::Error::custom(
            "value is a mapping: values must be strings",
        ))
    }
}

const NOT_A_STRING: &str =
    "value is not a string (YAML read it as a number or boolean): quote it, e.g. \"0123\"";

struct StringMap<F>(F);

impl<'de, V, F: Fn(String) -> V> Visitor<'de> for StringMap<F> {
    type Value = BTreeMap<String, V>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping of string keys to string values")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(BTreeMap::new())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(ScalarSeed)?;
            if out.insert(key.clone(), (self.0)(value)).is_some() {
                return Err(de::Error::custom(format!(
                    "duplicate key `{key}`: each key may appear once"
                )));
            }
        }
        Ok(out)
    }
}

struct ScalarSeed;
impl<'de> de::DeserializeSeed<'de> for ScalarSeed {
    type Value = String;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
        d.deserialize_any(SecretScalar)
    }
}

fn string_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    d.deserialize_any(StringMap(|s| s))
}

fn secret_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, SecretValue>, D::Error> {
    d.deserialize_any(StringMap(SecretValue::new))
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

use super::diagnostic::{Diagnostic, did_you_mean};
use super::limits::MAX_NESTING;
use super::locate::LineIndex;

/// One parsed document and where it came from.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file as the user named it.
    pub file: String,
    /// 1-based index among the file's non-empty documents.
    pub index: usize,
    /// 1-based line in the file where the document's text starts.
    pub first_line: usize,
    /// The document's own text, kept to locate later problems.
    pub text: String,
    pub manifest: Manifest,
}

impl Document {
    /// A problem at `path` inside this document, with file, index, resource and line filled in.
    pub fn diagnostic(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let line = LineIndex::build(&self.text)
            .line_of(path)
            .map(|l| l + self.first_line - 1);
        Diagnostic {
            file: self.file.clone(),
            document: self.index,
            line,
            resource: format!("{}/{}", self.manifest.kind().lower(), self.manifest.name()),
            path: path.to_owned(),
            message: message.into(),
            hint: None,
        }
    }
}

/// Splits `text` into YAML documents on `---` lines (and after `...` lines), the way kubectl does,
/// returning each document's first line and text. Documents holding only comments and blank
/// lines are dropped.
pub fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut docs = Vec::new();
    let (mut start, mut start_line, mut offset) = (0usize, 1usize, 0usize);
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let line = raw.trim_end_matches(['\n', '\r']);
        let is_start = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_start && offset > start {
            docs.push((start_line, &text[start..offset]));
            start = offset;
            start_line = i + 1;
        }
        offset += raw.len();
        if line == "..." || line.starts_with("... ") {
            docs.push((start_line, &text[start..offset]));
            start = offset;
            start_line = i + 2;
        }
    }
    if start < text.len() {
        docs.push((start_line, &text[start..]));
    }
    docs.retain(|(_, d)| !is_blank_document(d));
    docs
}

fn is_blank_document(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..." || t.starts_with("--- #")
    })
}

/// `apiVersion` and `kind`, read before the typed parse.
struct Probe {
    api_version: Option<serde_yaml::Value>,
    kind: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Typed<S> {
    #[serde(rename = "apiVersion")]
    _api_version: Ignored,
    #[serde(rename = "kind")]
    _kind: Ignored,
    metadata: RawMetadata,
    spec: S,
    /// Written by `get -o yaml`; ignored so that its output can be applied again.
    #[serde(rename = "status", default)]
    _status: Option<Ignored>,
}

/// Metadata as written, including the read-only fields `get -o yaml` adds (ignored).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetadata {
    name: String,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(rename = "generation", default)]
    _generation: Option<Ignored>,
    #[serde(rename = "createdAt", default)]
    _created_at: Option<Ignored>,
    #[serde(rename = "updatedAt", default)]
    _updated_at: Option<Ignored>,
}

/// Parses every document of one file. Returns the documents that parsed and a diagnostic for each
/// one that did not (one per document: a document stops at its first structural problem). A
/// document nested deeper than [`MAX_NESTING`] is refused by a cheap scan before it is parsed.
pub fn parse_documents(file: &str, text: &str) -> (Vec<Document>, Vec<Diagnostic>) {
    let mut docs = Vec::new();
    let mut problems = Vec::new();
    for (i, (first_line, doc)) in split_documents(text).into_iter().enumerate() {
        let index = i + 1;
        let locate = |mut d: Diagnostic| {
            d.file = file.to_owned();
            d.document = index;
            d.line = d.line.map(|l| l + first_line - 1);
            d
        };
        if let Some(line) = super::locate::nesting_beyond(doc, MAX_NESTING) {
            problems.push(locate(Diagnostic {
                line: Some(line),
                ..Diagnostic::new(
                    "",
                    format!("the document nests deeper than {MAX_NESTING} levels"),
                )
                .hint("manifests need only a few levels: look for unclosed brackets or runaway indentation")
            }));
            continue;
        }
        match parse_one(doc) {
            Ok(manifest) => docs.push(Document {
                file: file.to_owned(),
                index,
                first_line,
                text: doc.to_owned(),
                manifest,
            }),
            Err(d) => problems.push(locate(*d)),
        }
    }
    (docs, problems)
}

/// What a document declares — its kind, `metadata.project` and `metadata.name` — read leniently,
/// for a document that failed to parse, so that the rest of an apply can still be checked
/// against it. `None` when even that much cannot be read.
pub fn declared_identity(doc: &str) -> Option<(Kind, Option<String>, String)> {
    if super::locate::nesting_beyond(doc, MAX_NESTING).is_some() {
        return None;
    }
    let value: serde_yaml::Value = serde_yaml::from_str(doc).ok()?;
    let kind = Kind::from_manifest(value.get("kind")?.as_str()?)?;
    let meta = value.get("metadata")?;
    let name = meta.get("name")?.as_str()?.to_owned();
    let project = meta
        .get("project")
        .and_then(serde_yaml::Value::as_str)
        .map(str::to_owned);
    Some((kind, project, name))
}

/// Parses one document's text (line numbers in the result are relative to it).
fn parse_one(doc: &str) -> Result<Manifest, Box<Diagnostic>> {
    // libyaml parses the text once, into a Value; the typed structs are read from the Value.
    // Only when that fails is the text parsed again, straight into the typed struct, because
    // that path gives the error its line.
    let value: serde_yaml::Value =
        serde_yaml::from_str(doc).map_err(|e| Box::new(yaml_diagnostic(&e, doc)))?;
    let probe = match &value {
        serde_yaml::Value::Mapping(m) => Probe {
            api_version: m.get("apiVersion").cloned(),
            kind: m.get("kind").cloned(),
        },
        _ => {
            return Err(Box::new(Diagnostic {
                line: Some(1),
                ..Diagnostic::new(
                    "",
                    "a document must be a mapping with apiVersion, kind, metadata and spec",
                )
                .hint("write one resource per document, separated by `---` lines")
            }));
        }
    };
    let line_of = |path: &str| LineIndex::build(doc).line_of(path);
    match probe.api_version.as_ref().map(yaml_as_str) {
        Some(Some(API_VERSION)) => {}
        Some(other) => {
            let shown = other.map_or_else(|| "a non-string".to_owned(), |s| format!("{s:?}"));
            return Err(Box::new(Diagnostic {
                line: line_of("apiVersion"),
                ..Diagnostic::new("apiVersion", format!("unsupported apiVersion {shown}"))
                    .hint(format!("use `apiVersion: {API_VERSION}`"))
            }));
        }
        None => {
            return Err(Box::new(Diagnostic {
                line: Some(1),
                ..Diagnostic::new("apiVersion", "missing field `apiVersion`")
                    .hint(format!("add `apiVersion: {API_VERSION}`"))
            }));
        }
    }
    let kind_names = Kind::ALL.map(Kind::as_str);
    let kind = match probe.kind.as_ref().map(yaml_as_str) {
        Some(Some(k)) => Kind::from_manifest(k).ok_or_else(|| {
            let hint = match did_you_mean(k, kind_names) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("use one of {}", kind_names.join(", ")),
            };
            Box::new(Diagnostic {
                line: line_of("kind"),
                ..Diagnostic::new("kind", format!("unknown kind {k:?}")).hint(hint)
            })
        })?,
        Some(None) => {
            return Err(Box::new(Diagnostic {
                line: line_of("kind"),
                ..Diagnostic::new("kind", "kind must be a string")
                    .hint(format!("use one of {}", kind_names.join(", ")))
            }));
        }
        None => {
            return Err(Box::new(Diagnostic {
                line: Some(1),
                ..Diagnostic::new("kind", "missing field `kind`")
                    .hint(format!("add `kind:` with one of {}", kind_names.join(", ")))
            }));
        }
    };
    fn typed<S: for<'de> Deserialize<'de>>(
        doc: &str,
        value: serde_yaml::Value,
        wrap: fn(S) -> Spec,
    ) -> Result<Manifest, Box<Diagnostic>> {
        let t: Typed<S> = match serde_yaml::from_value(value) {
            Ok(t) => t,
            Err(from_value) => {
                let e = serde_yaml::from_str::<Typed<S>>(doc)
                    .err()
                    .unwrap_or(from_value);
                return Err(Box::new(yaml_diagnostic(&e, doc)));
            }
        };
        let m = t.metadata;
        Ok(Manifest {
            metadata: Metadata {
                name: m.name,
                project: m.project,
                labels: m.labels,
                annotations: m.annotations,
            },
            spec: wrap(t.spec),
        })
    }
    match kind {
        Kind::Workspace => typed(doc, value, Spec::Workspace),
        Kind::EnvStore => typed(doc, value, Spec::EnvStore),
        Kind::SecretStore => typed(doc, value, Spec::SecretStore),
        Kind::StepTemplate => typed(doc, value, Spec::StepTemplate),
        Kind::Agent => typed(doc, value, Spec::Agent),
        Kind::Workflow => typed(doc, value, Spec::Workflow),
        Kind::Trigger => typed(doc, value, Spec::Trigger),
    }
}

fn yaml_as_str(v: &serde_yaml::Value) -> Option<&str> {
    v.as_str()
}

/// Turns a serde_yaml error into a diagnostic: serde_yaml renders `path: message at line L column
/// C`; the path and line become fields and the message gets a hint where one is known.
fn yaml_diagnostic(err: &serde_yaml::Error, doc: &str) -> Diagnostic {
    let mut text = err.to_string();
    let line = err.location().map(|l| {
        let suffix = format!(" at line {} column {}", l.line(), l.column());
        text = text.replacen(&suffix, "", 1);
        l.line()
    });
    let (mut path, mut message) = match text.split_once(": ") {
        Some((p, m)) if !p.is_empty() && !p.contains(char::is_whitespace) => {
            (p.to_owned(), m.to_owned())
        }
        _ => (String::new(), text),
    };
    if path == "." {
        path.clear();
    }
    let mut hint = None;
    if let Some(field) = between(&message, "unknown field `", "`") {
        let expected = backticked(message.split_once("expected").map_or("", |(_, r)| r));
        let field = field.to_owned();
        hint = Some(
            match did_you_mean(&field, expected.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None if expected.is_empty() => "remove it: this mapping takes no fields".to_owned(),
                None => format!("remove it; valid fields are {}", expected.join(", ")),
            },
        );
        path = join_path(&path, &field);
        message = format!("unknown field `{field}`");
    } else if let Some(variant) = between(&message, "unknown variant `", "`") {
        let expected = backticked(message.split_once("expected").map_or("", |(_, r)| r));
        hint = Some(format!("use one of {}", expected.join(", ")));
        message = format!("unknown value `{variant}`");
    } else if let Some(field) = between(&message, "missing field `", "`") {
        let field = field.to_owned();
        hint = Some(format!("add `{field}:`"));
        path = join_path(&path, &field);
        // serde_yaml points at the end of the mapping; the mapping's own key is more useful.
        if let Some(l) = LineIndex::build(doc).line_of(&path) {
            return Diagnostic {
                line: Some(l),
                hint,
                ..Diagnostic::new(path, message)
            };
        }
    } else if message.starts_with("invalid type") {
        hint = type_hint(&message).map(str::to_owned);
    } else if path.is_empty()
        && line.is_some()
        && !message.starts_with("invalid")
        && !message.contains("Probe")
    {
        hint = Some("check the YAML syntax (indentation, quoting, colons)".to_owned());
    }
    if path.is_empty() && message.contains("expected struct Probe") {
        message = "a document must be a mapping with apiVersion, kind, metadata and spec".into();
    }
    let line = line.or_else(|| LineIndex::build(doc).line_of(&path));
    Diagnostic {
        line,
        hint,
        ..Diagnostic::new(path, message)
    }
}

fn join_path(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &s[s.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

/// Every `backticked` word in `s`.
fn backticked(s: &str) -> Vec<String> {
    s.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

fn type_hint(message: &str) -> Option<&'static str> {
    let expected = message.split_once("expected ")?.1;
    Some(match expected {
        e if e.starts_with("u64") || e.starts_with("u32") || e.starts_with("usize") => {
            "use a non-negative whole number"
        }
        e if e.starts_with("a boolean") => "use true or false",
        e if e.starts_with("a sequence") => "use a YAML list (lines starting with `- `)",
        e if e.starts_with("a string") => "use a string (quote it if YAML reads it as a number)",
        e if e.starts_with("struct") || e.starts_with("a map") => {
            "use a mapping (`key: value` lines, indented under the field)"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `text` and returns the single diagnostic rendered, or "ok".
    fn diag(text: &str) -> String {
        let (docs, problems) = parse_documents("f.yaml", text);
        match problems.as_slice() {
            [] => format!("ok {}", docs.len()),
            [d] => d.to_string(),
            many => panic!("expected one problem, got {many:?}"),
        }
    }

    fn check(text: &str, want: &str) {
        assert_eq!(diag(text), want, "input:\n{text}");
    }

    const HEAD: &str = "apiVersion: orchestrator.dev/v2\n";

    #[test]
    fn structural_problems() {
        check(
            &format!(
                "{HEAD}kind: Workflow\nmetadata:\n  name: w\nspec:\n  steps:\n    - id: a\n      templat: t\n"
            ),
            "f.yaml:8: document 1: spec.steps[0].templat: unknown field `templat` (hint: did you mean `template`?)",
        );
        check(
            &format!("{HEAD}kind: StepTemplate\nmetadata:\n  name: t\nspec:\n  description: x\n"),
            "f.yaml:5: document 1: spec.prompt: missing field `prompt` (hint: add `prompt:`)",
        );
        check(
            &format!(
                "{HEAD}kind: Agent\nmetadata:\n  name: a\nspec:\n  command: x\n  timeout_secs: soon\n"
            ),
            "f.yaml:7: document 1: spec.timeout_secs: invalid type: string \"soon\", expected u64 (hint: use a non-negative whole number)",
        );
        check(
            "apiVersion: orchestrator.dev/v1\nkind: Agent\n",
            "f.yaml:1: document 1: apiVersion: unsupported apiVersion \"orchestrator.dev/v1\" (hint: use `apiVersion: orchestrator.dev/v2`)",
        );
        check(
            &format!("{HEAD}kind: Secretstore\n"),
            "f.yaml:2: document 1: kind: unknown kind \"Secretstore\" (hint: did you mean `SecretStore`?)",
        );
        check(
            &format!(
                "{HEAD}kind: Agent\nmetadata:\n  name: a\nspec:\n  command: x\n  promptDelivery: pipe\n"
            ),
            "f.yaml:7: document 1: spec.promptDelivery: unknown value `pipe` (hint: use one of arg, stdin, file, env)",
        );
        check(
            "kind: Agent\nmetadata: [\n",
            "f.yaml:3: document 1: did not find expected node content, while parsing a flow node (hint: check the YAML syntax (indentation, quoting, colons))",
        );
    }

    #[test]
    fn secret_values_are_never_echoed() {
        let text = format!(
            "{HEAD}kind: SecretStore\nmetadata:\n  name: s\nspec:\n  data:\n    pin: 123456789\n"
        );
        let d = diag(&text);
        assert!(!d.contains("123456789"), "{d}");
        assert!(d.contains("spec.data") && d.contains("quote it"), "{d}");
    }

    #[test]
    fn documents_are_split_and_counted() {
        let text = format!(
            "# leading comment\n---\n{HEAD}kind: StepTemplate\nmetadata:\n  name: a\nspec:\n  prompt: p\n---\n# empty\n---\n{HEAD}kind: StepTemplate\nmetadata:\n  name: b\nspec:\n  prompt: q\n  bogus: 1\n"
        );
        assert_eq!(
            diag(&text),
            "f.yaml:18: document 2: spec.bogus: unknown field `bogus` (hint: remove it; valid fields are prompt, description)"
        );
        let (docs, _) = parse_documents("f.yaml", &text);
        assert_eq!(docs[0].first_line, 2);
        assert_eq!(docs[0].manifest.name(), "a");
    }

    #[test]
    fn step_type_is_ignored_and_defaults_apply() {
        let text = format!(
            "{HEAD}kind: Workflow\nmetadata:\n  name: w\nspec:\n  steps:\n    - id: a\n      type: qa\n      command: echo\n"
        );
        let (docs, problems) = parse_documents("f.yaml", &text);
        assert!(problems.is_empty(), "{problems:?}");
        let Spec::Workflow(w) = &docs[0].manifest.spec else {
            panic!("not a workflow")
        };
        assert!(w.steps[0].enabled && w.steps[0].repeatable);
        assert_eq!(w.max_parallel, 1);
        assert_eq!(w.loop_.mode, LoopMode::Once);
    }

    #[test]
    fn secret_value_debug_and_json_are_masked() {
        let v = SecretValue::new("hunter2".into());
        assert_eq!(format!("{v:?}"), "***");
        assert_eq!(serde_json::to_string(&v).unwrap_or_default(), "\"***\"");
        assert_eq!(v.expose(), "hunter2");
    }
}
