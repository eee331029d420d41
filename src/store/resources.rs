//! Desired state: the applied resources (secret values sealed, see [`super::crypto`]; beside
//! them what the last apply of each SecretStore declared, as fingerprints), the per-key metadata
//! of every SecretStore (who set each value, and when) and one history row per change. The SecretStoreActor is
//! its single writer; every apply is one transaction ([`ResourceStore::commit`]): resources,
//! key metadata and history, all or nothing.

use chrono::{DateTime, Utc};

use super::Result;
use crate::api::{HistoryEntry, KeyMeta};
use crate::domain::secret_merge::SetBy;
use crate::domain::snapshot::{Change, ResourceKey, Snapshot};

/// The desired-state store. Its calls block; the caller runs them where blocking is allowed.
pub trait ResourceStore: Send + Sync {
    /// Reads the whole desired state, decrypting secret values.
    fn load_snapshot(&self) -> Result<Snapshot>;

    /// The revision of the newest commit (what [`ResourceStore::load_snapshot`] would return
    /// as the snapshot's revision), without reading the resources.
    fn revision(&self) -> Result<u64>;

    /// Commits `changes` as `revision` in one transaction. Unchanged entries are skipped; when
    /// nothing changed nothing is written. SecretStore keys whose value changes are recorded as
    /// set by `by`. On a store several nodes share, the commit is refused with
    /// [`StoreError::StaleRevision`](super::StoreError::StaleRevision) when the stored revision
    /// is not `revision - 1` (another node committed after this snapshot was loaded), and every
    /// node is told of the new revision (see [`Feed`](super::Feed)).
    fn commit(
        &self,
        changes: &[Change],
        revision: u64,
        now: DateTime<Utc>,
        by: SetBy,
    ) -> Result<()>;

    /// The newest `limit` history rows of one resource, newest first.
    fn history(&self, key: &ResourceKey, limit: usize) -> Result<Vec<HistoryEntry>>;

    /// Per-key metadata of one SecretStore, ordered by key.
    fn key_meta(&self, project: &str, store: &str) -> Result<Vec<KeyMeta>>;
}
