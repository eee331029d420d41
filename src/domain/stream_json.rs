//! The `stream-json` output of AI coding agents (`claude -p --output-format stream-json
//! --verbose` and CLIs that copy it), read as it arrives and never trusted. One JSON object per
//! line: `{"type":"system","subtype":"init","session_id":…}`, then `assistant` messages whose
//! `message.content` holds `text` and `tool_use` blocks (with `message.usage`), `user` messages
//! with the tool results, and a final `{"type":"result","subtype":"success"|"error_…",
//! "result":…,"num_turns":N,"total_cost_usd":X,"usage":{…},"session_id":…,"is_error":…}`.
//!
//! [`StreamParser`] takes the agent's stdout in whatever pieces it comes and keeps a bounded
//! [`StreamSummary`]: the final result text, the number of turns, tokens in and out, the cost,
//! the session id and the tools called with their counts. A line that is not a JSON object with
//! a string `type` is counted as bad and otherwise ignored; a line longer than [`MAX_LINE`] is
//! skipped whole; fields of the wrong type are ignored one by one. Nothing here grows with the
//! stream: one line buffer, one entry per tool name up to [`MAX_TOOLS`], strings cut to their
//! bounds.
//!
//! Turns are counted while the agent runs: an `assistant` event whose `message.id` differs from
//! the previous one starts a turn (Claude emits one event per content block, all with their
//! message's id; an event without an id is a turn of its own). The result's `num_turns`, when it
//! comes, is the final count. The [`Guards`] (`maxTurns`, `maxCostUsd` of the Agent) are checked
//! after every line: [`StreamParser::push`] returns the reason the first time one is exceeded,
//! and the caller stops the run.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest line parsed; a longer one (a huge tool result, say) is skipped and counted bad.
pub const MAX_LINE: usize = 4 << 20;

/// Distinct tool names kept; calls of further tools are counted under [`OTHER_TOOLS`].
pub const MAX_TOOLS: usize = 64;

/// The name the calls of tools beyond [`MAX_TOOLS`] are counted under.
pub const OTHER_TOOLS: &str = "(other)";

/// Bytes kept of a tool name, a subtype or a session id.
pub const MAX_NAME: usize = 200;

/// The limits of an Agent's run (`maxTurns`, `maxCostUsd`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Guards {
    pub max_turns: Option<u32>,
    pub max_cost_usd: Option<f64>,
}

/// How often one tool was called.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolCount {
    pub name: String,
    pub count: u64,
}

/// What a stream-json run said about itself (`task show`: `streamJson`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamSummary {
    /// The final result text (`result` of the result line), at most the capture bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<String>,
    /// The result text was cut at the bound.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub result_truncated: bool,
    /// `success`, `error_max_turns`, `error_during_execution`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subtype: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_error: Option<bool>,
    pub turns: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Tools called, by name, with their counts (in the order first called).
    #[serde(default)]
    pub tools: Vec<ToolCount>,
    /// Lines that were not a JSON object with a `type`, or too long to parse.
    #[serde(default)]
    pub bad_lines: u64,
    /// Why a guard stopped the run (also the run's reason).
    #[serde(skip)]
    pub stopped: Option<String>,
    /// A result line arrived.
    #[serde(skip)]
    pub has_result: bool,
}

impl StreamSummary {
    /// Why a run whose process exited 0 failed all the same: a guard stopped it, its stream
    /// has no result line, or the result reports an error.
    pub fn failure(&self) -> Option<String> {
        if let Some(s) = &self.stopped {
            return Some(s.clone());
        }
        if !self.has_result {
            return Some("the agent's stream-json output has no result line".into());
        }
        self.reported_error()
    }

    /// The error the result line reports, if it reports one.
    pub fn reported_error(&self) -> Option<String> {
        let subtype = self.subtype.as_deref().unwrap_or("");
        if self.is_error != Some(true) && !subtype.starts_with("error") {
            return None;
        }
        let mut why = format!(
            "the agent reported an error ({})",
            if subtype.is_empty() {
                "no subtype"
            } else {
                subtype
            }
        );
        if let Some(r) = self
            .result
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            let _ = write!(why, ": {}", cut(r, 200));
        }
        Some(why)
    }

    /// Passes every text the agent wrote through `redact` (a secret escaped inside a JSON string
    /// is only recognisable once the string is parsed).
    pub fn redact(&mut self, redact: impl Fn(&str) -> String) {
        for s in [&mut self.result, &mut self.subtype, &mut self.session_id]
            .into_iter()
            .flatten()
        {
            *s = redact(s);
        }
        for t in &mut self.tools {
            t.name = redact(&t.name);
        }
    }
}

/// Reads one agent's stream-json stdout (see the module doc).
#[derive(Debug)]
pub struct StreamParser {
    guards: Guards,
    /// Bytes kept of the result text.
    max_result: usize,
    line: Vec<u8>,
    /// The current line passed [`MAX_LINE`]: its bytes are dropped until its newline.
    skipping: bool,
    summary: StreamSummary,
    /// Turns counted from `assistant` events.
    counted: u32,
    /// `num_turns` of the result line.
    reported_turns: Option<u32>,
    /// The id of the message the last `assistant` event belonged to.
    message: Option<String>,
    /// The latest usage of that message, and the sum over the messages before it.
    message_usage: (u64, u64),
    earlier_usage: (u64, u64),
    saw_usage: bool,
    /// The result line's usage, which is the whole run's.
    result_usage: Option<(Option<u64>, Option<u64>)>,
}

impl StreamParser {
    /// A parser that keeps at most `max_result` bytes of the result text.
    pub fn new(guards: Guards, max_result: usize) -> StreamParser {
        StreamParser {
            guards,
            max_result,
            line: Vec::new(),
            skipping: false,
            summary: StreamSummary::default(),
            counted: 0,
            reported_turns: None,
            message: None,
            message_usage: (0, 0),
            earlier_usage: (0, 0),
            saw_usage: false,
            result_usage: None,
        }
    }

    /// Feeds the next piece of output. Returns why the run must stop, the first time a guard is
    /// exceeded (later calls return `None`).
    pub fn push(&mut self, mut data: &[u8]) -> Option<String> {
        let mut tripped = None;
        while !data.is_empty() {
            let newline = data.iter().position(|&b| b == b'\n');
            let end = newline.unwrap_or(data.len());
            if !self.skipping {
                if self.line.len() + end > MAX_LINE {
                    self.skipping = true;
                    self.line = Vec::new();
                    self.summary.bad_lines += 1;
                } else {
                    self.line.extend_from_slice(&data[..end]);
                }
            }
            match newline {
                Some(at) => {
                    if !self.skipping {
                        let line = std::mem::take(&mut self.line);
                        tripped = tripped.or(self.line_done(&line));
                    }
                    self.skipping = false;
                    data = &data[at + 1..];
                }
                None => data = &[],
            }
        }
        tripped
    }

    /// The stream ended: a last line without a newline still counts. Returns the summary.
    pub fn finish(mut self) -> StreamSummary {
        if !self.skipping && !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line);
        }
        let mut s = self.summary;
        s.turns = self.reported_turns.unwrap_or(self.counted);
        let summed = (
            self.earlier_usage.0.saturating_add(self.message_usage.0),
            self.earlier_usage.1.saturating_add(self.message_usage.1),
        );
        let (input, output) = match self.result_usage {
            Some(u) => u,
            None if self.saw_usage => (Some(summed.0), Some(summed.1)),
            None => (None, None),
        };
        s.input_tokens = input;
        s.output_tokens = output;
        s
    }

    /// Turns so far: as counted, or the result's count once it came (the larger).
    pub fn turns(&self) -> u32 {
        self.reported_turns.unwrap_or(0).max(self.counted)
    }

    /// Handles one complete line; returns a guard's reason if this line tripped one.
    fn line_done(&mut self, line: &[u8]) -> Option<String> {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        let event: Value = match serde_json::from_slice(line) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                self.summary.bad_lines += 1;
                return None;
            }
        };
        let Some(kind) = event.get("type").and_then(Value::as_str) else {
            self.summary.bad_lines += 1;
            return None;
        };
        if self.summary.session_id.is_none()
            && let Some(id) = text(&event, "session_id").filter(|id| !id.is_empty())
        {
            self.summary.session_id = Some(name(id));
        }
        if let Some(cost) = event.get("total_cost_usd").and_then(cost) {
            self.summary.cost_usd = Some(cost);
        }
        match kind {
            "assistant" => self.assistant(&event),
            "result" => self.result(&event),
            _ => {}
        }
        self.check()
    }

    fn assistant(&mut self, event: &Value) {
        let message = event.get("message");
        let id = message.and_then(|m| text(m, "id")).map(name);
        let same = id.is_some() && id == self.message;
        if !same {
            self.earlier_usage.0 = self.earlier_usage.0.saturating_add(self.message_usage.0);
            self.earlier_usage.1 = self.earlier_usage.1.saturating_add(self.message_usage.1);
            self.message_usage = (0, 0);
            self.counted = self.counted.saturating_add(1);
            self.message = id;
        }
        if let Some(usage) = message.and_then(|m| m.get("usage")) {
            let (input, output) = usage_of(usage);
            if input.is_some() || output.is_some() {
                self.saw_usage = true;
                // Events of one message repeat its usage (or grow it): keep the latest.
                self.message_usage = (input.unwrap_or(0), output.unwrap_or(0));
            }
        }
        let blocks = message
            .and_then(|m| m.get("content"))
            .and_then(Value::as_array);
        for block in blocks.into_iter().flatten() {
            let kind = block.get("type").and_then(Value::as_str);
            if matches!(kind, Some("tool_use" | "server_tool_use"))
                && let Some(tool) = text(block, "name").filter(|n| !n.is_empty())
            {
                self.called(tool);
            }
        }
    }

    fn called(&mut self, tool: &str) {
        let tool = name(tool);
        let tools = &mut self.summary.tools;
        let name = if tools.iter().any(|t| t.name == tool) || tools.len() < MAX_TOOLS {
            tool
        } else {
            OTHER_TOOLS.to_owned()
        };
        match tools.iter_mut().find(|t| t.name == name) {
            Some(t) => t.count = t.count.saturating_add(1),
            None => tools.push(ToolCount { name, count: 1 }),
        }
    }

    fn result(&mut self, event: &Value) {
        let s = &mut self.summary;
        s.has_result = true;
        s.subtype = text(event, "subtype").map(name);
        s.is_error = event.get("is_error").and_then(Value::as_bool);
        match text(event, "result") {
            Some(r) => {
                let kept = cut(r, self.max_result);
                s.result_truncated = kept.len() < r.len();
                s.result = Some(kept.to_owned());
            }
            None => {
                s.result = None;
                s.result_truncated = false;
            }
        }
        if let Some(n) = event.get("num_turns").and_then(count) {
            self.reported_turns = Some(u32::try_from(n).unwrap_or(u32::MAX));
        }
        if let Some(usage) = event.get("usage") {
            let u = usage_of(usage);
            if u.0.is_some() || u.1.is_some() {
                self.result_usage = Some(u);
            }
        }
    }

    /// Checks the guards; the first one exceeded stops the run, once.
    fn check(&mut self) -> Option<String> {
        if self.summary.stopped.is_some() {
            return None;
        }
        let turns = self.turns();
        let why = match (self.guards.max_turns, self.guards.max_cost_usd) {
            (Some(max), _) if turns > max => {
                format!("stopped: {turns} turns exceed maxTurns {max}")
            }
            (_, Some(max)) if self.summary.cost_usd.is_some_and(|c| c > max) => format!(
                "stopped: cost {} USD exceeds maxCostUsd {max}",
                self.summary.cost_usd.unwrap_or_default()
            ),
            _ => return None,
        };
        self.summary.stopped = Some(why.clone());
        Some(why)
    }
}

/// A string field.
fn text<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// A count: a non-negative integer (or a whole float, as some writers emit).
fn count(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0)
            .map(|f| f.min(u64::MAX as f64) as u64)
    })
}

/// A cost: a finite, non-negative number.
fn cost(v: &Value) -> Option<f64> {
    v.as_f64().filter(|f| f.is_finite() && *f >= 0.0)
}

fn usage_of(usage: &Value) -> (Option<u64>, Option<u64>) {
    (
        usage.get("input_tokens").and_then(count),
        usage.get("output_tokens").and_then(count),
    )
}

/// A name, id or subtype as kept: at most [`MAX_NAME`] bytes, control characters replaced, so
/// that it prints safely on a terminal.
fn name(s: &str) -> String {
    cut(s, MAX_NAME)
        .chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests;
