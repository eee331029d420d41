//! A short program run to completion, as rotation providers run theirs: executed directly (no
//! shell) with exactly the environment given, a value written to its stdin, stdout discarded and
//! stderr kept for the error. It leads its own process group, which is killed (SIGKILL) when the
//! timeout fires or when the caller stops waiting, so nothing it started is left behind. A failing
//! program's stderr is redacted before it is quoted: it may echo what it was given.

use std::ffi::OsString;
use std::io;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::group::GroupGuard;
use crate::redact::Redactor;

/// How much of a failing program's stderr (its end, in characters) the error quotes.
const STDERR_TAIL: usize = 300;

/// One program to run.
pub struct ProgramSpec<'a> {
    /// Looked up on the `PATH` in `env` unless it contains `/`.
    pub program: &'a str,
    pub args: &'a [String],
    /// The complete environment, applied in order: nothing is inherited from the daemon.
    pub env: Vec<(OsString, OsString)>,
    /// Written to stdin, which is then closed; `None` closes it at once.
    pub stdin: Option<&'a [u8]>,
    /// Counted from the moment stdin was written.
    pub timeout: Duration,
}

/// Why a program did not succeed.
#[derive(Debug, Error)]
pub enum ProgramError {
    #[error("cannot start {program}: {source}")]
    Start { program: String, source: io::Error },
    #[error("{program} did not finish within {} s", timeout.as_secs())]
    TimedOut { program: String, timeout: Duration },
    #[error("{program}: {source}")]
    Wait { program: String, source: io::Error },
    /// `stderr` is redacted and holds at most its last [`STDERR_TAIL`] characters.
    #[error("{program} exited with {status}: {stderr}")]
    Failed {
        program: String,
        status: ExitStatus,
        stderr: String,
    },
}

/// Runs `spec` and waits for it to exit and close stderr. `redactor` is called only when the
/// program failed, so it sees the secrets as they are then.
pub async fn run_program(
    spec: ProgramSpec<'_>,
    redactor: impl FnOnce() -> Redactor,
) -> Result<(), ProgramError> {
    let ProgramSpec {
        program,
        args,
        env,
        stdin,
        timeout,
    } = spec;
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| ProgramError::Start {
        program: program.to_owned(),
        source,
    })?;
    // Declared after `child`, so it is dropped first: on an early return or a drop of this future
    // the group is killed while the leader is still unreaped (or was only just reaped).
    let mut guard = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .map(GroupGuard::new);
    if let Some(mut pipe) = child.stdin.take() {
        if let Some(bytes) = stdin {
            let _ = pipe.write_all(bytes).await;
        }
        drop(pipe);
    }
    let mut stderr_pipe = child.stderr.take();
    let finished = tokio::time::timeout(timeout, async {
        let read_stderr = async {
            let mut stderr = Vec::new();
            if let Some(pipe) = &mut stderr_pipe {
                pipe.read_to_end(&mut stderr).await?;
            }
            Ok(stderr)
        };
        tokio::try_join!(child.wait(), read_stderr)
    })
    .await;
    let (status, stderr) = match finished {
        Ok(Ok(done)) => done,
        Ok(Err(source)) => {
            return Err(ProgramError::Wait {
                program: program.to_owned(),
                source,
            });
        }
        Err(_) => {
            // Returning drops `guard` before `child`, which kills the group.
            return Err(ProgramError::TimedOut {
                program: program.to_owned(),
                timeout,
            });
        }
    };
    // Reaped and done: what it left running is its own business, as it always was.
    if let Some(guard) = &mut guard {
        guard.disarm();
    }
    if status.success() {
        return Ok(());
    }
    let stderr = redactor().redact_str(&String::from_utf8_lossy(&stderr));
    let tail: String = stderr
        .trim()
        .chars()
        .rev()
        .take(STDERR_TAIL)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(ProgramError::Failed {
        program: program.to_owned(),
        status,
        stderr: tail,
    })
}
