//! `get KIND [NAME] [-w]`: one resource or a kind's list, as a table with kind-specific columns
//! read from the typed spec and, for triggers, their live status; or `-o yaml|json`; with `-w`,
//! then a row per change (`watch.rs`). Also how a user names a resource on the command line
//! (`trigger weekly`, `tr/weekly`; a misspelt kind gets a "did you mean"), which `describe` and
//! `delete` share.

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::client::{Client, enc, project_query};
use super::table::{age, print_structured, truncate, write_rows};
use super::watch::{self, Shape};
use super::{Output, UsageError};
use crate::api::{FireTime, ResourceList, ResourceView};
use crate::domain::diagnostic::did_you_mean;
use crate::domain::manifest::{Kind, LoopMode, RotationProvider, Spec};

/// What `get` was asked for.
pub(super) struct GetArgs<'a> {
    /// `KIND` or `KIND/NAME`, as typed.
    pub kind: &'a str,
    pub name: Option<String>,
    pub all_projects: bool,
    pub watch: bool,
}

pub(super) async fn run(
    client: &Client,
    out: Output,
    project: Option<String>,
    args: GetArgs<'_>,
) -> anyhow::Result<()> {
    let (kind, name) = kind_and_name(args.kind, args.name)?;
    let all_projects = args.all_projects;
    let mut query = project_query(project);
    query.push(("all", all_projects.to_string()));
    if let Some(name) = &name {
        // One resource: a name that is not there is an error (with a close name suggested),
        // also before a watch of it.
        let view: ResourceView = client
            .get(
                &format!("/v1/resources/{}/{}", kind.lower(), enc(name)),
                &query,
            )
            .await?;
        if !args.watch {
            return match out {
                Output::Table => print_table(kind, std::slice::from_ref(&view), all_projects),
                _ => print_structured(out, &view),
            };
        }
    }
    if args.watch {
        return watch(client, out, kind, name, &query, all_projects).await;
    }
    let list: ResourceList = client
        .get(&format!("/v1/resources/{}", kind.lower()), &query)
        .await?;
    match out {
        Output::Table => print_table(kind, &list.items, all_projects),
        _ => print_structured(out, &list),
    }
}

/// `get -w`: the resources of `kind` (or the one named), then a row per change.
async fn watch(
    client: &Client,
    out: Output,
    kind: Kind,
    name: Option<String>,
    query: &[(&'static str, String)],
    all_projects: bool,
) -> anyhow::Result<()> {
    let path = format!("/v1/resources/{}", kind.lower());
    let row = move |v: &ResourceView| row(v, all_projects, Utc::now());
    let key = |v: &ResourceView| format!("{}/{}", v.metadata.project, v.metadata.name);
    let gone = move |v: &ResourceView| {
        let project = if all_projects {
            format!(" (project {})", v.metadata.project)
        } else {
            String::new()
        };
        format!("{}/{} deleted{project}", kind.lower(), v.metadata.name)
    };
    let shape = Shape {
        header: header(kind, all_projects),
        row: &row,
        key: &key,
        gone: Some(&gone),
        empty: format!("no {} found (watching)", kind.lower()),
    };
    watch::watch(out, shape, || async {
        let list: ResourceList = client.get(&path, query).await?;
        Ok(list
            .items
            .into_iter()
            .filter(|v| name.as_ref().is_none_or(|n| *n == v.metadata.name))
            .collect())
    })
    .await
}

/// Reads `KIND NAME`, `KIND/NAME` or a bare `KIND` as typed on the command line. An unknown
/// kind is a [`UsageError`] that suggests the closest spelling (`trigers`: `triggers`).
pub(super) fn kind_and_name(
    kind: &str,
    name: Option<String>,
) -> anyhow::Result<(Kind, Option<String>)> {
    let (kind_str, inline) = match kind.split_once('/') {
        Some((k, n)) => (k, Some(n.to_owned())),
        None => (kind, None),
    };
    let Some(k) = Kind::from_cli(kind_str) else {
        let names = Kind::cli_names();
        let hint = did_you_mean(kind_str, names.iter().copied())
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return Err(UsageError(format!(
            "unknown kind {kind_str:?}{hint}: use one of {} (plural and short forms work too)",
            Kind::ALL.map(Kind::lower).join(", ")
        ))
        .into());
    };
    match (inline, name) {
        (Some(_), Some(_)) => Err(UsageError(format!(
            "give the name once: either {kind} or a separate NAME"
        ))
        .into()),
        (Some(n), None) if n.is_empty() => {
            Err(UsageError(format!("{kind:?} has an empty name after the slash")).into())
        }
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

/// The table's header for `kind`.
fn header(kind: Kind, with_project: bool) -> Vec<String> {
    let mut header: Vec<String> = vec!["NAME".into()];
    if with_project {
        header.push("PROJECT".into());
    }
    header.extend(columns(kind).iter().map(|c| (*c).to_owned()));
    header.push("GEN".into());
    header.push("AGE".into());
    header
}

/// One resource's row under [`header`].
fn row(v: &ResourceView, with_project: bool, now: DateTime<Utc>) -> anyhow::Result<Vec<String>> {
    let mut row = vec![v.metadata.name.clone()];
    if with_project {
        row.push(v.metadata.project.clone());
    }
    row.extend(cells(v)?);
    row.push(v.metadata.generation.to_string());
    row.push(age(v.metadata.created_at, now));
    Ok(row)
}

fn print_table(kind: Kind, items: &[ResourceView], with_project: bool) -> anyhow::Result<()> {
    let mut stdout = std::io::stdout().lock();
    if items.is_empty() {
        use std::io::Write;
        writeln!(stdout, "no {} found", kind.lower())?;
        return Ok(());
    }
    let now = Utc::now();
    let mut rows = vec![header(kind, with_project)];
    for v in items {
        rows.push(row(v, with_project, now)?);
    }
    write_rows(&mut stdout, &rows)?;
    Ok(())
}
