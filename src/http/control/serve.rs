//! The control socket's accept loop: [`serve`] runs [`routes`](super::routes) on the Unix
//! listener, one HTTP/1.1 connection per client, and writes the access log: one line per call,
//! at `debug` (`answered status=200 ms=0.4` inside the call's `request{id method path}` span),
//! or at `warn` when the daemon failed the call (5xx). A refused call (400, 404, 409, 422) is
//! the caller's mistake, answered to the caller; it is not something for the operator to fix.
//!
//! This replaces `warp::serve` with `warp::trace`, which logged two `info` lines per call, every
//! 4xx as a `WARN`, and, as an `ERROR`, every connection a client closed before its answer was
//! complete, which is how each `task logs --follow` and `actors trace --follow` ends (Ctrl-C).
//! Here a connection that ends early is a `debug` line.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tracing::Instrument;
use warp::hyper::{Request, Response};

use super::{ControlContext, routes};

/// Serves the control API on `listener` until `shutdown` resolves, then lets the open
/// connections finish their calls.
pub async fn serve(
    listener: tokio::net::UnixListener,
    ctx: ControlContext,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;

    let service = warp::service(routes(ctx));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_warning: Option<Instant> = None;
    loop {
        let accept = crate::http::accept_next(&listener, "the control socket", &mut last_warning);
        let io = tokio::select! {
            io = accept => io,
            () = &mut shutdown => break,
        };
        let service = Access {
            inner: TowerToHyperService::new(service.clone()),
        };
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            // The CLI speaks HTTP/1.1 only.
            let builder = auto::Builder::new(TokioExecutor::new()).http1_only();
            let conn = watcher.watch(builder.serve_connection(TokioIo::new(io), service));
            if let Err(e) = conn.await {
                // A client that hung up before its answer ended: a `--follow` stopped with
                // Ctrl-C, a CLI killed mid-call. Nothing on the daemon's side went wrong.
                tracing::debug!(error = %e, "control connection closed by the client before its answer ended");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// Wraps each call in its own root span, which ractor carries into every actor the call
/// reaches (so one call can be followed across the log), and logs its answer once.
struct Access<S> {
    inner: S,
}

impl<S, B, RB> warp::hyper::service::Service<Request<B>> for Access<S>
where
    S: warp::hyper::service::Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, req: Request<B>) -> Self::Future {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        // The path only: a query string is not logged (it holds nothing secret today, but the
        // path is what tells one call from another).
        let span = tracing::info_span!(
            parent: None,
            "request",
            id,
            method = %req.method(),
            path = %req.uri().path()
        );
        let started = Instant::now();
        let answer = span.in_scope(|| self.inner.call(req));
        Box::pin(
            async move {
                let answered = answer.await;
                if let Ok(resp) = &answered {
                    log_answer(resp.status().as_u16(), started.elapsed());
                }
                answered
            }
            .instrument(span),
        )
    }
}

/// The access line of one call (a streamed answer is logged when its stream begins).
fn log_answer(status: u16, took: Duration) {
    let ms = format!("{:.1}", took.as_secs_f64() * 1000.0);
    if status >= 500 {
        tracing::warn!(status, %ms, "answered: the daemon could not serve this call");
    } else {
        tracing::debug!(status, %ms, "answered");
    }
}
