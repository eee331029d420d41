//! `actors [inspect|trace|kill]`: the daemon's live supervision tree drawn as a table, one
//! actor's self-reported state and message statistics, its recent messages (`--follow` streams
//! them as NDJSON, shown as lines), and a deliberate failure that its supervisor restarts.

use std::io::Write;

use clap::Subcommand;

use super::Output;
use super::client::Client;
use super::table::{print_structured, write_rows};
use crate::api::{ActorInspect, ActorNode, ActorTrace, KillResponse, TraceEntry, TraceOutcome};

/// The long help of `actors`: the actors' names, then examples.
pub(super) const NAMES_HELP: &str = "Actor names (as `actors` lists them and NAME takes them):
  root                         the root supervisor (restarts the actors below; cannot be killed)
  secret-store                 SecretStoreActor: the single writer of desired state
  tasks                        TaskSupervisor: creates, queues and resumes tasks
  workflow/<task-id>           WorkflowActor: one per running task (workflow/42)
  agent/<task-id>/<step>/<n>   AgentActor: one per agent subprocess; <n> counts the task's
                               agent runs (agent/42/build/1)
  triggers                     TriggerSupervisor: one TriggerActor per cron trigger
  trigger/<project>/<name>     TriggerActor (trigger/default/nightly); a passivated trigger has
                               none until shortly before its fire
  retention                    RetentionActor: removes finished tasks and their run logs
  tokens                       TokenRefreshActor: refreshes oauth2 and github-app tokens
  webhook                      WebhookActor: the webhook server

Examples:
  orchestrator actors                                 # the live tree: status, restarts, messages
  orchestrator actors trace trigger/default/nightly   # its recent messages";

#[derive(Debug, Subcommand)]
pub enum ActorsCommand {
    /// The state summary an actor reports about itself, with its message statistics.
    #[command(after_long_help = "Examples:
  orchestrator actors inspect tasks                    # running and queued tasks, restarts
  orchestrator actors inspect trigger/default/nightly  # next fire, last fire, counts")]
    Inspect {
        /// The actor's name (orchestrator actors --help lists the forms).
        name: String,
    },
    /// An actor's recent messages (kind, duration, outcome); --follow streams new ones.
    #[command(after_long_help = "Examples:
  orchestrator actors trace secret-store -n 5
  orchestrator actors trace tasks --follow -o json    # one JSON object per message")]
    Trace {
        /// The actor's name (orchestrator actors --help lists the forms).
        name: String,
        /// Keep streaming its messages as it handles them.
        #[arg(short, long)]
        follow: bool,
        /// How many recent messages.
        #[arg(short = 'n', long, default_value_t = 20)]
        count: usize,
    },
    /// Fail an actor on purpose, so that its supervisor restarts it (not the root).
    #[command(after_long_help = "Examples:
  orchestrator actors kill trigger/default/nightly   # then: orchestrator actors (restarts 1)")]
    Kill {
        /// The actor's name (orchestrator actors --help lists the forms).
        name: String,
    },
}

pub(super) async fn run(
    client: &Client,
    out: Output,
    command: Option<ActorsCommand>,
) -> anyhow::Result<()> {
    match command {
        None => {
            let tree: ActorNode = client.get("/v1/actors", &[]).await?;
            match out {
                Output::Table => print_actor_tree(&tree),
                _ => print_structured(out, &tree),
            }
        }
        Some(ActorsCommand::Inspect { name }) => {
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
        Some(ActorsCommand::Trace {
            name,
            follow,
            count,
        }) => {
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
        Some(ActorsCommand::Kill { name }) => {
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
    }
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
