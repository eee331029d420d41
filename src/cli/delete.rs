//! `delete KIND NAME` and `delete -f PATH…`: names resources, or reads the manifests that
//! declare them, and asks the daemon to delete them (it refuses while others reference them).

use std::path::PathBuf;

use anyhow::{anyhow, bail};

use super::Output;
use super::apply::read_sources;
use super::client::Client;
use super::get::kind_and_name;
use super::table::print_changes;
use crate::api::{ChangeResponse, DeleteRequest, Target};

pub(super) async fn run(
    client: &Client,
    out: Output,
    project: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    files: &[PathBuf],
    dry_run: bool,
) -> anyhow::Result<()> {
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
        read_sources(files)?
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
