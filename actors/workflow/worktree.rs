//! The WorkflowActor's part in a task's git worktree (a Workspace with `worktree: true`; the
//! rules are `domain::worktree`, the git commands `process::git`). Before the first step runs
//! (or, after a restart, before the next one) a spawned task checks that the workspace root is in
//! a git work tree, checks out `<data-dir>/runs/<task>/worktree` if it is not there yet, and
//! reports back with [`WorktreeMsg::Ready`]; the steps then run in it. When the task ends,
//! [`WorkflowState::finish`] removes the worktree in a spawned task ([`WorktreeMsg::Removed`])
//! before the end is recorded, or keeps it after a failure. A cancel that arrives meanwhile
//! waits for the checkout (so that it is removed as well) or for the removal.

use std::path::{Path, PathBuf};

use ractor::ActorProcessingErr;
use tracing::Instrument;

use super::{Addr, Next, TaskState, WorkflowMsg, WorkflowState, now};
use crate::api::WorktreeState;
use crate::domain::worktree::{self, DIR};
use crate::process::git::{self, GitError};
use crate::store::TaskRecord;

/// A task's worktree as its WorkflowActor knows it.
pub(in crate::actors) struct Worktree {
    path: PathBuf,
    state: WorktreeState,
}

impl Worktree {
    /// The worktree of `task`, if its workspace asked for one: where it was recorded, else
    /// `<task_dir>/worktree`.
    pub(super) fn of(task: &TaskRecord, task_dir: &Path) -> Option<Worktree> {
        let info = task.info.worktree.as_ref()?;
        Some(Worktree {
            path: info
                .path
                .as_ref()
                .map_or_else(|| task_dir.join(DIR), PathBuf::from),
            state: info.state,
        })
    }

    pub(super) fn inspect(&self) -> serde_json::Value {
        serde_json::json!({
            "path": self.path.display().to_string(),
            "state": self.state.as_str(),
        })
    }
}

/// What the worktree tasks report.
pub enum WorktreeMsg {
    /// The worktree is checked out (the directory the steps run in), or why not; then `next`.
    Ready {
        result: Result<PathBuf, GitError>,
        next: Next,
    },
    /// The worktree of a task that ended was removed, or why not.
    Removed { result: Result<(), GitError> },
}

impl WorktreeMsg {
    pub(super) fn kind(&self) -> &'static str {
        match self {
            WorktreeMsg::Ready { .. } => "WorktreeReady",
            WorktreeMsg::Removed { .. } => "WorktreeRemoved",
        }
    }
}

/// Checks the repository and checks the worktree out unless it is there already; returns the
/// directory the steps run in.
async fn prepare(root: &Path, path: &Path, env: &[(String, String)]) -> Result<PathBuf, GitError> {
    let repo = git::inspect(root, env).await?;
    // A checked-out worktree has a `.git` file naming its repository.
    if !path.join(".git").exists() {
        git::add_worktree(root, path, env).await?;
    }
    let dir = worktree::step_dir(path, &repo.prefix);
    // The root may be a directory HEAD does not have (empty, or ignored): the steps still get it.
    let _ = std::fs::create_dir_all(&dir);
    Ok(dir)
}

impl WorkflowState {
    /// Goes on with `next`: at once, or once the task's worktree is ready if a step is to run.
    pub(super) fn open(
        &mut self,
        me: &Addr<WorkflowMsg>,
        next: Next,
    ) -> Result<(), ActorProcessingErr> {
        let Some(wt) = self
            .worktree
            .as_ref()
            .filter(|_| matches!(next, Next::Run(_)))
        else {
            me.cast(WorkflowMsg::Advance(next))?;
            return Ok(());
        };
        let root = PathBuf::from(&self.task.workspace_root);
        let path = wt.path.clone();
        let env = self.ctx.base_env.clone();
        let me = me.clone();
        self.preparing = true;
        tokio::spawn(
            async move {
                let result = prepare(&root, &path, &env).await;
                let _ = me.cast(WorkflowMsg::Worktree(WorktreeMsg::Ready { result, next }));
            }
            .instrument(self.span.clone()),
        );
        Ok(())
    }

    /// Ends the task in `state`: removes its worktree first (after a success or a cancel), or
    /// keeps it (after a failure), then records the end ([`finish_now`](Self::finish_now)).
    pub(super) fn finish(
        &mut self,
        me: &Addr<WorkflowMsg>,
        state: TaskState,
        reason: Option<String>,
    ) {
        if self.finished || self.finishing.is_some() {
            return;
        }
        let Some(path) = self
            .worktree
            .as_ref()
            .filter(|w| w.state == WorktreeState::Created)
            .map(|w| w.path.clone())
        else {
            return self.finish_now(me, state, reason);
        };
        match worktree::after(state) {
            WorktreeState::Removed => {
                self.finishing = Some((state, reason));
                let root = PathBuf::from(&self.task.workspace_root);
                let env = self.ctx.base_env.clone();
                let me = me.clone();
                tokio::spawn(
                    async move {
                        let result = git::remove_worktree(&root, &path, &env).await;
                        let _ = me.cast(WorkflowMsg::Worktree(WorktreeMsg::Removed { result }));
                    }
                    .instrument(self.span.clone()),
                );
            }
            WorktreeState::Requested | WorktreeState::Created | WorktreeState::Kept => {
                self.record_worktree(WorktreeState::Kept, None);
                self.event(&format!("worktree kept for inspection: {}", path.display()));
                self.finish_now(me, state, reason);
            }
        }
    }

    /// A worktree task reported.
    pub(super) async fn worktree_done(&mut self, me: &Addr<WorkflowMsg>, msg: WorktreeMsg) {
        match msg {
            WorktreeMsg::Ready { result, next } => {
                self.preparing = false;
                match result {
                    Ok(dir) => {
                        let new = self
                            .worktree
                            .as_ref()
                            .filter(|w| w.state != WorktreeState::Created)
                            .map(|w| w.path.display().to_string());
                        if let Some(path) = new {
                            self.record_worktree(WorktreeState::Created, Some(&path));
                            self.event(&format!("worktree created: {path}"));
                        }
                        self.workdir = dir.display().to_string();
                        if self.cancelling.is_some() {
                            return self.finish_cancelled(me);
                        }
                        self.advance(me, next).await;
                    }
                    Err(e) if self.cancelling.is_some() => {
                        tracing::warn!(task = self.id(), error = %e, "cannot prepare the task's worktree");
                        self.finish_cancelled(me);
                    }
                    Err(e) => {
                        let reason = format!("cannot prepare the task's git worktree: {e}");
                        self.finish(me, TaskState::Failed, Some(reason));
                    }
                }
            }
            WorktreeMsg::Removed { result } => {
                let Some((state, reason)) = self.finishing.take() else {
                    return;
                };
                match result {
                    Ok(()) => {
                        self.record_worktree(WorktreeState::Removed, None);
                        self.event("worktree removed");
                    }
                    Err(e) => {
                        tracing::warn!(task = self.id(), error = %e, "cannot remove the task's worktree");
                        self.record_worktree(WorktreeState::Kept, None);
                        self.event(&format!("worktree kept: cannot remove it: {e}"));
                    }
                }
                self.finish_now(me, state, reason);
            }
        }
    }

    fn record_worktree(&mut self, state: WorktreeState, path: Option<&str>) {
        if let Some(wt) = self.worktree.as_mut() {
            wt.state = state;
        }
        if let Err(e) = self.ctx.store.set_worktree(self.id(), state, path) {
            tracing::error!(task = self.id(), error = %e, "cannot record the task's worktree");
        }
    }

    pub(super) fn event(&self, message: &str) {
        if let Err(e) = self.ctx.store.event(self.id(), message, now()) {
            tracing::error!(task = self.id(), error = %e, "cannot record a task event");
        }
    }
}
