//! Every child process the daemon starts, from spawn to reap (SPEC §6); nothing else in the crate
//! spawns or signals a process. This file runs one agent: resolving the program on the agent's
//! own `PATH` and executing it directly (never through a shell), a cleared environment, the
//! working directory, the prompt on stdin, the child's own process group, the timeout, cancel
//! and stream-json guard escalation (SIGTERM to the group, grace, SIGKILL to the group, reap), and
//! the [`GroupGuard`] that kills the group if the owner goes away without waiting. Beside it:
//! `env.rs` (the base
//! environment every child starts from), `group.rs` (process groups, `/proc` scans, orphan kill
//! after a crash), `log.rs` (the run log, streamed and redacted, and the parse of a stream-json
//! agent's stdout), `program.rs` (the short programs rotation providers run) and `git.rs` (the
//! git of task worktrees, through `program.rs`).
//!
//! An agent's background children do not outlive it: once the leader has exited and been reaped,
//! the rest of its process group gets SIGKILL. Otherwise a grandchild holding stdout open would
//! keep the log readers from ever seeing end-of-file. A process that left the group (`setsid`)
//! cannot be reached that way; if it still holds a pipe when the drain window
//! (`grace`, at least [`MIN_DRAIN`]) has passed, that stream stops being read and the log says so.

mod env;
pub mod git;
mod group;
mod log;
mod program;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use nix::sys::signal::Signal;
use nix::unistd::{AccessFlags, access};
use thiserror::Error;
use tokio::io::AsyncWriteExt;
use tokio::process::Command;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub use env::base_env;
pub use group::{
    GroupGuard, group_alive, kill_group, kill_marked, kill_orphaned_group, own_pid, start_time,
};
pub use log::MAX_LINE;
pub use program::{ProgramError, ProgramSpec, run_program, run_program_output};

use crate::domain::redact::Secrets;
use crate::domain::stream_json::{Guards, StreamSummary};
use log::{LogTasks, StreamReport, open_log};

/// The shortest time the log readers are given to reach end-of-file after the process group was
/// killed, whatever `grace` says.
pub const MIN_DRAIN: Duration = Duration::from_secs(2);

/// Why an agent could not be started or waited for.
#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("agent command is empty: give at least the program to run")]
    EmptyCommand,
    #[error("command not found: {program}: {hint}")]
    NotFound { program: String, hint: String },
    #[error(
        "program {program:?} ({}) is not executable: make it executable (chmod +x) or fix the command",
        path.display()
    )]
    PermissionDenied { program: String, path: PathBuf },
    #[error(
        "working directory {} does not exist or is not a directory: create it or fix the workspace root_path",
        path.display()
    )]
    Cwd { path: PathBuf },
    #[error("run log {}: {source}: check that the data directory is writable", path.display())]
    Log { path: PathBuf, source: io::Error },
    #[error("cannot start program {program:?}: {source}")]
    Spawn { program: String, source: io::Error },
    #[error("waiting for agent process {pid}: {source}")]
    Wait { pid: i32, source: io::Error },
}

/// Everything needed to run one agent.
pub struct SpawnSpec {
    /// `argv[0]` is the program: a path if it contains `/` (relative to `cwd`), otherwise looked
    /// up on the `PATH` in `env`. It is executed directly, never through a shell.
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// The complete environment: nothing is inherited from the daemon.
    pub env: Vec<(String, String)>,
    /// Written to the child's stdin, which is then closed; `None` gives it `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// The run log, created (mode 0600, truncated if it exists) by [`spawn`].
    pub log_path: PathBuf,
    /// Counted from the spawn, not from the call to [`Running::wait`].
    pub timeout: Duration,
    /// Time between SIGTERM and SIGKILL, both sent to the whole process group.
    pub grace: Duration,
    /// Redacted bytes logged per stream before the truncation marker.
    pub stream_cap: u64,
    /// Bytes of redacted stdout kept for `{prev_stdout}`; never splits a UTF-8 character.
    pub capture_cap: usize,
    /// What to redact from both streams and the capture; a live lease follows every change.
    pub secrets: Secrets,
    /// The agent prints stream-json: stdout is parsed as it arrives (`domain::stream_json`)
    /// and the run is stopped (like a timeout) when it exceeds these guards.
    pub stream: Option<Guards>,
    /// Stop the run (like a timeout) when neither stream delivers a byte for this long.
    pub idle_timeout: Option<Duration>,
}

impl fmt::Debug for SpawnSpec {
    /// Shows variable names and the stdin length only: values and prompts may hold secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let env: Vec<&str> = self.env.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("SpawnSpec")
            .field("program", &self.argv.first())
            .field("args", &self.argv.len().saturating_sub(1))
            .field("cwd", &self.cwd)
            .field("env", &env)
            .field("stdin_bytes", &self.stdin.as_ref().map(Vec::len))
            .field("log_path", &self.log_path)
            .field("timeout", &self.timeout)
            .field("grace", &self.grace)
            .field("stream_cap", &self.stream_cap)
            .field("capture_cap", &self.capture_cap)
            .field("secrets", &self.secrets)
            .field("stream", &self.stream)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

/// How a run ended, as the workflow sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The process exited by itself with this code.
    Exited(i32),
    /// The process was killed by this signal, not by us.
    Signaled(i32),
    /// The timeout fired; the group was terminated, whatever the exit status says.
    TimedOut,
    /// [`Canceller::cancel`] was called; the group was terminated.
    Cancelled,
    /// A guard of the stream-json run was exceeded ([`Finished::stream`] says which); the group
    /// was terminated.
    Stopped,
    /// Neither stream delivered a byte for the idle timeout (seconds); the group was terminated.
    IdleTimedOut { secs: u64 },
}

impl Outcome {
    pub fn success(self) -> bool {
        self == Outcome::Exited(0)
    }
}

/// How the leader process actually terminated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
}

/// The result of a finished run.
#[derive(Debug)]
pub struct Finished {
    pub outcome: Outcome,
    pub exit: Exit,
    /// Captured stdout: redacted, at most `capture_cap` bytes, invalid UTF-8 replaced (empty for
    /// a stream-json run, whose result is in `stream`).
    pub stdout: String,
    /// What a stream-json run's stdout said, redacted (boxed: most runs have none).
    pub stream: Option<Box<StreamSummary>>,
    /// Raw bytes the child wrote, including what was not logged.
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
    /// A stream reached `stream_cap` and the log holds a truncation marker.
    pub truncated: bool,
    /// `stdout` is not the whole output (the capture cap or the stream cap was reached).
    pub capture_truncated: bool,
    pub started_at: DateTime<Utc>,
    /// When the leader was reaped.
    pub ended_at: DateTime<Utc>,
    /// Writing the run log failed; the run itself completed.
    pub log_error: Option<ProcessError>,
}

/// Asks a running agent to stop. Cloneable and idempotent; the SIGTERM, grace, SIGKILL sequence
/// runs inside [`Running::wait`], which must be polled (spawn it in a task).
#[derive(Clone)]
pub struct Canceller(watch::Sender<bool>);

impl Canceller {
    pub fn cancel(&self) {
        self.0.send_replace(true);
    }
}

impl fmt::Debug for Canceller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Canceller(cancelled: {})", *self.0.borrow())
    }
}

/// A spawned agent. Dropping it without [`wait`](Running::wait) kills its process group.
pub struct Running {
    child: tokio::process::Child,
    guard: GroupGuard,
    program: String,
    deadline: Instant,
    grace: Duration,
    cancel: watch::Sender<bool>,
    /// Dropping or setting it makes the readers stop; see [`MIN_DRAIN`].
    stop_readers: watch::Sender<bool>,
    stdout: JoinHandle<StreamReport>,
    stderr: JoinHandle<StreamReport>,
    writer: JoinHandle<io::Result<()>>,
    /// Turns true when a stream-json guard was exceeded.
    tripped: watch::Receiver<bool>,
    /// The idle timeout and when the streams last delivered bytes.
    idle: Option<(Duration, log::Activity)>,
    _stdin: Option<AbortOnDrop>,
    log_path: PathBuf,
    started_at: DateTime<Utc>,
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("pid", &self.guard.pgid())
            .field("program", &self.program)
            .finish()
    }
}

impl Running {
    /// The leader's pid, which is also the process group id.
    pub fn pid(&self) -> u32 {
        self.guard.pgid().unsigned_abs()
    }

    pub fn canceller(&self) -> Canceller {
        Canceller(self.cancel.clone())
    }

    /// Waits for the run to end: the leader exits, the timeout fires, a cancel arrives or a
    /// stream-json guard is exceeded. On timeout, cancel or guard the group gets SIGTERM, then
    /// SIGKILL after `grace`. The leader is always
    /// reaped and the rest of its group killed; this returns once both pipes reached end-of-file
    /// (or were given up, see [`MIN_DRAIN`]) and the log is flushed.
    pub async fn wait(self) -> Result<Finished, ProcessError> {
        let Running {
            mut child,
            mut guard,
            program: _,
            deadline,
            grace,
            cancel,
            stop_readers,
            stdout,
            stderr,
            writer,
            mut tripped,
            idle,
            _stdin,
            log_path,
            started_at,
        } = self;
        let pgid = guard.pgid();
        let wait_error = |source| ProcessError::Wait { pid: pgid, source };
        let mut cancelled = cancel.subscribe();
        drop(cancel);

        let ended = tokio::select! {
            status = child.wait() => Ended::Exited(status),
            () = tokio::time::sleep_until(deadline) => Ended::Stopped(Outcome::TimedOut),
            true = was_cancelled(&mut cancelled) => Ended::Stopped(Outcome::Cancelled),
            true = was_cancelled(&mut tripped) => Ended::Stopped(Outcome::Stopped),
            secs = stalled(idle.as_ref()) => Ended::Stopped(Outcome::IdleTimedOut { secs }),
        };
        let (status, outcome) = match ended {
            Ended::Exited(status) => {
                let status = status.map_err(wait_error)?;
                (status, classify(status).1)
            }
            Ended::Stopped(outcome) => {
                tracing::debug!(pgid, ?outcome, "terminating agent process group");
                kill_group(pgid, Signal::SIGTERM);
                let status = match tokio::time::timeout(grace, child.wait()).await {
                    Ok(status) => status,
                    Err(_) => {
                        tracing::debug!(pgid, "grace period over, killing agent process group");
                        kill_group(pgid, Signal::SIGKILL);
                        child.wait().await
                    }
                };
                (status.map_err(wait_error)?, outcome)
            }
        };
        let ended_at = Utc::now();
        // The leader is reaped; its background children go with it so the pipes can close.
        kill_group(pgid, Signal::SIGKILL);
        guard.disarm();

        let readers = async { tokio::join!(stdout, stderr) };
        tokio::pin!(readers);
        let (out, err) = tokio::select! {
            reports = &mut readers => reports,
            () = tokio::time::sleep(grace.max(MIN_DRAIN)) => {
                stop_readers.send_replace(true);
                readers.await
            }
        };
        let out = joined("stdout", out);
        let err = joined("stderr", err);
        let log_error = match writer.await {
            Ok(Ok(())) => None,
            Ok(Err(source)) => Some(source),
            Err(join) => Some(io::Error::other(join)),
        }
        .map(|source| ProcessError::Log {
            path: log_path,
            source,
        });
        if let Some(err) = &log_error {
            tracing::warn!(pgid, %err, "agent run log is incomplete");
        }
        let (stdout, capture_truncated) = match out.capture {
            Some(capture) => capture.into_string(),
            None => (String::new(), false),
        };
        Ok(Finished {
            outcome,
            exit: classify(status).0,
            stdout,
            stream: out.stream.map(Box::new),
            stdout_bytes: out.raw_bytes,
            stderr_bytes: err.raw_bytes,
            truncated: out.truncated || err.truncated,
            capture_truncated,
            started_at,
            ended_at,
            log_error,
        })
    }
}

enum Ended {
    Exited(io::Result<ExitStatus>),
    Stopped(Outcome),
}

/// Resolves (with the limit in seconds) once neither stream has delivered a byte for the idle
/// limit; never without one.
async fn stalled(idle: Option<&(Duration, log::Activity)>) -> u64 {
    let Some((limit, activity)) = idle else {
        return std::future::pending().await;
    };
    loop {
        let due = activity.last() + *limit;
        if tokio::time::Instant::now() >= due {
            return limit.as_secs();
        }
        tokio::time::sleep_until(due).await;
    }
}

async fn was_cancelled(rx: &mut watch::Receiver<bool>) -> bool {
    rx.wait_for(|cancelled| *cancelled).await.is_ok()
}

fn classify(status: ExitStatus) -> (Exit, Outcome) {
    match (status.code(), status.signal()) {
        (Some(code), _) => (Exit::Code(code), Outcome::Exited(code)),
        (None, Some(signal)) => (Exit::Signal(signal), Outcome::Signaled(signal)),
        // wait(2) reports only terminated processes, which have one or the other.
        (None, None) => (Exit::Code(-1), Outcome::Exited(-1)),
    }
}

fn joined(stream: &str, report: Result<StreamReport, tokio::task::JoinError>) -> StreamReport {
    report.unwrap_or_else(|err| {
        tracing::error!(stream, %err, "agent output reader failed");
        StreamReport::default()
    })
}

/// Starts an agent. Must be called inside a tokio runtime: the log readers and writer run as
/// tasks. Nothing is started if the program, the working directory or the log cannot be used.
pub fn spawn(spec: SpawnSpec) -> Result<Running, ProcessError> {
    let SpawnSpec {
        argv,
        cwd,
        env,
        stdin,
        log_path,
        timeout,
        grace,
        stream_cap,
        capture_cap,
        secrets,
        stream,
        idle_timeout,
    } = spec;
    let Some(program) = argv.first().cloned() else {
        return Err(ProcessError::EmptyCommand);
    };
    // An absolute directory keeps a relative program path unambiguous once the child has changed
    // into it.
    let cwd = match std::path::absolute(&cwd) {
        Ok(abs) if abs.is_dir() => abs,
        _ => return Err(ProcessError::Cwd { path: cwd }),
    };
    let path_var = env
        .iter()
        .rev()
        .find(|(name, _)| name == "PATH")
        .map(|(_, value)| value.as_str());
    let resolved = resolve_program(&program, path_var, &cwd, "agent")?;
    let log = open_log(&log_path)?;

    let mut command = Command::new(&resolved);
    command
        .arg0(&program)
        .args(&argv[1..])
        .current_dir(&cwd)
        .env_clear()
        .envs(env.iter().map(|(name, value)| (name, value)))
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let started_at = Utc::now();
    let start = Instant::now();
    let mut child = command
        .spawn()
        .map_err(|source| spawn_error(&program, &resolved, &cwd, source))?;
    let lost = |what: &str| ProcessError::Spawn {
        program: program.clone(),
        source: io::Error::other(format!("the child's {what} is missing right after spawn")),
    };
    let pgid = child
        .id()
        .and_then(|pid| i32::try_from(pid).ok())
        .ok_or_else(|| lost("pid"))?;
    let guard = GroupGuard::new(pgid);
    let out_pipe = child.stdout.take().ok_or_else(|| lost("stdout"))?;
    let err_pipe = child.stderr.take().ok_or_else(|| lost("stderr"))?;
    let stdin_task = match (stdin, child.stdin.take()) {
        (Some(bytes), Some(pipe)) => Some(AbortOnDrop(tokio::spawn(feed_stdin(pipe, bytes, pgid)))),
        _ => None,
    };

    let LogTasks {
        stop_readers,
        stdout,
        stderr,
        writer,
        tripped,
        activity,
    } = log::start(
        log,
        out_pipe,
        err_pipe,
        &secrets,
        (stream_cap, capture_cap),
        stream,
    );

    let deadline = start
        .checked_add(timeout)
        .unwrap_or_else(|| start + Duration::from_secs(100 * 365 * 24 * 3600));
    tracing::debug!(pgid, program, "agent started");
    Ok(Running {
        child,
        guard,
        program,
        deadline,
        grace,
        cancel: watch::channel(false).0,
        stop_readers,
        stdout,
        stderr,
        writer,
        tripped,
        idle: idle_timeout.map(|limit| (limit, activity)),
        _stdin: stdin_task,
        log_path,
        started_at,
    })
}

/// Finds the executable for `program`: a path if it contains `/` (relative to `cwd`), otherwise
/// the first executable file of that name in the child's `PATH`, whose relative entries are taken
/// relative to `cwd` and whose empty entries are skipped. `who` names the child in the hints
/// (`agent`, `rotation program`).
fn resolve_program(
    program: &str,
    path_var: Option<&str>,
    cwd: &Path,
    who: &str,
) -> Result<PathBuf, ProcessError> {
    let not_found = |hint: String| ProcessError::NotFound {
        program: program.to_owned(),
        hint,
    };
    let denied = |path: PathBuf| ProcessError::PermissionDenied {
        program: program.to_owned(),
        path,
    };
    if program.contains('/') {
        // Collecting the components drops `.` ones: `./agent` runs as `<cwd>/agent`.
        let path: PathBuf = cwd.join(program).components().collect();
        return match probe(&path) {
            Probe::Executable => Ok(path),
            Probe::NotExecutable => Err(denied(path)),
            Probe::Missing => Err(not_found(format!(
                "{} is not a file: fix the path in the {who} command",
                path.display()
            ))),
        };
    }
    let Some(path_var) = path_var.filter(|p| !p.is_empty()) else {
        return Err(not_found(format!(
            "the {who}'s environment has no PATH: set PATH or give an absolute path"
        )));
    };
    let mut not_executable = None;
    for dir in path_var.split(':').filter(|dir| !dir.is_empty()) {
        let candidate = cwd.join(dir).join(program);
        match probe(&candidate) {
            Probe::Executable => return Ok(candidate),
            Probe::NotExecutable => {
                not_executable.get_or_insert(candidate);
            }
            Probe::Missing => {}
        }
    }
    match not_executable {
        Some(path) => Err(denied(path)),
        None => Err(not_found(format!(
            "it is in no directory of the {who}'s PATH ({path_var}): install it, add its directory to PATH, or use an absolute path"
        ))),
    }
}

enum Probe {
    Executable,
    NotExecutable,
    Missing,
}

fn probe(path: &Path) -> Probe {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => match access(path, AccessFlags::X_OK) {
            Ok(()) => Probe::Executable,
            Err(_) => Probe::NotExecutable,
        },
        _ => Probe::Missing,
    }
}

/// Names the cause of a failed spawn; the checks before it make most of these unlikely.
fn spawn_error(program: &str, resolved: &Path, cwd: &Path, source: io::Error) -> ProcessError {
    match source.kind() {
        io::ErrorKind::NotFound if !cwd.is_dir() => ProcessError::Cwd {
            path: cwd.to_owned(),
        },
        io::ErrorKind::NotFound => ProcessError::NotFound {
            program: program.to_owned(),
            hint: format!(
                "{} or the interpreter named on its #! line is missing: install it",
                resolved.display()
            ),
        },
        io::ErrorKind::PermissionDenied => ProcessError::PermissionDenied {
            program: program.to_owned(),
            path: resolved.to_owned(),
        },
        _ => ProcessError::Spawn {
            program: program.to_owned(),
            source,
        },
    }
}

/// Writes the prompt and closes stdin. A child that exits without reading it is fine.
async fn feed_stdin(mut pipe: tokio::process::ChildStdin, bytes: Vec<u8>, pgid: i32) {
    if let Err(err) = pipe.write_all(&bytes).await
        && err.kind() != io::ErrorKind::BrokenPipe
    {
        tracing::warn!(pgid, %err, "cannot write the prompt to the agent's stdin");
    }
}

/// Aborts a task when dropped, so a stdin writer stuck on a pipe nobody reads cannot leak.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
