//! A short program run to completion, as rotation providers and the git of task worktrees run
//! theirs: executed directly (no shell) in the working directory given, with exactly the
//! environment given, a value written to its stdin, stdout discarded (or its first bytes kept,
//! [`run_program_output`]) and stderr kept for the error. The program is found the way an
//! agent's is (`super::resolve_program`: a relative path against the working directory, a bare
//! name on the `PATH` of the environment given), and a program that cannot be found or is not
//! executable, or a working directory that is missing, is a [`ProgramError::NotStarted`]: nothing
//! ran, which a caller may rely on. It leads its own process group, which is killed (SIGKILL)
//! when the timeout fires or when the caller stops waiting, so nothing it started is left behind.
//! A failing program's stderr is redacted before it is quoted: it may echo what it was given.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

use super::group::GroupGuard;
use super::{ProcessError, resolve_program, spawn_error};
use crate::domain::redact::Redactor;

/// How much of a failing program's stderr (its end, in characters) the error quotes.
const STDERR_TAIL: usize = 300;

/// One program to run.
pub struct ProgramSpec<'a> {
    /// Looked up on the `PATH` in `env` unless it contains `/`; a relative path is taken
    /// relative to `cwd`.
    pub program: &'a str,
    pub args: &'a [String],
    /// The complete environment, applied in order: nothing is inherited from the daemon.
    pub env: Vec<(OsString, OsString)>,
    /// Written to stdin, which is then closed; `None` closes it at once.
    pub stdin: Option<&'a [u8]>,
    /// Counted from the moment stdin was written.
    pub timeout: Duration,
    /// The working directory (made absolute against the daemon's own).
    pub cwd: &'a Path,
}

/// Why a program did not succeed.
#[derive(Debug, Error)]
pub enum ProgramError {
    /// Nothing ran: the program is missing or not executable, or the spawn failed.
    #[error("{0}")]
    NotStarted(ProcessError),
    /// Nothing ran: the working directory is missing.
    #[error(
        "working directory {} does not exist or is not a directory: create it or fix the path",
        path.display()
    )]
    NoDir { path: PathBuf },
    #[error("{program} did not finish within {} s", timeout.as_secs())]
    TimedOut { program: String, timeout: Duration },
    #[error("{program}: {source}")]
    Wait { program: String, source: io::Error },
    /// `stderr` is redacted and holds at most its last 300 characters.
    #[error("{program} exited with {status}: {stderr}")]
    Failed {
        program: String,
        status: ExitStatus,
        stderr: String,
    },
}

impl ProgramError {
    /// Whether the program never ran (so it cannot have done anything).
    pub fn never_started(&self) -> bool {
        match self {
            ProgramError::NotStarted(_) | ProgramError::NoDir { .. } => true,
            ProgramError::TimedOut { .. }
            | ProgramError::Wait { .. }
            | ProgramError::Failed { .. } => false,
        }
    }
}

/// Runs `spec` and waits for it to exit and close stderr. `redactor` is called only when the
/// program failed, so it sees the secrets as they are then.
pub async fn run_program(
    spec: ProgramSpec<'_>,
    redactor: impl FnOnce() -> Redactor,
) -> Result<(), ProgramError> {
    run(spec, redactor, None).await.map(drop)
}

/// Like [`run_program`], and returns the first `max_stdout` bytes of its stdout (invalid UTF-8
/// replaced); the rest is read and dropped.
pub async fn run_program_output(
    spec: ProgramSpec<'_>,
    redactor: impl FnOnce() -> Redactor,
    max_stdout: usize,
) -> Result<String, ProgramError> {
    let out = run(spec, redactor, Some(max_stdout)).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Reads `pipe` to its end, keeping the first `cap` bytes.
async fn read_bounded(pipe: &mut (impl AsyncRead + Unpin), cap: usize) -> io::Result<Vec<u8>> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = pipe.read(&mut buf).await?;
        if n == 0 {
            return Ok(kept);
        }
        let room = cap.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
}

async fn run(
    spec: ProgramSpec<'_>,
    redactor: impl FnOnce() -> Redactor,
    stdout_cap: Option<usize>,
) -> Result<Vec<u8>, ProgramError> {
    let ProgramSpec {
        program,
        args,
        env,
        stdin,
        timeout,
        cwd,
    } = spec;
    let cwd = match std::path::absolute(cwd) {
        Ok(abs) if abs.is_dir() => abs,
        _ => {
            return Err(ProgramError::NoDir {
                path: cwd.to_owned(),
            });
        }
    };
    let path_var = env
        .iter()
        .rev()
        .find(|(name, _)| name == "PATH")
        .and_then(|(_, value)| value.to_str());
    let resolved = resolve_program(program, path_var, &cwd, "rotation program")
        .map_err(ProgramError::NotStarted)?;
    let mut command = Command::new(&resolved);
    command
        .arg0(program)
        .args(args)
        .current_dir(&cwd)
        .env_clear()
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(if stdout_cap.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| {
        ProgramError::NotStarted(spawn_error(program, &resolved, &cwd, source))
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
    let mut stdout_pipe = child.stdout.take();
    let finished = tokio::time::timeout(timeout, async {
        let read_stderr = async {
            let mut stderr = Vec::new();
            if let Some(pipe) = &mut stderr_pipe {
                pipe.read_to_end(&mut stderr).await?;
            }
            Ok(stderr)
        };
        let read_stdout = async {
            match (&mut stdout_pipe, stdout_cap) {
                (Some(pipe), Some(cap)) => read_bounded(pipe, cap).await,
                _ => Ok(Vec::new()),
            }
        };
        tokio::try_join!(child.wait(), read_stderr, read_stdout)
    })
    .await;
    let (status, stderr, stdout) = match finished {
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
        return Ok(stdout);
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::group::{group_alive, parse_stat};

    fn env() -> Vec<(OsString, OsString)> {
        let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into());
        vec![("PATH".into(), path), ("ONLY".into(), "this".into())]
    }

    async fn sh(script: &str, stdin: Option<&[u8]>, timeout: Duration) -> Result<(), ProgramError> {
        let args = ["-c".to_owned(), script.to_owned()];
        let spec = ProgramSpec {
            program: "sh",
            args: &args,
            env: env(),
            stdin,
            timeout,
            cwd: Path::new("."),
        };
        run_program(spec, || Redactor::new(["s3cret"])).await
    }

    #[tokio::test]
    async fn stdin_and_exactly_the_given_environment_arrive() {
        let script = r#"read v; [ "$v" = value ] && [ "$ONLY" = this ] && [ -z "$HOME" ]"#;
        let long = Duration::from_secs(30);
        sh(script, Some(b"value\n"), long).await.expect("succeeds");
        let err = sh(script, None, long).await.expect_err("no value on stdin");
        assert!(matches!(err, ProgramError::Failed { .. }), "{err}");
    }

    #[tokio::test]
    async fn a_failure_quotes_the_end_of_stderr_redacted() {
        let script = "printf 'x%.0s' $(seq 400) >&2; echo ' the s3cret was refused' >&2; exit 4";
        let err = sh(script, None, Duration::from_secs(30))
            .await
            .expect_err("fails");
        let text = err.to_string();
        assert!(
            text.starts_with("sh exited with exit status: 4: x")
                && text.ends_with("the [REDACTED] was refused"),
            "{text}"
        );
        let ProgramError::Failed { stderr, .. } = err else {
            panic!("not a failure: {text}");
        };
        assert_eq!(stderr.chars().count(), STDERR_TAIL);
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("pid");
        let script = format!("sleep 600 & echo $! > {}; sleep 600", pid_file.display());
        let err = sh(&script, None, Duration::from_secs(2))
            .await
            .expect_err("times out");
        assert_eq!(err.to_string(), "sh did not finish within 2 s");
        let grandchild: i32 = std::fs::read_to_string(&pid_file)
            .expect("pid file")
            .trim()
            .parse()
            .expect("pid");
        let pgid = live_pgid(grandchild);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while pgid.is_some_and(group_alive) {
            assert!(
                std::time::Instant::now() < deadline,
                "the group outlived the timeout"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The process group of `pid` if it still exists and is not a zombie.
    fn live_pgid(pid: i32) -> Option<i32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        parse_stat(&stat)
            .filter(|(state, _)| *state != 'Z' && *state != 'X')
            .map(|(_, pgrp)| pgrp)
    }

    /// Runs `program` in `cwd` with no arguments.
    async fn start(program: &str, cwd: &Path) -> Result<(), ProgramError> {
        let spec = ProgramSpec {
            program,
            args: &[],
            env: env(),
            stdin: None,
            timeout: Duration::from_secs(30),
            cwd,
        };
        run_program(spec, Redactor::none).await
    }

    #[tokio::test]
    async fn a_program_that_cannot_start_says_why_and_never_started() {
        let dir = tempfile::tempdir().expect("tempdir");
        let plain = dir.path().join("plain.sh");
        std::fs::write(&plain, "#!/bin/sh\nexit 0\n").expect("write");
        for (program, cwd, want) in [
            (
                "no-such-program-anywhere",
                dir.path().to_owned(),
                "command not found: no-such-program-anywhere: it is in no directory of the rotation program's PATH",
            ),
            (
                "./missing.sh",
                dir.path().to_owned(),
                "command not found: ./missing.sh: ",
            ),
            ("./plain.sh", dir.path().to_owned(), "is not executable"),
            ("true", dir.path().join("gone"), "working directory "),
        ] {
            let err = start(program, &cwd).await.expect_err(program);
            assert!(err.never_started(), "{err}");
            assert!(err.to_string().contains(want), "{program}: {err}");
        }
        let err = sh("exit 3", None, Duration::from_secs(30))
            .await
            .expect_err("fails");
        assert!(!err.never_started(), "{err}");
    }

    #[tokio::test]
    async fn a_relative_program_runs_in_the_working_directory_given() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("here.sh");
        std::fs::write(
            &script,
            "#!/bin/sh\n[ -e ./marker ] || exit 7\ntouch ./ran\n",
        )
        .expect("write");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        std::fs::write(dir.path().join("marker"), "").expect("marker");
        start("./here.sh", dir.path()).await.expect("runs");
        assert!(dir.path().join("ran").exists());
    }
}
