//! The git worktree of a task whose Workspace sets `worktree: true`: its life and the rules
//! that decide it, pure. A task of such a workspace is created `requested`; its WorkflowActor
//! checks out a worktree of the workspace's repository (`git worktree add --detach`, at the
//! root's `HEAD`) before the first step and runs every step in it (`created`); when the task
//! ends the worktree is removed (`removed`), except after a failure, when it is kept for
//! inspection (`kept`). The git commands run in `process::git`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::workflow::TaskState;

/// The directory of a task's worktree inside its run directory (`<data-dir>/runs/<task>/`).
pub const DIR: &str = "worktree";

/// Where a task's worktree is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorktreeState {
    /// The workspace asks for one; it is not checked out (yet, or its creation failed).
    Requested,
    /// Checked out; the steps run in it.
    Created,
    /// Removed after the task ended.
    Removed,
    /// Left in place after the task failed.
    Kept,
}

impl WorktreeState {
    pub fn as_str(self) -> &'static str {
        match self {
            WorktreeState::Requested => "requested",
            WorktreeState::Created => "created",
            WorktreeState::Removed => "removed",
            WorktreeState::Kept => "kept",
        }
    }

    pub fn parse(s: &str) -> Option<WorktreeState> {
        [
            WorktreeState::Requested,
            WorktreeState::Created,
            WorktreeState::Removed,
            WorktreeState::Kept,
        ]
        .into_iter()
        .find(|w| w.as_str() == s)
    }
}

/// What becomes of a created worktree when its task ends in `state`: kept after a failure (for
/// inspection), removed after a success or a cancel.
pub fn after(state: TaskState) -> WorktreeState {
    match state {
        TaskState::Failed => WorktreeState::Kept,
        TaskState::Succeeded | TaskState::Cancelled => WorktreeState::Removed,
        // Not an end; a task is only asked about once it ends.
        TaskState::Pending | TaskState::Running => WorktreeState::Created,
    }
}

/// Where the steps of a task run: the worktree itself, or the same subdirectory of it that the
/// workspace root is of its repository (`prefix`, as `git rev-parse --show-prefix` prints it).
/// A prefix that would leave the worktree is ignored.
pub fn step_dir(worktree: &Path, prefix: &str) -> PathBuf {
    let prefix = Path::new(prefix.trim_end_matches(['\n', '/']));
    let inside = prefix
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    if inside {
        worktree.join(prefix)
    } else {
        worktree.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_failed_task_keeps_its_worktree() {
        for (state, want) in [
            (TaskState::Succeeded, WorktreeState::Removed),
            (TaskState::Cancelled, WorktreeState::Removed),
            (TaskState::Failed, WorktreeState::Kept),
        ] {
            assert_eq!(after(state), want, "{state:?}");
        }
    }

    #[test]
    fn states_round_trip_through_their_names() {
        for s in [
            WorktreeState::Requested,
            WorktreeState::Created,
            WorktreeState::Removed,
            WorktreeState::Kept,
        ] {
            assert_eq!(WorktreeState::parse(s.as_str()), Some(s));
        }
        assert_eq!(WorktreeState::parse("gone"), None);
    }

    #[test]
    fn steps_run_in_the_root_s_place_inside_the_worktree() {
        let wt = Path::new("/data/runs/7/worktree");
        for (prefix, want) in [
            ("", "/data/runs/7/worktree"),
            ("\n", "/data/runs/7/worktree"),
            ("services/api/\n", "/data/runs/7/worktree/services/api"),
            ("../escape/\n", "/data/runs/7/worktree"),
            ("/abs/\n", "/data/runs/7/worktree"),
        ] {
            assert_eq!(step_dir(wt, prefix), Path::new(want), "{prefix:?}");
        }
    }
}
