//! The `orchestrator` command line: clap commands (their doc comments are the `--help`) and a
//! reqwest client that speaks the control API over the daemon's Unix socket. Output is a table by
//! default, or `-o yaml|json` (the API's own types, stable for agents to parse). Errors print as
//! `orchestrator: …` and exit 1; usage errors exit 2 (clap).

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::{
    ActorInspect, ActorNode, ActorTrace, ApplyRequest, Armed, ChangeResponse, CreateTaskRequest,
    DaemonStatus, DeleteRequest, Describe, ErrorBody, FireRequest, FireResponse, KillResponse,
    ResourceList, ResourceView, RotateRequest, RotationRecord, RotationStage, SecretPatchRequest,
    Source, Target, TaskDetail, TaskInfo, TaskList, TaskState, TraceEntry, TraceOutcome,
    WebhookTestRequest, WebhookTestResponse,
};
use crate::domain::manifest::Kind;
use crate::domain::schedule::Schedule;

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

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Create a task that runs a workflow; prints its id.
    Create {
        #[arg(long)]
        workflow: String,
        /// [default: the workspace named "default", or the project's only one]
        #[arg(long)]
        workspace: Option<String>,
        /// The goal, rendered into prompts as {goal}.
        #[arg(long)]
        goal: Option<String>,
        /// A JSON document, rendered into prompts as {payload}.
        #[arg(long, value_name = "JSON")]
        payload: Option<String>,
        /// Create the task pending; start it later with `task start`.
        #[arg(long)]
        no_start: bool,
        /// Wait for the task to finish; exit 0 only if it succeeded.
        #[arg(long, conflicts_with = "no_start")]
        wait: bool,
    },
    /// List tasks, newest first.
    List {
        /// Only tasks in this state (pending, running, succeeded, failed, cancelled).
        #[arg(long)]
        state: Option<String>,
        #[arg(long)]
        workflow: Option<String>,
        /// Only tasks started by this trigger.
        #[arg(long)]
        trigger: Option<String>,
        /// Across all projects.
        #[arg(short = 'A', long)]
        all_projects: bool,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show a task: state, steps (agent, argv, exit code, times, log paths) and events.
    Show { id: u64 },
    /// Print a task's run logs; --follow streams them until the task finishes.
    Logs {
        id: u64,
        #[arg(short, long)]
        follow: bool,
    },
    /// Cancel a pending or running task (its agents are stopped).
    Cancel { id: u64 },
    /// Start a task created with --no-start.
    Start { id: u64 },
}

#[derive(Debug, Subcommand)]
pub enum TriggerCommand {
    /// Fire a trigger now (its concurrencyPolicy applies); prints the task id.
    Fire {
        name: String,
        /// A JSON document, rendered into prompts as {payload}.
        #[arg(long, value_name = "JSON")]
        payload: Option<String>,
    },
    /// Stop a cron trigger from firing (sets spec.suspend; a later apply of its manifest sets it
    /// back to what the manifest says).
    Suspend { name: String },
    /// Let a suspended trigger fire again (sets spec.suspend to false).
    Resume { name: String },
}

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

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Sign a delivery with one key of the trigger's store and send it through the daemon's own
    /// webhook server as a dry run: reports the status and the key that matched; no task.
    Test {
        trigger: String,
        /// The key of the trigger's SecretStore to sign with.
        #[arg(long)]
        key: String,
        #[arg(long, value_name = "JSON")]
        payload: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ActorsCommand {
    /// The state summary an actor reports about itself, with its message statistics.
    Inspect { name: String },
    /// An actor's recent messages (kind, duration, outcome); --follow streams new ones.
    Trace {
        name: String,
        #[arg(short, long)]
        follow: bool,
        /// How many recent messages.
        #[arg(short = 'n', long, default_value_t = 20)]
        count: usize,
    },
    /// Fail an actor on purpose, so that its supervisor restarts it (not the root).
    Kill { name: String },
}

#[derive(Debug, Subcommand)]
pub enum DaemonCommand {
    /// Version, uptime, data dir, addresses and resource counts.
    Status,
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
        return schedule(
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

async fn run_remote(cli: Cli) -> anyhow::Result<()> {
    let client = Client::new(socket_path(cli.socket.as_deref())?)?;
    let out = cli.output;
    let project = cli.project.clone();
    match cli.command {
        Command::Apply { files, dry_run } => {
            let sources = read_sources(&files)?;
            let resp: ChangeResponse = client
                .post(
                    "/v1/apply",
                    &ApplyRequest {
                        project,
                        dry_run,
                        sources,
                    },
                )
                .await?;
            print_changes(out, &resp)
        }
        Command::Get {
            kind,
            name,
            all_projects,
        } => {
            let (kind, name) = kind_and_name(&kind, name)?;
            let mut query = vec![("all", all_projects.to_string())];
            if let Some(p) = &project {
                query.push(("project", p.clone()));
            }
            match name {
                Some(name) => {
                    let view: ResourceView = client
                        .get(
                            &format!("/v1/resources/{}/{}", kind.lower(), enc(&name)),
                            &query,
                        )
                        .await?;
                    match out {
                        Output::Table => {
                            print_table(kind, std::slice::from_ref(&view), all_projects)
                        }
                        _ => print_structured(out, &view),
                    }
                }
                None => {
                    let list: ResourceList = client
                        .get(&format!("/v1/resources/{}", kind.lower()), &query)
                        .await?;
                    match out {
                        Output::Table => print_table(kind, &list.items, all_projects),
                        _ => print_structured(out, &list),
                    }
                }
            }
        }
        Command::Describe { kind, name } => {
            let (kind, name) = kind_and_name(&kind, name)?;
            let name = name.ok_or_else(|| {
                anyhow!(
                    "describe needs a NAME: orchestrator describe {} NAME",
                    kind.lower()
                )
            })?;
            let mut query = Vec::new();
            if let Some(p) = &project {
                query.push(("project", p.clone()));
            }
            let d: Describe = client
                .get(
                    &format!("/v1/resources/{}/{}/describe", kind.lower(), enc(&name)),
                    &query,
                )
                .await?;
            match out {
                Output::Table => print_describe(&d),
                _ => print_structured(out, &d),
            }
        }
        Command::Delete {
            kind,
            name,
            files,
            dry_run,
        } => {
            let mut targets = Vec::new();
            if let Some(kind) = kind {
                let (kind, name) = kind_and_name(&kind, name)?;
                let name = name.ok_or_else(|| {
                    anyhow!(
                        "delete needs a NAME: orchestrator delete {} NAME",
                        kind.lower()
                    )
                })?;
                targets.push(Target { kind, name });
            } else if files.is_empty() {
                bail!("name what to delete: orchestrator delete KIND NAME, or delete -f PATH");
            }
            let sources = if files.is_empty() {
                Vec::new()
            } else {
                read_sources(&files)?
            };
            let resp: ChangeResponse = client
                .post(
                    "/v1/delete",
                    &DeleteRequest {
                        project,
                        dry_run,
                        targets,
                        sources,
                    },
                )
                .await?;
            print_changes(out, &resp)
        }
        Command::Task { command } => task(&client, out, project, command).await,
        Command::Secret { command } => secret(&client, out, project, command).await,
        Command::Webhook {
            command:
                WebhookCommand::Test {
                    trigger,
                    key,
                    payload,
                },
        } => {
            if let Some(p) = &payload
                && let Err(e) = serde_json::from_str::<serde_json::Value>(p)
            {
                bail!("--payload is not valid JSON: {e}");
            }
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
        Command::Trigger { command } => trigger(&client, out, project, command).await,
        Command::Actors { command: None } => {
            let tree: ActorNode = client.get("/v1/actors", &[]).await?;
            match out {
                Output::Table => print_actor_tree(&tree),
                _ => print_structured(out, &tree),
            }
        }
        Command::Actors {
            command: Some(ActorsCommand::Inspect { name }),
        } => {
            let r: ActorInspect = client
                .get(
                    &format!("/v1/actors/{}/inspect", name.trim_matches('/')),
                    &[],
                )
                .await?;
            match out {
                Output::Table => {
                    let mut o = std::io::stdout().lock();
                    writeln!(o, "Actor:    {}", r.name)?;
                    if let Some(s) = &r.stats {
                        writeln!(o, "Type:     {}", s.actor_type)?;
                        writeln!(o, "Uptime:   {}", millis(s.uptime_millis))?;
                        writeln!(o, "Restarts: {}", s.restarts)?;
                        writeln!(
                            o,
                            "Messages: {} received, {} handled, {} failed, queue {}",
                            s.received, s.handled, s.failed, s.queue_depth
                        )?;
                    }
                    writeln!(o, "State:")?;
                    for line in serde_yaml::to_string(&r.state)?.lines() {
                        writeln!(o, "  {line}")?;
                    }
                    Ok(())
                }
                _ => print_structured(out, &r),
            }
        }
        Command::Actors {
            command:
                Some(ActorsCommand::Trace {
                    name,
                    follow,
                    count,
                }),
        } => {
            let path = format!("/v1/actors/{}/trace", name.trim_matches('/'));
            let query = [("n", count.to_string()), ("follow", follow.to_string())];
            if follow {
                let mut sink = TraceSink {
                    out,
                    buf: Vec::new(),
                };
                return client.stream(&path, &query, &mut sink).await;
            }
            let t: ActorTrace = client.get(&path, &query).await?;
            match out {
                Output::Table => {
                    let mut o = std::io::stdout().lock();
                    if t.messages.is_empty() {
                        writeln!(o, "{} has handled no messages yet", t.name)?;
                    }
                    for m in &t.messages {
                        writeln!(o, "{}", trace_line(m))?;
                    }
                    Ok(())
                }
                _ => print_structured(out, &t),
            }
        }
        Command::Actors {
            command: Some(ActorsCommand::Kill { name }),
        } => {
            let r: KillResponse = client
                .post(
                    &format!("/v1/actors/{}/kill", name.trim_matches('/')),
                    &serde_json::json!({}),
                )
                .await?;
            match out {
                Output::Table => {
                    println!(
                        "actor {} failed on purpose; its supervisor restarts it",
                        r.actor
                    );
                    Ok(())
                }
                _ => print_structured(out, &r),
            }
        }
        Command::Daemon {
            command: DaemonCommand::Status,
        } => {
            let s: DaemonStatus = client.get("/v1/status", &[]).await?;
            match out {
                Output::Table => print_status(&s),
                _ => print_structured(out, &s),
            }
        }
        Command::Schedule { .. } => unreachable_schedule(),
    }
}

async fn task(
    client: &Client,
    out: Output,
    project: Option<String>,
    command: TaskCommand,
) -> anyhow::Result<()> {
    match command {
        TaskCommand::Create {
            workflow,
            workspace,
            goal,
            payload,
            no_start,
            wait,
        } => {
            if let Some(p) = &payload
                && let Err(e) = serde_json::from_str::<serde_json::Value>(p)
            {
                bail!("--payload is not valid JSON: {e}");
            }
            let req = CreateTaskRequest {
                project,
                workflow,
                workspace,
                goal,
                payload,
                start: !no_start,
            };
            let info: TaskInfo = client.post("/v1/tasks", &req).await?;
            if wait {
                let done = wait_for_task(client, info.id).await?;
                match out {
                    Output::Table => println!("{} {}", done.id, task_outcome(&done)),
                    _ => print_structured(out, &done)?,
                }
                if done.state != TaskState::Succeeded {
                    bail!("task {} {}", done.id, task_outcome(&done));
                }
                return Ok(());
            }
            match out {
                Output::Table => {
                    println!("{}", info.id);
                    Ok(())
                }
                _ => print_structured(out, &info),
            }
        }
        TaskCommand::List {
            state,
            workflow,
            trigger,
            all_projects,
            limit,
        } => {
            let mut query = vec![
                ("limit", limit.to_string()),
                ("all", all_projects.to_string()),
            ];
            for (k, v) in [
                ("project", project),
                ("state", state),
                ("workflow", workflow),
                ("trigger", trigger),
            ] {
                if let Some(v) = v {
                    query.push((k, v));
                }
            }
            let list: TaskList = client.get("/v1/tasks", &query).await?;
            if out != Output::Table {
                return print_structured(out, &list);
            }
            let mut o = std::io::stdout().lock();
            if list.tasks.is_empty() {
                writeln!(o, "no tasks found")?;
                return Ok(());
            }
            let now = Utc::now();
            let mut rows = vec![vec![
                "ID".to_owned(),
                "STATE".into(),
                "WORKFLOW".into(),
                "ORIGIN".into(),
                "STEP".into(),
                "AGE".into(),
                "REASON".into(),
            ]];
            if all_projects {
                rows[0].insert(1, "PROJECT".into());
            }
            for t in &list.tasks {
                let mut row = vec![
                    t.id.to_string(),
                    t.state.as_str().to_owned(),
                    t.workflow.clone(),
                    t.origin.clone(),
                    t.step
                        .clone()
                        .map_or("-".into(), |s| format!("{s} (cycle {})", t.cycle)),
                    age(t.created_at, now),
                    truncate(t.reason.as_deref().unwrap_or(""), 60),
                ];
                if all_projects {
                    row.insert(1, t.project.clone());
                }
                rows.push(row);
            }
            write_rows(&mut o, &rows)?;
            Ok(())
        }
        TaskCommand::Show { id } => {
            let d: TaskDetail = client.get(&format!("/v1/tasks/{id}"), &[]).await?;
            match out {
                Output::Table => print_task(&d),
                _ => print_structured(out, &d),
            }
        }
        TaskCommand::Logs { id, follow } => {
            let mut stdout = std::io::stdout();
            client
                .stream(
                    &format!("/v1/tasks/{id}/logs"),
                    &[("follow", follow.to_string())],
                    &mut stdout,
                )
                .await
        }
        TaskCommand::Cancel { id } => {
            let info: TaskInfo = client
                .post(&format!("/v1/tasks/{id}/cancel"), &serde_json::json!({}))
                .await?;
            match out {
                Output::Table => {
                    println!("task {} {}", info.id, task_outcome(&info));
                    Ok(())
                }
                _ => print_structured(out, &info),
            }
        }
        TaskCommand::Start { id } => {
            let info: TaskInfo = client
                .post(&format!("/v1/tasks/{id}/start"), &serde_json::json!({}))
                .await?;
            match out {
                Output::Table => {
                    println!("task {} started", info.id);
                    Ok(())
                }
                _ => print_structured(out, &info),
            }
        }
    }
}

async fn trigger(
    client: &Client,
    out: Output,
    project: Option<String>,
    command: TriggerCommand,
) -> anyhow::Result<()> {
    match command {
        TriggerCommand::Fire { name, payload } => {
            if let Some(p) = &payload
                && let Err(e) = serde_json::from_str::<serde_json::Value>(p)
            {
                bail!("--payload is not valid JSON: {e}");
            }
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
        Some(crate::domain::snapshot::Outcome::Unchanged) => {
            println!("trigger/{name} was already {done}")
        }
        _ => println!("trigger/{name} {done}"),
    }
    Ok(())
}

fn millis(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms}ms"),
        1000..60_000 => format!("{:.1}s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m", ms / 60_000),
        _ => format!("{}h", ms / 3_600_000),
    }
}

fn print_actor_tree(root: &ActorNode) -> anyhow::Result<()> {
    let mut rows = vec![vec![
        "NAME".to_owned(),
        "TYPE".into(),
        "STATUS".into(),
        "UPTIME".into(),
        "RESTARTS".into(),
        "MESSAGES".into(),
        "QUEUE".into(),
        "LAST MESSAGE".into(),
    ]];
    fn walk(n: &ActorNode, prefix: &str, last: bool, top: bool, rows: &mut Vec<Vec<String>>) {
        let branch = if top {
            ""
        } else if last {
            "└── "
        } else {
            "├── "
        };
        let s = n.stats.as_ref();
        rows.push(vec![
            format!("{prefix}{branch}{}", n.name),
            s.map_or("-".into(), |s| s.actor_type.clone()),
            n.status.to_lowercase(),
            s.map_or("-".into(), |s| millis(s.uptime_millis)),
            s.map_or("-".into(), |s| s.restarts.to_string()),
            s.map_or("-".into(), |s| s.handled.to_string()),
            s.map_or("-".into(), |s| s.queue_depth.to_string()),
            s.and_then(|s| s.last_message_age_millis)
                .map_or("-".into(), |a| format!("{} ago", millis(a))),
        ]);
        let child_prefix = if top {
            String::new()
        } else {
            format!("{prefix}{}", if last { "    " } else { "│   " })
        };
        for (i, c) in n.children.iter().enumerate() {
            walk(c, &child_prefix, i + 1 == n.children.len(), false, rows);
        }
    }
    walk(root, "", true, true, &mut rows);
    write_rows(&mut std::io::stdout().lock(), &rows)?;
    Ok(())
}

fn trace_line(m: &TraceEntry) -> String {
    let outcome = match &m.outcome {
        TraceOutcome::Ok => "ok".to_owned(),
        TraceOutcome::Error(e) => format!("error: {e}"),
    };
    format!(
        "{}  {:<24} {:>9}µs  {outcome}",
        m.at.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        m.kind,
        m.duration_micros
    )
}

/// Turns the NDJSON of `actors trace --follow` into lines as they arrive.
struct TraceSink {
    out: Output,
    buf: Vec<u8>,
}

impl Write for TraceSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        while let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=end).collect();
            let mut o = std::io::stdout().lock();
            match (self.out, serde_json::from_slice::<TraceEntry>(&line)) {
                (Output::Table, Ok(m)) => writeln!(o, "{}", trace_line(&m))?,
                _ => o.write_all(&line)?,
            }
            o.flush()?;
        }
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stdout().flush()
    }
}

async fn secret(
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
            let mut query = Vec::new();
            if let Some(p) = project {
                query.push(("project", p));
            }
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

fn task_outcome(t: &TaskInfo) -> String {
    match &t.reason {
        Some(r) => format!("{}: {r}", t.state.as_str()),
        None => t.state.as_str().to_owned(),
    }
}

/// Polls a task until it has finished.
async fn wait_for_task(client: &Client, id: u64) -> anyhow::Result<TaskInfo> {
    let mut delay = Duration::from_millis(20);
    loop {
        let d: TaskDetail = client.get(&format!("/v1/tasks/{id}"), &[]).await?;
        if d.task.state.is_finished() {
            return Ok(d.task);
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

fn print_task(d: &TaskDetail) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    let t = &d.task;
    let now = Utc::now();
    writeln!(o, "Task:       {}", t.id)?;
    writeln!(o, "Project:    {}", t.project)?;
    writeln!(o, "Workflow:   {}", t.workflow)?;
    writeln!(o, "Workspace:  {}", t.workspace)?;
    writeln!(o, "State:      {}", task_outcome(t))?;
    writeln!(o, "Origin:     {}", t.origin)?;
    if let Some(g) = &t.goal {
        writeln!(o, "Goal:       {g}")?;
    }
    if let Some(s) = &t.scheduled_at {
        writeln!(o, "Scheduled:  {}", s.to_rfc3339())?;
    }
    writeln!(
        o,
        "Created:    {} ({} ago)",
        t.created_at.to_rfc3339(),
        age(t.created_at, now)
    )?;
    if let Some(s) = &t.started_at {
        writeln!(o, "Started:    {}", s.to_rfc3339())?;
    }
    if let Some(f) = &t.finished_at {
        writeln!(o, "Finished:   {}", f.to_rfc3339())?;
    }
    writeln!(o, "Steps:")?;
    if d.steps.is_empty() {
        writeln!(o, "  (none yet)")?;
    }
    for s in &d.steps {
        let exit = match (s.exit_code, s.signal) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(sig)) => format!("signal {sig}"),
            (None, None) => "-".into(),
        };
        let took = s
            .finished_at
            .map(|f| {
                format!(
                    " in {:.2}s",
                    (f - s.started_at).num_milliseconds() as f64 / 1000.0
                )
            })
            .unwrap_or_default();
        writeln!(
            o,
            "  {} cycle {} attempt {}: {} ({exit}){took}",
            s.step,
            s.cycle,
            s.attempt,
            s.state.as_str()
        )?;
        if let Some(a) = &s.agent {
            writeln!(o, "    agent:   {a}")?;
        }
        if !s.argv.is_empty() {
            let shown: Vec<String> = s
                .argv
                .iter()
                .map(|a| truncate(&shell_quote(a), 80))
                .collect();
            writeln!(o, "    argv:    {}", shown.join(" "))?;
        }
        if let Some(p) = s.pid {
            writeln!(o, "    pid:     {p}")?;
        }
        if let Some(r) = &s.reason {
            writeln!(o, "    reason:  {r}")?;
        }
        writeln!(o, "    started: {}", s.started_at.to_rfc3339())?;
        writeln!(
            o,
            "    output:  {} bytes stdout, {} bytes stderr",
            s.stdout_bytes, s.stderr_bytes
        )?;
        writeln!(o, "    log:     {}", s.log_path)?;
    }
    writeln!(o, "Events:")?;
    for e in &d.events {
        writeln!(o, "  {}  {}", e.at.to_rfc3339(), e.message)?;
    }
    Ok(())
}

/// Quotes an argument for display the way a shell would need it.
fn shell_quote(a: &str) -> String {
    if a.contains(['\n', '\r', '\t']) {
        return format!(
            "$'{}'",
            a.replace('\\', "\\\\")
                .replace('\'', "\\'")
                .replace('\n', "\\n")
                .replace('\r', "\\r")
                .replace('\t', "\\t")
        );
    }
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,@%+".contains(c))
    {
        a.to_owned()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// `schedule` is answered before connecting; reaching it here is a programming error reported
/// as an ordinary error rather than a panic.
fn unreachable_schedule() -> anyhow::Result<()> {
    bail!("internal error: schedule was routed to the daemon")
}

/// Percent-encodes a path segment (names are restricted, but KIND/NAME typed by a user may hold
/// anything; the daemon then answers 404 or 400 instead of the URL being mangled).
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn kind_and_name(kind: &str, name: Option<String>) -> anyhow::Result<(Kind, Option<String>)> {
    let (kind_str, inline) = match kind.split_once('/') {
        Some((k, n)) => (k, Some(n.to_owned())),
        None => (kind, None),
    };
    let k = Kind::from_cli(kind_str).ok_or_else(|| {
        anyhow!(
            "unknown kind {kind_str:?}: use one of {} (plural and short forms work too)",
            Kind::ALL.map(Kind::lower).join(", ")
        )
    })?;
    match (inline, name) {
        (Some(_), Some(_)) => bail!("give the name once: either {kind} or a separate NAME"),
        (Some(n), None) if n.is_empty() => bail!("{kind:?} has an empty name after the slash"),
        (Some(n), None) => Ok((k, Some(n))),
        (None, n) => Ok((k, n)),
    }
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

/// Reads every manifest named on the command line.
fn read_sources(paths: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
    let cwd = std::env::current_dir().context("cannot read the current directory")?;
    let mut sources = Vec::new();
    let mut stdin_used = false;
    for p in paths {
        if p.as_os_str() == "-" {
            if stdin_used {
                bail!("- (stdin) is given twice");
            }
            stdin_used = true;
            if std::io::stdin().is_terminal() {
                eprintln!("orchestrator: reading manifests from stdin (end with Ctrl-D)");
            }
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("cannot read stdin as UTF-8 text")?;
            sources.push(Source {
                name: "-".into(),
                base_dir: cwd.display().to_string(),
                text,
            });
            continue;
        }
        let meta = std::fs::metadata(p).with_context(|| format!("cannot read {}", p.display()))?;
        if meta.is_dir() {
            let mut files = Vec::new();
            collect_yaml(p, &mut files)?;
            if files.is_empty() {
                bail!("{} holds no *.yaml or *.yml files", p.display());
            }
            for f in files {
                sources.push(read_file(&f, &cwd)?);
            }
        } else {
            sources.push(read_file(p, &cwd)?);
        }
    }
    // The daemon refuses the same; saying it here names the files instead of a lost connection.
    let total: usize = sources.iter().map(|s| s.text.len()).sum();
    if let Err(e) = crate::domain::limits::check_size(
        "the manifests' text",
        total,
        crate::domain::limits::MAX_APPLY_BYTES,
    ) {
        bail!(
            "{e} for one request: apply the files in smaller groups, or check that no large file is in the directory"
        );
    }
    Ok(sources)
}

fn read_file(path: &Path, cwd: &Path) -> anyhow::Result<Source> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow!(
            "{} is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    let abs = if path.is_absolute() {
        path.to_owned()
    } else {
        cwd.join(path)
    };
    let base_dir = abs.parent().map_or_else(|| cwd.to_owned(), Path::to_owned);
    Ok(Source {
        name: path.display().to_string(),
        base_dir: base_dir.display().to_string(),
        text,
    })
}

/// `*.yaml`/`*.yml` under `dir`, recursively, in name order.
fn collect_yaml(dir: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("cannot list {}", dir.display()))?;
    entries.sort();
    for e in entries {
        if e.is_dir() {
            collect_yaml(&e, out)?;
        } else if e.extension().is_some_and(|x| x == "yaml" || x == "yml") {
            out.push(e);
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

struct Client {
    http: reqwest::Client,
    socket: PathBuf,
}

/// An error answered by the daemon, printed with one line per detail.
#[derive(Debug)]
pub struct DaemonError(pub ErrorBody);

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0.error)?;
        for d in &self.0.details {
            write!(f, "\n  {d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for DaemonError {}

impl Client {
    fn new(socket: PathBuf) -> anyhow::Result<Client> {
        // The socket needs no TLS: an empty trust store keeps reqwest from loading the system's
        // CA certificates, which otherwise costs milliseconds on every CLI call.
        let http = reqwest::Client::builder()
            .unix_socket(socket.clone())
            .tls_certs_only(std::iter::empty())
            .timeout(Duration::from_secs(120))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Client { http, socket })
    }

    fn url(path: &str) -> String {
        format!("http://orchestratord{path}")
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        let req = self.http.get(Self::url(path)).query(query);
        self.send(req).await
    }

    async fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let req = self.http.post(Self::url(path)).json(body);
        self.send(req).await
    }

    /// Copies a streamed text answer to `out` as it arrives.
    async fn stream(
        &self,
        path: &str,
        query: &[(&str, String)],
        out: &mut impl Write,
    ) -> anyhow::Result<()> {
        let mut resp = self
            .http
            .get(Self::url(path))
            .query(query)
            .timeout(Duration::from_secs(365 * 24 * 3600))
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        if !status.is_success() {
            let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
            return match serde_json::from_slice::<ErrorBody>(&bytes) {
                Ok(body) => Err(DaemonError(body).into()),
                Err(_) => Err(anyhow!("the daemon answered HTTP {status}")),
            };
        }
        while let Some(chunk) = resp.chunk().await.map_err(|e| self.transport_error(e))? {
            out.write_all(&chunk)?;
            out.flush()?;
        }
        Ok(())
    }

    async fn put<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let req = self.http.put(Self::url(path)).json(body);
        self.send(req).await
    }

    async fn delete<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> anyhow::Result<T> {
        let req = self.http.delete(Self::url(path)).query(query);
        self.send(req).await
    }

    async fn send<T: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> anyhow::Result<T> {
        let resp = req.send().await.map_err(|e| self.transport_error(e))?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(|e| self.transport_error(e))?;
        if status.is_success() {
            return serde_json::from_slice(&bytes).with_context(|| {
                format!("the daemon's answer is not what this CLI expects (HTTP {status}); are the CLI and the daemon the same version?")
            });
        }
        match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(body) => Err(DaemonError(body).into()),
            Err(_) => Err(anyhow!("the daemon answered HTTP {status}")),
        }
    }

    fn transport_error(&self, e: reqwest::Error) -> anyhow::Error {
        if io_error_kind(&e) == Some(std::io::ErrorKind::PermissionDenied) {
            return anyhow!(
                "permission denied on {} ({}): run the CLI as that user (or root), or give your user access to the data dir",
                self.socket.display(),
                socket_owner(&self.socket)
            );
        }
        if e.is_connect() {
            anyhow!(
                "no daemon is answering on {}: start it with `orchestratord` (add --data-dir DIR if it uses another data dir), or point --socket at its socket",
                self.socket.display()
            )
        } else if e.is_timeout() {
            anyhow!(
                "the daemon did not answer in time on {}",
                self.socket.display()
            )
        } else {
            anyhow!(
                "talking to the daemon on {} failed: {e}",
                self.socket.display()
            )
        }
    }
}

/// The kind of the first IO error in `e`'s chain of causes.
fn io_error_kind(e: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        cause = c.source();
    }
    None
}

/// Who may use `socket`: "the daemon runs as USER", read from the socket or, when even that is
/// not visible to us, from the nearest directory above it that is (the one that shuts us out).
fn socket_owner(socket: &Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let meta = socket.ancestors().find_map(|p| std::fs::metadata(p).ok());
    match meta {
        Some(m) => {
            let uid = nix::unistd::Uid::from_raw(m.uid());
            match nix::unistd::User::from_uid(uid) {
                Ok(Some(u)) => format!("the daemon runs as {}", u.name),
                _ => format!("the daemon runs as uid {uid}"),
            }
        }
        None => "its owner cannot be read".to_owned(),
    }
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

fn print_structured<T: Serialize>(out: Output, value: &T) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    match out {
        Output::Json => {
            serde_json::to_writer_pretty(&mut stdout, value)?;
            writeln!(stdout)?;
        }
        Output::Yaml | Output::Table => {
            let text = serde_yaml::to_string(value)?;
            stdout.write_all(text.as_bytes())?;
        }
    }
    Ok(())
}

fn print_changes(out: Output, resp: &ChangeResponse) -> anyhow::Result<()> {
    if out != Output::Table {
        return print_structured(out, resp);
    }
    let mut stdout = std::io::stdout().lock();
    for r in &resp.results {
        let project = if r.project == crate::domain::manifest::DEFAULT_PROJECT {
            String::new()
        } else {
            format!(" (project {})", r.project)
        };
        let dry = if resp.dry_run { " (dry run)" } else { "" };
        writeln!(
            stdout,
            "{}/{} {}{project}{dry}",
            r.kind.lower(),
            r.name,
            r.outcome.as_str()
        )?;
    }
    Ok(())
}

/// A short age: `42s`, `5m`, `3h`, `12d`.
pub fn age(since: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - since).num_seconds().max(0);
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

fn str_at<'a>(v: &'a serde_json::Value, path: &[&str]) -> Option<&'a serde_json::Value> {
    path.iter().try_fold(v, |v, k| v.get(*k))
}

fn text(v: Option<&serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Null) | None => "-".into(),
        Some(other) => other.to_string(),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// Kind-specific columns of `get`.
fn columns(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Workspace => &["ROOT"],
        Kind::EnvStore => &["KEYS"],
        Kind::SecretStore => &["KEYS", "ROTATION"],
        Kind::StepTemplate => &["DESCRIPTION"],
        Kind::Agent => &["CAPABILITIES", "ENABLED", "COMMAND"],
        Kind::Workflow => &["STEPS", "LOOP", "MAX PARALLEL"],
        Kind::Trigger => &[
            "TYPE",
            "SCHEDULE / SOURCE",
            "WORKFLOW",
            "SUSPENDED",
            "LAST FIRE",
            "NEXT FIRE",
        ],
    }
}

fn cells(kind: Kind, v: &ResourceView) -> Vec<String> {
    let spec = &v.spec;
    let count = |p: &[&str]| {
        str_at(spec, p)
            .and_then(|d| d.as_object())
            .map_or(0, |m| m.len())
            .to_string()
    };
    match kind {
        Kind::Workspace => vec![text(spec.get("root_path"))],
        Kind::EnvStore => vec![count(&["data"])],
        Kind::SecretStore => vec![
            count(&["data"]),
            str_at(spec, &["rotation", "provider"]).map_or("-".into(), |p| text(Some(p))),
        ],
        Kind::StepTemplate => vec![truncate(&text(spec.get("description")), 50)],
        Kind::Agent => vec![
            spec.get("capabilities")
                .and_then(|c| c.as_array())
                .map(|a| {
                    a.iter()
                        .map(|c| text(Some(c)))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default(),
            spec.get("enabled").map_or("true".into(), |e| text(Some(e))),
            truncate(&text(spec.get("command")), 40),
        ],
        Kind::Workflow => vec![
            spec.get("steps")
                .and_then(|s| s.as_array())
                .map_or(0, Vec::len)
                .to_string(),
            {
                let mode = text(str_at(spec, &["loop", "mode"]));
                match str_at(spec, &["loop", "max_cycles"]) {
                    Some(n) => format!("{mode}×{n}"),
                    None => mode,
                }
            },
            text(spec.get("max_parallel")),
        ],
        Kind::Trigger => {
            let (ty, what) = if let Some(c) = spec.get("cron") {
                let tz = c
                    .get("timezone")
                    .map(|t| format!(" ({})", text(Some(t))))
                    .unwrap_or_default();
                ("cron", format!("{}{tz}", text(c.get("schedule"))))
            } else {
                let scheme = text(str_at(spec, &["event", "webhook", "scheme"]));
                (
                    "webhook",
                    if scheme == "-" {
                        "webhook".into()
                    } else {
                        scheme
                    },
                )
            };
            let status = v.status.as_ref();
            let fire = |k: &str| {
                status.and_then(|s| s.get(k)).map_or("-".into(), |f| {
                    let local = text(f.get("local"));
                    let utc = text(f.get("utc"));
                    if local == utc {
                        utc
                    } else {
                        format!("{local} ({utc})")
                    }
                })
            };
            vec![
                ty.into(),
                what,
                text(str_at(spec, &["action", "workflow"])),
                spec.get("suspend")
                    .map_or("false".into(), |s| text(Some(s))),
                fire("lastFire"),
                fire("nextFire"),
            ]
        }
    }
}

fn print_table(kind: Kind, items: &[ResourceView], with_project: bool) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    if items.is_empty() {
        writeln!(stdout, "no {} found", kind.lower())?;
        return Ok(());
    }
    let now = Utc::now();
    let mut header: Vec<String> = vec!["NAME".into()];
    if with_project {
        header.push("PROJECT".into());
    }
    header.extend(columns(kind).iter().map(|c| (*c).to_owned()));
    header.push("GEN".into());
    header.push("AGE".into());
    let mut rows = vec![header];
    for v in items {
        let mut row = vec![v.metadata.name.clone()];
        if with_project {
            row.push(v.metadata.project.clone());
        }
        row.extend(cells(kind, v));
        row.push(v.metadata.generation.to_string());
        row.push(age(v.metadata.created_at, now));
        rows.push(row);
    }
    write_rows(&mut stdout, &rows)?;
    Ok(())
}

fn write_rows(out: &mut impl Write, rows: &[Vec<String>]) -> std::io::Result<()> {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(c);
                line.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

fn print_describe(d: &Describe) -> anyhow::Result<()> {
    let mut o = std::io::stdout().lock();
    let r = &d.resource;
    let now = Utc::now();
    writeln!(o, "Name:        {}", r.metadata.name)?;
    writeln!(o, "Kind:        {}", r.kind)?;
    writeln!(o, "Project:     {}", r.metadata.project)?;
    writeln!(o, "Generation:  {}", r.metadata.generation)?;
    writeln!(
        o,
        "Created:     {} ({} ago)",
        r.metadata.created_at.to_rfc3339(),
        age(r.metadata.created_at, now)
    )?;
    writeln!(
        o,
        "Updated:     {} ({} ago)",
        r.metadata.updated_at.to_rfc3339(),
        age(r.metadata.updated_at, now)
    )?;
    for (k, v) in &r.metadata.labels {
        writeln!(o, "Label:       {k}={v}")?;
    }
    writeln!(o, "Spec:")?;
    for line in serde_yaml::to_string(&r.spec)?.lines() {
        writeln!(o, "  {line}")?;
    }
    if let Some(status) = &r.status {
        writeln!(o, "Status:")?;
        for line in serde_yaml::to_string(status)?.lines() {
            writeln!(o, "  {line}")?;
        }
    }
    if !d.keys.is_empty() {
        writeln!(o, "Keys:")?;
        let mut rows = vec![vec![
            "  KEY".to_owned(),
            "FINGERPRINT".into(),
            "LENGTH".into(),
            "UPDATED".into(),
            "LAST VERIFIED".into(),
        ]];
        for k in &d.keys {
            rows.push(vec![
                format!("  {}", k.key),
                k.fingerprint.clone(),
                k.length.to_string(),
                k.updated_at.to_rfc3339(),
                match (&k.last_verified_at, &k.last_verified_trigger) {
                    (Some(t), Some(tr)) => format!("{} (trigger {tr})", t.to_rfc3339()),
                    (Some(t), None) => t.to_rfc3339(),
                    _ => "never".into(),
                },
            ]);
        }
        write_rows(&mut o, &rows)?;
    }
    match &d.armed {
        Some(Armed::Actor { actor }) => {
            writeln!(o, "Armed:       by its TriggerActor {actor} (resident)")?
        }
        Some(Armed::WakeQueue { wake_at, next_fire }) => writeln!(
            o,
            "Armed:       in the trigger supervisor's wake queue (passivated): its TriggerActor starts at {} for the fire at {}",
            wake_at.to_rfc3339(),
            next_fire.to_rfc3339()
        )?,
        Some(Armed::NotArmed) => writeln!(
            o,
            "Armed:       no (suspended, or its actor failed repeatedly: see the daemon log; re-apply to start it again)"
        )?,
        None => {}
    }
    if !d.fires.is_empty() {
        writeln!(o, "Recent fires (newest first):")?;
        for f in &d.fires {
            let scheduled = f
                .scheduled
                .map(|s| format!(" scheduled {}", s.to_rfc3339()))
                .unwrap_or_default();
            let task = f.task.map(|t| format!(" task {t}")).unwrap_or_default();
            let late = f
                .lateness_ms
                .map(|l| format!(" ({l:.1} ms late)"))
                .unwrap_or_default();
            let reason = f
                .reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            writeln!(
                o,
                "  {}  {}{scheduled}{task}{late}{reason}",
                f.at.to_rfc3339(),
                f.kind.as_str()
            )?;
        }
    }
    if !d.rotations.is_empty() {
        writeln!(o, "Rotations (newest first):")?;
        for r in &d.rotations {
            let times = [
                Some(format!("started {}", r.started_at.to_rfc3339())),
                r.set_at.map(|t| format!("set {}", t.to_rfc3339())),
                r.verified_at
                    .map(|t| format!("verified {}", t.to_rfc3339())),
                r.finished_at
                    .map(|t| format!("finished {}", t.to_rfc3339())),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
            writeln!(
                o,
                "  #{} key {} via {}: {} ({} -> {}); {times}",
                r.id,
                r.key,
                r.provider,
                r.stage.as_str(),
                r.old_fingerprint.as_deref().unwrap_or("?"),
                r.new_fingerprint.as_deref().unwrap_or("-"),
            )?;
            if let Some(reason) = &r.reason {
                writeln!(o, "      {reason}")?;
            }
        }
    }
    writeln!(o, "Referenced by:")?;
    if d.referenced_by.is_empty() {
        writeln!(o, "  (nothing)")?;
    }
    for r in &d.referenced_by {
        writeln!(o, "  {r}")?;
    }
    writeln!(o, "History (newest first):")?;
    for h in &d.history {
        let detail = match (h.detail.get("keys"), h.detail.as_object()) {
            (Some(keys), _) => {
                let list = |k: &str| {
                    h.detail
                        .get(k)
                        .and_then(|v| v.as_array())
                        .filter(|a| !a.is_empty())
                        .map(|a| {
                            format!(
                                " {k}: {}",
                                a.iter()
                                    .map(|x| text(Some(x)))
                                    .collect::<Vec<_>>()
                                    .join(",")
                            )
                        })
                        .unwrap_or_default()
                };
                let fps = keys
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .map(|(k, v)| format!("{k}={}", text(Some(v))))
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .unwrap_or_default();
                format!(
                    " keys: {fps}{}{}{}",
                    list("added"),
                    list("changed"),
                    list("removed")
                )
            }
            _ => String::new(),
        };
        writeln!(
            o,
            "  {}  gen {}  {}{detail}",
            h.at.to_rfc3339(),
            h.generation,
            h.action.as_str()
        )?;
    }
    Ok(())
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

// ---------------------------------------------------------------------------------------------
// schedule (local)
// ---------------------------------------------------------------------------------------------

#[derive(Serialize)]
struct Fire {
    utc: DateTime<Utc>,
    local: String,
}

fn schedule(
    out: Output,
    expr: &str,
    tz: Option<&str>,
    from: Option<&str>,
    n: usize,
) -> anyhow::Result<()> {
    let s = Schedule::parse(expr, tz)?;
    let from = match from {
        Some(f) => DateTime::parse_from_rfc3339(f)
            .map(|t| t.with_timezone(&Utc))
            .map_err(|e| {
                anyhow!("--from {f:?} is not an RFC 3339 time such as 2026-03-08T00:00:00Z: {e}")
            })?,
        None => Utc::now(),
    };
    let fires: Vec<Fire> = s
        .upcoming(from, n)
        .into_iter()
        .map(|t| Fire {
            utc: t,
            local: t
                .with_timezone(&s.timezone())
                .format("%Y-%m-%d %H:%M:%S %Z (%:z)")
                .to_string(),
        })
        .collect();
    if out != Output::Table {
        return print_structured(out, &fires);
    }
    let mut o = std::io::stdout().lock();
    if fires.is_empty() {
        writeln!(o, "no fire times after {}", from.to_rfc3339())?;
    }
    for f in &fires {
        writeln!(
            o,
            "{}  {}   {}",
            f.local,
            s.timezone().name(),
            f.utc.format("%Y-%m-%dT%H:%M:%SZ")
        )?;
    }
    Ok(())
}
