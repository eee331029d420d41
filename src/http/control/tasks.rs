//! The task commands: `task run` (create), `task rerun`, `task list`, `task show`,
//! `task cancel|start`, `task logs`, `task delete` and `task prune`. Creating, cancelling and starting ask the
//! `tasks` supervisor; deleting and pruning ask the `retention` actor (which removes rows and
//! run logs together); listing, showing and the logs read the task store and the run logs
//! directly.

use std::time::Duration;

use warp::Filter;

use super::{
    ACTOR_TIMEOUT, ControlContext, ControlError, Route, any_of, check_size, json_body, project_of,
    reply_error, reply_result,
};
use crate::actors::retention::{self, PruneRequest, RetentionMsg};
use crate::actors::runtime::Addr;
use crate::actors::task_supervisor::{TASKS, TaskRequest, TaskSupMsg};
use crate::actors::workflow::TaskError;
use crate::api::{
    CreateTaskRequest, DeleteTaskResponse, PruneTasksRequest, PruneTasksResponse, TaskDetail,
    TaskInfo, TaskList, TaskQuery,
};
use crate::domain::limits;
use crate::domain::retention::Age;
use crate::domain::validate::check_name;
use crate::domain::workflow::CancelReason;

/// The task routes (listed in the module doc of `control`).
pub(super) fn routes(ctx: ControlContext) -> Route {
    let with_ctx = warp::any().map(move || ctx.clone());
    let task_create = warp::path!("v1" / "tasks")
        .and(warp::post())
        .and(json_body::<CreateTaskRequest>())
        .and(with_ctx.clone())
        .then(|req: CreateTaskRequest, ctx: ControlContext| async move {
            reply_result(create(&ctx, req).await)
        });
    let task_list = warp::path!("v1" / "tasks")
        .and(warp::get())
        .and(warp::query::<TaskQuery>())
        .and(with_ctx.clone())
        .map(|q: TaskQuery, ctx: ControlContext| reply_result(list(&ctx, &q)));
    let task_show = warp::path!("v1" / "tasks" / u64)
        .and(warp::get())
        .and(with_ctx.clone())
        .map(|id: u64, ctx: ControlContext| reply_result(show(&ctx, id)));
    let task_cancel = warp::path!("v1" / "tasks" / u64 / "cancel")
        .and(warp::post())
        .and(with_ctx.clone())
        .then(|id: u64, ctx: ControlContext| async move {
            reply_result(call(&ctx, |r| TaskSupMsg::Cancel(id, CancelReason::User, r)).await)
        });
    let task_start = warp::path!("v1" / "tasks" / u64 / "start")
        .and(warp::post())
        .and(with_ctx.clone())
        .then(|id: u64, ctx: ControlContext| async move {
            reply_result(call(&ctx, |r| TaskSupMsg::Start(id, r)).await)
        });
    let task_rerun = warp::path!("v1" / "tasks" / u64 / "rerun")
        .and(warp::post())
        .and(with_ctx.clone())
        .then(|id: u64, ctx: ControlContext| async move { reply_result(rerun(&ctx, id).await) });
    let task_delete = warp::path!("v1" / "tasks" / u64)
        .and(warp::delete())
        .and(with_ctx.clone())
        .then(|id: u64, ctx: ControlContext| async move { reply_result(delete(&ctx, id).await) });
    let task_prune = warp::path!("v1" / "tasks" / "prune")
        .and(warp::post())
        .and(json_body::<PruneTasksRequest>())
        .and(with_ctx.clone())
        .then(|req: PruneTasksRequest, ctx: ControlContext| async move {
            reply_result(prune(&ctx, req).await)
        });
    let task_logs = warp::path!("v1" / "tasks" / u64 / "logs")
        .and(warp::get())
        .and(warp::query::<LogQuery>())
        .and(with_ctx.clone())
        .map(|id: u64, q: LogQuery, ctx: ControlContext| logs(ctx, id, q.follow));

    any_of(
        task_create.boxed(),
        vec![
            task_list.boxed(),
            task_show.boxed(),
            task_rerun.boxed(),
            task_cancel.boxed(),
            task_start.boxed(),
            task_logs.boxed(),
            task_delete.boxed(),
            task_prune.boxed(),
        ],
    )
}

async fn tasks_actor(ctx: &ControlContext) -> Result<Addr<TaskSupMsg>, ControlError> {
    ctx.actors
        .resolve(TASKS, Duration::from_secs(5))
        .await
        .map_err(ControlError::ActorDown)
}

/// Asks the `tasks` supervisor for one task change.
pub(super) async fn call(
    ctx: &ControlContext,
    build: impl FnOnce(ractor::RpcReplyPort<Result<TaskInfo, TaskError>>) -> TaskSupMsg,
) -> Result<TaskInfo, ControlError> {
    let actor = tasks_actor(ctx).await?;
    Ok(actor
        .call(build, ACTOR_TIMEOUT)
        .await
        .map_err(ControlError::ActorCall)??)
}

async fn create(ctx: &ControlContext, req: CreateTaskRequest) -> Result<TaskInfo, ControlError> {
    let project = project_of(req.project.as_deref())?;
    if let Some(g) = &req.goal {
        check_size("goal", g.len(), limits::MAX_GOAL_BYTES)?;
    }
    if let Some(p) = &req.payload {
        check_size("payload", p.len(), limits::MAX_PAYLOAD_BYTES)?;
    }
    check_name(&req.workflow).map_err(|e| ControlError::Name {
        field: "workflow",
        reason: e.to_string(),
    })?;
    if let Some(w) = &req.workspace {
        check_name(w).map_err(|e| ControlError::Name {
            field: "workspace",
            reason: e.to_string(),
        })?;
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
        delivery: None,
        fence: None,
    };
    call(ctx, |r| TaskSupMsg::Create(request, r)).await
}

/// A new task with the workflow (as it is now), workspace, goal and payload of task `id`, which
/// may be in any state; it starts at once.
async fn rerun(ctx: &ControlContext, id: u64) -> Result<TaskInfo, ControlError> {
    let task = ctx
        .tasks
        .get(id)
        .map_err(ControlError::ReadTasks)?
        .ok_or(ControlError::NoTask(id))?;
    let request = TaskRequest {
        project: task.project,
        workflow: task.workflow,
        workspace: Some(task.workspace),
        goal: task.goal,
        payload: ctx.tasks.payload(id).map_err(ControlError::ReadTasks)?,
        origin: format!("rerun/{id}"),
        trigger: None,
        scheduled_at: None,
        start: true,
        delivery: None,
        fence: None,
    };
    call(ctx, |r| TaskSupMsg::Create(request, r)).await
}

fn list(ctx: &ControlContext, q: &TaskQuery) -> Result<TaskList, ControlError> {
    if let Some(s) = &q.state
        && crate::api::TaskState::parse(s).is_none()
    {
        return Err(ControlError::UnknownState(s.clone()));
    }
    let project = if q.all {
        None
    } else {
        Some(project_of(q.project.as_deref())?)
    };
    let tasks = ctx
        .tasks
        .list(q, project.as_deref())
        .map_err(ControlError::ReadTasks)?;
    Ok(TaskList { tasks })
}

fn show(ctx: &ControlContext, id: u64) -> Result<TaskDetail, ControlError> {
    let task = ctx
        .tasks
        .get(id)
        .map_err(ControlError::ReadTasks)?
        .ok_or(ControlError::NoTask(id))?;
    Ok(TaskDetail {
        payload: ctx.tasks.payload(id).map_err(ControlError::ReadTasks)?,
        steps: ctx.tasks.runs(id).map_err(ControlError::ReadTasks)?,
        events: ctx.tasks.events(id).map_err(ControlError::ReadTasks)?,
        task,
    })
}

// ---------------------------------------------------------------------------------------------
// Delete and prune
// ---------------------------------------------------------------------------------------------

/// How long a prune may take before the answer gives up (the prune itself goes on); below the
/// CLI's own deadline.
const PRUNE_TIMEOUT: Duration = Duration::from_secs(110);

async fn retention_actor(ctx: &ControlContext) -> Result<Addr<RetentionMsg>, ControlError> {
    ctx.actors
        .resolve(retention::NAME, Duration::from_secs(5))
        .await
        .map_err(ControlError::ActorDown)
}

/// `task delete`: a finished task with its rows and run logs.
async fn delete(ctx: &ControlContext, id: u64) -> Result<DeleteTaskResponse, ControlError> {
    let actor = retention_actor(ctx).await?;
    actor
        .call(|r| RetentionMsg::Delete(id, r), ACTOR_TIMEOUT)
        .await
        .map_err(ControlError::ActorCall)??;
    Ok(DeleteTaskResponse { id, deleted: true })
}

/// `task prune --older-than`: the finished tasks of a project (or all) that finished before
/// then.
async fn prune(
    ctx: &ControlContext,
    req: PruneTasksRequest,
) -> Result<PruneTasksResponse, ControlError> {
    let older_than = Age::from_secs(req.older_than_seconds)
        .ok_or(ControlError::PruneAge(req.older_than_seconds))?;
    let project = if req.all {
        None
    } else {
        Some(project_of(req.project.as_deref())?)
    };
    let actor = retention_actor(ctx).await?;
    let request = PruneRequest {
        older_than,
        project,
    };
    let removed = actor
        .call(|r| RetentionMsg::Prune(request, r), PRUNE_TIMEOUT)
        .await
        .map_err(ControlError::ActorCall)??;
    Ok(PruneTasksResponse { removed })
}

// ---------------------------------------------------------------------------------------------
// Logs
// ---------------------------------------------------------------------------------------------

#[derive(Debug, serde::Deserialize)]
struct LogQuery {
    #[serde(default)]
    follow: bool,
}

/// The task's run logs as one text stream: a header per step run, then its lines. With
/// `follow`, new lines are sent as they are written until the task has finished.
fn logs(ctx: ControlContext, id: u64, follow: bool) -> warp::reply::Response {
    use warp::Reply;
    match ctx.tasks.get(id) {
        Ok(Some(_)) => {}
        Ok(None) => return reply_error(&ControlError::NoTaskToLog(id)),
        Err(e) => return reply_error(&ControlError::ReadTasks(e)),
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
