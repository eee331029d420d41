//! The parser: splits manifest text into YAML documents the way kubectl does, reads each into a
//! typed [`Manifest`], and reports every problem as a [`Diagnostic`] that carries the document
//! index, the line (found through `locate`'s line lookup), the field path and a hint. Parsing is
//! strict (`deny_unknown_fields` everywhere) and stops a document at its first structural
//! problem; a document nested deeper than [`MAX_NESTING`] is refused before it is parsed.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::{API_VERSION, Ignored, Kind, Manifest, Metadata, Spec};
use crate::domain::diagnostic::{Diagnostic, did_you_mean};
use crate::domain::limits::MAX_NESTING;
use crate::domain::locate::{self, LineIndex};

/// One parsed document and where it came from.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file as the user named it.
    pub file: String,
    /// 1-based index among the file's non-empty documents.
    pub index: usize,
    /// 1-based line in the file where the document's text starts.
    pub first_line: usize,
    /// The document's own text, kept to locate later problems.
    pub text: String,
    pub manifest: Manifest,
}

impl Document {
    /// A problem at `path` inside this document, with file, index, resource and line filled in.
    pub fn diagnostic(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let line = LineIndex::build(&self.text)
            .line_of(path)
            .map(|l| l + self.first_line - 1);
        Diagnostic {
            file: self.file.clone(),
            document: self.index,
            line,
            resource: format!("{}/{}", self.manifest.kind().lower(), self.manifest.name()),
            path: path.to_owned(),
            message: message.into(),
            hint: None,
        }
    }
}

/// Splits `text` into YAML documents on `---` lines (and after `...` lines), the way kubectl does,
/// returning each document's first line and text. Documents holding only comments and blank
/// lines are dropped.
pub fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut docs = Vec::new();
    let (mut start, mut start_line, mut offset) = (0usize, 1usize, 0usize);
    for (i, raw) in text.split_inclusive('\n').enumerate() {
        let line = raw.trim_end_matches(['\n', '\r']);
        let is_start = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_start && offset > start {
            docs.push((start_line, &text[start..offset]));
            start = offset;
            start_line = i + 1;
        }
        offset += raw.len();
        if line == "..." || line.starts_with("... ") {
            docs.push((start_line, &text[start..offset]));
            start = offset;
            start_line = i + 2;
        }
    }
    if start < text.len() {
        docs.push((start_line, &text[start..]));
    }
    docs.retain(|(_, d)| !is_blank_document(d));
    docs
}

fn is_blank_document(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t == "---" || t == "..." || t.starts_with("--- #")
    })
}

/// `apiVersion` and `kind`, read before the typed parse.
struct Probe {
    api_version: Option<serde_yaml::Value>,
    kind: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Typed<S> {
    #[serde(rename = "apiVersion")]
    _api_version: Ignored,
    #[serde(rename = "kind")]
    _kind: Ignored,
    metadata: RawMetadata,
    spec: S,
    /// Written by `get -o yaml`; ignored so that its output can be applied again.
    #[serde(rename = "status", default)]
    _status: Option<Ignored>,
}

/// Metadata as written, including the read-only fields `get -o yaml` adds (ignored).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMetadata {
    name: String,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(rename = "generation", default)]
    _generation: Option<Ignored>,
    #[serde(rename = "createdAt", default)]
    _created_at: Option<Ignored>,
    #[serde(rename = "updatedAt", default)]
    _updated_at: Option<Ignored>,
}

/// Parses every document of one file. Returns the documents that parsed and a diagnostic for each
/// one that did not (one per document: a document stops at its first structural problem). A
/// document nested deeper than [`MAX_NESTING`] is refused by a cheap scan before it is parsed.
pub fn parse_documents(file: &str, text: &str) -> (Vec<Document>, Vec<Diagnostic>) {
    let mut docs = Vec::new();
    let mut problems = Vec::new();
    for (i, (first_line, doc)) in split_documents(text).into_iter().enumerate() {
        let index = i + 1;
        let locate = |mut d: Diagnostic| {
            d.file = file.to_owned();
            d.document = index;
            d.line = d.line.map(|l| l + first_line - 1);
            d
        };
        if let Some(line) = locate::nesting_beyond(doc, MAX_NESTING) {
            problems.push(locate(Diagnostic {
                line: Some(line),
                ..Diagnostic::new(
                    "",
                    format!("the document nests deeper than {MAX_NESTING} levels"),
                )
                .hint("manifests need only a few levels: look for unclosed brackets or runaway indentation")
            }));
            continue;
        }
        match parse_one(doc) {
            Ok(manifest) => docs.push(Document {
                file: file.to_owned(),
                index,
                first_line,
                text: doc.to_owned(),
                manifest,
            }),
            Err(d) => problems.push(locate(*d)),
        }
    }
    (docs, problems)
}

/// What a document declares — its kind, `metadata.project` and `metadata.name` — read leniently,
/// for a document that failed to parse, so that the rest of an apply can still be checked
/// against it. `None` when even that much cannot be read.
pub fn declared_identity(doc: &str) -> Option<(Kind, Option<String>, String)> {
    if locate::nesting_beyond(doc, MAX_NESTING).is_some() {
        return None;
    }
    let value: serde_yaml::Value = serde_yaml::from_str(doc).ok()?;
    let kind = Kind::from_manifest(value.get("kind")?.as_str()?)?;
    let meta = value.get("metadata")?;
    let name = meta.get("name")?.as_str()?.to_owned();
    let project = meta
        .get("project")
        .and_then(serde_yaml::Value::as_str)
        .map(str::to_owned);
    Some((kind, project, name))
}

/// Parses one document's text (line numbers in the result are relative to it).
fn parse_one(doc: &str) -> Result<Manifest, Box<Diagnostic>> {
    // libyaml parses the text once, into a Value; the typed structs are read from the Value.
    // Only when that fails is the text parsed again, straight into the typed struct, because
    // that path gives the error its line.
    let value: serde_yaml::Value =
        serde_yaml::from_str(doc).map_err(|e| Box::new(yaml_diagnostic(&e, doc)))?;
    let probe = match &value {
        serde_yaml::Value::Mapping(m) => Probe {
            api_version: m.get("apiVersion").cloned(),
            kind: m.get("kind").cloned(),
        },
        _ => {
            return Err(Box::new(Diagnostic {
                line: Some(1),
                ..Diagnostic::new(
                    "",
                    "a document must be a mapping with apiVersion, kind, metadata and spec",
                )
                .hint("write one resource per document, separated by `---` lines")
            }));
        }
    };
    let line_of = |path: &str| LineIndex::build(doc).line_of(path);
    match probe.api_version.as_ref().map(yaml_as_str) {
        Some(Some(API_VERSION)) => {}
        Some(other) => {
            let shown = other.map_or_else(|| "a non-string".to_owned(), |s| format!("{s:?}"));
            return Err(Box::new(Diagnostic {
                line: line_of("apiVersion"),
                ..Diagnostic::new("apiVersion", format!("unsupported apiVersion {shown}"))
                    .hint(format!("use `apiVersion: {API_VERSION}`"))
            }));
        }
        None => {
            return Err(Box::new(Diagnostic {
                line: Some(1),
                ..Diagnostic::new("apiVersion", "missing field `apiVersion`")
                    .hint(format!("add `apiVersion: {API_VERSION}`"))
            }));
        }
    }
    let kind_names = Kind::ALL.map(Kind::as_str);
    let kind = match probe.kind.as_ref().map(yaml_as_str) {
        Some(Some(k)) => Kind::from_manifest(k).ok_or_else(|| {
            let hint = match did_you_mean(k, kind_names) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("use one of {}", kind_names.join(", ")),
            };
            Box::new(Diagnostic {
                line: line_of("kind"),
                ..Diagnostic::new("kind", format!("unknown kind {k:?}")).hint(hint)
            })
        })?,
        Some(None) => {
            return Err(Box::new(Diagnostic {
                line: line_of("kind"),
                ..Diagnostic::new("kind", "kind must be a string")
                    .hint(format!("use one of {}", kind_names.join(", ")))
            }));
        }
        None => {
            return Err(Box::new(Diagnostic {
                line: Some(1),
                ..Diagnostic::new("kind", "missing field `kind`")
                    .hint(format!("add `kind:` with one of {}", kind_names.join(", ")))
            }));
        }
    };
    fn typed<S: for<'de> Deserialize<'de>>(
        doc: &str,
        value: serde_yaml::Value,
        wrap: fn(S) -> Spec,
    ) -> Result<Manifest, Box<Diagnostic>> {
        let t: Typed<S> = match serde_yaml::from_value(value) {
            Ok(t) => t,
            Err(from_value) => {
                let e = serde_yaml::from_str::<Typed<S>>(doc)
                    .err()
                    .unwrap_or(from_value);
                return Err(Box::new(yaml_diagnostic(&e, doc)));
            }
        };
        let m = t.metadata;
        Ok(Manifest {
            metadata: Metadata {
                name: m.name,
                project: m.project,
                labels: m.labels,
                annotations: m.annotations,
            },
            spec: wrap(t.spec),
        })
    }
    match kind {
        Kind::Workspace => typed(doc, value, Spec::Workspace),
        Kind::EnvStore => typed(doc, value, Spec::EnvStore),
        Kind::SecretStore => typed(doc, value, Spec::SecretStore),
        Kind::StepTemplate => typed(doc, value, Spec::StepTemplate),
        Kind::Agent => typed(doc, value, Spec::Agent),
        Kind::Workflow => typed(doc, value, Spec::Workflow),
        Kind::Trigger => typed(doc, value, Spec::Trigger),
    }
}

fn yaml_as_str(v: &serde_yaml::Value) -> Option<&str> {
    v.as_str()
}

/// Turns a serde_yaml error into a diagnostic: serde_yaml renders `path: message at line L column
/// C`; the path and line become fields and the message gets a hint where one is known.
fn yaml_diagnostic(err: &serde_yaml::Error, doc: &str) -> Diagnostic {
    let mut text = err.to_string();
    let line = err.location().map(|l| {
        let suffix = format!(" at line {} column {}", l.line(), l.column());
        text = text.replacen(&suffix, "", 1);
        l.line()
    });
    let (mut path, mut message) = match text.split_once(": ") {
        Some((p, m)) if !p.is_empty() && !p.contains(char::is_whitespace) => {
            (p.to_owned(), m.to_owned())
        }
        _ => (String::new(), text),
    };
    if path == "." {
        path.clear();
    }
    let mut hint = None;
    if let Some(field) = between(&message, "unknown field `", "`") {
        let expected = backticked(message.split_once("expected").map_or("", |(_, r)| r));
        let field = field.to_owned();
        hint = Some(
            match did_you_mean(&field, expected.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None if expected.is_empty() => "remove it: this mapping takes no fields".to_owned(),
                None => format!("remove it; valid fields are {}", expected.join(", ")),
            },
        );
        path = join_path(&path, &field);
        message = format!("unknown field `{field}`");
    } else if let Some(variant) = between(&message, "unknown variant `", "`") {
        let expected = backticked(message.split_once("expected").map_or("", |(_, r)| r));
        hint = Some(format!("use one of {}", expected.join(", ")));
        message = format!("unknown value `{variant}`");
    } else if let Some(field) = between(&message, "missing field `", "`") {
        let field = field.to_owned();
        hint = Some(format!("add `{field}:`"));
        path = join_path(&path, &field);
        // serde_yaml points at the end of the mapping; the mapping's own key is more useful.
        if let Some(l) = LineIndex::build(doc).line_of(&path) {
            return Diagnostic {
                line: Some(l),
                hint,
                ..Diagnostic::new(path, message)
            };
        }
    } else if message.starts_with("invalid type") {
        hint = type_hint(&message).map(str::to_owned);
    } else if path.is_empty()
        && line.is_some()
        && !message.starts_with("invalid")
        && !message.contains("Probe")
    {
        hint = Some("check the YAML syntax (indentation, quoting, colons)".to_owned());
    }
    if path.is_empty() && message.contains("expected struct Probe") {
        message = "a document must be a mapping with apiVersion, kind, metadata and spec".into();
    }
    let line = line.or_else(|| LineIndex::build(doc).line_of(&path));
    Diagnostic {
        line,
        hint,
        ..Diagnostic::new(path, message)
    }
}

fn join_path(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &s[s.find(start)? + start.len()..];
    Some(&rest[..rest.find(end)?])
}

/// Every `backticked` word in `s`.
fn backticked(s: &str) -> Vec<String> {
    s.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

fn type_hint(message: &str) -> Option<&'static str> {
    let expected = message.split_once("expected ")?.1;
    Some(match expected {
        e if e.starts_with("u64") || e.starts_with("u32") || e.starts_with("usize") => {
            "use a non-negative whole number"
        }
        e if e.starts_with("a boolean") => "use true or false",
        e if e.starts_with("a sequence") => "use a YAML list (lines starting with `- `)",
        e if e.starts_with("a string") => "use a string (quote it if YAML reads it as a number)",
        e if e.starts_with("struct") || e.starts_with("a map") => {
            "use a mapping (`key: value` lines, indented under the field)"
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::manifest::LoopMode;

    /// Parses `text` and returns the single diagnostic rendered, or "ok".
    fn diag(text: &str) -> String {
        let (docs, problems) = parse_documents("f.yaml", text);
        match problems.as_slice() {
            [] => format!("ok {}", docs.len()),
            [d] => d.to_string(),
            many => panic!("expected one problem, got {many:?}"),
        }
    }

    fn check(text: &str, want: &str) {
        assert_eq!(diag(text), want, "input:\n{text}");
    }

    const HEAD: &str = "apiVersion: orchestrator.dev/v2\n";

    #[test]
    fn structural_problems() {
        check(
            &format!(
                "{HEAD}kind: Workflow\nmetadata:\n  name: w\nspec:\n  steps:\n    - id: a\n      templat: t\n"
            ),
            "f.yaml:8: document 1: spec.steps[0].templat: unknown field `templat` (hint: did you mean `template`?)",
        );
        check(
            &format!("{HEAD}kind: StepTemplate\nmetadata:\n  name: t\nspec:\n  description: x\n"),
            "f.yaml:5: document 1: spec.prompt: missing field `prompt` (hint: add `prompt:`)",
        );
        check(
            &format!(
                "{HEAD}kind: Agent\nmetadata:\n  name: a\nspec:\n  command: x\n  timeout_secs: soon\n"
            ),
            "f.yaml:7: document 1: spec.timeout_secs: invalid type: string \"soon\", expected u64 (hint: use a non-negative whole number)",
        );
        check(
            "apiVersion: orchestrator.dev/v1\nkind: Agent\n",
            "f.yaml:1: document 1: apiVersion: unsupported apiVersion \"orchestrator.dev/v1\" (hint: use `apiVersion: orchestrator.dev/v2`)",
        );
        check(
            &format!("{HEAD}kind: Secretstore\n"),
            "f.yaml:2: document 1: kind: unknown kind \"Secretstore\" (hint: did you mean `SecretStore`?)",
        );
        check(
            &format!(
                "{HEAD}kind: Agent\nmetadata:\n  name: a\nspec:\n  command: x\n  promptDelivery: pipe\n"
            ),
            "f.yaml:7: document 1: spec.promptDelivery: unknown value `pipe` (hint: use one of arg, stdin, file, env)",
        );
        check(
            "kind: Agent\nmetadata: [\n",
            "f.yaml:3: document 1: did not find expected node content, while parsing a flow node (hint: check the YAML syntax (indentation, quoting, colons))",
        );
    }

    #[test]
    fn secret_values_are_never_echoed() {
        let text = format!(
            "{HEAD}kind: SecretStore\nmetadata:\n  name: s\nspec:\n  data:\n    pin: 123456789\n"
        );
        let d = diag(&text);
        assert!(!d.contains("123456789"), "{d}");
        assert!(d.contains("spec.data") && d.contains("quote it"), "{d}");
    }

    #[test]
    fn keys_declared_without_a_value_need_exactly_keep_true() {
        let doc = |entry: &str| {
            format!(
                "{HEAD}kind: SecretStore\nmetadata:\n  name: s\nspec:\n  data:\n    token: \"t0ken-value\"\n    github: {entry}\n"
            )
        };
        let (docs, problems) = parse_documents("f.yaml", &doc("{keep: true}"));
        assert!(problems.is_empty(), "{problems:?}");
        let Spec::SecretStore(s) = &docs[0].manifest.spec else {
            panic!("not a SecretStore")
        };
        assert!(s.keep.contains("github") && !s.data.contains_key("github"));
        assert_eq!(s.data["token"].expose(), "t0ken-value");
        let block = format!(
            "{HEAD}kind: SecretStore\nmetadata:\n  name: s\nspec:\n  data:\n    github:\n      keep: true\n"
        );
        assert_eq!(diag(&block), "ok 1");
        for (entry, want) in [
            ("{keep: false}", "`{keep: false}` keeps nothing"),
            ("{keep: \"sup3r-secret\"}", "`keep` must be `true`"),
            ("{kep: true}", "must be exactly `{keep: true}`"),
            (
                "{keep: true, value: sup3r-secret}",
                "must be exactly `{keep: true}`",
            ),
            ("{}", "must be exactly `{keep: true}`"),
            ("[sup3r-secret]", "value is a list"),
            ("", "value is empty"),
        ] {
            let d = diag(&doc(entry));
            assert!(
                d.starts_with("f.yaml:8: document 1: spec.data.github: ") && d.contains(want),
                "{entry:?}: {d}"
            );
            assert!(d.contains("write `{keep: true}`"), "{entry:?}: {d}");
            assert!(!d.contains("sup3r-secret"), "{entry:?} echoed: {d}");
        }
    }

    #[test]
    fn documents_are_split_and_counted() {
        let text = format!(
            "# leading comment\n---\n{HEAD}kind: StepTemplate\nmetadata:\n  name: a\nspec:\n  prompt: p\n---\n# empty\n---\n{HEAD}kind: StepTemplate\nmetadata:\n  name: b\nspec:\n  prompt: q\n  bogus: 1\n"
        );
        assert_eq!(
            diag(&text),
            "f.yaml:18: document 2: spec.bogus: unknown field `bogus` (hint: remove it; valid fields are prompt, description)"
        );
        let (docs, _) = parse_documents("f.yaml", &text);
        assert_eq!(docs[0].first_line, 2);
        assert_eq!(docs[0].manifest.name(), "a");
    }

    #[test]
    fn step_type_is_ignored_and_defaults_apply() {
        let text = format!(
            "{HEAD}kind: Workflow\nmetadata:\n  name: w\nspec:\n  steps:\n    - id: a\n      type: qa\n      command: echo\n"
        );
        let (docs, problems) = parse_documents("f.yaml", &text);
        assert!(problems.is_empty(), "{problems:?}");
        let Spec::Workflow(w) = &docs[0].manifest.spec else {
            panic!("not a workflow")
        };
        assert!(w.steps[0].enabled && w.steps[0].repeatable);
        assert_eq!(w.max_parallel, 1);
        assert_eq!(w.loop_.mode, LoopMode::Once);
    }
}
