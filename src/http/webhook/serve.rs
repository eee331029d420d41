//! The webhook server's accept loop: [`serve`] runs [`routes`](super::routes) on a TCP listener
//! with a deadline on every request's head and a cap on open connections. At the cap a new
//! connection takes the place of the longest-idle one ([`Connections`]), so idle sockets,
//! however many, cannot keep a delivery out.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{WebhookContext, routes};

/// Serves [`routes`] on `listener` until `shutdown` resolves, then lets open connections finish.
///
/// This is `warp::serve` with hyper's own connection limits switched on: warp builds its hyper
/// connections without a timer, and without one hyper's header read timeout never fires, so a
/// client that connects and sends nothing (or never finishes its headers) would hold its socket
/// forever. Here every connection is HTTP/1.1 with the timer and
/// [`Limits::header_timeout`](super::Limits::header_timeout), and at most
/// [`Limits::max_connections`](super::Limits::max_connections) are open at once. A connection
/// accepted at the cap takes the place of another one, chosen by `Connections::admit`: the
/// longest-idle, so that
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
        let accept = crate::http::accept_next(&listener, "webhook server", &mut last_warning);
        let io = tokio::select! {
            io = accept => io,
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
    /// created). Bounded by `Limits::max_in_flight` and `Limits::body_timeout`.
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
    pub(super) fn new(max: usize) -> Connections {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
