//! The task state machine, pure: which step runs next, when a cycle ends, when a failure is
//! retried and when the task is done. The WorkflowActor only drives it (spawns what it says,
//! feeds back what happened), so every rule is tested here without actors or processes.
//!
//! Rules (SPEC §6): steps run in order; disabled steps are skipped; `repeatable: false` steps run
//! only in cycle 1; the loop runs once (`once`), `max_cycles` times (`fixed`), or until cancelled
//! with `max_cycles` as an optional cap (`infinite`); a failed step is retried while attempts
//! remain (`retries` extra attempts), otherwise the task fails. A cycle in which nothing can run
//! ends the task, so a loop never spins without work.
//!
//! Resume (SPEC §6): a WorkflowActor that starts for a task already running (after a daemon
//! crash or its own restart) treats the runs still recorded as running as interrupted attempts
//! and goes on after the last finished run: the next step after a success, a retry or the task's
//! failure after a failed or interrupted one, and the end of the task after a cancelled one.
//! [`Opening`] and [`Plan::resume`] decide it from the recorded runs.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::manifest::{Backoff, LoopMode, WorkflowSpec};

/// The life of a task: pending → running → succeeded | failed | cancelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    Pending,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Pending => "pending",
            TaskState::Running => "running",
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<TaskState> {
        [
            TaskState::Pending,
            TaskState::Running,
            TaskState::Succeeded,
            TaskState::Failed,
            TaskState::Cancelled,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }

    pub fn is_finished(self) -> bool {
        match self {
            TaskState::Pending | TaskState::Running => false,
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled => true,
        }
    }
}

/// How one step run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
    TimedOut,
    Cancelled,
    /// The run could not start (program not found, workspace gone, …).
    Error,
    /// The daemon or the workflow actor stopped while it ran.
    Interrupted,
}

impl RunState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Running => "running",
            RunState::Succeeded => "succeeded",
            RunState::Failed => "failed",
            RunState::TimedOut => "timed_out",
            RunState::Cancelled => "cancelled",
            RunState::Error => "error",
            RunState::Interrupted => "interrupted",
        }
    }

    pub fn parse(s: &str) -> Option<RunState> {
        [
            RunState::Running,
            RunState::Succeeded,
            RunState::Failed,
            RunState::TimedOut,
            RunState::Cancelled,
            RunState::Error,
            RunState::Interrupted,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// Where a task is: cycle and step index (0-based) and the attempt of that step (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub cycle: u32,
    pub step: usize,
    pub attempt: u32,
}

/// How a step run ended, as far as the workflow cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepResult {
    Succeeded,
    Failed(String),
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    Run(Position),
    Done,
    Failed(String),
}

/// The parts of a workflow spec the state machine needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    steps: Vec<PlanStep>,
    /// `None`: no cap (infinite loop until cancelled).
    max_cycles: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PlanStep {
    id: String,
    enabled: bool,
    repeatable: bool,
    retries: u32,
    backoff: Backoff,
}

impl Plan {
    pub fn new(spec: &WorkflowSpec) -> Plan {
        let max_cycles = match spec.loop_.mode {
            LoopMode::Once => Some(1),
            LoopMode::Fixed => Some(spec.loop_.max_cycles.unwrap_or(1)),
            LoopMode::Infinite => spec.loop_.max_cycles,
        };
        Plan {
            steps: spec
                .steps
                .iter()
                .map(|s| PlanStep {
                    id: s.id.clone(),
                    enabled: s.enabled,
                    repeatable: s.repeatable,
                    retries: s.retries.unwrap_or(0),
                    backoff: s.backoff.unwrap_or_default(),
                })
                .collect(),
            max_cycles,
        }
    }

    pub fn step_id(&self, index: usize) -> Option<&str> {
        self.steps.get(index).map(|s| s.id.as_str())
    }

    fn runnable(&self, cycle: u32, index: usize) -> bool {
        self.steps
            .get(index)
            .is_some_and(|s| s.enabled && (cycle == 1 || s.repeatable))
    }

    /// The first runnable step at or after `(cycle, from)`, moving on to later cycles; `Done`
    /// when the cap is reached or a whole cycle has nothing to run.
    fn seek(&self, mut cycle: u32, mut from: usize) -> Next {
        loop {
            if self.max_cycles.is_some_and(|max| cycle > max) {
                return Next::Done;
            }
            if let Some(i) = (from..self.steps.len()).find(|&i| self.runnable(cycle, i)) {
                return Next::Run(Position {
                    cycle,
                    step: i,
                    attempt: 1,
                });
            }
            // Nothing more in this cycle. If the next cycle would run nothing at all, stop.
            let next = cycle.saturating_add(1);
            if next == cycle || !(0..self.steps.len()).any(|i| self.runnable(next, i)) {
                return Next::Done;
            }
            cycle = next;
            from = 0;
        }
    }

    /// How long to wait before the run at `pos`: nothing for a first attempt, the step's
    /// backoff for a retry (`unit` in [0, 1) is the caller's draw for the jitter).
    pub fn retry_delay(&self, pos: Position, unit: f64) -> Duration {
        match self.steps.get(pos.step) {
            Some(s) if pos.attempt > 1 => s.backoff.delay(pos.attempt - 1, unit),
            _ => Duration::ZERO,
        }
    }

    /// Where a new task starts.
    pub fn start(&self) -> Next {
        self.seek(1, 0)
    }

    /// What follows the run at `at` that ended with `result`.
    pub fn after(&self, at: Position, result: &StepResult) -> Next {
        match result {
            StepResult::Succeeded => self.seek(at.cycle, at.step + 1),
            StepResult::Failed(reason) => {
                let retries = self.steps.get(at.step).map_or(0, |s| s.retries);
                if at.attempt <= retries {
                    Next::Run(Position {
                        attempt: at.attempt + 1,
                        ..at
                    })
                } else {
                    let id = self.step_id(at.step).unwrap_or("?");
                    let tries = if at.attempt == 1 {
                        String::new()
                    } else {
                        format!(" after {} attempts", at.attempt)
                    };
                    Next::Failed(format!("step {id:?} failed{tries}: {reason}"))
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Cancel and resume
// ---------------------------------------------------------------------------------------------

/// The reason recorded for a step that was running when the daemon or the task's workflow actor
/// stopped.
pub const INTERRUPTED: &str =
    "interrupted: the daemon or the task's workflow actor stopped while the step ran";

/// Why a running task is being stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CancelReason {
    /// `task cancel`.
    User,
    /// The daemon is shutting down.
    Shutdown,
    /// `concurrencyPolicy: Replace`: a newer task of the same trigger takes its place.
    Replaced(String),
}

impl CancelReason {
    /// How a task stopped for this reason ends: its state and reason.
    pub fn ending(&self) -> (TaskState, String) {
        match self {
            CancelReason::Shutdown => (
                TaskState::Failed,
                "interrupted: the daemon was shut down".to_owned(),
            ),
            CancelReason::Replaced(by) => (TaskState::Cancelled, format!("replaced: {by}")),
            CancelReason::User => (TaskState::Cancelled, "cancelled by request".to_owned()),
        }
    }
}

/// What a step's stdout is worth as `{prev_stdout}` / `{<step>_output}`: like `$(…)` in a
/// shell, the value drops trailing newlines.
pub fn output_value(stdout: &str) -> &str {
    stdout.trim_end_matches(['\n', '\r'])
}

/// What a WorkflowActor does first with the task it was started for, by the task's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opening {
    /// The task is finished already: stop.
    Halt,
    /// The task never ran: mark it running, write its payload, then go on from its runs (none).
    Begin,
    /// The task was running when the daemon or its actor stopped: mark the runs still recorded
    /// as running interrupted, then go on from its runs.
    Resume,
}

impl Opening {
    pub fn of(state: TaskState) -> Opening {
        match state {
            TaskState::Succeeded | TaskState::Failed | TaskState::Cancelled => Opening::Halt,
            TaskState::Pending => Opening::Begin,
            TaskState::Running => Opening::Resume,
        }
    }
}

/// A finished step run of the task, oldest first, as resume reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PastRun<'a> {
    pub step: &'a str,
    pub cycle: u32,
    pub attempt: u32,
    pub state: RunState,
    pub stdout: &'a str,
}

/// Where a task goes on from its recorded runs, and what those runs left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resume {
    pub next: Next,
    /// Set when the last run was cancelled: the task ends as cancelled by request.
    pub cancelling: Option<CancelReason>,
    /// The last successful output of each step (`{<step>_output}`).
    pub outputs: HashMap<String, String>,
    /// The last successful output of any step (`{prev_stdout}`).
    pub prev_stdout: String,
    /// How many runs the task had.
    pub runs: u32,
}

impl Plan {
    fn index_of(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }

    /// Where a task with the finished `runs` (oldest first) goes on: the start when it has none,
    /// else what follows its last run. A run that was still running when it was read counts as
    /// failed in an earlier run; one that was interrupted, as an interrupted attempt.
    pub fn resume<'a>(&self, runs: impl IntoIterator<Item = PastRun<'a>>) -> Resume {
        let mut outputs = HashMap::new();
        let mut prev_stdout = String::new();
        let mut count = 0u32;
        let mut last = None;
        for run in runs {
            count += 1;
            if run.state == RunState::Succeeded {
                let value = output_value(run.stdout).to_owned();
                outputs.insert(run.step.to_owned(), value.clone());
                prev_stdout = value;
            }
            last = Some(run);
        }
        let mut cancelling = None;
        let next = match last {
            None => self.start(),
            Some(last) => {
                let pos = Position {
                    cycle: last.cycle,
                    step: self.index_of(last.step).unwrap_or(0),
                    attempt: last.attempt,
                };
                match last.state {
                    RunState::Succeeded => self.after(pos, &StepResult::Succeeded),
                    RunState::Cancelled => {
                        cancelling = Some(CancelReason::User);
                        Next::Done
                    }
                    RunState::Interrupted => {
                        self.after(pos, &StepResult::Failed(INTERRUPTED.into()))
                    }
                    RunState::Running | RunState::Failed | RunState::TimedOut | RunState::Error => {
                        self.after(
                            pos,
                            &StepResult::Failed(format!(
                                "{} in an earlier run",
                                last.state.as_str()
                            )),
                        )
                    }
                }
            }
        };
        Resume {
            next,
            cancelling,
            outputs,
            prev_stdout,
            runs: count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::manifest::{LoopSpec, StepScope, StepSpec};

    fn step(id: &str, enabled: bool, repeatable: bool, retries: u32) -> StepSpec {
        StepSpec {
            id: id.into(),
            template: None,
            command: Some("true".into()),
            required_capability: None,
            scope: StepScope::Task,
            enabled,
            repeatable,
            timeout_secs: None,
            retries: Some(retries),
            backoff: None,
            idle_timeout_secs: None,
            type_: None,
        }
    }

    fn plan(steps: Vec<StepSpec>, mode: LoopMode, max_cycles: Option<u32>) -> Plan {
        Plan::new(&WorkflowSpec {
            steps,
            loop_: LoopSpec { mode, max_cycles },
            max_parallel: 1,
            description: None,
        })
    }

    /// Runs the plan to the end, with `fail(cycle, step, attempt)` deciding failures, and returns
    /// the visited `(cycle, step id, attempt)` plus the end.
    fn walk(p: &Plan, fail: impl Fn(u32, &str, u32) -> bool, limit: usize) -> (Vec<String>, Next) {
        let mut seen = Vec::new();
        let mut next = p.start();
        while let Next::Run(at) = next {
            let id = p.step_id(at.step).unwrap_or("?").to_owned();
            seen.push(format!("{}:{id}:{}", at.cycle, at.attempt));
            if seen.len() >= limit {
                return (seen, next);
            }
            let result = if fail(at.cycle, &id, at.attempt) {
                StepResult::Failed("exit code 3".into())
            } else {
                StepResult::Succeeded
            };
            next = p.after(at, &result);
        }
        (seen, next)
    }

    fn check(p: &Plan, fail: impl Fn(u32, &str, u32) -> bool, want: &[&str], end: Next) {
        let (seen, got_end) = walk(p, fail, 100);
        assert_eq!(seen, want);
        assert_eq!(got_end, end);
    }

    #[test]
    fn steps_loops_and_skips() {
        let never = |_: u32, _: &str, _: u32| false;
        let ab = vec![step("a", true, true, 0), step("b", true, true, 0)];
        check(
            &plan(ab.clone(), LoopMode::Once, None),
            never,
            &["1:a:1", "1:b:1"],
            Next::Done,
        );
        check(
            &plan(ab.clone(), LoopMode::Fixed, Some(2)),
            never,
            &["1:a:1", "1:b:1", "2:a:1", "2:b:1"],
            Next::Done,
        );
        check(
            &plan(
                vec![
                    step("a", true, false, 0),
                    step("b", false, true, 0),
                    step("c", true, true, 0),
                ],
                LoopMode::Fixed,
                Some(3),
            ),
            never,
            &["1:a:1", "1:c:1", "2:c:1", "3:c:1"],
            Next::Done,
        );
        // Infinite with a cap.
        check(
            &plan(vec![step("a", true, true, 0)], LoopMode::Infinite, Some(3)),
            never,
            &["1:a:1", "2:a:1", "3:a:1"],
            Next::Done,
        );
        // Infinite without a cap keeps going.
        let (seen, next) = walk(
            &plan(vec![step("a", true, true, 0)], LoopMode::Infinite, None),
            never,
            50,
        );
        assert_eq!(seen.len(), 50);
        assert!(matches!(next, Next::Run(_)));
        // Infinite where later cycles have nothing to run ends after cycle 1.
        check(
            &plan(vec![step("a", true, false, 0)], LoopMode::Infinite, None),
            never,
            &["1:a:1"],
            Next::Done,
        );
        // Nothing enabled at all.
        check(
            &plan(vec![step("a", false, true, 0)], LoopMode::Once, None),
            never,
            &[],
            Next::Done,
        );
    }

    #[test]
    fn failures_and_retries() {
        let ab = |retries| vec![step("a", true, true, retries), step("b", true, true, 0)];
        check(
            &plan(ab(0), LoopMode::Once, None),
            |_, id, _| id == "a",
            &["1:a:1"],
            Next::Failed("step \"a\" failed: exit code 3".into()),
        );
        check(
            &plan(ab(2), LoopMode::Once, None),
            |_, id, attempt| id == "a" && attempt < 3,
            &["1:a:1", "1:a:2", "1:a:3", "1:b:1"],
            Next::Done,
        );
        check(
            &plan(ab(1), LoopMode::Once, None),
            |_, id, _| id == "a",
            &["1:a:1", "1:a:2"],
            Next::Failed("step \"a\" failed after 2 attempts: exit code 3".into()),
        );
        // Retries reset for the next step and the next cycle.
        check(
            &plan(vec![step("a", true, true, 1)], LoopMode::Fixed, Some(2)),
            |_, _, attempt| attempt == 1,
            &["1:a:1", "1:a:2", "2:a:1", "2:a:2"],
            Next::Done,
        );
    }

    fn run<'a>(
        step: &'a str,
        cycle: u32,
        attempt: u32,
        state: RunState,
        stdout: &'a str,
    ) -> PastRun<'a> {
        PastRun {
            step,
            cycle,
            attempt,
            state,
            stdout,
        }
    }

    /// Resumes `p` from `runs` and checks where it goes on and whether it ends cancelled.
    #[track_caller]
    fn check_resume(p: &Plan, runs: &[PastRun<'_>], next: Next, cancelled: bool) {
        let got = p.resume(runs.iter().copied());
        assert_eq!(got.next, next, "{runs:?}");
        assert_eq!(got.cancelling.is_some(), cancelled, "{runs:?}");
        assert_eq!(got.runs as usize, runs.len());
    }

    #[test]
    fn resume_goes_on_after_the_last_run() {
        use RunState::*;
        let at = |cycle, step, attempt| {
            Next::Run(Position {
                cycle,
                step,
                attempt,
            })
        };
        let p = plan(
            vec![step("a", true, true, 1), step("b", true, true, 0)],
            LoopMode::Fixed,
            Some(2),
        );
        let interrupted = format!("step \"b\" failed: {INTERRUPTED}");
        let cases: Vec<(Vec<PastRun<'_>>, Next, bool)> = vec![
            // Never ran: the start.
            (vec![], at(1, 0, 1), false),
            // After a success, the next step; at the end of a cycle, the next cycle.
            (vec![run("a", 1, 1, Succeeded, "")], at(1, 1, 1), false),
            (
                vec![run("a", 1, 1, Succeeded, ""), run("b", 1, 1, Succeeded, "")],
                at(2, 0, 1),
                false,
            ),
            (vec![run("b", 2, 1, Succeeded, "")], Next::Done, false),
            // An interrupted attempt is retried while retries last…
            (vec![run("a", 1, 1, Interrupted, "")], at(1, 0, 2), false),
            // …and fails the task with reason `interrupted` when none are left.
            (
                vec![run("b", 1, 1, Interrupted, "")],
                Next::Failed(interrupted),
                false,
            ),
            // A failure recorded by an earlier incarnation counts as a failed attempt.
            (vec![run("a", 1, 1, TimedOut, "")], at(1, 0, 2), false),
            (
                vec![run("a", 1, 2, Error, "")],
                Next::Failed("step \"a\" failed after 2 attempts: error in an earlier run".into()),
                false,
            ),
            (
                vec![run("b", 1, 1, Running, "")],
                Next::Failed("step \"b\" failed: running in an earlier run".into()),
                false,
            ),
            // A cancelled run ends the task as cancelled.
            (vec![run("a", 1, 1, Cancelled, "")], Next::Done, true),
            // A step that no longer exists resumes as the first one.
            (vec![run("gone", 1, 1, Succeeded, "")], at(1, 1, 1), false),
        ];
        for (runs, next, cancelled) in cases {
            check_resume(&p, &runs, next, cancelled);
        }
    }

    #[test]
    fn resume_rebuilds_the_outputs_of_successful_runs() {
        let p = plan(
            vec![step("a", true, true, 1), step("b", true, true, 0)],
            LoopMode::Once,
            None,
        );
        let runs = [
            run("a", 1, 1, RunState::Failed, "partial\n"),
            run("a", 1, 2, RunState::Succeeded, "one\r\n\n"),
            run("b", 1, 1, RunState::Interrupted, "half"),
        ];
        let got = p.resume(runs);
        assert_eq!(got.outputs.len(), 1);
        assert_eq!(got.outputs["a"], "one");
        assert_eq!(got.prev_stdout, "one");
        assert_eq!(got.runs, 3);
    }

    #[test]
    fn openings_and_cancel_endings() {
        let openings = [
            (TaskState::Pending, Opening::Begin),
            (TaskState::Running, Opening::Resume),
            (TaskState::Succeeded, Opening::Halt),
            (TaskState::Failed, Opening::Halt),
            (TaskState::Cancelled, Opening::Halt),
        ];
        for (state, want) in openings {
            assert_eq!(Opening::of(state), want, "{state:?}");
        }
        let endings = [
            (
                CancelReason::User,
                TaskState::Cancelled,
                "cancelled by request",
            ),
            (
                CancelReason::Shutdown,
                TaskState::Failed,
                "interrupted: the daemon was shut down",
            ),
            (
                CancelReason::Replaced("task 9 of trigger t".into()),
                TaskState::Cancelled,
                "replaced: task 9 of trigger t",
            ),
        ];
        for (reason, state, text) in endings {
            assert_eq!(reason.ending(), (state, text.to_owned()), "{reason:?}");
        }
    }

    #[test]
    fn retries_wait_by_their_backoff_and_first_attempts_do_not() {
        let mut spec = WorkflowSpec {
            steps: vec![step("a", true, true, 3), step("b", true, true, 0)],
            loop_: LoopSpec::default(),
            max_parallel: 1,
            description: None,
        };
        let at = |step, attempt| Position {
            cycle: 1,
            step,
            attempt,
        };
        let secs = |p: &Plan, pos, unit| p.retry_delay(pos, unit).as_secs_f64();
        // Temporal's defaults: 1 s, doubling.
        let plan = Plan::new(&spec);
        assert_eq!(secs(&plan, at(0, 1), 0.5), 0.0);
        assert_eq!(secs(&plan, at(0, 2), 0.5), 1.0);
        assert_eq!(secs(&plan, at(0, 3), 0.5), 2.0);
        assert_eq!(secs(&plan, at(0, 4), 0.5), 4.0);
        // 0.2 s × 2, at most 0.5 s, ± 10 %.
        spec.steps[0].backoff = Some(Backoff {
            initial_delay_secs: 0.2,
            factor: 2.0,
            max_delay_secs: Some(0.5),
            jitter: 0.1,
        });
        let plan = Plan::new(&spec);
        let close = |a: f64, b: f64| (a - b).abs() < 1e-9;
        assert!(close(secs(&plan, at(0, 2), 0.5), 0.2));
        assert!(close(secs(&plan, at(0, 3), 0.5), 0.4));
        assert!(close(secs(&plan, at(0, 4), 0.5), 0.5), "capped");
        assert!(close(secs(&plan, at(0, 2), 0.0), 0.18));
        assert!(close(secs(&plan, at(0, 3), 1.0), 0.44));
        assert!(
            close(secs(&plan, at(0, 4), 1.0), 0.5),
            "the spread never passes the cap"
        );
        // A huge attempt number neither overflows nor passes the cap.
        assert!(close(secs(&plan, at(0, u32::MAX), 0.5), 0.5));
    }
}
