//! The trigger commands: `trigger fire` (creates a task now, as the trigger would, and records
//! the fire in the trigger's history and its fire counts, as `get trigger` shows them) and `trigger suspend|resume` (a change committed by the
//! `secret-store` actor, like an apply).

use chrono::Utc;

use super::{
    ACTOR_TIMEOUT, ControlContext, ControlError, SecretStoreMsg, check_size, project_of,
    store_actor,
};
use crate::api::{ChangeResponse, FireRequest, FireResponse, ResourceQuery};
use crate::domain::limits;
use crate::domain::manifest::Kind;
use crate::domain::snapshot::ResourceKey;

pub(super) async fn fire(
    ctx: &ControlContext,
    name: &str,
    req: FireRequest,
) -> Result<FireResponse, ControlError> {
    let project = project_of(req.project.as_deref())?;
    if let Some(p) = &req.payload {
        check_size("payload", p.len(), limits::MAX_PAYLOAD_BYTES)?;
    }
    if let Some(p) = &req.payload
        && let Err(e) = serde_json::from_str::<serde_json::Value>(p)
    {
        return Err(ControlError::PayloadNotJson(e));
    }
    let snapshot = ctx.snapshot();
    let spec = ControlError::trigger_spec(&snapshot, &project, name)?;
    let fired = crate::actors::trigger::fire(
        &ctx.actors,
        &project,
        name,
        &spec,
        format!("trigger/{name}"),
        None,
        req.payload,
        None,
        None,
    )
    .await?;
    let (task, skipped) = match fired {
        crate::actors::trigger::Fired::Created(t) => (Some(*t), None),
        crate::actors::trigger::Fired::Skipped(why) => (None, Some(why)),
    };
    let event = crate::domain::trigger_plan::TriggerEvent {
        at: Utc::now(),
        kind: if task.is_some() {
            crate::domain::trigger_plan::EventKind::Fired
        } else {
            crate::domain::trigger_plan::EventKind::Skipped
        },
        scheduled: None,
        task: task.as_ref().map(|t| t.id),
        lateness_ms: None,
        reason: Some(match &skipped {
            Some(why) => format!("fired by request: {why}"),
            None => "fired by request".to_owned(),
        }),
    };
    if let Err(e) = ctx.triggers.manual_fire(&project, name, &event) {
        tracing::warn!(trigger = name, error = %e, "cannot record a manual fire");
    }
    Ok(FireResponse { task, skipped })
}

/// The last path segment of `POST /v1/triggers/{name}/suspend|resume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum SuspendAction {
    Suspend,
    Resume,
}

impl std::str::FromStr for SuspendAction {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "suspend" => Ok(SuspendAction::Suspend),
            "resume" => Ok(SuspendAction::Resume),
            _ => Err(()),
        }
    }
}

pub(super) async fn suspend(
    ctx: &ControlContext,
    name: &str,
    suspend: bool,
    q: &ResourceQuery,
) -> Result<ChangeResponse, ControlError> {
    let key = ResourceKey::new(project_of(q.project.as_deref())?, Kind::Trigger, name);
    let actor = store_actor(ctx).await?;
    Ok(actor
        .call(
            |reply| SecretStoreMsg::SetSuspend {
                key,
                suspend,
                reply,
            },
            ACTOR_TIMEOUT,
        )
        .await
        .map_err(ControlError::ActorCall)??)
}
