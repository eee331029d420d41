//! Webhook filters: `filter.condition` is a CEL expression (the `cel` crate) over the delivery's
//! JSON payload. It is compiled when the trigger is applied (a syntax error fails the apply) and
//! evaluated before a delivery fires. Variables: `payload` (the whole document) and, for every
//! top-level key `k` of an object payload whose name is an identifier, `payload_k` — the older
//! spelling (`payload_type == 'event_callback'`) keeps working.
//!
//! A condition is untrusted input that the daemon compiles inside an actor and evaluates on
//! every delivery, and the `cel` parser and interpreter recurse once per level of the
//! expression tree. So [`Filter::compile`] refuses, before and after parsing, what could exhaust
//! a thread's stack or the heap: more than [`MAX_CONDITION_BYTES`] of source, and a tree deeper
//! than [`MAX_CONDITION_DEPTH`] (measured without recursion). A panic inside the parser is caught
//! and reported as an invalid condition. Every `matches` pattern written as a string literal is
//! compiled at apply (SPEC §3), so a bad regular expression fails the apply instead of filtering
//! every delivery.

use std::fmt;

use cel::common::ast::{EntryExpr, Expr, IdedExpr, LiteralValue};
use cel::{Context, Program};

/// The longest condition accepted, in bytes.
pub const MAX_CONDITION_BYTES: usize = 4096;
/// The deepest expression tree accepted (`a.b.c == 1` is 4 deep; so is `x && y && z`).
pub const MAX_CONDITION_DEPTH: usize = 64;
/// The largest compiled form a literal `matches` pattern may have (the `regex` crate's limit).
const REGEX_SIZE_LIMIT: usize = 1 << 20;
/// How much of a parser message is kept: the `cel` parser repeats the source in its messages.
const MESSAGE_LIMIT: usize = 400;

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

/// Why a condition does not compile: the problem in CEL's words, or the limit it exceeds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FilterError {
    #[error(
        "condition is {len} bytes; the limit is {MAX_CONDITION_BYTES}: filter on fewer \
         fields, or move the logic into the workflow"
    )]
    TooLong { len: usize },
    /// The parser's first errors (abbreviated), and how many more it found.
    #[error("invalid CEL condition {shown:?}: {errors}")]
    Syntax { shown: String, errors: String },
    /// The parser panicked on the condition (caught).
    #[error(
        "invalid CEL condition {shown:?}: the CEL parser failed on it; check the \
         syntax, or simplify the expression"
    )]
    ParserFailed { shown: String },
    #[error(
        "condition nests deeper than {MAX_CONDITION_DEPTH} levels: split long chains of \
         `&&`, `||` or `.field` into fewer terms"
    )]
    TooDeep,
    /// A literal `matches` pattern that the `regex` crate refuses.
    #[error("matches({pattern:?}): not a valid regular expression: {reason}")]
    Regex { pattern: String, reason: String },
}

/// Why a condition could not be evaluated for a payload; callers treat it as "no match".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EvalError {
    #[error("payload cannot be given to the condition: {0}")]
    Payload(String),
    #[error("payload field {key:?} cannot be given to the condition: {reason}")]
    Field { key: String, reason: String },
    /// The condition gave a value (shown as CEL's debug form) that is not a boolean.
    #[error("condition {condition:?} gave {value}, not a boolean")]
    NotBoolean { condition: String, value: String },
    #[error("condition {condition:?} failed: {reason}")]
    Failed { condition: String, reason: String },
}

impl Filter {
    /// Compiles `source`; the error names the problem in CEL's words, or the limit it exceeds.
    pub fn compile(source: &str) -> Result<Filter, FilterError> {
        if source.len() > MAX_CONDITION_BYTES {
            return Err(FilterError::TooLong { len: source.len() });
        }
        let shown = abbreviate(source, 80);
        let compiled = std::panic::catch_unwind(|| Program::compile(source));
        let program = match compiled {
            Ok(Ok(p)) => p,
            Ok(Err(e)) => {
                // Only the first errors, without the parser's source snippets: its own message
                // repeats the whole line for every bad token (quadratic in the input), and its
                // caret line panics on a negative column.
                let first: Vec<String> = e
                    .errors
                    .iter()
                    .take(3)
                    .map(|p| {
                        format!(
                            "{}:{}: {}",
                            p.pos.0,
                            p.pos.1,
                            abbreviate(&p.msg.replace('\n', " "), MESSAGE_LIMIT / 3)
                        )
                    })
                    .collect();
                let more = match e.errors.len() {
                    0..=3 => String::new(),
                    n => format!(" (and {} more)", n - 3),
                };
                return Err(FilterError::Syntax {
                    shown,
                    errors: format!("{}{more}", first.join("; ")),
                });
            }
            Err(_) => return Err(FilterError::ParserFailed { shown }),
        };
        check_tree(program.expression())?;
        Ok(Filter {
            source: source.to_owned(),
            program,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates the condition for `payload`. An error (a missing field, a type mismatch, a
    /// result that is not a boolean) is an [`EvalError`]; callers treat it as "no match".
    pub fn matches(&self, payload: &serde_json::Value) -> Result<bool, EvalError> {
        let mut ctx = Context::default();
        ctx.add_variable("payload", payload)
            .map_err(|e| EvalError::Payload(e.to_string()))?;
        if let serde_json::Value::Object(map) = payload {
            for (k, v) in map {
                if is_identifier(k) {
                    ctx.add_variable(format!("payload_{k}"), v)
                        .map_err(|e| EvalError::Field {
                            key: k.clone(),
                            reason: e.to_string(),
                        })?;
                }
            }
        }
        match self.program.execute(&ctx) {
            Ok(cel::Value::Bool(b)) => Ok(b),
            Ok(other) => Err(EvalError::NotBoolean {
                condition: self.source.clone(),
                value: format!("{other:?}"),
            }),
            Err(e) => Err(EvalError::Failed {
                condition: self.source.clone(),
                reason: e.to_string(),
            }),
        }
    }
}

/// `text` cut to at most `max` bytes (on a character boundary), with `…` when cut.
fn abbreviate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// The sub-expressions of `e`, in source order.
fn children(e: &IdedExpr) -> Vec<&IdedExpr> {
    match &e.expr {
        Expr::Unspecified | Expr::Ident(_) | Expr::Literal(_) => Vec::new(),
        Expr::Call(c) => c.target.iter().map(|t| &**t).chain(&c.args).collect(),
        Expr::Comprehension(c) => vec![
            &c.iter_range,
            &c.accu_init,
            &c.loop_cond,
            &c.loop_step,
            &c.result,
        ],
        Expr::List(l) => l.elements.iter().collect(),
        Expr::Map(m) => m.entries.iter().flat_map(entry_children).collect(),
        Expr::Select(s) => vec![&*s.operand],
        Expr::Struct(s) => s.entries.iter().flat_map(entry_children).collect(),
    }
}

fn entry_children(e: &cel::common::ast::IdedEntryExpr) -> Vec<&IdedExpr> {
    match &e.expr {
        EntryExpr::StructField(f) => vec![&f.value],
        EntryExpr::MapEntry(m) => vec![&m.key, &m.value],
    }
}

/// Walks the tree with an explicit stack: its depth must stay within [`MAX_CONDITION_DEPTH`]
/// (evaluation recurses once per level), and every literal `matches` pattern must compile.
fn check_tree(root: &IdedExpr) -> Result<(), FilterError> {
    let mut stack = vec![(root, 1usize)];
    while let Some((e, depth)) = stack.pop() {
        if depth > MAX_CONDITION_DEPTH {
            return Err(FilterError::TooDeep);
        }
        // `s.matches(re)` or `matches(s, re)`: the pattern is the last argument.
        if let Expr::Call(c) = &e.expr
            && c.func_name == "matches"
            && let Some(IdedExpr {
                expr: Expr::Literal(LiteralValue::String(re)),
                ..
            }) = c.args.last()
        {
            check_regex(re.inner())?;
        }
        stack.extend(children(e).into_iter().map(|c| (c, depth + 1)));
    }
    Ok(())
}

fn check_regex(pattern: &str) -> Result<(), FilterError> {
    regex::RegexBuilder::new(pattern)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map(|_| ())
        .map_err(|e| FilterError::Regex {
            pattern: abbreviate(pattern, 80),
            reason: abbreviate(
                &e.to_string()
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" "),
                MESSAGE_LIMIT,
            ),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(condition: &str, payload: &str, want: Result<bool, &str>) {
        let f = Filter::compile(condition).unwrap_or_else(|e| panic!("{e}"));
        let p: serde_json::Value = serde_json::from_str(payload).unwrap_or(serde_json::Value::Null);
        match (f.matches(&p).map_err(|e| e.to_string()), want) {
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
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.starts_with("invalid CEL condition"), "{e}");
        assert!(Filter::compile("payload.type == 'x'").is_ok());
    }

    fn refused(condition: &str, want: &str) {
        match Filter::compile(condition) {
            Ok(_) => panic!("{} bytes: compiled, want {want:?}", condition.len()),
            Err(e) => {
                let e = e.to_string();
                assert!(e.contains(want), "{e:?} lacks {want:?}");
                assert!(e.len() < 1024, "error of {} bytes", e.len());
            }
        }
    }

    #[test]
    fn hostile_conditions_are_refused_with_the_limit_they_exceed() {
        // 5,000 member accesses overflowed a worker's stack in the parser (the daemon aborted).
        refused(
            &format!("payload{} == 1", ".a".repeat(5000)),
            "the limit is 4096",
        );
        // Within the byte limit the tree is still too deep to evaluate safely.
        refused(
            &format!("payload{} == 1", ".a".repeat(2000)),
            "deeper than 64",
        );
        refused(&vec!["1"; 1000].join(" + "), "deeper than 64");
        // A long list before a syntax error made the parser panic while formatting its message.
        refused(
            &format!("[{}].size() > 0 && ", vec!["1"; 50_000].join(",")),
            "the limit is 4096",
        );
        refused(
            &format!("[{}].size() > 0 && ", vec!["1"; 2000].join(",")),
            "invalid CEL condition",
        );
        refused(
            &format!("{}1{}", "[".repeat(2000), "]".repeat(2000)),
            "invalid CEL condition",
        );
        // The parser's own message repeats the line for every bad token (100 MB for 8 KiB).
        refused(&"#".repeat(MAX_CONDITION_BYTES), "more)");
        // Its caret line panicked on a column beyond 65,535 (row 2 of issue 12).
        refused(
            &format!("{} ]", "1 ".repeat(MAX_CONDITION_BYTES / 2 - 2)),
            "invalid CEL condition",
        );
        // Regular expressions are checked at apply, in both spellings.
        refused("payload.x.matches('(')", "not a valid regular expression");
        refused(
            "matches(payload.x, 'a{99999999}')",
            "not a valid regular expression",
        );
        refused(
            "payload.items.exists(i, i.name.matches('[z-a]'))",
            "not a valid regular expression",
        );
    }

    #[test]
    fn ordinary_conditions_stay_within_the_limits() {
        let ev = r#"{"ref": "refs/heads/main", "repository": {"full_name": "org/repo"}}"#;
        check(
            "payload.ref.matches('^refs/heads/(main|release-.*)$')",
            ev,
            Ok(true),
        );
        check("matches(payload.ref, 'tags')", ev, Ok(false));
        check(
            // `&&` and `||` chains are balanced by the parser, so long ones stay shallow.
            &vec!["payload.repository.full_name != 'x'"; 100].join(" && "),
            ev,
            Ok(true),
        );
        // A pattern that only exists at run time is the evaluation's business.
        check(
            "payload.ref.matches(payload.repository.full_name)",
            ev,
            Ok(false),
        );
    }
}
