//! Validation of an apply (or a delete) against the current snapshot, before anything is written.
//! It returns every problem at once as [`Diagnostic`]s with file, document, line, field path and a
//! hint. Resource-local rules (names, cron expressions, argv splitting, placeholders) live in
//! `local.rs` (an Agent's `output` and guards in `output.rs`); references between resources (trigger → workflow, step → template, agent env →
//! store key, …) in `references.rs`. A reference may point at a resource of the same apply.
//!
//! References are listed once, by [`references`], and used both to validate an apply and to refuse
//! a delete that would leave a referrer dangling.

mod local;
mod output;
mod references;
mod retry;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use super::diagnostic::Diagnostic;
use super::manifest::{DEFAULT_PROJECT, Document, Kind, Manifest, Spec};
use super::snapshot::{ResourceKey, Snapshot};
use local::local_problems;
pub use local::{NameError, RESERVED_ENV, check_name, is_env_name, resolve_root_path};
pub use references::{Reference, Target, references, unverifiable_webhooks};
use references::{View, output_placeholder_problems};

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
            out.push(d.diagnostic("metadata.name", e.to_string()));
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
                    out.push(d.diagnostic("metadata.project", e.to_string()));
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
