//! `get KIND [NAME]`: one resource or a kind's list, as a table with kind-specific columns read
//! from the typed spec and, for triggers, their live status; or `-o yaml|json`. Also how a user
//! names a resource on the command line (`trigger weekly`, `tr/weekly`), which `describe` and
//! `delete` share.

use anyhow::{Context, anyhow, bail};
use chrono::Utc;

use super::Output;
use super::client::{Client, enc, project_query};
use super::table::{age, print_structured, truncate, write_rows};
use crate::api::{FireTime, ResourceList, ResourceView};
use crate::domain::manifest::{Kind, LoopMode, RotationProvider, Spec};

pub(super) async fn run(
    client: &Client,
    out: Output,
    project: Option<String>,
    kind: &str,
    name: Option<String>,
    all_projects: bool,
) -> anyhow::Result<()> {
    let (kind, name) = kind_and_name(kind, name)?;
    let mut query = project_query(project);
    query.push(("all", all_projects.to_string()));
    match name {
        Some(name) => {
            let view: ResourceView = client
                .get(
                    &format!("/v1/resources/{}/{}", kind.lower(), enc(&name)),
                    &query,
                )
                .await?;
            match out {
                Output::Table => print_table(kind, std::slice::from_ref(&view), all_projects),
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

/// Reads `KIND NAME`, `KIND/NAME` or a bare `KIND` as typed on the command line.
pub(super) fn kind_and_name(
    kind: &str,
    name: Option<String>,
) -> anyhow::Result<(Kind, Option<String>)> {
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
            "FIRES",
        ],
    }
}

/// The cells under [`columns`] for one resource, `-` where it has nothing to show.
fn cells(v: &ResourceView) -> anyhow::Result<Vec<String>> {
    let unreadable = || {
        format!(
            "the daemon's answer is not what this CLI expects ({}/{} cannot be read); are the CLI and the daemon the same version?",
            v.kind.lower(),
            v.metadata.name
        )
    };
    let spec = v.typed_spec().with_context(unreadable)?;
    Ok(match spec {
        Spec::Workspace(s) => vec![s.root_path],
        Spec::EnvStore(s) => vec![s.data.len().to_string()],
        Spec::SecretStore(s) => vec![
            s.data.len().to_string(),
            s.rotation
                .map_or("-", |r| match r.provider {
                    RotationProvider::Github => "github",
                    RotationProvider::Command => "command",
                    RotationProvider::Oauth2 => "oauth2",
                    RotationProvider::GithubApp => "github-app",
                    RotationProvider::Manual => "manual",
                })
                .to_owned(),
        ],
        Spec::StepTemplate(s) => vec![truncate(s.description.as_deref().unwrap_or("-"), 50)],
        Spec::Agent(s) => vec![
            s.capabilities.join(","),
            s.enabled.to_string(),
            truncate(&s.command, 40),
        ],
        Spec::Workflow(s) => {
            let mode = match s.loop_.mode {
                LoopMode::Once => "once",
                LoopMode::Fixed => "fixed",
                LoopMode::Infinite => "infinite",
            };
            vec![
                s.steps.len().to_string(),
                match s.loop_.max_cycles {
                    Some(n) => format!("{mode}×{n}"),
                    None => mode.to_owned(),
                },
                s.max_parallel.to_string(),
            ]
        }
        Spec::Trigger(s) => {
            let (ty, what) = match (&s.cron, &s.event) {
                (Some(c), _) => {
                    let tz = c
                        .timezone
                        .as_ref()
                        .map(|t| format!(" ({t})"))
                        .unwrap_or_default();
                    ("cron", format!("{}{tz}", c.schedule))
                }
                (None, event) => {
                    let scheme = event.as_ref().and_then(|e| e.webhook.scheme.as_deref());
                    let shown = match scheme {
                        Some(scheme) if scheme != "-" => scheme,
                        _ => "webhook",
                    };
                    ("webhook", shown.to_owned())
                }
            };
            let status = v.trigger_status().with_context(unreadable)?;
            let fire = |f: Option<&FireTime>| {
                f.map_or("-".into(), |f| {
                    if f.local == f.utc {
                        f.utc.clone()
                    } else {
                        format!("{} ({})", f.local, f.utc)
                    }
                })
            };
            vec![
                ty.into(),
                what,
                s.action.workflow,
                s.suspend.to_string(),
                fire(status.as_ref().and_then(|s| s.last_fire.as_ref())),
                fire(status.as_ref().and_then(|s| s.next_fire.as_ref())),
                status.as_ref().map_or(0, |s| s.fires).to_string(),
            ]
        }
    })
}

fn print_table(kind: Kind, items: &[ResourceView], with_project: bool) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    if items.is_empty() {
        use std::io::Write;
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
        row.extend(cells(v)?);
        row.push(v.metadata.generation.to_string());
        row.push(age(v.metadata.created_at, now));
        rows.push(row);
    }
    write_rows(&mut stdout, &rows)?;
    Ok(())
}
