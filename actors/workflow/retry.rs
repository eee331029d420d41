//! The wait before a retry: a failed step's next attempt starts after its backoff
//! (`domain::manifest::Backoff`, drawn with jitter here), announced as a task event; a timer
//! brings the attempt back to [`WorkflowState::advance`]. A cancel meanwhile ends the task at
//! once (no step is running), and the timer's message then finds no actor.
//! A stream-json step's retry resumes the session its failed attempt reported, when the agent
//! has `resumeArgs`.

use std::hash::{BuildHasher, RandomState};

use super::{WorkflowMsg, WorkflowState};
use crate::actors::runtime::Addr;
use crate::domain::workflow::{Next, Position};

impl WorkflowState {
    /// Whether the run at `pos` must first wait for its backoff; if so, the timer is armed.
    pub(super) fn wait_before(&mut self, me: &Addr<WorkflowMsg>, pos: Position) -> bool {
        if self.backed_off.take() == Some(pos) {
            return false;
        }
        let delay = self.plan.retry_delay(pos, jitter_unit());
        if delay.is_zero() {
            return false;
        }
        self.backed_off = Some(pos);
        let step = self.plan.step_id(pos.step).unwrap_or("?").to_owned();
        self.event(&format!(
            "step {step:?} attempt {} starts in {:.3} s (backoff)",
            pos.attempt,
            delay.as_secs_f64()
        ));
        me.send_after(delay, move || WorkflowMsg::Advance(Next::Run(pos)));
        true
    }
}

impl WorkflowState {
    /// The session a retry at `pos` resumes: the one its step's failed attempt reported.
    pub(super) fn session_of(&self, pos: Position) -> Option<&str> {
        self.session
            .as_ref()
            .filter(|(step, _)| *step == pos.step && pos.attempt > 1)
            .map(|(_, id)| id.as_str())
    }
}

/// A draw in [0, 1) for the jitter: each `RandomState` is seeded afresh.
fn jitter_unit() -> f64 {
    (RandomState::new().hash_one(0u8) >> 11) as f64 / (1u64 << 53) as f64
}
