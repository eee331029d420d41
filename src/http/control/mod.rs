//! The control API on the Unix socket: JSON over HTTP under `/v1`, served by warp. This file holds
//! the route table, the context the handlers share, JSON body decoding and [`ControlError`], the
//! one place where a failure gets its HTTP status. The handlers live one file per command group:
//! `resources.rs` (status, apply, delete, get, describe), `tasks.rs`, `triggers.rs`, `secrets.rs`
//! (keys, rotation, webhook test) and `actors.rs` (tree, inspect, trace, kill). Handlers parse
//! manifests (cheap, outside any actor), then ask the `secret-store` actor to validate and
//! commit, or read the published snapshot for `get`.
//!
//! Routes:
//! - `GET  /v1/status`
//! - `GET  /v1/cluster` → [`ClusterStatus`](crate::api::ClusterStatus)
//! - `POST /v1/apply`   [`ApplyRequest`] → [`ChangeResponse`]
//! - `POST /v1/delete`  [`DeleteRequest`] → [`ChangeResponse`]
//! - `GET  /v1/resources/{kind}?project=&all=` → [`ResourceList`]
//! - `GET  /v1/resources/{kind}/{name}?project=` → [`ResourceView`]
//! - `GET  /v1/resources/{kind}/{name}/describe?project=` → [`Describe`]
//! - `POST /v1/tasks` [`CreateTaskRequest`] → [`TaskInfo`]
//! - `GET  /v1/tasks?project=&state=&workflow=&trigger=&limit=&all=` → [`TaskList`]
//! - `GET  /v1/tasks/{id}` → [`TaskDetail`]
//! - `POST /v1/tasks/{id}/cancel`, `POST /v1/tasks/{id}/start` → [`TaskInfo`]
//! - `DELETE /v1/tasks/{id}` → [`DeleteTaskResponse`]; `POST /v1/tasks/prune`
//!   [`PruneTasksRequest`] → [`PruneTasksResponse`]
//! - `GET  /v1/tasks/{id}/logs?follow=` → the run logs as text, streamed while `follow` and the
//!   task is not finished
//! - `POST /v1/triggers/{name}/fire` [`FireRequest`] → [`FireResponse`]
//! - `POST /v1/triggers/{name}/suspend|resume?project=` → [`ChangeResponse`]
//! - `POST /v1/actors/{name}/kill` → [`KillResponse`] (the name may contain `/`)
//! - `PUT|DELETE /v1/secrets/{store}/keys/{key}` → [`ChangeResponse`] (`secret set|unset`)
//! - `POST /v1/secrets/{store}/rotate?stream=` [`RotateRequest`] → [`RotationRecord`], or with
//!   `stream=true` its progress as JSON lines ([`RotationProgress`]) as it happens
//!
//! [`RotationProgress`]: crate::api::RotationProgress
//! - `POST /v1/webhooks/{trigger}/test` [`WebhookTestRequest`] → [`WebhookTestResponse`]
//! - `POST /v1/tasks/{id}/rerun` → [`TaskInfo`]; the delivery log's routes are in `webhooks.rs`
//!
//! Every failure is an [`ErrorBody`] with the status [`ControlError::status`] gives it.
//! `serve.rs` runs the routes on the socket and logs each call once, at `debug` (a 5xx at
//! `warn`): a caller's mistake is answered to the caller, not logged as a warning.
//!
//! [`ChangeResponse`]: crate::api::ChangeResponse
//! [`ResourceList`]: crate::api::ResourceList
//! [`ResourceView`]: crate::api::ResourceView
//! [`Describe`]: crate::api::Describe
//! [`TaskInfo`]: crate::api::TaskInfo
//! [`TaskList`]: crate::api::TaskList
//! [`TaskDetail`]: crate::api::TaskDetail
//! [`DeleteTaskResponse`]: crate::api::DeleteTaskResponse
//! [`PruneTasksRequest`]: crate::api::PruneTasksRequest
//! [`PruneTasksResponse`]: crate::api::PruneTasksResponse
//! [`FireResponse`]: crate::api::FireResponse
//! [`KillResponse`]: crate::api::KillResponse
//! [`RotationRecord`]: crate::api::RotationRecord
//! [`WebhookTestResponse`]: crate::api::WebhookTestResponse
//! [`ErrorBody`]: crate::api::ErrorBody

mod actors;
mod body;
mod cluster;
mod resources;
mod secrets;
mod serve;
mod tasks;
mod triggers;
mod webhooks;

pub use serve::serve;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use warp::http::StatusCode;
use warp::{Filter, Reply};

use crate::actors::retention::RetentionError;
use crate::actors::runtime::{Addr, CallError, Registry};
use crate::actors::secret_store::{self, SecretStoreError, SecretStoreMsg};
use crate::actors::trigger::FireError;
use crate::actors::workflow::TaskError;
use crate::api::{
    ApiError, ApplyRequest, DeleteRequest, FireRequest, ResourceQuery, RotateQuery, RotateRequest,
    SecretPatchRequest, WebhookTestRequest,
};
use crate::domain::diagnostic::{Diagnostic, refused};
use crate::domain::limits::{SecretValueError, TooLarge};
use crate::domain::manifest::{DEFAULT_PROJECT, Kind};
use crate::domain::snapshot::Snapshot;
use crate::domain::validate::check_name;
use crate::store::{StoreError, TaskStore, TriggerStore};

use actors::TraceQuery;
pub use body::BodyError;
#[cfg(test)]
use body::decode_body;
use body::{json_body, recover};
use triggers::SuspendAction;

/// Largest accepted request body (a big apply).
pub const BODY_LIMIT: u64 = 64 * 1024 * 1024;

/// How long a request waits for an actor (a restart takes milliseconds; a commit fsyncs).
const ACTOR_TIMEOUT: Duration = Duration::from_secs(30);

/// What the handlers share.
#[derive(Clone)]
pub struct ControlContext {
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub started_at: DateTime<Utc>,
    pub data_dir: String,
    pub socket: String,
    pub webhook_addr: Option<String>,
    /// The registry name of the root supervisor: where `actors` draws the tree from, and the
    /// one actor `actors kill` refuses.
    pub root: &'static str,
    pub tasks: Arc<dyn TaskStore>,
    pub triggers: Arc<dyn TriggerStore>,
    /// The daemon's retention of finished tasks (shown by `daemon status`).
    pub retention: crate::actors::retention::Retention,
    pub rotations: crate::rotation::RotationContext,
    /// The daemon's actors, by the names operators see.
    pub actors: Registry,
    /// Marks `webhook test`'s deliveries as the daemon's own (never a proof of a key).
    pub own: crate::http::webhook::OwnToken,
    /// The webhook delivery log (`webhook deliveries`, `webhook redeliver`).
    pub deliveries: Arc<dyn crate::store::DeliveryStore>,
    /// The nodes and the leader lease (`cluster status`).
    pub cluster: Arc<dyn crate::store::ClusterStore>,
    /// This daemon's node id.
    pub node: String,
    /// The store as logs name it (`sqlite`, `postgres host:port/db`).
    pub store: String,
    /// Other nodes share the store: a change returns once every live node serves it.
    pub shared_store: bool,
}

impl ControlContext {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.borrow().clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Routes
// ---------------------------------------------------------------------------------------------

/// One group of routes. Each group is boxed: a long chain of `or` over warp's nested filter
/// types makes the compiler's work grow very fast; boxing keeps every type small.
type Route = warp::filters::BoxedFilter<(warp::reply::Response,)>;

fn any_of(first: Route, rest: Vec<Route>) -> Route {
    rest.into_iter()
        .fold(first, |acc, r| acc.or(r).unify().boxed())
}

/// All control routes, with every rejection turned into an [`ErrorBody`](crate::api::ErrorBody).
pub fn routes(
    ctx: ControlContext,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Infallible> + Clone {
    let with_ctx = {
        let ctx = ctx.clone();
        warp::any().map(move || ctx.clone())
    };

    let status = warp::path!("v1" / "status")
        .and(warp::get())
        .and(with_ctx.clone())
        .then(|ctx: ControlContext| async move {
            reply_result(Ok::<_, ControlError>(resources::status(&ctx).await))
        });
    let cluster = warp::path!("v1" / "cluster")
        .and(warp::get())
        .and(with_ctx.clone())
        .then(|ctx: ControlContext| async move { reply_result(cluster::status(&ctx).await) });
    let apply = warp::path!("v1" / "apply")
        .and(warp::post())
        .and(json_body::<ApplyRequest>())
        .and(with_ctx.clone())
        .then(|req: ApplyRequest, ctx: ControlContext| async move {
            reply_result(cluster::synced(&ctx, resources::apply(&ctx, req).await).await)
        });
    let delete = warp::path!("v1" / "delete")
        .and(warp::post())
        .and(json_body::<DeleteRequest>())
        .and(with_ctx.clone())
        .then(|req: DeleteRequest, ctx: ControlContext| async move {
            reply_result(cluster::synced(&ctx, resources::delete(&ctx, req).await).await)
        });
    let list = warp::path!("v1" / "resources" / String)
        .and(warp::get())
        .and(warp::query::<ResourceQuery>())
        .and(with_ctx.clone())
        .map(|kind: String, q: ResourceQuery, ctx: ControlContext| {
            reply_result(resources::list(&ctx, &kind, &q))
        });
    let get_one = warp::path!("v1" / "resources" / String / String)
        .and(warp::get())
        .and(warp::query::<ResourceQuery>())
        .and(with_ctx.clone())
        .map(
            |kind: String, name: String, q: ResourceQuery, ctx: ControlContext| {
                reply_result(resources::get_one(&ctx, &kind, &name, &q))
            },
        );
    let describe = warp::path!("v1" / "resources" / String / String / "describe")
        .and(warp::get())
        .and(warp::query::<ResourceQuery>())
        .and(with_ctx.clone())
        .then(
            |kind: String, name: String, q: ResourceQuery, ctx: ControlContext| async move {
                reply_result(resources::describe(&ctx, &kind, &name, &q).await)
            },
        );

    let trigger_fire = warp::path!("v1" / "triggers" / String / "fire")
        .and(warp::post())
        .and(json_body::<FireRequest>())
        .and(with_ctx.clone())
        .then(
            |name: String, req: FireRequest, ctx: ControlContext| async move {
                reply_result(triggers::fire(&ctx, &name, req).await)
            },
        );
    // Only `suspend` and `resume` match here (any other segment is not this route), so a
    // refused `fire` body stays the answer to a `fire`.
    let trigger_suspend = warp::path!("v1" / "triggers" / String / SuspendAction)
        .and(warp::post())
        .and(warp::query::<ResourceQuery>())
        .and(with_ctx.clone())
        .then(
            |name: String, action: SuspendAction, q: ResourceQuery, ctx: ControlContext| async move {
                let suspend = action == SuspendAction::Suspend;
                reply_result(cluster::synced(&ctx, triggers::suspend(&ctx, &name, suspend, &q).await).await)
            },
        );
    let actor_kill = warp::path("v1")
        .and(warp::path("actors"))
        .and(warp::path::tail())
        .and(warp::post())
        .and(with_ctx.clone())
        .map(|tail: warp::path::Tail, ctx: ControlContext| {
            match tail.as_str().strip_suffix("/kill") {
                Some(name) => reply_result(actors::kill(&ctx, name)),
                None => reply_error(&ControlError::UnknownActorPost),
            }
        });
    let actor_tree = warp::path!("v1" / "actors")
        .and(warp::get())
        .and(with_ctx.clone())
        .map(|ctx: ControlContext| reply_result(actors::tree(&ctx)));
    let actor_get = warp::path("v1")
        .and(warp::path("actors"))
        .and(warp::path::tail())
        .and(warp::get())
        .and(warp::query::<TraceQuery>())
        .and(with_ctx.clone())
        .then(
            |tail: warp::path::Tail, q: TraceQuery, ctx: ControlContext| async move {
                let path = tail.as_str();
                if let Some(name) = path.strip_suffix("/inspect") {
                    reply_result(actors::inspect(&ctx, name).await)
                } else if let Some(name) = path.strip_suffix("/trace") {
                    actors::trace(&ctx, name, q)
                } else {
                    reply_error(&ControlError::UnknownActorGet)
                }
            },
        );

    let secret_set = warp::path!("v1" / "secrets" / String / "keys" / String)
        .and(warp::put())
        .and(json_body::<SecretPatchRequest>())
        .and(with_ctx.clone())
        .then(
            |store: String, key: String, req: SecretPatchRequest, ctx: ControlContext| async move {
                let project = req.project.as_deref();
                reply_result(
                    cluster::synced(
                        &ctx,
                        secrets::patch(&ctx, &store, &key, project, Some(req.value)).await,
                    )
                    .await,
                )
            },
        );
    let secret_unset = warp::path!("v1" / "secrets" / String / "keys" / String)
        .and(warp::delete())
        .and(warp::query::<ResourceQuery>())
        .and(with_ctx.clone())
        .then(
            |store: String, key: String, q: ResourceQuery, ctx: ControlContext| async move {
                reply_result(
                    cluster::synced(
                        &ctx,
                        secrets::patch(&ctx, &store, &key, q.project.as_deref(), None).await,
                    )
                    .await,
                )
            },
        );
    let secret_rotate = warp::path!("v1" / "secrets" / String / "rotate")
        .and(warp::post())
        .and(warp::query::<RotateQuery>())
        .and(json_body::<RotateRequest>())
        .and(with_ctx.clone())
        .then(
            |store: String, q: RotateQuery, req: RotateRequest, ctx: ControlContext| async move {
                secrets::rotate(&ctx, &store, req, q.stream).await
            },
        );
    let webhook_test = warp::path!("v1" / "webhooks" / String / "test")
        .and(warp::post())
        .and(json_body::<WebhookTestRequest>())
        .and(with_ctx.clone())
        .then(
            |trigger: String, req: WebhookTestRequest, ctx: ControlContext| async move {
                reply_result(secrets::test_webhook(&ctx, &trigger, req).await)
            },
        );
    let secrets = any_of(
        secret_set.boxed(),
        vec![
            secret_unset.boxed(),
            secret_rotate.boxed(),
            webhook_test.boxed(),
        ],
    );

    let tasks = any_of(
        tasks::routes(ctx.clone()),
        vec![webhooks::routes(ctx.clone())],
    );
    let triggers_and_actors = any_of(
        trigger_fire.boxed(),
        vec![
            trigger_suspend.boxed(),
            actor_kill.boxed(),
            actor_tree.boxed(),
            actor_get.boxed(),
        ],
    );
    let resources = any_of(
        apply.boxed(),
        vec![
            delete.boxed(),
            list.boxed(),
            get_one.boxed(),
            describe.boxed(),
        ],
    );
    // Each request's span and its access line come from `serve.rs`, around these routes.
    any_of(
        status.boxed(),
        vec![
            cluster.boxed(),
            tasks,
            triggers_and_actors,
            resources,
            secrets,
        ],
    )
    .recover(recover)
    .unify()
    .map(Reply::into_response)
}

// ---------------------------------------------------------------------------------------------
// Errors and their statuses
// ---------------------------------------------------------------------------------------------

/// Every way a control request fails. [`ControlError::status`] gives each its HTTP status, the
/// typed errors that lower layers (actors, rotation) answer with included: this is the one
/// place where a failure gets a status.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    // 400: the request itself is wrong.
    #[error(transparent)]
    Body(#[from] BodyError),
    /// warp's JSON body filter refused the body.
    #[error("request body is not valid JSON for this call: {0}")]
    BodyNotJson(String),
    #[error("invalid query string: {0}")]
    InvalidQuery(String),
    /// A request field over its size limit (`domain::limits` words the reason).
    #[error("{0}")]
    Limit(TooLarge),
    /// A project, workflow or workspace name that is not a valid name.
    #[error("{field}: {reason}")]
    Name { field: &'static str, reason: String },
    #[error("unknown kind {0:?}: use one of {kinds}", kinds = Kind::ALL.map(Kind::lower).join(", "))]
    UnknownKind(String),
    #[error("nothing to apply: give at least one manifest")]
    NothingToApply,
    #[error("no documents found in the given manifests (they are empty or only comments)")]
    NoDocuments,
    #[error("nothing to delete: name KIND NAME or give -f with manifests")]
    NothingToDelete,
    #[error("unknown state {0:?}: use pending, running, succeeded, failed or cancelled")]
    UnknownState(String),
    #[error("payload is not valid JSON: {0}")]
    PayloadNotJson(serde_json::Error),
    #[error("invalid key {0:?}: use letters, digits, '-', '_' and '.'")]
    InvalidKey(String),
    #[error("secretstore/{store} key {key:?}: {reason}")]
    SecretValue {
        store: String,
        key: String,
        reason: SecretValueError,
    },
    #[error(transparent)]
    Delivery(#[from] webhooks::DeliveryError),
    #[error("trigger/{0} is a cron trigger; only webhook triggers can be tested")]
    NotAWebhook(String),
    #[error("secretstore/{store} has no key {key:?}")]
    NoSuchKey { store: String, key: String },
    #[error("the webhook server is disabled (--webhook-bind none)")]
    WebhookDisabled,
    /// A webhook trigger that is stored but does not lower (so it cannot be signed for).
    #[error("trigger/{trigger}: {why}")]
    Unlowered { trigger: String, why: String },
    #[error("the root supervisor cannot be killed: stop the daemon instead (SIGTERM)")]
    RootUnkillable,
    #[error(
        "olderThanSeconds {0} is out of range: use 1 to {max} seconds (1s to 36500d)",
        max = crate::domain::retention::MAX_AGE_SECS
    )]
    PruneAge(u64),

    // 404: nothing at that name or path.
    #[error("unknown control API path: the CLI and the daemon may be different versions")]
    UnknownPath,
    #[error("{}/{name} not found in project {project:?}{}", .kind.lower(), did_you_mean(.suggestion.as_deref()))]
    NotFound {
        kind: Kind,
        name: String,
        project: String,
        suggestion: Option<String>,
    },
    #[error("task {0} not found (orchestrator task list shows the tasks)")]
    NoTask(u64),
    /// The same, from `task logs` (worded without the hint).
    #[error("task {0} not found")]
    NoTaskToLog(u64),
    #[error("no running actor is named {0:?} (orchestrator actors lists them){hint}", hint = passivated(.0))]
    NoRunningActor(String),
    #[error("no actor named {0:?} has run (orchestrator actors lists them)")]
    NeverRan(String),
    #[error("unknown actor request: use POST /v1/actors/{{name}}/kill")]
    UnknownActorPost,
    #[error(
        "unknown actor request: use GET /v1/actors, /v1/actors/{{name}}/inspect or /v1/actors/{{name}}/trace"
    )]
    UnknownActorGet,

    // 405, 411, 413, 415: the request's form.
    #[error("method not allowed on this path")]
    MethodNotAllowed,
    #[error("a Content-Length header is required")]
    LengthRequired,
    #[error("request body is larger than {} MiB", BODY_LIMIT >> 20)]
    BodyTooLarge,
    #[error("send the request body as application/json")]
    UnsupportedMediaType,

    // 422: understood, but the manifests are invalid.
    #[error("{}", refused(.what, .problems.len()))]
    Invalid {
        what: &'static str,
        problems: Vec<Diagnostic>,
    },

    // 500: the daemon failed.
    #[error("reading tasks failed: {0}")]
    ReadTasks(StoreError),
    #[error("reading trigger history failed: {0}")]
    ReadTriggerHistory(StoreError),
    #[error("reading the cluster's nodes failed: {0}")]
    ReadCluster(StoreError),
    /// The HTTP client of `webhook test` could not be built.
    #[error("{0}")]
    Client(reqwest::Error),
    #[error("unhandled request: {0}")]
    Unhandled(String),

    // 503: an actor or a server is not there right now.
    #[error("{0}; retry in a moment")]
    ActorDown(CallError),
    #[error("{0}; the change may not have been applied, check with `get`")]
    ActorCall(CallError),
    #[error("{0}")]
    Inspect(CallError),
    #[error("the root supervisor is not running")]
    RootDown,
    #[error("the webhook server did not answer: {0}")]
    WebhookSilent(reqwest::Error),

    /// A rotation that did not run or did not finish: the caller's mistakes are 400 (404 for a
    /// store that does not exist, 409 for one already being rotated), the daemon's own failures
    /// 500.
    #[error(transparent)]
    Rotation(#[from] crate::rotation::RotationError),

    /// A change or look-up the `secret-store` actor refused: 400 for a resource of the wrong
    /// kind, 404 for one that is not there, 409 for a delete of something still referenced,
    /// 422 (with one detail per problem) for invalid manifests, 500 for a failed commit.
    #[error(transparent)]
    SecretStore(#[from] SecretStoreError),

    /// A task request the `tasks` supervisor or a task's actor refused: 400 for a request
    /// that cannot work as given, 404 for what is not there, 409 for a task in the wrong
    /// state, 422 for a workspace whose root is missing, 500 for the store, 503 while the
    /// daemon stops or a task's actor does not answer.
    #[error(transparent)]
    Task(#[from] TaskError),

    /// A `task delete` or `task prune` the `retention` actor refused: 404 for a task that is
    /// not there, 409 for one that has not finished (or is the newest), 500 for the store.
    #[error(transparent)]
    Retention(#[from] RetentionError),

    /// A fire that created no task: the task supervisor's answer, or 503 when it is not there.
    #[error(transparent)]
    Fire(#[from] FireError),

    /// An error already in its wire form (a status and a body), passed through unchanged. The
    /// lower layers do not produce these: they answer with their own error types (above).
    #[error("{0}")]
    Answered(ApiError),
}

impl ControlError {
    /// The HTTP status of this failure.
    pub fn status(&self) -> u16 {
        use ControlError::*;
        match self {
            Body(_)
            | BodyNotJson(_)
            | InvalidQuery(_)
            | Limit(_)
            | Name { .. }
            | UnknownKind(_)
            | NothingToApply
            | NoDocuments
            | NothingToDelete
            | UnknownState(_)
            | PayloadNotJson(_)
            | InvalidKey(_)
            | SecretValue { .. }
            | NotAWebhook(_)
            | NoSuchKey { .. }
            | WebhookDisabled
            | Unlowered { .. }
            | RootUnkillable
            | PruneAge(_) => 400,
            UnknownPath
            | NotFound { .. }
            | NoTask(_)
            | NoTaskToLog(_)
            | NoRunningActor(_)
            | NeverRan(_)
            | UnknownActorPost
            | UnknownActorGet => 404,
            MethodNotAllowed => 405,
            Delivery(e) => e.status(),
            LengthRequired => 411,
            BodyTooLarge => 413,
            UnsupportedMediaType => 415,
            Invalid { .. } => 422,
            ReadTasks(_) | ReadTriggerHistory(_) | ReadCluster(_) | Client(_) | Unhandled(_) => 500,
            ActorDown(_) | ActorCall(_) | Inspect(_) | RootDown | WebhookSilent(_) => 503,
            Rotation(e) => {
                use crate::rotation::RotationError as R;
                match e {
                    R::StoreNotFound { .. } => 404,
                    R::NoRotationBlock { .. }
                    | R::StagingKey { .. }
                    | R::NoKey { .. }
                    | R::Provider { .. }
                    | R::NotTheToken { .. }
                    | R::NeedsValue { .. }
                    | R::ValueNotWanted { .. }
                    | R::BadValue { .. }
                    | R::SameValue { .. } => 400,
                    R::AlreadyRunning { .. } | R::StagingTaken { .. } | R::TakenOver { .. } => 409,
                    R::Record(_) | R::Random | R::NoOutcome => 500,
                }
            }
            SecretStore(e) => {
                use SecretStoreError as S;
                match e {
                    S::NotATrigger(_) | S::NotASecretStore(_) => 400,
                    S::DeleteMissing(_) | S::NotFound { .. } | S::NoKey { .. } => 404,
                    S::StillReferenced(_) => 409,
                    S::Invalid { .. } => 422,
                    S::Store(_) => 500,
                }
            }
            Task(e) => task_status(e),
            Retention(e) => match e {
                RetentionError::NotFound(_) => 404,
                RetentionError::NotFinished { .. } | RetentionError::Newest(_) => 409,
                RetentionError::Store(_) => 500,
            },
            Fire(FireError::Task(e)) => task_status(e),
            Fire(FireError::Tasks(_)) => 503,
            Answered(e) => e.status,
        }
    }

    /// The problems listed one by one in the answer's `details`.
    fn details(&self) -> &[Diagnostic] {
        match self {
            ControlError::Invalid { problems, .. } => problems,
            ControlError::SecretStore(e) => e.problems(),
            _ => &[],
        }
    }

    /// The error as the wire carries it: the status and an [`ErrorBody`](crate::api::ErrorBody)
    /// (with one detail per problem for invalid manifests and for a delete of something still
    /// referenced).
    pub fn to_api(&self) -> ApiError {
        match self {
            ControlError::Answered(e) => e.clone(),
            other => ApiError::new(other.status(), other.to_string())
                .with_details(other.details().to_vec()),
        }
    }

    /// The Trigger `name` of `project`, or [`ControlError::NotFound`].
    fn trigger_spec(
        snapshot: &Snapshot,
        project: &str,
        name: &str,
    ) -> Result<crate::domain::manifest::TriggerSpec, ControlError> {
        snapshot
            .trigger(project, name)
            .cloned()
            .ok_or_else(|| ControlError::not_found(snapshot, project, Kind::Trigger, name))
    }

    /// `{kind}/{name} not found in project …`, suggesting a close name of the same kind.
    fn not_found(snapshot: &Snapshot, project: &str, kind: Kind, name: &str) -> ControlError {
        let names: Vec<&str> = snapshot
            .list(kind, Some(project))
            .map(|r| r.key.name.as_str())
            .collect();
        ControlError::NotFound {
            kind,
            name: name.to_owned(),
            project: project.to_owned(),
            suggestion: crate::domain::diagnostic::did_you_mean(name, names.iter().copied())
                .map(str::to_owned),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> ApiError {
        e.to_api()
    }
}

/// The status of a refused task request (see [`ControlError::Task`]).
fn task_status(e: &TaskError) -> u16 {
    use TaskError as T;
    match e {
        T::NoWorkspaces(_) | T::AmbiguousWorkspace(_) | T::PayloadNotJson(_) => 400,
        T::NoWorkflow { .. } | T::NoWorkspace { .. } | T::NotFound(_) => 404,
        T::NothingToCancel { .. }
        | T::AlreadyFinished(_)
        | T::AlreadyQueued(_)
        | T::NotStartable { .. } => 409,
        T::NoWorkspaceRoot { .. } => 422,
        T::Store(_) | T::Vanished(_) => 500,
        T::ShuttingDown | T::NotAnswering { .. } => 503,
    }
}

fn did_you_mean(suggestion: Option<&str>) -> String {
    suggestion.map_or_else(String::new, |s| format!(" (did you mean {s:?}?)"))
}

/// Why a trigger may have no actor: cron triggers far from their next fire are passivated.
fn passivated(name: &str) -> &'static str {
    if name.starts_with("trigger/") {
        "; a cron trigger whose next fire is beyond the resident window has no actor until \
         shortly before that fire (orchestrator actors inspect triggers shows the next wakes)"
    } else {
        ""
    }
}

fn reply_error(e: &ControlError) -> warp::reply::Response {
    let e = e.to_api();
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    warp::reply::with_status(warp::reply::json(&e.body), status).into_response()
}

fn reply_result<T: serde::Serialize>(r: Result<T, ControlError>) -> warp::reply::Response {
    match r {
        Ok(v) => warp::reply::json(&v).into_response(),
        Err(e) => reply_error(&e),
    }
}

// ---------------------------------------------------------------------------------------------
// Shared by the command groups
// ---------------------------------------------------------------------------------------------

/// 400 when `len` bytes of `what` exceed `limit` (see `domain::limits`).
fn check_size(what: &str, len: usize, limit: usize) -> Result<(), ControlError> {
    crate::domain::limits::check_size(what, len, limit).map_err(ControlError::Limit)
}

/// The project a request names (`default` when it names none), checked.
fn project_of(q: Option<&str>) -> Result<String, ControlError> {
    let p = q.unwrap_or(DEFAULT_PROJECT);
    check_name(p).map_err(|e| ControlError::Name {
        field: "project",
        reason: e.to_string(),
    })?;
    Ok(p.to_owned())
}

async fn store_actor(ctx: &ControlContext) -> Result<Addr<SecretStoreMsg>, ControlError> {
    ctx.actors
        .resolve(secret_store::NAME, Duration::from_secs(5))
        .await
        .map_err(ControlError::ActorDown)
}

#[cfg(test)]
mod tests;
