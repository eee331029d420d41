//! `get -w` and `task list -w`: the list, then one row per change, until Ctrl-C or until the
//! daemon goes away. The CLI polls the same endpoint as the plain command once a second and
//! prints an item when what the daemon reports about it differs from what was printed last:
//! new, changed, or (for resources) gone. What the CLI keeps is the last JSON of each listed
//! item, so its memory is bounded by the list (`task list --limit`), and a poll is one ordinary
//! request (one debug line in the daemon's log).
//!
//! Output: the table's rows, with its header printed once (later rows keep the first rows'
//! column widths); `-o json` one [`WatchEvent`] per line (NDJSON), `-o yaml` one document each.

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::time::Duration;

use anyhow::anyhow;
use serde::Serialize;

use super::Output;
use super::client::Unreachable;
use super::table::{column_widths, write_row};

/// How often the list is read again.
const POLL: Duration = Duration::from_secs(1);

/// What happened to one item since the last poll (`-o json|yaml`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) enum Change {
    /// In the first list, or new since the last poll.
    Added,
    /// Listed before, and the daemon now reports something else about it.
    Changed,
    /// Listed before and no longer there (resources only: a task leaves a `task list` also when
    /// newer ones push it past `--limit`, so its absence says nothing).
    Deleted,
}

/// One line of `-o json` output of a watch: `{"event": "added", "object": {…}}`, the object
/// as the plain command's `-o json` prints one item (a resource, a task).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WatchEvent<'a, T> {
    pub event: Change,
    pub object: &'a T,
}

/// How the items of one watched list are told apart and shown.
pub(super) struct Shape<'a, T> {
    /// The table's header.
    pub header: Vec<String>,
    /// One table row.
    pub row: &'a dyn Fn(&T) -> anyhow::Result<Vec<String>>,
    /// What identifies an item across polls.
    pub key: &'a dyn Fn(&T) -> String,
    /// The line for an item that is gone (table output), or `None` when absence means
    /// nothing (tasks).
    pub gone: Option<&'a dyn Fn(&T) -> String>,
    /// The line for an empty first list.
    pub empty: String,
}

/// Prints the list that `fetch` reads, then every change, until Ctrl-C (which ends it with
/// success) or an error: a daemon that went away ends it with an error saying so.
pub(super) async fn watch<T, F, Fut>(
    out: Output,
    shape: Shape<'_, T>,
    mut fetch: F,
) -> anyhow::Result<()>
where
    T: Serialize,
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Vec<T>>>,
{
    let mut printer = Printer {
        out,
        shape,
        widths: None,
        seen: BTreeMap::new(),
        first: true,
    };
    let mut ctrl_c = std::pin::pin!(tokio::signal::ctrl_c());
    loop {
        let items = tokio::select! {
            items = fetch() => items,
            _ = &mut ctrl_c => return Ok(()),
        };
        let items = items.map_err(|e| match e.downcast_ref::<Unreachable>() {
            Some(_) => anyhow!("stopped watching: the daemon went away ({e:#})"),
            None => e,
        })?;
        printer.show(items)?;
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = &mut ctrl_c => return Ok(()),
        }
    }
}

struct Printer<'a, T> {
    out: Output,
    shape: Shape<'a, T>,
    /// The table's column widths, fixed by the first rows printed.
    widths: Option<Vec<usize>>,
    /// The last JSON printed of each item (and the item), by key.
    seen: BTreeMap<String, (serde_json::Value, T)>,
    first: bool,
}

impl<T: Serialize> Printer<'_, T> {
    /// Prints what changed between the last list and `items`.
    fn show(&mut self, items: Vec<T>) -> anyhow::Result<()> {
        let first = std::mem::replace(&mut self.first, false);
        let mut now: BTreeMap<String, (serde_json::Value, T)> = BTreeMap::new();
        let mut changes: Vec<(Change, String)> = Vec::new();
        for item in items {
            let key = (self.shape.key)(&item);
            let json = serde_json::to_value(&item)?;
            match self.seen.get(&key) {
                None => changes.push((Change::Added, key.clone())),
                Some((before, _)) if *before != json => {
                    changes.push((Change::Changed, key.clone()))
                }
                Some(_) => {}
            }
            now.insert(key, (json, item));
        }
        let mut gone = Vec::new();
        for (key, (json, item)) in std::mem::take(&mut self.seen) {
            if now.contains_key(&key) {
                continue;
            }
            if self.shape.gone.is_some() {
                gone.push(item);
            } else {
                // Out of the list but maybe not gone (a task past --limit): keep it, so that it
                // is not shown as new should it come back.
                now.insert(key, (json, item));
            }
        }
        self.seen = now;
        let mut events: Vec<(Change, &T)> = changes
            .iter()
            .filter_map(|(c, k)| self.seen.get(k).map(|(_, item)| (*c, item)))
            .collect();
        events.extend(gone.iter().map(|item| (Change::Deleted, item)));

        let mut stdout = std::io::stdout().lock();
        match self.out {
            Output::Json | Output::Yaml => {
                for (change, item) in events {
                    let event = WatchEvent {
                        event: change,
                        object: item,
                    };
                    if self.out == Output::Json {
                        serde_json::to_writer(&mut stdout, &event)?;
                        writeln!(stdout)?;
                    } else {
                        write!(stdout, "---\n{}", serde_yaml::to_string(&event)?)?;
                    }
                }
            }
            Output::Table => {
                if first && events.is_empty() {
                    writeln!(stdout, "{}", self.shape.empty)?;
                }
                let mut lines: Vec<Line> = Vec::new();
                for (change, item) in events {
                    lines.push(match (change, self.shape.gone) {
                        (Change::Deleted, Some(gone)) => Line::Text(gone(item)),
                        _ => Line::Row((self.shape.row)(item)?),
                    });
                }
                if self.widths.is_none() && lines.iter().any(|l| matches!(l, Line::Row(_))) {
                    // The header and the first rows fix the widths, as in the plain table; a
                    // wider cell later pushes its line along rather than realign the others.
                    let mut rows = vec![self.shape.header.clone()];
                    rows.extend(lines.iter().filter_map(|l| match l {
                        Line::Row(r) => Some(r.clone()),
                        Line::Text(_) => None,
                    }));
                    let widths = column_widths(&rows);
                    write_row(&mut stdout, &self.shape.header, &widths)?;
                    self.widths = Some(widths);
                }
                let widths = self.widths.as_deref().unwrap_or_default();
                for line in lines {
                    match line {
                        Line::Row(r) => write_row(&mut stdout, &r, widths)?,
                        Line::Text(t) => writeln!(stdout, "{t}")?,
                    }
                }
            }
        }
        stdout.flush()?;
        Ok(())
    }
}

/// A line of table output: a row, or a sentence (`trigger/nightly deleted`).
enum Line {
    Row(Vec<String>),
    Text(String),
}
