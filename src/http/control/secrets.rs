//! The secret commands: `secret set|unset` (one key of a SecretStore, committed by the
//! `secret-store` actor), `secret rotate` (handed to `rotation`, its stages streamed as JSON
//! lines) and `webhook test`, which signs a delivery with one of the trigger's keys and sends it,
//! marked as a dry run and as the daemon's own request (`http::webhook::OwnToken`), through the
//! daemon's own webhook server: it is recorded as "last tested at", never as a verification.

use std::time::Duration;

use chrono::Utc;

use warp::hyper::body::Bytes;

use super::{
    ACTOR_TIMEOUT, ControlContext, ControlError, SecretStoreMsg, check_size, project_of,
    reply_error, reply_result, store_actor,
};
use crate::api::{
    ChangeResponse, ProgressEvent, RotateRequest, WebhookTestRequest, WebhookTestResponse,
};
use crate::domain::manifest::Kind;
use crate::domain::snapshot::ResourceKey;

/// `secret set` (a value) or `secret unset` (`None`).
pub(super) async fn patch(
    ctx: &ControlContext,
    store: &str,
    key: &str,
    project: Option<&str>,
    value: Option<String>,
) -> Result<ChangeResponse, ControlError> {
    let project = project_of(project)?;
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ControlError::InvalidKey(key.to_owned()));
    }
    if let Some(v) = &value {
        crate::domain::limits::check_secret_value(v).map_err(|reason| {
            ControlError::SecretValue {
                store: store.to_owned(),
                key: key.to_owned(),
                reason,
            }
        })?;
    }
    let value = value.map(crate::domain::manifest::SecretValue::new);
    let rk = ResourceKey::new(project, Kind::SecretStore, store);
    let actor = store_actor(ctx).await?;
    Ok(actor
        .call(
            |reply| SecretStoreMsg::PatchSecret {
                key: rk,
                changes: vec![(key.to_owned(), value)],
                by: crate::domain::secret_merge::SetBy::SecretSet,
                reply,
            },
            ACTOR_TIMEOUT,
        )
        .await
        .map_err(ControlError::ActorCall)??)
}

/// `secret rotate`: starts the rotation; with `stream`, answers its progress as JSON lines as
/// it happens (the last line with the record), otherwise its record once it has ended.
pub(super) async fn rotate(
    ctx: &ControlContext,
    store: &str,
    req: RotateRequest,
    stream: bool,
) -> warp::reply::Response {
    use warp::Reply;
    let started = project_of(req.project.as_deref()).and_then(|project| {
        let value = req.value.map(crate::domain::manifest::SecretValue::new);
        Ok(crate::rotation::start(
            &ctx.rotations,
            &project,
            store,
            req.key,
            value,
        )?)
    });
    let mut started = match started {
        Ok(s) => s,
        Err(e) => return reply_error(&e),
    };
    if !stream {
        let record = started
            .done
            .await
            .map_err(|_| ControlError::from(crate::rotation::RotationError::NoOutcome));
        return reply_result(record);
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            let line = match started.progress.recv().await {
                Ok(line) => line,
                // A line or more was missed; the rest (and the end) still come.
                Err(RecvError::Lagged(_)) => continue,
                Err(RecvError::Closed) => return,
            };
            let end = line.event == ProgressEvent::End;
            let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
            bytes.push(b'\n');
            // The CLI went away: the rotation goes on without it.
            if tx.send(Ok(Bytes::from(bytes))).await.is_err() || end {
                return;
            }
        }
    });
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut resp = warp::reply::stream(body).into_response();
    resp.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("application/x-ndjson"),
    );
    resp
}

/// Signs a test delivery with one key of the trigger's store and sends it, marked as a dry run,
/// through the daemon's own webhook server.
pub(super) async fn test_webhook(
    ctx: &ControlContext,
    trigger: &str,
    req: WebhookTestRequest,
) -> Result<WebhookTestResponse, ControlError> {
    let project = project_of(req.project.as_deref())?;
    let snapshot = ctx.snapshot();
    let spec = ControlError::trigger_spec(&snapshot, &project, trigger)?;
    let Some(ev) = spec.event.as_ref() else {
        return Err(ControlError::NotAWebhook(trigger.to_owned()));
    };
    let store = &ev.webhook.secret.from_ref;
    let value = snapshot
        .secret_store(&project, store)
        .and_then(|s| s.data.get(&req.key))
        .cloned()
        .ok_or_else(|| ControlError::NoSuchKey {
            store: store.clone(),
            key: req.key.clone(),
        })?;
    let addr: std::net::SocketAddr = ctx
        .webhook_addr
        .as_deref()
        .and_then(|a| a.parse().ok())
        .ok_or(ControlError::WebhookDisabled)?;
    let target = match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            std::net::SocketAddr::from(([127, 0, 0, 1], addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    };
    if let Some(p) = &req.payload {
        check_size("payload", p.len(), crate::http::webhook::BODY_LIMIT)?;
    }
    let body = match req.payload {
        Some(p) => {
            serde_json::from_str::<serde_json::Value>(&p).map_err(ControlError::PayloadNotJson)?;
            p
        }
        None => {
            serde_json::json!({"test": true, "trigger": trigger, "sentAt": Utc::now().to_rfc3339()})
                .to_string()
        }
    };
    let scheme = match snapshot.webhook(&project, trigger) {
        Some(w) => w.plan.scheme,
        None => {
            let why = snapshot
                .problems()
                .find(|(k, _)| k.kind == Kind::Trigger && k.project == project && k.name == trigger)
                .map_or_else(|| "it does not lower".to_owned(), |(_, e)| e.to_string());
            return Err(ControlError::Unlowered {
                trigger: trigger.to_owned(),
                why,
            });
        }
    };
    let id = format!(
        "orchestrator-test-{}",
        Utc::now().timestamp_nanos_opt().unwrap_or(0)
    );
    let headers = crate::domain::signature::sign(
        scheme,
        ev.webhook.signature_header.as_deref(),
        value.expose().as_bytes(),
        body.as_bytes(),
        Utc::now().timestamp(),
        &id,
    );
    let client = crate::rotation::http_client()
        .no_proxy()
        .tls_certs_only(std::iter::empty())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(ControlError::Client)?;
    let mut request = client
        .post(format!("http://{target}/webhook/{project}/{trigger}"))
        .header("Content-Type", "application/json")
        .header("X-Orchestrator-Dry-Run", "1")
        .header(crate::http::webhook::OWN_HEADER, ctx.own.value())
        .body(body);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let resp = request.send().await.map_err(ControlError::WebhookSilent)?;
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    Ok(WebhookTestResponse {
        status,
        matched_key: body.get("key").and_then(|k| k.as_str()).map(str::to_owned),
        body,
    })
}
