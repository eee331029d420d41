//! The `orchestrator` command line: the clap tree (its doc comments are the `--help`) and
//! [`run`], which answers `schedule`, `completions` and `man` ([`generate`]) locally and sends
//! every other command to the daemon over its Unix socket ([`client`]). One file per command
//! group holds that group's flags, its request and its table. Output is a table by default, or `-o yaml|json` (the API's own types, stable for
//! agents to parse; README "JSON output" lists every shape). Errors print as `orchestrator: …`
//! and exit 1; usage errors exit 2: clap's own, and the [`UsageError`]s the commands find in
//! their arguments before anything is sent (an unknown kind, with a "did you mean"). [`help`]
//! finishes the clap tree: the global options are listed once, in `orchestrator --help`.
//!
//! Architecture invariant: the CLI imports only `api`, `domain`, `layout` and the daemon's plain
//! clap flags (`daemon_flags`, for its man page) (checked by `tests/tidy.rs`), so the CLI binary
//! links neither the daemon nor its TLS and HTTP/2 stack.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};

mod actors;
mod apply;
mod client;
mod cluster;
mod delete;
mod describe;
mod generate;
mod get;
pub mod help;
mod schedule;
mod secret;
mod status;
mod table;
mod task;
mod trigger;
mod watch;
mod webhook;

pub use actors::ActorsCommand;
pub use cluster::ClusterCommand;
pub use help::{command, parse};
pub use secret::SecretCommand;
pub use status::DaemonCommand;
pub use task::TaskCommand;
pub use trigger::TriggerCommand;
pub use webhook::WebhookCommand;

use client::Client;

/// orchestrator: apply resources to orchestratord and inspect them.
#[derive(Debug, Parser)]
#[command(
    name = "orchestrator",
    version,
    about,
    max_term_width = 100,
    after_long_help = "Examples:
  orchestrator apply -f manifests/secret-rotation/   # every *.yaml of a directory
  orchestrator get triggers -o json                  # the stable JSON contract (README)

Usage errors (an unknown command, option or kind) exit 2; every other error exits 1."
)]
pub struct Cli {
    /// The daemon's control socket [default: $ORCHESTRATOR_DATA_DIR/orchestrator.sock, else
    /// ~/.orchestratord/orchestrator.sock].
    #[arg(
        long,
        global = true,
        env = "ORCHESTRATOR_SOCKET",
        value_name = "PATH",
        help_heading = GLOBAL
    )]
    pub socket: Option<PathBuf>,
    /// Project (namespace) to work in [default: default].
    #[arg(
        short,
        long,
        global = true,
        env = "ORCHESTRATOR_PROJECT",
        value_name = "PROJECT",
        help_heading = GLOBAL
    )]
    pub project: Option<String>,
    /// Output format: a table for people, or YAML or JSON for programs.
    #[arg(
        short,
        long,
        global = true,
        value_enum,
        default_value_t = Output::Table,
        help_heading = GLOBAL
    )]
    pub output: Output,
    #[command(subcommand)]
    pub command: Command,
}

/// The heading of the global options in `orchestrator --help` (the only help that lists them;
/// every other help names them in one line, see [`help`]).
const GLOBAL: &str = "Global options";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Aligned columns (and sentences) for people.
    Table,
    /// YAML; the output of `get` can be applied again.
    Yaml,
    /// JSON: the stable contract for scripts and agents (README: "JSON output").
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create or update resources from manifests (files, directories, or - for stdin).
    #[command(after_long_help = "Examples:
  orchestrator apply -f manifests/secret-rotation/   # every *.yaml/*.yml, in name order
  orchestrator apply -f trigger.yaml --dry-run       # what would change; nothing is written
  cat *.yaml | orchestrator apply -f -               # from stdin")]
    Apply {
        /// A manifest file, a directory (its *.yaml/*.yml files, recursively, in name order), or -.
        #[arg(short = 'f', long = "filename", value_name = "PATH", required = true)]
        files: Vec<PathBuf>,
        /// Validate and show what would change, without changing anything.
        #[arg(long)]
        dry_run: bool,
    },
    /// List resources of a kind, or show one (-w: keep watching for changes).
    #[command(
        after_long_help = "Kinds: workspace (ws), envstore (es), secretstore (ss), steptemplate (st),
agent (ag), workflow (wf), trigger (tr); plural forms work too.

Examples:
  orchestrator get triggers                     # NEXT FIRE, LAST FIRE, FIRES of every trigger
  orchestrator get trigger/nightly -o yaml      # one resource; its YAML can be applied again
  orchestrator get triggers -w                  # then a new row whenever a trigger changes"
    )]
    Get {
        /// Kind (singular, plural or short: trigger, triggers, tr), or KIND/NAME.
        kind: String,
        /// The resource's name (or give KIND/NAME); without it, every resource of the kind.
        name: Option<String>,
        /// List across all projects.
        #[arg(short = 'A', long)]
        all_projects: bool,
        /// Keep watching: after the list, print a row (-o json: a JSON line) whenever one of
        /// them changes, appears or goes, until Ctrl-C or the daemon stops.
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Show one resource in detail: spec, references, history (and secret key metadata).
    #[command(after_long_help = "Examples:
  orchestrator describe trigger nightly              # fires, skips, missed fires, where it is armed
  orchestrator describe secretstore webhook-secrets  # keys: fingerprints, last verified, history")]
    Describe {
        /// Kind (singular, plural or short), or KIND/NAME.
        kind: String,
        /// The resource's name (or give KIND/NAME).
        name: Option<String>,
    },
    /// Delete resources by name or by manifest; refused while others still reference them.
    #[command(after_long_help = "Examples:
  orchestrator delete trigger nightly          # or: delete trigger/nightly
  orchestrator delete -f manifests/old/ --dry-run")]
    Delete {
        /// Kind, or KIND/NAME (omit with -f).
        kind: Option<String>,
        /// The resource's name (or give KIND/NAME).
        name: Option<String>,
        /// Delete the resources these manifests declare.
        #[arg(short = 'f', long = "filename", value_name = "PATH")]
        files: Vec<PathBuf>,
        /// Show what would be deleted, without deleting.
        #[arg(long)]
        dry_run: bool,
    },
    /// Create, list, inspect, follow, start, cancel and remove tasks.
    #[command(after_long_help = "Examples:
  orchestrator task create --workflow nightly --goal \"rotate now\" --wait
  orchestrator task list --state running -w      # then a row whenever a task changes")]
    Task {
        #[command(subcommand)]
        command: TaskCommand,
    },
    /// Fire, suspend or resume a trigger.
    #[command(after_long_help = "Examples:
  orchestrator trigger fire nightly            # prints the new task's id
  orchestrator trigger suspend nightly")]
    Trigger {
        #[command(subcommand)]
        command: TriggerCommand,
    },
    /// The daemon's actors: the live supervision tree, or one actor's state and messages.
    #[command(after_long_help = actors::NAMES_HELP)]
    Actors {
        #[command(subcommand)]
        command: Option<ActorsCommand>,
    },
    /// Change one SecretStore key, or rotate one with the store's rotation block.
    #[command(after_long_help = "Examples:
  orchestrator secret set webhook-secrets github < secret.txt
  orchestrator secret rotate webhook-secrets")]
    Secret {
        #[command(subcommand)]
        command: SecretCommand,
    },
    /// Test a webhook trigger's signature check.
    #[command(after_long_help = "Examples:
  orchestrator webhook test github-push --key github.next")]
    Webhook {
        #[command(subcommand)]
        command: WebhookCommand,
    },
    /// Print the next fire times of a cron expression (no daemon needed).
    #[command(after_long_help = "Examples:
  orchestrator schedule \"0 2 * * 0\" --timezone Asia/Tokyo -n 3
  orchestrator schedule \"30 2 * * *\" --timezone America/New_York --from 2026-03-07T00:00:00Z")]
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
    /// Print a shell completion script for bash, zsh or fish (no daemon needed).
    #[command(after_long_help = "Examples:
  orchestrator completions bash > ~/.local/share/bash-completion/completions/orchestrator
  orchestrator completions zsh > ~/.zfunc/_orchestrator     # a directory on $fpath
  orchestrator completions fish > ~/.config/fish/completions/orchestrator.fish")]
    Completions {
        /// The shell the script is for: bash, zsh or fish.
        #[arg(value_enum)]
        shell: generate::Shell,
    },
    /// Print the man page orchestrator(1), or write every page into a directory (no daemon
    /// needed).
    #[command(after_long_help = "Examples:
  orchestrator man | man -l -                # read it now
  orchestrator man --dir man/                # orchestrator.1, orchestrator-*.1, orchestratord.8")]
    Man {
        /// Write orchestrator.1, one orchestrator-COMMAND.1 per command and subcommand, and
        /// the daemon's orchestratord.8 into this directory (created if missing), and print
        /// their paths, instead of printing orchestrator.1.
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
    /// Talk about the daemon itself.
    #[command(after_long_help = "Examples:
  orchestrator daemon status -o json")]
    Daemon {
        #[command(subcommand)]
        command: DaemonCommand,
    },
    /// The daemons that share this daemon's store, and which one leads.
    #[command(after_long_help = "Examples:
  orchestrator cluster status
  orchestrator cluster status -o json")]
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
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
    match &cli.command {
        Command::Completions { shell } => {
            return generate::completions(*shell, &mut std::io::stdout().lock());
        }
        Command::Man { dir: None } => return generate::man_page(&mut std::io::stdout().lock()),
        Command::Man { dir: Some(dir) } => {
            let mut out = std::io::stdout().lock();
            for page in generate::man_pages(dir)? {
                writeln!(out, "{}", page.display())?;
            }
            return Ok(());
        }
        _ => {}
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
            watch,
        } => {
            let args = get::GetArgs {
                kind: &kind,
                name,
                all_projects,
                watch,
            };
            get::run(&client, out, project, args).await
        }
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
        Command::Cluster { command } => cluster::run(&client, out, command).await,
        Command::Schedule { .. } | Command::Completions { .. } | Command::Man { .. } => {
            answered_locally()
        }
    }
}

/// `schedule`, `completions` and `man` are answered before connecting; reaching one here is a
/// programming error reported as an ordinary error rather than a panic.
fn answered_locally() -> anyhow::Result<()> {
    bail!("internal error: a local command was routed to the daemon")
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

/// Refuses a `--payload` that is not JSON before anything is sent (a usage error).
fn check_payload(payload: Option<&str>) -> anyhow::Result<()> {
    if let Some(p) = payload
        && let Err(e) = serde_json::from_str::<serde_json::Value>(p)
    {
        return Err(UsageError(format!("--payload is not valid JSON: {e}")).into());
    }
    Ok(())
}

/// A mistake in the command line that the CLI finds before it sends anything (an unknown kind,
/// a name given twice): printed like every error, but the exit status is 2, as for clap's own
/// usage errors (SPEC §9).
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The exit status for an error of [`run`]: 2 for a [`UsageError`], else 1.
pub fn exit_status(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<UsageError>().is_some() {
        2
    } else {
        1
    }
}
