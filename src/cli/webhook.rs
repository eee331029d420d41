//! `webhook test TRIGGER --key KEY`: has the daemon sign a delivery with one key of the trigger's
//! store and send it through its own webhook server as a dry run; reports whether it verifies.

use anyhow::bail;
use clap::Subcommand;

use super::client::{Client, enc};
use super::table::print_structured;
use super::{Output, check_payload};
use crate::api::{WebhookTestRequest, WebhookTestResponse};

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
}

pub(super) async fn run(
    client: &Client,
    out: Output,
    project: Option<String>,
    command: WebhookCommand,
) -> anyhow::Result<()> {
    match command {
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
