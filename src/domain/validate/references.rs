//! References between resources: [`references`] lists every reference a spec makes (trigger →
//! workflow and workspace, step → template and capability, agent env → store key, webhook →
//! SecretStore key, rotation → credentials), and [`View`] resolves them against the snapshot
//! overlaid with an apply (or minus a delete). Also the checks that need other resources:
//! `{x_output}` placeholders naming earlier steps, and webhooks left without a usable key.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::domain::diagnostic::{Diagnostic, did_you_mean};
use crate::domain::manifest::{AgentSpec, Kind, Manifest, Spec, WorkflowSpec};
use crate::domain::render;
use crate::domain::snapshot::{ResourceKey, Snapshot};

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
                // The oauth2 client's id is kept beside its secret.
                if s.rotation.as_ref().map(|r| r.provider)
                    == Some(crate::domain::manifest::RotationProvider::Oauth2)
                {
                    push(
                        "spec.rotation.credentials".into(),
                        named(Kind::SecretStore, &c.from_ref, Some("client_id")),
                    );
                }
            }
        }
        Spec::Workspace(_) | Spec::EnvStore(_) | Spec::StepTemplate(_) => {}
    }
    out
}

/// The resources visible to reference checks: the snapshot overlaid with the apply's documents,
/// minus anything being deleted.
pub(super) struct View<'a> {
    pub(super) snapshot: &'a Snapshot,
    pub(super) overlay: HashMap<ResourceKey, &'a Manifest>,
    pub(super) removed: HashSet<&'a ResourceKey>,
}

impl<'a> View<'a> {
    pub(super) fn get(&self, project: &str, kind: Kind, name: &str) -> Option<&Spec> {
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
    pub(super) fn resolve(&self, project: &str, target: &Target) -> Result<(), (String, String)> {
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
        Spec::SecretStore(s) => s.key_names().into_iter().collect(),
        Spec::EnvStore(e) => e.data.keys().map(String::as_str).collect(),
        _ => Vec::new(),
    };
    if keys.contains(&key) {
        return Ok(());
    }
    // A token provider's key exists from its first refresh on (right after apply).
    if let Spec::SecretStore(s) = spec
        && s.rotation
            .as_ref()
            .is_some_and(|r| r.key == key && crate::domain::token::is_token_provider(r.provider))
    {
        return Ok(());
    }
    let hint = if keys.is_empty() {
        format!("{kind} {name:?} has no keys yet")
    } else {
        format!("its keys are {}", keys.join(", "))
    };
    Err((format!("{kind} {name:?} has no key {key:?}"), hint))
}

/// `{x_output}` in a step's prompt must name an earlier step of the same workflow.
pub(super) fn output_placeholder_problems(
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
                .hint(format!("give the store a non-empty value for the keys the trigger uses (`orchestrator secret set {store} KEY` for a key declared `{{keep: true}}`; apply the store before its trigger), or bind the webhook server to 127.0.0.1"))
            });
        }
    }
    out
}
