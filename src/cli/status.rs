//! `daemon status`: the daemon's version, pid, uptime, data dir, addresses, store revision,
//! resource counts per kind, and what it keeps on disk (database, run logs, the oldest task,
//! the retention in force).

use std::io::Write;

use clap::Subcommand;

use super::Output;
use super::client::Client;
use super::table::print_structured;
use chrono::Utc;

use super::table::age;
use crate::api::{DaemonStatus, StorageStatus};
use crate::domain::manifest::Kind;

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Version, uptime, data dir, addresses, resource counts and disk use.
    #[command(after_long_help = "Examples:
  orchestrator daemon status
  orchestrator daemon status -o json    # storage.databaseBytes, storage.oldestTask, …")]
    Status,
}

pub(super) async fn run(
    client: &Client,
    out: Output,
    command: DaemonCommand,
) -> anyhow::Result<()> {
    match command {
        DaemonCommand::Status => {
            let s: DaemonStatus = client.get("/v1/status", &[]).await?;
            match out {
                Output::Table => print_status(&s),
                _ => print_structured(out, &s),
            }
        }
    }
}

fn print_status(s: &DaemonStatus) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "orchestratord {} (pid {})", s.version, s.pid)?;
    writeln!(
        o,
        "Uptime:     {}s (since {})",
        s.uptime_seconds,
        s.started_at.to_rfc3339()
    )?;
    writeln!(o, "Data dir:   {}", s.data_dir)?;
    writeln!(o, "Socket:     {}", s.socket)?;
    writeln!(
        o,
        "Webhooks:   {}",
        s.webhook_addr.as_deref().unwrap_or("disabled")
    )?;
    writeln!(o, "Revision:   {}", s.revision)?;
    writeln!(o, "Resources:")?;
    for k in Kind::ALL {
        writeln!(
            o,
            "  {:<14}{}",
            k.as_str(),
            s.resources.get(&k).copied().unwrap_or(0)
        )?;
    }
    if let Some(st) = &s.storage {
        print_storage(&mut o, st)?;
    }
    Ok(())
}

fn print_storage(o: &mut impl Write, s: &StorageStatus) -> anyhow::Result<()> {
    writeln!(
        o,
        "Database:   {} (write-ahead log {}, free inside {})",
        bytes(s.database_bytes),
        bytes(s.wal_bytes),
        bytes(s.free_bytes)
    )?;
    writeln!(o, "Run logs:   {}", bytes(s.run_log_bytes))?;
    writeln!(o, "Tasks:      {} ({} finished)", s.tasks, s.finished_tasks)?;
    match &s.oldest_task {
        Some(t) => writeln!(
            o,
            "Oldest:     task {} created {} ({} ago)",
            t.id,
            t.created_at.to_rfc3339(),
            age(t.created_at, Utc::now())
        )?,
        None => writeln!(o, "Oldest:     -")?,
    }
    writeln!(
        o,
        "Retention:  finished tasks for {}, at most {} per workflow (a trigger's historyLimit wins)",
        s.retention_age, s.retention_count
    )?;
    Ok(())
}

/// `1.5 MiB`, `512 B`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_are_shown_in_binary_units() {
        for (n, want) in [
            (0, "0 B"),
            (1023, "1023 B"),
            (1024, "1.0 KiB"),
            (1536, "1.5 KiB"),
            (5 << 20, "5.0 MiB"),
            (3 << 30, "3.0 GiB"),
        ] {
            assert_eq!(super::bytes(n), want, "{n}");
        }
    }
}
