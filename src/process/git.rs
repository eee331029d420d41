//! The git commands of task worktrees (a Workspace with `worktree: true`, see
//! `domain::worktree`), run through [`run_program`](super::run_program) like every short
//! program: `git` found on the `PATH` of the environment given (the daemon's base environment),
//! in the workspace root, without a shell, with a timeout and the process group killed if it
//! runs over.
//!
//! - [`inspect`]: the root must be inside a git work tree with a commit (`HEAD`); it answers
//!   where in the repository the root is, so the steps run in the same place of the worktree.
//! - [`add_worktree`]: `git worktree add --force --detach <path> HEAD` — detached, so no branch
//!   is created; `--force` only lets a path that was registered and then deleted be used again.
//! - [`remove_worktree`]: `git worktree remove --force <path>`, which also drops git's record
//!   of it; a worktree whose directory is gone already counts as removed.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use thiserror::Error;

use super::program::{ProgramError, ProgramSpec, run_program, run_program_output};
use crate::domain::redact::Redactor;

/// How long `git rev-parse` may take.
const INSPECT_TIMEOUT: Duration = Duration::from_secs(30);

/// How long checking out or removing a worktree may take (a large repository).
const WORKTREE_TIMEOUT: Duration = Duration::from_secs(600);

/// Why a worktree could not be prepared or removed.
#[derive(Debug, Error)]
pub enum GitError {
    #[error(
        "{} is not in a git work tree: `worktree: true` checks out a git worktree of the workspace root; run `git init` there and commit, or drop `worktree: true`",
        root.display()
    )]
    NotARepository { root: PathBuf },
    #[error(
        "the git repository at {} has no commit yet: a worktree checks out HEAD, so commit something first",
        root.display()
    )]
    NoCommit { root: PathBuf },
    #[error(
        "workspace root {} does not exist: `worktree: true` needs a git repository there; create it or fix root_path",
        root.display()
    )]
    Missing { root: PathBuf },
    #[error("cannot run git for `worktree: true`: {0}; install git or put it on the daemon's PATH")]
    NoGit(ProgramError),
    #[error("git {command} failed: {source}")]
    Failed {
        command: &'static str,
        source: ProgramError,
    },
}

/// Where a workspace root is in its repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repository {
    /// The root's path inside the repository (`git rev-parse --show-prefix`): empty at the top,
    /// else `dir/sub/`.
    pub prefix: String,
}

fn git_env(base: &[(String, String)]) -> Vec<(OsString, OsString)> {
    let mut env: Vec<(OsString, OsString)> = base
        .iter()
        .map(|(k, v)| (OsString::from(k), OsString::from(v)))
        .collect();
    // Never wait for a password or an editor: nobody is there to answer.
    env.push(("GIT_TERMINAL_PROMPT".into(), "0".into()));
    env.push(("GIT_EDITOR".into(), "true".into()));
    env
}

async fn git(
    root: &Path,
    env: &[(String, String)],
    args: &[&str],
    timeout: Duration,
    stdout: bool,
) -> Result<String, ProgramError> {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let spec = ProgramSpec {
        program: "git",
        args: &args,
        env: git_env(env),
        stdin: None,
        timeout,
        cwd: root,
    };
    if stdout {
        run_program_output(spec, Redactor::none, 64 * 1024).await
    } else {
        run_program(spec, Redactor::none)
            .await
            .map(|()| String::new())
    }
}

/// Checks that `root` is in a git work tree with a commit; returns where in it.
pub async fn inspect(root: &Path, env: &[(String, String)]) -> Result<Repository, GitError> {
    let not_a_repo = || GitError::NotARepository {
        root: root.to_owned(),
    };
    let args = ["rev-parse", "--is-inside-work-tree", "--show-prefix"];
    let out = match git(root, env, &args, INSPECT_TIMEOUT, true).await {
        Ok(out) => out,
        Err(ProgramError::NoDir { .. }) => {
            return Err(GitError::Missing {
                root: root.to_owned(),
            });
        }
        Err(ProgramError::Failed { .. }) => return Err(not_a_repo()),
        Err(e) if e.never_started() => return Err(GitError::NoGit(e)),
        Err(source) => {
            return Err(GitError::Failed {
                command: "rev-parse",
                source,
            });
        }
    };
    let mut lines = out.lines();
    if lines.next() != Some("true") {
        return Err(not_a_repo());
    }
    let prefix = lines.next().unwrap_or("").to_owned();
    let head = ["rev-parse", "--verify", "--quiet", "HEAD^{commit}"];
    match git(root, env, &head, INSPECT_TIMEOUT, false).await {
        Ok(_) => Ok(Repository { prefix }),
        Err(ProgramError::Failed { .. }) => Err(GitError::NoCommit {
            root: root.to_owned(),
        }),
        Err(source) => Err(GitError::Failed {
            command: "rev-parse",
            source,
        }),
    }
}

/// Checks out a detached worktree of `root`'s repository at `HEAD` into `path` (which must not
/// exist or be empty).
pub async fn add_worktree(
    root: &Path,
    path: &Path,
    env: &[(String, String)],
) -> Result<(), GitError> {
    let path = path.display().to_string();
    let args = ["worktree", "add", "--force", "--detach", &path, "HEAD"];
    git(root, env, &args, WORKTREE_TIMEOUT, false)
        .await
        .map(drop)
        .map_err(|source| GitError::Failed {
            command: "worktree add",
            source,
        })
}

/// Removes the worktree at `path` (whatever changes it holds) and git's record of it.
pub async fn remove_worktree(
    root: &Path,
    path: &Path,
    env: &[(String, String)],
) -> Result<(), GitError> {
    let shown = path.display().to_string();
    let args = ["worktree", "remove", "--force", &shown];
    match git(root, env, &args, WORKTREE_TIMEOUT, false).await {
        Ok(_) => Ok(()),
        // Gone already (removed by hand, or by the run before a crash).
        Err(_) if !path.exists() => Ok(()),
        Err(source) => Err(GitError::Failed {
            command: "worktree remove",
            source,
        }),
    }
}
