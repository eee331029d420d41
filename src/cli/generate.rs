//! What the CLI writes for the system it is installed on, without a daemon: shell completions
//! (`orchestrator completions bash|zsh|fish`, clap_complete) and man pages (`orchestrator man`,
//! clap_mangen): `orchestrator(1)` with one page per subcommand, and `orchestratord(8)` from the
//! daemon's own flags (`daemon_flags`, plain clap, so the CLI links nothing of the daemon).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{CommandFactory, ValueEnum};

/// The shells `orchestrator completions` writes a script for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

/// Writes the completion script for `shell` to `out`. The tree is the raw clap tree, where the
/// global options are copied into every subcommand, so that they complete anywhere on the line
/// (the help's tree hides those copies).
pub fn completions(shell: Shell, out: &mut dyn Write) -> anyhow::Result<()> {
    let mut cmd = super::Cli::command();
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut cmd, "orchestrator", out);
    out.flush()?;
    Ok(())
}

/// `orchestrator(1)` to `out`: the commands and the global options, as `orchestrator --help`.
pub fn man_page(out: &mut dyn Write) -> anyhow::Result<()> {
    clap_mangen::Man::new(man_tree()).render(out)?;
    out.flush()?;
    Ok(())
}

/// Writes every page into `dir` (created if missing): `orchestrator.1`, one
/// `orchestrator-COMMAND[-SUBCOMMAND].1` per subcommand (each as its `--help` shows it, examples
/// included), and `orchestratord.8`. Returns the files written, in name order.
pub fn man_pages(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the man page directory {}", dir.display()))?;
    let mut written = Vec::new();
    let mut tree = man_tree();
    // Gives each subcommand its page name (`orchestrator-task-create`).
    tree.build();
    write_tree(tree, dir, &mut written)
        .and_then(|()| {
            let daemon = clap_mangen::Man::new(crate::daemon_flags::Flags::command()).section("8");
            written.push(daemon.generate_to(dir)?);
            Ok(())
        })
        .with_context(|| format!("cannot write man pages to {}", dir.display()))?;
    written.sort();
    Ok(written)
}

/// The tree the pages describe: the help's (global options once, at the top), without the
/// `help` subcommand, which would otherwise get a page of its own.
fn man_tree() -> clap::Command {
    super::command().disable_help_subcommand(true)
}

/// Writes the page of `cmd` and of each of its visible subcommands.
fn write_tree(cmd: clap::Command, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for sc in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_tree(sc.clone(), dir, out)?;
    }
    out.push(clap_mangen::Man::new(cmd).generate_to(dir)?);
    Ok(())
}
