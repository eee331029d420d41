//! Validation of an apply (or a delete) against the current snapshot, before anything is written.
//! It returns every problem at once as [`Diagnostic`]s with file, document, line, field path and a
//! hint. Resource-local rules (names, cron expressions, argv splitting, placeholders) and
//! references between resources (trigger → workflow, step → template, agent env → store key, …)
//! are checked; a reference may point at a resource of the same apply.
//!
//! References are listed once, by [`references`], and used both to validate an apply and to refuse
//! a delete that would leave a referrer dangling.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Component, Path, PathBuf};

use super::diagnostic::{Diagnostic, did_you_mean};
use super::manifest::{
    AgentSpec, DEFAULT_PROJECT, Document, EventSpec, Kind, LoopMode, Manifest, PromptDelivery,
    SecretStoreSpec, Spec, StepScope, TriggerSpec, WorkflowSpec,
};
use super::render;
use super::schedule::Schedule;
use super::signature::Scheme;
use super::snapshot::{ResourceKey, Snapshot};

/// Longest accepted name (SPEC §3).
const MAX_NAME: usize = 63;

/// Environment variables the daemon sets for every agent; an agent's `env` may not override them.
pub const RESERVED_ENV: &[&str] = &[
    "ORCHESTRATOR_SOCKET",
    "ORCHESTRATOR_TASK_ID",
    "ORCHESTRATOR_STEP_ID",
    "ORCHESTRATOR_PROJECT",
    "ORCH_PROMPT",
    "ORCH_PROMPT_FILE",
];

/// Checks a resource or project name: 1–63 chars of `[a-z0-9-_.]`, starting alphanumeric.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    let first_ok = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty() {
        Err("name is empty".into())
    } else if name.len() > MAX_NAME {
        Err(format!(
            "name {name:?} is {} characters long; the limit is {MAX_NAME}",
            name.len()
        ))
    } else if !ok_chars || !first_ok {
        Err(format!(
            "invalid name {name:?}: use 1-63 characters of a-z, 0-9, '-', '_' and '.', starting with a letter or digit"
        ))
    } else {
        Ok(())
    }
}

/// Keys of SecretStore data: 1–253 chars of `[A-Za-z0-9._-]`.
fn check_data_key(key: &str) -> Result<(), String> {
    if key.is_empty() || key.len() > 253 {
        return Err(format!("invalid key {key:?}: use 1-253 characters"));
    }
    if !key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(format!(
            "invalid key {key:?}: use letters, digits, '-', '_' and '.'"
        ));
    }
    Ok(())
}

/// An environment variable name: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn is_env_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Resolves a Workspace `root_path` against the directory of the manifest that declared it, and
/// normalizes `.` and `..` lexically (the path need not exist yet).
pub fn resolve_root_path(root: &str, base_dir: &Path) -> String {
    let joined = base_dir.join(root);
    let mut out = PathBuf::new();
    for comp in joined.components() {
        match comp {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out.to_string_lossy().into_owned()
}

// ---------------------------------------------------------------------------------------------
// References
// ---------------------------------------------------------------------------------------------

/// What a reference points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A resource of one kind, optionally one key of its `data`.
    Named {
        kind: Kind,
        name: String,
        key: Option<String>,
    },
    /// An EnvStore or SecretStore (agent `env`), optionally one key.
    Store { name: String, key: Option<String> },
    /// Some enabled agent with this capability.
    Capability(String),
}

/// One reference made by a resource, with the field path that makes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub path: String,
    pub target: Target,
}

/// Every reference `spec` makes.
pub fn references(spec: &Spec) -> Vec<Reference> {
    let mut out = Vec::new();
    let mut push = |path: String, target: Target| out.push(Reference { path, target });
    let named = |kind, name: &str, key: Option<&str>| Target::Named {
        kind,
        name: name.to_owned(),
        key: key.map(str::to_owned),
    };
    match spec {
        Spec::Agent(a) => {
            for (i, e) in a.env.iter().enumerate() {
                if let Some(store) = &e.from_ref {
                    push(
                        format!("spec.env[{i}].fromRef"),
                        Target::Store {
                            name: store.clone(),
                            key: None,
                        },
                    );
                }
                if let Some(rv) = &e.ref_value {
                    push(
                        format!("spec.env[{i}].refValue"),
                        Target::Store {
                            name: rv.name.clone(),
                            key: Some(rv.key.clone()),
                        },
                    );
                }
            }
        }
        Spec::Workflow(w) => {
            for (i, s) in w.steps.iter().enumerate() {
                if let Some(t) = &s.template {
                    push(
                        format!("spec.steps[{i}].template"),
                        named(Kind::StepTemplate, t, None),
                    );
                    if let Some(cap) = &s.required_capability {
                        push(
                            format!("spec.steps[{i}].required_capability"),
                            Target::Capability(cap.clone()),
                        );
                    }
                }
            }
        }
        Spec::Trigger(t) => {
            push(
                "spec.action.workflow".into(),
                named(Kind::Workflow, &t.action.workflow, None),
            );
            push(
                "spec.action.workspace".into(),
                named(Kind::Workspace, &t.action.workspace, None),
            );
            if let Some(ev) = &t.event {
                let store = &ev.webhook.secret.from_ref;
                push(
                    "spec.event.webhook.secret.fromRef".into(),
                    named(Kind::SecretStore, store, None),
                );
                for (i, k) in ev.webhook.secret.keys.iter().flatten().enumerate() {
                    push(
                        format!("spec.event.webhook.secret.keys[{i}]"),
                        named(Kind::SecretStore, store, Some(k)),
                    );
                }
            }
        }
        Spec::SecretStore(s) => {
            if let Some(c) = s.rotation.as_ref().and_then(|r| r.credentials.as_ref()) {
                push(
                    "spec.rotation.credentials".into(),
                    named(Kind::SecretStore, &c.from_ref, Some(&c.key)),
                );
            }
        }
        Spec::Workspace(_) | Spec::EnvStore(_) | Spec::StepTemplate(_) => {}
    }
    out
}

/// The resources visible to reference checks: the snapshot overlaid with the apply's documents,
/// minus anything being deleted.
struct View<'a> {
    snapshot: &'a Snapshot,
    overlay: HashMap<ResourceKey, &'a Manifest>,
    removed: HashSet<&'a ResourceKey>,
}

impl<'a> View<'a> {
    fn get(&self, project: &str, kind: Kind, name: &str) -> Option<&Spec> {
        let key = ResourceKey::new(project, kind, name);
        if let Some(m) = self.overlay.get(&key) {
            return Some(&m.spec);
        }
        if self.removed.contains(&key) {
            return None;
        }
        self.snapshot.get(&key).map(|r| &r.spec)
    }

    /// Names of existing resources of `kind` in `project`, for "did you mean".
    fn names(&self, project: &str, kind: Kind) -> Vec<String> {
        let mut names: Vec<String> = self
            .snapshot
            .list(kind, Some(project))
            .filter(|r| !self.removed.contains(&r.key))
            .map(|r| r.key.name.clone())
            .collect();
        names.extend(
            self.overlay
                .keys()
                .filter(|k| k.kind == kind && k.project == project)
                .map(|k| k.name.clone()),
        );
        names.sort();
        names.dedup();
        names
    }

    /// Every agent spec in `project`.
    fn agents(&self, project: &str) -> Vec<(String, &'a AgentSpec)> {
        let mut out: BTreeMap<String, &'a AgentSpec> = BTreeMap::new();
        let snapshot: &'a Snapshot = self.snapshot;
        for r in snapshot.iter() {
            if let Spec::Agent(a) = &r.spec
                && r.key.project == project
                && !self.removed.contains(&r.key)
            {
                out.insert(r.key.name.clone(), a);
            }
        }
        for (k, m) in &self.overlay {
            if let Spec::Agent(a) = &m.spec
                && k.project == project
            {
                out.insert(k.name.clone(), a);
            }
        }
        out.into_iter().collect()
    }

    /// Checks one reference; the error is a message and a hint.
    fn resolve(&self, project: &str, target: &Target) -> Result<(), (String, String)> {
        match target {
            Target::Named { kind, name, key } => {
                let Some(spec) = self.get(project, *kind, name) else {
                    return Err(self.missing(project, *kind, name));
                };
                match key {
                    Some(k) => check_key(*kind, name, spec, k),
                    None => Ok(()),
                }
            }
            Target::Store { name, key } => {
                let secret = self.get(project, Kind::SecretStore, name);
                let env = self.get(project, Kind::EnvStore, name);
                let (kind, spec) = match (secret, env) {
                    (Some(s), None) => (Kind::SecretStore, s),
                    (None, Some(e)) => (Kind::EnvStore, e),
                    (Some(_), Some(_)) => {
                        return Err((
                            format!("{name:?} names both a SecretStore and an EnvStore"),
                            "rename one of the two stores".into(),
                        ));
                    }
                    (None, None) => {
                        let mut names = self.names(project, Kind::SecretStore);
                        names.extend(self.names(project, Kind::EnvStore));
                        return Err((
                            format!(
                                "no SecretStore or EnvStore named {name:?} in project {project:?}"
                            ),
                            suggest(
                                name,
                                &names,
                                "apply the store (it may be in the same apply) or fix the name",
                            ),
                        ));
                    }
                };
                match key {
                    Some(k) => check_key(kind, name, spec, k),
                    None => Ok(()),
                }
            }
            Target::Capability(cap) => {
                let agents = self.agents(project);
                let with_cap: Vec<_> = agents
                    .iter()
                    .filter(|(_, a)| a.capabilities.iter().any(|c| c == cap))
                    .collect();
                if with_cap.iter().any(|(_, a)| a.enabled) {
                    Ok(())
                } else if let Some((name, _)) = with_cap.first() {
                    Err((
                        format!("no enabled agent has capability {cap:?}"),
                        format!("agent {name:?} has it but is disabled: set `enabled: true`"),
                    ))
                } else {
                    Err((
                        format!("no agent in project {project:?} has capability {cap:?}"),
                        format!("add {cap:?} to an enabled Agent's `capabilities`"),
                    ))
                }
            }
        }
    }

    fn missing(&self, project: &str, kind: Kind, name: &str) -> (String, String) {
        (
            format!("{kind} {name:?} not found in project {project:?}"),
            suggest(
                name,
                &self.names(project, kind),
                &format!(
                    "apply a {kind} named {name:?} (it may be in the same apply) or fix the name"
                ),
            ),
        )
    }
}

fn suggest(name: &str, names: &[String], otherwise: &str) -> String {
    match did_you_mean(name, names.iter().map(String::as_str)) {
        Some(s) => format!("did you mean {s:?}?"),
        None => otherwise.to_owned(),
    }
}

fn check_key(kind: Kind, name: &str, spec: &Spec, key: &str) -> Result<(), (String, String)> {
    let keys: Vec<&str> = match spec {
        Spec::SecretStore(s) => s.data.keys().map(String::as_str).collect(),
        Spec::EnvStore(e) => e.data.keys().map(String::as_str).collect(),
        _ => Vec::new(),
    };
    if keys.contains(&key) {
        return Ok(());
    }
    let hint = if keys.is_empty() {
        format!("{kind} {name:?} has no keys yet")
    } else {
        format!("its keys are {}", keys.join(", "))
    };
    Err((format!("{kind} {name:?} has no key {key:?}"), hint))
}

// ---------------------------------------------------------------------------------------------
// Apply
// ---------------------------------------------------------------------------------------------

/// Validates the documents of one apply. On success every document's `metadata.project` is set.
/// `project_flag` is the CLI's `-p/--project`, if given.
pub fn validate_apply(
    docs: &mut [Document],
    snapshot: &Snapshot,
    project_flag: Option<&str>,
) -> Vec<Diagnostic> {
    validate_documents(docs, snapshot, project_flag, &Unparsed::default())
}

/// The documents of an apply that failed to parse. References to what they declare are not
/// checked (they would be reported as missing, which misleads); everything else still is, so
/// one apply reports every problem at once.
#[derive(Debug, Default)]
pub struct Unparsed {
    /// What the failed documents declare, read leniently from their kind and metadata.
    pub declared: Vec<ResourceKey>,
    /// Some failed document declares nothing readable: any reference could point at it, so
    /// none is checked.
    pub unreadable: bool,
}

impl Unparsed {
    /// Whether a reference from `project` to `target` may point at a document that failed.
    fn covers(&self, project: &str, target: &Target) -> bool {
        let declared = |kind: Kind, name: &str| {
            self.declared
                .iter()
                .any(|k| k.project == project && k.kind == kind && k.name == name)
        };
        match target {
            Target::Named { kind, name, .. } => declared(*kind, name),
            Target::Store { name, .. } => {
                declared(Kind::SecretStore, name) || declared(Kind::EnvStore, name)
            }
            Target::Capability(_) => self
                .declared
                .iter()
                .any(|k| k.project == project && k.kind == Kind::Agent),
        }
    }
}

/// Like [`validate_apply`], for an apply some of whose documents failed to parse (`unparsed`).
/// Problems come in file, document and line order.
pub fn validate_documents(
    docs: &mut [Document],
    snapshot: &Snapshot,
    project_flag: Option<&str>,
    unparsed: &Unparsed,
) -> Vec<Diagnostic> {
    let mut out = check_documents(docs, snapshot, project_flag, unparsed);
    super::diagnostic::sort_in_source_order(&mut out, docs.iter().map(|d| d.file.as_str()));
    out
}

fn check_documents(
    docs: &mut [Document],
    snapshot: &Snapshot,
    project_flag: Option<&str>,
    unparsed: &Unparsed,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    if let Some(p) = project_flag
        && let Err(e) = check_name(p)
    {
        out.push(Diagnostic::new("", format!("--project: {e}")));
        return out;
    }

    // Names and projects.
    for d in docs.iter_mut() {
        if let Err(e) = check_name(&d.manifest.metadata.name) {
            out.push(d.diagnostic("metadata.name", e));
        }
        let declared = d.manifest.metadata.project.clone();
        let project = match (declared.as_deref(), project_flag) {
            (Some(m), Some(f)) if m != f => {
                out.push(
                    d.diagnostic(
                        "metadata.project",
                        format!("project {m:?} does not match --project {f:?}"),
                    )
                    .hint("drop one of the two or make them agree"),
                );
                m.to_owned()
            }
            (Some(m), _) => {
                if let Err(e) = check_name(m) {
                    out.push(d.diagnostic("metadata.project", e));
                }
                m.to_owned()
            }
            (None, Some(f)) => f.to_owned(),
            (None, None) => DEFAULT_PROJECT.to_owned(),
        };
        d.manifest.metadata.project = Some(project);
    }

    // Duplicates within the apply.
    let mut seen: HashMap<ResourceKey, (String, usize)> = HashMap::new();
    for d in docs.iter() {
        let key = key_of(&d.manifest);
        if let Some((file, index)) = seen.get(&key) {
            out.push(
                d.diagnostic(
                    "metadata.name",
                    format!("duplicate {} {:?}", key.kind, key.name),
                )
                .hint(format!(
                    "already declared in {file} document {index}; keep one"
                )),
            );
        } else {
            seen.insert(key, (d.file.clone(), d.index));
        }
    }

    // Resource-local rules.
    for d in docs.iter() {
        for (path, message, hint) in local_problems(&d.manifest.spec) {
            let mut diag = d.diagnostic(&path, message);
            diag.hint = hint;
            out.push(diag);
        }
    }

    if unparsed.unreadable {
        return out;
    }

    // References, against the snapshot overlaid with this apply.
    let view = View {
        snapshot,
        overlay: docs
            .iter()
            .map(|d| (key_of(&d.manifest), &d.manifest))
            .collect(),
        removed: HashSet::new(),
    };
    for d in docs.iter() {
        let project = d
            .manifest
            .metadata
            .project
            .as_deref()
            .unwrap_or(DEFAULT_PROJECT);
        for r in references(&d.manifest.spec) {
            if unparsed.covers(project, &r.target) {
                continue;
            }
            if let Err((message, hint)) = view.resolve(project, &r.target) {
                out.push(d.diagnostic(&r.path, message).hint(hint));
            }
        }
        if let Spec::Workflow(w) = &d.manifest.spec {
            for (path, message) in
                output_placeholder_problems(w, |t| match view.get(project, Kind::StepTemplate, t) {
                    Some(Spec::StepTemplate(s)) => Some(s.prompt.clone()),
                    _ => None,
                })
            {
                out.push(
                    d.diagnostic(&path, message)
                        .hint("`{<step_id>_output}` names an earlier step of this workflow"),
                );
            }
        }
    }
    out
}

fn key_of(m: &Manifest) -> ResourceKey {
    ResourceKey::new(
        m.metadata.project.as_deref().unwrap_or(DEFAULT_PROJECT),
        m.kind(),
        m.name(),
    )
}

/// `{x_output}` in a step's prompt must name an earlier step of the same workflow.
fn output_placeholder_problems(
    w: &WorkflowSpec,
    prompt_of: impl Fn(&str) -> Option<String>,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, step) in w.steps.iter().enumerate() {
        let Some(prompt) = step.template.as_deref().and_then(&prompt_of) else {
            continue;
        };
        for name in render::placeholders(&prompt) {
            if let Some(id) = render::output_step(name)
                && !w.steps[..i].iter().any(|s| s.id == id)
            {
                out.push((
                    format!("spec.steps[{i}].template"),
                    format!(
                        "template uses {{{name}}} but no earlier step of this workflow has id {id:?}"
                    ),
                ));
            }
        }
    }
    out
}

type Problem = (String, String, Option<String>);

fn problem(path: impl Into<String>, message: impl Into<String>) -> Problem {
    (path.into(), message.into(), None)
}

fn problem_hint(
    path: impl Into<String>,
    message: impl Into<String>,
    hint: impl Into<String>,
) -> Problem {
    (path.into(), message.into(), Some(hint.into()))
}

/// Rules that concern one resource alone.
fn local_problems(spec: &Spec) -> Vec<Problem> {
    let mut out = Vec::new();
    match spec {
        Spec::Workspace(w) => {
            if w.root_path.trim().is_empty() {
                out.push(problem_hint(
                    "spec.root_path",
                    "root_path is empty",
                    "give the workspace directory",
                ));
            } else if !Path::new(&w.root_path).is_absolute() {
                out.push(problem_hint(
                    "spec.root_path",
                    format!("root_path {:?} is not absolute", w.root_path),
                    "apply it with the CLI, which resolves it against the manifest's directory",
                ));
            }
        }
        Spec::EnvStore(e) => {
            for k in e.data.keys() {
                if !is_env_name(k) {
                    out.push(problem_hint(
                        format!("spec.data.{k}"),
                        format!("invalid key {k:?}"),
                        "EnvStore keys become environment variables: use [A-Za-z_][A-Za-z0-9_]*",
                    ));
                }
            }
        }
        Spec::SecretStore(s) => secret_store_problems(s, &mut out),
        Spec::StepTemplate(t) => {
            if t.prompt.trim().is_empty() {
                out.push(problem("spec.prompt", "prompt is empty"));
            }
            for name in render::placeholders(&t.prompt) {
                if !render::is_prompt_placeholder(name) {
                    out.push(problem_hint(
                        "spec.prompt",
                        format!("unknown placeholder {{{name}}}"),
                        format!(
                            "use one of {}, or {{<step_id>_output}}; write {{{{name}}}} for a literal {{name}}",
                            render::PROMPT_PLACEHOLDERS
                                .iter()
                                .map(|p| format!("{{{p}}}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    ));
                }
            }
        }
        Spec::Agent(a) => agent_problems(a, &mut out),
        Spec::Workflow(w) => workflow_problems(w, &mut out),
        Spec::Trigger(t) => trigger_problems(t, &mut out),
    }
    out
}

fn secret_store_problems(s: &SecretStoreSpec, out: &mut Vec<Problem>) {
    for (k, v) in &s.data {
        if let Err(e) = check_data_key(k) {
            out.push(problem(format!("spec.data.{k}"), e));
        }
        if let Err(e) = super::limits::check_secret_value_content(v.expose()) {
            out.push(problem_hint(
                format!("spec.data.{k}"),
                e,
                "put the real value here, or set it with `orchestrator secret set` (the daemon \
                 never shows secret values)",
            ));
        }
    }
    if s.data.len() > super::limits::MAX_SECRET_KEYS {
        out.push(problem_hint(
            "spec.data",
            format!(
                "{} keys; the limit is {}",
                s.data.len(),
                super::limits::MAX_SECRET_KEYS
            ),
            "split the secrets over several SecretStores",
        ));
    }
    if let Some(r) = &s.rotation {
        if let Err(e) = check_data_key(&r.key) {
            out.push(problem("spec.rotation.key", e));
        }
        if !s.data.contains_key(&r.key) {
            out.push(problem_hint(
                "spec.rotation.key",
                format!("rotation key {:?} is not in data", r.key),
                "rotation replaces an existing key: add it to `data` or fix the name",
            ));
        }
        rotation_settings_problems(r, out);
    }
}

/// The provider-specific `rotation.settings`.
fn rotation_settings_problems(r: &super::manifest::RotationSpec, out: &mut Vec<Problem>) {
    use super::manifest::RotationProvider;
    let (known, required): (&[&str], &[&str]) = match r.provider {
        RotationProvider::Github => (
            &["repository", "hookId", "apiUrl", "testTimeoutSeconds"],
            &["repository", "hookId"],
        ),
        RotationProvider::Command => (&["set", "test", "testTimeoutSeconds"], &["set"]),
    };
    for name in r.settings.keys() {
        if !known.contains(&name.as_str()) {
            let hint = match did_you_mean(name, known.iter().copied()) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("settings of this provider are {}", known.join(", ")),
            };
            out.push(problem_hint(
                format!("spec.rotation.settings.{name}"),
                format!("unknown setting `{name}`"),
                hint,
            ));
        }
    }
    for name in required {
        if !r.settings.contains_key(*name) {
            out.push(problem_hint(
                format!("spec.rotation.settings.{name}"),
                format!("missing setting `{name}`"),
                match *name {
                    "repository" => "add `repository: owner/name`",
                    "hookId" => "add `hookId:` with the repository webhook's id (Settings → Webhooks, or GET /repos/{owner}/{repo}/hooks)",
                    _ => "add `set:` with the program that puts the new value (read from stdin) at the platform",
                },
            ));
        }
    }
    let get = |n: &str| r.settings.get(n);
    if let Some(v) = get("repository")
        && v.as_str()
            .is_none_or(|s| s.split('/').filter(|p| !p.is_empty()).count() != 2)
    {
        out.push(problem_hint(
            "spec.rotation.settings.repository",
            "repository must be owner/name",
            "e.g. `repository: acme/api`",
        ));
    }
    if let Some(v) = get("hookId")
        && !(v.is_u64()
            || v.as_str()
                .is_some_and(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())))
    {
        out.push(problem_hint(
            "spec.rotation.settings.hookId",
            "hookId must be a number",
            "e.g. `hookId: 123456789`",
        ));
    }
    if let Some(v) = get("apiUrl")
        && !v
            .as_str()
            .is_some_and(|s| s.starts_with("https://") || s.starts_with("http://"))
    {
        out.push(problem_hint(
            "spec.rotation.settings.apiUrl",
            "apiUrl must be an http(s) URL",
            "e.g. `apiUrl: https://github.example.com/api/v3`",
        ));
    }
    if let Some(v) = get("testTimeoutSeconds")
        && v.as_u64().is_none_or(|n| n == 0)
    {
        out.push(problem_hint(
            "spec.rotation.settings.testTimeoutSeconds",
            "testTimeoutSeconds must be a positive number",
            "e.g. `testTimeoutSeconds: 60`",
        ));
    }
    for name in ["set", "test"] {
        if let Some(v) = get(name) {
            match v.as_str().map(render::split_command) {
                Some(Ok(_)) => {}
                Some(Err(e)) => out.push(problem(
                    format!("spec.rotation.settings.{name}"),
                    e.to_string(),
                )),
                None => out.push(problem_hint(
                    format!("spec.rotation.settings.{name}"),
                    format!("{name} must be a command string"),
                    "e.g. `set: ./set-secret.sh`",
                )),
            }
        }
    }
    if r.provider == RotationProvider::Github && r.credentials.is_none() {
        out.push(problem_hint(
            "spec.rotation.credentials",
            "github rotation needs credentials with an API token",
            "add `credentials: {fromRef: <SecretStore>, key: <key holding the token>}`",
        ));
    }
}

fn agent_problems(a: &AgentSpec, out: &mut Vec<Problem>) {
    match render::split_command(&a.command) {
        Err(e) => out.push(problem_hint(
            "spec.command",
            e.to_string(),
            "the command is split like a shell would (quotes, backslashes) but never run by one",
        )),
        Ok(argv) => {
            if !render::placeholders(&argv[0]).is_empty() {
                out.push(problem_hint(
                    "spec.command",
                    "the program (first word) contains a placeholder",
                    "name the program literally; placeholders go in its arguments",
                ));
            }
            let used: Vec<&str> = argv.iter().flat_map(|a| render::placeholders(a)).collect();
            for name in &used {
                if !render::COMMAND_PLACEHOLDERS.contains(name)
                    && !render::is_prompt_placeholder(name)
                {
                    out.push(problem_hint(
                        "spec.command",
                        format!("unknown placeholder {{{name}}}"),
                        "use {prompt}, {prompt_file} or a prompt placeholder such as {task_id}",
                    ));
                }
            }
            let has = |p: &str| used.contains(&p);
            match a.prompt_delivery {
                PromptDelivery::Arg if !has("prompt") => out.push(problem_hint(
                    "spec.command",
                    "promptDelivery is arg but the command has no {prompt} placeholder",
                    "put {prompt} where the prompt goes, or set promptDelivery to stdin, file or env",
                )),
                PromptDelivery::File | PromptDelivery::Arg => {}
                PromptDelivery::Stdin | PromptDelivery::Env if has("prompt_file") => {
                    out.push(problem_hint(
                        "spec.command",
                        "{prompt_file} is only set when promptDelivery is file",
                        "set `promptDelivery: file`",
                    ))
                }
                PromptDelivery::Stdin | PromptDelivery::Env => {}
            }
        }
    }
    for (i, c) in a.capabilities.iter().enumerate() {
        if let Err(e) = check_name(c) {
            out.push(problem(
                format!("spec.capabilities[{i}]"),
                e.replace("name", "capability"),
            ));
        }
    }
    if a.timeout_secs == Some(0) {
        out.push(problem_hint(
            "spec.timeout_secs",
            "timeout_secs is 0",
            "use a positive number of seconds or leave it out",
        ));
    }
    let mut names = HashSet::new();
    for (i, e) in a.env.iter().enumerate() {
        let path = format!("spec.env[{i}]");
        let shape = (
            e.name.is_some(),
            e.value.is_some(),
            e.from_ref.is_some(),
            e.ref_value.is_some(),
        );
        match shape {
            (true, true, false, false) | (true, false, false, true) | (false, false, true, false) => {}
            _ => out.push(problem_hint(
                path.clone(),
                "an env entry must be exactly one of {name, value}, {fromRef} or {name, refValue}",
                "e.g. `- {name: LOG_LEVEL, value: debug}`, `- fromRef: my-envstore` or `- {name: TOKEN, refValue: {name: my-secrets, key: token}}`",
            )),
        }
        if let Some(name) = &e.name {
            if !is_env_name(name) {
                out.push(problem_hint(
                    format!("{path}.name"),
                    format!("invalid environment variable name {name:?}"),
                    "use [A-Za-z_][A-Za-z0-9_]*",
                ));
            } else if RESERVED_ENV.contains(&name.as_str()) {
                out.push(problem_hint(
                    format!("{path}.name"),
                    format!("{name} is set by the daemon for every agent"),
                    "choose another name",
                ));
            } else if !names.insert(name.clone()) {
                out.push(problem_hint(
                    format!("{path}.name"),
                    format!("{name} is set twice"),
                    "keep one entry",
                ));
            }
        }
    }
}

fn workflow_problems(w: &WorkflowSpec, out: &mut Vec<Problem>) {
    if w.steps.is_empty() {
        out.push(problem_hint(
            "spec.steps",
            "a workflow needs at least one step",
            "add a step with `id` and `template` or `command`",
        ));
    }
    let mut ids = HashSet::new();
    for (i, s) in w.steps.iter().enumerate() {
        let p = |f: &str| format!("spec.steps[{i}].{f}");
        let id_ok = !s.id.is_empty()
            && s.id.len() <= MAX_NAME
            && s.id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !id_ok {
            out.push(problem_hint(
                p("id"),
                format!("invalid step id {:?}", s.id),
                "use 1-63 characters of letters, digits, '_' and '-'",
            ));
        } else if !ids.insert(s.id.as_str()) {
            out.push(problem_hint(
                p("id"),
                format!("duplicate step id {:?}", s.id),
                "step ids must be unique within a workflow",
            ));
        }
        match (&s.template, &s.command) {
            (Some(_), Some(_)) => out.push(problem_hint(
                format!("spec.steps[{i}]"),
                "a step has both `template` and `command`",
                "keep one: `template` runs an agent, `command` runs a program directly",
            )),
            (None, None) => out.push(problem_hint(
                format!("spec.steps[{i}]"),
                "a step needs `template` or `command`",
                "add `template: <StepTemplate>` (with `required_capability`) or `command: <program and arguments>`",
            )),
            (Some(_), None) if s.required_capability.is_none() => out.push(problem_hint(
                p("required_capability"),
                "a template step needs `required_capability` to pick its agent",
                "add `required_capability:` with a capability of one of your agents",
            )),
            (None, Some(c)) => match render::split_command(c) {
                Err(e) => out.push(problem(p("command"), e.to_string())),
                Ok(argv) => {
                    for name in argv.iter().flat_map(|a| render::placeholders(a)) {
                        if !render::is_prompt_placeholder(name) {
                            out.push(problem_hint(p("command"), format!("unknown placeholder {{{name}}}"), "use a prompt placeholder such as {goal} or {prev_stdout}"));
                        }
                    }
                }
            },
            (Some(_), None) => {}
        }
        if s.scope == StepScope::Item {
            out.push(problem_hint(
                p("scope"),
                "scope `item` is reserved and not supported yet",
                "use `scope: task`",
            ));
        }
        if s.timeout_secs == Some(0) {
            out.push(problem_hint(
                p("timeout_secs"),
                "timeout_secs is 0",
                "use a positive number of seconds or leave it out",
            ));
        }
        if s.retries.is_some_and(|r| r > 100) {
            out.push(problem_hint(
                p("retries"),
                "more than 100 retries",
                "use at most 100",
            ));
        }
    }
    if w.max_parallel == 0 {
        out.push(problem_hint(
            "spec.max_parallel",
            "max_parallel is 0",
            "use 1 or more",
        ));
    }
    match (w.loop_.mode, w.loop_.max_cycles) {
        (_, Some(0)) => out.push(problem_hint(
            "spec.loop.max_cycles",
            "max_cycles is 0",
            "use 1 or more",
        )),
        (LoopMode::Fixed, None) => out.push(problem_hint(
            "spec.loop.max_cycles",
            "loop mode `fixed` needs max_cycles",
            "add `max_cycles: N`",
        )),
        (LoopMode::Once, Some(n)) if n > 1 => out.push(problem_hint(
            "spec.loop.max_cycles",
            "loop mode `once` runs one cycle",
            "use `mode: fixed` to run several cycles",
        )),
        _ => {}
    }
}

fn trigger_problems(t: &TriggerSpec, out: &mut Vec<Problem>) {
    match (&t.cron, &t.event) {
        (Some(_), Some(_)) => out.push(problem_hint(
            "spec",
            "a trigger has both `cron` and `event`",
            "keep one: split it into two triggers",
        )),
        (None, None) => out.push(problem_hint(
            "spec",
            "a trigger needs `cron` or `event`",
            "add `cron: {schedule: \"0 2 * * 0\"}` or `event: {source: webhook, webhook: {...}}`",
        )),
        (Some(c), None) => {
            if let Err(e) = Schedule::parse(&c.schedule, c.timezone.as_deref()) {
                let path = if e.to_string().contains("time zone") {
                    "spec.cron.timezone"
                } else {
                    "spec.cron.schedule"
                };
                out.push(problem(path, e.to_string()));
            }
        }
        (None, Some(ev)) => {
            event_problems(ev, out);
            if t.starting_deadline_seconds.is_some() {
                out.push(problem_hint(
                    "spec.startingDeadlineSeconds",
                    "startingDeadlineSeconds applies to cron triggers only",
                    "remove it",
                ));
            }
        }
    }
}

fn event_problems(ev: &EventSpec, out: &mut Vec<Problem>) {
    let w = &ev.webhook;
    if let Some(s) = &w.scheme
        && let Err(e) = Scheme::parse(s)
    {
        out.push(problem("spec.event.webhook.scheme", e.to_string()));
    }
    if let Some(h) = &w.signature_header {
        let token = !h.is_empty()
            && h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !token {
            out.push(problem_hint(
                "spec.event.webhook.signatureHeader",
                format!("{h:?} is not a valid HTTP header name"),
                "use a header name such as X-Hub-Signature-256",
            ));
        }
    }
    if w.tolerance_seconds == Some(0) {
        out.push(problem_hint(
            "spec.event.webhook.toleranceSeconds",
            "toleranceSeconds is 0",
            "use a positive number of seconds (300 is usual)",
        ));
    }
    if w.secret.keys.as_ref().is_some_and(Vec::is_empty) {
        out.push(problem_hint(
            "spec.event.webhook.secret.keys",
            "keys is an empty list, so no request could ever verify",
            "list the store's keys to try, or leave `keys` out to try every key",
        ));
    }
    if let Some(c) = ev.filter.as_ref().and_then(|f| f.condition.as_ref()) {
        if c.trim().is_empty() {
            out.push(problem_hint(
                "spec.event.filter.condition",
                "condition is empty",
                "remove it or write a CEL expression",
            ));
        } else if let Err(e) = super::filter::Filter::compile(c) {
            out.push(problem_hint(
                "spec.event.filter.condition",
                e,
                "write a CEL expression over `payload`, e.g. payload.type == 'event_callback'",
            ));
        }
    }
}

/// Webhook triggers that could not verify any delivery: their SecretStore is missing or has no
/// non-empty key among the ones they use. A daemon whose webhook server listens beyond loopback
/// refuses an apply that leaves any (SPEC §10); on loopback they simply fail closed.
pub fn unverifiable_webhooks(snapshot: &Snapshot) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for r in snapshot.list(Kind::Trigger, None) {
        let Spec::Trigger(t) = &r.spec else { continue };
        let Some(ev) = &t.event else { continue };
        let store = &ev.webhook.secret.from_ref;
        let usable = snapshot
            .secret_store(&r.key.project, store)
            .is_some_and(|s| {
                s.data.iter().any(|(k, v)| {
                    !v.is_empty()
                        && ev.webhook.secret.keys.as_ref().is_none_or(|w| {
                            w.iter()
                                .any(|l| l == k || k.strip_suffix(".next") == Some(l.as_str()))
                        })
                })
            });
        if !usable {
            out.push(Diagnostic {
                resource: r.key.to_string(),
                ..Diagnostic::new(
                    "spec.event.webhook.secret",
                    format!(
                        "the webhook server listens beyond loopback and this trigger has no usable key in SecretStore {store:?}"
                    ),
                )
                .hint("give the store a non-empty value for the keys the trigger uses, or bind the webhook server to 127.0.0.1")
            });
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Delete
// ---------------------------------------------------------------------------------------------

/// Refuses deleting resources that others (not deleted with them) still reference. Each problem
/// names the referrer and the field.
pub fn validate_delete(snapshot: &Snapshot, deleting: &[ResourceKey]) -> Vec<Diagnostic> {
    let removed: HashSet<&ResourceKey> = deleting.iter().collect();
    let before = View {
        snapshot,
        overlay: HashMap::new(),
        removed: HashSet::new(),
    };
    let after = View {
        snapshot,
        overlay: HashMap::new(),
        removed: removed.clone(),
    };
    let projects: HashSet<&str> = deleting.iter().map(|k| k.project.as_str()).collect();
    let mut out = Vec::new();
    for r in snapshot.iter() {
        if removed.contains(&r.key) || !projects.contains(r.key.project.as_str()) {
            continue;
        }
        for reference in references(&r.spec) {
            let project = &r.key.project;
            if before.resolve(project, &reference.target).is_ok()
                && after.resolve(project, &reference.target).is_err()
            {
                let what = match &reference.target {
                    Target::Named { kind, name, .. } => {
                        format!(
                            "refers to {}/{name}, which this delete removes",
                            kind.lower()
                        )
                    }
                    Target::Store { name, .. } => {
                        format!("refers to store {name:?}, which this delete removes")
                    }
                    Target::Capability(c) => format!(
                        "needs capability {c:?}, which no enabled agent would provide after this delete"
                    ),
                };
                out.push(Diagnostic {
                    resource: r.key.to_string(),
                    ..Diagnostic::new(reference.path, what).hint(format!(
                        "change or delete {} first, or delete it in the same command",
                        r.key
                    ))
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::manifest::parse_documents;

    const BUNDLE: &str = r#"
apiVersion: orchestrator.dev/v2
kind: Workspace
metadata: {name: default}
spec: {root_path: /tmp}
---
apiVersion: orchestrator.dev/v2
kind: StepTemplate
metadata: {name: rotate-secrets}
spec: {prompt: "rotate for {goal}"}
---
apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {name: rotator}
spec: {command: "sh ./rotate.sh {prompt}", capabilities: [plan]}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: secret-rotation}
spec:
  steps:
    - {id: rotate, template: rotate-secrets, required_capability: plan}
---
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {name: hooks}
spec: {data: {github: s3cr3t}}
---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {name: weekly}
spec:
  cron: {schedule: "0 2 * * 0", timezone: Asia/Tokyo}
  action: {workflow: secret-rotation, workspace: default}
"#;

    /// Validates `text` on top of BUNDLE already applied and returns rendered problems.
    fn problems(text: &str) -> Vec<String> {
        let (mut base, p) = parse_documents("bundle.yaml", BUNDLE);
        assert!(p.is_empty(), "{p:?}");
        assert!(validate_apply(&mut base, &Snapshot::default(), None).is_empty());
        let snapshot = Snapshot::default().apply(&Snapshot::default().plan(
            &base.iter().map(|d| d.manifest.clone()).collect::<Vec<_>>(),
            chrono::DateTime::UNIX_EPOCH,
        ));
        let (mut docs, parse) = parse_documents("f.yaml", text);
        assert!(parse.is_empty(), "{parse:?}");
        validate_apply(&mut docs, &snapshot, None)
            .iter()
            .map(|d| d.to_string())
            .collect()
    }

    fn check(spec_doc: &str, want: &[&str]) {
        let text = format!("apiVersion: orchestrator.dev/v2\n{spec_doc}");
        let got = problems(&text);
        assert_eq!(got.len(), want.len(), "got {got:#?}");
        for (g, w) in got.iter().zip(want) {
            assert!(g.contains(w), "{g:?} should contain {w:?}");
        }
    }

    #[test]
    fn good_resources_pass() {
        check(
            "kind: Trigger\nmetadata: {name: t2}\nspec:\n  cron: {schedule: '@daily'}\n  action: {workflow: secret-rotation, workspace: default}\n",
            &[],
        );
        check(
            "kind: Trigger\nmetadata: {name: hook}\nspec:\n  event:\n    source: webhook\n    webhook: {secret: {fromRef: hooks, keys: [github]}, scheme: github}\n  action: {workflow: secret-rotation, workspace: default}\n",
            &[],
        );
    }

    #[test]
    fn names_and_projects() {
        check(
            "kind: StepTemplate\nmetadata: {name: Bad_Name}\nspec: {prompt: p}\n",
            &["metadata.name: invalid name \"Bad_Name\""],
        );
        check(
            "kind: StepTemplate\nmetadata: {name: -x}\nspec: {prompt: p}\n",
            &["invalid name"],
        );
        check(
            &format!(
                "kind: StepTemplate\nmetadata: {{name: {}}}\nspec: {{prompt: p}}\n",
                "a".repeat(64)
            ),
            &["is 64 characters long"],
        );
        check(
            "kind: StepTemplate\nmetadata: {name: a}\nspec: {prompt: p}\n---\napiVersion: orchestrator.dev/v2\nkind: StepTemplate\nmetadata: {name: a}\nspec: {prompt: q}\n",
            &[
                "document 2 (steptemplate/a): metadata.name: duplicate StepTemplate \"a\" (hint: already declared in f.yaml document 1",
            ],
        );
    }

    #[test]
    fn dangling_references() {
        check(
            "kind: Trigger\nmetadata: {name: t}\nspec:\n  cron: {schedule: '@daily'}\n  action: {workflow: secret-rotatoin, workspace: nope}\n",
            &[
                "f.yaml:6: document 1 (trigger/t): spec.action.workflow: Workflow \"secret-rotatoin\" not found in project \"default\" (hint: did you mean \"secret-rotation\"?)",
                "spec.action.workspace: Workspace \"nope\" not found",
            ],
        );
        check(
            "kind: Trigger\nmetadata: {name: t}\nspec:\n  event:\n    source: webhook\n    webhook: {secret: {fromRef: hooks, keys: [gitlab]}}\n  action: {workflow: secret-rotation, workspace: default}\n",
            &[
                "spec.event.webhook.secret.keys[0]: SecretStore \"hooks\" has no key \"gitlab\" (hint: its keys are github)",
            ],
        );
        check(
            "kind: Workflow\nmetadata: {name: w}\nspec:\n  steps:\n    - {id: a, template: nope, required_capability: code}\n",
            &[
                "spec.steps[0].template: StepTemplate \"nope\" not found",
                "no agent in project \"default\" has capability \"code\"",
            ],
        );
        check(
            "kind: Agent\nmetadata: {name: a}\nspec:\n  command: x {prompt}\n  env:\n    - fromRef: missing\n    - {name: T, refValue: {name: hooks, key: nope}}\n",
            &[
                "spec.env[0].fromRef: no SecretStore or EnvStore named \"missing\"",
                "spec.env[1].refValue: SecretStore \"hooks\" has no key \"nope\"",
            ],
        );
    }

    #[test]
    fn references_in_the_same_apply_resolve() {
        check(
            "kind: Workflow\nmetadata: {name: w}\nspec:\n  steps:\n    - {id: a, template: t2, required_capability: code}\n---\napiVersion: orchestrator.dev/v2\nkind: StepTemplate\nmetadata: {name: t2}\nspec: {prompt: p}\n---\napiVersion: orchestrator.dev/v2\nkind: Agent\nmetadata: {name: coder}\nspec: {command: 'c {prompt}', capabilities: [code]}\n",
            &[],
        );
    }

    #[test]
    fn local_rules() {
        check(
            "kind: Trigger\nmetadata: {name: t}\nspec:\n  cron: {schedule: '0 2 * *'}\n  action: {workflow: secret-rotation, workspace: default}\n",
            &["spec.cron.schedule:"],
        );
        check(
            "kind: Trigger\nmetadata: {name: t}\nspec:\n  cron: {schedule: '0 2 * * 0', timezone: Asia/Tokio}\n  action: {workflow: secret-rotation, workspace: default}\n",
            &["spec.cron.timezone:"],
        );
        check(
            "kind: Agent\nmetadata: {name: a}\nspec: {command: \"claude -p '{prompt}\"}\n",
            &["spec.command: command cannot be split into arguments"],
        );
        check(
            "kind: Agent\nmetadata: {name: a}\nspec: {command: \"claude\"}\n",
            &["has no {prompt} placeholder"],
        );
        check(
            "kind: StepTemplate\nmetadata: {name: t}\nspec: {prompt: \"hi {secret}\"}\n",
            &["unknown placeholder {secret}"],
        );
        check(
            "kind: Workflow\nmetadata: {name: w}\nspec:\n  steps:\n    - {id: a, command: 'echo', template: rotate-secrets}\n",
            &["has both `template` and `command`"],
        );
        check(
            "kind: Workflow\nmetadata: {name: w}\nspec:\n  steps: []\n  loop: {mode: fixed}\n",
            &["at least one step", "needs max_cycles"],
        );
        check(
            "kind: Workspace\nmetadata: {name: w}\nspec: {root_path: rel/dir}\n",
            &["is not absolute"],
        );
        check(
            "kind: Trigger\nmetadata: {name: t}\nspec:\n  event:\n    source: webhook\n    webhook: {secret: {fromRef: hooks}, scheme: gitlab}\n  action: {workflow: secret-rotation, workspace: default}\n",
            &["spec.event.webhook.scheme:"],
        );
    }

    #[test]
    fn delete_refuses_dangling_referrers() {
        let (mut base, _) = parse_documents("bundle.yaml", BUNDLE);
        assert!(validate_apply(&mut base, &Snapshot::default(), None).is_empty());
        let s0 = Snapshot::default();
        let s = s0.apply(&s0.plan(
            &base.iter().map(|d| d.manifest.clone()).collect::<Vec<_>>(),
            chrono::DateTime::UNIX_EPOCH,
        ));
        let key = |k, n: &str| ResourceKey::new("default", k, n);
        let got = validate_delete(&s, &[key(Kind::Workflow, "secret-rotation")]);
        assert_eq!(got.len(), 1);
        assert_eq!(
            got[0].to_string(),
            "trigger/weekly: spec.action.workflow: refers to workflow/secret-rotation, which this delete removes (hint: change or delete trigger/weekly first, or delete it in the same command)"
        );
        let got = validate_delete(&s, &[key(Kind::Agent, "rotator")]);
        assert!(
            got[0]
                .to_string()
                .contains("workflow/secret-rotation: spec.steps[0].required_capability"),
            "{}",
            got[0]
        );
        assert!(
            validate_delete(
                &s,
                &[
                    key(Kind::Workflow, "secret-rotation"),
                    key(Kind::Trigger, "weekly")
                ]
            )
            .is_empty()
        );
        assert!(validate_delete(&s, &[key(Kind::Trigger, "weekly")]).is_empty());
    }

    #[test]
    fn root_path_resolution() {
        assert_eq!(
            resolve_root_path("../ws", Path::new("/srv/manifests")),
            "/srv/ws"
        );
        assert_eq!(resolve_root_path("/abs", Path::new("/srv")), "/abs");
        assert_eq!(resolve_root_path(".", Path::new("/srv/m")), "/srv/m");
    }

    #[test]
    fn webhooks_without_a_usable_key_are_found() {
        let text = |value: &str| {
            format!(
                "{BUNDLE}---\napiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {{name: hooks}}\nspec: {{data: {{github: \"{value}\"}}}}\n---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: hook}}\nspec:\n  event:\n    source: webhook\n    webhook: {{secret: {{fromRef: hooks}}}}\n  action: {{workflow: secret-rotation, workspace: default}}\n"
            )
        };
        let snapshot_of = |t: &str| {
            let (mut docs, p) = parse_documents("f", t);
            assert!(p.is_empty(), "{p:?}");
            let _ = validate_apply(&mut docs, &Snapshot::default(), None);
            let s0 = Snapshot::default();
            // The later SecretStore document replaces the bundle's one of the same name.
            let mut seen = std::collections::HashMap::new();
            for d in docs {
                seen.insert(
                    (d.manifest.kind(), d.manifest.name().to_owned()),
                    d.manifest,
                );
            }
            let manifests: Vec<_> = seen.into_values().collect();
            s0.apply(&s0.plan(&manifests, chrono::DateTime::UNIX_EPOCH))
        };
        assert!(unverifiable_webhooks(&snapshot_of(&text("s3cr3t"))).is_empty());
        let found = unverifiable_webhooks(&snapshot_of(&text("")));
        assert_eq!(found.len(), 1);
        assert!(found[0].to_string().starts_with("trigger/hook: spec.event.webhook.secret: the webhook server listens beyond loopback"), "{}", found[0]);
    }
}
