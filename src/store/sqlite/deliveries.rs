//! The webhook delivery log on SQLite (migration 10): [`Deliveries`] implements
//! [`DeliveryStore`] on the `webhook_delivery_log` table, on the connection pair it shares with
//! the verification stamps (both are written by the webhook server's batches, with
//! `synchronous=NORMAL`: the log is a record for the operator, not a promise to a sender).

use std::collections::BTreeSet;
use std::sync::Arc;

use rusqlite::{OptionalExtension, Row, params};

use super::{Pair, parse_ts, ts};
use crate::store::{
    DELIVERIES_KEPT, DeliveryRecord, DeliveryStore, NewDelivery, PAYLOADS_KEPT, Result,
};

/// The delivery log of one SQLite database.
pub struct Deliveries {
    pair: Arc<Pair>,
}

impl Deliveries {
    pub(super) fn new(pair: Arc<Pair>) -> Deliveries {
        Deliveries { pair }
    }
}

const COLUMNS: &str = "id, project, trigger, received_at, status, outcome, key_name, task_id,
    delivery_id, payload_bytes, payload IS NOT NULL";

fn record(r: &Row<'_>, payload: Option<String>) -> Result<DeliveryRecord> {
    let received: String = r.get(3)?;
    Ok(DeliveryRecord {
        id: r.get::<_, i64>(0)? as u64,
        delivery: NewDelivery {
            project: r.get(1)?,
            trigger: r.get(2)?,
            received_at: parse_ts(&received)?,
            status: r.get(4)?,
            outcome: r.get(5)?,
            key: r.get(6)?,
            task: r.get::<_, Option<i64>>(7)?.map(|t| t as u64),
            delivery_id: r.get(8)?,
            payload_bytes: r.get::<_, i64>(9)? as u64,
            payload,
        },
        has_payload: r.get(10)?,
    })
}

impl DeliveryStore for Deliveries {
    fn record(&self, batch: &[NewDelivery]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.pair.write(|conn| {
            let tx = super::immediate(conn)?;
            let mut touched = BTreeSet::new();
            for d in batch {
                tx.prepare_cached(
                    "INSERT INTO webhook_delivery_log (project, trigger, received_at, status,
                       outcome, key_name, task_id, delivery_id, payload_bytes, payload)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?
                .execute(params![
                    d.project,
                    d.trigger,
                    ts(d.received_at),
                    d.status,
                    d.outcome,
                    d.key,
                    d.task.map(|t| t as i64),
                    d.delivery_id,
                    d.payload_bytes as i64,
                    d.payload,
                ])?;
                touched.insert((d.project.as_str(), d.trigger.as_str()));
            }
            for (project, trigger) in touched {
                // The id of the newest row past a bound; everything at or below it goes.
                let past = |n: usize| -> Result<Option<i64>> {
                    Ok(tx
                        .prepare_cached(
                            "SELECT id FROM webhook_delivery_log WHERE project = ?1 AND trigger = ?2
                             ORDER BY id DESC LIMIT 1 OFFSET ?3",
                        )?
                        .query_row(params![project, trigger, n as i64], |r| r.get(0))
                        .optional()?)
                };
                if let Some(id) = past(PAYLOADS_KEPT)? {
                    tx.prepare_cached(
                        "UPDATE webhook_delivery_log SET payload = NULL
                         WHERE project = ?1 AND trigger = ?2 AND id <= ?3 AND payload IS NOT NULL",
                    )?
                    .execute(params![project, trigger, id])?;
                }
                if let Some(id) = past(DELIVERIES_KEPT)? {
                    tx.prepare_cached(
                        "DELETE FROM webhook_delivery_log
                         WHERE project = ?1 AND trigger = ?2 AND id <= ?3",
                    )?
                    .execute(params![project, trigger, id])?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    fn list(&self, project: &str, trigger: &str, limit: usize) -> Result<Vec<DeliveryRecord>> {
        self.pair.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM webhook_delivery_log WHERE project = ?1 AND trigger = ?2
                 ORDER BY id DESC LIMIT ?3"
            ))?;
            let mut rows = stmt.query(params![project, trigger, limit as i64])?;
            let mut out = Vec::new();
            while let Some(r) = rows.next()? {
                out.push(record(r, None)?);
            }
            Ok(out)
        })
    }

    fn get(&self, id: u64) -> Result<Option<DeliveryRecord>> {
        self.pair.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {COLUMNS}, payload FROM webhook_delivery_log WHERE id = ?1"
            ))?;
            let mut rows = stmt.query(params![id as i64])?;
            match rows.next()? {
                Some(r) => {
                    let payload: Option<String> = r.get(11)?;
                    Ok(Some(record(r, payload)?))
                }
                None => Ok(None),
            }
        })
    }
}
