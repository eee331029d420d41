//! The control API on the Unix socket: JSON over HTTP under `/v1`, served by warp. Filters here
//! only route and limit; handlers parse manifests (cheap, outside any actor), then ask the
//! `secret-store` actor to validate and commit, or read the published snapshot for `get`.
//!
//! Routes:
//! - `GET  /v1/status`
//! - `POST /v1/apply`   [`ApplyRequest`] → [`ChangeResponse`]
//! - `POST /v1/delete`  [`DeleteRequest`] → [`ChangeResponse`]
//! - `GET  /v1/resources/{kind}?project=&all=` → [`ResourceList`]
//! - `GET  /v1/resources/{kind}/{name}?project=` → [`ResourceView`]
//! - `GET  /v1/resources/{kind}/{name}/describe?project=` → [`Describe`]
//! - `POST /v1/tasks` [`CreateTaskRequest`] → [`TaskInfo`]
//! - `GET  /v1/tasks?project=&state=&workflow=&trigger=&limit=&all=` → [`TaskList`]
//! - `GET  /v1/tasks/{id}` → [`TaskDetail`]
//! - `POST /v1/tasks/{id}/cancel`, `POST /v1/tasks/{id}/start` → [`TaskInfo`]
//! - `GET  /v1/tasks/{id}/logs?follow=` → the run logs as text, streamed while `follow` and the
//!   task is not finished
//! - `POST /v1/triggers/{name}/fire` [`FireRequest`] → [`FireResponse`]
//! - `POST /v1/triggers/{name}/suspend|resume?project=` → [`ChangeResponse`]
//! - `POST /v1/actors/{name}/kill` → [`KillResponse`] (the name may contain `/`)
//! - `PUT|DELETE /v1/secrets/{store}/keys/{key}` → [`ChangeResponse`] (`secret set|unset`)
//! - `POST /v1/secrets/{store}/rotate` [`RotateRequest`] → [`RotationRecord`]
//! - `POST /v1/webhooks/{trigger}/test` [`WebhookTestRequest`] → [`WebhookTestResponse`]
//!
//! Every failure is an [`ErrorBody`] with a fitting status.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use crate::actors::introspect::Addr;
use crate::actors::secret_store::{self, SecretStoreMsg};
use crate::actors::workflow::{CancelReason, TASKS, TaskRequest, TaskSupMsg};
use crate::api::{
    ActorInspect, ActorTrace, ApiError, ApplyRequest, ChangeResponse, CreateTaskRequest,
    DaemonStatus, DeleteRequest, Describe, FireRequest, FireResponse, FireTime, KillResponse,
    ResourceList, ResourceQuery, ResourceView, RotateRequest, RotationRecord, SecretPatchRequest,
    Source, TaskDetail, TaskInfo, TaskList, TaskQuery, TriggerStatus, WebhookTestRequest,
    WebhookTestResponse,
};
use crate::domain::diagnostic::{Diagnostic, sort_in_source_order};
use crate::domain::limits;
use crate::domain::manifest::{
    DEFAULT_PROJECT, Document, Kind, Spec, declared_identity, parse_documents, split_documents,
};
use crate::domain::snapshot::{ResourceKey, Snapshot};
use crate::domain::validate::{Unparsed, check_name, resolve_root_path, validate_documents};
use crate::store::{StoreError, TaskStore, TriggerStore};

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
    pub tasks: Arc<dyn TaskStore>,
    pub triggers: Arc<dyn TriggerStore>,
    pub rotations: crate::rotation::RotationContext,
}

impl ControlContext {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshots.borrow().clone()
    }
}

/// A rejection that carries an API error.
#[derive(Debug)]
struct Failed(ApiError);
impl warp::reject::Reject for Failed {}

fn reply_error(e: &ApiError) -> warp::reply::Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    warp::reply::with_status(warp::reply::json(&e.body), status).into_response()
}

fn reply_result<T: serde::Serialize>(r: Result<T, ApiError>) -> warp::reply::Response {
    match r {
        Ok(v) => warp::reply::json(&v).into_response(),
        Err(e) => reply_error(&e),
    }
}

/// All control routes, with every rejection turned into an [`ErrorBody`].
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
        .map(|ctx: ControlContext| reply_result(Ok::<_, ApiError>(status(&ctx))));
    let apply = warp::path!("v1" / "apply")
        .and(warp::post())
        .and(json_body::<ApplyRequest>())
        .and(with_ctx.clone())
        .then(|req: ApplyRequest, ctx: ControlContext| async move {
            reply_result(apply(&ctx, req).await)
        });
    let delete = warp::path!("v1" / "delete")
        .and(warp::post())
        .and(json_body::<DeleteRequest>())
        .then(|req: DeleteRequest| async move { reply_result(delete(req).await) });
    let list = warp::path!("v1" / "resources" / String)
        .and(warp::get())
        .and(warp::query::<ResourceQuery>())
        .and(with_ctx.clone())
        .map(|kind: String, q: ResourceQuery, ctx: ControlContext| {
            reply_result(list(&ctx, &kind, &q))
        });
    let get_one = warp::path!("v1" / "resources" / String / String)
        .and(warp::get())
        .and(warp::query::<ResourceQuery>())
        .and(with_ctx.clone())
        .map(
            |kind: String, name: String, q: ResourceQuery, ctx: ControlContext| {
                reply_result(get_one(&ctx, &kind, &name, &q))
            },
        );
    let describe = warp::path!("v1" / "resources" / String / String / "describe")
        .and(warp::get())
        .and(warp::query::<ResourceQuery>())
        .and(with_ctx.clone())
        .then(
            |kind: String, name: String, q: ResourceQuery, ctx: ControlContext| async move {
                reply_result(describe(&ctx, &kind, &name, &q).await)
            },
        );

    let task_create = warp::path!("v1" / "tasks")
        .and(warp::post())
        .and(json_body::<CreateTaskRequest>())
        .then(|req: CreateTaskRequest| async move { reply_result(create_task(req).await) });
    let task_list = warp::path!("v1" / "tasks")
        .and(warp::get())
        .and(warp::query::<TaskQuery>())
        .and(with_ctx.clone())
        .map(|q: TaskQuery, ctx: ControlContext| reply_result(list_tasks(&ctx, &q)));
    let task_show = warp::path!("v1" / "tasks" / u64)
        .and(warp::get())
        .and(with_ctx.clone())
        .map(|id: u64, ctx: ControlContext| reply_result(show_task(&ctx, id)));
    let task_cancel = warp::path!("v1" / "tasks" / u64 / "cancel")
        .and(warp::post())
        .then(|id: u64| async move {
            reply_result(task_call(|r| TaskSupMsg::Cancel(id, CancelReason::User, r)).await)
        });
    let task_start = warp::path!("v1" / "tasks" / u64 / "start")
        .and(warp::post())
        .then(|id: u64| async move { reply_result(task_call(|r| TaskSupMsg::Start(id, r)).await) });
    let task_logs = warp::path!("v1" / "tasks" / u64 / "logs")
        .and(warp::get())
        .and(warp::query::<LogQuery>())
        .and(with_ctx.clone())
        .map(|id: u64, q: LogQuery, ctx: ControlContext| task_logs(ctx, id, q.follow));

    let trigger_fire = warp::path!("v1" / "triggers" / String / "fire")
        .and(warp::post())
        .and(json_body::<FireRequest>())
        .and(with_ctx.clone())
        .then(
            |name: String, req: FireRequest, ctx: ControlContext| async move {
                reply_result(fire_trigger(&ctx, &name, req).await)
            },
        );
    // Only `suspend` and `resume` match here (any other segment is not this route), so a
    // refused `fire` body stays the answer to a `fire`.
    let trigger_suspend = warp::path!("v1" / "triggers" / String / SuspendAction)
        .and(warp::post())
        .and(warp::query::<ResourceQuery>())
        .then(
            |name: String, action: SuspendAction, q: ResourceQuery| async move {
                let suspend = action == SuspendAction::Suspend;
                reply_result(suspend_trigger(&name, suspend, &q).await)
            },
        );
    let actor_kill = warp::path("v1")
        .and(warp::path("actors"))
        .and(warp::path::tail())
        .and(warp::post())
        .map(
            |tail: warp::path::Tail| match tail.as_str().strip_suffix("/kill") {
                Some(name) => reply_result(kill_actor(name)),
                None => reply_error(&ApiError::not_found(
                    "unknown actor request: use POST /v1/actors/{name}/kill",
                )),
            },
        );
    let actor_tree = warp::path!("v1" / "actors")
        .and(warp::get())
        .map(|| reply_result(actor_tree()));
    let actor_get = warp::path("v1")
        .and(warp::path("actors"))
        .and(warp::path::tail())
        .and(warp::get())
        .and(warp::query::<TraceQuery>())
        .then(|tail: warp::path::Tail, q: TraceQuery| async move {
            let path = tail.as_str();
            if let Some(name) = path.strip_suffix("/inspect") {
                reply_result(inspect_actor(name).await)
            } else if let Some(name) = path.strip_suffix("/trace") {
                trace_actor(name, q)
            } else {
                reply_error(&ApiError::not_found(
                    "unknown actor request: use GET /v1/actors, /v1/actors/{name}/inspect or /v1/actors/{name}/trace",
                ))
            }
        });

    // Each group is boxed: a long chain of `or` over warp's nested filter types makes the
    // compiler's work grow very fast; boxing keeps every type small.
    type Route = warp::filters::BoxedFilter<(warp::reply::Response,)>;
    fn any_of(first: Route, rest: Vec<Route>) -> Route {
        rest.into_iter()
            .fold(first, |acc, r| acc.or(r).unify().boxed())
    }
    let secret_set = warp::path!("v1" / "secrets" / String / "keys" / String)
        .and(warp::put())
        .and(json_body::<SecretPatchRequest>())
        .then(
            |store: String, key: String, req: SecretPatchRequest| async move {
                let project = req.project.as_deref();
                reply_result(patch_secret(&store, &key, project, Some(req.value)).await)
            },
        );
    let secret_unset = warp::path!("v1" / "secrets" / String / "keys" / String)
        .and(warp::delete())
        .and(warp::query::<ResourceQuery>())
        .then(|store: String, key: String, q: ResourceQuery| async move {
            reply_result(patch_secret(&store, &key, q.project.as_deref(), None).await)
        });
    let secret_rotate = warp::path!("v1" / "secrets" / String / "rotate")
        .and(warp::post())
        .and(json_body::<RotateRequest>())
        .and(with_ctx.clone())
        .then(
            |store: String, req: RotateRequest, ctx: ControlContext| async move {
                reply_result(rotate_secret(&ctx, &store, req).await)
            },
        );
    let webhook_test = warp::path!("v1" / "webhooks" / String / "test")
        .and(warp::post())
        .and(json_body::<WebhookTestRequest>())
        .and(with_ctx.clone())
        .then(
            |trigger: String, req: WebhookTestRequest, ctx: ControlContext| async move {
                reply_result(test_webhook(&ctx, &trigger, req).await)
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
        task_create.boxed(),
        vec![
            task_list.boxed(),
            task_show.boxed(),
            task_cancel.boxed(),
            task_start.boxed(),
            task_logs.boxed(),
        ],
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
    // Every request runs in its own span, which ractor carries into each actor it reaches, so
    // one request can be followed across the daemon's log.
    any_of(
        status.boxed(),
        vec![tasks, triggers_and_actors, resources, secrets],
    )
    .recover(recover)
    .unify()
    .with(warp::trace(|info| {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::info_span!("request", id, method = %info.method(), path = %info.path())
    }))
    .map(Reply::into_response)
}

/// A JSON body of type `T`: an object (never `[]`, which serde would read field by field), with
/// only the fields `T` knows (`deny_unknown_fields` on every request type). The 400 names the
/// offending field, so `{"paylod": …}` is an error instead of a fire without a payload.
fn json_body<T: serde::de::DeserializeOwned + Send>()
-> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::body::content_length_limit(BODY_LIMIT)
        .and(warp::body::bytes())
        .and_then(|bytes: warp::hyper::body::Bytes| async move {
            decode_body::<T>(&bytes).map_err(|e| warp::reject::custom(Failed(e)))
        })
}

fn decode_body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(format!("request body is not valid JSON: {e}")))?;
    let shape = match &value {
        serde_json::Value::Object(_) => None,
        serde_json::Value::Array(_) => Some("an array"),
        serde_json::Value::Null => Some("null"),
        serde_json::Value::Bool(_) => Some("a boolean"),
        serde_json::Value::Number(_) => Some("a number"),
        serde_json::Value::String(_) => Some("a string"),
    };
    if let Some(shape) = shape {
        return Err(ApiError::bad_request(format!(
            "request body is {shape}; send a JSON object with this call's fields"
        )));
    }
    serde_json::from_value(value).map_err(|e| ApiError::bad_request(format!("request body: {e}")))
}

/// 400 when the manifests of one request add up to more than an apply may hold.
fn check_sources_size(what: &str, sources: &[Source]) -> Result<(), ApiError> {
    let total = sources.iter().map(|s| s.text.len()).sum();
    check_size(what, total, limits::MAX_APPLY_BYTES)
}

/// 400 when `len` bytes of `what` exceed `limit` (see `domain::limits`).
fn check_size(what: &str, len: usize, limit: usize) -> Result<(), ApiError> {
    crate::domain::limits::check_size(what, len, limit).map_err(ApiError::bad_request)
}

async fn recover(r: Rejection) -> Result<warp::reply::Response, Infallible> {
    let e = if let Some(Failed(e)) = r.find::<Failed>() {
        e.clone()
    } else if r.is_not_found() {
        ApiError::not_found(
            "unknown control API path: the CLI and the daemon may be different versions",
        )
    } else if let Some(e) = r.find::<warp::filters::body::BodyDeserializeError>() {
        ApiError::bad_request(format!("request body is not valid JSON for this call: {e}"))
    } else if r.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(
            413,
            format!("request body is larger than {} MiB", BODY_LIMIT >> 20),
        )
    } else if r.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(405, "method not allowed on this path")
    } else if let Some(e) = r.find::<warp::reject::InvalidQuery>() {
        ApiError::bad_request(format!("invalid query string: {e}"))
    } else if r.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(411, "a Content-Length header is required")
    } else if r.find::<warp::reject::UnsupportedMediaType>().is_some() {
        ApiError::new(415, "send the request body as application/json")
    } else {
        ApiError::internal(format!("unhandled request: {r:?}"))
    };
    Ok(reply_error(&e))
}

fn status(ctx: &ControlContext) -> DaemonStatus {
    let snapshot = ctx.snapshot();
    DaemonStatus {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        pid: crate::process::own_pid(),
        started_at: ctx.started_at,
        uptime_seconds: (Utc::now() - ctx.started_at).num_seconds().max(0) as u64,
        data_dir: ctx.data_dir.clone(),
        socket: ctx.socket.clone(),
        webhook_addr: ctx.webhook_addr.clone(),
        revision: snapshot.revision,
        resources: snapshot.counts(),
    }
}

async fn store_actor() -> Result<Addr<SecretStoreMsg>, ApiError> {
    Addr::resolve(secret_store::NAME, Duration::from_secs(5))
        .await
        .map_err(|e| ApiError::unavailable(format!("{e}; retry in a moment")))
}

fn actor_error(e: crate::actors::introspect::CallError) -> ApiError {
    ApiError::unavailable(format!(
        "{e}; the change may not have been applied, check with `get`"
    ))
}

/// Parses every source; returns documents with Workspace paths resolved, every problem, and
/// what the documents that failed to parse declare (see [`Unparsed`]).
fn parse_sources(
    sources: &[Source],
    project_flag: Option<&str>,
) -> (Vec<Document>, Vec<Diagnostic>, Unparsed) {
    let mut docs = Vec::new();
    let mut problems = Vec::new();
    let mut unparsed = Unparsed::default();
    for src in sources {
        let (parsed, mut p) = parse_documents(&src.name, &src.text);
        if !p.is_empty() {
            let texts = split_documents(&src.text);
            for d in &p {
                let identity = d
                    .document
                    .checked_sub(1)
                    .and_then(|i| texts.get(i))
                    .and_then(|(_, text)| declared_identity(text));
                match identity {
                    Some((kind, project, name)) => {
                        let project = project
                            .as_deref()
                            .or(project_flag)
                            .unwrap_or(DEFAULT_PROJECT);
                        unparsed
                            .declared
                            .push(ResourceKey::new(project, kind, name));
                    }
                    None => unparsed.unreadable = true,
                }
            }
        }
        problems.append(&mut p);
        for mut d in parsed {
            let relative = match &d.manifest.spec {
                Spec::Workspace(w)
                    if !Path::new(&w.root_path).is_absolute() && !w.root_path.trim().is_empty() =>
                {
                    Some(w.root_path.clone())
                }
                _ => None,
            };
            if let Some(root) = relative {
                if Path::new(&src.base_dir).is_absolute() {
                    if let Spec::Workspace(w) = &mut d.manifest.spec {
                        w.root_path = resolve_root_path(&root, Path::new(&src.base_dir));
                    }
                } else {
                    problems.push(d.diagnostic(
                        "spec.root_path",
                        format!(
                            "relative root_path {root:?} cannot be resolved: the request gave no absolute base directory"
                        ),
                    ));
                }
            }
            docs.push(d);
        }
    }
    (docs, problems, unparsed)
}

async fn apply(ctx: &ControlContext, req: ApplyRequest) -> Result<ChangeResponse, ApiError> {
    if req.sources.is_empty() {
        return Err(ApiError::bad_request(
            "nothing to apply: give at least one manifest",
        ));
    }
    check_sources_size("apply", &req.sources)?;
    let (docs, mut problems, unparsed) = parse_sources(&req.sources, req.project.as_deref());
    if docs.is_empty() && problems.is_empty() {
        return Err(ApiError::bad_request(
            "no documents found in the given manifests (they are empty or only comments)",
        ));
    }
    if !problems.is_empty() {
        // Report every problem of the documents that did parse as well, checked against the
        // live resources; only references to what the failed documents declare are left out.
        let mut docs = docs;
        let snapshot = ctx.snapshot();
        problems.extend(validate_documents(
            &mut docs,
            &snapshot,
            req.project.as_deref(),
            &unparsed,
        ));
        sort_in_source_order(&mut problems, req.sources.iter().map(|s| s.name.as_str()));
        return Err(ApiError::invalid("apply", problems));
    }
    let actor = store_actor().await?;
    actor
        .call(
            |reply| SecretStoreMsg::Apply {
                project: req.project,
                dry_run: req.dry_run,
                docs,
                reply,
            },
            ACTOR_TIMEOUT,
        )
        .await
        .map_err(actor_error)?
}

fn parse_kind(kind: &str) -> Result<Kind, ApiError> {
    Kind::from_cli(kind).ok_or_else(|| {
        ApiError::bad_request(format!(
            "unknown kind {kind:?}: use one of {}",
            Kind::ALL.map(Kind::lower).join(", ")
        ))
    })
}

fn project_of(q: Option<&str>) -> Result<String, ApiError> {
    let p = q.unwrap_or(DEFAULT_PROJECT);
    check_name(p).map_err(|e| ApiError::bad_request(format!("project: {e}")))?;
    Ok(p.to_owned())
}

async fn delete(req: DeleteRequest) -> Result<ChangeResponse, ApiError> {
    let flag = req.project.as_deref();
    let mut targets = Vec::new();
    for t in &req.targets {
        targets.push(ResourceKey::new(project_of(flag)?, t.kind, t.name.clone()));
    }
    check_sources_size("apply", &req.sources)?;
    check_sources_size("delete -f", &req.sources)?;
    let (docs, mut problems, _) = parse_sources(&req.sources, req.project.as_deref());
    for d in &docs {
        let declared = d.manifest.metadata.project.as_deref();
        let project = match (declared, flag) {
            (Some(m), Some(f)) if m != f => {
                problems.push(
                    d.diagnostic(
                        "metadata.project",
                        format!("project {m:?} does not match --project {f:?}"),
                    )
                    .hint("drop one of the two or make them agree"),
                );
                continue;
            }
            (Some(m), _) => m,
            (None, Some(f)) => f,
            (None, None) => DEFAULT_PROJECT,
        };
        targets.push(ResourceKey::new(
            project,
            d.manifest.kind(),
            d.manifest.name(),
        ));
    }
    if !problems.is_empty() {
        return Err(ApiError::invalid("delete", problems));
    }
    if targets.is_empty() {
        return Err(ApiError::bad_request(
            "nothing to delete: name KIND NAME or give -f with manifests",
        ));
    }
    let actor = store_actor().await?;
    actor
        .call(
            |reply| SecretStoreMsg::Delete {
                targets,
                dry_run: req.dry_run,
                reply,
            },
            ACTOR_TIMEOUT,
        )
        .await
        .map_err(actor_error)?
}

fn list(ctx: &ControlContext, kind: &str, q: &ResourceQuery) -> Result<ResourceList, ApiError> {
    let kind = parse_kind(kind)?;
    let snapshot = ctx.snapshot();
    let project = if q.all {
        None
    } else {
        Some(project_of(q.project.as_deref())?)
    };
    let items = snapshot
        .list(kind, project.as_deref())
        .filter(|r| q.name.as_deref().is_none_or(|n| r.key.name == n))
        .map(|r| view(ctx, r))
        .collect();
    Ok(ResourceList { items })
}

fn get_one(
    ctx: &ControlContext,
    kind: &str,
    name: &str,
    q: &ResourceQuery,
) -> Result<ResourceView, ApiError> {
    let kind = parse_kind(kind)?;
    let project = project_of(q.project.as_deref())?;
    let snapshot = ctx.snapshot();
    snapshot
        .lookup(&project, kind, name)
        .map(|r| view(ctx, r))
        .ok_or_else(|| not_found(&snapshot, &project, kind, name))
}

/// A resource as `get` shows it, with live status where there is one.
fn view(ctx: &ControlContext, r: &crate::domain::snapshot::Resource) -> ResourceView {
    let mut v = ResourceView::from_resource(r);
    if let Spec::Trigger(t) = &r.spec {
        v.status = serde_json::to_value(trigger_status(ctx, &r.key.project, &r.key.name, t)).ok();
    }
    v
}

fn trigger_status(
    ctx: &ControlContext,
    project: &str,
    name: &str,
    t: &crate::domain::manifest::TriggerSpec,
) -> TriggerStatus {
    let state = ctx
        .triggers
        .get(project, name)
        .ok()
        .flatten()
        .unwrap_or_default();
    let schedule = ctx
        .snapshot()
        .cron_trigger(project, name)
        .map(|c| c.schedule.clone());
    let tz = schedule.as_ref().map_or(chrono_tz::UTC, |s| s.timezone());
    let next = match (&schedule, t.suspend) {
        (Some(s), false) => s.next_after(Utc::now()),
        _ => None,
    };
    TriggerStatus {
        last_fire: state.last_fire.map(|f| FireTime::new(f, tz)),
        next_fire: next.map(|n| FireTime::new(n, tz)),
        last_task: state.last_task,
        fires: state.fires,
        skips: state.skips,
        missed: state.missed,
    }
}

async fn fire_trigger(
    ctx: &ControlContext,
    name: &str,
    req: FireRequest,
) -> Result<FireResponse, ApiError> {
    let project = project_of(req.project.as_deref())?;
    if let Some(p) = &req.payload {
        check_size("payload", p.len(), limits::MAX_PAYLOAD_BYTES)?;
    }
    if let Some(p) = &req.payload
        && let Err(e) = serde_json::from_str::<serde_json::Value>(p)
    {
        return Err(ApiError::bad_request(format!(
            "payload is not valid JSON: {e}"
        )));
    }
    let snapshot = ctx.snapshot();
    let spec = match snapshot
        .lookup(&project, Kind::Trigger, name)
        .map(|r| &r.spec)
    {
        Some(Spec::Trigger(t)) => t.clone(),
        _ => return Err(not_found(&snapshot, &project, Kind::Trigger, name)),
    };
    let fired = crate::actors::trigger::fire(
        &project,
        name,
        &spec,
        format!("trigger/{name}"),
        None,
        req.payload,
    )
    .await?;
    let (task, skipped) = match fired {
        crate::actors::trigger::Fired::Created(t) => (Some(*t), None),
        crate::actors::trigger::Fired::Skipped(why) => (None, Some(why)),
    };
    let event = crate::api::TriggerEvent {
        at: Utc::now(),
        kind: if task.is_some() {
            crate::api::EventKind::Fired
        } else {
            crate::api::EventKind::Skipped
        },
        scheduled: None,
        task: task.as_ref().map(|t| t.id),
        lateness_ms: None,
        reason: Some(match &skipped {
            Some(why) => format!("fired by request: {why}"),
            None => "fired by request".to_owned(),
        }),
    };
    if let Err(e) = ctx.triggers.event(&project, name, &event) {
        tracing::warn!(trigger = name, error = %e, "cannot record a manual fire");
    }
    Ok(FireResponse { task, skipped })
}

/// The last path segment of `POST /v1/triggers/{name}/suspend|resume`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SuspendAction {
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

async fn suspend_trigger(
    name: &str,
    suspend: bool,
    q: &ResourceQuery,
) -> Result<ChangeResponse, ApiError> {
    let key = ResourceKey::new(project_of(q.project.as_deref())?, Kind::Trigger, name);
    let actor = store_actor().await?;
    actor
        .call(
            |reply| SecretStoreMsg::SetSuspend {
                key,
                suspend,
                reply,
            },
            ACTOR_TIMEOUT,
        )
        .await
        .map_err(actor_error)?
}

/// `secret set` (a value) or `secret unset` (`None`).
async fn patch_secret(
    store: &str,
    key: &str,
    project: Option<&str>,
    value: Option<String>,
) -> Result<ChangeResponse, ApiError> {
    let project = project_of(project)?;
    if key.is_empty()
        || !key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(ApiError::bad_request(format!(
            "invalid key {key:?}: use letters, digits, '-', '_' and '.'"
        )));
    }
    if let Some(v) = &value {
        crate::domain::limits::check_secret_value(v)
            .map_err(|e| ApiError::bad_request(format!("secretstore/{store} key {key:?}: {e}")))?;
    }
    let value = value.map(crate::domain::manifest::SecretValue::new);
    let rk = ResourceKey::new(project, Kind::SecretStore, store);
    let actor = store_actor().await?;
    actor
        .call(
            |reply| SecretStoreMsg::PatchSecret {
                key: rk,
                changes: vec![(key.to_owned(), value)],
                reply,
            },
            ACTOR_TIMEOUT,
        )
        .await
        .map_err(actor_error)?
}

async fn rotate_secret(
    ctx: &ControlContext,
    store: &str,
    req: RotateRequest,
) -> Result<RotationRecord, ApiError> {
    let project = project_of(req.project.as_deref())?;
    Ok(crate::rotation::rotate(&ctx.rotations, &project, store, req.key).await?)
}

/// A rotation's errors on the wire: the caller's mistakes are 400 (404 for a store that does not
/// exist, 409 for one already being rotated), the daemon's own failures 500; the text as is.
impl From<crate::rotation::RotationError> for ApiError {
    fn from(e: crate::rotation::RotationError) -> ApiError {
        use crate::rotation::RotationError as E;
        let status = match &e {
            E::StoreNotFound { .. } => 404,
            E::NoRotationBlock { .. }
            | E::StagingKey { .. }
            | E::NoKey { .. }
            | E::Provider { .. } => 400,
            E::AlreadyRunning { .. } => 409,
            E::Record(_) | E::Random | E::NoOutcome => 500,
        };
        ApiError::new(status, e.to_string())
    }
}

/// Signs a test delivery with one key of the trigger's store and sends it, marked as a dry run,
/// through the daemon's own webhook server.
async fn test_webhook(
    ctx: &ControlContext,
    trigger: &str,
    req: WebhookTestRequest,
) -> Result<WebhookTestResponse, ApiError> {
    let project = project_of(req.project.as_deref())?;
    let snapshot = ctx.snapshot();
    let spec = match snapshot
        .lookup(&project, Kind::Trigger, trigger)
        .map(|r| &r.spec)
    {
        Some(Spec::Trigger(t)) => t.clone(),
        _ => return Err(not_found(&snapshot, &project, Kind::Trigger, trigger)),
    };
    let Some(ev) = spec.event.as_ref() else {
        return Err(ApiError::bad_request(format!(
            "trigger/{trigger} is a cron trigger; only webhook triggers can be tested"
        )));
    };
    let store = &ev.webhook.secret.from_ref;
    let value = snapshot
        .secret_store(&project, store)
        .and_then(|s| s.data.get(&req.key))
        .cloned()
        .ok_or_else(|| {
            ApiError::bad_request(format!("secretstore/{store} has no key {:?}", req.key))
        })?;
    let addr: std::net::SocketAddr = ctx
        .webhook_addr
        .as_deref()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| {
            ApiError::bad_request("the webhook server is disabled (--webhook-bind none)")
        })?;
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
            serde_json::from_str::<serde_json::Value>(&p)
                .map_err(|e| ApiError::bad_request(format!("payload is not valid JSON: {e}")))?;
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
            return Err(ApiError::bad_request(format!("trigger/{trigger}: {why}")));
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
    let client = reqwest::Client::builder()
        .no_proxy()
        .tls_certs_only(std::iter::empty())
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut request = client
        .post(format!("http://{target}/webhook/{project}/{trigger}"))
        .header("Content-Type", "application/json")
        .header("X-Orchestrator-Dry-Run", "1")
        .body(body);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    let resp = request
        .send()
        .await
        .map_err(|e| ApiError::unavailable(format!("the webhook server did not answer: {e}")))?;
    let status = resp.status().as_u16();
    let body: serde_json::Value = resp.json().await.unwrap_or(serde_json::Value::Null);
    Ok(WebhookTestResponse {
        status,
        matched_key: body.get("key").and_then(|k| k.as_str()).map(str::to_owned),
        body,
    })
}

fn actor_tree() -> Result<crate::api::ActorNode, ApiError> {
    let root = ractor::registry::where_is(crate::daemon::ROOT)
        .ok_or_else(|| ApiError::unavailable("the root supervisor is not running"))?;
    Ok(crate::actors::introspect::tree(&root))
}

async fn inspect_actor(name: &str) -> Result<ActorInspect, ApiError> {
    let name = name.trim_matches('/');
    let cell = ractor::registry::where_is(name).ok_or_else(|| no_running_actor(name))?;
    let state = crate::actors::introspect::inspect_cell(&cell, Duration::from_secs(5))
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?;
    Ok(ActorInspect {
        name: name.to_owned(),
        stats: crate::actors::introspect::stats(name).map(|s| s.summary()),
        state,
    })
}

#[derive(Debug, serde::Deserialize)]
struct TraceQuery {
    #[serde(default)]
    follow: bool,
    #[serde(default)]
    n: Option<usize>,
}

/// An actor's recent messages as JSON; with `follow`, newline-delimited JSON entries streamed
/// as they are handled (after the recent ones) until the client goes away.
fn trace_actor(name: &str, q: TraceQuery) -> warp::reply::Response {
    let name = name.trim_matches('/').to_owned();
    let Some(stats) = crate::actors::introspect::stats(&name) else {
        return reply_error(&ApiError::not_found(format!(
            "no actor named {name:?} has run (orchestrator actors lists them)"
        )));
    };
    let mut recent = stats.trace();
    if let Some(n) = q.n {
        let skip = recent.len().saturating_sub(n);
        recent.drain(..skip);
    }
    if !q.follow {
        return reply_result(Ok::<_, ApiError>(ActorTrace {
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

fn no_running_actor(name: &str) -> ApiError {
    let passivated = if name.starts_with("trigger/") {
        "; a cron trigger whose next fire is beyond the resident window has no actor until \
         shortly before that fire (orchestrator actors inspect triggers shows the next wakes)"
    } else {
        ""
    };
    ApiError::not_found(format!(
        "no running actor is named {name:?} (orchestrator actors lists them){passivated}"
    ))
}

fn kill_actor(name: &str) -> Result<KillResponse, ApiError> {
    let name = name.trim_matches('/');
    if name == crate::daemon::ROOT {
        return Err(ApiError::bad_request(
            "the root supervisor cannot be killed: stop the daemon instead (SIGTERM)",
        ));
    }
    crate::actors::introspect::fail_by_name(name, "killed by request (orchestrator actors kill)")
        .map_err(|_| no_running_actor(name))?;
    Ok(KillResponse {
        actor: name.to_owned(),
        killed: true,
    })
}

fn not_found(snapshot: &Snapshot, project: &str, kind: Kind, name: &str) -> ApiError {
    let names: Vec<&str> = snapshot
        .list(kind, Some(project))
        .map(|r| r.key.name.as_str())
        .collect();
    let hint = match crate::domain::diagnostic::did_you_mean(name, names.iter().copied()) {
        Some(s) => format!(" (did you mean {s:?}?)"),
        None => String::new(),
    };
    ApiError::not_found(format!(
        "{}/{name} not found in project {project:?}{hint}",
        kind.lower()
    ))
}

fn is_cron(r: &ResourceView) -> bool {
    r.spec.get("cron").is_some_and(|c| !c.is_null())
}

/// Asks the trigger supervisor where a cron trigger is armed; `None` when it does not answer.
async fn trigger_armed(project: &str, name: &str) -> Option<crate::api::Armed> {
    let sup =
        Addr::<crate::actors::trigger::TriggerSupMsg>::lookup(crate::actors::trigger::TRIGGERS)?;
    sup.call(
        |reply| crate::actors::trigger::TriggerSupMsg::Where {
            key: (project.to_owned(), name.to_owned()),
            reply,
        },
        ACTOR_TIMEOUT,
    )
    .await
    .ok()
}

async fn describe(
    ctx: &ControlContext,
    kind: &str,
    name: &str,
    q: &ResourceQuery,
) -> Result<Describe, ApiError> {
    let resource = get_one(ctx, kind, name, q)?;
    let key = ResourceKey::new(resource.metadata.project.clone(), resource.kind, name);
    let (key_kind, key_project) = (key.kind, key.project.clone());
    let actor = store_actor().await?;
    let described = actor
        .call(
            |reply| SecretStoreMsg::Describe { key, reply },
            ACTOR_TIMEOUT,
        )
        .await
        .map_err(actor_error)??;
    let armed = if key_kind == Kind::Trigger && is_cron(&resource) {
        trigger_armed(&key_project, name).await
    } else {
        None
    };
    Ok(Describe {
        resource,
        fires: if key_kind == Kind::Trigger {
            ctx.triggers
                .events(&key_project, name, 30)
                .map_err(|e| ApiError::internal(format!("reading trigger history failed: {e}")))?
        } else {
            Vec::new()
        },
        rotations: if key_kind == Kind::SecretStore {
            ctx.rotations.history(&key_project, name, 10)?
        } else {
            Vec::new()
        },
        armed,
        referenced_by: described.referenced_by,
        keys: described.keys,
        history: described.history,
    })
}

// ---------------------------------------------------------------------------------------------
// Tasks
// ---------------------------------------------------------------------------------------------

async fn tasks_actor() -> Result<Addr<TaskSupMsg>, ApiError> {
    Addr::resolve(TASKS, Duration::from_secs(5))
        .await
        .map_err(|e| ApiError::unavailable(format!("{e}; retry in a moment")))
}

async fn task_call(
    build: impl FnOnce(ractor::RpcReplyPort<Result<TaskInfo, ApiError>>) -> TaskSupMsg,
) -> Result<TaskInfo, ApiError> {
    let actor = tasks_actor().await?;
    actor
        .call(build, ACTOR_TIMEOUT)
        .await
        .map_err(actor_error)?
}

async fn create_task(req: CreateTaskRequest) -> Result<TaskInfo, ApiError> {
    let project = project_of(req.project.as_deref())?;
    if let Some(g) = &req.goal {
        check_size("goal", g.len(), limits::MAX_GOAL_BYTES)?;
    }
    if let Some(p) = &req.payload {
        check_size("payload", p.len(), limits::MAX_PAYLOAD_BYTES)?;
    }
    check_name(&req.workflow).map_err(|e| ApiError::bad_request(format!("workflow: {e}")))?;
    if let Some(w) = &req.workspace {
        check_name(w).map_err(|e| ApiError::bad_request(format!("workspace: {e}")))?;
    }
    let request = TaskRequest {
        project,
        workflow: req.workflow,
        workspace: req.workspace,
        goal: req.goal,
        payload: req.payload,
        origin: "cli".into(),
        trigger: None,
        scheduled_at: None,
        start: req.start,
    };
    task_call(|r| TaskSupMsg::Create(request, r)).await
}

fn task_store_error(e: StoreError) -> ApiError {
    ApiError::internal(format!("reading tasks failed: {e}"))
}

fn list_tasks(ctx: &ControlContext, q: &TaskQuery) -> Result<TaskList, ApiError> {
    if let Some(s) = &q.state
        && crate::api::TaskState::parse(s).is_none()
    {
        return Err(ApiError::bad_request(format!(
            "unknown state {s:?}: use pending, running, succeeded, failed or cancelled"
        )));
    }
    let project = if q.all {
        None
    } else {
        Some(project_of(q.project.as_deref())?)
    };
    let tasks = ctx
        .tasks
        .list(q, project.as_deref())
        .map_err(task_store_error)?;
    Ok(TaskList { tasks })
}

fn show_task(ctx: &ControlContext, id: u64) -> Result<TaskDetail, ApiError> {
    let task = ctx
        .tasks
        .get(id)
        .map_err(task_store_error)?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "task {id} not found (orchestrator task list shows the tasks)"
            ))
        })?;
    Ok(TaskDetail {
        payload: ctx.tasks.payload(id).map_err(task_store_error)?,
        steps: ctx.tasks.runs(id).map_err(task_store_error)?,
        events: ctx.tasks.events(id).map_err(task_store_error)?,
        task,
    })
}

#[derive(Debug, serde::Deserialize)]
struct LogQuery {
    #[serde(default)]
    follow: bool,
}

/// The task's run logs as one text stream: a header per step run, then its lines. With
/// `follow`, new lines are sent as they are written until the task has finished.
fn task_logs(ctx: ControlContext, id: u64, follow: bool) -> warp::reply::Response {
    match ctx.tasks.get(id) {
        Ok(Some(_)) => {}
        Ok(None) => return reply_error(&ApiError::not_found(format!("task {id} not found"))),
        Err(e) => return reply_error(&task_store_error(e)),
    }
    let (tx, mut rx) =
        tokio::sync::mpsc::channel::<Result<warp::hyper::body::Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let mut offsets: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
        loop {
            // Whether the task had finished *before* this pass: then the pass reads everything.
            let finished = match ctx.tasks.get(id) {
                Ok(Some(t)) => t.state.is_finished(),
                _ => true,
            };
            let runs = ctx.tasks.runs(id).unwrap_or_default();
            for run in runs {
                let offset = offsets.entry(run.id).or_insert(u64::MAX);
                let mut chunk = Vec::new();
                if *offset == u64::MAX {
                    let agent = run
                        .agent
                        .as_deref()
                        .map(|a| format!(", agent {a}"))
                        .unwrap_or_default();
                    chunk.extend_from_slice(
                        format!(
                            "==> step {} (cycle {}, attempt {}{agent}) <==\n",
                            run.step, run.cycle, run.attempt
                        )
                        .as_bytes(),
                    );
                    *offset = 0;
                }
                if let Ok(bytes) = read_from(&run.log_path, *offset) {
                    *offset += bytes.len() as u64;
                    chunk.extend_from_slice(&bytes);
                }
                if !chunk.is_empty()
                    && tx
                        .send(Ok(warp::hyper::body::Bytes::from(chunk)))
                        .await
                        .is_err()
                {
                    return;
                }
            }
            if !follow || finished {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let mut resp = warp::reply::stream(stream).into_response();
    resp.headers_mut().insert(
        warp::http::header::CONTENT_TYPE,
        warp::http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The bytes of `path` from `offset` on (up to complete lines, so a line is never split).
fn read_from(path: &str, offset: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take(4 * 1024 * 1024).read_to_end(&mut buf)?;
    match buf.iter().rposition(|b| *b == b'\n') {
        Some(last) => buf.truncate(last + 1),
        None => buf.clear(),
    }
    Ok(buf)
}

/// Serves the control API on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::UnixListener,
    ctx: ControlContext,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    warp::serve(routes(ctx))
        .incoming(listener)
        .graceful(shutdown)
        .run()
        .await;
}
