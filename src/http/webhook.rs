//! The webhook server's routes: `POST /webhook/{trigger}`, `POST /webhook/{project}/{trigger}` and
//! `GET /healthz`.
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
//!    turned into a JSON object → else 400;
//! 6. Slack `url_verification` → 200 with its challenge, nothing fires;
//! 7. `X-Orchestrator-Dry-Run: 1` → 200 with the key name that matched and whether the filter
//!    matched, nothing fires;
//! 8. filter (`filter.condition`, CEL) → `202 {"status":"filtered"}`;
//! 9. replay: a delivery id seen within the window → `202 {"status":"duplicate"}`;
//! 10. suspended → `202 {"status":"skipped"}`; then the trigger fires (its concurrency policy
//!     applies) → `202 {"status":"accepted","task":ID}` once the task row is committed.
//!
//! Which key verified a delivery, and when, is recorded per key (batched, every 200 ms) and shown
//! by `describe secretstore` as "last verified at".

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use futures_util::StreamExt;
use tokio::sync::{Semaphore, mpsc, watch};
use warp::http::{HeaderMap, StatusCode};
use warp::hyper::body::Bytes;
use warp::{Buf, Filter, Rejection, Reply};

use crate::actors::trigger::{Fired, fire};
use crate::domain::filter::Filter as Condition;
use crate::domain::manifest::{DEFAULT_PROJECT, EventSpec, Kind, Spec, TriggerSpec};
use crate::domain::signature::{self, Key, Scheme, VerifyParams};
use crate::domain::snapshot::Snapshot;

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
    /// Open connections; one more is closed as soon as it is accepted.
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
/// Delivery ids remembered for replay detection.
const REPLAY_CAPACITY: usize = 100_000;

/// What every request handler shares.
#[derive(Clone)]
pub struct WebhookContext {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    counters: Arc<Counters>,
    replay: Arc<Mutex<Replay>>,
    filters: Arc<Mutex<HashMap<String, Arc<Condition>>>>,
    inflight: Arc<Semaphore>,
    limits: Limits,
    verified: mpsc::Sender<Verification>,
}

/// One delivery that verified: which key of which store, for which trigger.
#[derive(Debug, Clone)]
pub struct Verification {
    pub project: String,
    pub store: String,
    pub key: String,
    pub trigger: String,
    pub at: chrono::DateTime<Utc>,
}

const STATUSES: [u16; 11] = [200, 202, 400, 401, 404, 405, 408, 413, 429, 500, 503];

#[derive(Default)]
struct Counters {
    by_status: [AtomicU64; STATUSES.len()],
}

/// Delivery ids seen recently, with their expiry.
#[derive(Default)]
struct Replay {
    seen: HashMap<(String, String, String), Instant>,
    order: VecDeque<((String, String, String), Instant)>,
}

impl Replay {
    /// Records `key`; false if it was already seen and has not expired.
    fn first_time(&mut self, key: (String, String, String), window: Duration) -> bool {
        let now = Instant::now();
        while let Some((k, until)) = self.order.front() {
            if *until > now && self.order.len() < REPLAY_CAPACITY {
                break;
            }
            if self.seen.get(k) == Some(until) {
                self.seen.remove(k);
            }
            self.order.pop_front();
        }
        if self.seen.get(&key).is_some_and(|until| *until > now) {
            return false;
        }
        let until = now + window;
        self.seen.insert(key.clone(), until);
        self.order.push_back((key, until));
        true
    }
}

impl WebhookContext {
    /// A context whose verification records go to `verified`.
    pub fn new(
        snapshots: watch::Receiver<Arc<Snapshot>>,
        verified: mpsc::Sender<Verification>,
        limits: Limits,
    ) -> WebhookContext {
        WebhookContext {
            snapshots,
            counters: Arc::new(Counters::default()),
            replay: Arc::new(Mutex::new(Replay::default())),
            filters: Arc::new(Mutex::new(HashMap::new())),
            inflight: Arc::new(Semaphore::new(limits.max_in_flight)),
            limits,
            verified,
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

    fn condition(&self, source: &str) -> Result<Arc<Condition>, String> {
        let mut cache = self.filters.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = cache.get(source) {
            return Ok(c.clone());
        }
        let c = Arc::new(Condition::compile(source)?);
        if cache.len() > 10_000 {
            cache.clear();
        }
        cache.insert(source.to_owned(), c.clone());
        Ok(c)
    }
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
    warp::reply::with_status(warp::reply::json(&body), status).into_response()
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
                let span = tracing::info_span!("delivery", id = NEXT.fetch_add(1, Ordering::Relaxed), path = %tail.as_str());
                async move { deliver(&ctx, tail.as_str(), headers, body).await }.instrument(span)
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

/// Reads the body, refusing more than [`BODY_LIMIT`] bytes (declared or streamed).
async fn read_body<S, B>(headers: &HeaderMap, mut body: S) -> Result<Bytes, StatusCode>
where
    S: futures_util::Stream<Item = Result<B, warp::Error>> + Unpin,
    B: Buf,
{
    let declared = headers
        .get(warp::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > BODY_LIMIT as u64) {
        return Err(StatusCode::PAYLOAD_TOO_LARGE);
    }
    let mut out = Vec::with_capacity(declared.unwrap_or(0).min(BODY_LIMIT as u64) as usize);
    while let Some(chunk) = body.next().await {
        let mut chunk = chunk.map_err(|_| StatusCode::BAD_REQUEST)?;
        if out.len() + chunk.remaining() > BODY_LIMIT {
            return Err(StatusCode::PAYLOAD_TOO_LARGE);
        }
        while chunk.has_remaining() {
            let piece = chunk.chunk();
            out.extend_from_slice(piece);
            let n = piece.len();
            chunk.advance(n);
        }
    }
    Ok(Bytes::from(out))
}

/// Serves [`routes`] on `listener` until `shutdown` resolves, then lets open connections finish.
///
/// This is `warp::serve` with hyper's own connection limits switched on: warp builds its hyper
/// connections without a timer, and without one hyper's header read timeout never fires, so a
/// client that connects and sends nothing (or never finishes its headers) would hold its socket
/// forever. Here every connection is HTTP/1.1 with the timer and [`Limits::header_timeout`],
/// and at most [`Limits::max_connections`] are open at once.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: WebhookContext,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;

    let limits = ctx.limits;
    let service = warp::service(routes(ctx));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_warning: Option<Instant> = None;
    loop {
        let io = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((io, _)) => io,
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close, and say so
                    // once every 10 s rather than ten times a second.
                    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::warn!(error = %e, "webhook server cannot accept connections");
                        last_warning = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(slot) = open.clone().try_acquire_owned() else {
            tracing::debug!("webhook connection refused: max connections reached");
            continue; // Dropping it closes it.
        };
        let service = TowerToHyperService::new(service.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // HTTP/1.1 only: detecting HTTP/2 would first wait, without any deadline, for the
            // client's first bytes. Platforms deliver webhooks over HTTP/1.1.
            let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = builder.serve_connection(TokioIo::new(io), service);
            if let Err(e) = watcher.watch(conn).await {
                tracing::debug!(error = %e, "webhook connection ended with an error");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// The delivery's payload as JSON: a JSON body, or a form turned into an object.
fn payload(headers: &HeaderMap, body: &[u8]) -> Result<(serde_json::Value, String), String> {
    if body.is_empty() {
        return Err("the body is empty: a delivery carries a JSON or form payload".into());
    }
    let text = std::str::from_utf8(body).map_err(|_| "the body is not UTF-8 text".to_owned())?;
    let form = headers
        .get(warp::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/x-www-form-urlencoded"));
    if form {
        let mut map = serde_json::Map::new();
        for (k, v) in form_pairs(text)? {
            map.insert(k, serde_json::Value::String(v));
        }
        let value = serde_json::Value::Object(map);
        let text = value.to_string();
        return Ok((value, text));
    }
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    Ok((value, text.to_owned()))
}

/// Decodes `application/x-www-form-urlencoded` text.
fn form_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    fn decode(s: &str) -> Result<String, String> {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok())
                        .ok_or_else(|| "the form body has a bad %-escape".to_owned())?;
                    out.push(hex);
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).map_err(|_| "the form body is not UTF-8 text".to_owned())
    }
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

/// The keys a webhook trigger verifies with, from the current snapshot.
fn keys(
    snapshot: &Snapshot,
    project: &str,
    ev: &EventSpec,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let store_name = &ev.webhook.secret.from_ref;
    let store = snapshot
        .secret_store(project, store_name)
        .ok_or_else(|| format!("SecretStore {store_name:?} does not exist"))?;
    let wanted = ev.webhook.secret.keys.as_ref();
    let keys: Vec<(String, Vec<u8>)> = store
        .data
        .iter()
        .filter(|(k, v)| !v.is_empty() && wanted.is_none_or(|w| key_listed(w, k)))
        .map(|(k, v)| (k.clone(), v.expose().as_bytes().to_vec()))
        .collect();
    if keys.is_empty() {
        return Err(format!(
            "SecretStore {store_name:?} has no usable (non-empty, listed) key"
        ));
    }
    Ok(keys)
}

/// Whether store key `k` is one of the `listed` keys — or a rotation's staging value of one
/// (`<key>.next`), which must verify wherever the key it replaces does.
pub fn key_listed(listed: &[String], k: &str) -> bool {
    listed.iter().any(|l| {
        l == k
            || k.strip_suffix(crate::rotation::NEXT_SUFFIX)
                .is_some_and(|base| base == l)
    })
}

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
    // One snapshot for the whole request: the keys in force when it arrived.
    let snapshot = ctx.snapshots.borrow().clone();
    let trigger: TriggerSpec = match snapshot
        .lookup(&project, Kind::Trigger, &name)
        .map(|r| &r.spec)
    {
        Some(Spec::Trigger(t)) if t.event.is_some() => t.clone(),
        _ => {
            return reply(
                ctx,
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": "no webhook trigger at this path"}),
            );
        }
    };
    let Some(ev) = trigger.event.as_ref() else {
        return reply(
            ctx,
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "no webhook trigger at this path"}),
        );
    };
    let read = tokio::time::timeout(ctx.limits.body_timeout, read_body(&headers, body)).await;
    let body = match read {
        Ok(Ok(b)) => b,
        Ok(Err(status)) => {
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!("the body is larger than {} bytes", BODY_LIMIT)
            } else {
                "the body could not be read".to_owned()
            };
            return reply(ctx, status, serde_json::json!({"error": message}));
        }
        Err(_) => {
            let message = format!(
                "the body did not arrive within {} s",
                ctx.limits.body_timeout.as_secs_f64()
            );
            return reply(
                ctx,
                StatusCode::REQUEST_TIMEOUT,
                serde_json::json!({"error": message}),
            );
        }
    };
    let unauthorized = || serde_json::json!({"error": "unauthorized"});
    let keys = match keys(&snapshot, &project, ev) {
        Ok(k) => k,
        Err(why) => {
            tracing::debug!(project = %project, trigger = %name, reason = %why, "webhook refused: no key to verify with");
            return reply(ctx, StatusCode::UNAUTHORIZED, unauthorized());
        }
    };
    let scheme = match ev.webhook.scheme.as_deref() {
        Some(s) => Scheme::parse(s).unwrap_or(Scheme::HmacSha256),
        None => Scheme::infer(ev.webhook.signature_header.as_deref()),
    };
    let params = VerifyParams {
        scheme,
        signature_header: ev.webhook.signature_header.as_deref(),
        tolerance_secs: ev
            .webhook
            .tolerance_seconds
            .unwrap_or(signature::DEFAULT_TOLERANCE_SECS),
        now_unix: Utc::now().timestamp(),
    };
    let key_refs: Vec<Key<'_>> = keys
        .iter()
        .map(|(n, s)| Key { name: n, secret: s })
        .collect();
    let verified = match signature::verify(&params, &Hdrs(&headers), &body, &key_refs) {
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
    let _ = ctx.verified.try_send(Verification {
        project: project.clone(),
        store: ev.webhook.secret.from_ref.clone(),
        key: key_name.clone(),
        trigger: name.clone(),
        at: Utc::now(),
    });

    let (value, text) = match payload(&headers, &body) {
        Ok(p) => p,
        Err(why) => {
            return reply(
                ctx,
                StatusCode::BAD_REQUEST,
                serde_json::json!({"error": why}),
            );
        }
    };
    if scheme == Scheme::Slack
        && value.get("type").and_then(|t| t.as_str()) == Some("url_verification")
    {
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
    let matched = match ev.filter.as_ref().and_then(|f| f.condition.as_deref()) {
        None => true,
        Some(source) => match ctx.condition(source).and_then(|c| c.matches(&value)) {
            Ok(m) => m,
            Err(why) => {
                tracing::debug!(trigger = %name, reason = %why, "filter did not match");
                false
            }
        },
    };
    let dry_run = headers
        .get("x-orchestrator-dry-run")
        .is_some_and(|v| v.as_bytes() == b"1" || v.as_bytes().eq_ignore_ascii_case(b"true"));
    if dry_run {
        return reply(
            ctx,
            StatusCode::OK,
            serde_json::json!({"status": "verified", "key": key_name, "filterMatched": matched}),
        );
    }
    if !matched {
        return reply(
            ctx,
            StatusCode::ACCEPTED,
            serde_json::json!({"status": "filtered"}),
        );
    }
    let delivery = verified.delivery_id.clone().or_else(|| {
        (scheme == Scheme::Slack)
            .then(|| {
                value
                    .get("event_id")
                    .and_then(|v| v.as_str())
                    .map(str::to_owned)
            })
            .flatten()
    });
    if let Some(id) = delivery {
        let window = Duration::from_secs(params.tolerance_secs.max(1));
        let fresh = ctx
            .replay
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .first_time((project.clone(), name.clone(), id), window);
        if !fresh {
            return reply(
                ctx,
                StatusCode::ACCEPTED,
                serde_json::json!({"status": "duplicate"}),
            );
        }
    }
    if trigger.suspend {
        return reply(
            ctx,
            StatusCode::ACCEPTED,
            serde_json::json!({"status": "skipped", "reason": "the trigger is suspended"}),
        );
    }
    match fire(
        &project,
        &name,
        &trigger,
        format!("webhook/{name}"),
        None,
        Some(text),
    )
    .await
    {
        Ok(Fired::Created(task)) => reply(
            ctx,
            StatusCode::ACCEPTED,
            serde_json::json!({"status": "accepted", "task": task.id}),
        ),
        Ok(Fired::Skipped(reason)) => reply(
            ctx,
            StatusCode::ACCEPTED,
            serde_json::json!({"status": "skipped", "reason": reason}),
        ),
        Err(e) => {
            tracing::warn!(trigger = %name, error = %e, "webhook could not create its task");
            let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
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

/// Writes "last verified at" stamps to the store, batched: the newest stamp per key, every
/// 200 ms. Runs until the sender side is dropped.
pub async fn record_verifications(data_dir: PathBuf, mut rx: mpsc::Receiver<Verification>) {
    let conn = match crate::store::connect(&data_dir) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot record webhook verifications");
            return;
        }
    };
    let _ = conn.execute_batch("PRAGMA synchronous=NORMAL;");
    let conn = Arc::new(Mutex::new(conn));
    loop {
        let Some(first) = rx.recv().await else { return };
        let mut batch: HashMap<(String, String, String), Verification> = HashMap::new();
        batch.insert(
            (
                first.project.clone(),
                first.store.clone(),
                first.key.clone(),
            ),
            first,
        );
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        while let Ok(Some(v)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            batch.insert((v.project.clone(), v.store.clone(), v.key.clone()), v);
        }
        let conn = conn.clone();
        let written = tokio::task::spawn_blocking(move || {
            let c = conn.lock().unwrap_or_else(|p| p.into_inner());
            crate::store::record_verified(
                &c,
                batch.values().map(|v| {
                    (
                        v.project.as_str(),
                        v.store.as_str(),
                        v.key.as_str(),
                        v.trigger.as_str(),
                        v.at,
                    )
                }),
            )
        })
        .await;
        if let Ok(Err(e)) = written {
            tracing::warn!(error = %e, "cannot record webhook verifications");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_and_forms() {
        assert_eq!(route("hook"), Some(("default".into(), "hook".into())));
        assert_eq!(route("team/hook"), Some(("team".into(), "hook".into())));
        assert_eq!(route("a/b/c"), None);
        assert_eq!(route(""), None);
        let pairs = form_pairs("command=%2Fdeploy&text=prod+now&empty=").unwrap_or_default();
        assert_eq!(
            pairs,
            vec![
                ("command".to_string(), "/deploy".to_string()),
                ("text".into(), "prod now".into()),
                ("empty".into(), String::new())
            ]
        );
        assert!(form_pairs("a=%zz").is_err());
    }

    #[test]
    fn replay_window() {
        let mut r = Replay::default();
        let k = || ("p".to_string(), "t".to_string(), "id-1".to_string());
        assert!(r.first_time(k(), Duration::from_secs(60)));
        assert!(!r.first_time(k(), Duration::from_secs(60)));
        let other = ("p".to_string(), "t".to_string(), "id-2".to_string());
        assert!(r.first_time(other, Duration::from_secs(60)));
        // An expired id is new again.
        let mut r = Replay::default();
        assert!(r.first_time(k(), Duration::ZERO));
        assert!(r.first_time(k(), Duration::ZERO));
    }
}
