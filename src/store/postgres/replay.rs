//! The replay window's record on PostgreSQL: [`Replays`] implements [`ReplayStore`] on the
//! `webhook_deliveries` table, which the task commit writes (see `tasks`). Every node reads the
//! same record, so a delivery id that created a task on one node is a duplicate on all.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use super::Db;
use crate::store::{ReplayStore, Result};

/// The delivery ids of one PostgreSQL database.
pub struct Replays {
    db: Arc<Db>,
}

impl Replays {
    pub fn new(db: Arc<Db>) -> Replays {
        Replays { db }
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
        self.db.block(async {
            let c = self.db.client().await?;
            recorded(&c, project, trigger, id, now).await
        })
    }
}

/// The task an unexpired record of the delivery names (on any connection, or inside the task
/// commit's transaction).
pub(super) async fn recorded(
    c: &impl GenericClient,
    project: &str,
    trigger: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<Option<u64>> {
    let statement = c
        .prepare_cached(
            "SELECT task_id FROM webhook_deliveries
             WHERE project = $1 AND trigger = $2 AND delivery = $3 AND expires_at > $4",
        )
        .await?;
    let row = c
        .query_opt(&statement, &[&project, &trigger, &id, &now])
        .await?;
    Ok(row
        .map(|r| r.try_get::<_, i64>(0))
        .transpose()?
        .map(|t| t as u64))
}
