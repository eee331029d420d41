//! `apply -f PATH…`: reads manifests from files, directories (their `*.yaml`/`*.yml`, in name
//! order) or stdin, and sends their text to the daemon, which parses, validates and commits them.
//! `delete -f` reads its manifests the same way ([`read_sources`]).

use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{Context, anyhow, bail};

use super::Output;
use super::client::Client;
use super::table::print_changes;
use crate::api::{ApplyRequest, ChangeResponse, Source};

pub(super) async fn run(
    client: &Client,
    out: Output,
    project: Option<String>,
    files: &[PathBuf],
    dry_run: bool,
) -> anyhow::Result<()> {
    let sources = read_sources(files)?;
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

/// Reads every manifest named on the command line.
pub(super) fn read_sources(paths: &[PathBuf]) -> anyhow::Result<Vec<Source>> {
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
