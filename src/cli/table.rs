//! Output shared by the commands: `-o yaml|json` of any API type, the one-line-per-resource
//! report of an apply or a delete (with a SecretStore's key-level merge: one clause per key on
//! its line, one row per key in a dry run), aligned columns, and short ages and truncations for
//! cells.

use std::io::Write;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Output;
use crate::api::{ChangeResponse, ResultLine};
use crate::domain::secret_merge::{KeptBecause, KeyAction, KeyDiff, SetBy};
use crate::domain::snapshot::Outcome;

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

/// `kind/name outcome` per resource of an apply, a delete or a key change. A SecretStore's line
/// names what the merge did to its keys (`: key github replaced (it was rotated at …)`); a dry
/// run lists them one per line, with fingerprints.
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
        if resp.dry_run {
            writeln!(
                stdout,
                "{}/{} {}{project} (dry run)",
                r.kind.lower(),
                r.name,
                r.outcome.as_str()
            )?;
            let rows: Vec<Vec<String>> = r.keys.iter().map(|d| diff_row(r, d)).collect();
            write_rows(&mut stdout, &rows)?;
            continue;
        }
        let notes: Vec<String> = r.keys.iter().filter_map(|d| key_note(r, d)).collect();
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(": {}", notes.join(", "))
        };
        writeln!(
            stdout,
            "{}/{} {}{project}{notes}",
            r.kind.lower(),
            r.name,
            r.outcome.as_str()
        )?;
    }
    if let Some(n) = &resp.nodes {
        if n.behind.is_empty() {
            writeln!(
                stdout,
                "revision {} is served by every live node ({})",
                resp.revision,
                n.serving.join(", ")
            )?;
        } else {
            // On stderr too, so that a script sees it beside the exit status.
            let warning = format!(
                "warning: revision {} is not yet served by {} (it refuses webhooks until it catches up); served by {}",
                resp.revision,
                n.behind.join(", "),
                if n.serving.is_empty() {
                    "none".to_owned()
                } else {
                    n.serving.join(", ")
                }
            );
            eprintln!("{warning}");
        }
    }
    Ok(())
}

/// `rotated at 2026-…`: who set a live value and when, when that was not the last apply.
fn live_origin(d: &KeyDiff) -> Option<String> {
    let at = d
        .live_set_at?
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Some(match d.live_set_by {
        Some(SetBy::Rotation) if d.key.ends_with(crate::domain::rotation::NEXT_SUFFIX) => {
            format!("staged by a rotation at {at}")
        }
        Some(SetBy::Rotation) => format!("rotated at {at}"),
        Some(SetBy::SecretSet) => format!("set with `secret set` at {at}"),
        Some(SetBy::Apply) => format!("set by an earlier apply at {at}"),
        None => format!("set at {at}"),
    })
}

/// The fix for a pending key.
fn set_command(r: &ResultLine, key: &str) -> String {
    let project = if r.project == crate::domain::manifest::DEFAULT_PROJECT {
        String::new()
    } else {
        format!("-p {} ", r.project)
    };
    format!("orchestrator {project}secret set {} {key}", r.name)
}

/// One key's part of a SecretStore's result line; `None` for keys kept by `{keep: true}` and
/// for the keys of a store being created (all added).
fn key_note(r: &ResultLine, d: &KeyDiff) -> Option<String> {
    let origin = live_origin(d);
    let k = &d.key;
    Some(match (d.action, d.because) {
        (KeyAction::Added, _) if r.outcome == Outcome::Created => return None,
        (KeyAction::Kept, Some(KeptBecause::Keep)) => return None,
        (KeyAction::Added, _) => format!("key {k} added"),
        (KeyAction::Replaced | KeyAction::Removed, _) => match origin {
            Some(o) => format!("key {k} {} (it was {o})", d.action.as_str()),
            None => format!("key {k} {}", d.action.as_str()),
        },
        (KeyAction::Kept, Some(KeptBecause::Undeclared)) => match origin {
            Some(o) => format!("key {k} kept live (in no manifest; {o})"),
            None => format!("key {k} kept live (in no manifest)"),
        },
        (KeyAction::Kept, _) => match origin {
            Some(o) => format!("key {k} kept live (it was {o})"),
            None => format!("key {k} kept live"),
        },
        (KeyAction::Pending, _) => {
            format!("key {k} pending (no value yet: {})", set_command(r, k))
        }
    })
}

/// One key of a dry run: `~ github   replaced   sha256:… -> sha256:…   it was rotated at …`.
fn diff_row(r: &ResultLine, d: &KeyDiff) -> Vec<String> {
    let fp = |f: &Option<String>| f.clone().unwrap_or_else(|| "-".into());
    let origin = live_origin(d);
    let (sign, action, fingerprints, note) = match (d.action, d.because) {
        (KeyAction::Added, _) => ("+", "added", fp(&d.fingerprint), String::new()),
        (KeyAction::Replaced, _) => (
            "~",
            "replaced",
            format!("{} -> {}", fp(&d.previous), fp(&d.fingerprint)),
            origin.map(|o| format!("it was {o}")).unwrap_or_default(),
        ),
        (KeyAction::Removed, _) => (
            "-",
            "removed",
            fp(&d.previous),
            origin.map(|o| format!("it was {o}")).unwrap_or_default(),
        ),
        (KeyAction::Kept, Some(KeptBecause::Keep)) => (
            "=",
            "kept",
            fp(&d.fingerprint),
            match origin {
                Some(o) => format!("{{keep: true}}; {o}"),
                None => "{keep: true}".into(),
            },
        ),
        (KeyAction::Kept, Some(KeptBecause::Undeclared)) => (
            "=",
            "kept live",
            fp(&d.fingerprint),
            match origin {
                Some(o) => format!("in no manifest; {o}"),
                None => "in no manifest".into(),
            },
        ),
        (KeyAction::Kept, _) => (
            "=",
            "kept live",
            fp(&d.fingerprint),
            format!(
                "{}the manifest's {} is unchanged since the last apply",
                origin.map(|o| format!("{o}; ")).unwrap_or_default(),
                fp(&d.declared)
            ),
        ),
        (KeyAction::Pending, _) => (
            "?",
            "pending",
            "-".into(),
            format!("no value yet: {}", set_command(r, &d.key)),
        ),
    };
    vec![
        format!("  {sign} {}", d.key),
        action.into(),
        fingerprints,
        note,
    ]
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
    let widths = column_widths(rows);
    for r in rows {
        write_row(out, r, &widths)?;
    }
    Ok(())
}

/// The width of each column of `rows`: its widest cell.
pub(super) fn column_widths(rows: &[Vec<String>]) -> Vec<usize> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect()
}

/// Writes one row with its cells padded to `widths` (a wider cell pushes the rest along).
pub(super) fn write_row(
    out: &mut impl Write,
    r: &[String],
    widths: &[usize],
) -> std::io::Result<()> {
    let mut line = String::new();
    for (i, c) in r.iter().enumerate() {
        line.push_str(c);
        if i + 1 < r.len() {
            let width = widths.get(i).copied().unwrap_or(0);
            line.push_str(&" ".repeat(width.saturating_sub(c.chars().count()) + 3));
        }
    }
    writeln!(out, "{}", line.trim_end())
}
