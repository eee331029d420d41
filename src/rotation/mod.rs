//! Staged secret rotation (SPEC §7): `orchestrator secret rotate STORE [--key KEY]`, driven by the
//! store's `rotation` block. The stages — create `<key>.next`, set it at the platform, test it
//! with a verified delivery, finish after the grace — and every rollback and resume decision are
//! the pure machine in [`crate::domain::rotation`]; this module drives it. It performs each
//! action the machine names: record writes in the [`RotationStore`] (each stage recorded before
//! the next begins), patches of the store through the SecretStoreActor, the provider's calls
//! (`github.rs`: the repository webhook over HTTPS; `command.rs`: the user's programs through
//! `process`; `manual`: the operator, who gives the new value and sets the platform by hand),
//! and the test stage's wait for a "last verified at" stamp in the [`VerificationStore`] — a
//! real delivery from outside, never a dry run or the daemon's own `webhook test`. Each stage's
//! progress is reported as it happens (`progress.rs`). It also holds the [`start`] and
//! [`rotate`] entry points (one rotation per store at a time) and [`resume_all`], which takes up
//! the rotations a stopped daemon left unfinished.
//!
//! At no moment does neither key verify: the new value is valid (as `<key>.next`, then as
//! `<key>`) from before the platform uses it. Values never leave this module except into the
//! store and to the provider; records and errors carry fingerprints only.

mod command;
mod github;
mod github_app;
mod manual;
mod oauth2;
mod platform;
mod progress;
mod resume;
pub mod tokens;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use thiserror::Error;
use tokio::sync::{broadcast, oneshot, watch};

pub use command::CommandError;
pub use github::GithubError;
pub use resume::{RESUME_EVERY, resume_all};

use crate::actors::runtime::{CallError, Registry};
use crate::actors::secret_store::{self, SecretStoreError, SecretStoreMsg};
use crate::api::{ProgressEvent as E, ProgressStage as P, RotationProgress, RotationRecord};
use crate::domain::limits::SecretValueError;
use crate::domain::manifest::{
    Kind, RotationProvider, RotationSpec, SecretStoreSpec, SecretValue, fingerprint,
};
use crate::domain::rotation::{
    self, Abandon, Action, End, Event, Gone, NEXT_SUFFIX, Record, Removal, Reset, Rollback,
    Rotation, RotationStage, Timing,
};
use crate::domain::snapshot::{ResourceKey, Snapshot};
use crate::store::{NewRotation, RotationStore, StoreError, VerificationStore};
use progress::Reporter;

/// A builder of the daemon's outbound HTTP clients (the providers' APIs, `webhook test`): rustls
/// with *ring* as its crypto provider, installed for the process on first use (reqwest's own
/// default, aws-lc, weighs 1.5 MB of the daemon binary).
pub fn http_client() -> reqwest::ClientBuilder {
    static PROVIDER: std::sync::Once = std::sync::Once::new();
    PROVIDER.call_once(|| {
        // Err: another provider is installed already, which reqwest uses just as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    reqwest::Client::builder()
}

/// Why a rotation could not be started, or why driving one stopped short of an outcome. (How a
/// rotation ended, failed included, is its record.)
#[derive(Debug, Error)]
pub enum RotationError {
    #[error("secretstore/{store} not found in project {project:?}")]
    StoreNotFound { project: String, store: String },
    #[error(
        "secretstore/{store} has no rotation block: add `rotation: {{key, provider, settings, credentials, graceSeconds}}` to its spec"
    )]
    NoRotationBlock { store: String },
    #[error("{key:?} is a rotation's staging key; name the key it rotates")]
    StagingKey { key: String },
    #[error(
        "secretstore/{store} has no value for key {key:?} to rotate: give it one first with `orchestrator secret set {store} {key}`"
    )]
    NoKey { store: String, key: String },
    #[error("secretstore/{store}: {source}")]
    Provider {
        store: String,
        source: ProviderError,
    },
    #[error(
        "secretstore/{store} is already being rotated; wait for it (orchestrator describe secretstore {store})"
    )]
    AlreadyRunning { store: String },
    #[error(
        "rotation {id} was taken over by another node while this one was stopped or could not heartbeat; it goes on there"
    )]
    TakenOver { id: u64 },
    #[error(
        "secretstore/{store} is rotated by hand (provider manual): give the new value on stdin: orchestrator secret rotate {store} --value-from-stdin"
    )]
    NeedsValue { store: String },
    #[error(
        "secretstore/{store}'s provider {provider} makes the new value itself: leave out --value-from-stdin (it is for provider manual)"
    )]
    ValueNotWanted {
        store: String,
        provider: &'static str,
    },
    #[error("the new value of secretstore/{store} key {key}: {reason}")]
    BadValue {
        store: String,
        key: String,
        reason: SecretValueError,
    },
    #[error(
        "the new value of secretstore/{store} key {key} is the one in force already: give the value the platform now has"
    )]
    SameValue { store: String, key: String },
    #[error(
        "secretstore/{store} already holds {staging} (left by an earlier rotation): remove it (orchestrator secret unset {store} {staging}) or rotate without a new value"
    )]
    StagingTaken { store: String, staging: String },
    #[error("rotation record: {0}")]
    Record(#[from] StoreError),
    #[error("the operating system's random source failed")]
    Random,
    #[error("the rotation stopped without an outcome (see the daemon log)")]
    NoOutcome,
    #[error(
        "secretstore/{store} refreshes its token {token:?}, not {key:?}: run `orchestrator secret rotate {store}` without --key"
    )]
    NotTheToken {
        store: String,
        key: String,
        token: String,
    },
}

/// Why a provider cannot be used, or why one of its calls failed.
#[derive(Debug, Error)]
pub enum ProviderError {
    #[error(transparent)]
    Github(#[from] GithubError),
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A token provider (`oauth2`, `github-app`): refreshed, never rotated in stages.
    #[error("the {0} provider refreshes a token; it has no staged rotation")]
    NotStaged(&'static str),
}

impl ProviderError {
    /// Whether the platform may have taken the value anyway: an answer that refused the request
    /// means it did not; a lost connection or a failing program leaves it unknown.
    fn maybe_applied(&self) -> bool {
        match self {
            ProviderError::Github(e) => e.maybe_applied(),
            ProviderError::Command(e) => e.maybe_applied(),
            ProviderError::NotStaged(_) => false,
        }
    }
}

/// Why a patch of the SecretStore did not go through.
#[derive(Debug, Error)]
enum PatchError {
    #[error(transparent)]
    Actor(#[from] CallError),
    #[error(transparent)]
    Refused(SecretStoreError),
}

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

// ---------------------------------------------------------------------------------------------
// What rotations share
// ---------------------------------------------------------------------------------------------

/// Callers waiting for one rotation's end.
type Waiters = Vec<oneshot::Sender<RotationRecord>>;

/// A started rotation: its progress as it happens, and its record once it has ended.
pub struct Started {
    pub progress: broadcast::Receiver<RotationProgress>,
    pub done: oneshot::Receiver<RotationRecord>,
}

/// What rotations share.
#[derive(Clone)]
pub struct RotationContext {
    records: Arc<dyn RotationStore>,
    verifications: Arc<dyn VerificationStore>,
    snapshots: watch::Receiver<Arc<Snapshot>>,
    http: reqwest::Client,
    socket: PathBuf,
    /// Running rotations by (project, store), each with the callers waiting for its end.
    running: Arc<Mutex<HashMap<(String, String), Waiters>>>,
    /// The daemon's actors: where the SecretStoreActor that commits each stage is found.
    actors: Registry,
    /// This daemon's node id: the claim it holds on the rotations it runs.
    node: Arc<str>,
}

impl RotationContext {
    /// Rotations recorded in `records`, whose test stage watches `verifications`, run by
    /// node `node`.
    pub fn new(
        records: Arc<dyn RotationStore>,
        verifications: Arc<dyn VerificationStore>,
        snapshots: watch::Receiver<Arc<Snapshot>>,
        socket: PathBuf,
        actors: Registry,
        node: &str,
    ) -> Result<RotationContext, reqwest::Error> {
        let http = http_client()
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("orchestrator/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(RotationContext {
            records,
            verifications,
            snapshots,
            http,
            socket,
            running: Arc::new(Mutex::new(HashMap::new())),
            actors,
            node: node.into(),
        })
    }

    /// The newest rotations of a store, newest first.
    pub fn history(
        &self,
        project: &str,
        store: &str,
        limit: usize,
    ) -> Result<Vec<RotationRecord>, RotationError> {
        Ok(self.records.history(project, store, limit)?)
    }

    fn host(&self) -> command::Host<'_> {
        command::Host {
            socket: &self.socket,
            snapshots: &self.snapshots,
        }
    }

    /// Forgets the running rotation of (`project`, `store`); returns who waits for its end.
    fn stop_running(&self, project: &str, store: &str) -> Waiters {
        self.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(project.to_owned(), store.to_owned()))
            .unwrap_or_default()
    }
}

/// Where a provider pushes and tests a value.
enum Provider {
    Github(github::Github),
    Command(command::Command),
    /// The operator: gives the new value, sets the platform by hand; the daemon only waits for a
    /// delivery verified with it.
    Manual,
}

impl Provider {
    fn from_spec(
        spec: &RotationSpec,
        project: &str,
        snapshot: &Snapshot,
    ) -> Result<Provider, ProviderError> {
        Ok(match spec.provider {
            RotationProvider::Github => {
                Provider::Github(github::Github::from_spec(spec, project, snapshot)?)
            }
            RotationProvider::Command => Provider::Command(command::Command::from_spec(spec)?),
            RotationProvider::Manual => Provider::Manual,
            RotationProvider::Oauth2 => return Err(ProviderError::NotStaged("oauth2")),
            RotationProvider::GithubApp => return Err(ProviderError::NotStaged("github-app")),
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Provider::Github(_) => "github",
            Provider::Command(_) => "command",
            Provider::Manual => "manual",
        }
    }

    /// What the set stage does, in a sentence.
    fn set_says(&self, staging: &str) -> String {
        match self {
            Provider::Github(g) => format!("setting the new value at GitHub ({})", g.hook()),
            Provider::Command(_) => "running the set program (the new value on its stdin)".into(),
            Provider::Manual => format!(
                "by the operator: the platform must use the new value ({staging}) now — set it there if it does not yet"
            ),
        }
    }

    /// What the test stage asks the platform for, in a sentence.
    fn test_says(&self) -> &'static str {
        match self {
            Provider::Github(_) => "asking GitHub for a ping signed with the new value",
            Provider::Command(_) => "running the test program (if any)",
            Provider::Manual => "nothing to ask: the platform's next delivery is the test",
        }
    }

    /// Puts `value` at the platform.
    async fn set(
        &self,
        ctx: &RotationContext,
        store: &str,
        key: &str,
        value: &SecretValue,
    ) -> Result<(), ProviderError> {
        match self {
            Provider::Github(g) => Ok(g.set(&ctx.http, value).await?),
            Provider::Command(c) => Ok(c.set(&ctx.host(), store, key, value).await?),
            // The operator's: nothing for the daemon to do.
            Provider::Manual => Ok(()),
        }
    }

    /// Asks the platform for a delivery signed with its current value, `new` (a `command`
    /// provider's test program gets it on stdin, like the set program).
    async fn test(
        &self,
        ctx: &RotationContext,
        store: &str,
        key: &str,
        new: &SecretValue,
    ) -> Result<(), ProviderError> {
        match self {
            Provider::Github(g) => Ok(g.ping(&ctx.http).await?),
            Provider::Command(c) => Ok(c.test(&ctx.host(), store, key, new).await?),
            Provider::Manual => Ok(()),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Entry points
// ---------------------------------------------------------------------------------------------

/// The SecretStore `project/store` of `snapshot` and a copy of its rotation block.
fn rotation_block<'s>(
    snapshot: &'s Snapshot,
    project: &str,
    store: &str,
) -> Result<(&'s SecretStoreSpec, RotationSpec), RotationError> {
    let spec =
        snapshot
            .secret_store(project, store)
            .ok_or_else(|| RotationError::StoreNotFound {
                project: project.to_owned(),
                store: store.to_owned(),
            })?;
    let rotation = spec
        .rotation
        .clone()
        .ok_or_else(|| RotationError::NoRotationBlock {
            store: store.to_owned(),
        })?;
    Ok((spec, rotation))
}

/// Starts a rotation of `store` (its `rotation.key`, or `key`) and waits for its end. `value` is
/// the new value, for the `manual` provider only.
pub async fn rotate(
    ctx: &RotationContext,
    project: &str,
    store: &str,
    key: Option<String>,
    value: Option<SecretValue>,
) -> Result<RotationRecord, RotationError> {
    let started = start(ctx, project, store, key, value)?;
    started.done.await.map_err(|_| RotationError::NoOutcome)
}

/// Starts a rotation of `store` (its `rotation.key`, or `key`): its progress and its end are in
/// what this returns. `value` is the new value, for the `manual` provider only.
pub fn start(
    ctx: &RotationContext,
    project: &str,
    store: &str,
    key: Option<String>,
    value: Option<SecretValue>,
) -> Result<Started, RotationError> {
    let snapshot = ctx.snapshots.borrow().clone();
    let (spec, rotation) = rotation_block(&snapshot, project, store)?;
    if crate::domain::token::is_token_provider(rotation.provider) {
        return tokens::start(ctx, project, store, &rotation, key);
    }
    let key = key.unwrap_or_else(|| rotation.key.clone());
    if key.ends_with(NEXT_SUFFIX) {
        return Err(RotationError::StagingKey { key });
    }
    let old = spec.data.get(&key).ok_or_else(|| RotationError::NoKey {
        store: store.to_owned(),
        key: key.clone(),
    })?;
    let provider = Provider::from_spec(&rotation, project, &snapshot).map_err(|source| {
        RotationError::Provider {
            store: store.to_owned(),
            source,
        }
    })?;
    manual::check_given(&provider, value.as_ref(), store, &key, spec)?;
    let (tx, rx) = oneshot::channel();
    {
        let mut running = ctx.running.lock().unwrap_or_else(|p| p.into_inner());
        let k = (project.to_owned(), store.to_owned());
        if running.contains_key(&k) {
            return Err(RotationError::AlreadyRunning {
                store: store.to_owned(),
            });
        }
        running.insert(k, vec![tx]);
    }
    let created = ctx.records.create(&NewRotation {
        project,
        store,
        key: &key,
        provider: provider.name(),
        old_fingerprint: fingerprint(old.expose()),
        started_at: now(),
        node: &ctx.node,
    });
    let id = match created {
        Ok(id) => id,
        Err(e) => {
            ctx.stop_running(project, store);
            return Err(e.into());
        }
    };
    tracing::info!(project, store, key = %key, rotation = id, provider = provider.name(), "rotation started");
    let (progress, listener) = broadcast::channel(progress::BACKLOG);
    tokio::spawn(drive(ctx.clone(), id, progress, value));
    Ok(Started {
        progress: listener,
        done: rx,
    })
}

/// Runs a rotation from its recorded stage to its end (`given`: the operator's new value, for
/// the `manual` provider), reporting on `progress`, then wakes whoever waits for it.
async fn drive(
    ctx: RotationContext,
    id: u64,
    progress: broadcast::Sender<RotationProgress>,
    given: Option<SecretValue>,
) {
    let outcome = match ctx.records.get(id) {
        Ok(record) => {
            let reporter = Reporter::new(progress.clone(), &record, ctx.actors.metrics().clone());
            run(&ctx, record, &reporter, given).await
        }
        Err(e) => Err(e.into()),
    };
    let record = match ctx.records.get(id) {
        Ok(r) => r,
        Err(e) => {
            let e = RotationError::from(e);
            tracing::error!(rotation = id, error = %e, "cannot read the rotation's record");
            return;
        }
    };
    match &outcome {
        Ok(End::Done) => {
            tracing::info!(rotation = id, store = %record.store, key = %record.key, "rotation done")
        }
        Ok(End::Failed(reason)) => {
            tracing::warn!(rotation = id, store = %record.store, key = %record.key, %reason, "rotation failed")
        }
        Err(reason) => {
            tracing::warn!(rotation = id, store = %record.store, key = %record.key, %reason, "rotation failed")
        }
    }
    let error = outcome.err().map(|e| e.to_string());
    Reporter::new(progress, &record, ctx.actors.metrics().clone()).end(&record, error);
    for w in ctx.stop_running(&record.project, &record.store) {
        let _ = w.send(record.clone());
    }
}

// ---------------------------------------------------------------------------------------------
// Driving one rotation
// ---------------------------------------------------------------------------------------------

/// Takes the rotation of `record` up at its recorded stage and runs the machine to its end.
async fn run(
    ctx: &RotationContext,
    record: RotationRecord,
    reporter: &Reporter,
    given: Option<SecretValue>,
) -> Result<End, RotationError> {
    let id = record.id;
    let snapshot = ctx.snapshots.borrow().clone();
    let spec = snapshot.secret_store(&record.project, &record.store);
    let block = spec.and_then(|s| s.rotation.as_ref());
    let mut state = Rotation {
        stage: record.stage,
        started_at: record.started_at,
        set_at: record.set_at,
        platform_set: ctx.records.platform_set(id).ok().flatten().unwrap_or(false),
        reason: record.reason.clone(),
        old: spec.and_then(|s| s.data.get(&record.key)).cloned(),
        timing: Timing::of(block),
    };
    let provider = match (spec, block) {
        (None, _) => Err(Gone::Store),
        (Some(_), None) => Err(Gone::Rotation),
        (Some(_), Some(block)) => Provider::from_spec(block, &record.project, &snapshot)
            .map_err(|e| Gone::Provider(e.to_string())),
    };
    let run = Run {
        ctx,
        id,
        store: ResourceKey::new(record.project.clone(), Kind::SecretStore, record.store),
        staging: rotation::staging_key(&record.key),
        key: record.key,
        reporter,
        given,
    };
    match provider {
        Ok(provider) => run.stages(&mut state, &provider).await,
        Err(gone) => run.give_up(&mut state, gone).await,
    }
}

/// One rotation being driven: its record's id, its store, the key it rotates and its staging key,
/// where its progress goes, and the operator's new value (`manual` only).
struct Run<'a> {
    ctx: &'a RotationContext,
    id: u64,
    store: ResourceKey,
    key: String,
    staging: String,
    reporter: &'a Reporter,
    given: Option<SecretValue>,
}

impl Run<'_> {
    /// Performs the machine's actions and feeds back what they did, until it ends.
    async fn stages(
        &self,
        state: &mut Rotation,
        provider: &Provider,
    ) -> Result<End, RotationError> {
        let mut action = rotation::advance(state, self.enter(), now());
        loop {
            let event = match action {
                Action::End(end) => return Ok(end),
                Action::Record(record) => {
                    self.write(state, &record)?;
                    self.enter()
                }
                Action::Rollback(rb) => {
                    self.say(P::Rollback, E::Started, "undoing the stages before");
                    let record = self.roll_back(Some(provider), rb).await;
                    self.write(state, &record)?;
                    self.enter()
                }
                Action::Create => {
                    let value = match &self.given {
                        Some(v) => {
                            self.say(P::Create, E::Started, format!("staging the operator's new value as {}", self.staging));
                            Ok(v.clone())
                        }
                        None if matches!(provider, Provider::Manual) => Err(
                            "the operator's new value is gone (the daemon restarted before it was staged); rotate again with it".to_owned(),
                        ),
                        None => {
                            self.say(P::Create, E::Started, format!("adding a new random value as {}", self.staging));
                            random_value().map_err(|e| e.to_string())
                        }
                    };
                    match value {
                        Err(e) => Event::CreateFailed(e),
                        Ok(value) => {
                            let add = vec![(self.staging.clone(), Some(value.clone()))];
                            match self.patch(add).await {
                                Ok(()) => Event::Created { value },
                                Err(e) => Event::CreateFailed(e.to_string()),
                            }
                        }
                    }
                }
                Action::Set { mark, value } => {
                    self.write(state, &mark)?;
                    let event = if matches!(provider, Provider::Manual) {
                        E::Waiting
                    } else {
                        E::Started
                    };
                    self.say(P::Set, event, provider.set_says(&self.staging));
                    match provider
                        .set(self.ctx, &self.store.name, &self.key, &value)
                        .await
                    {
                        Ok(()) => Event::SetDone,
                        Err(e) => Event::SetFailed {
                            maybe_applied: e.maybe_applied(),
                            error: e.to_string(),
                        },
                    }
                }
                Action::Test {
                    value,
                    since,
                    timeout,
                } => {
                    self.say(P::Test, E::Started, provider.test_says());
                    match provider
                        .test(self.ctx, &self.store.name, &self.key, &value)
                        .await
                    {
                        Err(e) => Event::TestFailed(e.to_string()),
                        Ok(()) => {
                            self.reporter.waiting_for_delivery(&self.staging, timeout);
                            match self.wait_verified(since, timeout).await {
                                Some(at) => Event::Verified { at },
                                None => Event::TimedOut,
                            }
                        }
                    }
                }
                Action::Wait(grace) => {
                    self.reporter.waiting_for_grace(&self.key, grace);
                    tokio::time::sleep(grace).await;
                    Event::GraceElapsed {
                        staged: self.staged(),
                    }
                }
                Action::Commit { value } => {
                    let commit = vec![
                        (self.key.clone(), Some(value)),
                        (self.staging.clone(), None),
                    ];
                    match self.patch(commit).await {
                        Ok(()) => Event::Committed,
                        Err(e) => Event::CommitFailed(e.to_string()),
                    }
                }
            };
            let manual = matches!(provider, Provider::Manual);
            self.reporter.told(
                &event,
                manual,
                &self.key,
                &self.staging,
                state.timing.test_timeout,
            );
            action = rotation::advance(state, event, now());
        }
    }

    fn say(&self, stage: P, event: E, message: impl Into<String>) {
        self.reporter.say(stage, event, message);
    }

    /// Ends a rotation that cannot go on (its store, rotation block or provider is gone).
    async fn give_up(&self, state: &mut Rotation, gone: Gone) -> Result<End, RotationError> {
        let record = match rotation::give_up(state, gone, now()) {
            Abandon::Fail(record) => record,
            Abandon::Rollback(rb) => {
                self.say(P::Rollback, E::Started, "undoing the stages before");
                self.roll_back(None, rb).await
            }
        };
        self.write(state, &record)?;
        Ok(End::Failed(record.set.reason.unwrap_or_default()))
    }

    /// Undoes a failed rotation's steps: sets the platform back (when the rollback says so; the
    /// rollbacks of [`rotation::give_up`] never do, so they come without a provider), removes the
    /// staging key unless that failed; returns the failed record to write.
    async fn roll_back(&self, provider: Option<&Provider>, mut rb: Rollback) -> Record {
        if let (Some(old), Some(provider)) = (rb.set_back.take(), provider) {
            let reset = match provider {
                Provider::Manual => Reset::ByHand,
                _ => match provider
                    .set(self.ctx, &self.store.name, &self.key, &old)
                    .await
                {
                    Ok(()) => Reset::Done,
                    Err(e) => Reset::Failed(e.to_string()),
                },
            };
            rb.platform_reset(reset);
        }
        if rb.removes_staging() {
            let removal = match self.patch(vec![(self.staging.clone(), None)]).await {
                Ok(()) => Removal::Removed,
                Err(PatchError::Refused(SecretStoreError::NoKey { .. })) => Removal::Absent,
                Err(e) => Removal::Failed(e.to_string()),
            };
            rb.staging_removed(removal);
        }
        rb.record(now())
    }

    /// Writes `record` and applies it to `state`. The write of a failed record may fail without
    /// an error: the rotation's outcome (its reason) matters more than the store's.
    /// A node that lost the rotation's claim (another node took it over after this one's
    /// heartbeat expired) writes nothing more and stops driving it.
    fn write(&self, state: &mut Rotation, record: &Record) -> Result<(), RotationError> {
        if let Ok(false) = self.ctx.records.claim(self.id, &self.ctx.node, now()) {
            return Err(RotationError::TakenOver { id: self.id });
        }
        let written = self
            .ctx
            .records
            .update(self.id, record.stage, &record.set, now());
        state.apply(record);
        match written {
            Err(e) if record.stage != RotationStage::Failed => Err(e.into()),
            Ok(()) | Err(_) => Ok(()),
        }
    }

    /// A stage begins: the staging key's value in the newest snapshot.
    fn enter(&self) -> Event {
        Event::Enter {
            staged: self.staged(),
        }
    }

    fn staged(&self) -> Option<SecretValue> {
        self.ctx
            .snapshots
            .borrow()
            .secret_store(&self.store.project, &self.store.name)
            .and_then(|s| s.data.get(&self.staging).cloned())
    }

    /// Polls "last verified at" of the staging key until it is at or after `since`.
    async fn wait_verified(
        &self,
        since: DateTime<Utc>,
        timeout: Duration,
    ) -> Option<DateTime<Utc>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(at)) = self.ctx.verifications.last_verified(
                &self.store.project,
                &self.store.name,
                &self.staging,
            ) && at >= since
            {
                return Some(at);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sets (`Some`) or removes (`None`) keys of the store, in one commit of the SecretStoreActor.
    async fn patch(&self, changes: Vec<(String, Option<SecretValue>)>) -> Result<(), PatchError> {
        let actor = self
            .ctx
            .actors
            .resolve::<SecretStoreMsg>(secret_store::NAME, Duration::from_secs(10))
            .await?;
        actor
            .call(
                |reply| SecretStoreMsg::PatchSecret {
                    key: self.store.clone(),
                    changes,
                    by: crate::domain::secret_merge::SetBy::Rotation,
                    reply,
                },
                Duration::from_secs(30),
            )
            .await?
            .map(|_| ())
            .map_err(PatchError::Refused)
    }
}

fn random_value() -> Result<SecretValue, RotationError> {
    use chacha20poly1305::aead::Generate;
    let bytes = chacha20poly1305::Key::try_generate().map_err(|_| RotationError::Random)?;
    Ok(SecretValue::new(hex::encode(bytes)))
}
