//! Desired state on PostgreSQL: [`Resources`] implements [`ResourceStore`] with the columns of
//! SQLite's table (see `store::sqlite::resources`) in PostgreSQL's types. Every apply is one
//! transaction: resources, the per-key secret metadata, one history row per change and the
//! revision, all or nothing. The revision row is locked for the length of the commit, so that
//! two nodes' applies are serialized by the database.

use std::collections::BTreeMap;
use std::sync::Arc;

use chacha20poly1305::XChaCha20Poly1305;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::Row;

use super::Db;
use crate::api::{HistoryEntry, KeyMeta};
use crate::domain::manifest::{Kind, SecretValue, Spec};
use crate::domain::secret_merge::SetBy;
use crate::domain::snapshot::{Change, Outcome, ResourceKey, Snapshot};
use crate::store::crypto::SecretKey;
use crate::store::rows::{EncodedResource, KeyChanges, StoredResource, history_entry};
use crate::store::{ResourceStore, Result, StoreError};

/// The desired-state store on one PostgreSQL database.
pub struct Resources {
    db: Arc<Db>,
    key: SecretKey,
}

impl Resources {
    pub fn new(db: Arc<Db>, key: SecretKey) -> Resources {
        Resources { db, key }
    }
}

fn parse_revision(value: &str) -> Result<u64> {
    value.parse::<u64>().map_err(|e| StoreError::Corrupt {
        what: "revision".into(),
        detail: e.to_string(),
    })
}

const REVISION: &str = "SELECT value FROM meta WHERE key = 'revision'";

impl ResourceStore for Resources {
    fn revision(&self) -> Result<u64> {
        self.db.block(async {
            let c = self.db.client().await?;
            let row = c.query_one(REVISION, &[]).await?;
            parse_revision(row.try_get(0)?)
        })
    }

    fn load_snapshot(&self) -> Result<Snapshot> {
        let rows = self.db.block(async {
            let mut c = self.db.client().await?;
            // One snapshot of the database: the revision and the rows it names.
            let tx = c
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            let revision = parse_revision(tx.query_one(REVISION, &[]).await?.try_get(0)?)?;
            let rows = tx
                .query(
                    "SELECT project, kind, name, generation, metadata, spec, sealed, created_at,
                       updated_at, applied FROM resources",
                    &[],
                )
                .await?;
            tx.commit().await?;
            Ok::<_, StoreError>((revision, rows))
        })?;
        let (revision, rows) = rows;
        let cipher = self.key.cipher();
        let resources = rows
            .iter()
            .map(|r| stored(r)?.decode(&cipher))
            .collect::<Result<Vec<_>>>()?;
        Ok(Snapshot::new(revision, resources))
    }

    fn commit(
        &self,
        changes: &[Change],
        revision: u64,
        now: DateTime<Utc>,
        by: SetBy,
    ) -> Result<()> {
        if changes.iter().all(|c| c.outcome == Outcome::Unchanged) {
            return Ok(());
        }
        let cipher = self.key.cipher();
        self.db.block(async {
            let mut c = self.db.client().await?;
            let tx = c.transaction().await?;
            let stored: String = tx
                .query_one(
                    "SELECT value FROM meta WHERE key = 'revision' FOR UPDATE",
                    &[],
                )
                .await?
                .try_get(0)?;
            let stored: u64 = stored.parse().map_err(|_| StoreError::Corrupt {
                what: "revision".into(),
                detail: format!("{stored:?} is not a number"),
            })?;
            if stored + 1 != revision {
                return Err(StoreError::StaleRevision { stored });
            }
            for change in changes {
                write_change(&tx, &cipher, change, revision, now, by).await?;
            }
            tx.execute(
                "UPDATE meta SET value = $1 WHERE key = 'revision'",
                &[&revision.to_string()],
            )
            .await?;
            // Delivered to every listening node when (and only if) the transaction commits.
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[&super::feed::CHANNEL, &revision.to_string()],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn history(&self, key: &ResourceKey, limit: usize) -> Result<Vec<HistoryEntry>> {
        let rows = self.db.block(async {
            let c = self.db.client().await?;
            Ok::<_, StoreError>(
                c.query(
                    "SELECT at, revision, generation, action, detail FROM history
                     WHERE project = $1 AND kind = $2 AND name = $3 ORDER BY id DESC LIMIT $4",
                    &[&key.project, &key.kind.as_str(), &key.name, &(limit as i64)],
                )
                .await?,
            )
        })?;
        rows.iter()
            .map(|r| {
                history_entry(
                    key,
                    r.try_get(0)?,
                    r.try_get(1)?,
                    r.try_get(2)?,
                    r.try_get(3)?,
                    r.try_get::<_, &str>(4)?,
                )
            })
            .collect()
    }

    fn key_meta(&self, project: &str, store: &str) -> Result<Vec<KeyMeta>> {
        let rows = self.db.block(async {
            let c = self.db.client().await?;
            Ok::<_, StoreError>(
                c.query(
                    "SELECT key, fingerprint, length, updated_at, last_verified_at,
                       last_verified_trigger, last_tested_at, last_tested_trigger,
                       last_tested_by, set_by
                     FROM secret_keys WHERE project = $1 AND store = $2 ORDER BY key",
                    &[&project, &store],
                )
                .await?,
            )
        })?;
        rows.iter()
            .map(|r| {
                Ok(KeyMeta {
                    key: r.try_get(0)?,
                    fingerprint: r.try_get(1)?,
                    length: r.try_get::<_, i64>(2)? as usize,
                    updated_at: r.try_get(3)?,
                    last_verified_at: r.try_get(4)?,
                    last_verified_trigger: r.try_get(5)?,
                    last_tested_at: r.try_get(6)?,
                    last_tested_trigger: r.try_get(7)?,
                    last_tested_by: r.try_get(8)?,
                    set_by: r.try_get::<_, Option<&str>>(9)?.and_then(SetBy::parse),
                })
            })
            .collect()
    }
}

fn stored(r: &Row) -> Result<StoredResource> {
    Ok(StoredResource {
        project: r.try_get(0)?,
        kind: r.try_get(1)?,
        name: r.try_get(2)?,
        generation: r.try_get(3)?,
        metadata: r.try_get(4)?,
        spec: r.try_get(5)?,
        sealed: r.try_get(6)?,
        created_at: r.try_get(7)?,
        updated_at: r.try_get(8)?,
        applied: r.try_get(9)?,
    })
}

async fn write_change(
    tx: &Transaction<'_>,
    cipher: &XChaCha20Poly1305,
    c: &Change,
    revision: u64,
    now: DateTime<Utc>,
    by: SetBy,
) -> Result<()> {
    let r = &c.resource;
    let k = &r.key;
    let kind = k.kind.as_str();
    let detail = match c.outcome {
        Outcome::Unchanged => return Ok(()),
        Outcome::Deleted => {
            tx.execute(
                "DELETE FROM resources WHERE project = $1 AND kind = $2 AND name = $3",
                &[&k.project, &kind, &k.name],
            )
            .await?;
            if k.kind == Kind::SecretStore {
                tx.execute(
                    "DELETE FROM secret_keys WHERE project = $1 AND store = $2",
                    &[&k.project, &k.name],
                )
                .await?;
            }
            serde_json::json!({})
        }
        Outcome::Created | Outcome::Configured => {
            let enc = EncodedResource::new(r, cipher)?;
            let detail = match &r.spec {
                Spec::SecretStore(s) => update_key_meta(tx, k, &s.data, now, by).await?,
                _ => r.spec.to_json(),
            };
            let statement = tx
                .prepare_cached(
                    "INSERT INTO resources (project, kind, name, generation, metadata, spec,
                       sealed, created_at, updated_at, applied)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
                     ON CONFLICT (project, kind, name) DO UPDATE SET
                       generation = excluded.generation, metadata = excluded.metadata,
                       spec = excluded.spec, sealed = excluded.sealed,
                       updated_at = excluded.updated_at, applied = excluded.applied",
                )
                .await?;
            tx.execute(
                &statement,
                &[
                    &k.project,
                    &kind,
                    &k.name,
                    &(r.generation as i64),
                    &enc.metadata,
                    &enc.spec,
                    &enc.sealed,
                    &r.created_at,
                    &r.updated_at,
                    &enc.applied,
                ],
            )
            .await?;
            detail
        }
    };
    let statement = tx
        .prepare_cached(
            "INSERT INTO history (at, revision, project, kind, name, generation, action, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .await?;
    tx.execute(
        &statement,
        &[
            &now,
            &(revision as i64),
            &k.project,
            &kind,
            &k.name,
            &(r.generation as i64),
            &c.outcome.as_str(),
            &detail.to_string(),
        ],
    )
    .await?;
    Ok(())
}

/// Brings `secret_keys` in line with `data` (see [`KeyChanges`]) and returns the history detail.
async fn update_key_meta(
    tx: &Transaction<'_>,
    k: &ResourceKey,
    data: &BTreeMap<String, SecretValue>,
    now: DateTime<Utc>,
    by: SetBy,
) -> Result<serde_json::Value> {
    let old: BTreeMap<String, String> = tx
        .query(
            "SELECT key, fingerprint FROM secret_keys WHERE project = $1 AND store = $2",
            &[&k.project, &k.name],
        )
        .await?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_>>()?;
    let changes = KeyChanges::new(&old, data, by);
    for u in &changes.upserts {
        let statement = tx
            .prepare_cached(
                "INSERT INTO secret_keys (project, store, key, fingerprint, length, updated_at, set_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)
                 ON CONFLICT (project, store, key) DO UPDATE SET
                   fingerprint = excluded.fingerprint, length = excluded.length,
                   updated_at = excluded.updated_at, set_by = excluded.set_by,
                   last_verified_at = NULL, last_verified_trigger = NULL,
                   last_tested_at = NULL, last_tested_trigger = NULL, last_tested_by = NULL",
            )
            .await?;
        tx.execute(
            &statement,
            &[
                &k.project,
                &k.name,
                &u.key,
                &u.fingerprint,
                &u.length,
                &now,
                &by.as_str(),
            ],
        )
        .await?;
    }
    for key in &changes.removed {
        tx.execute(
            "DELETE FROM secret_keys WHERE project = $1 AND store = $2 AND key = $3",
            &[&k.project, &k.name, key],
        )
        .await?;
    }
    Ok(changes.detail)
}
