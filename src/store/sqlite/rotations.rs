//! Rotation records on SQLite (migration 4): [`Rotations`] implements [`RotationStore`] on one
//! connection (`synchronous=FULL`: a stage is durable before the next begins).

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Conn, Durability, immediate, parse_ts, ts};
use crate::api::{RotationRecord, RotationStage};
use crate::domain::rotation::RotationUpdate;
use crate::store::cluster::expired;
use crate::store::{FinishedRefresh, NewRotation, REFRESHES_KEPT, Result, RotationStore};

const COLUMNS: &str = "id, project, store, key, provider, stage, reason, old_fingerprint, new_fingerprint, started_at, set_at, verified_at, finished_at";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RotationRecord> {
    let time = |i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> {
        Ok(r.get::<_, Option<String>>(i)?
            .and_then(|s| parse_ts(&s).ok()))
    };
    Ok(RotationRecord {
        id: r.get::<_, i64>(0)? as u64,
        project: r.get(1)?,
        store: r.get(2)?,
        key: r.get(3)?,
        provider: r.get(4)?,
        stage: RotationStage::parse(&r.get::<_, String>(5)?).unwrap_or(RotationStage::Failed),
        reason: r.get(6)?,
        old_fingerprint: r.get(7)?,
        new_fingerprint: r.get(8)?,
        started_at: time(9)?.unwrap_or(DateTime::UNIX_EPOCH),
        set_at: time(10)?,
        verified_at: time(11)?,
        finished_at: time(12)?,
    })
}

/// The rotation records of one SQLite database.
pub struct Rotations {
    conn: Conn,
}

impl Rotations {
    /// Opens the rotations' connection to the database in `data_dir` (migrations already ran).
    pub fn open(data_dir: &Path) -> Result<Rotations> {
        Ok(Rotations {
            conn: Conn::open(data_dir, Durability::Full)?,
        })
    }
}

impl RotationStore for Rotations {
    fn record_refresh(&self, r: &FinishedRefresh<'_>) -> Result<u64> {
        self.conn.run(|c| {
            let tx = c.transaction()?;
            tx.execute(
                "INSERT INTO rotations (project, store, key, provider, stage, reason, old_fingerprint,
                   new_fingerprint, started_at, set_at, finished_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11)",
                params![
                    r.project,
                    r.store,
                    r.key,
                    r.provider,
                    if r.done { "done" } else { "failed" },
                    r.reason,
                    r.old_fingerprint,
                    r.new_fingerprint,
                    ts(r.started_at),
                    r.done.then(|| ts(r.finished_at)),
                    ts(r.finished_at),
                ],
            )?;
            let id = tx.last_insert_rowid() as u64;
            tx.execute(
                "DELETE FROM rotations WHERE project = ?1 AND store = ?2 AND key = ?3 AND provider = ?4
                   AND stage IN ('done', 'failed') AND id NOT IN (
                     SELECT id FROM rotations WHERE project = ?1 AND store = ?2 AND key = ?3
                       AND provider = ?4 ORDER BY id DESC LIMIT ?5)",
                params![r.project, r.store, r.key, r.provider, REFRESHES_KEPT as i64],
            )?;
            tx.commit()?;
            Ok(id)
        })
    }

    fn create(&self, r: &NewRotation<'_>) -> Result<u64> {
        self.conn.run(|c| {
            c.execute(
                "INSERT INTO rotations (project, store, key, provider, stage, old_fingerprint, started_at, updated_at, node)
                 VALUES (?1, ?2, ?3, ?4, 'create', ?5, ?6, ?6, ?7)",
                params![r.project, r.store, r.key, r.provider, r.old_fingerprint, ts(r.started_at), r.node],
            )?;
            Ok(c.last_insert_rowid() as u64)
        })
    }

    fn get(&self, id: u64) -> Result<RotationRecord> {
        self.conn.run(|c| {
            Ok(
                c.prepare_cached(&format!("SELECT {COLUMNS} FROM rotations WHERE id = ?1"))?
                    .query_row(params![id as i64], row)?,
            )
        })
    }

    fn history(&self, project: &str, store: &str, limit: usize) -> Result<Vec<RotationRecord>> {
        self.conn.run(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM rotations WHERE project = ?1 AND store = ?2 ORDER BY id DESC LIMIT ?3"
            ))?;
            let rows = stmt.query_map(params![project, store, limit as i64], row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn unfinished(&self) -> Result<Vec<RotationRecord>> {
        self.conn.run(|c| {
            let mut stmt = c.prepare(&format!(
                "SELECT {COLUMNS} FROM rotations WHERE stage NOT IN ('done', 'failed') ORDER BY id"
            ))?;
            let rows = stmt.query_map([], row)?;
            Ok(rows.collect::<rusqlite::Result<_>>()?)
        })
    }

    fn update(
        &self,
        id: u64,
        stage: RotationStage,
        set: &RotationUpdate,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.conn.run(|c| {
            c.prepare_cached(
                "UPDATE rotations SET stage = ?1, updated_at = ?2,
                   reason = COALESCE(?4, reason),
                   new_fingerprint = COALESCE(?5, new_fingerprint),
                   platform_set = COALESCE(?6, platform_set),
                   set_at = COALESCE(?7, set_at),
                   verified_at = COALESCE(?8, verified_at),
                   finished_at = COALESCE(?9, finished_at)
                 WHERE id = ?3",
            )?
            .execute(params![
                stage.as_str(),
                ts(now),
                id as i64,
                set.reason,
                set.new_fingerprint,
                set.platform_set.map(i64::from),
                set.set_at.map(ts),
                set.verified_at.map(ts),
                set.finished_at.map(ts),
            ])?;
            Ok(())
        })
    }

    fn claim(&self, id: u64, node: &str, now: DateTime<Utc>) -> Result<bool> {
        self.conn.run(|c| {
            let tx = immediate(c)?;
            let holder: Option<Option<String>> = tx
                .query_row(
                    "SELECT node FROM rotations WHERE id = ?1 AND stage NOT IN ('done', 'failed')",
                    params![id as i64],
                    |r| r.get(0),
                )
                .optional()?;
            let free = match holder {
                None => return Ok(false),
                Some(None) => true,
                Some(Some(h)) if h == node => true,
                Some(Some(h)) => {
                    let row: Option<(String, i64, Option<String>)> = tx
                        .query_row(
                            "SELECT heartbeat_at, ttl_ms, stopped_at FROM nodes WHERE id = ?1",
                            [&h],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                        .optional()?;
                    match row {
                        None => true,
                        Some((_, _, Some(_))) => true,
                        Some((beat, ttl, None)) => {
                            let ttl = Duration::from_millis(u64::try_from(ttl).unwrap_or(0));
                            expired(parse_ts(&beat)?, ttl, now)
                        }
                    }
                }
            };
            if free {
                tx.execute(
                    "UPDATE rotations SET node = ?2 WHERE id = ?1",
                    params![id as i64, node],
                )?;
            }
            tx.commit()?;
            Ok(free)
        })
    }

    fn platform_set(&self, id: u64) -> Result<Option<bool>> {
        self.conn.run(|c| {
            Ok(c.query_row(
                "SELECT platform_set FROM rotations WHERE id = ?1",
                params![id as i64],
                |r| r.get::<_, i64>(0),
            )
            .optional()?
            .map(|v| v == 1))
        })
    }
}
