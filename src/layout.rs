//! The data dir's layout: the names of the files the daemon keeps there and the default place of
//! the dir itself. The daemon creates them, the CLI finds the socket through them; both read the
//! names from here, so neither imports the other.
//!
//! ```text
//! ~/.orchestratord/        0700, or --data-dir / ORCHESTRATOR_DATA_DIR
//!   orchestrator.sock      the control socket (0600), unless --socket puts it elsewhere
//!   orchestratord.lock     held by the running daemon: one daemon per data dir
//!   state.db (+ -wal)      SQLite: resources, tasks, triggers, rotations
//!   secret.key             the key that encrypts secret values at rest (0600)
//!   runs/<task>/           a task's run logs (one per step run), prompt and payload files;
//!                          removed with the task (actors/retention.rs)
//! ```

use std::path::{Path, PathBuf};

/// The control socket's file name inside the data dir (the default `--socket`).
pub const SOCKET_FILE: &str = "orchestrator.sock";
/// The lock file that keeps a second daemon off the data dir.
pub const LOCK_FILE: &str = "orchestratord.lock";
/// The SQLite database.
pub const DB_FILE: &str = "state.db";
/// The key that encrypts secret values at rest.
pub const KEY_FILE: &str = "secret.key";
/// The directory of run logs.
pub const RUNS_DIR: &str = "runs";

/// Why there is no default data dir.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("HOME is not set: pass --data-dir or set ORCHESTRATOR_DATA_DIR")]
    NoHome,
}

/// The default data dir: `~/.orchestratord`.
pub fn default_data_dir() -> Result<PathBuf, LayoutError> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|home| PathBuf::from(home).join(".orchestratord"))
        .ok_or(LayoutError::NoHome)
}

/// The control socket of the daemon whose data dir is `data_dir`.
pub fn socket_in(data_dir: &Path) -> PathBuf {
    data_dir.join(SOCKET_FILE)
}
