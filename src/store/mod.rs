//! The durable store, behind one trait per concern: [`ResourceStore`] (desired state, per-key
//! secret metadata, change history), [`TaskStore`] (tasks, step runs, task events),
//! [`TriggerStore`] (cron trigger state and fire history), [`RotationStore`] (staged secret
//! rotations), [`VerificationStore`] (the "last verified at" and "last tested at" stamps of
//! webhook keys), [`ReplayStore`] (the webhook delivery ids that created tasks, for the
//! replay window), [`DeliveryStore`] (the webhook delivery log) and [`ClusterStore`] (the
//! nodes' heartbeats and the leader lease).
//!
//! This module is the seam between the daemon and a storage backend: the traits and the records
//! they take and give are backend-neutral, the sealing of secret values ([`crypto`]) is shared,
//! and every SQL statement of the crate lives in a backend module ([`sqlite`], the embedded
//! default, or [`postgres`]); what both decode alike is in `rows.rs` and `task_rows.rs`, and
//! the tests both must pass are `conformance.rs` and `task_cases.rs`. Everything above `store`
//! holds `Arc<dyn …Store>`; the daemon picks the backend once ([`open`] → [`Stores`]).
//!
//! The traits are blocking, like the SQLite calls behind them, and each keeps the threading its
//! callers had: the task, trigger, rotation and verification stores run their work in
//! `block_in_place` on a multi-thread runtime themselves; the resource store leaves that to its
//! single writer, the SecretStoreActor, which wraps its commits.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

use thiserror::Error;

use crate::layout::KEY_FILE;

pub mod cluster;
#[cfg(test)]
mod conformance;
pub mod crypto;
pub mod deliveries;
pub mod feed;
pub mod postgres;
pub mod replay;
pub mod resources;
pub mod rotations;
mod rows;
pub mod sqlite;
#[cfg(test)]
mod task_cases;
mod task_rows;
pub mod tasks;
pub mod triggers;
pub mod verifications;

pub use cluster::{Beat, ClusterStore, Fence, Joined, Lease, NodeRecord};
pub use deliveries::{DELIVERIES_KEPT, DeliveryRecord, DeliveryStore, NewDelivery, PAYLOADS_KEPT};
pub use feed::{Feed, FeedReceiver};
pub use replay::{ReplayStore, SeenDelivery};
pub use resources::ResourceStore;
pub use rotations::{FinishedRefresh, NewRotation, REFRESHES_KEPT, RotationStore};
pub use tasks::{
    AgeScan, Deleted, Interrupted, NewTask, Output, Queued, RunEnd, StorageInfo, Swept, TaskRecord,
    TaskStore,
};
pub use triggers::{HISTORY_ROWS, ManualFires, SaveRow, TriggerStore};
pub use verifications::{Proof, Verification, VerificationStore};

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("PostgreSQL: {0}")]
    Postgres(String),
    #[error(
        "the store URL is not a PostgreSQL connection string ({detail}): use postgres://USER@HOST:PORT/DATABASE"
    )]
    BadUrl { detail: String },
    #[error(
        "secret key file {path} (fingerprint {file}) is not the key this database was sealed with (fingerprint {database}): start every node with the same --secret-key-file"
    )]
    KeyMismatch {
        path: PathBuf,
        file: String,
        database: String,
    },
    #[error("cannot start the store's runtime: {0}")]
    Runtime(io::Error),
    /// The io error is part of the message, not a `source`: shown with `{:#}` it would
    /// otherwise appear twice.
    #[error("{path}: {error}")]
    Io { path: PathBuf, error: io::Error },
    #[error(
        "secret key file {path} is accessible by group or others (mode {mode:o}): run `chmod 600 {path}`"
    )]
    KeyFilePermissions { path: PathBuf, mode: u32 },
    #[error(
        "secret key file {path} does not exist: put the key file every node shares there (mode 0600), or leave out --secret-key-file to use the data dir's secret.key"
    )]
    KeyFileMissing { path: PathBuf },
    #[error("secret key file {path} is {len} bytes, expected 32: restore it from backup")]
    KeyFileLength { path: PathBuf, len: usize },
    #[error(
        "cannot decrypt the values of {resource}: the secret key file does not match this database (restore the original {KEY_FILE})"
    )]
    Decrypt { resource: String },
    #[error("the operating system's random source failed")]
    Random,
    #[error("stored {what} is corrupt: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("cannot start the task writer thread: {0}")]
    Thread(io::Error),
    #[error("the task writer stopped; restart the daemon")]
    WriterStopped,
    /// A task creation answering a webhook delivery whose id already created a task within its
    /// replay window: nothing was written.
    #[error("this delivery was already received: it created task {task}")]
    DuplicateDelivery { task: u64 },
    /// A cron fire made under a lease this node no longer holds: nothing was written.
    #[error(
        "this node no longer holds the leader lease, so it created no task for this fire: another node runs the cron triggers now"
    )]
    Fenced,
    /// Another node committed desired state after this node's snapshot was loaded.
    #[error(
        "another node changed the desired state meanwhile (the store is at revision {stored}); nothing was written"
    )]
    StaleRevision { stored: u64 },
    /// A cron fire of an instant that already has its task: nothing was written.
    #[error("this scheduled instant was already fired: it created task {task}")]
    AlreadyFired { task: u64 },
    #[error(
        "database schema version {found} is newer than this binary supports ({supported}): upgrade orchestrator"
    )]
    TooNew { found: i64, supported: i64 },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which backend holds the daemon's state (`--store`).
#[derive(Clone, PartialEq, Eq)]
pub enum Backend {
    /// The embedded default: `state.db` in the data dir.
    Sqlite,
    /// A PostgreSQL database shared by every node (the URL may hold a password: it is never
    /// shown, see [`Backend::describe`]).
    Postgres(String),
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

/// A `--store` value that names no backend.
#[derive(Debug, Error)]
#[error(
    "unknown store {0:?}: use `sqlite` (the default) or a postgres://USER@HOST:PORT/DATABASE URL"
)]
pub struct UnknownBackend(String);

impl std::str::FromStr for Backend {
    type Err = UnknownBackend;

    fn from_str(s: &str) -> std::result::Result<Backend, UnknownBackend> {
        let s = s.trim();
        if s.is_empty() || s == "sqlite" {
            Ok(Backend::Sqlite)
        } else if postgres::is_postgres_url(s) {
            Ok(Backend::Postgres(s.to_owned()))
        } else {
            // Never echo what might be a mistyped URL with a password in it.
            let shown = s.split_once("://").map_or(s, |(scheme, _)| scheme);
            Err(UnknownBackend(shown.to_owned()))
        }
    }
}

impl Backend {
    /// How logs and the ready line name the backend: `sqlite`, or `postgres` with the host,
    /// port and database, never the user's password.
    pub fn describe(&self) -> String {
        match self {
            Backend::Sqlite => "sqlite".to_owned(),
            Backend::Postgres(url) => postgres::describe(url),
        }
    }
}

/// Opens every store of `backend`. The secret key is `key_file` when given (it must exist),
/// otherwise `secret.key` in the data dir, created on first start.
pub fn open(
    backend: &Backend,
    data_dir: &std::path::Path,
    key_file: Option<&std::path::Path>,
) -> Result<Stores> {
    let (key, key_path) = match key_file {
        Some(path) => (crypto::SecretKey::load(path)?, path.to_owned()),
        None => (
            crypto::SecretKey::load_or_create(data_dir)?,
            data_dir.join(KEY_FILE),
        ),
    };
    match backend {
        Backend::Sqlite => sqlite::open_with_key(data_dir, key),
        Backend::Postgres(url) => postgres::open(url, key, &key_path),
    }
}

/// One backend's stores, opened together; the daemon hands each to the actors and handlers that
/// use it.
#[derive(Clone)]
pub struct Stores {
    pub resources: Arc<dyn ResourceStore>,
    pub tasks: Arc<dyn TaskStore>,
    pub triggers: Arc<dyn TriggerStore>,
    pub rotations: Arc<dyn RotationStore>,
    pub verifications: Arc<dyn VerificationStore>,
    pub replay: Arc<dyn ReplayStore>,
    pub deliveries: Arc<dyn DeliveryStore>,
    pub cluster: Arc<dyn ClusterStore>,
    /// The revision feed of a store several nodes share (`None` on SQLite).
    pub feed: Option<FeedReceiver>,
}
