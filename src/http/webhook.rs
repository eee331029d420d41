//! The webhook server's routes. `GET /healthz` answers `ok`; every other path answers a JSON 404.
//! Each request reads the snapshot current at its start (`watch::Receiver::borrow`), so a key
//! applied a moment ago is already in force.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::watch;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::domain::snapshot::Snapshot;

/// What every request handler shares: the snapshot feed and the request counters.
#[derive(Clone)]
pub struct WebhookContext {
    snapshots: watch::Receiver<Arc<Snapshot>>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    by_status: [AtomicU64; 6],
}

const STATUSES: [u16; 6] = [200, 202, 400, 401, 404, 413];

impl WebhookContext {
    pub fn new(snapshots: watch::Receiver<Arc<Snapshot>>) -> WebhookContext {
        WebhookContext {
            snapshots,
            counters: Arc::new(Counters::default()),
        }
    }

    /// The snapshot revision requests currently see.
    pub fn revision(&self) -> u64 {
        self.snapshots.borrow().revision
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

/// All webhook routes.
pub fn routes(
    ctx: WebhookContext,
) -> impl Filter<Extract = (impl Reply,), Error = Infallible> + Clone {
    let health = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::with_status("ok\n".to_string(), StatusCode::OK));
    let ctx_404 = ctx.clone();
    health
        .map(move |r| {
            ctx.count(StatusCode::OK);
            r
        })
        .recover(move |_r: Rejection| {
            let ctx = ctx_404.clone();
            async move {
                ctx.count(StatusCode::NOT_FOUND);
                Ok::<_, Infallible>(warp::reply::with_status(
                    warp::reply::json(&serde_json::json!({"error": "not found"})),
                    StatusCode::NOT_FOUND,
                ))
            }
        })
}
