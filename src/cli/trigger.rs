//! `trigger fire|suspend|resume`: fires a trigger now (prints the task id, or fails with why it
//! did not fire), or sets and clears its `spec.suspend`.

use anyhow::bail;
use clap::Subcommand;

use super::client::{Client, enc};
use super::table::print_structured;
use super::{Output, check_payload};
use crate::api::{ChangeResponse, FireRequest, FireResponse};
use crate::domain::snapshot::Outcome;

#[derive(Debug, Subcommand)]
pub enum TriggerCommand {
    /// Fire a trigger now (its concurrencyPolicy applies); prints the task id.
    #[command(after_long_help = "Examples:
  orchestrator trigger fire nightly
  orchestrator trigger fire github-push --payload '{\"ref\": \"refs/heads/main\"}'")]
    Fire {
        /// The Trigger's name (cron or webhook).
        name: String,
        /// A JSON document, rendered into prompts as {payload}.
        #[arg(long, value_name = "JSON")]
        payload: Option<String>,
    },
    /// Stop a cron trigger from firing (sets spec.suspend; a later apply of its manifest sets it
    /// back to what the manifest says).
    #[command(after_long_help = "Examples:
  orchestrator trigger suspend nightly && orchestrator get trigger nightly   # SUSPENDED true")]
    Suspend {
        /// The Trigger's name.
        name: String,
    },
    /// Let a suspended trigger fire again (sets spec.suspend to false).
    #[command(after_long_help = "Examples:
  orchestrator trigger resume nightly")]
    Resume {
        /// The Trigger's name.
        name: String,
    },
}

pub(super) async fn run(
    client: &Client,
    out: Output,
    project: Option<String>,
    command: TriggerCommand,
) -> anyhow::Result<()> {
    match command {
        TriggerCommand::Fire { name, payload } => {
            check_payload(payload.as_deref())?;
            let resp: FireResponse = client
                .post(
                    &format!("/v1/triggers/{}/fire", enc(&name)),
                    &FireRequest { project, payload },
                )
                .await?;
            if out != Output::Table {
                return print_structured(out, &resp);
            }
            match (&resp.task, &resp.skipped) {
                (Some(t), _) => println!("{}", t.id),
                (None, Some(why)) => bail!("trigger {name} did not fire: {why}"),
                (None, None) => bail!("trigger {name} did not fire"),
            }
            Ok(())
        }
        TriggerCommand::Suspend { name } | TriggerCommand::Resume { name } if name.is_empty() => {
            bail!("name the trigger")
        }
        TriggerCommand::Suspend { name } => suspend(client, out, project, &name, "suspend").await,
        TriggerCommand::Resume { name } => suspend(client, out, project, &name, "resume").await,
    }
}

async fn suspend(
    client: &Client,
    out: Output,
    project: Option<String>,
    name: &str,
    action: &str,
) -> anyhow::Result<()> {
    let path = match &project {
        Some(p) => format!("/v1/triggers/{}/{action}?project={}", enc(name), enc(p)),
        None => format!("/v1/triggers/{}/{action}", enc(name)),
    };
    let resp: ChangeResponse = client.post(&path, &serde_json::json!({})).await?;
    if out != Output::Table {
        return print_structured(out, &resp);
    }
    let done = if action == "suspend" {
        "suspended"
    } else {
        "resumed"
    };
    match resp.results.first().map(|r| r.outcome) {
        Some(Outcome::Unchanged) => {
            println!("trigger/{name} was already {done}")
        }
        _ => println!("trigger/{name} {done}"),
    }
    Ok(())
}
