//! The webhook server's routes: `POST /webhook/{trigger}`, `POST /webhook/{project}/{trigger}` and
//! `GET /healthz`, the context requests share, and [`serve_fn`], what the WebhookActor is given
//! to serve them. The accept loop with its header deadline and connection cap is in `serve.rs`,
//! body reading and payload decoding in `payload.rs`, how LINE and Slack forms want their
//! answers in `ack.rs`, the "last verified at" recorder in `verified.rs`, what each delivery
//! logs in `log.rs`, the replay window's cache of recent ids in `replay.rs`, and the
//! token that marks the daemon's own requests (`orchestrator webhook test`) in `own.rs`.
//!
//! A delivery is handled in this order, and each step answers on its own:
//! 1. capacity: more than [`Limits::max_in_flight`] deliveries at once (1,024 by default) → 429;
//! 2. route: the trigger must exist and be an `event.source: webhook` trigger → else 404;
//! 3. body: at most 1 MiB, chunked or not → else 413; all of it within
//!    [`Limits::body_timeout`] (10 s by default) → else 408, so that slow senders cannot hold
//!    the delivery slots;
//! 4. signature: verified with the trigger's scheme against every non-empty key of its
//!    SecretStore (or the listed keys), read from the snapshot that is current when the request
//!    starts → else 401 with a generic body (the reason goes to the daemon log at debug level);
//! 5. payload: JSON, or a form (`application/x-www-form-urlencoded`, as Slack slash commands send)
//!    turned into a JSON object (a form whose only field `payload` holds a JSON object, as Slack
//!    interactivity sends, is that object) → else 400;
//! 6. Slack `url_verification` → 200 with its challenge, nothing fires;
//! 7. `X-Orchestrator-Dry-Run: 1`, or the daemon's own request (`own.rs`) → 200 with the key
//!    name that matched and whether the filter matched, nothing fires;
//! 8. filter (`filter.condition`, CEL) → `202 {"status":"filtered"}`;
//! 9. replay: a delivery id that created a task within the window → `202
//!    {"status":"duplicate","task":ID}`. The store's record decides (the id is written in its
//!    task's commit, and that commit refuses a second task for it), so the window holds any
//!    number of ids and survives restarts; a small cache of recent ids answers first. The store
//!    cannot be read → 503, so the sender retries;
//! 10. suspended → `202 {"status":"skipped"}`; then the trigger fires (its concurrency policy
//!     applies) → `202 {"status":"accepted","task":ID}` once the task row is durable (fsynced,
//!     in a group commit shared with the deliveries that arrived meanwhile).
//!
//! The `202` answers of 8–10 reach LINE as `200` and Slack's slash commands and interactivity
//! as `200` with an empty body (`ack.rs`): those platforms count anything else as a failure.
//!
//! Which key verified a delivery, and when, is recorded per key (batched, every 200 ms) and shown
//! by `describe secretstore`: a real delivery from an outside sender as "last verified at", a dry
//! run or the daemon's own `webhook test` as "last tested at" (by which trigger, and which of the
//! two). Only "last verified at" satisfies a rotation's test stage.

mod ack;
mod log;
mod own;
mod payload;
mod replay;
mod serve;
mod verified;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use log::{LogSender, Logged};
use replay::Replay;

use chrono::Utc;
use tokio::sync::{Semaphore, mpsc, watch};
use warp::http::{HeaderMap, StatusCode};
use warp::{Buf, Filter, Rejection, Reply};

use crate::actors::runtime::Registry;
use crate::actors::trigger::{FireError, Fired, fire};
use crate::actors::webhook::{ServeFn, ServerView, Serving};
use crate::actors::workflow::TaskError;
use crate::domain::manifest::DEFAULT_PROJECT;
use crate::domain::signature::{self, Key, Scheme, VerifyParams};
use crate::domain::snapshot::Snapshot;
use crate::metrics::WebhookOutcome;
use crate::store::{
    DeliveryStore, Feed, FeedReceiver, Proof, ReplayStore, StoreError, Verification,
    VerificationStore,
};

pub use own::{NoRandom, OWN_HEADER, OwnToken};
pub use serve::{ConnectionCounts, Connections, serve};
pub use verified::record_verifications;

/// Largest accepted delivery body.
pub const BODY_LIMIT: usize = 1024 * 1024;
/// What the server allows a connection and a delivery.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Deliveries handled at once before the server answers 429.
    pub max_in_flight: usize,
    /// How long a delivery's body may take to arrive before the server answers 408.
    pub body_timeout: Duration,
    /// How long a connection may take to send a request's headers (also: how long an idle
    /// keep-alive connection is kept) before it is closed.
    pub header_timeout: Duration,
    /// Open connections; at the cap a new one takes the place of the longest-idle one (see
    /// [`Connections`]), or is closed if every open one is being answered.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_in_flight: 1024,
            body_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(30),
            max_connections: 4096,
        }
    }
}
/// What every request handler shares.
#[derive(Clone)]
pub struct WebhookContext {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    counters: Arc<Counters>,
    replay: Arc<Mutex<Replay>>,
    /// The replay window's record: the authority behind `replay`.
    seen: Arc<dyn ReplayStore>,
    /// Where each delivery's log entry goes.
    log: LogSender,
    inflight: Arc<Semaphore>,
    connections: Arc<Connections>,
    limits: Limits,
    verified: mpsc::Sender<Verification>,
    /// The daemon's actors: where a delivery's task is created.
    actors: Registry,
    /// Marks the daemon's own requests (`webhook test`).
    own: OwnToken,
    /// The revision feed of a store other nodes write too (`None` on SQLite): while it says
    /// this node's snapshot may be behind, deliveries wait for the catch-up, then get 503.
    feed: Option<FeedReceiver>,
}

/// How long a delivery waits for this node to load desired state another node committed
/// before it is answered 503 (the sender retries).
const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

const STATUSES: [u16; 11] = [200, 202, 400, 401, 404, 405, 408, 413, 429, 500, 503];

#[derive(Default)]
struct Counters {
    by_status: [AtomicU64; STATUSES.len()],
}

impl WebhookContext {
    /// A context whose verification records go to `verified`.
    #[allow(clippy::too_many_arguments)]
    fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        verified: mpsc::Sender<Verification>,
        limits: Limits,
        actors: Registry,
        own: OwnToken,
        seen: Arc<dyn ReplayStore>,
        log: LogSender,
        feed: Option<FeedReceiver>,
    ) -> WebhookContext {
        WebhookContext {
            snapshots,
            counters: Arc::new(Counters::default()),
            replay: Arc::new(Mutex::new(Replay::default())),
            seen,
            log,
            inflight: Arc::new(Semaphore::new(limits.max_in_flight)),
            connections: Arc::new(Connections::new(limits.max_connections)),
            limits,
            verified,
            actors,
            own,
            feed,
        }
    }

    /// Waits (a little) until this node's snapshot is the store's newest: `Err` with the
    /// revision it serves and the one it knows of (`None`: it is not listening) when not.
    async fn current(&self) -> Result<(), (u64, Option<u64>)> {
        let Some(feed) = &self.feed else {
            return Ok(());
        };
        let (mut feed, mut snapshots) = (feed.clone(), self.snapshots.clone());
        let deadline = tokio::time::Instant::now() + CATCH_UP_WAIT;
        loop {
            let (f, published) = (
                *feed.borrow_and_update(),
                snapshots.borrow_and_update().revision,
            );
            if f.current(published) {
                return Ok(());
            }
            let known = match f {
                Feed::Connected { latest } => Some(latest),
                Feed::Disconnected => None,
            };
            tokio::select! {
                r = feed.changed() => if r.is_err() { return Err((published, known)) },
                r = snapshots.changed() => if r.is_err() { return Err((published, known)) },
                () = tokio::time::sleep_until(deadline) => return Err((published, known)),
            }
        }
    }

    /// The snapshot revision requests currently see.
    pub fn revision(&self) -> u64 {
        self.snapshots.borrow().revision
    }

    /// Deliveries being handled now (each holds one of `max_in_flight` slots).
    pub fn in_flight(&self) -> usize {
        self.limits
            .max_in_flight
            .saturating_sub(self.inflight.available_permits())
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Connections open now, and how many were evicted or refused at the cap so far.
    pub fn connections(&self) -> ConnectionCounts {
        self.connections.counts()
    }

    /// Requests answered so far, by status.
    pub fn counters(&self) -> BTreeMap<u16, u64> {
        STATUSES
            .iter()
            .zip(&self.counters.by_status)
            .map(|(s, c)| (*s, c.load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    fn count(&self, status: StatusCode) {
        if let Some(i) = STATUSES.iter().position(|s| *s == status.as_u16()) {
            self.counters.by_status[i].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// An answer counted as `from` went out as `to` (see `ack.rs`).
    fn recount(&self, from: StatusCode, to: StatusCode) {
        if from == to {
            return;
        }
        if let Some(i) = STATUSES.iter().position(|s| *s == from.as_u16()) {
            self.counters.by_status[i].fetch_sub(1, Ordering::Relaxed);
        }
        self.count(to);
    }
}

impl ServerView for WebhookContext {
    fn figures(&self) -> serde_json::Map<String, serde_json::Value> {
        use serde_json::json;
        let connections = self.connections();
        [
            ("snapshotRevision", json!(self.revision())),
            ("requests", json!(self.counters())),
            ("inFlight", json!(self.in_flight())),
            ("maxInFlight", json!(self.limits.max_in_flight)),
            (
                "bodyTimeoutSeconds",
                json!(self.limits.body_timeout.as_secs_f64()),
            ),
            (
                "headerTimeoutSeconds",
                json!(self.limits.header_timeout.as_secs_f64()),
            ),
            ("maxConnections", json!(self.limits.max_connections)),
            (
                "deliveryLogDropped",
                json!(self.log.dropped.load(Ordering::Relaxed)),
            ),
            (
                "recentDeliveryIds",
                json!(self.replay.lock().unwrap_or_else(|p| p.into_inner()).len()),
            ),
            ("openConnections", json!(connections.open)),
            ("evictedConnections", json!(connections.evicted)),
            ("refusedConnections", json!(connections.refused)),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }
}

/// What the WebhookActor serves with: each call starts a fresh incarnation on the listener (new
/// counters, delivery slots and recent-id cache, as a restart should give; the replay window is
/// `replay`'s record), reading `snapshots` per request and writing "last verified at" stamps to
/// `verifications` (the daemon's own requests, marked with `own`, as tests).
#[allow(clippy::too_many_arguments)]
pub fn serve_fn(
    snapshots: watch::Receiver<Arc<Snapshot>>,
    verifications: Arc<dyn VerificationStore>,
    replay: Arc<dyn ReplayStore>,
    deliveries: Arc<dyn DeliveryStore>,
    limits: Limits,
    actors: Registry,
    own: OwnToken,
    feed: Option<FeedReceiver>,
) -> ServeFn {
    Arc::new(move |listener, shutdown| {
        let (verified, stamps) = mpsc::channel(4096);
        let (log, entries) = LogSender::channel();
        let context = WebhookContext::new(
            snapshots.clone(),
            verified,
            limits,
            actors.clone(),
            own.clone(),
            replay.clone(),
            log,
            feed.clone(),
        );
        let server = {
            let context = context.clone();
            async move { serve(listener, context, shutdown).await }
        };
        Serving {
            recorder: Box::pin({
                let (verifications, deliveries) = (verifications.clone(), deliveries.clone());
                async move {
                    tokio::join!(
                        record_verifications(verifications, stamps),
                        log::record_deliveries(deliveries, entries),
                    );
                }
            }),
            server: Box::pin(server),
            view: Box::new(context),
        }
    })
}

/// Request headers for the signature verifiers.
struct Hdrs<'a>(&'a HeaderMap);

impl signature::Headers for Hdrs<'_> {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.0.get(name).map(|v| v.as_bytes())
    }
}

fn reply(
    ctx: &WebhookContext,
    status: StatusCode,
    body: serde_json::Value,
) -> warp::reply::Response {
    ctx.count(status);
    let mut response = warp::reply::with_status(warp::reply::json(&body), status).into_response();
    response.extensions_mut().insert(ack::Answer(body));
    response
}

/// The answer as the platform of the trigger at `tail` wants it (`ack.rs`).
fn acknowledged(
    ctx: &WebhookContext,
    tail: &str,
    form: bool,
    answer: warp::reply::Response,
) -> warp::reply::Response {
    if answer.status() != StatusCode::ACCEPTED {
        return answer;
    }
    let scheme = route(tail).and_then(|(project, name)| {
        ctx.snapshots
            .borrow()
            .webhook(&project, &name)
            .map(|w| w.plan.scheme)
    });
    let answer = ack::acknowledge(scheme, form, answer);
    ctx.recount(StatusCode::ACCEPTED, answer.status());
    answer
}

/// All webhook routes.
pub fn routes(
    ctx: WebhookContext,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    let health = {
        let ctx = ctx.clone();
        warp::path!("healthz").and(warp::get()).map(move || {
            ctx.count(StatusCode::OK);
            warp::reply::with_status("ok\n".to_string(), StatusCode::OK).into_response()
        })
    };
    let deliver = {
        let ctx = ctx.clone();
        warp::post()
            .and(warp::path("webhook"))
            .and(warp::path::tail())
            .and(warp::header::headers_cloned())
            .and(warp::body::stream())
            .then(move |tail: warp::path::Tail, headers: HeaderMap, body| {
                use tracing::Instrument;
                static NEXT: AtomicU64 = AtomicU64::new(1);
                let ctx = ctx.clone();
                // The delivery's span reaches every actor the delivery touches.
                let span = tracing::info_span!(parent: None, "delivery", id = NEXT.fetch_add(1, Ordering::Relaxed), path = %tail.as_str());
                async move { deliver(&ctx, tail.as_str(), headers, body).await }
                .instrument(span)
            })
    };
    let fallback = ctx.clone();
    health
        .or(deliver)
        .unify()
        .recover(move |r: Rejection| {
            let ctx = fallback.clone();
            async move {
                let (status, message) = if r.find::<warp::reject::MethodNotAllowed>().is_some() {
                    (
                        StatusCode::METHOD_NOT_ALLOWED,
                        "use POST /webhook/{trigger}",
                    )
                } else {
                    (StatusCode::NOT_FOUND, "not found")
                };
                Ok::<_, Infallible>(reply(&ctx, status, serde_json::json!({"error": message})))
            }
        })
        .unify()
}

/// `trigger` or `project/trigger`.
fn route(tail: &str) -> Option<(String, String)> {
    let parts: Vec<&str> = tail.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        [t] if !t.is_empty() => Some((DEFAULT_PROJECT.to_owned(), (*t).to_owned())),
        [p, t] if !p.is_empty() && !t.is_empty() => Some(((*p).to_owned(), (*t).to_owned())),
        _ => None,
    }
}

/// Handles a delivery, answers it as its platform wants (`ack.rs`) and logs it (when its path
/// named a webhook trigger) with the status it was answered with.
async fn deliver<S, B>(
    ctx: &WebhookContext,
    tail: &str,
    headers: HeaderMap,
    body: S,
) -> warp::reply::Response
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let mut log = Logged::default();
    let form = payload::is_form(&headers);
    let response = handle(ctx, tail, headers, body, &mut log).await;
    let response = acknowledged(ctx, tail, form, response);
    count(ctx, tail, &log, response.status());
    if let Some(entry) = log.entry(response.status().as_u16()) {
        ctx.log.send(entry);
    }
    response
}

/// Counts the request in the daemon's metrics, by trigger, scheme and outcome. A request refused
/// for capacity before its path was read is put down to its trigger here.
fn count(ctx: &WebhookContext, tail: &str, log: &Logged, status: StatusCode) {
    let outcome = WebhookOutcome::of(status.as_u16(), log.outcome);
    let metrics = ctx.actors.metrics();
    if let (Some((project, name)), Some(scheme)) = (&log.trigger, log.scheme) {
        return metrics.webhook_request(Some((project, name)), Some(scheme), outcome);
    }
    let routed = (status == StatusCode::TOO_MANY_REQUESTS)
        .then(|| route(tail))
        .flatten()
        .and_then(|(project, name)| {
            let snapshot = ctx.snapshots.borrow();
            let scheme = snapshot.webhook(&project, &name)?.plan.scheme;
            Some((project, name, scheme))
        });
    match &routed {
        Some((project, name, scheme)) => {
            metrics.webhook_request(Some((project, name)), Some(*scheme), outcome)
        }
        None => metrics.webhook_request(None, None, outcome),
    }
}

async fn handle<S, B>(
    ctx: &WebhookContext,
    tail: &str,
    mut headers: HeaderMap,
    body: S,
    log: &mut Logged,
) -> warp::reply::Response
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    // Before anything reads the headers: the own-request header never goes further.
    let own = ctx.own.take(&mut headers);
    let Ok(_permit) = ctx.inflight.clone().try_acquire_owned() else {
        return reply(
            ctx,
            StatusCode::TOO_MANY_REQUESTS,
            serde_json::json!({"error": "too many deliveries at once; retry later"}),
        );
    };
    let Some((project, name)) = route(tail) else {
        return reply(
            ctx,
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "not found"}),
        );
    };
    // A node that may be behind the store never verifies: it could still accept a key
    // another node's apply retired.
    if let Err((serving, known)) = ctx.current().await {
        let why = match known {
            Some(latest) => format!(
                "this node is loading the desired state (it serves revision {serving}, the store has {latest}); retry"
            ),
            None => "this node has lost contact with its store and cannot prove its keys are current; retry".to_owned(),
        };
        tracing::warn!(serving, store = ?known, "webhook refused: this node's desired state may be behind the store");
        let mut response = reply(
            ctx,
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "error": why }),
        );
        response.headers_mut().insert(
            warp::http::header::RETRY_AFTER,
            warp::http::HeaderValue::from_static("1"),
        );
        return response;
    }
    // One snapshot for the whole request: the keys in force when it arrived.
    let snapshot = ctx.snapshots.borrow().clone();
    let Some(webhook) = snapshot.webhook(&project, &name) else {
        return reply(
            ctx,
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "no webhook trigger at this path"}),
        );
    };
    log.trigger = Some((project.clone(), name.clone()));
    let plan = &webhook.plan;
    log.scheme = Some(plan.scheme);
    let body = match payload::read_within(ctx.limits.body_timeout, &headers, body).await {
        Ok(b) => b,
        Err(e) => {
            return reply(ctx, e.status(), serde_json::json!({"error": e.to_string()}));
        }
    };
    let unauthorized = || serde_json::json!({"error": "unauthorized"});
    let keys = match &webhook.keys {
        Ok(k) => k,
        Err(why) => {
            tracing::debug!(project = %project, trigger = %name, reason = %why, "webhook refused: no key to verify with");
            return reply(ctx, StatusCode::UNAUTHORIZED, unauthorized());
        }
    };
    let scheme = plan.scheme;
    let params = VerifyParams {
        scheme,
        signature_header: plan.signature_header.as_deref(),
        tolerance_secs: plan.tolerance_secs,
        now_unix: Utc::now().timestamp(),
    };
    let key_refs: Vec<Key<'_>> = keys
        .iter()
        .map(|(n, s)| Key {
            name: n,
            secret: s.expose().as_bytes(),
        })
        .collect();
    let started = std::time::Instant::now();
    let verified = signature::verify(&params, &Hdrs(&headers), &body, &key_refs);
    let metrics = ctx.actors.metrics();
    metrics.verification_took(scheme, started.elapsed().as_secs_f64());
    let verified = match verified {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!(project = %project, trigger = %name, reason = %e, "webhook refused: signature");
            return reply(ctx, StatusCode::UNAUTHORIZED, unauthorized());
        }
    };
    let key_name = keys
        .get(verified.key_index)
        .map(|(n, _)| n.clone())
        .unwrap_or_default();
    log.payload_bytes = body.len() as u64;
    log.key = Some(key_name.clone());
    log.delivery_id = verified.delivery_id.clone();
    // The daemon's own requests are always dry runs: they never fire.
    let dry_run = own
        || headers
            .get("x-orchestrator-dry-run")
            .is_some_and(|v| v.as_bytes() == b"1" || v.as_bytes().eq_ignore_ascii_case(b"true"));
    let proof = match (own, dry_run) {
        (true, _) => Proof::WebhookTest,
        (false, true) => Proof::DryRun,
        (false, false) => Proof::Delivery,
    };
    // Like "last verified at": a dry run or `webhook test` proves no sender uses the key.
    if !dry_run {
        metrics.verified(&project, &name, &key_name);
    }
    let _ = ctx.verified.try_send(Verification {
        project: project.clone(),
        store: plan.store.clone(),
        key: key_name.clone(),
        trigger: name.clone(),
        at: Utc::now(),
        proof,
    });

    let (value, text) = match payload::payload(&headers, &body) {
        Ok(p) => p,
        Err(why) => {
            return reply(
                ctx,
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": why.to_string()}),
            );
        }
    };
    if !dry_run {
        log.payload = Some(text.clone());
    }
    if scheme == Scheme::Slack
        && value.get("type").and_then(|t| t.as_str()) == Some("url_verification")
    {
        log.outcome = Some("url verification");
        let challenge = value
            .get("challenge")
            .cloned()
            .unwrap_or(serde_json::Value::Null);
        return reply(
            ctx,
            StatusCode::OK,
            serde_json::json!({"challenge": challenge}),
        );
    }
    let matched = match &plan.filter {
        None => true,
        Some(filter) => match filter.matches(&value) {
            Ok(m) => m,
            Err(why) => {
                tracing::debug!(trigger = %name, reason = %why, "filter did not match");
                false
            }
        },
    };
    if dry_run {
        log.outcome = Some(if own { "webhook test" } else { "dry run" });
        return reply(
            ctx,
            StatusCode::OK,
            serde_json::json!({"status": "verified", "key": key_name, "filterMatched": matched}),
        );
    }
    if !matched {
        log.outcome = Some("filtered");
        return reply(
            ctx,
            StatusCode::ACCEPTED,
            serde_json::json!({"status": "filtered"}),
        );
    }
    let delivery = verified
        .delivery_id
        .clone()
        .or_else(|| payload::body_delivery_id(scheme, &value));
    let seen = match delivery {
        Some(id) => {
            let window = Duration::from_secs(params.tolerance_secs.max(1));
            let key = (project.clone(), name.clone(), id);
            let fresh = ctx
                .replay
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .first_time(key.clone(), window);
            if !fresh {
                // The record names the task, unless the first delivery is still being committed.
                let task = ctx
                    .seen
                    .seen(&key.0, &key.1, &key.2, Utc::now())
                    .ok()
                    .flatten();
                return duplicate(ctx, log, task);
            }
            // Not among the recent ids: the record knows the rest of the window.
            match ctx.seen.seen(&key.0, &key.1, &key.2, Utc::now()) {
                Ok(None) => {}
                Ok(Some(task)) => return duplicate(ctx, log, Some(task)),
                Err(e) => {
                    ctx.replay
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .forget(&key);
                    tracing::error!(trigger = %name, error = %e, "cannot read the webhook replay record");
                    return reply(
                        ctx,
                        StatusCode::SERVICE_UNAVAILABLE,
                        serde_json::json!({"error": "the delivery was verified but could not be checked for a replay; retry"}),
                    );
                }
            }
            Some((replay::record(&key, Utc::now(), window), key))
        }
        None => None,
    };
    if webhook.spec.suspend {
        log.outcome = Some("skipped");
        return reply(
            ctx,
            StatusCode::ACCEPTED,
            serde_json::json!({"status": "skipped", "reason": "the trigger is suspended"}),
        );
    }
    match fire(
        &ctx.actors,
        &project,
        &name,
        &webhook.spec,
        format!("webhook/{name}"),
        None,
        Some(text),
        seen.as_ref().map(|(record, _)| record.clone()),
        None,
    )
    .await
    {
        Ok(Fired::Created(task)) => {
            log.task = Some(task.id);
            reply(
                ctx,
                StatusCode::ACCEPTED,
                serde_json::json!({"status": "accepted", "task": task.id}),
            )
        }
        Ok(Fired::Skipped(reason)) => {
            log.outcome = Some("skipped");
            reply(
                ctx,
                StatusCode::ACCEPTED,
                serde_json::json!({"status": "skipped", "reason": reason}),
            )
        }
        // Another delivery with this id created its task after the record was read.
        Err(FireError::Task(TaskError::Store(StoreError::DuplicateDelivery { task }))) => {
            duplicate(ctx, log, Some(task))
        }
        Err(e) => {
            tracing::warn!(trigger = %name, error = %e, "webhook could not create its task");
            // No task: a retry of this delivery is not a replay.
            if let Some((_, key)) = &seen {
                ctx.replay
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .forget(key);
            }
            // The control API's status for the same refusal; only a server error is kept.
            let status = crate::http::control::ControlError::from(e).status();
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            let status = if status.is_server_error() {
                status
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            reply(
                ctx,
                status,
                serde_json::json!({"error": "the delivery was verified but no task could be created; retry"}),
            )
        }
    }
}

/// `202 {"status":"duplicate"}`, with the task the first delivery created when that is known.
fn duplicate(ctx: &WebhookContext, log: &mut Logged, task: Option<u64>) -> warp::reply::Response {
    log.outcome = Some("duplicate");
    log.task = task;
    let body = match task {
        Some(task) => serde_json::json!({"status": "duplicate", "task": task}),
        None => serde_json::json!({"status": "duplicate"}),
    };
    reply(ctx, StatusCode::ACCEPTED, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("hook"), Some(("default".into(), "hook".into())));
        assert_eq!(route("team/hook"), Some(("team".into(), "hook".into())));
        assert_eq!(route("a/b/c"), None);
        assert_eq!(route(""), None);
    }
}
