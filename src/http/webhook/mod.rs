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
use crate::domain::manifest::DEFAULT_PROJECT;
use crate::domain::signature::{self, Key, Scheme, VerifyParams};
use crate::domain::snapshot::Snapshot;
use crate::store::{Verification, VerificationStore};

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
/// Delivery ids remembered for replay detection.
const REPLAY_CAPACITY: usize = 100_000;

/// What every request handler shares.
#[derive(Clone)]
pub struct WebhookContext {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    counters: Arc<Counters>,
    replay: Arc<Mutex<Replay>>,
    inflight: Arc<Semaphore>,
    connections: Arc<Connections>,
    limits: Limits,
    verified: mpsc::Sender<Verification>,
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
            inflight: Arc::new(Semaphore::new(limits.max_in_flight)),
            connections: Arc::new(Connections::new(limits.max_connections)),
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
/// and at most [`Limits::max_connections`] are open at once. A connection accepted at the cap
/// takes the place of another one, chosen by [`Connections::admit`]: the longest-idle, so that
/// idle sockets, however many, cannot keep a delivery out.
pub async fn serve(
    listener: tokio::net::TcpListener,
    ctx: WebhookContext,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;

    let limits = ctx.limits;
    let connections = ctx.connections.clone();
    let service = warp::service(routes(ctx));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_warning: Option<Instant> = None;
    let mut last_full: Option<Instant> = None;
    if limits.max_in_flight >= limits.max_connections {
        // Requests being answered are never evicted; only the delivery slots bound them.
        tracing::warn!(
            max_in_flight = limits.max_in_flight,
            max_connections = limits.max_connections,
            "slow deliveries can fill every webhook connection until their body deadline: keep --webhook-max-in-flight below --webhook-max-connections"
        );
    }
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
        let conn = match connections.admit() {
            Admission::Free(conn) => conn,
            Admission::Evicted(conn, victim) => {
                tracing::debug!(
                    phase = victim.phase.name(),
                    for_ms = victim.age.as_millis() as u64,
                    "webhook connection closed to make room for a new one"
                );
                if last_full.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(
                        max = limits.max_connections,
                        "webhook connections at the cap: closing the longest-idle ones to make room (raise --webhook-max-connections if these are real clients)"
                    );
                    last_full = Some(Instant::now());
                }
                conn
            }
            Admission::Refused => {
                tracing::debug!(
                    "webhook connection refused: every open connection is in a request being answered"
                );
                continue; // Dropping it closes it.
            }
        };
        let service = Tracking {
            inner: TowerToHyperService::new(service.clone()),
            conn: conn.clone(),
        };
        let io = Watched { io, conn };
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let evicted = io.conn.evicted.clone();
            // HTTP/1.1 only: detecting HTTP/2 would first wait, without any deadline, for the
            // client's first bytes. Platforms deliver webhooks over HTTP/1.1.
            let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout);
            let conn = watcher.watch(builder.serve_connection(TokioIo::new(io), service));
            tokio::select! {
                ended = conn => if let Err(e) = ended {
                    tracing::debug!(error = %e, "webhook connection ended with an error");
                },
                // Dropping the connection closes its socket; it was idle or still sending its
                // request's head, so no answer is lost.
                () = evicted.notified() => {}
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Where a connection is in its request cycle. The order is the eviction order: idle ones go
/// first, then those still sending a request's head; one being answered is never evicted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    /// Nothing of a request received: just accepted, or a keep-alive connection between
    /// requests. Since: the accept, or the end of the last answer.
    Idle,
    /// Some bytes of a request's head received, not all of it. Since: the first byte.
    Head,
    /// The whole head received; the request is being answered (its body read, its task
    /// created). Bounded by [`Limits::max_in_flight`] and [`Limits::body_timeout`].
    Answering,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Idle => "idle",
            Phase::Head => "sending its request head",
            Phase::Answering => "answering",
        }
    }
}

/// Open webhook connections, and the one to close when a new connection needs its place.
///
/// At the cap, the new connection evicts the connection that has been idle longest; if none is
/// idle, the one that has been sending a request's head longest (a slow-headers attack); never
/// one whose request is being answered. A delivery's connection is thus only lost if more than
/// the cap of newer connections arrive while it sends its head — and it is never refused while
/// a single idle or slow-head connection is open. This is what nginx does with its "reusable"
/// connections, extended to slow heads.
pub struct Connections {
    max: usize,
    table: Mutex<Table>,
    evicted: AtomicU64,
    refused: AtomicU64,
}

#[derive(Default)]
struct Table {
    next_id: u64,
    /// Bumped by every change of phase: orders the entries (the clock may not tell two apart).
    clock: u64,
    open: HashMap<u64, Entry>,
    /// The open connections that may be evicted as (phase, clock, id): first = the next to go.
    evictable: std::collections::BTreeSet<(Phase, u64, u64)>,
}

struct Entry {
    phase: Phase,
    /// The table's clock when the phase began.
    tick: u64,
    since: Instant,
    evicted: Arc<tokio::sync::Notify>,
}

/// What [`Connections::admit`] decided for a new connection.
enum Admission {
    Free(Arc<Conn>),
    Evicted(Arc<Conn>, Victim),
    Refused,
}

/// The connection evicted to admit another.
struct Victim {
    phase: Phase,
    age: Duration,
}

/// Counts of [`Connections`], for `actors inspect webhook`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionCounts {
    pub open: usize,
    pub evicted: u64,
    pub refused: u64,
}

impl Connections {
    fn new(max: usize) -> Connections {
        Connections {
            max: max.max(1),
            table: Mutex::new(Table::default()),
            evicted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a place for a new connection, evicting another at the cap (see the type's doc).
    fn admit(self: &Arc<Self>) -> Admission {
        let mut table = self.table();
        let mut victim = None;
        if table.open.len() >= self.max {
            let Some((_, _, id)) = table.evictable.pop_first() else {
                self.refused.fetch_add(1, Ordering::Relaxed);
                return Admission::Refused;
            };
            if let Some(entry) = table.open.remove(&id) {
                entry.evicted.notify_one();
                victim = Some(Victim {
                    phase: entry.phase,
                    age: entry.since.elapsed(),
                });
            }
            self.evicted.fetch_add(1, Ordering::Relaxed);
        }
        let id = table.next_id;
        table.next_id += 1;
        table.clock += 1;
        let tick = table.clock;
        let evicted = Arc::new(tokio::sync::Notify::new());
        table.open.insert(
            id,
            Entry {
                phase: Phase::Idle,
                tick,
                since: Instant::now(),
                evicted: evicted.clone(),
            },
        );
        table.evictable.insert((Phase::Idle, tick, id));
        drop(table);
        let conn = Arc::new(Conn {
            id,
            connections: self.clone(),
            idle: std::sync::atomic::AtomicBool::new(true),
            evicted,
        });
        match victim {
            Some(v) => Admission::Evicted(conn, v),
            None => Admission::Free(conn),
        }
    }

    /// Moves connection `id` to `phase`, from now; nothing if it was evicted meanwhile.
    fn set(&self, id: u64, phase: Phase) {
        let mut table = self.table();
        table.clock += 1;
        let tick = table.clock;
        let Table {
            open, evictable, ..
        } = &mut *table;
        if let Some(entry) = open.get_mut(&id) {
            evictable.remove(&(entry.phase, entry.tick, id));
            entry.phase = phase;
            entry.tick = tick;
            entry.since = Instant::now();
            if phase != Phase::Answering {
                evictable.insert((phase, tick, id));
            }
        }
    }

    fn close(&self, id: u64) {
        let mut table = self.table();
        if let Some(entry) = table.open.remove(&id) {
            table.evictable.remove(&(entry.phase, entry.tick, id));
        }
    }

    pub fn counts(&self) -> ConnectionCounts {
        ConnectionCounts {
            open: self.table().open.len(),
            evicted: self.evicted.load(Ordering::Relaxed),
            refused: self.refused.load(Ordering::Relaxed),
        }
    }
}

/// One admitted connection's handle on its place in [`Connections`]; gives it back on drop.
struct Conn {
    id: u64,
    connections: Arc<Connections>,
    /// Mirrors "phase is idle", so that reads need the table only when a request starts.
    idle: std::sync::atomic::AtomicBool,
    /// Notified when the connection is evicted.
    evicted: Arc<tokio::sync::Notify>,
}

impl Conn {
    fn set(&self, phase: Phase) {
        self.idle.store(phase == Phase::Idle, Ordering::Relaxed);
        self.connections.set(self.id, phase);
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.connections.close(self.id);
    }
}

/// The connection's socket, noting the first bytes of each request (idle → head).
struct Watched {
    io: tokio::net::TcpStream,
    conn: Arc<Conn>,
}

impl tokio::io::AsyncRead for Watched {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = std::pin::Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before && self.conn.idle.load(Ordering::Relaxed) {
            self.conn.set(Phase::Head);
        }
        polled
    }
}

impl tokio::io::AsyncWrite for Watched {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// The hyper service of one connection, noting when a request is being answered (head → answering
/// → idle once the answer is ready).
struct Tracking<S> {
    inner: S,
    conn: Arc<Conn>,
}

impl<S, R> warp::hyper::service::Service<R> for Tracking<S>
where
    S: warp::hyper::service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, req: R) -> Self::Future {
        self.conn.set(Phase::Answering);
        let answer = self.inner.call(req);
        let conn = self.conn.clone();
        Box::pin(async move {
            let answered = answer.await;
            conn.set(Phase::Idle);
            answered
        })
    }
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
    let Some(webhook) = snapshot.webhook(&project, &name) else {
        return reply(
            ctx,
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "no webhook trigger at this path"}),
        );
    };
    let plan = &webhook.plan;
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
        store: plan.store.clone(),
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
    if webhook.spec.suspend {
        return reply(
            ctx,
            StatusCode::ACCEPTED,
            serde_json::json!({"status": "skipped", "reason": "the trigger is suspended"}),
        );
    }
    match fire(
        &project,
        &name,
        &webhook.spec,
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
pub async fn record_verifications(
    store: Arc<dyn VerificationStore>,
    mut rx: mpsc::Receiver<Verification>,
) {
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
        let store = store.clone();
        let written = tokio::task::spawn_blocking(move || {
            let stamps: Vec<Verification> = batch.into_values().collect();
            store.record(&stamps)
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

    /// Opens `cap` connections (0 first), applies `moves` in order, then admits one more:
    /// the index of the connection that made room, or `None` if the new one was refused.
    fn evicted_for(cap: usize, moves: &[(usize, Phase)]) -> Option<usize> {
        let pool = Arc::new(Connections::new(cap));
        let conns: Vec<Arc<Conn>> = (0..cap)
            .map(|_| match pool.admit() {
                Admission::Free(c) => c,
                _ => panic!("a connection below the cap was not admitted freely"),
            })
            .collect();
        for (i, phase) in moves {
            conns[*i].set(*phase);
        }
        let newcomer = match pool.admit() {
            Admission::Refused => {
                assert_eq!(pool.counts().refused, 1);
                return None;
            }
            Admission::Free(_) => panic!("admitted beyond the cap"),
            Admission::Evicted(c, _) => c,
        };
        let open = pool.table().open.keys().copied().collect::<Vec<_>>();
        assert_eq!(open.len(), cap, "one out, one in");
        assert!(open.contains(&newcomer.id));
        let gone: Vec<usize> = (0..cap).filter(|i| !open.contains(&conns[*i].id)).collect();
        assert_eq!(gone.len(), 1, "{gone:?}");
        assert_eq!(pool.counts().evicted, 1);
        // The victim's own close later changes nothing.
        drop(conns);
        assert_eq!(pool.counts().open, 1);
        Some(gone[0])
    }

    #[test]
    fn eviction_order() {
        use Phase::{Answering, Head, Idle};
        let check = |cap, moves: &[(usize, Phase)], want| {
            assert_eq!(evicted_for(cap, moves), want, "cap {cap}, moves {moves:?}");
        };
        // The longest idle goes first.
        check(2, &[], Some(0));
        check(3, &[], Some(0));
        // A connection sending its request head is not preferred over an idle one, though
        // older; among heads the one that began first goes.
        check(2, &[(0, Head)], Some(1));
        check(2, &[(0, Head), (1, Head)], Some(0));
        check(2, &[(1, Head), (0, Head)], Some(1));
        // A request being answered is never evicted; if all are, the newcomer is refused.
        check(2, &[(0, Answering)], Some(1));
        check(3, &[(0, Answering), (1, Head)], Some(2));
        check(2, &[(1, Answering), (0, Head)], Some(0));
        check(2, &[(0, Answering), (1, Answering)], None);
        // A keep-alive connection between requests is idle, since its last answer.
        check(2, &[(0, Head), (0, Answering), (0, Idle)], Some(1));
        check(2, &[(1, Head), (1, Answering), (1, Idle)], Some(0));
    }

    #[test]
    fn a_closed_connection_frees_its_place() {
        let pool = Arc::new(Connections::new(1));
        let Admission::Free(first) = pool.admit() else {
            panic!("the first connection was not admitted");
        };
        drop(first);
        assert_eq!(pool.counts().open, 0);
        assert!(matches!(pool.admit(), Admission::Free(_)));
        assert_eq!(pool.counts().evicted, 0);
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
