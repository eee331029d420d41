//! Staged secret rotation (SPEC §7): `orchestrator secret rotate STORE [--key KEY]`, driven by the
//! store's `rotation` block. The stages, each recorded in the `rotations` table before the next
//! begins:
//!
//! 1. **create**: a new random value is added beside the old one as `<key>.next`. Webhook
//!    triggers accept both from the moment that commit is published (a trigger that lists
//!    `keys: [<key>]` accepts `<key>.next` too).
//! 2. **set**: the provider puts the new value at the platform (`github`: the repository
//!    webhook's secret through the REST API; `command`: the user's program, value on stdin).
//! 3. **test**: the provider asks the platform for a delivery (`github`: a ping; `command`: the
//!    user's test program, if any) and the rotation waits until a delivery verified with
//!    `<key>.next` is recorded ("last verified at" after the set).
//! 4. **finish**: after `graceSeconds`, one commit makes `<key>` the new value and removes
//!    `<key>.next`. At no moment does neither key verify: the new value is valid (as `<key>.next`,
//!    then as `<key>`) from before the platform uses it.
//!
//! A failure before finish rolls back: the platform is set back to the old value (if the set
//! stage had run) and `<key>.next` is removed — unless setting the platform back failed, in
//! which case both keys stay and the record says so. A daemon that stops mid-rotation resumes the
//! rotation from its recorded stage at the next start. Values never leave this module except
//! into the store and to the provider; records and errors carry fingerprints only.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::{oneshot, watch};

use crate::actors::introspect::Addr;
use crate::actors::secret_store::{self, SecretStoreMsg};
use crate::api::{ApiError, RotationRecord, RotationStage};
use crate::domain::lower::NEXT_SUFFIX;
use crate::domain::manifest::fingerprint;
use crate::domain::manifest::{RotationProvider, RotationSpec, SecretValue};
use crate::domain::redact::Redactor;
use crate::domain::snapshot::{ResourceKey, Snapshot};
use crate::process;
use crate::store::{NewRotation, RotationStore, RotationUpdate, StoreError, VerificationStore};

/// How long the test stage waits for a verified delivery unless `testTimeoutSeconds` says.
const DEFAULT_TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a provider's set or test program may run.
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(120);

fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// Callers waiting for one rotation's end.
type Waiters = Vec<oneshot::Sender<RotationRecord>>;

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
}

fn record_err(e: StoreError) -> ApiError {
    ApiError::internal(format!("rotation record: {e}"))
}

impl RotationContext {
    /// Rotations recorded in `records`, whose test stage watches `verifications`.
    pub fn new(
        records: Arc<dyn RotationStore>,
        verifications: Arc<dyn VerificationStore>,
        snapshots: watch::Receiver<Arc<Snapshot>>,
        socket: PathBuf,
    ) -> Result<RotationContext, reqwest::Error> {
        let http = reqwest::Client::builder()
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
        })
    }

    /// The newest rotations of a store, newest first.
    pub fn history(
        &self,
        project: &str,
        store: &str,
        limit: usize,
    ) -> Result<Vec<RotationRecord>, ApiError> {
        self.records
            .history(project, store, limit)
            .map_err(record_err)
    }

    fn get(&self, id: u64) -> Result<RotationRecord, ApiError> {
        self.records.get(id).map_err(record_err)
    }

    fn update(&self, id: u64, stage: RotationStage, set: RotationUpdate) -> Result<(), ApiError> {
        self.records
            .update(id, stage, &set, now())
            .map_err(record_err)
    }
}

/// Where a provider pushes and tests a value.
enum Provider {
    Github {
        api: String,
        repository: String,
        hook: String,
        token: SecretValue,
    },
    Command {
        set: Vec<String>,
        test: Option<Vec<String>>,
    },
}

fn setting_str<'a>(spec: &'a RotationSpec, name: &str) -> Option<&'a str> {
    spec.settings.get(name).and_then(|v| v.as_str())
}

impl Provider {
    fn from_spec(
        spec: &RotationSpec,
        project: &str,
        snapshot: &Snapshot,
    ) -> Result<Provider, String> {
        match spec.provider {
            RotationProvider::Github => {
                let repository = setting_str(spec, "repository")
                    .ok_or("github rotation needs settings.repository (owner/name)")?
                    .to_owned();
                let hook =
                    match spec.settings.get("hookId") {
                        Some(serde_json::Value::Number(n)) => n.to_string(),
                        Some(serde_json::Value::String(s)) => s.clone(),
                        _ => return Err(
                            "github rotation needs settings.hookId (the repository webhook's id)"
                                .into(),
                        ),
                    };
                let api = setting_str(spec, "apiUrl")
                    .unwrap_or("https://api.github.com")
                    .trim_end_matches('/')
                    .to_owned();
                let creds = spec
                    .credentials
                    .as_ref()
                    .ok_or("github rotation needs credentials {fromRef, key} with a token")?;
                let token = snapshot
                    .secret_store(project, &creds.from_ref)
                    .and_then(|s| s.data.get(&creds.key))
                    .filter(|t| !t.is_empty())
                    .cloned()
                    .ok_or_else(|| {
                        format!(
                            "the token {}/{} is missing or empty",
                            creds.from_ref, creds.key
                        )
                    })?;
                Ok(Provider::Github {
                    api,
                    repository,
                    hook,
                    token,
                })
            }
            RotationProvider::Command => {
                let split = |name: &str| -> Result<Option<Vec<String>>, String> {
                    setting_str(spec, name)
                        .map(|c| {
                            crate::domain::render::split_command(c)
                                .map_err(|e| format!("settings.{name}: {e}"))
                        })
                        .transpose()
                };
                let set = split("set")?.ok_or(
                    "command rotation needs settings.set (the program that sets the value)",
                )?;
                Ok(Provider::Command {
                    set,
                    test: split("test")?,
                })
            }
        }
    }

    fn name(&self) -> &'static str {
        match self {
            Provider::Github { .. } => "github",
            Provider::Command { .. } => "command",
        }
    }

    /// Puts `value` at the platform. The error says whether the platform may have taken the value
    /// anyway: an answer that refuses the request means it did not; a lost connection or a
    /// failing program leaves it unknown.
    async fn set(
        &self,
        ctx: &RotationContext,
        store: &str,
        key: &str,
        value: &SecretValue,
    ) -> Result<(), (String, bool)> {
        match self {
            Provider::Github { .. } => {
                let body = serde_json::json!({ "secret": value.expose() });
                self.github(ctx, reqwest::Method::PATCH, "config", Some(body))
                    .await
            }
            Provider::Command { set, .. } => run_program(ctx, set, store, key, Some(value))
                .await
                .map_err(|e| (e, true)),
        }
    }

    /// One call of the repository webhook's REST API (`hooks/{id}/{what}`). The error says
    /// whether the request may have been applied (no answer) or was refused (an answer).
    async fn github(
        &self,
        ctx: &RotationContext,
        method: reqwest::Method,
        what: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(), (String, bool)> {
        let Provider::Github {
            api,
            repository,
            hook,
            token,
        } = self
        else {
            return Err(("not a github provider".into(), false));
        };
        let url = format!("{api}/repos/{repository}/hooks/{hook}/{what}");
        let mut request = ctx
            .http
            .request(method.clone(), &url)
            .bearer_auth(token.expose())
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28");
        if let Some(b) = body {
            request = request.json(&b);
        }
        let resp = request.send().await.map_err(|e| {
            (
                format!("github: {method} {url} failed: {}", without_url(&e)),
                true,
            )
        })?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            code => Err((format!("github answered {code} to {method} {url}"), false)),
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
    ) -> Result<(), String> {
        match self {
            Provider::Github { .. } => self
                .github(ctx, reqwest::Method::POST, "pings", None)
                .await
                .map_err(|(e, _)| e),
            Provider::Command {
                test: Some(test), ..
            } => run_program(ctx, test, store, key, Some(new)).await,
            Provider::Command { test: None, .. } => Ok(()),
        }
    }
}

/// A reqwest error without its URL (it carries nothing secret, but stays short).
fn without_url(e: &reqwest::Error) -> String {
    let text = e.to_string();
    match e.url() {
        Some(u) => text
            .replace(u.as_str(), "")
            .replace(" ()", "")
            .trim()
            .to_owned(),
        None => text,
    }
}

/// Runs a provider program without a shell: cleared environment, the value on stdin.
async fn run_program(
    ctx: &RotationContext,
    argv: &[String],
    store: &str,
    key: &str,
    value: Option<&SecretValue>,
) -> Result<(), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("the provider command is empty".into());
    };
    let mut env: Vec<(OsString, OsString)> = vec![
        ("ROTATION_STORE".into(), store.into()),
        ("ROTATION_KEY".into(), key.into()),
        ("ORCHESTRATOR_SOCKET".into(), ctx.socket.clone().into()),
    ];
    // The same base environment agents get: PATH (with the daemon's own directory first, so
    // `orchestrator` is found), HOME, USER, LANG, TERM.
    env.extend(
        crate::actors::workflow::TaskContext::base_env_from_process()
            .into_iter()
            .map(|(name, value)| (name.into(), value.into())),
    );
    let spec = process::ProgramSpec {
        program,
        args,
        env,
        stdin: value.map(|v| v.expose().as_bytes()),
        timeout: PROGRAM_TIMEOUT,
    };
    // The program may echo what it was given: redact every secret before quoting it.
    let redactor = || {
        let snapshot = ctx.snapshots.borrow().clone();
        let secrets = snapshot
            .secret_values()
            .map(SecretValue::expose)
            .chain(value.map(SecretValue::expose));
        Redactor::new(secrets)
    };
    process::run_program(spec, redactor)
        .await
        .map_err(|e| e.to_string())
}

fn random_value() -> Result<SecretValue, ApiError> {
    use chacha20poly1305::aead::Generate;
    let bytes = chacha20poly1305::Key::try_generate()
        .map_err(|_| ApiError::internal("the operating system's random source failed"))?;
    Ok(SecretValue::new(hex::encode(bytes)))
}

async fn patch(
    key: &ResourceKey,
    changes: Vec<(String, Option<SecretValue>)>,
) -> Result<(), String> {
    let actor = Addr::<SecretStoreMsg>::resolve(secret_store::NAME, Duration::from_secs(10))
        .await
        .map_err(|e| e.to_string())?;
    actor
        .call(
            |reply| SecretStoreMsg::PatchSecret {
                key: key.clone(),
                changes,
                reply,
            },
            Duration::from_secs(30),
        )
        .await
        .map_err(|e| e.to_string())?
        .map(|_| ())
        .map_err(|e| e.body.error)
}

/// Starts a rotation of `store` (its `rotation.key`, or `key`) and waits for its end.
pub async fn rotate(
    ctx: &RotationContext,
    project: &str,
    store: &str,
    key: Option<String>,
) -> Result<RotationRecord, ApiError> {
    let snapshot = ctx.snapshots.borrow().clone();
    let spec = snapshot.secret_store(project, store).ok_or_else(|| {
        ApiError::not_found(format!(
            "secretstore/{store} not found in project {project:?}"
        ))
    })?;
    let rotation = spec.rotation.clone().ok_or_else(|| {
        ApiError::bad_request(format!(
            "secretstore/{store} has no rotation block: add `rotation: {{key, provider, settings, credentials, graceSeconds}}` to its spec"
        ))
    })?;
    let key = key.unwrap_or_else(|| rotation.key.clone());
    if key.ends_with(NEXT_SUFFIX) {
        return Err(ApiError::bad_request(format!(
            "{key:?} is a rotation's staging key; name the key it rotates"
        )));
    }
    let old = spec.data.get(&key).ok_or_else(|| {
        ApiError::bad_request(format!("secretstore/{store} has no key {key:?} to rotate"))
    })?;
    let provider = Provider::from_spec(&rotation, project, &snapshot)
        .map_err(|e| ApiError::bad_request(format!("secretstore/{store}: {e}")))?;
    let (tx, rx) = oneshot::channel();
    {
        let mut running = ctx.running.lock().unwrap_or_else(|p| p.into_inner());
        let k = (project.to_owned(), store.to_owned());
        if running.contains_key(&k) {
            return Err(ApiError::conflict(format!(
                "secretstore/{store} is already being rotated; wait for it (orchestrator describe secretstore {store})"
            )));
        }
        running.insert(k, vec![tx]);
    }
    let started = now();
    let id = ctx
        .records
        .create(&NewRotation {
            project,
            store,
            key: &key,
            provider: provider.name(),
            old_fingerprint: fingerprint(old.expose()),
            started_at: started,
        })
        .map_err(record_err);
    let id = match id {
        Ok(id) => id,
        Err(e) => {
            ctx.running
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&(project.to_owned(), store.to_owned()));
            return Err(e);
        }
    };
    tracing::info!(project, store, key = %key, rotation = id, provider = provider.name(), "rotation started");
    tokio::spawn(drive(ctx.clone(), id));
    rx.await.map_err(|_| {
        ApiError::internal("the rotation stopped without an outcome (see the daemon log)")
    })
}

/// Resumes the rotations a stopped daemon left unfinished.
pub async fn resume_all(ctx: &RotationContext) {
    let open: Vec<RotationRecord> = match ctx.records.unfinished().map_err(record_err) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot read unfinished rotations");
            return;
        }
    };
    for r in open {
        tracing::warn!(rotation = r.id, store = %r.store, stage = r.stage.as_str(), "resuming an interrupted rotation");
        ctx.running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((r.project.clone(), r.store.clone()))
            .or_default();
        tokio::spawn(drive(ctx.clone(), r.id));
    }
}

/// Runs a rotation from its recorded stage to its end, then wakes whoever waits for it.
async fn drive(ctx: RotationContext, id: u64) {
    let outcome = step_all(&ctx, id).await;
    let record = match ctx.get(id) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(rotation = id, error = %e, "cannot read the rotation's record");
            return;
        }
    };
    match &outcome {
        Ok(()) => {
            tracing::info!(rotation = id, store = %record.store, key = %record.key, "rotation done")
        }
        Err(reason) => {
            tracing::warn!(rotation = id, store = %record.store, key = %record.key, %reason, "rotation failed")
        }
    }
    let waiters = ctx
        .running
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&(record.project.clone(), record.store.clone()))
        .unwrap_or_default();
    for w in waiters {
        let _ = w.send(record.clone());
    }
}

async fn step_all(ctx: &RotationContext, id: u64) -> Result<(), String> {
    let record = ctx.get(id).map_err(|e| e.to_string())?;
    let key = ResourceKey::new(
        record.project.clone(),
        crate::domain::manifest::Kind::SecretStore,
        record.store.clone(),
    );
    let next_name = format!("{}{NEXT_SUFFIX}", record.key);
    let snapshot = ctx.snapshots.borrow().clone();
    let Some(spec) = snapshot
        .secret_store(&record.project, &record.store)
        .cloned()
    else {
        let why = "the SecretStore was deleted during the rotation".to_owned();
        let _ = ctx.update(
            id,
            RotationStage::Failed,
            RotationUpdate {
                reason: Some(why.clone()),
                finished_at: Some(now()),
                ..RotationUpdate::default()
            },
        );
        return Err(why);
    };
    let rotation = spec.rotation.clone();
    let provider = match rotation
        .as_ref()
        .map(|r| Provider::from_spec(r, &record.project, &snapshot))
    {
        Some(Ok(p)) => p,
        Some(Err(e)) => return fail(ctx, id, &key, &next_name, None, e).await,
        None => {
            return fail(
                ctx,
                id,
                &key,
                &next_name,
                None,
                "the store's rotation block was removed".into(),
            )
            .await;
        }
    };
    let grace = Duration::from_secs(rotation.as_ref().map_or(0, |r| r.grace_seconds));
    let test_timeout = rotation
        .as_ref()
        .and_then(|r| r.settings.get("testTimeoutSeconds"))
        .and_then(|v| v.as_u64())
        .map_or(DEFAULT_TEST_TIMEOUT, Duration::from_secs);
    let old = spec.data.get(&record.key).cloned();
    let mut stage = record.stage;
    let mut set_at = record.set_at;
    loop {
        match stage {
            RotationStage::Create => {
                let new = match spec.data.get(&next_name) {
                    Some(v) => v.clone(), // A resumed rotation keeps the value it created.
                    None => {
                        let v = random_value().map_err(|e| e.to_string())?;
                        if let Err(e) =
                            patch(&key, vec![(next_name.clone(), Some(v.clone()))]).await
                        {
                            return fail(ctx, id, &key, &next_name, None, format!("create: {e}"))
                                .await;
                        }
                        v
                    }
                };
                ctx.update(
                    id,
                    RotationStage::Set,
                    RotationUpdate {
                        new_fingerprint: Some(fingerprint(new.expose())),
                        ..RotationUpdate::default()
                    },
                )
                .map_err(|e| e.to_string())?;
                stage = RotationStage::Set;
            }
            RotationStage::Set => {
                let Some(new) = current_value(ctx, &record.project, &record.store, &next_name)
                else {
                    return fail(
                        ctx,
                        id,
                        &key,
                        &next_name,
                        None,
                        "set: the new value vanished from the store".into(),
                    )
                    .await;
                };
                ctx.update(
                    id,
                    RotationStage::Set,
                    RotationUpdate {
                        platform_set: Some(true),
                        ..RotationUpdate::default()
                    },
                )
                .map_err(|e| e.to_string())?;
                if let Err((e, maybe_applied)) =
                    provider.set(ctx, &record.store, &record.key, &new).await
                {
                    if !maybe_applied {
                        // The platform refused it: it still holds the old value.
                        ctx.update(
                            id,
                            RotationStage::Set,
                            RotationUpdate {
                                platform_set: Some(false),
                                ..RotationUpdate::default()
                            },
                        )
                        .map_err(|e| e.to_string())?;
                    }
                    return fail(
                        ctx,
                        id,
                        &key,
                        &next_name,
                        Some((&provider, old.as_ref())),
                        format!("set: {e}"),
                    )
                    .await;
                }
                let at = now();
                set_at = Some(at);
                ctx.update(
                    id,
                    RotationStage::Test,
                    RotationUpdate {
                        set_at: Some(at),
                        ..RotationUpdate::default()
                    },
                )
                .map_err(|e| e.to_string())?;
                stage = RotationStage::Test;
            }
            RotationStage::Test => {
                let since = set_at.unwrap_or(record.started_at);
                let Some(new) = current_value(ctx, &record.project, &record.store, &next_name)
                else {
                    return fail(
                        ctx,
                        id,
                        &key,
                        &next_name,
                        Some((&provider, old.as_ref())),
                        "test: the new value vanished from the store".into(),
                    )
                    .await;
                };
                if let Err(e) = provider.test(ctx, &record.store, &record.key, &new).await {
                    return fail(
                        ctx,
                        id,
                        &key,
                        &next_name,
                        Some((&provider, old.as_ref())),
                        format!("test: {e}"),
                    )
                    .await;
                }
                match wait_verified(
                    ctx,
                    &record.project,
                    &record.store,
                    &next_name,
                    since,
                    test_timeout,
                )
                .await
                {
                    Some(at) => {
                        ctx.update(
                            id,
                            RotationStage::Finish,
                            RotationUpdate {
                                verified_at: Some(at),
                                ..RotationUpdate::default()
                            },
                        )
                        .map_err(|e| e.to_string())?;
                        stage = RotationStage::Finish;
                    }
                    None => {
                        let why = format!(
                            "test: no delivery signed with the new value arrived within {} s (the old value stays in force)",
                            test_timeout.as_secs()
                        );
                        return fail(
                            ctx,
                            id,
                            &key,
                            &next_name,
                            Some((&provider, old.as_ref())),
                            why,
                        )
                        .await;
                    }
                }
            }
            RotationStage::Finish => {
                tokio::time::sleep(grace).await;
                let Some(new) = current_value(ctx, &record.project, &record.store, &next_name)
                else {
                    // A resumed finish whose commit already happened.
                    ctx.update(
                        id,
                        RotationStage::Done,
                        RotationUpdate {
                            finished_at: Some(now()),
                            ..RotationUpdate::default()
                        },
                    )
                    .map_err(|e| e.to_string())?;
                    return Ok(());
                };
                if let Err(e) = patch(
                    &key,
                    vec![(record.key.clone(), Some(new)), (next_name.clone(), None)],
                )
                .await
                {
                    // The platform uses the new value and both keys stay valid: nothing breaks.
                    let why = format!(
                        "finish: {e}; both values stay valid, run the rotation again to finish"
                    );
                    let _ = ctx.update(
                        id,
                        RotationStage::Failed,
                        RotationUpdate {
                            reason: Some(why.clone()),
                            finished_at: Some(now()),
                            ..RotationUpdate::default()
                        },
                    );
                    return Err(why);
                }
                ctx.update(
                    id,
                    RotationStage::Done,
                    RotationUpdate {
                        finished_at: Some(now()),
                        ..RotationUpdate::default()
                    },
                )
                .map_err(|e| e.to_string())?;
                return Ok(());
            }
            RotationStage::Done => return Ok(()),
            RotationStage::Failed => return Err(record.reason.clone().unwrap_or_default()),
        }
    }
}

fn current_value(
    ctx: &RotationContext,
    project: &str,
    store: &str,
    key: &str,
) -> Option<SecretValue> {
    ctx.snapshots
        .borrow()
        .secret_store(project, store)
        .and_then(|s| s.data.get(key).cloned())
}

/// Polls "last verified at" of `key` until it is at or after `since`.
async fn wait_verified(
    ctx: &RotationContext,
    project: &str,
    store: &str,
    key: &str,
    since: DateTime<Utc>,
    timeout: Duration,
) -> Option<DateTime<Utc>> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Ok(Some(at)) = ctx.verifications.last_verified(project, store, key)
            && at >= since
        {
            return Some(at);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Rolls a rotation back and records why. With `platform`, the platform is set back to the old
/// value first; if that fails, both values stay in the store so that nothing stops verifying.
async fn fail(
    ctx: &RotationContext,
    id: u64,
    key: &ResourceKey,
    next_name: &str,
    platform: Option<(&Provider, Option<&SecretValue>)>,
    reason: String,
) -> Result<(), String> {
    let was_set = ctx.records.platform_set(id).ok().flatten().unwrap_or(false);
    let mut why = reason;
    let mut remove_next = true;
    if let (true, Some((provider, Some(old)))) = (was_set, platform) {
        match provider
            .set(ctx, &key.name, next_name.trim_end_matches(NEXT_SUFFIX), old)
            .await
        {
            Ok(()) => why.push_str("; the platform was set back to the old value"),
            Err((e, _)) => {
                remove_next = false;
                why.push_str(&format!(
                    "; setting the platform back to the old value failed ({e}), so both values stay valid"
                ));
            }
        }
    }
    if remove_next {
        match patch(key, vec![(next_name.to_owned(), None)]).await {
            Ok(()) => why.push_str("; the new value was removed and the old one stays valid"),
            Err(e) if e.contains("has no key") => why.push_str("; the old value stays valid"),
            Err(e) => why.push_str(&format!("; removing the new value failed ({e})")),
        }
    }
    let _ = ctx.update(
        id,
        RotationStage::Failed,
        RotationUpdate {
            reason: Some(why.clone()),
            finished_at: Some(now()),
            ..RotationUpdate::default()
        },
    );
    Err(why)
}
