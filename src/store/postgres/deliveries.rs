//! The webhook delivery log on PostgreSQL: [`Deliveries`] implements [`DeliveryStore`] on the
//! `webhook_delivery_log` table, bounded per trigger as on SQLite (see
//! `store::sqlite::deliveries`).

use std::collections::BTreeSet;
use std::sync::Arc;

use tokio_postgres::Row;

use super::Db;
use crate::store::{
    DELIVERIES_KEPT, DeliveryRecord, DeliveryStore, NewDelivery, PAYLOADS_KEPT, Result,
};

/// The delivery log of one PostgreSQL database.
pub struct Deliveries {
    db: Arc<Db>,
}

impl Deliveries {
    pub fn new(db: Arc<Db>) -> Deliveries {
        Deliveries { db }
    }
}

const COLUMNS: &str = "id, project, trigger, received_at, status, outcome, key_name, task_id,
    delivery_id, payload_bytes, payload IS NOT NULL";

fn record(r: &Row, payload: Option<String>) -> Result<DeliveryRecord> {
    Ok(DeliveryRecord {
        id: r.try_get::<_, i64>(0)? as u64,
        delivery: NewDelivery {
            project: r.try_get(1)?,
            trigger: r.try_get(2)?,
            received_at: r.try_get(3)?,
            status: r.try_get::<_, i32>(4)? as u16,
            outcome: r.try_get(5)?,
            key: r.try_get(6)?,
            task: r.try_get::<_, Option<i64>>(7)?.map(|t| t as u64),
            delivery_id: r.try_get(8)?,
            payload_bytes: r.try_get::<_, i64>(9)? as u64,
            payload,
        },
        has_payload: r.try_get(10)?,
    })
}

impl DeliveryStore for Deliveries {
    fn record(&self, batch: &[NewDelivery]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.db.block(async {
            let mut c = self.db.client().await?;
            let tx = c.transaction().await?;
            let insert = tx
                .prepare_cached(
                    "INSERT INTO webhook_delivery_log (project, trigger, received_at, status,
                       outcome, key_name, task_id, delivery_id, payload_bytes, payload)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                )
                .await?;
            let mut touched = BTreeSet::new();
            for d in batch {
                tx.execute(
                    &insert,
                    &[
                        &d.project,
                        &d.trigger,
                        &d.received_at,
                        &i32::from(d.status),
                        &d.outcome,
                        &d.key,
                        &d.task.map(|t| t as i64),
                        &d.delivery_id,
                        &(d.payload_bytes as i64),
                        &d.payload,
                    ],
                )
                .await?;
                touched.insert((d.project.as_str(), d.trigger.as_str()));
            }
            let past = tx
                .prepare_cached(
                    "SELECT id FROM webhook_delivery_log WHERE project = $1 AND trigger = $2
                     ORDER BY id DESC LIMIT 1 OFFSET $3",
                )
                .await?;
            for (project, trigger) in touched {
                // The id of the newest row past a bound; everything at or below it goes.
                let bound = |n: usize| {
                    let past = &past;
                    let tx = &tx;
                    async move {
                        let row = tx
                            .query_opt(past, &[&project, &trigger, &(n as i64)])
                            .await?;
                        row.map(|r| r.try_get::<_, i64>(0))
                            .transpose()
                            .map_err(crate::store::StoreError::from)
                    }
                };
                if let Some(id) = bound(PAYLOADS_KEPT).await? {
                    tx.execute(
                        "UPDATE webhook_delivery_log SET payload = NULL
                         WHERE project = $1 AND trigger = $2 AND id <= $3 AND payload IS NOT NULL",
                        &[&project, &trigger, &id],
                    )
                    .await?;
                }
                if let Some(id) = bound(DELIVERIES_KEPT).await? {
                    tx.execute(
                        "DELETE FROM webhook_delivery_log
                         WHERE project = $1 AND trigger = $2 AND id <= $3",
                        &[&project, &trigger, &id],
                    )
                    .await?;
                }
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn list(&self, project: &str, trigger: &str, limit: usize) -> Result<Vec<DeliveryRecord>> {
        self.db.block(async {
            let c = self.db.client().await?;
            let rows = c
                .query(
                    &format!(
                        "SELECT {COLUMNS} FROM webhook_delivery_log
                         WHERE project = $1 AND trigger = $2 ORDER BY id DESC LIMIT $3"
                    ),
                    &[&project, &trigger, &(limit as i64)],
                )
                .await?;
            rows.iter().map(|r| record(r, None)).collect()
        })
    }

    fn get(&self, id: u64) -> Result<Option<DeliveryRecord>> {
        self.db.block(async {
            let c = self.db.client().await?;
            let row = c
                .query_opt(
                    &format!("SELECT {COLUMNS}, payload FROM webhook_delivery_log WHERE id = $1"),
                    &[&(id as i64)],
                )
                .await?;
            row.map(|r| record(&r, r.try_get(11)?)).transpose()
        })
    }
}
