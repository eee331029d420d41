//! Token refresh (providers `oauth2` and `github-app`): one refresh of a store's token, for the
//! TokenRefreshActor's timers (through [`Tokens`], its `Refresher`) and for `secret rotate` on
//! demand. A token is not rotated in stages: the platform issues a new one and the old one
//! stays valid there until it expires, so there is no `.next` key and no test stage. A refresh
//! asks the provider, then commits the new token, its expiry and issue time
//! (`domain::token::companions`) and a rotated refresh token in **one** patch through the
//! SecretStoreActor; a failure changes nothing in the store. Each refresh, done or failed, is
//! one record in the rotation history (why it ran, what it did or why it failed, the old and
//! new token's fingerprints — never a value).
//!
//! One refresh per store runs at a time, whoever asks: the same `running` table as the staged
//! rotations. A refresh token is often single-use, so two refreshes racing would spend it
//! twice; a caller who finds one running waits for its record (on demand) or comes back later
//! (the timer).

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tokio::sync::{broadcast, oneshot};

use super::github_app::{GithubApp, GithubAppError};
use super::oauth2::{OAuth2, OAuth2Error};
use super::{RotationContext, RotationError, Started, now, progress};
use crate::actors::runtime::CallError;
use crate::actors::secret_store::{self, SecretStoreError, SecretStoreMsg};
use crate::actors::token_refresh::Refresher;
use crate::api::{ProgressEvent, ProgressStage, RotationProgress, RotationRecord};
use crate::domain::manifest::{Kind, RotationProvider, RotationSpec, SecretValue, fingerprint};
use crate::domain::snapshot::ResourceKey;
use crate::domain::token::{self, Outcome, Why};
use crate::store::FinishedRefresh;

/// How often a commit of a new token is tried before the refresh counts as failed: the token
/// is spent at the platform by then, so a passing hiccup (a restarting SecretStoreActor) must
/// not lose it.
const COMMIT_TRIES: u32 = 3;

/// What a provider got from the platform.
pub struct Issued {
    pub token: SecretValue,
    /// A new refresh token (oauth2 platforms that rotate them: Slack, Atlassian, Zoom).
    pub refresh_token: Option<SecretValue>,
    /// The token's lifetime (oauth2 `expires_in`)…
    pub expires_in: Option<Duration>,
    /// …or its expiry (GitHub's `expires_at`).
    pub expires_at: Option<DateTime<Utc>>,
}

/// An error and its causes, one after the other, without a reqwest error's URL (the host is
/// named already): `error sending request: client error (Connect): tcp connect error:
/// Connection refused (os error 111)`.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = Vec::new();
    let mut next = Some(e);
    while let Some(err) = next {
        let mut text = err.to_string();
        if let Some(url) = err
            .downcast_ref::<reqwest::Error>()
            .and_then(reqwest::Error::url)
        {
            text = text.replace(&format!(" for url ({url})"), "");
        }
        if parts.last() != Some(&text) {
            parts.push(text);
        }
        next = err.source();
    }
    parts.join(": ")
}

/// A token provider, ready to ask its platform.
enum TokenProvider {
    OAuth2(OAuth2),
    GithubApp(GithubApp),
}

/// Why a provider could not be used or did not deliver.
enum Failure {
    OAuth2(OAuth2Error),
    GithubApp(GithubAppError),
    /// The platform issued a token that could not be committed.
    Commit(String),
}

impl Failure {
    fn permanent(&self) -> bool {
        match self {
            Failure::OAuth2(e) => e.permanent(),
            Failure::GithubApp(e) => e.permanent(),
            Failure::Commit(_) => false,
        }
    }
    fn text(&self) -> String {
        match self {
            Failure::OAuth2(e) => e.to_string(),
            Failure::GithubApp(e) => e.to_string(),
            Failure::Commit(e) => e.clone(),
        }
    }
}

/// The refresher the TokenRefreshActor's timers call.
pub struct Tokens {
    ctx: RotationContext,
}

impl Tokens {
    pub fn new(ctx: RotationContext) -> Tokens {
        Tokens { ctx }
    }
}

impl Refresher for Tokens {
    fn refresh(&self, store: ResourceKey, why: Why) -> BoxFuture<'static, Outcome> {
        let ctx = self.ctx.clone();
        Box::pin(async move {
            match refresh(&ctx, &store.project, &store.name, why).await {
                Ok(Some((_, outcome))) => outcome,
                Ok(None) => Outcome::Busy,
                Err(e) => {
                    tracing::warn!(project = %store.project, store = %store.name, error = %e, "token refresh could not start");
                    Outcome::Failed { permanent: true }
                }
            }
        })
    }
}

/// `secret rotate STORE` of a store whose provider refreshes a token: refreshes it now (or
/// waits for the refresh that is running); its progress (one line as it starts, the end with
/// the record) and its record are in what this returns.
pub(super) fn start(
    ctx: &RotationContext,
    project: &str,
    store: &str,
    rotation: &RotationSpec,
    key: Option<String>,
) -> Result<Started, RotationError> {
    if let Some(k) = key
        && k != rotation.key
    {
        return Err(RotationError::NotTheToken {
            store: store.to_owned(),
            key: k,
            token: rotation.key.clone(),
        });
    }
    let (progress, listener) = broadcast::channel(progress::BACKLOG);
    let (done, rx) = oneshot::channel();
    let _ = progress.send(RotationProgress {
        rotation: 0,
        project: project.to_owned(),
        store: store.to_owned(),
        key: rotation.key.clone(),
        provider: provider_name(rotation.provider).to_owned(),
        at: now(),
        stage: ProgressStage::Set,
        event: ProgressEvent::Started,
        message: format!(
            "asking the platform for a new {} (the old one stays valid there until it expires)",
            rotation.key
        ),
        new_fingerprint: None,
        timeout_seconds: None,
        grace_seconds: None,
        verified_at: None,
        record: None,
    });
    let (ctx, project, store) = (ctx.clone(), project.to_owned(), store.to_owned());
    tokio::spawn(async move {
        match on_demand(&ctx, &project, &store).await {
            Ok(record) => {
                progress::Reporter::new(progress, &record, ctx.actors.metrics().clone())
                    .end(&record, None);
                let _ = done.send(record);
            }
            Err(e) => {
                tracing::warn!(project, store, error = %e, "token refresh could not start");
            }
        }
    });
    Ok(Started {
        progress: listener,
        done: rx,
    })
}

/// Refreshes now, or waits for the refresh that is running: its record.
async fn on_demand(
    ctx: &RotationContext,
    project: &str,
    store: &str,
) -> Result<RotationRecord, RotationError> {
    loop {
        if let Some((record, _)) = refresh(ctx, project, store, Why::OnDemand).await? {
            return Ok(record);
        }
        // A refresh is running: its record is the answer.
        let (tx, rx) = oneshot::channel();
        {
            let mut running = ctx.running.lock().unwrap_or_else(|p| p.into_inner());
            match running.get_mut(&(project.to_owned(), store.to_owned())) {
                Some(waiters) => waiters.push(tx),
                None => continue, // It just ended: refresh again.
            }
        }
        return rx.await.map_err(|_| RotationError::NoOutcome);
    }
}

fn provider_name(p: RotationProvider) -> &'static str {
    match p {
        RotationProvider::Oauth2 => "oauth2",
        RotationProvider::GithubApp => "github-app",
        RotationProvider::Github => "github",
        RotationProvider::Command => "command",
        RotationProvider::Manual => "manual",
    }
}

/// Refreshes the token of `store` because of `why`: its record and outcome, or `None` when a
/// refresh (or rotation) of the store is running already.
async fn refresh(
    ctx: &RotationContext,
    project: &str,
    store: &str,
    why: Why,
) -> Result<Option<(RotationRecord, Outcome)>, RotationError> {
    {
        let mut running = ctx.running.lock().unwrap_or_else(|p| p.into_inner());
        let k = (project.to_owned(), store.to_owned());
        if running.contains_key(&k) {
            return Ok(None);
        }
        running.insert(k, Vec::new());
    }
    let result = run(ctx, project, store, why).await;
    let waiters = ctx.stop_running(project, store);
    let (record, outcome) = result?;
    for w in waiters {
        let _ = w.send(record.clone());
    }
    Ok(Some((record, outcome)))
}

/// One refresh, recorded.
async fn run(
    ctx: &RotationContext,
    project: &str,
    store: &str,
    why: Why,
) -> Result<(RotationRecord, Outcome), RotationError> {
    let started_at = now();
    let snapshot = ctx.snapshots.borrow().clone();
    let (spec, rotation) = super::rotation_block(&snapshot, project, store)?;
    if !token::is_token_provider(rotation.provider) {
        return Err(RotationError::NoRotationBlock {
            store: store.to_owned(),
        });
    }
    let key = rotation.key.clone();
    let old = spec.data.get(&key).filter(|v| !v.is_empty()).cloned();
    let provider_name = provider_name(rotation.provider);
    let provider = match rotation.provider {
        RotationProvider::GithubApp => GithubApp::from_spec(&rotation, project, &snapshot)
            .map(TokenProvider::GithubApp)
            .map_err(Failure::GithubApp),
        _ => OAuth2::from_spec(&rotation, project, store, &snapshot)
            .map(TokenProvider::OAuth2)
            .map_err(Failure::OAuth2),
    };
    let (issued, refresh_key) = match provider {
        Ok(TokenProvider::OAuth2(p)) => (
            p.refresh(&ctx.http).await.map_err(Failure::OAuth2),
            Some((
                p.refresh_key.clone(),
                spec.data.get(&p.refresh_key).cloned(),
            )),
        ),
        Ok(TokenProvider::GithubApp(p)) => (
            p.mint(&ctx.http, Utc::now())
                .await
                .map_err(Failure::GithubApp),
            None,
        ),
        Err(f) => (Err(f), None),
    };
    let target = ResourceKey::new(project, Kind::SecretStore, store);
    let mut reason = why.describe();
    let result = match issued {
        Ok(issued) => {
            let issued_at = now();
            let expires = issued.expires_at.or_else(|| {
                issued
                    .expires_in
                    .and_then(|d| chrono::Duration::from_std(d).ok())
                    .map(|d| issued_at + d)
            });
            let new_fp = fingerprint(issued.token.expose());
            let mut changes = vec![(key.clone(), Some(issued.token))];
            let mut refresh_note = String::new();
            if let (Some((refresh_key, current)), Some(rt)) = (refresh_key, issued.refresh_token) {
                let unchanged = current.as_ref() == Some(&rt);
                refresh_note = if unchanged {
                    "; the refresh token stays".to_owned()
                } else {
                    format!(
                        "; the refresh token was rotated ({})",
                        fingerprint(rt.expose())
                    )
                };
                if !unchanged {
                    changes.push((refresh_key, Some(rt)));
                }
            }
            for (k, v) in token::companions(&key, issued_at, expires) {
                changes.push((k, Some(SecretValue::new(v))));
            }
            match commit(ctx, &target, changes).await {
                Ok(()) => {
                    reason.push_str(&match expires {
                        Some(e) => format!(
                            "; the new token expires at {}",
                            e.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                        ),
                        None => {
                            "; the platform gave the new token no expiry (refreshed only on demand)"
                                .to_owned()
                        }
                    });
                    reason.push_str(&refresh_note);
                    Ok(new_fp)
                }
                Err(e) => Err(Failure::Commit(format!(
                    "the platform issued a new token ({new_fp}) but storing it failed: {e}; the old values stay, and if the platform rotates refresh tokens the stored one may be spent (the next refresh tells)"
                ))),
            }
        }
        Err(f) => Err(f),
    };
    let (done, outcome, new_fingerprint) = match result {
        Ok(fp) => (true, Outcome::Done, Some(fp)),
        Err(f) => {
            let permanent = f.permanent();
            reason.push_str(&format!(": {}", f.text()));
            reason.push_str(if permanent {
                "; the old values are kept; not retried until the store or its credentials change"
            } else {
                "; the old values are kept; retried with backoff"
            });
            (false, Outcome::Failed { permanent }, None)
        }
    };
    if done {
        tracing::info!(project, store, key = %key, provider = provider_name, %reason, "token refreshed");
    } else {
        tracing::error!(project, store, key = %key, provider = provider_name, %reason, "token refresh failed");
    }
    let id = ctx.records.record_refresh(&FinishedRefresh {
        project,
        store,
        key: &key,
        provider: provider_name,
        done,
        reason,
        old_fingerprint: old.as_ref().map(|v| fingerprint(v.expose())),
        new_fingerprint,
        started_at,
        finished_at: now(),
    })?;
    Ok((ctx.records.get(id)?, outcome))
}

/// Sets keys of the store in one commit of the SecretStoreActor, tried up to [`COMMIT_TRIES`]
/// times while the actor is away (a refused change is not tried again).
async fn commit(
    ctx: &RotationContext,
    store: &ResourceKey,
    changes: Vec<(String, Option<SecretValue>)>,
) -> Result<(), CommitError> {
    let mut last = None;
    for attempt in 1..=COMMIT_TRIES {
        let actor = ctx
            .actors
            .resolve::<SecretStoreMsg>(secret_store::NAME, Duration::from_secs(10))
            .await;
        let answer: Result<Result<_, SecretStoreError>, CallError> = match actor {
            Ok(actor) => {
                actor
                    .call(
                        |reply| SecretStoreMsg::PatchSecret {
                            key: store.clone(),
                            changes: changes.clone(),
                            by: crate::domain::secret_merge::SetBy::Rotation,
                            reply,
                        },
                        Duration::from_secs(30),
                    )
                    .await
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(refused)) => return Err(CommitError::Refused(refused)),
            Err(e) => last = Some(e),
        }
        if attempt < COMMIT_TRIES {
            tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
        }
    }
    Err(CommitError::Actor(last.unwrap_or_else(|| {
        CallError::Gone(secret_store::NAME.to_owned())
    })))
}

/// Why a new token could not be committed.
#[derive(Debug, thiserror::Error)]
enum CommitError {
    #[error(transparent)]
    Refused(SecretStoreError),
    #[error(transparent)]
    Actor(CallError),
}
