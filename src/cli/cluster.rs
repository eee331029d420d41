//! `cluster status`: the nodes on the daemon's store (one on SQLite), whether each is live,
//! the revision it has published, its heartbeat age, the tasks it runs, and the leader.

use std::io::Write;

use clap::Subcommand;

use super::Output;
use super::client::Client;
use super::table::{print_structured, write_rows};
use crate::api::ClusterStatus;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// The nodes, their snapshot revision, heartbeat age and running tasks, and the leader.
    #[command(after_long_help = "Examples:
  orchestrator cluster status
  orchestrator cluster status -o json    # nodes[].state is live, dead or stopped")]
    Status,
}

pub(super) async fn run(
    client: &Client,
    out: Output,
    command: ClusterCommand,
) -> anyhow::Result<()> {
    match command {
        ClusterCommand::Status => {
            let s: ClusterStatus = client.get("/v1/cluster", &[]).await?;
            match out {
                Output::Table => print_status(&s),
                _ => print_structured(out, &s),
            }
        }
    }
}

fn print_status(s: &ClusterStatus) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    writeln!(o, "Store:    {}", s.store)?;
    match &s.leader {
        Some(l) if !l.expired => writeln!(
            o,
            "Leader:   {} (token {}, since {}, lease until {})",
            l.node,
            l.token,
            l.since.to_rfc3339(),
            l.expires_at.to_rfc3339()
        )?,
        Some(l) => writeln!(
            o,
            "Leader:   none: the lease of {} expired at {}; a live node takes it within a second",
            l.node,
            l.expires_at.to_rfc3339()
        )?,
        None => writeln!(o, "Leader:   none yet")?,
    }
    writeln!(o)?;
    let mut rows = vec![
        [
            "NODE",
            "STATE",
            "LEADER",
            "REVISION",
            "HEARTBEAT",
            "TASKS",
            "HOST",
            "PID",
            "VERSION",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for n in &s.nodes {
        let me = if n.node == s.this_node { " (this)" } else { "" };
        rows.push(vec![
            format!("{}{me}", n.node),
            n.state.as_str().to_owned(),
            if n.leader { "*" } else { "" }.to_owned(),
            n.revision.to_string(),
            format!("{:.1}s ago", n.heartbeat_age_seconds),
            n.tasks_running.to_string(),
            n.host.clone(),
            n.pid.to_string(),
            n.version.clone(),
        ]);
    }
    write_rows(&mut o, &rows)?;
    Ok(())
}
