//! The `command` rotation provider: the user's own programs for any platform. `settings.set`
//! puts the new value at the platform, an optional `settings.test` asks it for a delivery; each
//! runs without a shell through `process::run_program`, with the value on stdin, a cleared
//! environment (the agents' base environment plus `ROTATION_STORE`, `ROTATION_KEY` and
//! `ORCHESTRATOR_SOCKET`) and a timeout, in `settings.workingDir`: the directory of the manifest
//! that declared the store, which `apply` records (`http::control::resources`), so that
//! `set: ./set-secret.sh` finds the script beside the manifest wherever the CLI and the daemon
//! run. A program that never started (not found, not executable, no such directory) cannot have
//! set anything, which the rollback relies on. A failing program's stderr is quoted with every
//! secret redacted: it may echo what it was given.
//!
//! A test program's delivery proves the new value only if it reaches the webhook listener from
//! outside the daemon: `orchestrator webhook test` (and any dry run) is recorded as a test and
//! never satisfies the test stage.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::watch;

use crate::domain::manifest::{RotationSpec, SecretValue};
use crate::domain::redact::Redactor;
use crate::domain::render::{RenderError, split_command};
use crate::domain::snapshot::Snapshot;
use crate::process::{self, ProgramError};

/// How long a provider's set or test program may run.
const PROGRAM_TIMEOUT: Duration = Duration::from_secs(120);

/// Why the command provider cannot be used, or why its program failed.
#[derive(Debug, Error)]
pub enum CommandError {
    #[error("settings.{name}: {source}")]
    Setting {
        name: &'static str,
        source: RenderError,
    },
    #[error("command rotation needs settings.set (the program that sets the value)")]
    NoSet,
    #[error("the provider command is empty")]
    Empty,
    #[error("the daemon's working directory is unreadable: {0}")]
    Cwd(std::io::Error),
    #[error(transparent)]
    Program(#[from] ProgramError),
}

impl CommandError {
    /// Whether the program may have run (and so may have set the value at the platform).
    pub fn maybe_applied(&self) -> bool {
        match self {
            CommandError::Program(e) => !e.never_started(),
            CommandError::Setting { .. }
            | CommandError::NoSet
            | CommandError::Empty
            | CommandError::Cwd(_) => false,
        }
    }
}

/// The programs that set and test a value, and where they run.
pub struct Command {
    set: Vec<String>,
    test: Option<Vec<String>>,
    /// `settings.workingDir`; `None` for a store applied before apply recorded it: the daemon's
    /// working directory, as then.
    dir: Option<PathBuf>,
}

/// What a program run needs from the daemon: its control socket (for the program's own
/// `orchestrator` calls) and the newest snapshot (whose secrets are redacted from its stderr).
pub struct Host<'a> {
    pub socket: &'a Path,
    pub snapshots: &'a watch::Receiver<Arc<Snapshot>>,
}

impl Command {
    /// The provider `spec` describes.
    pub fn from_spec(spec: &RotationSpec) -> Result<Command, CommandError> {
        let split = |name: &'static str| -> Result<Option<Vec<String>>, CommandError> {
            spec.settings
                .get(name)
                .and_then(|v| v.as_str())
                .map(|c| split_command(c).map_err(|source| CommandError::Setting { name, source }))
                .transpose()
        };
        let set = split("set")?.ok_or(CommandError::NoSet)?;
        Ok(Command {
            set,
            test: split("test")?,
            dir: spec
                .settings
                .get(WORKING_DIR)
                .and_then(|v| v.as_str())
                .map(PathBuf::from),
        })
    }

    fn dir(&self) -> Result<PathBuf, CommandError> {
        match &self.dir {
            Some(d) => Ok(d.clone()),
            None => std::env::current_dir().map_err(CommandError::Cwd),
        }
    }

    /// Runs the set program with `value` on stdin.
    pub async fn set(
        &self,
        host: &Host<'_>,
        store: &str,
        key: &str,
        value: &SecretValue,
    ) -> Result<(), CommandError> {
        run(host, &self.set, &self.dir()?, store, key, value).await
    }

    /// Runs the test program, if there is one, with the new value on stdin.
    pub async fn test(
        &self,
        host: &Host<'_>,
        store: &str,
        key: &str,
        new: &SecretValue,
    ) -> Result<(), CommandError> {
        match &self.test {
            Some(test) => run(host, test, &self.dir()?, store, key, new).await,
            None => Ok(()),
        }
    }
}

/// The setting that holds the programs' working directory (absolute once applied).
pub const WORKING_DIR: &str = "workingDir";

/// Runs a provider program without a shell, in `dir`: cleared environment, the value on stdin.
async fn run(
    host: &Host<'_>,
    argv: &[String],
    dir: &Path,
    store: &str,
    key: &str,
    value: &SecretValue,
) -> Result<(), CommandError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(CommandError::Empty);
    };
    let mut env: Vec<(OsString, OsString)> = vec![
        ("ROTATION_STORE".into(), store.into()),
        ("ROTATION_KEY".into(), key.into()),
        ("ORCHESTRATOR_SOCKET".into(), host.socket.into()),
    ];
    // The same base environment agents get: PATH (with the daemon's own directory first, so
    // `orchestrator` is found), HOME, USER, LANG, TERM.
    env.extend(
        process::base_env()
            .into_iter()
            .map(|(name, value)| (name.into(), value.into())),
    );
    let spec = process::ProgramSpec {
        program,
        args,
        env,
        stdin: Some(value.expose().as_bytes()),
        timeout: PROGRAM_TIMEOUT,
        cwd: dir,
    };
    // The program may echo what it was given: redact every secret before quoting it.
    let redactor = || {
        let snapshot = host.snapshots.borrow().clone();
        let secrets = snapshot
            .secret_values()
            .map(SecretValue::expose)
            .chain(std::iter::once(value.expose()));
        Redactor::new(secrets)
    };
    Ok(process::run_program(spec, redactor).await?)
}
