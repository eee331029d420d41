//! `schedule EXPR`: the next fire times of a cron expression in a zone, answered locally by
//! `domain::schedule` (no daemon needed), so a schedule can be checked before it is applied.

use std::io::Write;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::Output;
use super::table::print_structured;
use crate::domain::schedule::Schedule;

/// One fire time, in UTC and in the expression's zone.
#[derive(Serialize)]
struct Fire {
    utc: DateTime<Utc>,
    local: String,
}

pub(super) fn run(
    out: Output,
    expr: &str,
    tz: Option<&str>,
    from: Option<&str>,
    n: usize,
) -> anyhow::Result<()> {
    let s = Schedule::parse(expr, tz)?;
    let from = match from {
        Some(f) => DateTime::parse_from_rfc3339(f)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                anyhow!("--from {f:?} is not an RFC 3339 time such as 2026-03-08T00:00:00Z: {e}")
            })?,
        None => Utc::now(),
    };
    let fires: Vec<Fire> = s
        .upcoming(from, n)
        .into_iter()
        .map(|t| Fire {
            utc: t,
            local: t
                .with_timezone(&s.timezone())
                .format("%Y-%m-%d %H:%M:%S %Z (%:z)")
                .to_string(),
        })
        .collect();
    if out != Output::Table {
        return print_structured(out, &fires);
    }
    let mut o = std::io::stdout().lock();
    if fires.is_empty() {
        writeln!(o, "no fire times after {}", from.to_rfc3339())?;
    }
    for f in &fires {
        writeln!(
            o,
            "{}  {}   {}",
            f.local,
            s.timezone().name(),
            f.utc.format("%Y-%m-%dT%H:%M:%SZ")
        )?;
    }
    Ok(())
}
