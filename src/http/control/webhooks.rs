//! The delivery log's commands: `webhook deliveries TRIGGER` (the newest requests that reached a
//! webhook trigger, from the store's log) and `webhook redeliver ID` (a new task from a logged
//! delivery's payload, fired as the trigger fires: its concurrency policy applies, its filter and
//! the replay window do not — the operator asked for this task).
//!
//! - `GET  /v1/webhooks/{trigger}/deliveries?project=&limit=` → [`DeliveryList`]
//! - `POST /v1/deliveries/{id}/redeliver` → [`FireResponse`]

use thiserror::Error;
use warp::Filter;

use super::{ControlContext, ControlError, Route, any_of, project_of, reply_result};
use crate::actors::trigger::Fired;
use crate::api::{DeliveryList, DeliveryQuery, DeliveryView, FireResponse};
use crate::store::{DELIVERIES_KEPT, DeliveryRecord, PAYLOADS_KEPT, StoreError};

/// Deliveries listed when no limit is given.
const DEFAULT_LIMIT: usize = 50;

/// Why the delivery log could not answer.
#[derive(Debug, Error)]
pub enum DeliveryError {
    #[error("cannot read the webhook delivery log: {0}")]
    Read(StoreError),
    #[error(
        "delivery {0} is not in the log (it keeps the newest {DELIVERIES_KEPT} per trigger): `orchestrator webhook deliveries TRIGGER` lists them"
    )]
    NotFound(u64),
    #[error(
        "delivery {0} has no stored payload to redeliver: only verified deliveries keep theirs (not dry runs), and only the newest {PAYLOADS_KEPT} of a trigger"
    )]
    NoPayload(u64),
    #[error("trigger/{0} is suspended: `orchestrator trigger resume {0}` first")]
    Suspended(String),
    #[error("trigger/{0} is no longer a webhook trigger")]
    NotAWebhook(String),
}

impl DeliveryError {
    pub(super) fn status(&self) -> u16 {
        match self {
            DeliveryError::Read(_) => 500,
            DeliveryError::NotFound(_) => 404,
            DeliveryError::NoPayload(_) | DeliveryError::Suspended(_) => 409,
            DeliveryError::NotAWebhook(_) => 400,
        }
    }
}

/// The delivery log's routes.
pub(super) fn routes(ctx: ControlContext) -> Route {
    let with_ctx = warp::any().map(move || ctx.clone());
    let list = warp::path!("v1" / "webhooks" / String / "deliveries")
        .and(warp::get())
        .and(warp::query::<DeliveryQuery>())
        .and(with_ctx.clone())
        .map(|trigger: String, q: DeliveryQuery, ctx: ControlContext| {
            reply_result(deliveries(&ctx, &trigger, &q))
        });
    let redeliver = warp::path!("v1" / "deliveries" / u64 / "redeliver")
        .and(warp::post())
        .and(with_ctx)
        .then(
            |id: u64, ctx: ControlContext| async move { reply_result(redeliver(&ctx, id).await) },
        );
    any_of(list.boxed(), vec![redeliver.boxed()])
}

fn view(r: DeliveryRecord) -> DeliveryView {
    let d = r.delivery;
    DeliveryView {
        id: r.id,
        project: d.project,
        trigger: d.trigger,
        received_at: d.received_at,
        status: d.status,
        outcome: d.outcome,
        key: d.key,
        task: d.task,
        delivery_id: d.delivery_id,
        payload_bytes: d.payload_bytes,
        redeliverable: r.has_payload,
    }
}

fn deliveries(
    ctx: &ControlContext,
    trigger: &str,
    q: &DeliveryQuery,
) -> Result<DeliveryList, ControlError> {
    let project = project_of(q.project.as_deref())?;
    let snapshot = ctx.snapshot();
    // A name that is not (or no longer) a trigger: the log may still hold its rows.
    let rows = ctx
        .deliveries
        .list(
            &project,
            trigger,
            q.limit.unwrap_or(DEFAULT_LIMIT).min(DELIVERIES_KEPT),
        )
        .map_err(DeliveryError::Read)?;
    if rows.is_empty() {
        ControlError::trigger_spec(&snapshot, &project, trigger)?;
    }
    Ok(DeliveryList {
        deliveries: rows.into_iter().map(view).collect(),
    })
}

async fn redeliver(ctx: &ControlContext, id: u64) -> Result<FireResponse, ControlError> {
    let record = ctx
        .deliveries
        .get(id)
        .map_err(DeliveryError::Read)?
        .ok_or(DeliveryError::NotFound(id))?;
    let d = record.delivery;
    let payload = d.payload.ok_or(DeliveryError::NoPayload(id))?;
    let snapshot = ctx.snapshot();
    let spec = ControlError::trigger_spec(&snapshot, &d.project, &d.trigger)?;
    if spec.event.is_none() {
        return Err(DeliveryError::NotAWebhook(d.trigger).into());
    }
    if spec.suspend {
        return Err(DeliveryError::Suspended(d.trigger).into());
    }
    let fired = crate::actors::trigger::fire(
        &ctx.actors,
        &d.project,
        &d.trigger,
        &spec,
        format!("redelivery/{id}"),
        None,
        Some(payload),
        None,
        None,
    )
    .await?;
    Ok(match fired {
        Fired::Created(t) => FireResponse {
            task: Some(*t),
            skipped: None,
        },
        Fired::Skipped(why) => FireResponse {
            task: None,
            skipped: Some(why),
        },
    })
}
