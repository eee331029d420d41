//! The TaskSupervisor's crash recovery, per node: at start it kills the process groups that
//! this node's previous daemon left behind — the runs recorded as running of its own tasks,
//! and the runs of its tasks that another node failed while this one was dead — and it resumes
//! only its own running tasks. Several nodes share one PostgreSQL database: another live node's
//! tasks and agents are that node's, and are left alone. A task that names no node was started
//! before tasks named their node (on SQLite the data dir's one node): it counts as this node's.

use std::collections::HashSet;

use super::TaskContext;
use crate::domain::launch::RUN_ID_VAR;
use crate::process;
use crate::store::{Queued, StoreError};

/// Whether a task found running at start is this node's to resume.
pub(super) fn ours(task: &Queued, node: &str) -> bool {
    task.node.as_deref().is_none_or(|n| n == node)
}

/// Kills what this node's previous daemon left running: by recorded process group, and by the
/// run marker in the environment (which also finds an agent whose group was not recorded yet
/// when the daemon died, and processes that left the group). Then the runs that another node
/// interrupted are known reaped.
pub(super) fn kill_orphans(ctx: &TaskContext) -> Result<(), StoreError> {
    let runs = ctx.store.running_runs(&ctx.node)?;
    let marked: HashSet<String> = runs.iter().map(|r| r.run_id.to_string()).collect();
    let scope = format!("ORCHESTRATOR_SOCKET={}", ctx.socket.display());
    let killed = process::kill_marked(&scope, RUN_ID_VAR, &marked);
    if killed > 0 {
        tracing::warn!(
            killed,
            "killed orphaned agent processes found by their run marker"
        );
    }
    for run in &runs {
        if let Some(pid) = run.pid {
            let killed = process::kill_orphaned_group(pid, run.pid_start);
            if killed > 0 {
                tracing::warn!(
                    task = run.task_id,
                    run = run.run_id,
                    pgid = pid,
                    killed,
                    "killed an orphaned agent process group"
                );
            }
        }
    }
    let ids: Vec<u64> = runs.iter().map(|r| r.run_id).collect();
    ctx.store.reaped(&ids)
}
