//! SecretStoreActor (`secret-store`): the single writer of desired state. Every apply and delete
//! goes through its mailbox, so they are serialized; each one is validated against the current
//! snapshot, committed to SQLite in one transaction, and the new immutable `Arc<Snapshot>` is
//! published on a `watch` channel **before** the reply is sent. When `apply` returns, the change is
//! durable and every reader (webhook requests, triggers, new tasks) sees it on its next look.
//!
//! Before a change that touches a SecretStore is committed, its secret values go to the daemon's
//! [`SecretRegistry`], which every running agent's output redactor consults at each chunk: a
//! value is redacted from agent output before any reader can learn it as a secret (a rotation's
//! `<key>.next` included, and a value an agent applies itself). If the commit fails, the
//! registry is set back; values it saw are still redacted for the runs that were live.
//!
//! A restart reloads the snapshot from the store (the `ResourceStore` the daemon opened, handed
//! in through the args), so nothing is lost and the revision is unchanged.

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use ractor::{ActorProcessingErr, RpcReplyPort};
use serde_json::json;
use tokio::sync::watch;

use super::runtime::{Addr, Behaviour, Message};
use crate::api::{ChangeResponse, ResultLine};
use crate::api::{HistoryEntry, KeyMeta};
use crate::domain::diagnostic::{Diagnostic, refused};
use crate::domain::manifest::{Document, Kind, SecretValue};
use crate::domain::redact::SecretRegistry;
use crate::domain::secret_merge::SetBy;
use crate::domain::snapshot::{Change, Outcome, ResourceKey, Snapshot};
use crate::domain::validate::{references, unverifiable_webhooks, validate_apply, validate_delete};
use crate::store::{FeedReceiver, ResourceStore, StoreError};

/// The registry name.
pub const NAME: &str = "secret-store";

/// Why a change or a look-up was refused; nothing was changed. The control API gives each its
/// status (`http::control`).
#[derive(Debug, thiserror::Error)]
pub enum SecretStoreError {
    /// The change would leave the manifests invalid: one diagnostic per problem.
    #[error("{}", refused(.what, .problems.len()))]
    Invalid {
        what: &'static str,
        problems: Vec<Diagnostic>,
    },
    #[error("delete refused, nothing was changed: not found: {}", in_projects(.0))]
    DeleteMissing(Vec<ResourceKey>),
    /// Others still reference what would be deleted: one diagnostic per reference.
    #[error(
        "delete refused, nothing was changed: still referenced ({} reference{})",
        .0.len(),
        if .0.len() == 1 { "" } else { "s" }
    )]
    StillReferenced(Vec<Diagnostic>),
    #[error("{key} not found in project {}", .key.project)]
    NotFound { key: ResourceKey },
    #[error("{0} is not a trigger")]
    NotATrigger(ResourceKey),
    #[error("{0} is not a SecretStore")]
    NotASecretStore(ResourceKey),
    #[error("{store} has no key {key:?}; nothing was changed")]
    NoKey { store: ResourceKey, key: String },
    #[error("the store could not be written: {0}")]
    Store(StoreError),
}

impl SecretStoreError {
    /// The problems that the answer lists one by one (empty for most errors).
    pub fn problems(&self) -> &[Diagnostic] {
        match self {
            SecretStoreError::Invalid { problems, .. }
            | SecretStoreError::StillReferenced(problems) => problems,
            SecretStoreError::DeleteMissing(_)
            | SecretStoreError::NotFound { .. }
            | SecretStoreError::NotATrigger(_)
            | SecretStoreError::NotASecretStore(_)
            | SecretStoreError::NoKey { .. }
            | SecretStoreError::Store(_) => &[],
        }
    }
}

/// `trigger/a (project p), agent/b (project q)`.
fn in_projects(keys: &[ResourceKey]) -> String {
    let shown: Vec<String> = keys
        .iter()
        .map(|k| format!("{k} (project {})", k.project))
        .collect();
    shown.join(", ")
}

pub enum SecretStoreMsg {
    /// Validate and apply parsed documents (Workspace paths already resolved).
    Apply {
        project: Option<String>,
        dry_run: bool,
        docs: Vec<Document>,
        reply: RpcReplyPort<Result<ChangeResponse, SecretStoreError>>,
    },
    /// Delete resources (refused while referenced by others).
    Delete {
        targets: Vec<ResourceKey>,
        dry_run: bool,
        reply: RpcReplyPort<Result<ChangeResponse, SecretStoreError>>,
    },
    /// Sets `spec.suspend` of a trigger (`trigger suspend|resume`).
    SetSuspend {
        key: ResourceKey,
        suspend: bool,
        reply: RpcReplyPort<Result<ChangeResponse, SecretStoreError>>,
    },
    /// Sets (`Some`) or removes (`None`) keys of one SecretStore, all in one commit; the other
    /// keys are kept (`secret set|unset`, rotation stages). The keys' metadata records `by` as
    /// who set them; what the last apply declared is left as it is.
    PatchSecret {
        key: ResourceKey,
        changes: Vec<(String, Option<SecretValue>)>,
        by: SetBy,
        reply: RpcReplyPort<Result<ChangeResponse, SecretStoreError>>,
    },
    /// History and key metadata of one resource.
    Describe {
        key: ResourceKey,
        reply: RpcReplyPort<Result<Described, SecretStoreError>>,
    },
    /// Another node committed (the store's revision feed says so): load and publish it.
    CatchUp,
}

impl Message for SecretStoreMsg {
    fn kind(&self) -> &'static str {
        match self {
            SecretStoreMsg::Apply { .. } => "Apply",
            SecretStoreMsg::Delete { .. } => "Delete",
            SecretStoreMsg::SetSuspend { .. } => "SetSuspend",
            SecretStoreMsg::PatchSecret { .. } => "PatchSecret",
            SecretStoreMsg::Describe { .. } => "Describe",
            SecretStoreMsg::CatchUp => "CatchUp",
        }
    }
}

/// What the store knows about a resource beyond its spec.
pub struct Described {
    pub history: Vec<HistoryEntry>,
    pub keys: Vec<KeyMeta>,
    /// A SecretStore's declared keys without a value.
    pub pending: Vec<String>,
    pub referenced_by: Vec<String>,
}

pub struct SecretStoreActor;

pub struct SecretStoreArgs {
    /// The desired-state store (its single writer is this actor).
    pub store: Arc<dyn ResourceStore>,
    pub publish: watch::Sender<Arc<Snapshot>>,
    /// The webhook server listens beyond loopback: every webhook trigger must keep a usable key.
    pub public_webhooks: bool,
    /// Learns every secret value before the commit that makes it one.
    pub secrets: Arc<SecretRegistry>,
    /// The revision feed of a store other nodes write too (`None` on SQLite).
    pub feed: Option<FeedReceiver>,
}

pub struct SecretStoreState {
    store: Arc<dyn ResourceStore>,
    snapshot: Arc<Snapshot>,
    publish: watch::Sender<Arc<Snapshot>>,
    secrets: Arc<SecretRegistry>,
    public_webhooks: bool,
    applies: u64,
    deletes: u64,
    /// Snapshots loaded because another node committed them.
    caught_up: u64,
    /// Follows the revision feed.
    watcher: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for SecretStoreState {
    fn drop(&mut self) {
        if let Some(w) = self.watcher.take() {
            w.abort();
        }
    }
}

/// How many times a change is planned again after another node committed first.
const STALE_RETRIES: usize = 3;

impl SecretStoreState {
    /// Loads and publishes the store's desired state when another node committed after this
    /// node's snapshot (an apply elsewhere, or one that raced this node's own).
    fn catch_up(&mut self) -> Result<bool, StoreError> {
        let stored = tokio::task::block_in_place(|| self.store.revision())?;
        if stored <= self.snapshot.revision {
            return Ok(false);
        }
        let snapshot = tokio::task::block_in_place(|| self.store.load_snapshot())?;
        self.secrets
            .update(snapshot.secret_values().map(SecretValue::expose));
        tracing::info!(
            from = self.snapshot.revision,
            to = snapshot.revision,
            "loaded the desired state another node committed"
        );
        self.snapshot = Arc::new(snapshot);
        self.publish.send_replace(self.snapshot.clone());
        self.caught_up += 1;
        Ok(true)
    }

    /// Runs a change; when another node committed first, catches up and plans it again on the
    /// newer state (validation included), a few times at most.
    fn retrying<T>(
        &mut self,
        mut change: impl FnMut(&mut Self) -> Result<T, SecretStoreError>,
    ) -> Result<T, SecretStoreError> {
        let mut tries = 0;
        loop {
            match change(self) {
                Err(SecretStoreError::Store(StoreError::StaleRevision { .. }))
                    if tries < STALE_RETRIES =>
                {
                    tries += 1;
                    self.catch_up().map_err(Self::store_error)?;
                }
                other => return other,
            }
        }
    }

    fn store_error(e: StoreError) -> SecretStoreError {
        tracing::error!(error = %e, "store write failed");
        SecretStoreError::Store(e)
    }

    /// Commits `changes` (when not a dry run) and publishes the next snapshot; SecretStore keys
    /// whose value changes are recorded as set by `by`.
    fn commit(
        &mut self,
        changes: &[Change],
        dry_run: bool,
        now: DateTime<Utc>,
        by: SetBy,
    ) -> Result<ChangeResponse, SecretStoreError> {
        let next = self.snapshot.apply(changes);
        if self.public_webhooks {
            // Only what this change breaks is refused; older problems were warned about at start.
            let before: Vec<String> = unverifiable_webhooks(&self.snapshot)
                .into_iter()
                .map(|d| d.resource)
                .collect();
            let problems: Vec<_> = unverifiable_webhooks(&next)
                .into_iter()
                .filter(|d| !before.contains(&d.resource))
                .collect();
            if !problems.is_empty() {
                return Err(SecretStoreError::Invalid {
                    what: "change",
                    problems,
                });
            }
        }
        if !dry_run && next.revision != self.snapshot.revision {
            // Agents' output is redacted with the new values before anyone can learn them.
            let secrets_change = changes
                .iter()
                .any(|c| c.resource.key.kind == Kind::SecretStore);
            if secrets_change {
                self.secrets
                    .update(next.secret_values().map(SecretValue::expose));
            }
            let committed =
                tokio::task::block_in_place(|| self.store.commit(changes, next.revision, now, by));
            if let Err(e) = committed {
                if secrets_change {
                    self.secrets
                        .update(self.snapshot.secret_values().map(SecretValue::expose));
                }
                return Err(Self::store_error(e));
            }
            self.snapshot = Arc::new(next);
            self.publish.send_replace(self.snapshot.clone());
        }
        Ok(ChangeResponse {
            nodes: None,
            dry_run,
            revision: self.snapshot.revision,
            results: changes
                .iter()
                .map(|c| ResultLine {
                    kind: c.resource.key.kind,
                    project: c.resource.key.project.clone(),
                    name: c.resource.key.name.clone(),
                    outcome: c.outcome,
                    generation: c.resource.generation,
                    keys: c.keys.clone(),
                })
                .collect(),
        })
    }

    fn apply(
        &mut self,
        project: Option<&str>,
        dry_run: bool,
        mut docs: Vec<Document>,
        now: DateTime<Utc>,
    ) -> Result<ChangeResponse, SecretStoreError> {
        let problems = validate_apply(&mut docs, &self.snapshot, project);
        if !problems.is_empty() {
            return Err(SecretStoreError::Invalid {
                what: "apply",
                problems,
            });
        }
        let manifests: Vec<_> = docs.into_iter().map(|d| d.manifest).collect();
        let mut changes = self.snapshot.plan(&manifests, now);
        self.live_origins(&mut changes);
        let response = self.commit(&changes, dry_run, now, SetBy::Apply)?;
        if !dry_run {
            self.applies += 1;
            let changed = changes
                .iter()
                .filter(|c| c.outcome != crate::domain::snapshot::Outcome::Unchanged)
                .count();
            tracing::info!(revision = response.revision, changed, "apply committed");
        }
        Ok(response)
    }

    fn delete(
        &mut self,
        targets: Vec<ResourceKey>,
        dry_run: bool,
        now: DateTime<Utc>,
    ) -> Result<ChangeResponse, SecretStoreError> {
        let mut changes = Vec::new();
        let mut missing = Vec::new();
        for key in &targets {
            match self.snapshot.get(key) {
                Some(r) => {
                    if !changes.iter().any(|c: &Change| c.resource.key == *key) {
                        changes.push(Change {
                            outcome: Outcome::Deleted,
                            resource: (**r).clone(),
                            keys: Vec::new(),
                        });
                    }
                }
                None => missing.push(key.clone()),
            }
        }
        if !missing.is_empty() {
            return Err(SecretStoreError::DeleteMissing(missing));
        }
        let problems = validate_delete(&self.snapshot, &targets);
        if !problems.is_empty() {
            return Err(SecretStoreError::StillReferenced(problems));
        }
        let response = self.commit(&changes, dry_run, now, SetBy::Apply)?;
        if !dry_run {
            self.deletes += 1;
        }
        Ok(response)
    }

    fn set_suspend(
        &mut self,
        key: &ResourceKey,
        suspend: bool,
        now: DateTime<Utc>,
    ) -> Result<ChangeResponse, SecretStoreError> {
        let Some(current) = self.snapshot.get(key) else {
            return Err(SecretStoreError::NotFound { key: key.clone() });
        };
        let mut manifest = current.manifest();
        match &mut manifest.spec {
            crate::domain::manifest::Spec::Trigger(t) => t.suspend = suspend,
            _ => return Err(SecretStoreError::NotATrigger(key.clone())),
        }
        let change = self.snapshot.plan_replace(&manifest, now);
        self.commit(&[change], false, now, SetBy::Apply)
    }

    fn patch_secret(
        &mut self,
        key: &ResourceKey,
        patch: Vec<(String, Option<SecretValue>)>,
        by: SetBy,
        now: DateTime<Utc>,
    ) -> Result<ChangeResponse, SecretStoreError> {
        let Some(current) = self.snapshot.get(key) else {
            return Err(SecretStoreError::NotFound { key: key.clone() });
        };
        let mut manifest = current.manifest();
        let crate::domain::manifest::Spec::SecretStore(store) = &mut manifest.spec else {
            return Err(SecretStoreError::NotASecretStore(key.clone()));
        };
        for (name, value) in patch {
            match value {
                Some(v) => {
                    store.data.insert(name, v);
                }
                None => {
                    if store.data.remove(&name).is_none() {
                        return Err(SecretStoreError::NoKey {
                            store: key.clone(),
                            key: name,
                        });
                    }
                }
            }
        }
        // The patched store must still be valid on its own and for whoever references it.
        let mut doc = crate::domain::manifest::Document {
            file: format!("{key}"),
            index: 1,
            first_line: 1,
            text: String::new(),
            manifest,
        };
        let mut docs = vec![doc.clone()];
        let problems = validate_apply(&mut docs, &self.snapshot, Some(&key.project));
        if !problems.is_empty() {
            return Err(SecretStoreError::Invalid {
                what: "change",
                problems,
            });
        }
        doc.manifest.metadata.project = Some(key.project.clone());
        let change = self.snapshot.plan_replace(&doc.manifest, now);
        self.commit(&[change], false, now, by)
    }

    /// Fills in who set, and when, the live values an apply keeps, replaces or removes that are
    /// not what the last apply declared (for the report only: a store that cannot be read leaves
    /// them out).
    fn live_origins(&self, changes: &mut [Change]) {
        for c in changes.iter_mut() {
            if !c.keys.iter().any(|d| d.set_live) {
                continue;
            }
            let k = &c.resource.key;
            let meta = match tokio::task::block_in_place(|| {
                self.store.key_meta(&k.project, &k.name)
            }) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, store = %k, "cannot read the keys' metadata for the apply report");
                    continue;
                }
            };
            for d in c.keys.iter_mut().filter(|d| d.set_live) {
                if let Some(m) = meta.iter().find(|m| m.key == d.key) {
                    d.live_set_by = m.set_by;
                    d.live_set_at = Some(m.updated_at);
                }
            }
        }
    }

    fn describe(&self, key: &ResourceKey) -> Result<Described, SecretStoreError> {
        if self.snapshot.get(key).is_none() {
            return Err(SecretStoreError::NotFound { key: key.clone() });
        }
        let history = self.store.history(key, 20).map_err(Self::store_error)?;
        let keys = if key.kind == crate::domain::manifest::Kind::SecretStore {
            self.store
                .key_meta(&key.project, &key.name)
                .map_err(Self::store_error)?
        } else {
            Vec::new()
        };
        let pending = self
            .snapshot
            .secret_store(&key.project, &key.name)
            .map(|s| s.pending().map(str::to_owned).collect())
            .unwrap_or_default();
        let mut referenced_by = Vec::new();
        for r in self.snapshot.iter() {
            if r.key.project != key.project {
                continue;
            }
            for reference in references(&r.spec) {
                if targets_resource(&reference.target, key) {
                    referenced_by.push(format!("{} ({})", r.key, reference.path));
                }
            }
        }
        referenced_by.dedup();
        Ok(Described {
            history,
            keys,
            pending,
            referenced_by,
        })
    }
}

fn targets_resource(target: &crate::domain::validate::Target, key: &ResourceKey) -> bool {
    use crate::domain::validate::Target;
    match target {
        Target::Named { kind, name, .. } => *kind == key.kind && *name == key.name,
        Target::Store { name, .. } => {
            matches!(key.kind, Kind::SecretStore | Kind::EnvStore) && *name == key.name
        }
        Target::Capability(_) => false,
    }
}

impl Behaviour for SecretStoreActor {
    type Msg = SecretStoreMsg;
    type State = SecretStoreState;
    type Args = SecretStoreArgs;
    const TYPE: &'static str = "SecretStoreActor";

    async fn pre_start(
        &self,
        me: Addr<SecretStoreMsg>,
        args: SecretStoreArgs,
    ) -> Result<SecretStoreState, ActorProcessingErr> {
        let store = args.store;
        // The snapshot published last is the store's state when no commit came after it (this
        // actor commits before it publishes): the daemon's first start and a restart after a
        // failure between commits take it as it is; otherwise the store is read again.
        let published = args.publish.borrow().clone();
        let snapshot = tokio::task::block_in_place(|| {
            if store.revision()? == published.revision {
                Ok(published)
            } else {
                store.load_snapshot().map(Arc::new)
            }
        })?;
        args.secrets
            .update(snapshot.secret_values().map(SecretValue::expose));
        if args.publish.borrow().revision != snapshot.revision {
            args.publish.send_replace(snapshot.clone());
        }
        // Every notice of a revision newer than the one published brings a catch-up.
        let watcher = args.feed.map(|mut feed| {
            let published = args.publish.subscribe();
            let me = me.clone();
            tokio::spawn(async move {
                loop {
                    let newer = feed
                        .borrow_and_update()
                        .newer_than(published.borrow().revision);
                    if newer.is_some() && me.cast(SecretStoreMsg::CatchUp).is_err() {
                        return;
                    }
                    if feed.changed().await.is_err() {
                        return;
                    }
                }
            })
        });
        Ok(SecretStoreState {
            store,
            snapshot,
            publish: args.publish,
            public_webhooks: args.public_webhooks,
            secrets: args.secrets,
            applies: 0,
            deletes: 0,
            caught_up: 0,
            watcher,
        })
    }

    async fn handle(
        &self,
        _me: &Addr<SecretStoreMsg>,
        msg: SecretStoreMsg,
        state: &mut SecretStoreState,
    ) -> Result<(), ActorProcessingErr> {
        // The store keeps milliseconds; the in-memory snapshot must match what a restart loads.
        let now = Utc::now().trunc_subsecs(3);
        match msg {
            SecretStoreMsg::Apply {
                project,
                dry_run,
                docs,
                reply,
            } => {
                let _ = reply.send(
                    state.retrying(|s| s.apply(project.as_deref(), dry_run, docs.clone(), now)),
                );
            }
            SecretStoreMsg::Delete {
                targets,
                dry_run,
                reply,
            } => {
                let _ = reply.send(state.retrying(|s| s.delete(targets.clone(), dry_run, now)));
            }
            SecretStoreMsg::SetSuspend {
                key,
                suspend,
                reply,
            } => {
                let _ = reply.send(state.retrying(|s| s.set_suspend(&key, suspend, now)));
            }
            SecretStoreMsg::PatchSecret {
                key,
                changes,
                by,
                reply,
            } => {
                let _ =
                    reply.send(state.retrying(|s| s.patch_secret(&key, changes.clone(), by, now)));
            }
            SecretStoreMsg::Describe { key, reply } => {
                let _ = reply.send(state.describe(&key));
            }
            SecretStoreMsg::CatchUp => {
                if let Err(e) = state.catch_up() {
                    tracing::warn!(error = %e, "cannot load the desired state another node committed; retrying on the next notice");
                    return Err(e.into());
                }
            }
        }
        Ok(())
    }

    fn inspect(&self, state: &SecretStoreState) -> serde_json::Value {
        let redaction = state.secrets.stats();
        let counts: serde_json::Map<String, serde_json::Value> = state
            .snapshot
            .counts()
            .into_iter()
            .map(|(k, n)| (k.as_str().to_owned(), json!(n)))
            .collect();
        json!({
            "revision": state.snapshot.revision,
            "resources": counts,
            "appliesSinceStart": state.applies,
            "deletesSinceStart": state.deletes,
            "caughtUpSinceStart": state.caught_up,
            "subscribers": state.publish.receiver_count(),
            "redaction": {
                "values": redaction.values,
                "retainedForLiveRuns": redaction.retained,
                "liveRuns": redaction.leases,
                "changes": redaction.changes,
            },
        })
    }
}
