//! The records of staged secret rotations, one per rotation: its stage, the fingerprints of the
//! old and new value (never a value), whether the platform was set, and when each stage ended.
//! The rotation driver (`src/rotation/`) records a stage here before the next begins, and
//! resumes from it after a restart.

use chrono::{DateTime, Utc};

use super::Result;
use crate::api::{RotationRecord, RotationStage};
use crate::domain::rotation::RotationUpdate;

/// A rotation being started (stage `create`).
#[derive(Debug, Clone)]
pub struct NewRotation<'a> {
    pub project: &'a str,
    pub store: &'a str,
    pub key: &'a str,
    pub provider: &'a str,
    pub old_fingerprint: String,
    pub started_at: DateTime<Utc>,
    /// The node that runs it (it holds the rotation's claim from the start).
    pub node: &'a str,
}

/// A token refresh that ended (providers `oauth2`, `github-app`): recorded in one write, done or
/// failed, beside the staged rotations of the same store.
#[derive(Debug, Clone)]
pub struct FinishedRefresh<'a> {
    pub project: &'a str,
    pub store: &'a str,
    pub key: &'a str,
    pub provider: &'a str,
    pub done: bool,
    /// Why it ran and what it did, or why it failed.
    pub reason: String,
    /// The token before (none before the first refresh) and after (none when it failed).
    pub old_fingerprint: Option<String>,
    pub new_fingerprint: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
}

/// How many refresh records of one token are kept (older ones are removed as new ones come).
pub const REFRESHES_KEPT: usize = 100;

/// The rotation records.
pub trait RotationStore: Send + Sync {
    /// Records a finished token refresh, and removes that token's refresh records beyond the
    /// newest [`REFRESHES_KEPT`]; returns the new record's id.
    fn record_refresh(&self, r: &FinishedRefresh<'_>) -> Result<u64>;

    /// Records a new rotation in stage `create`, claimed by `r.node`; returns its id.
    fn create(&self, r: &NewRotation<'_>) -> Result<u64>;

    /// One rotation (an error if there is none with `id`).
    fn get(&self, id: u64) -> Result<RotationRecord>;

    /// The newest `limit` rotations of a store, newest first.
    fn history(&self, project: &str, store: &str, limit: usize) -> Result<Vec<RotationRecord>>;

    /// The rotations not done or failed, oldest first.
    fn unfinished(&self) -> Result<Vec<RotationRecord>>;

    /// Moves rotation `id` to `stage` at `now`, with the columns `set` names.
    fn update(
        &self,
        id: u64,
        stage: RotationStage,
        set: &RotationUpdate,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Claims unfinished rotation `id` for `node` (the rotation's row is its lock): granted when
    /// no node holds it, `node` holds it already, or its holder is dead at `now` — its nodes row
    /// stopped, its heartbeat older than its TTL, or gone. `false`: another live node runs it, or
    /// it has ended (or does not exist). Atomic: of two nodes claiming at once, one wins.
    fn claim(&self, id: u64, node: &str, now: DateTime<Utc>) -> Result<bool>;

    /// Whether the platform may hold rotation `id`'s new value; `None` if there is no such
    /// rotation.
    fn platform_set(&self, id: u64) -> Result<Option<bool>>;
}
