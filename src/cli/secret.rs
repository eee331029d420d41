//! `secret set|unset|rotate`: changes one key of a SecretStore (the value comes from stdin or a
//! file, never the command line), or runs the store's rotation block, printing each stage as it
//! happens (`-o json`: the daemon's progress lines as they are, one JSON object per line) and
//! then its outcome.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;

use super::Output;
use super::client::{Client, enc, project_query};
use super::table::print_changes;
use crate::api::{
    ChangeResponse, ProgressEvent, RotateRequest, RotationProgress, RotationStage,
    SecretPatchRequest,
};

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set one key of a SecretStore, keeping the others. The value is read from stdin (or
    /// --from-file), never from the command line; one trailing newline is dropped.
    #[command(after_long_help = "Examples:
  orchestrator secret set webhook-secrets github < github-secret.txt
  orchestrator secret set github-api token --from-file ~/token.txt")]
    Set {
        /// The SecretStore.
        store: String,
        /// The key to set (created if the store has none of that name).
        key: String,
        /// Read the value from this file instead of stdin.
        #[arg(long, value_name = "PATH")]
        from_file: Option<PathBuf>,
    },
    /// Remove one key of a SecretStore, keeping the others.
    #[command(after_long_help = "Examples:
  orchestrator secret unset webhook-secrets github.old")]
    Unset {
        /// The SecretStore.
        store: String,
        /// The key to remove.
        key: String,
    },
    /// Rotate a key with the store's rotation block: create, set at the platform, test, finish
    /// (or roll back). Each stage is printed as it happens; -o json prints one JSON object per
    /// line, as the daemon sends them.
    #[command(after_long_help = "Examples:
  orchestrator secret rotate webhook-secrets              # create, set, test, finish
  orchestrator secret rotate slack --value-from-stdin < new-signing-secret.txt   # manual")]
    Rotate {
        /// The SecretStore with the rotation block.
        store: String,
        /// The key to rotate [default: the rotation block's key].
        #[arg(long)]
        key: Option<String>,
        /// Read the new value from stdin (provider manual: the value the platform made, such as
        /// a regenerated Slack signing secret); one trailing newline is dropped.
        #[arg(long)]
        value_from_stdin: bool,
    },
}

/// Reads a value from `file`, or from stdin (prompting on a terminal), as `secret set` does.
fn read_value(file: Option<&Path>) -> anyhow::Result<String> {
    let raw = match file {
        Some(p) => std::fs::read(p).with_context(|| format!("cannot read {}", p.display()))?,
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
    let mut value = String::from_utf8(raw).map_err(|_| anyhow!("the value is not UTF-8 text"))?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    // The daemon checks the same rule; checking here first spares the round trip.
    crate::domain::limits::check_secret_value(&value).map_err(|e| anyhow!(e))?;
    Ok(value)
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
            let value = read_value(from_file.as_deref())?;
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
        SecretCommand::Rotate {
            store,
            key,
            value_from_stdin,
        } => {
            let value = value_from_stdin.then(|| read_value(None)).transpose()?;
            let mut printer = Progress {
                out,
                line: Vec::new(),
                end: None,
            };
            client
                .stream_post(
                    &format!("/v1/secrets/{}/rotate", enc(&store)),
                    &[("stream", "true".to_owned())],
                    &RotateRequest {
                        project,
                        key,
                        value,
                    },
                    &mut printer,
                )
                .await?;
            let end = printer.end.ok_or_else(|| {
                anyhow!("the rotation stopped without an outcome (see the daemon log)")
            })?;
            let Some(r) = end.record else {
                bail!("{}", end.message);
            };
            match r.stage {
                RotationStage::Done => {
                    if out == Output::Table {
                        println!("{}", end.message);
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

/// Prints a rotation's progress lines as they arrive, and keeps the last one (`end`).
struct Progress {
    out: Output,
    /// The part of a line received so far.
    line: Vec<u8>,
    end: Option<RotationProgress>,
}

impl Progress {
    fn print(&mut self, raw: &[u8]) -> anyhow::Result<()> {
        let p: RotationProgress = serde_json::from_slice(raw).context(
            "the daemon's answer is not what this CLI expects; are the CLI and the daemon the same version?",
        )?;
        let mut stdout = std::io::stdout().lock();
        match self.out {
            Output::Json => {
                stdout.write_all(raw)?;
                writeln!(stdout)?;
            }
            Output::Yaml => write!(stdout, "---\n{}", serde_yaml::to_string(&p)?)?,
            Output::Table if p.event == ProgressEvent::End => {}
            Output::Table => {
                let fingerprint = p
                    .new_fingerprint
                    .as_deref()
                    .map(|f| format!(" ({f})"))
                    .unwrap_or_default();
                writeln!(stdout, "{}: {}{fingerprint}", p.stage.as_str(), p.message)?;
            }
        }
        stdout.flush()?;
        if p.event == ProgressEvent::End {
            self.end = Some(p);
        }
        Ok(())
    }
}

impl Write for Progress {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.line.extend_from_slice(buf);
        while let Some(i) = self.line.iter().position(|b| *b == b'\n') {
            let raw: Vec<u8> = self.line.drain(..=i).collect();
            let raw = &raw[..raw.len() - 1];
            if !raw.is_empty() {
                self.print(raw).map_err(std::io::Error::other)?;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
