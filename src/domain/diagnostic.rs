//! A problem found in a manifest, with everything a user needs to fix it: the file, the document
//! index (1-based, counting non-empty documents), the line when known, the field path
//! (`spec.steps[0].template`), what is wrong, and a hint. Parsing and validation both return
//! `Vec<Diagnostic>` so that one apply reports every problem at once.

use std::fmt;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Diagnostic {
    /// The file as the user named it (`-` for stdin); empty for problems without a source.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    /// 1-based index of the document in its file; 0 when the problem is not tied to one.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub document: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// `kind/name` of the resource, when it is known.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub resource: String,
    /// Field path inside the document (`spec.cron.schedule`); empty for the whole document.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Diagnostic {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            path: path.into(),
            message: message.into(),
            ..Diagnostic::default()
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    /// `bundle.yaml:14: document 2 (workflow/nightly): spec.steps[0].templat: unknown field
    /// `templat` (hint: did you mean `template`?)`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut wrote = false;
        if !self.file.is_empty() {
            f.write_str(&self.file)?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
            }
            wrote = true;
        }
        if self.document > 0 {
            if wrote {
                f.write_str(": ")?;
            }
            write!(f, "document {}", self.document)?;
            wrote = true;
        }
        if !self.resource.is_empty() {
            if wrote {
                write!(f, " ({})", self.resource)?;
            } else {
                f.write_str(&self.resource)?;
            }
            wrote = true;
        }
        if wrote {
            f.write_str(": ")?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, " (hint: {hint})")?;
        }
        Ok(())
    }
}

/// The summary of a change refused for `n` problems: `apply refused: 2 problems; nothing was
/// changed`. The problems themselves travel beside it, one [`Diagnostic`] each.
pub fn refused(what: &str, n: usize) -> String {
    let plural = if n == 1 { "problem" } else { "problems" };
    format!("{what} refused: {n} {plural}; nothing was changed")
}

/// The closest candidate to `input` when it is close enough to be a likely typo, compared
/// case-insensitively and ignoring `_`/`-` so that `prompt_delivery` suggests `promptDelivery`.
/// Two swapped letters count as one edit (`agnet` suggests `agent`).
pub fn did_you_mean<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    let wanted = norm(input);
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = strsim::osa_distance(&wanted, &norm(c));
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    let (d, c) = best?;
    let limit = (wanted.chars().count() / 3).max(1);
    (d <= limit).then_some(c)
}

/// Sorts `problems` as a reader meets them: by file (in the order `files` gives them, the order
/// of the request), then document, then line. Problems tied to no file come first; the sort is
/// stable, so problems on one line keep the order they were found in.
pub fn sort_in_source_order<'a>(
    problems: &mut [Diagnostic],
    files: impl IntoIterator<Item = &'a str>,
) {
    let mut order: Vec<&str> = Vec::new();
    for f in files {
        if !order.contains(&f) {
            order.push(f);
        }
    }
    let rank = |d: &Diagnostic| {
        let file = if d.file.is_empty() {
            0
        } else {
            order
                .iter()
                .position(|f| *f == d.file)
                .map_or(usize::MAX, |i| i + 1)
        };
        (file, d.document, d.line.unwrap_or(0))
    };
    problems.sort_by_key(rank);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, candidates: &[&str], want: Option<&str>) {
        assert_eq!(
            did_you_mean(input, candidates.iter().copied()),
            want,
            "input {input:?}"
        );
    }

    #[test]
    fn suggestions() {
        let fields = [
            "id",
            "template",
            "command",
            "required_capability",
            "retries",
        ];
        check("templat", &fields, Some("template"));
        check("Template", &fields, Some("template"));
        check("requiredCapability", &fields, Some("required_capability"));
        check("zzzzzz", &fields, None);
        check(
            "prompt_delivery",
            &["promptDelivery", "command"],
            Some("promptDelivery"),
        );
        check("x", &[], None);
        // A transposition is one edit.
        check("agnet", &["agent", "agents", "ag"], Some("agent"));
        check("tempalte", &fields, Some("template"));
    }

    #[test]
    fn display_has_every_part() {
        let d = Diagnostic {
            file: "a.yaml".into(),
            document: 2,
            line: Some(14),
            resource: "workflow/nightly".into(),
            path: "spec.steps[0].templat".into(),
            message: "unknown field `templat`".into(),
            hint: Some("did you mean `template`?".into()),
        };
        assert_eq!(
            d.to_string(),
            "a.yaml:14: document 2 (workflow/nightly): spec.steps[0].templat: unknown field `templat` (hint: did you mean `template`?)"
        );
        assert_eq!(Diagnostic::new("", "boom").to_string(), "boom");
    }
}
