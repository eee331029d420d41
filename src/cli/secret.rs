//! `secret set|unset|rotate`: changes one key of a SecretStore (the value comes from stdin or a
//! file, never the command line), or runs the store's rotation block and reports its outcome.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;

use super::Output;
use super::client::{Client, enc, project_query};
use super::table::{print_changes, print_structured};
use crate::api::{
    ChangeResponse, RotateRequest, RotationRecord, RotationStage, SecretPatchRequest,
};

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set one key of a SecretStore, keeping the others. The value is read from stdin (or
    /// --from-file), never from the command line; one trailing newline is dropped.
    Set {
        store: String,
        key: String,
        /// Read the value from this file instead of stdin.
        #[arg(long, value_name = "PATH")]
        from_file: Option<PathBuf>,
    },
    /// Remove one key of a SecretStore, keeping the others.
    Unset { store: String, key: String },
    /// Rotate a key with the store's rotation block: create, set at the platform, test, finish.
    Rotate {
        store: String,
        /// Default: the rotation block's key.
        #[arg(long)]
        key: Option<String>,
    },
}

pub(super) async fn run(
    client: &Client,
    out: Output,
    project: Option<String>,
    command: SecretCommand,
) -> anyhow::Result<()> {
    match command {
        SecretCommand::Set {
            store,
            key,
            from_file,
        } => {
            let raw = match &from_file {
                Some(p) => {
                    std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?
                }
                None => {
                    if std::io::stdin().is_terminal() {
                        eprintln!(
                            "orchestrator: type the value, then Ctrl-D (it is not echoed anywhere else)"
                        );
                    }
                    let mut v = Vec::new();
                    std::io::stdin()
                        .read_to_end(&mut v)
                        .context("cannot read the value from stdin")?;
                    v
                }
            };
            let mut value =
                String::from_utf8(raw).map_err(|_| anyhow!("the value is not UTF-8 text"))?;
            if value.ends_with('\n') {
                value.pop();
                if value.ends_with('\r') {
                    value.pop();
                }
            }
            // The daemon checks the same rule; checking here first spares the round trip.
            crate::domain::limits::check_secret_value(&value).map_err(|e| anyhow!(e))?;
            let resp: ChangeResponse = client
                .put(
                    &format!("/v1/secrets/{}/keys/{}", enc(&store), enc(&key)),
                    &SecretPatchRequest { project, value },
                )
                .await?;
            print_changes(out, &resp)
        }
        SecretCommand::Unset { store, key } => {
            let query = project_query(project);
            let resp: ChangeResponse = client
                .delete(
                    &format!("/v1/secrets/{}/keys/{}", enc(&store), enc(&key)),
                    &query,
                )
                .await?;
            print_changes(out, &resp)
        }
        SecretCommand::Rotate { store, key } => {
            let r: RotationRecord = client
                .post(
                    &format!("/v1/secrets/{}/rotate", enc(&store)),
                    &RotateRequest { project, key },
                )
                .await?;
            if out != Output::Table {
                print_structured(out, &r)?;
            }
            match r.stage {
                RotationStage::Done => {
                    if out == Output::Table {
                        println!(
                            "secretstore/{} key {} rotated with {}: {} -> {}",
                            r.store,
                            r.key,
                            r.provider,
                            r.old_fingerprint.as_deref().unwrap_or("?"),
                            r.new_fingerprint.as_deref().unwrap_or("?")
                        );
                    }
                    Ok(())
                }
                other => bail!(
                    "rotation of secretstore/{} key {} failed ({}): {}",
                    r.store,
                    r.key,
                    other.as_str(),
                    r.reason.as_deref().unwrap_or("no reason recorded")
                ),
            }
        }
    }
}
