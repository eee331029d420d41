//! Webhook filters: `filter.condition` is a CEL expression (the `cel` crate) over the delivery's
//! JSON payload. It is compiled when the trigger is applied (a syntax error fails the apply) and
//! evaluated before a delivery fires. Variables: `payload` (the whole document) and, for every
//! top-level key `k` of an object payload whose name is an identifier, `payload_k` — the older
//! spelling (`payload_type == 'event_callback'`) keeps working.

use std::fmt;

use cel::{Context, Program};

/// A compiled condition.
pub struct Filter {
    source: String,
    program: Program,
}

impl fmt::Debug for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Filter")
            .field("source", &self.source)
            .finish()
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Filter {
    /// Compiles `source`; the error names the problem in CEL's words.
    pub fn compile(source: &str) -> Result<Filter, String> {
        let program = Program::compile(source).map_err(|e| {
            format!(
                "invalid CEL condition {source:?}: {}",
                e.to_string().replace('\n', "; ")
            )
        })?;
        Ok(Filter {
            source: source.to_owned(),
            program,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the condition for `payload`. An error (a missing field, a type mismatch, a
    /// result that is not a boolean) is returned as text; callers treat it as "no match".
    pub fn matches(&self, payload: &serde_json::Value) -> Result<bool, String> {
        let mut ctx = Context::default();
        ctx.add_variable("payload", payload)
            .map_err(|e| format!("payload cannot be given to the condition: {e}"))?;
        if let serde_json::Value::Object(map) = payload {
            for (k, v) in map {
                if is_identifier(k) {
                    ctx.add_variable(format!("payload_{k}"), v).map_err(|e| {
                        format!("payload field {k:?} cannot be given to the condition: {e}")
                    })?;
                }
            }
        }
        match self.program.execute(&ctx) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(format!(
                "condition {:?} gave {other:?}, not a boolean",
                self.source
            )),
            Err(e) => Err(format!("condition {:?} failed: {e}", self.source)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(condition: &str, payload: &str, want: Result<bool, &str>) {
        let f = Filter::compile(condition).unwrap_or_else(|e| panic!("{e}"));
        let p: serde_json::Value = serde_json::from_str(payload).unwrap_or(serde_json::Value::Null);
        match (f.matches(&p), want) {
            (Ok(got), Ok(want)) => assert_eq!(got, want, "{condition} over {payload}"),
            (Err(e), Err(want)) => assert!(e.contains(want), "{e:?} lacks {want:?}"),
            (got, want) => panic!("{condition} over {payload}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn conditions_over_payloads() {
        let ev =
            r#"{"type": "event_callback", "event": {"type": "app_mention", "user": "U1"}, "n": 3}"#;
        check("payload.type == 'event_callback'", ev, Ok(true));
        check("payload_type == 'event_callback'", ev, Ok(true));
        check("payload.event.type == 'message'", ev, Ok(false));
        check(
            "payload.n > 2 && payload.event.user.startsWith('U')",
            ev,
            Ok(true),
        );
        check("has(payload.event.channel)", ev, Ok(false));
        check("payload.type", ev, Err("not a boolean"));
        check("payload.missing == 'x'", ev, Err("failed"));
        check(
            "payload_ref == 'refs/heads/main'",
            r#"{"ref": "refs/heads/main"}"#,
            Ok(true),
        );
        check("payload == null", "", Ok(true));
    }

    #[test]
    fn syntax_errors_are_reported_at_compile() {
        let e = Filter::compile("payload.type == ")
            .err()
            .unwrap_or_default();
        assert!(e.starts_with("invalid CEL condition"), "{e}");
        assert!(Filter::compile("payload.type == 'x'").is_ok());
    }
}
