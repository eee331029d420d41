//! TokenRefreshActor (`tokens`): owns the refresh timers of every token a provider refreshes
//! (`oauth2`, `github-app`; SPEC §7 "keys with a known expiry are refreshed ahead of it by the
//! daemon"). It reconciles on every published snapshot: each SecretStore whose rotation block
//! names a token provider gets an entry, due when `domain::token::due` says (ahead of the
//! expiry kept in the store beside the token, or at once when that is unknown). It arms one
//! timer, for the earliest entry; when it fires, the due refreshes run in spawned tasks (the
//! HTTP call is slow work) through the [`Refresher`] of its args, and each reports back as a
//! [`TokenRefreshMsg::Finished`].
//!
//! A refresh that failed for a reason that may pass (no connection, a 5xx, a rate limit) is
//! retried with exponential backoff (`domain::token::retry_delay`); one that failed for good
//! (a revoked refresh token, a wrong client secret) is not retried until what it reads changes
//! (`domain::token::inputs`: the operator set a new refresh token or fixed the credentials).
//! The expiry is persisted with the token, so a restarted daemon (or actor) re-arms from the
//! store; retry counts and a failure's block are in memory only, so a restart tries once more.
//!
//! This actor knows nothing of HTTP or of the providers: the daemon hands it
//! `rotation::tokens`' refresher, which also serves `secret rotate` on demand (one refresh per
//! store at a time, whoever asks).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use ractor::{ActorProcessingErr, RpcReplyPort};
use serde_json::json;
use tokio::sync::watch;

use super::clock::Clock;
use super::runtime::{Addr, Behaviour, Message};
use crate::api::{TokenState, TokenStatus};
use crate::domain::manifest::{Kind, RotationProvider, SecretStoreSpec, Spec};
use crate::domain::snapshot::{ResourceKey, Snapshot};
use crate::domain::token::{self, Due, Expiry, Outcome, Why};

/// The registry name.
pub const NAME: &str = "tokens";

/// The longest the timer sleeps at once: a wall clock that jumps is noticed within this.
const MAX_SLEEP: Duration = Duration::from_secs(300);

/// How long after a refresh found another one running the store is looked at again.
const BUSY_RETRY: Duration = Duration::from_secs(1);

/// Refreshes one store's token and says how it went (recording it is the refresher's job).
pub trait Refresher: Send + Sync + 'static {
    fn refresh(&self, store: ResourceKey, why: Why) -> BoxFuture<'static, Outcome>;
}

pub enum TokenRefreshMsg {
    /// A new snapshot was published.
    Reconcile,
    /// The timer fired: start the refreshes that are due.
    Tick,
    /// A refresh ended.
    Finished {
        store: ResourceKey,
        outcome: Outcome,
    },
    /// The status of one store's token (`describe secretstore`); `None` if it has none.
    Status {
        store: ResourceKey,
        reply: RpcReplyPort<Option<TokenStatus>>,
    },
}

impl Message for TokenRefreshMsg {
    fn kind(&self) -> &'static str {
        match self {
            TokenRefreshMsg::Reconcile => "Reconcile",
            TokenRefreshMsg::Tick => "Tick",
            TokenRefreshMsg::Finished { .. } => "Finished",
            TokenRefreshMsg::Status { .. } => "Status",
        }
    }
}

pub struct TokenRefreshActor;

#[derive(Clone)]
pub struct TokenRefreshArgs {
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub refresher: Arc<dyn Refresher>,
    pub clock: Clock,
}

/// One token's timer.
#[derive(Debug, Clone, PartialEq)]
struct Entry {
    key: String,
    provider: RotationProvider,
    expiry: Expiry,
    due: Due,
    /// What a refresh reads (`domain::token::inputs`).
    inputs: String,
    /// After a failure that may pass: the attempt that comes next and when.
    retry: Option<(u32, DateTime<Utc>)>,
    /// After a failure for good: the inputs it failed with.
    blocked: Option<String>,
    in_flight: bool,
}

impl Entry {
    fn of(store: &SecretStoreSpec, credentials: Option<&SecretStoreSpec>) -> Option<Entry> {
        let r = store.rotation.as_ref()?;
        if !token::is_token_provider(r.provider) {
            return None;
        }
        let expiry = token::expiry(store, &r.key);
        // A setting validation refused cannot be here; the default is the safe reading.
        let before = token::refresh_before(r).ok().flatten();
        Some(Entry {
            key: r.key.clone(),
            provider: r.provider,
            expiry,
            due: token::due(expiry, before),
            inputs: token::inputs(store, &r.key, credentials),
            retry: None,
            blocked: None,
            in_flight: false,
        })
    }

    /// When this entry's next refresh starts, if the timer is to start it.
    fn next(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.in_flight || self.blocked.is_some() {
            return None;
        }
        match self.retry {
            Some((_, at)) => Some(at),
            None => self.due.instant(now),
        }
    }

    fn why(&self) -> Why {
        match (self.retry, &self.due) {
            (Some((attempt, _)), _) => Why::Retry {
                attempt,
                expires: self.expiry.at(),
            },
            (None, Due::At { expires, .. }) => Why::Ahead { expires: *expires },
            (None, Due::Now | Due::OnDemand) => Why::UnknownExpiry,
        }
    }

    fn status(&self, now: DateTime<Utc>) -> TokenStatus {
        let (state, note) = if self.in_flight {
            (TokenState::Refreshing, None)
        } else if self.blocked.is_some() {
            (
                TokenState::Blocked,
                Some("the last refresh failed for good (see the rotations below); it is tried again when the store or its credentials change, or by `orchestrator secret rotate`".to_owned()),
            )
        } else if let Some((attempt, _)) = self.retry {
            (
                TokenState::Retrying,
                Some(format!("the last refresh failed; retry {attempt} is next")),
            )
        } else if self.due == Due::OnDemand {
            (
                TokenState::OnDemand,
                Some("the platform gave the token no expiry".to_owned()),
            )
        } else {
            (TokenState::Scheduled, None)
        };
        TokenStatus {
            key: self.key.clone(),
            provider: provider_name(self.provider).to_owned(),
            expires_at: self.expiry.at(),
            issued_at: match self.expiry {
                Expiry::At { issued, .. } => issued,
                Expiry::Unknown | Expiry::Never => None,
            },
            refreshes_at: self.next(now),
            state,
            note,
        }
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

/// The status of a store's token as the snapshot alone tells it (when this actor cannot be
/// asked): its expiry and its scheduled refresh.
pub fn status_of(
    snapshot: &Snapshot,
    store: &ResourceKey,
    now: DateTime<Utc>,
) -> Option<TokenStatus> {
    let spec = snapshot.secret_store(&store.project, &store.name)?;
    Entry::of(spec, credentials(snapshot, &store.project, spec)).map(|e| e.status(now))
}

fn credentials<'a>(
    snapshot: &'a Snapshot,
    project: &str,
    spec: &SecretStoreSpec,
) -> Option<&'a SecretStoreSpec> {
    let c = spec.rotation.as_ref()?.credentials.as_ref()?;
    snapshot.secret_store(project, &c.from_ref)
}

pub struct TokenRefreshState {
    args: TokenRefreshArgs,
    entries: HashMap<ResourceKey, Entry>,
    /// The one armed timer and the instant it is for.
    timer: Option<(DateTime<Utc>, tokio::task::JoinHandle<()>)>,
    watcher: tokio::task::JoinHandle<()>,
    refreshed: u64,
    failed: u64,
}

impl Drop for TokenRefreshState {
    fn drop(&mut self) {
        self.watcher.abort();
        if let Some((_, t)) = self.timer.take() {
            t.abort();
        }
    }
}

impl TokenRefreshState {
    /// Takes the newest snapshot's token stores: new ones get an entry, gone ones lose theirs,
    /// changed ones keep their retry and block only while what they read is unchanged.
    fn reconcile(&mut self, me: &Addr<TokenRefreshMsg>) {
        let snapshot = self.args.snapshots.borrow().clone();
        let mut next: HashMap<ResourceKey, Entry> = HashMap::new();
        for r in snapshot.list(Kind::SecretStore, None) {
            let Spec::SecretStore(spec) = &r.spec else {
                continue;
            };
            let Some(mut entry) = Entry::of(spec, credentials(&snapshot, &r.key.project, spec))
            else {
                continue;
            };
            if let Some(old) = self.entries.get(&r.key)
                && old.key == entry.key
            {
                entry.in_flight = old.in_flight;
                // A retry or a block stands until the operator changes what a refresh reads, or
                // a refresh went through (on demand, say): the token's expiry changed.
                if old.inputs == entry.inputs && old.expiry == entry.expiry {
                    entry.blocked = old.blocked.clone();
                    entry.retry = old.retry;
                }
            }
            next.insert(r.key.clone(), entry);
        }
        self.entries = next;
        self.arm(me);
    }

    /// Arms the one timer for the earliest entry (re-arming only when that instant changed).
    fn arm(&mut self, me: &Addr<TokenRefreshMsg>) {
        let now = self.args.clock.now();
        let Some(at) = self.entries.values().filter_map(|e| e.next(now)).min() else {
            if let Some((_, t)) = self.timer.take() {
                t.abort();
            }
            return;
        };
        if let Some((armed, t)) = &self.timer {
            if *armed == at && !t.is_finished() {
                return;
            }
            t.abort();
        }
        let delay = (at - now).to_std().unwrap_or(Duration::ZERO).min(MAX_SLEEP);
        self.timer = Some((at, me.send_after(delay, || TokenRefreshMsg::Tick)));
    }

    /// Starts every refresh that is due.
    fn tick(&mut self, me: &Addr<TokenRefreshMsg>) {
        self.timer = None;
        let now = self.args.clock.now();
        for (store, entry) in &mut self.entries {
            if entry.next(now).is_none_or(|at| at > now) {
                continue;
            }
            entry.in_flight = true;
            let why = entry.why();
            tracing::info!(project = %store.project, store = %store.name, key = %entry.key, reason = %why.describe(), "token refresh due");
            let refresh = self.args.refresher.refresh(store.clone(), why);
            let (me, store) = (me.clone(), store.clone());
            tokio::spawn(async move {
                let outcome = refresh.await;
                let _ = me.cast(TokenRefreshMsg::Finished { store, outcome });
            });
        }
        self.arm(me);
    }

    /// A refresh ended: the entry is read again from the newest snapshot (a refresh that went
    /// through has published its new expiry), then retried or blocked if it failed.
    fn finished(&mut self, me: &Addr<TokenRefreshMsg>, store: &ResourceKey, outcome: Outcome) {
        if let Some(e) = self.entries.get_mut(store) {
            e.in_flight = false;
        }
        let attempt = self
            .entries
            .get(store)
            .and_then(|e| e.retry)
            .map_or(1, |(a, _)| a + 1);
        self.reconcile(me);
        let now = self.args.clock.now();
        let Some(entry) = self.entries.get_mut(store) else {
            return;
        };
        match outcome {
            Outcome::Done => {
                self.refreshed += 1;
                entry.retry = None;
                entry.blocked = None;
            }
            Outcome::Failed { permanent: true } => {
                self.failed += 1;
                entry.retry = None;
                entry.blocked = Some(entry.inputs.clone());
            }
            Outcome::Failed { permanent: false } => {
                self.failed += 1;
                let delay = token::retry_delay(attempt);
                entry.retry = Some((
                    attempt,
                    now + chrono::Duration::from_std(delay).unwrap_or_default(),
                ));
            }
            Outcome::Busy => {
                let at = now + chrono::Duration::from_std(BUSY_RETRY).unwrap_or_default();
                let attempt = entry.retry.map_or(0, |(a, _)| a);
                entry.retry = Some((attempt.max(1), at));
            }
        }
        self.arm(me);
    }

    fn status(&self, store: &ResourceKey) -> Option<TokenStatus> {
        let now = self.args.clock.now();
        self.entries.get(store).map(|e| e.status(now))
    }
}

impl Behaviour for TokenRefreshActor {
    type Msg = TokenRefreshMsg;
    type State = TokenRefreshState;
    type Args = TokenRefreshArgs;
    const TYPE: &'static str = "TokenRefreshActor";

    async fn pre_start(
        &self,
        me: Addr<TokenRefreshMsg>,
        args: TokenRefreshArgs,
    ) -> Result<TokenRefreshState, ActorProcessingErr> {
        let mut rx = args.snapshots.clone();
        let notify = me.clone();
        let watcher = tokio::spawn(async move {
            while rx.changed().await.is_ok() {
                if notify.cast(TokenRefreshMsg::Reconcile).is_err() {
                    break;
                }
            }
        });
        // The first refreshes start after the daemon is ready, not inside its start-up.
        me.cast(TokenRefreshMsg::Reconcile)?;
        Ok(TokenRefreshState {
            args,
            entries: HashMap::new(),
            timer: None,
            watcher,
            refreshed: 0,
            failed: 0,
        })
    }

    async fn handle(
        &self,
        me: &Addr<TokenRefreshMsg>,
        msg: TokenRefreshMsg,
        state: &mut TokenRefreshState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            TokenRefreshMsg::Reconcile => state.reconcile(me),
            TokenRefreshMsg::Tick => state.tick(me),
            TokenRefreshMsg::Finished { store, outcome } => state.finished(me, &store, outcome),
            TokenRefreshMsg::Status { store, reply } => {
                let _ = reply.send(state.status(&store));
            }
        }
        Ok(())
    }

    fn inspect(&self, state: &TokenRefreshState) -> serde_json::Value {
        let now = state.args.clock.now();
        let tokens: Vec<serde_json::Value> = state
            .entries
            .iter()
            .map(|(k, e)| {
                let s = e.status(now);
                json!({
                    "store": format!("{}/{}", k.project, k.name),
                    "key": s.key,
                    "provider": s.provider,
                    "state": s.state.as_str(),
                    "expiresAt": s.expires_at,
                    "refreshesAt": s.refreshes_at,
                })
            })
            .collect();
        json!({
            "tokens": tokens,
            "timer": state.timer.as_ref().map(|(at, _)| at),
            "refreshedSinceStart": state.refreshed,
            "failedSinceStart": state.failed,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::manifest::{KeyRef, RotationSpec, SecretValue};

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("time")
            .with_timezone(&Utc)
    }

    fn store(provider: RotationProvider, pairs: &[(&str, &str)]) -> SecretStoreSpec {
        SecretStoreSpec {
            data: pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), SecretValue::new((*v).to_owned())))
                .collect(),
            rotation: Some(RotationSpec {
                key: "tok".into(),
                provider,
                settings: Default::default(),
                credentials: Some(KeyRef {
                    from_ref: "client".into(),
                    key: "secret".into(),
                }),
                grace_seconds: 0,
            }),
            description: None,
            keep: Default::default(),
            applied: None,
        }
    }

    const NOW: &str = "2026-01-01T06:00:00Z";

    #[test]
    fn only_token_providers_get_an_entry() {
        assert!(Entry::of(&store(RotationProvider::Github, &[]), None).is_none());
        assert!(Entry::of(&store(RotationProvider::Command, &[]), None).is_none());
        assert!(Entry::of(&store(RotationProvider::Oauth2, &[]), None).is_some());
        assert!(Entry::of(&store(RotationProvider::GithubApp, &[]), None).is_some());
    }

    #[test]
    fn an_entry_is_due_at_its_refresh_unless_retrying_blocked_or_running() {
        let now = t(NOW);
        let known = store(
            RotationProvider::Oauth2,
            &[
                ("tok", "a"),
                ("tok.expires_at", "2026-01-01T12:00:00Z"),
                ("tok.issued_at", "2026-01-01T00:00:00Z"),
            ],
        );
        let mut e = Entry::of(&known, None).expect("entry");
        assert_eq!(e.next(now), Some(t("2026-01-01T10:48:00Z")));
        assert_eq!(
            e.why(),
            Why::Ahead {
                expires: t("2026-01-01T12:00:00Z")
            }
        );
        let s = e.status(now);
        assert_eq!(s.state, TokenState::Scheduled);
        assert_eq!(s.expires_at, Some(t("2026-01-01T12:00:00Z")));
        assert_eq!(s.issued_at, Some(t("2026-01-01T00:00:00Z")));
        assert_eq!(s.refreshes_at, Some(t("2026-01-01T10:48:00Z")));

        e.retry = Some((3, t("2026-01-01T06:00:04Z")));
        assert_eq!(e.next(now), Some(t("2026-01-01T06:00:04Z")));
        assert!(matches!(e.why(), Why::Retry { attempt: 3, .. }));
        assert_eq!(e.status(now).state, TokenState::Retrying);

        e.in_flight = true;
        assert_eq!(e.next(now), None);
        assert_eq!(e.status(now).state, TokenState::Refreshing);

        e.in_flight = false;
        e.blocked = Some(e.inputs.clone());
        assert_eq!(e.next(now), None);
        assert_eq!(e.status(now).state, TokenState::Blocked);
    }

    #[test]
    fn an_unknown_expiry_is_due_now_and_none_only_on_demand() {
        let now = t(NOW);
        let unknown = Entry::of(&store(RotationProvider::GithubApp, &[]), None).expect("entry");
        assert_eq!(unknown.next(now), Some(now));
        assert_eq!(unknown.why(), Why::UnknownExpiry);
        let never = Entry::of(
            &store(
                RotationProvider::Oauth2,
                &[("tok", "a"), ("tok.expires_at", "never")],
            ),
            None,
        )
        .expect("entry");
        assert_eq!(never.next(now), None);
        assert_eq!(never.status(now).state, TokenState::OnDemand);
    }
}
