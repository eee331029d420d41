//! The admin listener (`--admin-bind`, 127.0.0.1:19091 by default): `GET /metrics` in the
//! Prometheus text format, on a TCP listener of its own, never on the public webhook port. A
//! scrape first sets the mailbox-depth gauges from the actor registry (the only figures read at
//! the scrape rather than counted as they happen), then encodes the daemon's [`Metrics`].
//! Anything else is 404, any other method on `/metrics` 405.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use warp::http::StatusCode;
use warp::{Filter, Reply};

use crate::actors::runtime::Registry;
use crate::metrics::{CONTENT_TYPE, Metrics};

/// How long a connection may take to send a request's headers (also: how long an idle
/// keep-alive connection is kept).
const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// The text of a scrape: the mailbox depths of now, then every family.
pub fn scrape(actors: &Registry) -> String {
    let metrics: &Metrics = actors.metrics();
    metrics.set_mailbox_depths(actors.queue_depths());
    metrics.encode()
}

/// The admin routes.
pub fn routes(
    actors: Registry,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    let metrics = warp::path!("metrics").and(warp::get()).map(move || {
        let body = scrape(&actors);
        warp::reply::with_header(body, "content-type", CONTENT_TYPE).into_response()
    });
    metrics
        .recover(|r: warp::Rejection| async move {
            let (status, text) = if r.find::<warp::reject::MethodNotAllowed>().is_some() {
                (StatusCode::METHOD_NOT_ALLOWED, "use GET /metrics\n")
            } else {
                (
                    StatusCode::NOT_FOUND,
                    "not found: the admin listener serves GET /metrics\n",
                )
            };
            Ok::<_, Infallible>(warp::reply::with_status(text, status).into_response())
        })
        .unify()
}

/// Serves the admin routes on `listener` until `shutdown` resolves, then lets open connections
/// finish their requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    actors: Registry,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;

    let service = warp::service(routes(actors));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut last_warning: Option<Instant> = None;
    loop {
        let accept = crate::http::accept_next(&listener, "the admin listener", &mut last_warning);
        let io = tokio::select! {
            io = accept => io,
            () = &mut shutdown => break,
        };
        let service = TowerToHyperService::new(service.clone());
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let mut builder = auto::Builder::new(TokioExecutor::new()).http1_only();
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let conn = watcher.watch(builder.serve_connection(TokioIo::new(io), service));
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "admin connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
