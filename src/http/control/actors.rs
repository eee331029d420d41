//! The actor commands: `actors` (the supervision tree from the root), `actors inspect` (one
//! actor's state summary and counters), `actors trace` (its recent messages, or a live stream of
//! them) and `actors kill` (fails an actor on purpose, so its supervisor restarts it). All of them
//! go through the daemon's `actors::runtime::Registry`, which knows every instrumented actor by
//! name.

use std::time::Duration;

use super::{ControlContext, ControlError, reply_error, reply_result};
use crate::api::{ActorInspect, ActorNode, ActorTrace, KillResponse};

pub(super) fn tree(ctx: &ControlContext) -> Result<ActorNode, ControlError> {
    let root = ctx.actors.cell(ctx.root).ok_or(ControlError::RootDown)?;
    Ok(ctx.actors.tree(&root))
}

pub(super) async fn inspect(
    ctx: &ControlContext,
    name: &str,
) -> Result<ActorInspect, ControlError> {
    let name = name.trim_matches('/');
    let cell = ctx
        .actors
        .cell(name)
        .ok_or_else(|| ControlError::NoRunningActor(name.to_owned()))?;
    let state = ctx
        .actors
        .inspect_cell(&cell, Duration::from_secs(5))
        .await
        .map_err(ControlError::Inspect)?;
    Ok(ActorInspect {
        name: name.to_owned(),
        stats: ctx.actors.stats(name).map(|s| s.summary()),
        state,
    })
}

#[derive(Debug, serde::Deserialize)]
pub(super) struct TraceQuery {
    #[serde(default)]
    follow: bool,
    #[serde(default)]
    n: Option<usize>,
}

/// An actor's recent messages as JSON; with `follow`, newline-delimited JSON entries streamed
/// as they are handled (after the recent ones) until the client goes away.
pub(super) fn trace(ctx: &ControlContext, name: &str, q: TraceQuery) -> warp::reply::Response {
    use warp::Reply;
    let name = name.trim_matches('/').to_owned();
    let Some(stats) = ctx.actors.stats(&name) else {
        return reply_error(&ControlError::NeverRan(name));
    };
    let mut recent = stats.trace();
    if let Some(n) = q.n {
        let skip = recent.len().saturating_sub(n);
        recent.drain(..skip);
    }
    if !q.follow {
        return reply_result(Ok::<_, ControlError>(ActorTrace {
            name,
            messages: recent,
        }));
    }
    let mut live = stats.subscribe();
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<Result<warp::hyper::body::Bytes, std::io::Error>>(64);
    tokio::spawn(async move {
        let line = |e: &crate::api::TraceEntry| {
            let mut v = serde_json::to_vec(e).unwrap_or_default();
            v.push(b'\n');
            warp::hyper::body::Bytes::from(v)
        };
        for e in &recent {
            if tx.send(Ok(line(e))).await.is_err() {
                return;
            }
        }
        loop {
            match live.recv().await {
                Ok(e) => {
                    if tx.send(Ok(line(&e))).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    let note = format!("{{\"lagged\":{n}}}\n");
                    if tx
                        .send(Ok(warp::hyper::body::Bytes::from(note)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut resp = warp::reply::stream(stream).into_response();
    resp.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}

pub(super) fn kill(ctx: &ControlContext, name: &str) -> Result<KillResponse, ControlError> {
    let name = name.trim_matches('/');
    if name == ctx.root {
        return Err(ControlError::RootUnkillable);
    }
    ctx.actors
        .fail_by_name(name, "killed by request (orchestrator actors kill)")
        .map_err(|_| ControlError::NoRunningActor(name.to_owned()))?;
    Ok(KillResponse {
        actor: name.to_owned(),
        killed: true,
    })
}
