//! Prompt and command templates. A placeholder is `{name}` where `name` is an identifier
//! (`[A-Za-z_][A-Za-z0-9_-]*`); `{{name}}` is a literal `{name}`, and any other brace (JSON in a
//! prompt, say) is left as written. Agent commands are split into argv with shell-word rules when
//! they are applied and placeholders are substituted *inside* argv elements afterwards, so no
//! substituted text (a goal, a webhook payload) can ever become shell syntax.

use std::borrow::Cow;

use thiserror::Error;

#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RenderError {
    #[error("command cannot be split into arguments: {0}")]
    Split(String),
    #[error("command is empty")]
    EmptyCommand,
}

/// Placeholders of a step prompt (`StepTemplate.spec.prompt`).
pub const PROMPT_PLACEHOLDERS: &[&str] = &[
    "goal",
    "task_id",
    "workflow",
    "workspace_root",
    "cycle",
    "payload",
    "payload_file",
    "prev_stdout",
    "step_id",
    "project",
];

/// Placeholders of an agent command, beside the prompt ones.
pub const COMMAND_PLACEHOLDERS: &[&str] = &["prompt", "prompt_file"];

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece<'a> {
    Text(Cow<'a, str>),
    Placeholder(&'a str),
}

/// Parses a template into text and placeholders.
pub fn parse(template: &str) -> Vec<Piece<'_>> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = template;
    while let Some(pos) = rest.find(['{', '}']) {
        text.push_str(&rest[..pos]);
        let tail = &rest[pos..];
        // `{{name}}` is the escape for a literal `{name}`.
        if let Some(name) = tail.strip_prefix('{').and_then(placeholder_at)
            && tail[name.len() + 2..].starts_with("}}")
        {
            text.push('{');
            text.push_str(name);
            text.push('}');
            rest = &tail[name.len() + 4..];
            continue;
        }
        if let Some(name) = placeholder_at(tail) {
            if !text.is_empty() {
                pieces.push(Piece::Text(Cow::Owned(std::mem::take(&mut text))));
            }
            pieces.push(Piece::Placeholder(name));
            rest = &tail[name.len() + 2..];
            continue;
        }
        text.push_str(&tail[..1]);
        rest = &tail[1..];
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(Cow::Owned(text)));
    }
    pieces
}

/// The identifier of a `{name}` placeholder at the start of `s`, if there is one.
fn placeholder_at(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('{')?;
    let end = inner.find('}')?;
    let name = &inner[..end];
    let mut chars = name.chars();
    let first = chars.next()?;
    let ok = (first.is_ascii_alphabetic() || first == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    ok.then_some(name)
}

/// The placeholder names used in `template`, in order, without duplicates.
pub fn placeholders(template: &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for piece in parse(template) {
        if let Piece::Placeholder(name) = piece
            && !out.contains(&name)
        {
            out.push(name);
        }
    }
    out
}

/// Renders `template`, asking `value` for each placeholder. A placeholder that `value` does not
/// know is left as written (validation refuses unknown placeholders at apply).
pub fn render<'v>(template: &str, value: impl Fn(&str) -> Option<Cow<'v, str>>) -> String {
    let mut out = String::with_capacity(template.len());
    for piece in parse(template) {
        match piece {
            Piece::Text(t) => out.push_str(&t),
            Piece::Placeholder(name) => match value(name) {
                Some(v) => out.push_str(&v),
                None => {
                    out.push('{');
                    out.push_str(name);
                    out.push('}');
                }
            },
        }
    }
    out
}

/// Splits an agent command into argv with POSIX shell-word rules (quotes and backslashes; no
/// expansion of any kind). Placeholders survive the split and are substituted per element later.
pub fn split_command(command: &str) -> Result<Vec<String>, RenderError> {
    let argv = shell_words::split(command).map_err(|e| RenderError::Split(e.to_string()))?;
    if argv.is_empty() {
        return Err(RenderError::EmptyCommand);
    }
    Ok(argv)
}

/// Whether `name` is an accepted prompt placeholder: one of [`PROMPT_PLACEHOLDERS`] or
/// `<step_id>_output`.
pub fn is_prompt_placeholder(name: &str) -> bool {
    PROMPT_PLACEHOLDERS.contains(&name) || output_step(name).is_some()
}

/// The step id of a `<step_id>_output` placeholder.
pub fn output_step(name: &str) -> Option<&str> {
    name.strip_suffix("_output").filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(template: &str, want: &str) {
        let got = render(template, |name| match name {
            "goal" => Some(Cow::Borrowed("'; touch /tmp/x; '")),
            "cycle" => Some(Cow::Borrowed("2")),
            _ => None,
        });
        assert_eq!(got, want, "template {template:?}");
    }

    #[test]
    fn renders_placeholders_and_keeps_other_braces() {
        check("goal: {goal}", "goal: '; touch /tmp/x; '");
        check("{cycle}{cycle}", "22");
        check("{{goal}} is literal", "{goal} is literal");
        check("json {\"a\": {\"b\": 1}}", "json {\"a\": {\"b\": 1}}");
        check("}} {{ {{x", "}} {{ {{x");
        check("unknown {nope} stays", "unknown {nope} stays");
        check("{ spaced } and { and }", "{ spaced } and { and }");
        check("", "");
    }

    #[test]
    fn lists_placeholders() {
        assert_eq!(
            placeholders("{goal} {a_output} {goal} {{x}} {1bad}"),
            vec!["goal", "a_output"]
        );
        assert!(is_prompt_placeholder("rotate_output"));
        assert!(!is_prompt_placeholder("_output"));
        assert!(!is_prompt_placeholder("secret"));
    }

    #[test]
    fn splits_commands_without_a_shell() {
        assert_eq!(
            split_command("claude -p {prompt} --flag 'two words'").ok(),
            Some(vec![
                "claude".to_string(),
                "-p".into(),
                "{prompt}".into(),
                "--flag".into(),
                "two words".into()
            ])
        );
        assert_eq!(
            split_command("echo 'unterminated"),
            Err(RenderError::Split("missing closing quote".into()))
        );
        assert_eq!(split_command("   "), Err(RenderError::EmptyCommand));
    }
}
