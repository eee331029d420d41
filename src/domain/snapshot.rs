//! The desired state at one revision: every applied resource with its generation and times.
//! A `Snapshot` is immutable once published (`Arc<Snapshot>`); the SecretStoreActor builds the next
//! one with [`Snapshot::plan`] + [`Snapshot::apply`] after each commit, and every reader (webhook
//! requests, triggers, new tasks) works from the snapshot it took at the start of its work.
//!
//! Beside the resources a snapshot keeps their lowered forms ([`super::lower`]), built once per
//! changed resource when the snapshot is built, and the webhook index with each trigger's keys
//! resolved from its SecretStore. Readers use the typed lookups ([`Snapshot::webhook`],
//! [`Snapshot::cron_triggers`], [`Snapshot::agent_with`], [`Snapshot::steps`],
//! [`Snapshot::secret_values`]) and never parse a manifest string.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::lower::{self, LowerError, Lowered, LoweredAgent, WebhookPlan};
use super::manifest::{
    AgentSpec, Kind, Manifest, Metadata, SecretStoreSpec, SecretValue, Spec, TriggerSpec,
};
use super::schedule::Schedule;
use super::secret_merge::{self, KeyDiff};

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
    /// A SecretStore apply: what the three-way merge does to each key (empty otherwise).
    pub keys: Vec<KeyDiff>,
}

/// The whole desired state at `revision`.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Bumped by every commit that changes something.
    pub revision: u64,
    resources: BTreeMap<ResourceKey, Arc<Resource>>,
    /// The lowered form of every resource whose kind has one and that lowers.
    lowered: BTreeMap<ResourceKey, Arc<Lowered>>,
    /// Stored resources that no longer lower (written by an older version), and why.
    problems: BTreeMap<ResourceKey, LowerError>,
    /// Every webhook trigger, with its keys resolved.
    webhooks: BTreeMap<ResourceKey, Arc<Webhook>>,
    /// The parsed cron schedules the lowered triggers share.
    schedules: lower::Schedules,
}

/// A webhook trigger as a delivery needs it: the trigger, how it verifies, and the keys of its
/// SecretStore that may verify it in this snapshot.
#[derive(Debug)]
pub struct Webhook {
    pub key: ResourceKey,
    pub spec: TriggerSpec,
    pub plan: Arc<WebhookPlan>,
    /// The non-empty keys the trigger allows, by store key name (in key order); or why there is
    /// none to verify with.
    pub keys: Result<Vec<(String, SecretValue)>, NoKeys>,
}

/// Why a webhook trigger has no key to verify with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoKeys {
    #[error("SecretStore {0:?} does not exist")]
    NoStore(String),
    #[error("SecretStore {0:?} has no usable (non-empty, listed) key")]
    NoUsableKey(String),
}

/// A cron trigger as its TriggerActor needs it.
#[derive(Debug, Clone, Copy)]
pub struct CronTrigger<'a> {
    pub resource: &'a Arc<Resource>,
    pub spec: &'a TriggerSpec,
    pub schedule: &'a Arc<Schedule>,
}

/// An agent picked for a step.
#[derive(Debug, Clone, Copy)]
pub struct AgentRef<'a> {
    pub name: &'a str,
    pub spec: &'a AgentSpec,
    pub lowered: &'a LoweredAgent,
}

impl Snapshot {
    pub fn new(revision: u64, resources: impl IntoIterator<Item = Resource>) -> Snapshot {
        let schedules = lower::Schedules::default();
        let mut lowered = Vec::new();
        let mut problems = Vec::new();
        // Built in bulk (sorted, then collected): a restart loads every resource at once.
        let resources: BTreeMap<ResourceKey, Arc<Resource>> = resources
            .into_iter()
            .map(|r| {
                match lower::lower_shared(&r.spec, &schedules) {
                    Ok(Some(l)) => lowered.push((r.key.clone(), Arc::new(l))),
                    Ok(None) => {}
                    Err(e) => problems.push((r.key.clone(), e)),
                }
                (r.key.clone(), Arc::new(r))
            })
            .collect();
        let mut s = Snapshot {
            revision,
            resources,
            lowered: lowered.into_iter().collect(),
            problems: problems.into_iter().collect(),
            webhooks: BTreeMap::new(),
            schedules,
        };
        let keys: Vec<ResourceKey> = s.lowered.keys().cloned().collect();
        for key in keys {
            s.index_webhook(&key);
        }
        s.schedules.prune();
        s
    }

    /// Adds or replaces one resource and its lowered form (not the webhook index).
    fn put(&mut self, r: Arc<Resource>) {
        let key = r.key.clone();
        self.lowered.remove(&key);
        self.problems.remove(&key);
        match lower::lower_shared(&r.spec, &self.schedules) {
            Ok(Some(l)) => {
                self.lowered.insert(key.clone(), Arc::new(l));
            }
            Ok(None) => {}
            Err(e) => {
                self.problems.insert(key.clone(), e);
            }
        }
        self.resources.insert(key, r);
    }

    fn remove(&mut self, key: &ResourceKey) {
        self.resources.remove(key);
        self.lowered.remove(key);
        self.problems.remove(key);
        self.webhooks.remove(key);
    }

    /// (Re)builds the webhook index entry of `key`: present when it is a webhook trigger.
    fn index_webhook(&mut self, key: &ResourceKey) {
        self.webhooks.remove(key);
        let (Some(Spec::Trigger(spec)), Some(Lowered::Trigger(lowered))) = (
            self.resources.get(key).map(|r| &r.spec),
            self.lowered.get(key).map(|l| &**l),
        ) else {
            return;
        };
        let Some(plan) = lowered.webhook.clone() else {
            return;
        };
        let keys = match self.secret_store(&key.project, &plan.store) {
            None => Err(NoKeys::NoStore(plan.store.clone())),
            Some(store) => {
                let keys: Vec<(String, SecretValue)> = store
                    .data
                    .iter()
                    .filter(|(k, v)| {
                        !v.is_empty() && plan.allows(k) && !super::token::is_companion(store, k)
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                if keys.is_empty() {
                    Err(NoKeys::NoUsableKey(plan.store.clone()))
                } else {
                    Ok(keys)
                }
            }
        };
        let webhook = Webhook {
            key: key.clone(),
            spec: spec.clone(),
            plan,
            keys,
        };
        self.webhooks.insert(key.clone(), Arc::new(webhook));
    }

    /// The webhook trigger `name` of `project`, with its keys resolved.
    pub fn webhook(&self, project: &str, name: &str) -> Option<&Arc<Webhook>> {
        self.webhooks
            .get(&ResourceKey::new(project, Kind::Trigger, name))
    }

    /// Every cron trigger (suspended ones included), ordered by project and name.
    pub fn cron_triggers(&self) -> impl Iterator<Item = CronTrigger<'_>> {
        self.lowered.iter().filter_map(|(key, l)| match &**l {
            Lowered::Trigger(t) => self.cron_of(key, t.schedule.as_ref()?),
            _ => None,
        })
    }

    /// The cron trigger `name` of `project`.
    pub fn cron_trigger(&self, project: &str, name: &str) -> Option<CronTrigger<'_>> {
        let key = ResourceKey::new(project, Kind::Trigger, name);
        match self.lowered.get(&key).map(|l| &**l) {
            Some(Lowered::Trigger(t)) => self.cron_of(&key, t.schedule.as_ref()?),
            _ => None,
        }
    }

    fn cron_of<'a>(
        &'a self,
        key: &ResourceKey,
        schedule: &'a Arc<Schedule>,
    ) -> Option<CronTrigger<'a>> {
        let resource = self.resources.get(key)?;
        match &resource.spec {
            Spec::Trigger(spec) => Some(CronTrigger {
                resource,
                spec,
                schedule,
            }),
            _ => None,
        }
    }

    /// The first enabled agent of `project` (by name) with `capability`.
    pub fn agent_with<'a>(&'a self, project: &'a str, capability: &str) -> Option<AgentRef<'a>> {
        self.list(Kind::Agent, Some(project)).find_map(|r| {
            let Spec::Agent(spec) = &r.spec else {
                return None;
            };
            if !spec.enabled || !spec.capabilities.iter().any(|c| c == capability) {
                return None;
            }
            match self.lowered.get(&r.key).map(|l| &**l) {
                Some(Lowered::Agent(lowered)) => Some(AgentRef {
                    name: &r.key.name,
                    spec,
                    lowered,
                }),
                _ => None,
            }
        })
    }

    /// Every secret value of every SecretStore (for the redaction registry).
    pub fn secret_values(&self) -> impl Iterator<Item = &SecretValue> {
        self.resources
            .values()
            .flat_map(|r| match &r.spec {
                Spec::SecretStore(s) => Some(
                    s.data
                        .iter()
                        .filter(|(k, _)| !super::token::is_companion(s, k))
                        .map(|(_, v)| v),
                ),
                _ => None,
            })
            .flatten()
    }

    /// Stored resources that no longer lower, and why (logged when the daemon loads them).
    pub fn problems(&self) -> impl Iterator<Item = (&ResourceKey, &LowerError)> {
        self.problems.iter()
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

    pub fn trigger(&self, project: &str, name: &str) -> Option<&TriggerSpec> {
        match &self.lookup(project, Kind::Trigger, name)?.spec {
            Spec::Trigger(t) => Some(t),
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
    /// keep their generation and times. A SecretStore is merged three ways with the live one
    /// ([`secret_merge::merge`]): keys the manifest did not change keep their live values.
    pub fn plan(&self, manifests: &[Manifest], now: DateTime<Utc>) -> Vec<Change> {
        manifests
            .iter()
            .map(|m| {
                let key = Self::key_of(m);
                let old = self.resources.get(&key);
                match &m.spec {
                    Spec::SecretStore(new) => {
                        let live = old.and_then(|r| match &r.spec {
                            Spec::SecretStore(s) => Some(s),
                            _ => None,
                        });
                        let merged = secret_merge::merge(live, new);
                        let mut change = Self::change(
                            key,
                            old,
                            &m.metadata,
                            Spec::SecretStore(merged.spec),
                            now,
                        );
                        change.keys = merged.keys;
                        change
                    }
                    spec => Self::change(key, old, &m.metadata, spec.clone(), now),
                }
            })
            .collect()
    }

    /// Plans a live change of one resource, replacing its spec whole (`secret set|unset`, a
    /// rotation's stages, `trigger suspend`): no merge, and a SecretStore's record of its last
    /// apply is the one `manifest` carries.
    pub fn plan_replace(&self, manifest: &Manifest, now: DateTime<Utc>) -> Change {
        let key = Self::key_of(manifest);
        let old = self.resources.get(&key);
        Self::change(key, old, &manifest.metadata, manifest.spec.clone(), now)
    }

    fn key_of(m: &Manifest) -> ResourceKey {
        let project = m.metadata.project.clone().unwrap_or_default();
        ResourceKey::new(project, m.kind(), m.name())
    }

    fn change(
        key: ResourceKey,
        old: Option<&Arc<Resource>>,
        metadata: &Metadata,
        spec: Spec,
        now: DateTime<Utc>,
    ) -> Change {
        let (outcome, resource) = match old {
            None => (
                Outcome::Created,
                Resource {
                    key,
                    metadata: metadata.clone(),
                    spec,
                    generation: 1,
                    created_at: now,
                    updated_at: now,
                },
            ),
            Some(old) if old.metadata == *metadata && old.spec == spec => {
                (Outcome::Unchanged, (**old).clone())
            }
            Some(old) => (
                Outcome::Configured,
                Resource {
                    key,
                    metadata: metadata.clone(),
                    spec,
                    generation: old.generation + 1,
                    created_at: old.created_at,
                    updated_at: now,
                },
            ),
        };
        Change {
            outcome,
            resource,
            keys: Vec::new(),
        }
    }

    /// The snapshot after `changes` (created/configured replace, deleted remove). The revision is
    /// bumped when anything changed.
    pub fn apply(&self, changes: &[Change]) -> Snapshot {
        let mut next = self.clone();
        let mut changed = false;
        // Webhook entries to rebuild: changed triggers, and the triggers of changed stores.
        let mut stores = Vec::new();
        let mut triggers = Vec::new();
        for c in changes {
            let key = &c.resource.key;
            match c.outcome {
                Outcome::Unchanged => continue,
                Outcome::Created | Outcome::Configured => {
                    next.put(Arc::new(c.resource.clone()));
                }
                Outcome::Deleted => next.remove(key),
            }
            changed = true;
            match key.kind {
                Kind::Trigger => triggers.push(key.clone()),
                Kind::SecretStore => stores.push(key),
                _ => {}
            }
        }
        if !stores.is_empty() {
            for w in next.webhooks.values() {
                let t = &w.key;
                if stores
                    .iter()
                    .any(|s| s.project == t.project && s.name == w.plan.store)
                {
                    triggers.push(t.clone());
                }
            }
        }
        if !triggers.is_empty() {
            // A schedule replaced here is still held by `self`'s lowered trigger; its entry goes
            // at the next change after that snapshot is dropped.
            next.schedules.prune();
        }
        for key in triggers {
            next.index_webhook(&key);
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

    #[test]
    fn triggers_with_one_expression_share_one_schedule_until_none_uses_it() {
        let doc = |name: &str, expr: &str| {
            let text = format!(
                "apiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: {name}, project: default}}\nspec:\n  cron: {{schedule: \"{expr}\"}}\n  action: {{workflow: w, workspace: ws}}\n"
            );
            let (mut docs, problems) = parse_documents("f", &text);
            assert!(problems.is_empty(), "{problems:?}");
            docs.remove(0).manifest
        };
        let t0 = DateTime::<Utc>::UNIX_EPOCH;
        let docs = [
            doc("a", "0 * * * *"),
            doc("b", "0 * * * *"),
            doc("c", "5 * * * *"),
        ];
        let s1 = Snapshot::default().apply(&Snapshot::default().plan(&docs, t0));
        let schedule = |s: &Snapshot, name: &str| {
            s.cron_trigger("default", name)
                .map(|c| c.schedule.clone())
                .expect("a cron trigger")
        };
        assert!(Arc::ptr_eq(&schedule(&s1, "a"), &schedule(&s1, "b")));
        assert!(!Arc::ptr_eq(&schedule(&s1, "a"), &schedule(&s1, "c")));
        assert_eq!(s1.schedules.len(), 2);
        // A restart's snapshot shares them the same way.
        let loaded = Snapshot::new(1, s1.iter().map(|r| (**r).clone()));
        assert!(Arc::ptr_eq(
            &schedule(&loaded, "a"),
            &schedule(&loaded, "b")
        ));
        assert_eq!(loaded.schedules.len(), 2);
        // Deleted triggers' schedules go once no snapshot holds them.
        let delete = |s: &Snapshot| -> Vec<Change> {
            s.iter()
                .map(|r| Change {
                    outcome: Outcome::Deleted,
                    resource: (**r).clone(),
                    keys: Vec::new(),
                })
                .collect()
        };
        let s2 = s1.apply(&delete(&s1));
        drop(s1);
        let s3 = s2.apply(&[Change {
            outcome: Outcome::Created,
            resource: (*Snapshot::default()
                .apply(&Snapshot::default().plan(&[doc("d", "7 * * * *")], t0))
                .iter()
                .next()
                .expect("d")
                .clone())
            .clone(),
            keys: Vec::new(),
        }]);
        assert_eq!(s3.schedules.len(), 1, "only d's schedule is left");
        assert_eq!(s3.schedules.entries(), 1, "and only its entry");
    }
}
