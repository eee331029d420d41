//! Rotation records on PostgreSQL: [`Rotations`] implements [`RotationStore`] with SQLite's
//! columns (see `store::sqlite::rotations`). A stage is committed before the next begins.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::Db;
use crate::api::{RotationRecord, RotationStage};
use crate::domain::rotation::RotationUpdate;
use crate::store::{FinishedRefresh, NewRotation, REFRESHES_KEPT, Result, RotationStore};

const COLUMNS: &str = "id, project, store, key, provider, stage, reason, old_fingerprint, new_fingerprint, started_at, set_at, verified_at, finished_at";

fn record(r: &Row) -> Result<RotationRecord> {
    Ok(RotationRecord {
        id: r.try_get::<_, i64>(0)? as u64,
        project: r.try_get(1)?,
        store: r.try_get(2)?,
        key: r.try_get(3)?,
        provider: r.try_get(4)?,
        stage: RotationStage::parse(r.try_get(5)?).unwrap_or(RotationStage::Failed),
        reason: r.try_get(6)?,
        old_fingerprint: r.try_get(7)?,
        new_fingerprint: r.try_get(8)?,
        started_at: r.try_get(9)?,
        set_at: r.try_get(10)?,
        verified_at: r.try_get(11)?,
        finished_at: r.try_get(12)?,
    })
}

/// The rotation records of one PostgreSQL database.
pub struct Rotations {
    db: Arc<Db>,
}

impl Rotations {
    pub fn new(db: Arc<Db>) -> Rotations {
        Rotations { db }
    }

    fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<RotationRecord>> {
        self.db.block(async {
            let c = self.db.client().await?;
            c.query(sql, params).await?.iter().map(record).collect()
        })
    }
}

impl RotationStore for Rotations {
    fn record_refresh(&self, r: &FinishedRefresh<'_>) -> Result<u64> {
        self.db.block(async {
            let mut c = self.db.client().await?;
            let tx = c.transaction().await?;
            let row = tx
                .query_one(
                    "INSERT INTO rotations (project, store, key, provider, stage, reason,
                       old_fingerprint, new_fingerprint, started_at, set_at, finished_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id",
                    &[
                        &r.project,
                        &r.store,
                        &r.key,
                        &r.provider,
                        &if r.done { "done" } else { "failed" },
                        &r.reason,
                        &r.old_fingerprint,
                        &r.new_fingerprint,
                        &r.started_at,
                        &r.done.then_some(r.finished_at),
                        &r.finished_at,
                    ],
                )
                .await?;
            tx.execute(
                "DELETE FROM rotations WHERE project = $1 AND store = $2 AND key = $3
                   AND provider = $4 AND stage IN ('done', 'failed') AND id NOT IN (
                     SELECT id FROM rotations WHERE project = $1 AND store = $2 AND key = $3
                       AND provider = $4 ORDER BY id DESC LIMIT $5)",
                &[&r.project, &r.store, &r.key, &r.provider, &(REFRESHES_KEPT as i64)],
            )
            .await?;
            tx.commit().await?;
            Ok(row.try_get::<_, i64>(0)? as u64)
        })
    }

    fn create(&self, r: &NewRotation<'_>) -> Result<u64> {
        self.db.block(async {
            let c = self.db.client().await?;
            let row = c
                .query_one(
                    "INSERT INTO rotations (project, store, key, provider, stage, old_fingerprint,
                       started_at, updated_at, node)
                     VALUES ($1, $2, $3, $4, 'create', $5, $6, $6, $7) RETURNING id",
                    &[
                        &r.project,
                        &r.store,
                        &r.key,
                        &r.provider,
                        &r.old_fingerprint,
                        &r.started_at,
                        &r.node,
                    ],
                )
                .await?;
            Ok(row.try_get::<_, i64>(0)? as u64)
        })
    }

    fn get(&self, id: u64) -> Result<RotationRecord> {
        self.db.block(async {
            let c = self.db.client().await?;
            let row = c
                .query_one(
                    &format!("SELECT {COLUMNS} FROM rotations WHERE id = $1"),
                    &[&(id as i64)],
                )
                .await?;
            record(&row)
        })
    }

    fn history(&self, project: &str, store: &str, limit: usize) -> Result<Vec<RotationRecord>> {
        self.query(
            &format!(
                "SELECT {COLUMNS} FROM rotations WHERE project = $1 AND store = $2
                 ORDER BY id DESC LIMIT $3"
            ),
            &[&project, &store, &(limit as i64)],
        )
    }

    fn unfinished(&self) -> Result<Vec<RotationRecord>> {
        self.query(
            &format!(
                "SELECT {COLUMNS} FROM rotations WHERE stage NOT IN ('done', 'failed') ORDER BY id"
            ),
            &[],
        )
    }

    fn update(
        &self,
        id: u64,
        stage: RotationStage,
        set: &RotationUpdate,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.db.block(async {
            let c = self.db.client().await?;
            c.execute(
                "UPDATE rotations SET stage = $1, updated_at = $2,
                   reason = COALESCE($4, reason),
                   new_fingerprint = COALESCE($5, new_fingerprint),
                   platform_set = COALESCE($6, platform_set),
                   set_at = COALESCE($7, set_at),
                   verified_at = COALESCE($8, verified_at),
                   finished_at = COALESCE($9, finished_at)
                 WHERE id = $3",
                &[
                    &stage.as_str(),
                    &now,
                    &(id as i64),
                    &set.reason,
                    &set.new_fingerprint,
                    &set.platform_set,
                    &set.set_at,
                    &set.verified_at,
                    &set.finished_at,
                ],
            )
            .await?;
            Ok(())
        })
    }

    fn claim(&self, id: u64, node: &str, now: DateTime<Utc>) -> Result<bool> {
        // One statement: PostgreSQL re-checks the condition on the row's newest version when a
        // concurrent claim updated it first, so of two claimers one wins.
        self.db.block(async {
            let c = self.db.client().await?;
            let n = c
                .execute(
                    "UPDATE rotations r SET node = $2
                     WHERE r.id = $1 AND r.stage NOT IN ('done', 'failed')
                       AND (r.node IS NULL OR r.node = $2 OR NOT EXISTS (
                         SELECT 1 FROM nodes n WHERE n.id = r.node AND n.stopped_at IS NULL
                           AND n.heartbeat_at + n.ttl_ms * INTERVAL '1 millisecond' > $3))",
                    &[&(id as i64), &node, &now],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn platform_set(&self, id: u64) -> Result<Option<bool>> {
        self.db.block(async {
            let c = self.db.client().await?;
            let row = c
                .query_opt(
                    "SELECT platform_set FROM rotations WHERE id = $1",
                    &[&(id as i64)],
                )
                .await?;
            Ok(row.map(|r| r.try_get(0)).transpose()?)
        })
    }
}
