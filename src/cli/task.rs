//! `task create|list|show|logs|cancel|start|rerun|delete|prune`: tasks that run a workflow, their
//! steps, events and run logs (`logs --follow` streams them), `create --wait`, which polls until
//! the task has finished and exits 0 only if it succeeded, and the removal of finished tasks
//! with their run logs (`delete` one, `prune --older-than` many). `list -w` keeps watching
//! (`watch.rs`).

use std::io::Write;
use std::time::Duration;

use anyhow::bail;
use chrono::Utc;
use clap::Subcommand;

use super::client::Client;
use super::table::{age, print_structured, truncate, write_rows};
use super::watch::{Shape, watch};
use super::{Output, check_payload};
use crate::api::{
    CreateTaskRequest, DeleteTaskResponse, PruneTasksRequest, PruneTasksResponse, StreamSummary,
    TaskDetail, TaskInfo, TaskList, TaskState,
};
use crate::domain::retention::Age;

#[derive(Debug, Subcommand)]
pub enum TaskCommand {
    /// Create a task that runs a workflow; prints its id.
    #[command(after_long_help = "Examples:
  orchestrator task create --workflow nightly --goal \"rotate the github secret\"
  orchestrator task create --workflow build --payload '{\"ref\": \"main\"}' --wait")]
    Create {
        /// The Workflow to run.
        #[arg(long, value_name = "NAME")]
        workflow: String,
        /// The Workspace to run it in (its root is the agents' working directory) [default: the
        /// workspace named "default", or the project's only one].
        #[arg(long, value_name = "NAME")]
        workspace: Option<String>,
        /// The goal, rendered into prompts as {goal}.
        #[arg(long, value_name = "TEXT")]
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
    /// List tasks, newest first (-w: keep watching for changes).
    #[command(after_long_help = "Examples:
  orchestrator task list --state failed -A
  orchestrator task list --workflow nightly -w    # then a row whenever a task starts or changes")]
    List {
        /// Only tasks in this state (pending, running, succeeded, failed, cancelled).
        #[arg(long)]
        state: Option<String>,
        /// Only tasks of this Workflow.
        #[arg(long, value_name = "NAME")]
        workflow: Option<String>,
        /// Only tasks started by this trigger.
        #[arg(long, value_name = "NAME")]
        trigger: Option<String>,
        /// Across all projects.
        #[arg(short = 'A', long)]
        all_projects: bool,
        /// At most this many tasks (the newest).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Keep watching: after the list, print a row (-o json: a JSON line) whenever a task
        /// appears or changes, until Ctrl-C or the daemon stops.
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Show a task: state, worktree, steps (agent, argv, exit code, times, log paths, what a
    /// stream-json agent reported) and events.
    #[command(after_long_help = "Examples:
  orchestrator task show 7
  orchestrator task show 7 -o json    # steps[].exitCode, steps[].logPath, steps[].streamJson, events[]")]
    Show {
        /// The task's id (task list shows them).
        id: u64,
    },
    /// Print a task's run logs; --follow streams them until the task finishes.
    #[command(after_long_help = "Examples:
  orchestrator task logs 7
  orchestrator task logs 7 --follow    # until the task ends (Ctrl-C stops only the CLI)")]
    Logs {
        /// The task's id.
        id: u64,
        /// Keep streaming new lines until the task finishes.
        #[arg(short, long)]
        follow: bool,
    },
    /// Cancel a pending or running task (its agents are stopped).
    #[command(after_long_help = "Examples:
  orchestrator task cancel 7    # SIGTERM to the agents' process groups, SIGKILL after 5 s")]
    Cancel {
        /// The task's id.
        id: u64,
    },
    /// Start a task created with --no-start.
    #[command(after_long_help = "Examples:
  orchestrator task create --workflow nightly --no-start && orchestrator task start 8")]
    Start {
        /// The task's id.
        id: u64,
    },
    /// Start a new task with the workflow (as applied now), workspace, goal and payload of task
    /// ID, whatever its state; prints the new task's id.
    #[command(after_long_help = "Examples:
  orchestrator task rerun 7    # prints the new task's id")]
    Rerun {
        /// The task to run again.
        id: u64,
    },
    /// Delete a finished task with its step runs, events and run logs (a pending or running
    /// task is refused: cancel it first).
    #[command(after_long_help = "Examples:
  orchestrator task delete 7")]
    Delete {
        /// The task's id.
        id: u64,
    },
    /// Delete the finished tasks that finished longer ago than --older-than, with their run
    /// logs, whatever their trigger's historyLimit; prints how many were removed.
    #[command(after_long_help = "Examples:
  orchestrator task prune --older-than 7d
  orchestrator task prune --older-than 12h -A    # in every project")]
    Prune {
        /// A duration: a whole number and a unit, s, m, h, d or w (7d, 12h).
        #[arg(long, value_name = "DURATION")]
        older_than: Age,
        /// Across all projects.
        #[arg(short = 'A', long)]
        all_projects: bool,
    },
}

pub(super) async fn run(
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
            check_payload(payload.as_deref())?;
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
            watch,
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
            if watch {
                return watch_tasks(client, out, &query, all_projects).await;
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
            let mut rows = vec![task_header(all_projects)];
            rows.extend(list.tasks.iter().map(|t| task_row(t, all_projects, now)));
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
        TaskCommand::Rerun { id } => {
            let info: TaskInfo = client
                .post(&format!("/v1/tasks/{id}/rerun"), &serde_json::json!({}))
                .await?;
            match out {
                Output::Table => {
                    println!("{}", info.id);
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
        TaskCommand::Delete { id } => {
            let r: DeleteTaskResponse = client.delete(&format!("/v1/tasks/{id}"), &[]).await?;
            match out {
                Output::Table => {
                    println!("task {} deleted", r.id);
                    Ok(())
                }
                _ => print_structured(out, &r),
            }
        }
        TaskCommand::Prune {
            older_than,
            all_projects,
        } => {
            let req = PruneTasksRequest {
                older_than_seconds: older_than.as_secs(),
                project,
                all: all_projects,
            };
            let r: PruneTasksResponse = client.post("/v1/tasks/prune", &req).await?;
            match out {
                Output::Table => {
                    let noun = if r.removed == 1 { "task" } else { "tasks" };
                    println!(
                        "removed {} finished {noun} older than {older_than}",
                        r.removed
                    );
                    Ok(())
                }
                _ => print_structured(out, &r),
            }
        }
    }
}

/// `task list -w`: the list, then a row whenever a task appears or changes.
async fn watch_tasks(
    client: &Client,
    out: Output,
    query: &[(&'static str, String)],
    all_projects: bool,
) -> anyhow::Result<()> {
    let row = move |t: &TaskInfo| Ok(task_row(t, all_projects, Utc::now()));
    let key = |t: &TaskInfo| format!("{:020}", t.id);
    let shape = Shape {
        header: task_header(all_projects),
        row: &row,
        key: &key,
        gone: None,
        empty: "no tasks found (watching)".to_owned(),
    };
    watch(out, shape, || async {
        let list: TaskList = client.get("/v1/tasks", query).await?;
        // Oldest first, so that the rows of one poll come in the order the tasks were created.
        Ok(list.tasks.into_iter().rev().collect())
    })
    .await
}

/// The header of `task list`.
fn task_header(all_projects: bool) -> Vec<String> {
    let mut header = vec![
        "ID".to_owned(),
        "STATE".into(),
        "WORKFLOW".into(),
        "ORIGIN".into(),
        "STEP".into(),
        "AGE".into(),
        "REASON".into(),
    ];
    if all_projects {
        header.insert(1, "PROJECT".into());
    }
    header
}

/// One task's row under [`task_header`].
fn task_row(t: &TaskInfo, all_projects: bool, now: chrono::DateTime<Utc>) -> Vec<String> {
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
    row
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
    if let Some(w) = &t.worktree {
        match &w.path {
            Some(p) => writeln!(o, "Worktree:   {p} ({})", w.state.as_str())?,
            None => writeln!(o, "Worktree:   {}", w.state.as_str())?,
        }
    }
    writeln!(o, "State:      {}", task_outcome(t))?;
    writeln!(o, "Origin:     {}", t.origin)?;
    if let Some(n) = &t.node {
        writeln!(o, "Node:       {n}")?;
    }
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
        if let Some(j) = &s.stream_json {
            print_stream(&mut o, j)?;
        }
    }
    writeln!(o, "Events:")?;
    for e in &d.events {
        writeln!(o, "  {}  {}", e.at.to_rfc3339(), e.message)?;
    }
    Ok(())
}

/// Lines of a stream-json run's result shown by `task show` (all of it is in `-o json`).
const RESULT_LINES: usize = 20;

/// What a stream-json run reported: the counts, the tools and the start of the result.
fn print_stream(o: &mut impl Write, j: &StreamSummary) -> anyhow::Result<()> {
    let mut counts = format!("{} turns", j.turns);
    if let (Some(i), Some(out)) = (j.input_tokens, j.output_tokens) {
        counts.push_str(&format!(", {i} tokens in, {out} out"));
    }
    if let Some(c) = j.cost_usd {
        counts.push_str(&format!(", ${c:.4}"));
    }
    writeln!(o, "    usage:   {counts}")?;
    if let Some(id) = &j.session_id {
        writeln!(o, "    session: {id}")?;
    }
    if !j.tools.is_empty() {
        let tools: Vec<String> = j
            .tools
            .iter()
            .map(|t| format!("{} ×{}", t.name, t.count))
            .collect();
        writeln!(o, "    tools:   {}", tools.join(", "))?;
    }
    if j.bad_lines > 0 {
        writeln!(
            o,
            "    ignored: {} lines that are not stream-json",
            j.bad_lines
        )?;
    }
    let Some(result) = &j.result else {
        return Ok(());
    };
    // Printable text only: the agent wrote it, and a terminal would obey its escapes.
    let clean: String = result
        .chars()
        .map(|c| match c {
            '\n' | '\t' => c,
            c if c.is_control() => '\u{FFFD}',
            c => c,
        })
        .collect();
    let lines: Vec<&str> = clean.trim_end().lines().collect();
    writeln!(o, "    result:")?;
    for l in lines.iter().take(RESULT_LINES) {
        writeln!(o, "      {}", truncate(l, 200))?;
    }
    if lines.len() > RESULT_LINES || j.result_truncated {
        writeln!(o, "      … (the whole result: task show -o json)")?;
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
