//! The task commands: `task run` (create), `task list`, `task show`, `task cancel|start` and
//! `task logs`. Creating, cancelling and starting ask the `tasks` supervisor; listing, showing and
//! the logs read the task store and the run logs directly.

use std::time::Duration;

use super::{ACTOR_TIMEOUT, ControlContext, ControlError, check_size, project_of, reply_error};
use crate::actors::runtime::Addr;
use crate::actors::task_supervisor::{TASKS, TaskRequest, TaskSupMsg};
use crate::actors::workflow::TaskError;
use crate::api::{CreateTaskRequest, TaskDetail, TaskInfo, TaskList, TaskQuery};
use crate::domain::limits;
use crate::domain::validate::check_name;

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

pub(super) async fn create(
    ctx: &ControlContext,
    req: CreateTaskRequest,
) -> Result<TaskInfo, ControlError> {
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
    };
    call(ctx, |r| TaskSupMsg::Create(request, r)).await
}

pub(super) fn list(ctx: &ControlContext, q: &TaskQuery) -> Result<TaskList, ControlError> {
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

pub(super) fn show(ctx: &ControlContext, id: u64) -> Result<TaskDetail, ControlError> {
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
// Logs
// ---------------------------------------------------------------------------------------------

#[derive(Debug, serde::Deserialize)]
pub(super) struct LogQuery {
    #[serde(default)]
    pub(super) follow: bool,
}

/// The task's run logs as one text stream: a header per step run, then its lines. With
/// `follow`, new lines are sent as they are written until the task has finished.
pub(super) fn logs(ctx: ControlContext, id: u64, follow: bool) -> warp::reply::Response {
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
