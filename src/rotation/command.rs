//! The `command` rotation provider: the user's own programs for any platform. `settings.set`
//! puts the new value at the platform, an optional `settings.test` asks it for a delivery; each
//! runs without a shell through `process::run_program`, with the value on stdin, a cleared
//! environment (the agents' base environment plus `ROTATION_STORE`, `ROTATION_KEY` and
//! `ORCHESTRATOR_SOCKET`) and a timeout. A failing program's stderr is quoted with every secret
//! redacted: it may echo what it was given.

use std::ffi::OsString;
use std::path::Path;
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
    #[error(transparent)]
    Program(#[from] ProgramError),
}

/// The programs that set and test a value.
pub struct Command {
    set: Vec<String>,
    test: Option<Vec<String>>,
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
        })
    }

    /// Runs the set program with `value` on stdin.
    pub async fn set(
        &self,
        host: &Host<'_>,
        store: &str,
        key: &str,
        value: &SecretValue,
    ) -> Result<(), CommandError> {
        run(host, &self.set, store, key, value).await
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
            Some(test) => run(host, test, store, key, new).await,
            None => Ok(()),
        }
    }
}

/// Runs a provider program without a shell: cleared environment, the value on stdin.
async fn run(
    host: &Host<'_>,
    argv: &[String],
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
