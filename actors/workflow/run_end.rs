//! How a step run's end is recorded: [`judge`] turns a finished process into the run's state,
//! exit and reason (and counts the exit and the run's duration in the daemon's metrics), and
//! [`errored`] records a run that ended without an exit of its own.

use crate::domain::stream_json::StreamSummary;
use crate::domain::workflow::RunState;
use crate::process::{self, Outcome};
use crate::store::RunEnd;

use super::WorkflowState;

impl WorkflowState {
    /// Counts a run whose process ended in the daemon's metrics: its exit class and how long its
    /// process ran.
    pub(super) fn count_run(&self, step: &str, f: &process::Finished) {
        self.metrics.agent_exited(match f.exit {
            process::Exit::Code(c) => Some(c),
            process::Exit::Signal(_) => None,
        });
        let seconds = (f.ended_at - f.started_at)
            .to_std()
            .map_or(0.0, |d| d.as_secs_f64());
        let t = &self.task.info;
        self.metrics
            .step_took(&t.project, &t.workflow, step, seconds);
    }
}

/// How a run whose process ended is recorded: state and reason from its exit and, for a
/// stream-json run, from what its stream reported — a guard's stop, a missing result line, an
/// error the agent reported fail the run whatever its exit code.
pub(super) fn judge(f: process::Finished) -> RunEnd {
    let (exit_code, signal) = match f.exit {
        process::Exit::Code(c) => (Some(c), None),
        process::Exit::Signal(s) => (None, Some(s)),
    };
    let (mut state, mut reason) = match f.outcome {
        Outcome::Exited(0) => (RunState::Succeeded, None),
        Outcome::Exited(c) => (RunState::Failed, Some(format!("exit code {c}"))),
        Outcome::Signaled(s) => (RunState::Failed, Some(format!("killed by signal {s}"))),
        Outcome::TimedOut => (
            RunState::TimedOut,
            Some("timed out; the agent's process group was stopped".into()),
        ),
        Outcome::Cancelled => (RunState::Cancelled, Some("cancelled".into())),
        Outcome::Stopped => (RunState::Failed, Some("stopped by a guard".into())),
        Outcome::IdleTimedOut { secs } => (
            RunState::TimedOut,
            Some(format!(
                "no output for {secs} s (idle_timeout_secs); the agent's process group was stopped"
            )),
        ),
    };
    let stream: Option<&StreamSummary> = f.stream.as_deref();
    let why = match (state, stream) {
        (RunState::Succeeded, Some(s)) => s.failure(),
        (RunState::Failed, Some(s)) => s.stopped.clone().or_else(|| {
            let exit = reason.as_deref().unwrap_or("failed");
            s.reported_error().map(|e| format!("{exit}: {e}"))
        }),
        _ => None,
    };
    if let Some(why) = why {
        state = RunState::Failed;
        reason = Some(why);
    }
    RunEnd {
        state,
        exit_code,
        signal,
        reason,
        stdout: f.stdout,
        stdout_bytes: f.stdout_bytes,
        stderr_bytes: f.stderr_bytes,
        stream: f.stream.map(|s| *s),
    }
}

/// A run that ended without an exit of its own (it could not start, or its wait failed).
pub(super) fn errored(reason: String) -> RunEnd {
    RunEnd {
        state: RunState::Error,
        exit_code: None,
        signal: None,
        reason: Some(reason),
        stdout: String::new(),
        stdout_bytes: 0,
        stderr_bytes: 0,
        stream: None,
    }
}
