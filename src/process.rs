//! One agent subprocess, from spawn to reap (SPEC §6). This module owns everything that touches
//! the child: resolving the program on the agent's own `PATH` and executing it directly (never
//! through a shell), a cleared environment, the working directory, the prompt on stdin, the child's
//! own process group, the run log, the timeout and cancel escalation (SIGTERM to the group, grace,
//! SIGKILL to the group, reap), and the [`GroupGuard`] that kills the group if the owner goes away
//! without waiting. It is the only place that sends signals to agents.
//!
//! The run log has one line per output line, `{RFC 3339 UTC millis} {out|err} {line}`, for
//! example `2026-11-29T10:00:00.123Z out hello`. Each stream's raw bytes pass through a
//! [`StreamRedactor`] before they are split into lines, so a secret cut across two reads or
//! spanning lines is still redacted. The redactor follows the daemon's live secret set
//! ([`Secrets`]): a value that becomes a secret while the agent runs is hidden from the first
//! chunk read after that, and a value removed meanwhile stays hidden until the run ends. Lines
//! longer than [`MAX_LINE`] bytes are split; a final line
//! without a newline is still logged; a trailing `\r` is dropped and invalid UTF-8 becomes U+FFFD.
//! After `stream_cap` redacted bytes a stream gets one marker line,
//! `[stdout truncated after N bytes]`, and the rest is read and discarded so the child never
//! blocks on a full pipe. Both streams feed one writer task through a bounded channel; it flushes
//! whenever it has caught up, so `task logs --follow` sees lines as they come.
//!
//! An agent's background children do not outlive it: once the leader has exited and been reaped,
//! the rest of its process group gets SIGKILL. Otherwise a grandchild holding stdout open would
//! keep the log readers from ever seeing end-of-file. A process that left the group (`setsid`)
//! cannot be reached that way; if it still holds a pipe when the drain window
//! (`grace`, at least [`MIN_DRAIN`]) has passed, that stream stops being read and the log says so.
//!
//! Only the leader is our child, so only the leader is reaped here; killed grandchildren are
//! reparented to PID 1 (or a subreaper), which must reap them. A pgid is signalled only while the
//! leader is unreaped or right after reaping it, so a reused pid is never hit in practice.

use std::fmt;
use std::fs::{DirBuilder, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::{AccessFlags, Pid, access, getpgrp};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::domain::redact::{Secrets, StreamRedactor};

/// The longest run-log line; longer output lines are split (at a character boundary if one is
/// near) instead of being buffered without limit.
pub const MAX_LINE: usize = 64 * 1024;

/// The shortest time the log readers are given to reach end-of-file after the process group was
/// killed, whatever `grace` says.
pub const MIN_DRAIN: Duration = Duration::from_secs(2);

/// Bytes read from a pipe at a time.
const READ_CHUNK: usize = 4 * 1024;

/// Batches queued for the log writer before the readers (and so the child) wait.
const LOG_QUEUE: usize = 64;

/// How much the log writer formats before it writes.
const WRITE_BATCH: usize = 256 * 1024;

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
    /// Captured stdout: redacted, at most `capture_cap` bytes, invalid UTF-8 replaced.
    pub stdout: String,
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

/// Kills a process group with SIGKILL when dropped, unless disarmed. Whoever owns an agent holds
/// one so that the group dies even on a panic or an early return; disarm it only once the leader
/// has been reaped and the group killed, since a pgid can be reused after that.
#[derive(Debug)]
pub struct GroupGuard {
    pgid: i32,
    armed: bool,
}

impl GroupGuard {
    pub fn new(pgid: i32) -> GroupGuard {
        GroupGuard { pgid, armed: true }
    }

    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    pub fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if self.armed {
            kill_group(self.pgid, Signal::SIGKILL);
        }
    }
}

/// Sends `signal` to process group `pgid`. Returns true if it was delivered; false if there is no
/// such group, if it may not be signalled, or if `pgid` is 0, 1, negative or the daemon's own
/// group (a bad pgid from the database must never hit everything or ourselves).
pub fn kill_group(pgid: i32, signal: Signal) -> bool {
    if pgid <= 1 || pgid == getpgrp().as_raw() {
        return false;
    }
    match killpg(Pid::from_raw(pgid), signal) {
        Ok(()) => true,
        Err(Errno::ESRCH) => false,
        Err(err) => {
            tracing::warn!(pgid, %signal, %err, "cannot signal agent process group");
            false
        }
    }
}

/// True if process group `pgid` has a member that is not a zombie. Reads `/proc` where it exists;
/// elsewhere it falls back to `kill(-pgid, 0)`, which also counts zombies.
pub fn group_alive(pgid: i32) -> bool {
    if pgid <= 0 {
        return false;
    }
    match proc_group_has_live_member(pgid) {
        Some(alive) => alive,
        None => !matches!(killpg(Pid::from_raw(pgid), None), Err(Errno::ESRCH)),
    }
}

/// The pids in `/proc`; `None` where there is no `/proc`.
fn proc_pids() -> Option<impl Iterator<Item = i32>> {
    let entries = std::fs::read_dir("/proc").ok()?;
    Some(entries.flatten().filter_map(|entry| {
        entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
    }))
}

fn proc_group_has_live_member(pgid: i32) -> Option<bool> {
    for pid in proc_pids()? {
        // A process that exits while we scan simply has no stat file any more.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((state, pgrp)) = parse_stat(&stat)
            && pgrp == pgid
            && state != 'Z'
            && state != 'X'
        {
            return Some(true);
        }
    }
    Some(false)
}

/// The start time of process `pid` (clock ticks since boot, field 22 of `/proc/PID/stat`).
/// Recorded beside an agent's process group so that a later cleanup can tell the group's own
/// processes from an unrelated group that reuses the number.
pub fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    // After `comm`: state is field 3, so starttime (field 22) is the 20th token.
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Kills (SIGKILL) what is left of an agent's process group after a daemon crash: every live
/// process whose group is `pgid` and that started no earlier than the recorded leader start
/// time (`None`: any). Returns how many processes were signalled. Needs `/proc`.
pub fn kill_orphaned_group(pgid: i32, leader_start: Option<u64>) -> usize {
    if pgid <= 1 || pgid == getpgrp().as_raw() {
        return 0;
    }
    let Some(pids) = proc_pids() else {
        return usize::from(kill_group(pgid, Signal::SIGKILL));
    };
    let mut killed = 0;
    for pid in pids {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((state, pgrp)) = parse_stat(&stat) else {
            continue;
        };
        if pgrp != pgid || state == 'Z' || state == 'X' {
            continue;
        }
        let started = start_time(pid);
        if leader_start.is_some_and(|l| started.is_some_and(|s| s < l)) {
            continue;
        }
        if nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            killed += 1;
        }
    }
    killed
}

/// Kills (SIGKILL) every live process of this user whose environment holds `scope` (a
/// `NAME=value` entry naming this daemon) and `key=V` for a `V` in `values`. After a crash this
/// finds agents of the runs that were running even when their process group was never recorded
/// (the daemon died between the spawn and the record), and processes that left their group:
/// the environment is inherited by everything an agent starts. Returns how many were signalled.
pub fn kill_marked(scope: &str, key: &str, values: &std::collections::HashSet<String>) -> usize {
    if values.is_empty() {
        return 0;
    }
    let Some(pids) = proc_pids() else {
        return 0;
    };
    let me = std::process::id() as i32;
    let prefix = format!("{key}=");
    let mut killed = 0;
    for pid in pids {
        if pid == me {
            continue;
        }
        // Other users' processes are unreadable here, and never ours to kill.
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let mut in_scope = false;
        let mut marked = false;
        for var in environ.split(|b| *b == 0) {
            let Ok(var) = std::str::from_utf8(var) else {
                continue;
            };
            in_scope |= var == scope;
            marked |= var
                .strip_prefix(&prefix)
                .is_some_and(|v| values.contains(v));
        }
        if !(in_scope && marked) {
            continue;
        }
        let live = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| parse_stat(&s))
            .is_some_and(|(state, _)| state != 'Z' && state != 'X');
        if live && nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            killed += 1;
        }
    }
    killed
}

/// State and process group from `/proc/PID/stat`: `pid (comm) state ppid pgrp ...`, where
/// `comm` may itself contain spaces and parentheses.
fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
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
    _stdin: Option<AbortOnDrop>,
    log_path: PathBuf,
    started_at: DateTime<Utc>,
}

impl fmt::Debug for Running {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Running")
            .field("pid", &self.guard.pgid)
            .field("program", &self.program)
            .finish()
    }
}

impl Running {
    /// The leader's pid, which is also the process group id.
    pub fn pid(&self) -> u32 {
        self.guard.pgid.unsigned_abs()
    }

    pub fn canceller(&self) -> Canceller {
        Canceller(self.cancel.clone())
    }

    /// Waits for the run to end: the leader exits, the timeout fires or a cancel arrives. On
    /// timeout or cancel the group gets SIGTERM, then SIGKILL after `grace`. The leader is always
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
            _stdin,
            log_path,
            started_at,
        } = self;
        let pgid = guard.pgid;
        let wait_error = |source| ProcessError::Wait { pid: pgid, source };
        let mut cancelled = cancel.subscribe();
        drop(cancel);

        let ended = tokio::select! {
            status = child.wait() => Ended::Exited(status),
            () = tokio::time::sleep_until(deadline) => Ended::Stopped(Outcome::TimedOut),
            true = was_cancelled(&mut cancelled) => Ended::Stopped(Outcome::Cancelled),
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
    let resolved = resolve_program(&program, path_var, &cwd)?;
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

    let (log_tx, log_rx) = mpsc::channel(LOG_QUEUE);
    let (stop_readers, stop_rx) = watch::channel(false);
    let writer = tokio::spawn(write_log(tokio::fs::File::from_std(log), log_rx));
    let reader = |stream, capture| Reader {
        stream,
        redactor: secrets.stream(),
        cap: stream_cap,
        logged: 0,
        capped: false,
        raw: 0,
        line: Vec::new(),
        capture,
        log: log_tx.clone(),
    };
    let stdout = tokio::spawn(
        reader(Stream::Out, Some(Capture::new(capture_cap))).run(out_pipe, stop_rx.clone()),
    );
    let stderr = tokio::spawn(reader(Stream::Err, None).run(err_pipe, stop_rx));
    // Only the readers hold senders now, so the writer ends when both are done.
    drop(log_tx);

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
        _stdin: stdin_task,
        log_path,
        started_at,
    })
}

/// Finds the executable for `program`: a path if it contains `/` (relative to `cwd`), otherwise
/// the first executable file of that name in the agent's `PATH`, whose relative entries are taken
/// relative to `cwd` and whose empty entries are skipped.
fn resolve_program(
    program: &str,
    path_var: Option<&str>,
    cwd: &Path,
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
                "{} is not a file: fix the path in the agent command",
                path.display()
            ))),
        };
    }
    let Some(path_var) = path_var.filter(|p| !p.is_empty()) else {
        return Err(not_found(
            "the agent's environment has no PATH: set PATH or give an absolute path".to_owned(),
        ));
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
            "it is in no directory of the agent's PATH ({path_var}): install it, add its directory to PATH, or use an absolute path"
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

/// Creates the run log with mode 0600 (and missing parent directories with 0700), truncating an
/// existing file and refusing to follow a symlink.
fn open_log(path: &Path) -> Result<std::fs::File, ProcessError> {
    let log_error = |source| ProcessError::Log {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(log_error)?;
    }
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(path)
        .map_err(log_error)?;
    file.set_permissions(Permissions::from_mode(0o600))
        .map_err(log_error)?;
    Ok(file)
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stream {
    Out,
    Err,
}

impl Stream {
    fn tag(self) -> &'static str {
        match self {
            Stream::Out => "out",
            Stream::Err => "err",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Stream::Out => "stdout",
            Stream::Err => "stderr",
        }
    }
}

/// Lines from one stream that arrived together.
struct Batch {
    at: DateTime<Utc>,
    stream: Stream,
    lines: Vec<Vec<u8>>,
}

#[derive(Default)]
struct StreamReport {
    raw_bytes: u64,
    truncated: bool,
    capture: Option<Capture>,
}

/// Reads one pipe to end-of-file: redacts, caps, splits lines, captures, and queues the lines for
/// the log writer.
struct Reader {
    stream: Stream,
    redactor: StreamRedactor,
    cap: u64,
    /// Redacted bytes passed on so far.
    logged: u64,
    /// The cap was reached: read and discard from now on.
    capped: bool,
    raw: u64,
    /// The current line, not yet ended by a newline.
    line: Vec<u8>,
    capture: Option<Capture>,
    log: mpsc::Sender<Batch>,
}

impl Reader {
    async fn run<R: AsyncRead + Unpin>(
        mut self,
        mut pipe: R,
        mut stop: watch::Receiver<bool>,
    ) -> StreamReport {
        // Start small and grow on the first full read: most agents print little, and a
        // thousand quiet agents should not hold a full buffer each.
        let mut buf = vec![0; 256];
        let mut abandoned = false;
        loop {
            let read = tokio::select! {
                biased;
                explicit = stopped(&mut stop) => {
                    abandoned = explicit;
                    break;
                }
                read = pipe.read(&mut buf) => read,
            };
            match read {
                Ok(0) => break,
                Ok(n) => {
                    self.feed(&buf[..n]).await;
                    if n == buf.len() && buf.len() < READ_CHUNK {
                        buf.resize(READ_CHUNK, 0);
                    }
                }
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => {
                    tracing::warn!(stream = self.stream.name(), %err, "cannot read agent output");
                    break;
                }
            }
        }
        drop(pipe);
        if !self.capped {
            let rest = self.redactor.finish();
            self.emit(&rest, true).await;
        }
        if abandoned {
            let note = format!(
                "[{} still held open by a process outside the agent's process group; stopped reading]",
                self.stream.name()
            );
            self.send(vec![note.into_bytes()]).await;
        }
        if let Some(capture) = &mut self.capture {
            capture.truncated |= self.capped || abandoned;
        }
        StreamReport {
            raw_bytes: self.raw,
            truncated: self.capped,
            capture: self.capture,
        }
    }

    async fn feed(&mut self, data: &[u8]) {
        self.raw += data.len() as u64;
        if self.capped {
            return;
        }
        let redacted = self.redactor.push(data);
        self.emit(&redacted, false).await;
    }

    /// Passes redacted bytes on, up to the cap; `last` ends the final line.
    async fn emit(&mut self, redacted: &[u8], last: bool) {
        let room = usize::try_from(self.cap.saturating_sub(self.logged)).unwrap_or(usize::MAX);
        let over = redacted.len() > room;
        let taken = &redacted[..redacted.len().min(room)];
        self.logged += taken.len() as u64;
        if let Some(capture) = &mut self.capture {
            capture.push(taken);
        }
        let mut lines = Vec::new();
        split_lines(&mut self.line, taken, &mut lines);
        if (over || last) && !self.line.is_empty() {
            lines.push(std::mem::take(&mut self.line));
        }
        if over {
            let marker = format!(
                "[{} truncated after {} bytes]",
                self.stream.name(),
                self.cap
            );
            lines.push(marker.into_bytes());
            self.capped = true;
        }
        self.send(lines).await;
    }

    async fn send(&self, lines: Vec<Vec<u8>>) {
        if lines.is_empty() {
            return;
        }
        let batch = Batch {
            at: Utc::now(),
            stream: self.stream,
            lines,
        };
        // The writer outlives the readers; if it is gone anyway there is nowhere to log to.
        let _ = self.log.send(batch).await;
    }
}

/// Resolves when the reader must stop: true when `wait` gave up on a pipe held open from outside
/// the group, false when the [`Running`] was dropped (the run was abandoned and its group killed).
async fn stopped(stop: &mut watch::Receiver<bool>) -> bool {
    stop.wait_for(|stop| *stop).await.is_ok()
}

/// Appends `data` to the current `line`, moving every completed line (and every [`MAX_LINE`]
/// piece of an overlong one) to `lines`.
fn split_lines(line: &mut Vec<u8>, mut data: &[u8], lines: &mut Vec<Vec<u8>>) {
    while !data.is_empty() {
        let newline = data.iter().position(|&b| b == b'\n');
        let end = newline.unwrap_or(data.len());
        line.extend_from_slice(&data[..end]);
        while line.len() > MAX_LINE {
            let cut = char_floor(line, MAX_LINE);
            lines.push(line.drain(..cut).collect());
        }
        match newline {
            Some(at) => {
                lines.push(std::mem::take(line));
                data = &data[at + 1..];
            }
            None => data = &[],
        }
    }
}

/// The largest index at most `at` (and above 0) that does not fall inside a UTF-8 character,
/// looking back at most three bytes; `at` itself if the bytes there are not UTF-8.
fn char_floor(bytes: &[u8], at: usize) -> usize {
    (at.saturating_sub(3).max(1)..=at)
        .rev()
        .find(|&i| bytes.get(i).is_none_or(|&b| b & 0xC0 != 0x80))
        .unwrap_or(at)
}

/// Length of a UTF-8 character cut short at the end of `bytes` (0 if the end is clean).
fn incomplete_tail(bytes: &[u8]) -> usize {
    for back in 1..=bytes.len().min(3) {
        let byte = bytes[bytes.len() - back];
        if byte & 0xC0 == 0x80 {
            continue;
        }
        let width = match byte {
            0xC0..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF7 => 4,
            _ => 1,
        };
        return if width > back { back } else { 0 };
    }
    0
}

/// The first `cap` bytes of redacted stdout, kept for `{prev_stdout}`.
struct Capture {
    bytes: Vec<u8>,
    cap: usize,
    truncated: bool,
}

impl Capture {
    fn new(cap: usize) -> Capture {
        Capture {
            bytes: Vec::new(),
            cap,
            truncated: false,
        }
    }

    fn push(&mut self, data: &[u8]) {
        let room = self.cap - self.bytes.len();
        if data.len() > room {
            self.truncated = true;
        }
        self.bytes.extend_from_slice(&data[..data.len().min(room)]);
    }

    /// The captured text and whether it is incomplete. A character cut by the cap is dropped
    /// whole; replacement characters for invalid bytes never push it past the cap.
    fn into_string(self) -> (String, bool) {
        let mut bytes = self.bytes;
        if self.truncated {
            bytes.truncate(bytes.len() - incomplete_tail(&bytes));
        }
        let mut text = match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(err) => String::from_utf8_lossy(err.as_bytes()).into_owned(),
        };
        if text.len() > self.cap {
            let mut cut = self.cap;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        (text, self.truncated)
    }
}

/// The log writer: formats batches into lines and writes them through one buffer, flushing
/// whenever the queue is empty. After a write error it keeps draining the queue, so the readers
/// and the child never block, and reports the error at the end.
async fn write_log(file: tokio::fs::File, mut batches: mpsc::Receiver<Batch>) -> io::Result<()> {
    // `text` already batches the lines, so the file is written directly.
    let mut out = file;
    let mut result = Ok(());
    let mut text = Vec::new();
    while let Some(batch) = batches.recv().await {
        format_batch(&batch, &mut text);
        while text.len() < WRITE_BATCH {
            match batches.try_recv() {
                Ok(batch) => format_batch(&batch, &mut text),
                Err(_) => break,
            }
        }
        if result.is_ok() {
            result = async {
                out.write_all(&text).await?;
                out.flush().await
            }
            .await;
        }
        text.clear();
    }
    result?;
    out.flush().await
}

fn format_batch(batch: &Batch, text: &mut Vec<u8>) {
    let prefix = format!(
        "{} {} ",
        batch.at.to_rfc3339_opts(SecondsFormat::Millis, true),
        batch.stream.tag()
    );
    for line in &batch.lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        text.extend_from_slice(prefix.as_bytes());
        text.extend_from_slice(String::from_utf8_lossy(line).as_bytes());
        text.push(b'\n');
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::redact::{Redactor, SecretRegistry};

    const DEADLINE: Duration = Duration::from_secs(30);

    fn path_var() -> String {
        std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned())
    }

    fn spec(argv: &[&str], dir: &Path) -> SpawnSpec {
        SpawnSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            cwd: dir.to_owned(),
            env: vec![("PATH".to_owned(), path_var())],
            stdin: None,
            log_path: dir.join("logs/run.log"),
            timeout: Duration::from_secs(120),
            grace: Duration::from_secs(10),
            stream_cap: 16 << 20,
            capture_cap: 1 << 20,
            secrets: Secrets::fixed(Arc::new(Redactor::none())),
        }
    }

    fn sh(script: &str, dir: &Path) -> SpawnSpec {
        spec(&["sh", "-c", script], dir)
    }

    async fn run(spec: SpawnSpec) -> (Finished, String) {
        let log_path = spec.log_path.clone();
        let finished = spawn(spec).expect("spawn").wait().await.expect("wait");
        assert!(finished.log_error.is_none(), "{:?}", finished.log_error);
        let log = std::fs::read_to_string(&log_path).expect("read log");
        (finished, log)
    }

    /// The log as `(tag, text)` pairs, checking every line's timestamp on the way.
    fn lines(log: &str) -> Vec<(String, String)> {
        log.lines()
            .map(|line| {
                let mut parts = line.splitn(3, ' ');
                let at = parts.next().unwrap_or_default();
                assert!(
                    at.len() == 24 && at.ends_with('Z'),
                    "timestamp {at:?} in {line:?}"
                );
                DateTime::parse_from_rfc3339(at).expect("RFC 3339 timestamp");
                let tag = parts.next().unwrap_or_default().to_owned();
                (tag, parts.next().unwrap_or_default().to_owned())
            })
            .collect()
    }

    fn out_lines(log: &str, tag: &str) -> Vec<String> {
        lines(log)
            .into_iter()
            .filter(|(t, _)| t == tag)
            .map(|(_, text)| text)
            .collect()
    }

    /// Polls `condition` until it holds; panics with `what` after [`DEADLINE`].
    async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
        let deadline = Instant::now() + DEADLINE;
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for the first `out` line of a running agent's log and parses it as a pid.
    async fn first_pid_in_log(log_path: &Path) -> i32 {
        let mut pid = None;
        eventually("the grandchild's pid in the log", || {
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            pid = out_lines(&log, "out").first().and_then(|l| l.parse().ok());
            pid.is_some()
        })
        .await;
        pid.unwrap_or_default()
    }

    fn process_alive(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|stat| parse_stat(&stat))
            .is_some_and(|(state, _)| state != 'Z' && state != 'X')
    }

    /// The leader is our child: once `wait` returned it must not even be a zombie.
    fn assert_reaped(pgid: i32) {
        assert!(
            !Path::new(&format!("/proc/{pgid}")).exists(),
            "leader {pgid} was not reaped"
        );
    }

    async fn assert_group_gone(pgid: i32, grandchild: i32) {
        assert_reaped(pgid);
        eventually("the process group to die", || !group_alive(pgid)).await;
        eventually("the grandchild to die", || !process_alive(grandchild)).await;
    }

    #[tokio::test]
    async fn exit_codes_and_signals() {
        async fn check(script: &str, want: Outcome, exit: Exit) {
            let dir = tempfile::tempdir().expect("tempdir");
            let (finished, _) = run(sh(script, dir.path())).await;
            assert_eq!(finished.outcome, want, "{script}");
            assert_eq!(finished.exit, exit, "{script}");
            assert!(finished.ended_at >= finished.started_at);
        }
        check("exit 0", Outcome::Exited(0), Exit::Code(0)).await;
        check("exit 3", Outcome::Exited(3), Exit::Code(3)).await;
        check("kill -KILL $$", Outcome::Signaled(9), Exit::Signal(9)).await;
    }

    #[tokio::test]
    async fn output_is_captured_and_logged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = sh(
            "echo hello; echo oops >&2; printf 'two\\r\\n'; printf 'no newline'",
            dir.path(),
        );
        let log_path = spec.log_path.clone();
        let (finished, log) = run(spec).await;
        assert_eq!(finished.outcome, Outcome::Exited(0));
        assert_eq!(finished.stdout, "hello\ntwo\r\nno newline");
        assert_eq!((finished.stdout_bytes, finished.stderr_bytes), (21, 5));
        assert!(!finished.truncated && !finished.capture_truncated);
        assert_eq!(out_lines(&log, "out"), ["hello", "two", "no newline"]);
        assert_eq!(out_lines(&log, "err"), ["oops"]);
        let mode = std::fs::metadata(&log_path)
            .expect("log")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[tokio::test]
    async fn environment_is_exactly_what_was_given() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env_spec = spec(&["env"], dir.path());
        env_spec.env.push(("FOO".to_owned(), "bar baz".to_owned()));
        let (finished, _) = run(env_spec).await;
        let mut vars: Vec<&str> = finished.stdout.lines().collect();
        vars.sort();
        assert_eq!(
            vars,
            ["FOO=bar baz".to_owned(), format!("PATH={}", path_var())]
        );

        // The daemon's own HOME must not leak through.
        let mut script = sh("echo \"$HOME-$FOO\"", dir.path());
        script.env.push(("FOO".to_owned(), "bar".to_owned()));
        let (finished, _) = run(script).await;
        assert_eq!(finished.stdout, "-bar\n");
    }

    #[tokio::test]
    async fn working_directory_is_applied() {
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work space");
        std::fs::create_dir(&work).expect("mkdir");
        let mut pwd = spec(&["pwd", "-P"], &work);
        pwd.log_path = dir.path().join("run.log");
        let (finished, _) = run(pwd).await;
        let want = work.canonicalize().expect("canonicalize");
        assert_eq!(
            finished.stdout.trim_end(),
            want.to_str().expect("utf-8 path")
        );

        // A program path with a slash is relative to the working directory. (A `#!` script sees
        // the path it was executed by as `$0`.)
        let agent = work.join("agent.sh");
        std::fs::write(&agent, "#!/bin/sh\necho \"$0 $1\"\n").expect("write");
        std::fs::set_permissions(&agent, Permissions::from_mode(0o755)).expect("chmod");
        let mut relative = spec(&["./agent.sh", "arg"], &work);
        relative.log_path = dir.path().join("run.log");
        let (finished, _) = run(relative).await;
        assert_eq!(finished.stdout, format!("{} arg\n", agent.display()));
    }

    #[tokio::test]
    async fn hostile_text_arrives_verbatim_on_stdin_and_in_argv() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pwned = dir.path().join("pwned");
        let hostile = format!(
            "'; touch {p}; '\n$(touch {p})\n`touch {p}`\n\"; touch {p}; \"\n日本語 ✓ ümlaut\n",
            p = pwned.display()
        );

        let mut on_stdin = spec(&["cat"], dir.path());
        on_stdin.stdin = Some(hostile.clone().into_bytes());
        let (finished, _) = run(on_stdin).await;
        assert_eq!(finished.stdout, hostile);

        let (finished, _) = run(spec(&["printf", "%s", &hostile], dir.path())).await;
        assert_eq!(finished.stdout, hostile);
        assert!(!pwned.exists(), "hostile text was run by a shell");
    }

    #[tokio::test]
    async fn a_child_that_never_reads_stdin_does_not_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = spec(&["true"], dir.path());
        spec.stdin = Some(vec![b'x'; 4 << 20]);
        let (finished, _) = run(spec).await;
        assert_eq!(finished.outcome, Outcome::Exited(0));
    }

    #[tokio::test]
    async fn spawn_errors_name_the_problem() {
        let dir = tempfile::tempdir().expect("tempdir");
        let not_executable = dir.path().join("script.sh");
        std::fs::write(&not_executable, "#!/bin/sh\n").expect("write");
        let script = not_executable.to_str().expect("utf-8 path");

        #[track_caller]
        fn check(spec: SpawnSpec, want: &str) {
            match spawn(spec) {
                Ok(running) => panic!("spawned {running:?}, want an error containing {want:?}"),
                Err(err) => {
                    let message = err.to_string();
                    assert!(message.contains(want), "{message:?} lacks {want:?}");
                }
            }
        }
        let d = dir.path();
        check(
            spec(&["no-such-agent-xyz", "-p"], d),
            "command not found: no-such-agent-xyz: it is in no directory of the agent's PATH",
        );
        check(
            spec(&["/no/such/agent"], d),
            "command not found: /no/such/agent",
        );
        check(spec(&[script], d), "is not executable");
        check(spec(&[], d), "agent command is empty");
        let mut no_path = spec(&["sh"], d);
        no_path.env.clear();
        check(no_path, "the agent's environment has no PATH");
        let mut missing_cwd = spec(&["true"], d);
        missing_cwd.cwd = d.join("gone");
        check(missing_cwd, "working directory");
        let mut bad_log = spec(&["true"], d);
        bad_log.log_path = not_executable.join("run.log");
        check(bad_log, "run log");
        assert!(
            matches!(
                spawn(spec(&["no-such-agent-xyz"], d)),
                Err(ProcessError::NotFound { program, .. }) if program == "no-such-agent-xyz"
            ),
            "NotFound carries the program name"
        );
    }

    #[tokio::test]
    async fn timeout_terminates_the_whole_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = sh("sleep 600 & echo $!; sleep 600", dir.path());
        spec.timeout = Duration::from_secs(2);
        let log_path = spec.log_path.clone();
        let running = spawn(spec).expect("spawn");
        let pgid = running.pid() as i32;
        let finished = running.wait().await.expect("wait");
        assert_eq!(finished.outcome, Outcome::TimedOut);
        assert_eq!(finished.exit, Exit::Signal(15));
        let log = std::fs::read_to_string(&log_path).expect("log");
        let grandchild = out_lines(&log, "out")
            .first()
            .and_then(|pid| pid.parse().ok())
            .expect("the script printed its grandchild's pid");
        assert_group_gone(pgid, grandchild).await;
    }

    #[tokio::test]
    async fn cancel_terminates_the_whole_group_and_escalates_after_grace() {
        async fn check(script: &str, want: Exit) {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut spec = sh(script, dir.path());
            spec.grace = Duration::from_millis(200);
            let log_path = spec.log_path.clone();
            let running = spawn(spec).expect("spawn");
            let pgid = running.pid() as i32;
            let canceller = running.canceller();
            let waiting = tokio::spawn(running.wait());
            let grandchild = first_pid_in_log(&log_path).await;
            canceller.cancel();
            canceller.cancel();
            let finished = waiting.await.expect("join").expect("wait");
            assert_eq!(finished.outcome, Outcome::Cancelled, "{script}");
            assert_eq!(finished.exit, want, "{script}");
            assert_group_gone(pgid, grandchild).await;
        }
        check("sleep 600 & echo $!; sleep 600", Exit::Signal(15)).await;
        // SIGTERM is ignored by the shell and both sleeps, so only SIGKILL ends them.
        check(
            "trap '' TERM; sleep 600 & echo $!; sleep 600",
            Exit::Signal(9),
        )
        .await;
    }

    #[tokio::test]
    async fn background_child_holding_stdout_does_not_hang_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let running = spawn(sh("sleep 600 & echo $!; echo done", dir.path())).expect("spawn");
        let pgid = running.pid() as i32;
        let finished = running.wait().await.expect("wait");
        assert_eq!(finished.outcome, Outcome::Exited(0));
        let mut lines = finished.stdout.lines();
        let grandchild = lines.next().and_then(|pid| pid.parse().ok()).expect("pid");
        assert_eq!(lines.next(), Some("done"));
        assert_group_gone(pgid, grandchild).await;
    }

    #[tokio::test]
    async fn process_that_left_the_group_does_not_hang_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The escaped process reports its pid only once it has its own session, so the group
        // kill after the leader exits cannot catch it.
        let mut spec = sh(
            "setsid sh -c 'echo $$ > pid.tmp && mv pid.tmp pid && exec sleep 600' & \
             until [ -s pid ]; do sleep 0.01; done; cat pid; echo done",
            dir.path(),
        );
        spec.grace = Duration::ZERO;
        let (finished, log) = run(spec).await;
        let escaped: i32 = finished
            .stdout
            .lines()
            .next()
            .and_then(|pid| pid.parse().ok())
            .expect("pid");
        // It is outside our group, so the test cleans it up itself.
        let _ = nix::sys::signal::kill(Pid::from_raw(escaped), Signal::SIGKILL);
        assert_eq!(finished.outcome, Outcome::Exited(0));
        assert!(finished.capture_truncated);
        let out = out_lines(&log, "out");
        assert_eq!(out[1..2], ["done"]);
        assert!(
            out.iter().any(|l| l.starts_with("[stdout still held open")),
            "{log}"
        );
    }

    #[tokio::test]
    async fn stream_cap_truncates_the_log_and_the_child_completes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = sh("yes | head -c 5000000; echo tail >&2", dir.path());
        spec.stream_cap = 1_000_000;
        let (finished, log) = run(spec).await;
        assert_eq!(finished.outcome, Outcome::Exited(0));
        assert_eq!(finished.stdout_bytes, 5_000_000);
        assert!(finished.truncated && finished.capture_truncated);
        assert_eq!(finished.stdout.len(), 1_000_000);
        let out = out_lines(&log, "out");
        assert_eq!(out.len(), 500_001);
        assert!(out[..500_000].iter().all(|l| l == "y"));
        assert_eq!(out[500_000], "[stdout truncated after 1000000 bytes]");
        assert_eq!(out_lines(&log, "err"), ["tail"]);
    }

    #[tokio::test]
    async fn long_lines_are_split() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = "head -c 200000 /dev/zero | tr '\\0' a; echo; \
                      printf a; head -c 70000 /dev/zero | tr '\\0' x | sed 's/x/é/g'";
        let (_, log) = run(sh(script, dir.path())).await;
        let lengths: Vec<usize> = out_lines(&log, "out").iter().map(String::len).collect();
        // `a` and 70000 two-byte characters: the first cut backs off one byte so that it falls
        // between characters, and no U+FFFD appears.
        assert_eq!(lengths, [65536, 65536, 65536, 3392, 65535, 65536, 8930]);
        assert!(!log.contains('\u{FFFD}'));
    }

    #[tokio::test]
    async fn capture_cap_never_splits_a_character() {
        async fn check(text: &str, cap: usize, want: &str, truncated: bool) {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut spec = spec(&["printf", "%s", text], dir.path());
            spec.capture_cap = cap;
            let (finished, log) = run(spec).await;
            assert_eq!(finished.stdout, want, "{text:?} capped at {cap}");
            assert_eq!(
                finished.capture_truncated, truncated,
                "{text:?} capped at {cap}"
            );
            assert_eq!(out_lines(&log, "out"), [text], "the log is not capped");
        }
        let e = "é".repeat(100);
        check(&e, 10, "ééééé", true).await;
        check(&e, 11, "ééééé", true).await;
        check(&e, 1, "", true).await;
        check(&e, 200, &e, false).await;
        check("日本語テキスト", 8, "日本", true).await;
        check("a😀b", 4, "a", true).await;
        check("a😀b", 5, "a😀", true).await;
    }

    #[tokio::test]
    async fn secrets_are_redacted_in_the_log_and_the_capture() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = sh(
            "printf 'token=hunter2-'; sleep 0.1; printf 'secret\\n'; \
             printf 'multi-first\\nmulti-second\\n' >&2; echo hunter2-secret",
            dir.path(),
        );
        spec.secrets = Secrets::fixed(Arc::new(Redactor::new([
            "hunter2-secret",
            "multi-first\nmulti-second",
        ])));
        let (finished, log) = run(spec).await;
        assert_eq!(finished.stdout, "token=[REDACTED]\n[REDACTED]\n");
        assert_eq!(out_lines(&log, "out"), ["token=[REDACTED]", "[REDACTED]"]);
        assert_eq!(out_lines(&log, "err"), ["[REDACTED]"]);
        for leak in ["hunter2", "secret", "multi"] {
            assert!(!log.contains(leak), "{leak:?} in the log:\n{log}");
        }
    }

    /// A value that becomes a secret while the agent runs is redacted from the output read after
    /// the change, and one removed meanwhile stays redacted for this run.
    #[tokio::test]
    async fn the_redactor_follows_secrets_changed_while_the_agent_runs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = Arc::new(SecretRegistry::new());
        registry.update(["old-secret-1234"]);
        let go = dir.path().join("go");
        let script = format!(
            "echo started; while [ ! -e '{go}' ]; do sleep 0.01; done; \
             printf 'new=brand-new-'; sleep 0.1; printf 'secret-5678\\n'; echo old=old-secret-1234",
            go = go.display()
        );
        let mut spec = sh(&script, dir.path());
        let log_path = spec.log_path.clone();
        spec.secrets = registry.lease();
        let running = spawn(spec).expect("spawn");
        let deadline = Instant::now() + DEADLINE;
        // The first line is in the log before the agent goes on: a line is not held back.
        while !std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("out started")) {
            assert!(
                Instant::now() < deadline,
                "the first line never reached the log"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        registry.update(["brand-new-secret-5678"]);
        std::fs::write(&go, "").expect("go");
        let finished = running.wait().await.expect("wait");
        let log = std::fs::read_to_string(&log_path).expect("log");
        assert_eq!(
            out_lines(&log, "out"),
            ["started", "new=[REDACTED]", "old=[REDACTED]"]
        );
        assert_eq!(finished.stdout, "started\nnew=[REDACTED]\nold=[REDACTED]\n");
        assert_eq!(registry.stats().leases, 0, "the run's lease ends with it");
    }

    #[tokio::test]
    async fn dropping_a_running_agent_kills_its_group() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spec = sh("sleep 600 & echo $!; sleep 600", dir.path());
        let log_path = spec.log_path.clone();
        let running = spawn(spec).expect("spawn");
        let pgid = running.pid() as i32;
        let grandchild = first_pid_in_log(&log_path).await;
        assert!(group_alive(pgid));
        drop(running);
        eventually("the group to die", || !group_alive(pgid)).await;
        eventually("the grandchild to die", || !process_alive(grandchild)).await;
    }

    #[tokio::test]
    async fn kill_marked_kills_exactly_the_marked_processes_of_this_daemon() {
        let dir = tempfile::tempdir().expect("tempdir");
        let scope = format!(
            "ORCHESTRATOR_SOCKET={}",
            dir.path().join("a.sock").display()
        );
        // (socket, run id, to be killed)
        let cases = [
            ("a.sock", "7", true),
            ("a.sock", "8", false),
            ("b.sock", "7", false),
        ];
        let mut agents = Vec::new();
        for (i, (socket, run, doomed)) in cases.into_iter().enumerate() {
            let mut s = sh(
                "sleep 600 & echo $!; sleep 600",
                &dir.path().join(i.to_string()),
            );
            std::fs::create_dir_all(&s.cwd).expect("cwd");
            let socket = dir.path().join(socket).display().to_string();
            s.env.push(("ORCHESTRATOR_SOCKET".into(), socket));
            s.env.push(("ORCHESTRATOR_RUN_ID".into(), run.into()));
            let log_path = s.log_path.clone();
            let running = spawn(s).expect("spawn");
            let grandchild = first_pid_in_log(&log_path).await;
            agents.push((running, grandchild, doomed));
        }
        let runs = std::collections::HashSet::from(["7".to_owned()]);
        // The leader and its sleeps (the shell may exec the last one itself).
        assert!(kill_marked(&scope, "ORCHESTRATOR_RUN_ID", &runs) >= 2);
        for (running, grandchild, doomed) in &agents {
            let pgid = running.pid() as i32;
            if *doomed {
                eventually("the marked grandchild to die", || {
                    !process_alive(*grandchild)
                })
                .await;
                eventually("the marked group to die", || !group_alive(pgid)).await;
            } else {
                assert!(process_alive(*grandchild), "an unmarked process was killed");
                assert!(group_alive(pgid));
            }
        }
        let none = std::collections::HashSet::new();
        assert_eq!(kill_marked(&scope, "ORCHESTRATOR_RUN_ID", &none), 0);
    }

    #[test]
    fn kill_group_refuses_pgids_that_would_hit_everything_or_ourselves() {
        // SIGCONT is harmless, so a broken guard cannot take the test runner down.
        let own = getpgrp().as_raw();
        for pgid in [-1, 0, 1, own] {
            assert!(!kill_group(pgid, Signal::SIGCONT), "pgid {pgid}");
        }
        assert!(group_alive(own));
        assert!(!group_alive(0));
    }

    #[test]
    fn parses_proc_stat() {
        #[track_caller]
        fn check(stat: &str, want: Option<(char, i32)>) {
            assert_eq!(parse_stat(stat), want, "{stat:?}");
        }
        check("42 (sleep) S 1 42 42 0 -1", Some(('S', 42)));
        check("43 (a) b (c)) Z 1 7 7 0", Some(('Z', 7)));
        check("garbage", None);
    }

    #[test]
    fn debug_shows_no_environment_values_or_prompt() {
        let dir = Path::new("/tmp");
        let mut spec = spec(&["agent", "--prompt", "do the secret thing"], dir);
        spec.env
            .push(("API_TOKEN".to_owned(), "hunter2".to_owned()));
        spec.stdin = Some(b"prompt with hunter2".to_vec());
        let shown = format!("{spec:?}");
        assert!(
            shown.contains("API_TOKEN") && shown.contains("agent"),
            "{shown}"
        );
        assert!(
            !shown.contains("hunter2") && !shown.contains("secret thing"),
            "{shown}"
        );
    }
}
