//! The rules of an Agent's `output`, its guards (`maxTurns`, `maxCostUsd`) and `resumeArgs`:
//! they read what a stream-json run reports, so they need `output: stream-json`; each guard must
//! be a positive limit, and `resumeArgs` may use only `{session_id}`.

use super::local::{Problem, problem_hint};
use crate::domain::manifest::{AgentOutput, AgentSpec};
use crate::domain::render;

pub(super) fn output_problems(a: &AgentSpec, out: &mut Vec<Problem>) {
    if let Some(r) = &a.resume_args {
        match render::split_command(r) {
            Err(e) => out.push(problem_hint(
                "spec.resumeArgs",
                e.to_string(),
                "quote words that hold spaces",
            )),
            Ok(words) => {
                for name in words.iter().flat_map(|w| render::placeholders(w)) {
                    if name != "session_id" {
                        out.push(problem_hint(
                            "spec.resumeArgs",
                            format!("unknown placeholder {{{name}}} in resumeArgs"),
                            "resumeArgs knows only {session_id}, e.g. `--resume {session_id}`",
                        ));
                    }
                }
            }
        }
    }
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
            ("resumeArgs", a.resume_args.is_some()),
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
