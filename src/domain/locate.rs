//! Finds the line of a field path (`spec.steps[0].template`) in a YAML document, so that problems
//! found after parsing (dangling references, bad cron expressions) still point at a line. It runs
//! only when there is something to report, using yaml-rust2's marked event parser; values are
//! never retained, only key names and lines.

use std::collections::HashMap;

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Path → 1-based line of every key and sequence item in one document.
#[derive(Debug, Default)]
pub struct LineIndex {
    lines: HashMap<String, usize>,
}

impl LineIndex {
    /// Indexes `text` (one YAML document). Malformed YAML gives an empty index.
    pub fn build(text: &str) -> LineIndex {
        let mut recv = Recv::default();
        let mut parser = Parser::new_from_str(text);
        if parser.load(&mut recv, false).is_err() {
            return LineIndex::default();
        }
        LineIndex { lines: recv.lines }
    }

    /// The line of `path`, or of its nearest ancestor that exists in the document.
    pub fn line_of(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(line) = self.lines.get(p) {
                return Some(*line);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

enum Frame {
    /// A mapping: the path of the mapping and, between a key and its value, the pending key.
    Map {
        path: String,
        key: Option<String>,
    },
    Seq {
        path: String,
        next: usize,
    },
}

#[derive(Default)]
struct Recv {
    stack: Vec<Frame>,
    lines: HashMap<String, usize>,
}

impl Recv {
    /// The path of the node that starts now, advancing the parent's state. Returns `None` when the
    /// node is a mapping key (keys are recorded, not descended into).
    fn enter(&mut self, scalar_key: Option<&str>, mark: Marker) -> Option<String> {
        let line = mark.line();
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                self.lines.entry(p.clone()).or_insert(line);
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(join(path, &k)),
                None => {
                    // This node is a key. Complex (non-scalar) keys are not addressable.
                    let k = scalar_key.unwrap_or("?").to_owned();
                    self.lines.entry(join(path, &k)).or_insert(line);
                    *key = Some(k);
                    None
                }
            },
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

impl MarkedEventReceiver for Recv {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                self.enter(Some(&value), mark);
            }
            Event::Alias(_) => {
                self.enter(None, mark);
            }
            Event::MappingStart(..) => {
                if let Some(path) = self.enter(None, mark) {
                    self.stack.push(Frame::Map { path, key: None });
                } else {
                    // A mapping used as a key: track it so the matching end pops correctly.
                    self.stack.push(Frame::Map {
                        path: "?".into(),
                        key: None,
                    });
                }
            }
            Event::SequenceStart(..) => {
                let path = self.enter(None, mark).unwrap_or_else(|| "?".into());
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

/// How deep `text` nests flow collections (`[…]`, `{…}`), read from its bytes: brackets count
/// where a node may start (after indentation, `- `, `? `, `: `, or inside a flow collection),
/// never inside quoted scalars, comments or block scalars (`|`, `>`). `Err(line)` is the
/// 1-based line where the depth passes `max`; the scan is linear, whatever the input.
fn flow_depth(text: &str, max: usize) -> Result<usize, usize> {
    let b = text.as_bytes();
    let (mut depth, mut deepest, mut line) = (0usize, 0usize, 1usize);
    let mut node_start = true;
    // The indentation of a line that opened a block scalar: deeper lines are its content.
    let mut scalar_indent: Option<usize> = None;
    let mut i = 0;
    while i < b.len() {
        let at_line_start = i == 0 || b[i - 1] == b'\n';
        if at_line_start && depth == 0 {
            let indent = b[i..].iter().take_while(|c| **c == b' ').count();
            let blank = matches!(b.get(i + indent), None | Some(b'\n' | b'\r'));
            if let Some(si) = scalar_indent {
                if blank || indent > si {
                    // Content of a block scalar: skip the line.
                    while i < b.len() && b[i] != b'\n' {
                        i += 1;
                    }
                    if i < b.len() {
                        line += 1;
                        i += 1;
                    }
                    continue;
                }
                scalar_indent = None;
            }
            node_start = true;
        }
        let c = b[i];
        let prev_space = i == 0 || matches!(b[i - 1], b' ' | b'\t' | b'\n');
        match c {
            b'\n' => {
                line += 1;
                if depth > 0 {
                    node_start = true;
                }
            }
            b' ' | b'\t' | b'\r' => {}
            b'#' if prev_space => {
                while i + 1 < b.len() && b[i + 1] != b'\n' {
                    i += 1;
                }
            }
            b'\'' | b'"' if node_start => {
                // A quoted scalar: `''` escapes in single quotes, `\` in double quotes.
                i += 1;
                while i < b.len() {
                    match b[i] {
                        b'\n' => line += 1,
                        b'\\' if c == b'"' => i += 1,
                        q if q == c => {
                            if c == b'\'' && b.get(i + 1) == Some(&b'\'') {
                                i += 1;
                            } else {
                                break;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
                node_start = false;
            }
            b'[' | b'{' if node_start || depth > 0 => {
                depth += 1;
                deepest = deepest.max(depth);
                if depth > max {
                    return Err(line);
                }
                node_start = true;
            }
            b']' | b'}' if depth > 0 => {
                depth -= 1;
                node_start = false;
            }
            b',' if depth > 0 => node_start = true,
            b'-' | b'?' | b':' if matches!(b.get(i + 1), None | Some(b' ' | b'\n' | b'\r')) => {
                node_start = true;
            }
            b'|' | b'>' if node_start && depth == 0 => {
                let start = text[..i].rfind('\n').map_or(0, |n| n + 1);
                scalar_indent = Some(b[start..].iter().take_while(|c| **c == b' ').count());
                node_start = false;
            }
            _ => {
                if depth == 0 || !matches!(c, b'&' | b'!' | b'*') {
                    node_start = false;
                }
            }
        }
        i += 1;
    }
    Ok(deepest)
}

/// An upper bound of how deep block collections nest in `text`. A chain of nested block
/// collections starts at non-decreasing columns, and at the same column at most twice in a row
/// (a block sequence may sit at its key's column; its items are further right), so block
/// nesting is at most twice the number of columns where a block collection can start: a line's
/// indentation, and the positions after each `- ` or `? ` that opens the line. Stops counting
/// once the bound passes `max`.
fn block_bound(text: &str, max: usize) -> usize {
    let mut columns: Vec<usize> = Vec::new();
    let add = |c: usize, columns: &mut Vec<usize>| {
        if !columns.contains(&c) {
            columns.push(c);
        }
    };
    for line in text.lines() {
        if 2 * columns.len() > max {
            break;
        }
        let rest = line.trim_start_matches(' ');
        if rest.is_empty() {
            continue;
        }
        if (rest.starts_with("---") || rest.starts_with("...")) && rest.len() > 3 {
            // Content after a document marker starts mid-line: let the event scan decide.
            return usize::MAX;
        }
        let mut column = line.len() - rest.len();
        add(column, &mut columns);
        let mut rest = rest.as_bytes();
        while let [b'-' | b'?', b' ', ..] = rest {
            let spaces = rest[1..].iter().take_while(|b| **b == b' ').count();
            column += 1 + spaces;
            rest = &rest[1 + spaces..];
            add(column, &mut columns);
            if 2 * columns.len() > max {
                break;
            }
        }
    }
    2 * columns.len()
}

/// The 1-based line where `text` first nests mappings and sequences deeper than `max`, if it
/// does. It reads events only up to that point, so a hostile document costs a few hundred bytes
/// of scanning instead of the YAML parser's worst case (a 200 KB document of nested flow
/// mappings kept libyaml busy for seconds). Malformed YAML ends the scan: reporting it is the
/// parser's job.
pub fn nesting_beyond(text: &str, max: usize) -> Option<usize> {
    // Flow nesting first, from the bytes: the event parser's simple-key lookahead makes deep
    // flow collections quadratic for it too. Then, when the bounds cannot prove the document
    // shallow, the events (with flow nesting now known to be shallow, that scan is linear).
    let flow = match flow_depth(text, max) {
        Ok(depth) => depth,
        Err(line) => return Some(line),
    };
    if flow.saturating_add(block_bound(text, max)) <= max {
        return None;
    }
    let mut parser = Parser::new_from_str(text);
    let mut depth = 0usize;
    loop {
        match parser.next_token() {
            Ok((Event::MappingStart(..) | Event::SequenceStart(..), mark)) => {
                depth += 1;
                if depth > max {
                    return Some(mark.line());
                }
            }
            Ok((Event::MappingEnd | Event::SequenceEnd, _)) => depth = depth.saturating_sub(1),
            Ok((Event::StreamEnd, _)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata:
  name: w
spec:
  steps:
    - id: a
      template: t
    - id: b
      command: |
        echo hi
        echo there
      enabled: false
  loop: {mode: fixed, max_cycles: 2}
";

    fn check(path: &str, want: Option<usize>) {
        assert_eq!(LineIndex::build(DOC).line_of(path), want, "path {path}");
    }

    #[test]
    fn finds_lines() {
        check("kind", Some(2));
        check("metadata.name", Some(4));
        check("spec.steps", Some(6));
        check("spec.steps[0]", Some(7));
        check("spec.steps[0].template", Some(8));
        check("spec.steps[1].enabled", Some(13));
        check("spec.loop.max_cycles", Some(14));
        // A missing field falls back to its nearest ancestor.
        check("spec.steps[1].retries", Some(9));
        check("nothing", None);
    }

    #[test]
    fn malformed_yaml_gives_no_lines() {
        assert_eq!(LineIndex::build("a: [b").line_of("a"), None);
    }

    #[test]
    fn nesting_is_found_where_it_passes_the_limit() {
        let flow = format!("a: {}1{}", "{a: ".repeat(60_000), "}".repeat(60_000));
        assert_eq!(nesting_beyond(&flow, 64), Some(1));
        let block: String = (0..70).map(|i| format!("{}k:\n", "  ".repeat(i))).collect();
        assert_eq!(nesting_beyond(&block, 64), Some(65));
        assert_eq!(
            nesting_beyond(&format!("{}x", "- ".repeat(100_000)), 64),
            Some(1)
        );
        let ok: String = (0..64).map(|i| format!("{}k:\n", "  ".repeat(i))).collect();
        assert_eq!(nesting_beyond(&ok, 64), None);
        assert_eq!(nesting_beyond("a: [1, {b: c}]\n", 3), None);
        assert_eq!(nesting_beyond("a: [1, {b: c}]\n", 2), Some(1));
        assert_eq!(nesting_beyond("a: [unclosed\n", 64), None);
        // The byte bound never lets a deep document through: checked against the scan.
        let compact: String = (0..40)
            .map(|i| format!("{}- - k:\n", "    ".repeat(i)))
            .collect();
        assert_eq!(nesting_beyond(&compact, 64), Some(22));
        // A sequence at its key's column: two levels per column.
        let mixed: String = (0..40)
            .map(|i| format!("{0}k:\n{0}- ", "  ".repeat(i)))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(nesting_beyond(&format!("{mixed}x\n"), 64), Some(65));
        assert!(block_bound(&ok, 64) > 64, "the event scan above really ran");
        let bundle = "apiVersion: v\nkind: K\nmetadata: {name: n}\nspec:\n  steps:\n    - {id: a, template: t}\n";
        assert!(
            flow_depth(bundle, 64) == Ok(1) && block_bound(bundle, 64) <= 8,
            "an ordinary manifest skips the event scan"
        );
        // Unclosed flow collections 50,000 deep took the event parser seconds.
        let unclosed = format!("a: {}x", "[{a: ".repeat(50_000));
        assert_eq!(nesting_beyond(&unclosed, 64), Some(1));
        // Brackets that open no collection do not count.
        let text = "a: 'x[[[[[[[['\nb: \"{{{{{{{{\"\nc: a[b[c[d\n# [[[[[[[[[[\nd: |\n  [[[[[[\n  {{{{{{\ne: [1, [2, '[']]\n";
        assert_eq!(flow_depth(text, 64), Ok(2));
        assert_eq!(flow_depth(text, 1), Err(8));
        // A document marker with content leaves the decision to the events (found by a
        // property test: the bound was usize::MAX, and adding to it overflowed).
        assert_eq!(nesting_beyond("--- ---\n{\"a\": {\"b\": null}}", 64), None);
    }
}
