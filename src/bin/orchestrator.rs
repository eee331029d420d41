//! `orchestrator`: the command-line client. Parses the arguments (usage errors exit 2), runs the
//! command, and prints any error as `orchestrator: …` with exit status 1 (2 for a usage error the
//! command itself found, such as an unknown kind). A closed stdout (`orchestrator actors | head
//! -1`) ends it quietly, like other Unix tools.

use orchestrator::cli::{exit_status, parse, run};

fn main() -> std::process::ExitCode {
    let cli = parse();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if stdout_closed(&e) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orchestrator: {e:#}");
            std::process::ExitCode::from(exit_status(&e))
        }
    }
}

/// Whether the error is a write to a stdout that the reader closed. Only the outermost error
/// counts: a broken connection to the daemon arrives as the client's own error and is reported.
fn stdout_closed(e: &anyhow::Error) -> bool {
    let pipe = Some(std::io::ErrorKind::BrokenPipe);
    e.downcast_ref::<std::io::Error>().map(std::io::Error::kind) == pipe
        || e.downcast_ref::<serde_json::Error>()
            .and_then(serde_json::Error::io_error_kind)
            == pipe
}
