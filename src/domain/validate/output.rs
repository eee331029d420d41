//! The rules of an Agent's `output` and its guards (`maxTurns`, `maxCostUsd`): the guards read
//! what a stream-json run reports, so they need `output: stream-json`, and each must be a
//! positive limit.

use super::local::{Problem, problem_hint};
use crate::domain::manifest::{AgentOutput, AgentSpec};

pub(super) fn output_problems(a: &AgentSpec, out: &mut Vec<Problem>) {
    if a.max_turns == Some(0) {
        out.push(problem_hint(
            "spec.maxTurns",
            "maxTurns is 0",
            "use a positive number of turns or leave it out",
        ));
    }
    if let Some(c) = a.max_cost_usd
        && !(c.is_finite() && c > 0.0)
    {
        out.push(problem_hint(
            "spec.maxCostUsd",
            format!("maxCostUsd {c} is not a positive amount"),
            "give the most a run may cost in US dollars, e.g. 0.50, or leave it out",
        ));
    }
    if a.output == AgentOutput::Text {
        for (field, set) in [
            ("maxTurns", a.max_turns.is_some()),
            ("maxCostUsd", a.max_cost_usd.is_some()),
        ] {
            if set {
                out.push(problem_hint(
                    format!("spec.{field}"),
                    format!("{field} needs `output: stream-json`: only a stream-json run reports its turns and cost"),
                    "set `output: stream-json` and have the agent print it (claude -p --output-format stream-json --verbose)",
                ));
            }
        }
    }
}
