//! `daemon status`: the daemon's version, pid, uptime, data dir, addresses, store revision and
//! resource counts per kind.

use std::io::Write;

use clap::Subcommand;

use super::Output;
use super::client::Client;
use super::table::print_structured;
use crate::api::DaemonStatus;
use crate::domain::manifest::Kind;

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Version, uptime, data dir, addresses and resource counts.
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
    Ok(())
}
