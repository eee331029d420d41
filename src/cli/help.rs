//! What the derive attributes cannot say in the clap tree: the global options (`--socket`,
//! `-p/--project`, `-o/--output`) are listed once, under "Global options" in `orchestrator
//! --help`, and every other help names them in one closing line instead of repeating them.
//!
//! clap copies a `global = true` argument into every subcommand, where it shows up in each
//! subcommand's help. [`command`] gives every subcommand its own hidden copy of each global
//! argument first: clap then skips the copy (it keeps a subcommand's own argument of that id),
//! the value still reaches the top level wherever on the line it was given, and the help shows
//! it only at the top. `tests/cli.rs` walks this tree: every argument has a help line and every
//! subcommand's long help has examples.

use clap::{Arg, Command, CommandFactory, FromArgMatches};

use super::Cli;

/// The line that closes every subcommand's help.
pub const GLOBAL_NOTE: &str = "Global options: --socket PATH, -p/--project PROJECT, -o/--output table|yaml|json (anywhere on \
     the line; `orchestrator --help` describes them).";

/// The CLI's clap tree, as `orchestrator` parses it and shows its help.
pub fn command() -> Command {
    let root = Cli::command();
    let globals: Vec<Arg> = root
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    root.mut_subcommands(|sc| finish(sc, &globals))
}

/// Hides the global arguments in `cmd` and its subcommands and closes their help with
/// [`GLOBAL_NOTE`] (after the examples, in the long help).
fn finish(mut cmd: Command, globals: &[Arg]) -> Command {
    for g in globals {
        cmd = cmd.arg(g.clone().hide(true));
    }
    let long = match cmd.get_after_long_help() {
        Some(examples) => format!("{examples}\n\n{GLOBAL_NOTE}"),
        None => GLOBAL_NOTE.to_owned(),
    };
    let short = format!("{GLOBAL_NOTE}\n--help adds examples.");
    cmd = cmd.after_help(short).after_long_help(long);
    cmd.mut_subcommands(|sc| finish(sc, globals))
}

/// Parses the process's arguments; a usage error (or `--help`, `--version`) ends the process
/// here, usage errors with exit status 2.
pub fn parse() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}
