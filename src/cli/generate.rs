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
    render(man_tree(), "1", out)?;
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
            let daemon = crate::daemon_flags::Flags::command();
            written.push(write_page(daemon, "8", dir)?);
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
    out.push(write_page(cmd, "1", dir)?);
    Ok(())
}

/// Writes the page of `cmd` as `DIR/NAME.SECTION` and returns its path.
fn write_page(cmd: clap::Command, section: &str, dir: &Path) -> std::io::Result<PathBuf> {
    let name = clap_mangen::Man::new(cmd.clone())
        .section(section)
        .get_filename();
    let path = dir.join(name);
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
    render(cmd, section, &mut file)?;
    file.flush()?;
    Ok(path)
}

/// clap_mangen's page with an ENVIRONMENT section after the options: clap_mangen leaves out
/// the variables an option can also be set by (`ORCHESTRATOR_SOCKET`, `ORCHESTRATOR_STORE`).
fn render(mut cmd: clap::Command, section: &str, w: &mut dyn Write) -> std::io::Result<()> {
    cmd.build();
    let man = clap_mangen::Man::new(cmd.clone()).section(section);
    let mut page = Vec::new();
    man.render_title(&mut page)?;
    // Each section clap_mangen renders on its own repeats the title's preamble (the `Aq`
    // string); it is kept once.
    let mut part = |render: &dyn Fn(&mut Vec<u8>) -> std::io::Result<()>| {
        let mut buf = Vec::new();
        render(&mut buf)?;
        for line in String::from_utf8_lossy(&buf).lines() {
            if !line.starts_with(".ie \\n(.g .ds Aq") && !line.starts_with(".el .ds Aq") {
                page.extend_from_slice(line.as_bytes());
                page.push(b'\n');
            }
        }
        Ok::<(), std::io::Error>(())
    };
    part(&|b| man.render_name_section(b))?;
    part(&|b| man.render_synopsis_section(b))?;
    part(&|b| man.render_description_section(b))?;
    let visible: Vec<&clap::Arg> = cmd.get_arguments().filter(|a| !a.is_hide_set()).collect();
    if !visible.is_empty() {
        part(&|b| man.render_options_section(b))?;
    }
    let env: Vec<(String, String)> = visible
        .iter()
        .filter_map(|a| {
            let var = a.get_env()?.to_string_lossy().into_owned();
            let flag = a
                .get_long()
                .map_or_else(|| a.get_id().to_string(), |l| format!("--{l}"));
            Some((var, flag))
        })
        .collect();
    if !env.is_empty() {
        part(&|b| {
            writeln!(b, ".SH ENVIRONMENT")?;
            for (var, flag) in &env {
                writeln!(b, ".TP\n\\fB{}\\fR", roff(var))?;
                writeln!(
                    b,
                    "The value of \\fB{}\\fR when the option is not given.",
                    roff(flag)
                )?;
            }
            Ok(())
        })?;
    }
    if cmd.get_subcommands().any(|s| !s.is_hide_set()) {
        part(&|b| man.render_subcommands_section(b))?;
    }
    if cmd.get_after_long_help().is_some() || cmd.get_after_help().is_some() {
        part(&|b| man.render_extra_section(b))?;
    }
    if cmd.get_version().is_some() {
        part(&|b| man.render_version_section(b))?;
    }
    w.write_all(&page)
}

/// `text` as roff: hyphens as `\-` (so that they stay hyphens), backslashes escaped.
fn roff(text: &str) -> String {
    text.replace('\\', "\\e").replace('-', "\\-")
}
