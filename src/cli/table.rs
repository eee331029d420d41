//! Output shared by the commands: `-o yaml|json` of any API type, the one-line-per-resource
//! report of an apply or a delete, aligned columns, and short ages and truncations for cells.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Output;
use crate::api::ChangeResponse;

/// Prints an API value as YAML or pretty JSON.
pub(super) fn print_structured<T: Serialize>(out: Output, value: &T) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match out {
        Output::Json => {
            serde_json::to_writer_pretty(&mut stdout, value)?;
            writeln!(stdout)?;
        }
        Output::Yaml | Output::Table => {
            let text = serde_yaml::to_string(value)?;
            stdout.write_all(text.as_bytes())?;
        }
    }
    Ok(())
}

/// `kind/name outcome` per resource of an apply, a delete or a key change.
pub(super) fn print_changes(out: Output, resp: &ChangeResponse) -> anyhow::Result<()> {
    if out != Output::Table {
        return print_structured(out, resp);
    }
    let mut stdout = std::io::stdout().lock();
    for r in &resp.results {
        let project = if r.project == crate::domain::manifest::DEFAULT_PROJECT {
            String::new()
        } else {
            format!(" (project {})", r.project)
        };
        let dry = if resp.dry_run { " (dry run)" } else { "" };
        writeln!(
            stdout,
            "{}/{} {}{project}{dry}",
            r.kind.lower(),
            r.name,
            r.outcome.as_str()
        )?;
    }
    Ok(())
}

/// A short age: `42s`, `5m`, `3h`, `12d`.
pub(super) fn age(since: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - since).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// `s` cut to `max` characters, the last one an ellipsis when something was cut.
pub(super) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// Writes rows as columns three spaces apart, each as wide as its widest cell.
pub(super) fn write_rows(out: &mut impl Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}
