//! The desired state at one revision: every applied resource with its generation and times.
//! A `Snapshot` is immutable once published (`Arc<Snapshot>`); the SecretStoreActor builds the next
//! one with [`Snapshot::plan`] + [`Snapshot::apply`] after each commit, and every reader (webhook
//! requests, triggers, new tasks) works from the snapshot it took at the start of its work.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::manifest::{Kind, Manifest, Metadata, SecretStoreSpec, Spec};

/// Identity of a resource: project, kind and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourceKey {
    pub project: String,
    pub kind: Kind,
    pub name: String,
}

impl ResourceKey {
    pub fn new(project: impl Into<String>, kind: Kind, name: impl Into<String>) -> Self {
        ResourceKey {
            project: project.into(),
            kind,
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ResourceKey {
    /// `secretstore/github` (the project is shown separately where it matters).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.kind.lower(), self.name)
    }
}

/// One stored resource.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub key: ResourceKey,
    /// Metadata with `project` filled in.
    pub metadata: Metadata,
    pub spec: Spec,
    /// Starts at 1; bumped by every apply that changes the resource.
    pub generation: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Resource {
    pub fn manifest(&self) -> Manifest {
        Manifest {
            metadata: self.metadata.clone(),
            spec: self.spec.clone(),
        }
    }
}

/// What an apply did (or would do) to one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Created,
    Configured,
    Unchanged,
    Deleted,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Configured => "configured",
            Outcome::Unchanged => "unchanged",
            Outcome::Deleted => "deleted",
        }
    }
}

/// One planned change: the resource as it will be stored, and what happens to it.
#[derive(Debug, Clone)]
pub struct Change {
    pub outcome: Outcome,
    pub resource: Resource,
}

/// The whole desired state at `revision`.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Bumped by every commit that changes something.
    pub revision: u64,
    resources: BTreeMap<ResourceKey, Arc<Resource>>,
}

impl Snapshot {
    pub fn new(revision: u64, resources: impl IntoIterator<Item = Resource>) -> Snapshot {
        Snapshot {
            revision,
            resources: resources
                .into_iter()
                .map(|r| (r.key.clone(), Arc::new(r)))
                .collect(),
        }
    }

    pub fn get(&self, key: &ResourceKey) -> Option<&Arc<Resource>> {
        self.resources.get(key)
    }

    pub fn lookup(&self, project: &str, kind: Kind, name: &str) -> Option<&Arc<Resource>> {
        self.resources.get(&ResourceKey::new(project, kind, name))
    }

    pub fn secret_store(&self, project: &str, name: &str) -> Option<&SecretStoreSpec> {
        match &self.lookup(project, Kind::SecretStore, name)?.spec {
            Spec::SecretStore(s) => Some(s),
            _ => None,
        }
    }

    /// Every resource, ordered by project, kind and name.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Resource>> {
        self.resources.values()
    }

    /// Resources of one kind, in one project or in all.
    pub fn list<'a>(
        &'a self,
        kind: Kind,
        project: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Arc<Resource>> + 'a {
        self.resources
            .values()
            .filter(move |r| r.key.kind == kind && project.is_none_or(|p| r.key.project == p))
    }

    pub fn len(&self) -> usize {
        self.resources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// Resource counts by kind.
    pub fn counts(&self) -> BTreeMap<Kind, usize> {
        let mut counts = BTreeMap::new();
        for r in self.resources.values() {
            *counts.entry(r.key.kind).or_insert(0) += 1;
        }
        counts
    }

    /// Plans an apply of already validated manifests (with `metadata.project` set): each becomes
    /// created, configured (spec, labels or annotations differ) or unchanged. Unchanged resources
    /// keep their generation and times.
    pub fn plan(&self, manifests: &[Manifest], now: DateTime<Utc>) -> Vec<Change> {
        manifests
            .iter()
            .map(|m| {
                let project = m.metadata.project.clone().unwrap_or_default();
                let key = ResourceKey::new(project, m.kind(), m.name());
                match self.resources.get(&key) {
                    None => Change {
                        outcome: Outcome::Created,
                        resource: Resource {
                            key,
                            metadata: m.metadata.clone(),
                            spec: m.spec.clone(),
                            generation: 1,
                            created_at: now,
                            updated_at: now,
                        },
                    },
                    Some(old) if old.metadata == m.metadata && old.spec == m.spec => Change {
                        outcome: Outcome::Unchanged,
                        resource: (**old).clone(),
                    },
                    Some(old) => Change {
                        outcome: Outcome::Configured,
                        resource: Resource {
                            key,
                            metadata: m.metadata.clone(),
                            spec: m.spec.clone(),
                            generation: old.generation + 1,
                            created_at: old.created_at,
                            updated_at: now,
                        },
                    },
                }
            })
            .collect()
    }

    /// The snapshot after `changes` (created/configured replace, deleted remove). The revision is
    /// bumped when anything changed.
    pub fn apply(&self, changes: &[Change]) -> Snapshot {
        let mut next = self.clone();
        let mut changed = false;
        for c in changes {
            match c.outcome {
                Outcome::Unchanged => {}
                Outcome::Created | Outcome::Configured => {
                    changed = true;
                    next.resources
                        .insert(c.resource.key.clone(), Arc::new(c.resource.clone()));
                }
                Outcome::Deleted => {
                    changed = true;
                    next.resources.remove(&c.resource.key);
                }
            }
        }
        if changed {
            next.revision += 1;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::manifest::{StepTemplateSpec, parse_documents};

    fn template(name: &str, prompt: &str) -> Manifest {
        Manifest {
            metadata: Metadata {
                name: name.into(),
                project: Some("default".into()),
                labels: Default::default(),
                annotations: Default::default(),
            },
            spec: Spec::StepTemplate(StepTemplateSpec {
                prompt: prompt.into(),
                description: None,
            }),
        }
    }

    fn check(snapshot: &Snapshot, m: &Manifest, want: Outcome, want_generation: u64) -> Snapshot {
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let changes = snapshot.plan(std::slice::from_ref(m), t0);
        assert_eq!(changes[0].outcome, want);
        assert_eq!(changes[0].resource.generation, want_generation);
        snapshot.apply(&changes)
    }

    #[test]
    fn plan_is_level_triggered() {
        let s0 = Snapshot::default();
        let s1 = check(&s0, &template("t", "a"), Outcome::Created, 1);
        assert_eq!(s1.revision, 1);
        let s2 = check(&s1, &template("t", "a"), Outcome::Unchanged, 1);
        assert_eq!(s2.revision, 1, "an unchanged apply bumps nothing");
        let s3 = check(&s2, &template("t", "b"), Outcome::Configured, 2);
        assert_eq!(s3.revision, 2);
        assert_eq!(s3.list(Kind::StepTemplate, Some("default")).count(), 1);
        assert_eq!(s3.list(Kind::StepTemplate, Some("other")).count(), 0);
    }

    #[test]
    fn secret_values_take_part_in_change_detection() {
        let doc = |v: &str| {
            let text = format!(
                "apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata:\n  name: s\n  project: default\nspec:\n  data:\n    k: {v}\n"
            );
            parse_documents("f", &text).0.remove(0).manifest
        };
        let s1 = check(&Snapshot::default(), &doc("old"), Outcome::Created, 1);
        check(&s1, &doc("old"), Outcome::Unchanged, 1);
        check(&s1, &doc("new"), Outcome::Configured, 2);
    }
}
