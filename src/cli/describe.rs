//! `describe KIND NAME`: one resource in detail — metadata, spec and status as YAML, a
//! SecretStore's key metadata (who set each value), pending keys and rotations, where a cron trigger is armed and its recent fires,
//! what references it, and its change history.

use std::io::Write;

use anyhow::anyhow;
use chrono::Utc;

use super::Output;
use super::client::{Client, enc, project_query};
use super::get::kind_and_name;
use super::table::{age, print_structured, write_rows};
use crate::api::{Armed, Describe, HistoryEntry};

pub(super) async fn run(
    client: &Client,
    out: Output,
    project: Option<String>,
    kind: &str,
    name: Option<String>,
) -> anyhow::Result<()> {
    let (kind, name) = kind_and_name(kind, name)?;
    let name = name.ok_or_else(|| {
        anyhow!(
            "describe needs a NAME: orchestrator describe {} NAME",
            kind.lower()
        )
    })?;
    let path = format!("/v1/resources/{}/{}/describe", kind.lower(), enc(&name));
    let d: Describe = client.get(&path, &project_query(project)).await?;
    match out {
        Output::Table => print_describe(&d),
        _ => print_structured(out, &d),
    }
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
            "LAST TESTED".into(),
        ]];
        for k in &d.keys {
            rows.push(vec![
                format!("  {}", k.key),
                k.fingerprint.clone(),
                k.length.to_string(),
                match k.set_by {
                    Some(by) => format!("{} ({})", k.updated_at.to_rfc3339(), by.as_str()),
                    None => k.updated_at.to_rfc3339(),
                },
                match (&k.last_verified_at, &k.last_verified_trigger) {
                    (Some(t), Some(tr)) => format!("{} (trigger {tr})", t.to_rfc3339()),
                    (Some(t), None) => t.to_rfc3339(),
                    _ => "never".into(),
                },
                match (&k.last_tested_at, &k.last_tested_trigger) {
                    (Some(t), tr) => format!(
                        "{} ({}{})",
                        t.to_rfc3339(),
                        k.last_tested_by.as_deref().unwrap_or("test"),
                        tr.as_deref()
                            .map(|tr| format!(", trigger {tr}"))
                            .unwrap_or_default()
                    ),
                    _ => "never".into(),
                },
            ]);
        }
        write_rows(&mut o, &rows)?;
    }
    if let Some(t) = &d.token {
        print_token(&mut o, t, now)?;
    }
    if !d.pending.is_empty() {
        writeln!(
            o,
            "Pending keys (declared `{{keep: true}}`, no value yet; they verify nothing):"
        )?;
        let project = match r.metadata.project.as_str() {
            crate::domain::manifest::DEFAULT_PROJECT => String::new(),
            p => format!("-p {p} "),
        };
        for k in &d.pending {
            writeln!(
                o,
                "  {k}   set it: orchestrator {project}secret set {} {k} < FILE",
                r.metadata.name
            )?;
        }
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
        writeln!(
            o,
            "  {}  gen {}  {}{}",
            h.at.to_rfc3339(),
            h.generation,
            h.action.as_str(),
            history_detail(h)
        )?;
    }
    Ok(())
}

/// ` keys: a=sha256:… b=sha256:… added: b` for a SecretStore's row; nothing for other rows.
fn history_detail(h: &HistoryEntry) -> String {
    let Some(c) = h.key_changes() else {
        return String::new();
    };
    let list = |k: &str, names: &[String]| {
        if names.is_empty() {
            String::new()
        } else {
            format!(" {k}: {}", names.join(","))
        }
    };
    let fps = if c.keys.is_empty() {
        "none with a value".to_owned()
    } else {
        c.keys
            .iter()
            .map(|(k, fp)| format!("{k}={fp}"))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let by =
        c.by.map(|b| format!(" by {}", b.as_str()))
            .unwrap_or_default();
    format!(
        "{by} keys: {fps}{}{}{}",
        list("added", &c.added),
        list("changed", &c.changed),
        list("removed", &c.removed)
    )
}

/// A refreshed token: its state, when it expires and when the daemon refreshes it.
fn print_token(
    o: &mut impl Write,
    t: &crate::api::TokenStatus,
    now: chrono::DateTime<Utc>,
) -> anyhow::Result<()> {
    let when = |at: chrono::DateTime<Utc>| {
        if at > now {
            format!("{} (in {})", at.to_rfc3339(), age(now, at))
        } else {
            format!("{} ({} ago)", at.to_rfc3339(), age(at, now))
        }
    };
    writeln!(
        o,
        "Token:       {} via {} ({})",
        t.key,
        t.provider,
        t.state.as_str()
    )?;
    let expires = match (t.expires_at, t.state) {
        (Some(at), _) => when(at),
        (None, crate::api::TokenState::OnDemand) => "never (the platform gave no expiry)".into(),
        (None, _) => "unknown (refreshed as soon as possible)".into(),
    };
    writeln!(o, "  expires at:   {expires}")?;
    let refreshes = match (t.refreshes_at, t.state) {
        (Some(at), _) => when(at),
        (None, crate::api::TokenState::Refreshing) => "now (a refresh is running)".into(),
        (None, _) => "- (only by `orchestrator secret rotate`)".into(),
    };
    writeln!(o, "  refreshes at: {refreshes}")?;
    if let Some(note) = &t.note {
        writeln!(o, "  {note}")?;
    }
    Ok(())
}
