//! The resource commands: `status`, `apply`, `delete`, `get` (one or a list) and `describe`.
//! Apply and delete parse their manifests here, outside any actor, and hand the documents to
//! the `secret-store` actor, which validates and commits; `get` reads the published snapshot,
//! with the live status of triggers from the trigger store.

use std::path::Path;

use chrono::Utc;

use super::{
    ACTOR_TIMEOUT, ControlContext, ControlError, SecretStoreMsg, check_size, project_of,
    store_actor,
};
use crate::actors::retention::disk_usage;
use crate::api::{
    ApplyRequest, ChangeResponse, DaemonStatus, DeleteRequest, Describe, FireTime, OldestTask,
    ResourceList, ResourceQuery, ResourceView, Source, StorageStatus, TriggerStatus,
};
use crate::domain::diagnostic::{Diagnostic, sort_in_source_order};
use crate::domain::limits;
use crate::domain::manifest::{
    DEFAULT_PROJECT, Document, Kind, Spec, declared_identity, parse_documents, split_documents,
};
use crate::domain::snapshot::ResourceKey;
use crate::domain::validate::{Unparsed, resolve_root_path, validate_documents};

pub(super) async fn status(ctx: &ControlContext) -> DaemonStatus {
    let snapshot = ctx.snapshot();
    let storage = storage(ctx).await;
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
        storage,
    }
}

/// The database's and the run logs' size, the oldest task and the retention in force; `None`
/// (logged) when the store cannot be read.
async fn storage(ctx: &ControlContext) -> Option<StorageStatus> {
    let info = match ctx.tasks.storage() {
        Ok(i) => i,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the database's size for the status");
            return None;
        }
    };
    let runs = Path::new(&ctx.data_dir).join(crate::layout::RUNS_DIR);
    // A walk over every task's directory: off the async threads.
    let run_log_bytes = tokio::task::spawn_blocking(move || disk_usage(&runs))
        .await
        .unwrap_or(0);
    let policy = ctx.retention.policy;
    Some(StorageStatus {
        database_bytes: info.db_bytes,
        wal_bytes: info.wal_bytes,
        free_bytes: info.free_bytes,
        run_log_bytes,
        tasks: info.tasks,
        finished_tasks: info.finished_tasks,
        oldest_task: info
            .oldest
            .map(|(id, created_at)| OldestTask { id, created_at }),
        retention_age: policy.max_age.to_string(),
        retention_count: policy.max_count,
    })
}

// ---------------------------------------------------------------------------------------------
// Apply and delete
// ---------------------------------------------------------------------------------------------

/// 400 when the manifests of one request add up to more than an apply may hold.
fn check_sources_size(what: &str, sources: &[Source]) -> Result<(), ControlError> {
    let total: usize = sources.iter().map(|s| s.text.len()).sum();
    check_size(what, total, limits::MAX_APPLY_BYTES)
}

/// Parses every source; returns documents with relative paths resolved ([`resolve_paths`]),
/// every problem, and what the documents that failed to parse declare (see [`Unparsed`]).
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
            if let Some(problem) = resolve_paths(&mut d, Path::new(&src.base_dir)) {
                problems.push(problem);
            }
            docs.push(d);
        }
    }
    (docs, problems, unparsed)
}

/// Resolves the relative paths of `d` against `base_dir`, the directory of its manifest:
/// a Workspace's `root_path`, and where a `command` rotation's programs run
/// (`settings.workingDir`, which defaults to `base_dir` itself). A problem if a path is relative
/// and the request gave no absolute base directory.
fn resolve_paths(d: &mut Document, base_dir: &Path) -> Option<Diagnostic> {
    use crate::domain::manifest::RotationProvider;
    use crate::domain::rotation::WORKING_DIR;
    let (field, path) = match &mut d.manifest.spec {
        Spec::Workspace(w)
            if !Path::new(&w.root_path).is_absolute() && !w.root_path.trim().is_empty() =>
        {
            ("root_path", &mut w.root_path)
        }
        Spec::SecretStore(s) => {
            let r = s
                .rotation
                .as_mut()
                .filter(|r| r.provider == RotationProvider::Command)?;
            let dir = r
                .settings
                .entry(WORKING_DIR.to_owned())
                .or_insert_with(|| serde_json::Value::String(".".into()));
            // Not a string: validation says so.
            let serde_json::Value::String(dir) = dir else {
                return None;
            };
            if Path::new(dir.as_str()).is_absolute() {
                return None;
            }
            ("rotation.settings.workingDir", dir)
        }
        _ => return None,
    };
    if !base_dir.is_absolute() {
        let relative = path.clone();
        return Some(d.diagnostic(
            &format!("spec.{field}"),
            format!(
                "relative {field} {relative:?} cannot be resolved: the request gave no absolute base directory"
            ),
        ));
    }
    *path = resolve_root_path(path, base_dir);
    None
}

/// The Workspaces with `worktree: true` whose root is not a git work tree with a commit (the
/// one rule of an apply that needs IO: git, through `process::git`).
async fn worktree_problems(docs: &[Document]) -> Vec<Diagnostic> {
    let env = crate::process::base_env();
    let mut out = Vec::new();
    for d in docs {
        let Spec::Workspace(w) = &d.manifest.spec else {
            continue;
        };
        if !w.worktree || !Path::new(&w.root_path).is_absolute() {
            continue;
        }
        if let Err(e) = crate::process::git::inspect(Path::new(&w.root_path), &env).await {
            out.push(d.diagnostic("spec.worktree", e.to_string()));
        }
    }
    out
}

pub(super) async fn apply(
    ctx: &ControlContext,
    req: ApplyRequest,
) -> Result<ChangeResponse, ControlError> {
    if req.sources.is_empty() {
        return Err(ControlError::NothingToApply);
    }
    check_sources_size("apply", &req.sources)?;
    let (docs, mut problems, unparsed) = parse_sources(&req.sources, req.project.as_deref());
    if docs.is_empty() && problems.is_empty() {
        return Err(ControlError::NoDocuments);
    }
    problems.extend(worktree_problems(&docs).await);
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
        return Err(ControlError::Invalid {
            what: "apply",
            problems,
        });
    }
    let actor = store_actor(ctx).await?;
    Ok(actor
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
        .map_err(ControlError::ActorCall)??)
}

pub(super) async fn delete(
    ctx: &ControlContext,
    req: DeleteRequest,
) -> Result<ChangeResponse, ControlError> {
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
        return Err(ControlError::Invalid {
            what: "delete",
            problems,
        });
    }
    if targets.is_empty() {
        return Err(ControlError::NothingToDelete);
    }
    let actor = store_actor(ctx).await?;
    Ok(actor
        .call(
            |reply| SecretStoreMsg::Delete {
                targets,
                dry_run: req.dry_run,
                reply,
            },
            ACTOR_TIMEOUT,
        )
        .await
        .map_err(ControlError::ActorCall)??)
}

// ---------------------------------------------------------------------------------------------
// Get and describe
// ---------------------------------------------------------------------------------------------

fn parse_kind(kind: &str) -> Result<Kind, ControlError> {
    Kind::from_cli(kind).ok_or_else(|| ControlError::UnknownKind(kind.to_owned()))
}

pub(super) fn list(
    ctx: &ControlContext,
    kind: &str,
    q: &ResourceQuery,
) -> Result<ResourceList, ControlError> {
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

pub(super) fn get_one(
    ctx: &ControlContext,
    kind: &str,
    name: &str,
    q: &ResourceQuery,
) -> Result<ResourceView, ControlError> {
    let kind = parse_kind(kind)?;
    let project = project_of(q.project.as_deref())?;
    let snapshot = ctx.snapshot();
    snapshot
        .lookup(&project, kind, name)
        .map(|r| view(ctx, r))
        .ok_or_else(|| ControlError::not_found(&snapshot, &project, kind, name))
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
    // Manual fires are counted apart from the TriggerActor's (see `store::ManualFires`).
    let manual = ctx
        .triggers
        .manual_fires(project, name)
        .ok()
        .unwrap_or_default();
    let (last_fire, last_task) = match (state.last_fire, manual.last_fire) {
        (Some(cron), Some(by_hand)) if by_hand > cron => (Some(by_hand), manual.last_task),
        (None, Some(by_hand)) => (Some(by_hand), manual.last_task),
        (cron, _) => (cron, state.last_task),
    };
    TriggerStatus {
        last_fire: last_fire.map(|f| FireTime::new(f, tz)),
        next_fire: next.map(|n| FireTime::new(n, tz)),
        last_task,
        fires: state.fires + manual.fires,
        skips: state.skips + manual.skips,
        missed: state.missed,
    }
}

fn is_cron(r: &ResourceView) -> bool {
    r.spec.get("cron").is_some_and(|c| !c.is_null())
}

/// Asks the trigger supervisor where a cron trigger is armed; `None` when it does not answer.
async fn trigger_armed(
    ctx: &ControlContext,
    project: &str,
    name: &str,
) -> Option<crate::api::Armed> {
    let sup = ctx
        .actors
        .lookup::<crate::actors::trigger_supervisor::TriggerSupMsg>(
            crate::actors::trigger_supervisor::TRIGGERS,
        )?;
    sup.call(
        |reply| crate::actors::trigger_supervisor::TriggerSupMsg::Where {
            key: (project.to_owned(), name.to_owned()),
            reply,
        },
        ACTOR_TIMEOUT,
    )
    .await
    .ok()
}

/// A SecretStore's refreshed token: as the TokenRefreshActor sees it (its retries and blocks
/// included), or as the snapshot alone tells it when the actor cannot answer.
async fn token_status(
    ctx: &ControlContext,
    project: &str,
    name: &str,
) -> Option<crate::api::TokenStatus> {
    use crate::actors::token_refresh::{self, TokenRefreshMsg};
    let store = ResourceKey::new(project, Kind::SecretStore, name);
    if let Some(actor) = ctx.actors.lookup::<TokenRefreshMsg>(token_refresh::NAME)
        && let Ok(status) = actor
            .call(
                |reply| TokenRefreshMsg::Status {
                    store: store.clone(),
                    reply,
                },
                ACTOR_TIMEOUT,
            )
            .await
    {
        return status;
    }
    token_refresh::status_of(&ctx.snapshot(), &store, chrono::Utc::now())
}

pub(super) async fn describe(
    ctx: &ControlContext,
    kind: &str,
    name: &str,
    q: &ResourceQuery,
) -> Result<Describe, ControlError> {
    let resource = get_one(ctx, kind, name, q)?;
    let key = ResourceKey::new(resource.metadata.project.clone(), resource.kind, name);
    let (key_kind, key_project) = (key.kind, key.project.clone());
    let actor = store_actor(ctx).await?;
    let described = actor
        .call(
            |reply| SecretStoreMsg::Describe { key, reply },
            ACTOR_TIMEOUT,
        )
        .await
        .map_err(ControlError::ActorCall)??;
    let armed = if key_kind == Kind::Trigger && is_cron(&resource) {
        trigger_armed(ctx, &key_project, name).await
    } else {
        None
    };
    Ok(Describe {
        resource,
        fires: if key_kind == Kind::Trigger {
            ctx.triggers
                .events(&key_project, name, 30)
                .map_err(ControlError::ReadTriggerHistory)?
        } else {
            Vec::new()
        },
        rotations: if key_kind == Kind::SecretStore {
            ctx.rotations.history(&key_project, name, 10)?
        } else {
            Vec::new()
        },
        armed,
        token: if key_kind == Kind::SecretStore {
            token_status(ctx, &key_project, name).await
        } else {
            None
        },
        referenced_by: described.referenced_by,
        keys: described.keys,
        pending: described.pending,
        history: described.history,
    })
}
