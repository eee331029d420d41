//! `orchestrator`: the command-line client. Parses the arguments (usage errors exit 2), runs the
//! command, and prints any error as `orchestrator: …` with exit status 1.

use clap::Parser;
use orchestrator::cli::{Cli, run};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orchestrator: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
