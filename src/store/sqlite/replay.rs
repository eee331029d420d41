//! The replay window's record on SQLite (migration 5): [`Replays`] implements [`ReplayStore`] on
//! the `webhook_deliveries` table through a read-only connection. The rows are written and
//! pruned by the task group commit (`commit.rs`), in the transaction of the task each delivery
//! created.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Conn, Durability, ts};
use crate::store::{ReplayStore, Result};

/// The delivery ids of one SQLite database.
pub struct Replays {
    reader: Conn,
}

impl Replays {
    /// Opens a reader on the database in `data_dir` (migrations already ran).
    pub fn open(data_dir: &Path) -> Result<Replays> {
        let reader = Conn::open(data_dir, Durability::Full)?;
        reader.run(|c| Ok(c.execute_batch("PRAGMA query_only=ON;")?))?;
        Ok(Replays { reader })
    }
}

impl ReplayStore for Replays {
    fn seen(
        &self,
        project: &str,
        trigger: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<u64>> {
        self.reader.run(|c| recorded(c, project, trigger, id, now))
    }
}

/// The task an unexpired record of the delivery names (on the reader, or in the writer's
/// transaction).
pub(super) fn recorded(
    c: &Connection,
    project: &str,
    trigger: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Option<u64>> {
    Ok(c.prepare_cached(
        "SELECT task_id FROM webhook_deliveries
         WHERE project = ?1 AND trigger = ?2 AND delivery = ?3 AND expires_at > ?4",
    )?
    .query_row(params![project, trigger, id, ts(now)], |r| {
        r.get::<_, i64>(0)
    })
    .optional()?
    .map(|task| task as u64))
}
