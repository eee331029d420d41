//! `webhook test TRIGGER --key KEY`: has the daemon sign a delivery with one key of the trigger's
//! store and send it through its own webhook server as a dry run; reports whether it verifies.
//! `webhook deliveries TRIGGER` lists the delivery log; `webhook redeliver ID` starts a new task
//! from a logged delivery's payload.

use std::io::Write;

use anyhow::bail;
use chrono::Utc;
use clap::Subcommand;

use super::client::{Client, enc, project_query};
use super::table::{age, print_structured, write_rows};
use super::{Output, check_payload};
use crate::api::{DeliveryList, FireResponse, WebhookTestRequest, WebhookTestResponse};

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Sign a delivery with one key of the trigger's store and send it through the daemon's own
    /// webhook server as a dry run: reports the status and the key that matched; no task.
    #[command(after_long_help = "Examples:
  orchestrator webhook test github-push --key github.next   # does the staged key verify?
  orchestrator webhook test stripe --key stripe --payload '{\"type\": \"charge.succeeded\"}'")]
    Test {
        /// The webhook Trigger whose signature check is tested.
        trigger: String,
        /// The key of the trigger's SecretStore to sign with.
        #[arg(long)]
        key: String,
        /// The JSON body of the test delivery [default: a small test document].
        #[arg(long, value_name = "JSON")]
        payload: Option<String>,
    },
    /// List the newest requests that reached a webhook trigger: when, the status they were
    /// answered with, what became of them, the key name that verified them, their task.
    #[command(after_long_help = "Examples:
  orchestrator webhook deliveries github-events
  orchestrator webhook deliveries github-events --limit 5 -o json   # deliveries[].outcome, .task")]
    Deliveries {
        /// The webhook Trigger whose deliveries are listed.
        trigger: String,
        /// At most this many, newest first (the log keeps 1,000 per trigger).
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Start a new task from a logged delivery's payload (ID from `webhook deliveries`), as the
    /// trigger would: its concurrencyPolicy applies, its filter and the replay window do not.
    #[command(after_long_help = "Examples:
  orchestrator webhook deliveries github-events    # the ID column; REDELIVER says which can
  orchestrator webhook redeliver 1234              # prints the new task's id")]
    Redeliver {
        /// The delivery's id in the log (not the platform's delivery id).
        id: u64,
    },
}

pub(super) async fn run(
    client: &Client,
    out: Output,
    project: Option<String>,
    command: WebhookCommand,
) -> anyhow::Result<()> {
    match command {
        WebhookCommand::Deliveries { trigger, limit } => {
            let mut query = project_query(project);
            query.push(("limit", limit.to_string()));
            let list: DeliveryList = client
                .get(
                    &format!("/v1/webhooks/{}/deliveries", enc(&trigger)),
                    &query,
                )
                .await?;
            if out != Output::Table {
                return print_structured(out, &list);
            }
            let mut o = std::io::stdout().lock();
            if list.deliveries.is_empty() {
                writeln!(o, "no deliveries logged for trigger/{trigger}")?;
                return Ok(());
            }
            let now = Utc::now();
            let mut rows = vec![
                [
                    "ID",
                    "AGE",
                    "STATUS",
                    "OUTCOME",
                    "KEY",
                    "TASK",
                    "BYTES",
                    "REDELIVER",
                ]
                .map(str::to_owned)
                .to_vec(),
            ];
            let dash = |s: Option<String>| s.unwrap_or_else(|| "-".into());
            for d in list.deliveries {
                rows.push(vec![
                    d.id.to_string(),
                    age(d.received_at, now),
                    d.status.to_string(),
                    d.outcome,
                    dash(d.key),
                    dash(d.task.map(|t| t.to_string())),
                    d.payload_bytes.to_string(),
                    if d.redeliverable { "yes" } else { "no" }.into(),
                ]);
            }
            write_rows(&mut o, &rows)?;
            Ok(())
        }
        WebhookCommand::Redeliver { id } => {
            let resp: FireResponse = client
                .post(
                    &format!("/v1/deliveries/{id}/redeliver"),
                    &serde_json::json!({}),
                )
                .await?;
            if out != Output::Table {
                return print_structured(out, &resp);
            }
            match (&resp.task, &resp.skipped) {
                (Some(t), _) => println!("{}", t.id),
                (None, Some(why)) => bail!("delivery {id} was not redelivered: {why}"),
                (None, None) => bail!("delivery {id} was not redelivered"),
            }
            Ok(())
        }
        WebhookCommand::Test {
            trigger,
            key,
            payload,
        } => {
            check_payload(payload.as_deref())?;
            let r: WebhookTestResponse = client
                .post(
                    &format!("/v1/webhooks/{}/test", enc(&trigger)),
                    &WebhookTestRequest {
                        project,
                        key: key.clone(),
                        payload,
                    },
                )
                .await?;
            if out != Output::Table {
                return print_structured(out, &r);
            }
            match (&r.matched_key, r.status) {
                (Some(k), 200) => {
                    println!(
                        "trigger/{trigger}: a delivery signed with {key:?} verifies (matched key {k:?}); no task was created"
                    );
                    Ok(())
                }
                _ => bail!(
                    "trigger/{trigger}: a delivery signed with {key:?} was refused (HTTP {}): {}",
                    r.status,
                    r.body
                ),
            }
        }
    }
}
