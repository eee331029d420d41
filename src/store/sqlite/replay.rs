//! The replay window's record on SQLite (migration 5): [`Replays`] implements [`ReplayStore`] on
//! the `webhook_deliveries` table through a read-only connection. The rows are written and
//! pruned by the task group commit (`commit.rs`), in the transaction of the task each delivery
//! created.

use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::params;

use super::{Conn, Durability, parse_ts, ts};
use crate::store::{ReplayStore, Result, SeenDelivery};

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
    fn seen(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<SeenDelivery>> {
        self.reader.run(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT project, trigger, delivery, expires_at FROM webhook_deliveries
                 WHERE expires_at > ?1 ORDER BY expires_at DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![ts(now), limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, String>(3)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (project, trigger, id, expires_at) = row?;
                out.push(SeenDelivery {
                    project,
                    trigger,
                    id,
                    expires_at: parse_ts(&expires_at)?,
                });
            }
            Ok(out)
        })
    }
}
