//! The `orchestrator` command line: the clap tree (its doc comments are the `--help`) and
//! [`run`], which answers `schedule` locally and sends every other command to the daemon over its
//! Unix socket ([`client`]). One file per command group holds that group's flags, its request
//! and its table. Output is a table by default, or `-o yaml|json` (the API's own types, stable for
//! agents to parse). Errors print as `orchestrator: …` and exit 1; usage errors exit 2 (clap).
//!
//! Architecture invariant: the CLI imports only `api`, `domain` and `layout` (checked by
//! `tests/tidy.rs`), so the CLI binary links neither the daemon nor its TLS and HTTP/2 stack.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};

mod actors;
mod apply;
mod client;
mod delete;
mod describe;
mod get;
mod schedule;
mod secret;
mod status;
mod table;
mod task;
mod trigger;
mod webhook;

pub use actors::ActorsCommand;
pub use secret::SecretCommand;
pub use status::DaemonCommand;
pub use task::TaskCommand;
pub use trigger::TriggerCommand;
pub use webhook::WebhookCommand;

use client::Client;

/// orchestrator: apply resources to orchestratord and inspect them.
#[derive(Debug, Parser)]
#[command(name = "orchestrator", version, about, max_term_width = 100)]
pub struct Cli {
    /// The daemon's control socket [default: $ORCHESTRATOR_DATA_DIR/orchestrator.sock, else
    /// ~/.orchestratord/orchestrator.sock].
    #[arg(long, global = true, env = "ORCHESTRATOR_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Project (namespace) to work in [default: default].
    #[arg(
        short,
        long,
        global = true,
        env = "ORCHESTRATOR_PROJECT",
        value_name = "PROJECT"
    )]
    pub project: Option<String>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Yaml,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update resources from manifests (files, directories, or - for stdin).
    Apply {
        /// A manifest file, a directory (its *.yaml/*.yml files, recursively, in name order), or -.
        #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
        files: Vec<PathBuf>,
        /// Validate and show what would change, without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// List resources of a kind, or show one.
    Get {
        /// Kind (singular, plural or short: trigger, triggers, tr), or KIND/NAME.
        kind: String,
        name: Option<String>,
        /// List across all projects.
        #[arg(short = 'A', long)]
        all_projects: bool,
    },
    /// Show one resource in detail: spec, references, history (and secret key metadata).
    Describe {
        /// Kind, or KIND/NAME.
        kind: String,
        name: Option<String>,
    },
    /// Delete resources by name or by manifest; refused while others still reference them.
    Delete {
        /// Kind, or KIND/NAME (omit with -f).
        kind: Option<String>,
        name: Option<String>,
        /// Delete the resources these manifests declare.
        #[arg(short = 'f', long = "filename", value_name = "PATH")]
        files: Vec<PathBuf>,
        /// Show what would be deleted, without deleting.
        #[arg(long)]
        dry_run: bool,
    },
    /// Create, list, inspect, follow, start and cancel tasks.
    Task {
        #[command(subcommand)]
        command: TaskCommand,
    },
    /// Fire, suspend or resume a trigger.
    Trigger {
        #[command(subcommand)]
        command: TriggerCommand,
    },
    /// The daemon's actors: the live supervision tree, or one actor's state and messages.
    Actors {
        #[command(subcommand)]
        command: Option<ActorsCommand>,
    },
    /// Change one SecretStore key, or rotate one with the store's rotation block.
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Test a webhook trigger's signature check.
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Print the next fire times of a cron expression (no daemon needed).
    Schedule {
        /// 5-field crontab, 6-field with seconds, or @daily/@weekly/….
        expression: String,
        /// IANA time zone [default: UTC].
        #[arg(long, value_name = "TZ")]
        timezone: Option<String>,
        /// Start after this instant (RFC 3339) [default: now].
        #[arg(long, value_name = "RFC3339")]
        from: Option<String>,
        /// How many fire times.
        #[arg(short = 'n', long, default_value_t = 5)]
        count: usize,
    },
    /// Talk about the daemon itself.
    Daemon {
        #[command(subcommand)]
        command: DaemonCommand,
    },
}

/// Runs one CLI invocation; the caller prints the error and picks the exit code.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Schedule {
        expression,
        timezone,
        from,
        count,
    } = &cli.command
    {
        return schedule::run(
            cli.output,
            expression,
            timezone.as_deref(),
            from.as_deref(),
            *count,
        );
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_remote(cli))
}

/// Sends one command to the daemon and prints its answer.
async fn run_remote(cli: Cli) -> anyhow::Result<()> {
    let client = Client::new(socket_path(cli.socket.as_deref())?);
    let out = cli.output;
    let project = cli.project;
    match cli.command {
        Command::Apply { files, dry_run } => {
            apply::run(&client, out, project, &files, dry_run).await
        }
        Command::Get {
            kind,
            name,
            all_projects,
        } => get::run(&client, out, project, &kind, name, all_projects).await,
        Command::Describe { kind, name } => describe::run(&client, out, project, &kind, name).await,
        Command::Delete {
            kind,
            name,
            files,
            dry_run,
        } => delete::run(&client, out, project, kind, name, &files, dry_run).await,
        Command::Task { command } => task::run(&client, out, project, command).await,
        Command::Secret { command } => secret::run(&client, out, project, command).await,
        Command::Webhook { command } => webhook::run(&client, out, project, command).await,
        Command::Trigger { command } => trigger::run(&client, out, project, command).await,
        Command::Actors { command } => actors::run(&client, out, command).await,
        Command::Daemon { command } => status::run(&client, out, command).await,
        Command::Schedule { .. } => unreachable_schedule(),
    }
}

/// `schedule` is answered before connecting; reaching it here is a programming error reported
/// as an ordinary error rather than a panic.
fn unreachable_schedule() -> anyhow::Result<()> {
    bail!("internal error: schedule was routed to the daemon")
}

/// The socket to talk to: `--socket`/`ORCHESTRATOR_SOCKET`, else the data dir's socket.
pub fn socket_path(flag: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = flag {
        return Ok(p.to_owned());
    }
    if let Some(dir) = std::env::var_os("ORCHESTRATOR_DATA_DIR").filter(|d| !d.is_empty()) {
        return Ok(crate::layout::socket_in(Path::new(&dir)));
    }
    Ok(crate::layout::socket_in(&crate::layout::default_data_dir()?))
}

/// Refuses a `--payload` that is not JSON before anything is sent.
fn check_payload(payload: Option<&str>) -> anyhow::Result<()> {
    if let Some(p) = payload
        && let Err(e) = serde_json::from_str::<serde_json::Value>(p)
    {
        bail!("--payload is not valid JSON: {e}");
    }
    Ok(())
}
