//! The trigger tables on PostgreSQL: [`Triggers`] implements [`TriggerStore`] with SQLite's
//! columns (see `store::sqlite::triggers`) in PostgreSQL's types.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::Db;
use crate::domain::trigger_plan::{EventKind, TriggerEvent, TriggerState};
use crate::store::{HISTORY_ROWS, ManualFires, Result, SaveRow, StoreError, TriggerStore};

/// The trigger tables of one PostgreSQL database.
pub struct Triggers {
    db: Arc<Db>,
}

impl Triggers {
    pub fn new(db: Arc<Db>) -> Triggers {
        Triggers { db }
    }
}

/// The columns of a `trigger_state` row that make a [`TriggerState`], in this order.
macro_rules! state_columns {
    () => {
        "generation, last_scheduled, last_fire, last_task, next_fire, fires, skips, missed"
    };
}

fn state(r: &Row, at: usize) -> Result<TriggerState> {
    Ok(TriggerState {
        generation: r.try_get::<_, i64>(at)? as u64,
        last_scheduled: r.try_get(at + 1)?,
        last_fire: r.try_get(at + 2)?,
        last_task: r.try_get::<_, Option<i64>>(at + 3)?.map(|t| t as u64),
        next_fire: r.try_get(at + 4)?,
        fires: r.try_get::<_, i64>(at + 5)? as u64,
        skips: r.try_get::<_, i64>(at + 6)? as u64,
        missed: r.try_get::<_, i64>(at + 7)? as u64,
    })
}

/// A trigger's state and optional history row, inside the caller's transaction. Every 50th
/// history row also trims the trigger's history to the newest [`HISTORY_ROWS`].
async fn save_in(
    c: &impl GenericClient,
    project: &str,
    name: &str,
    state: &TriggerState,
    event: Option<&TriggerEvent>,
    now: DateTime<Utc>,
) -> Result<()> {
    let upsert = c
        .prepare_cached(
            "INSERT INTO trigger_state (project, name, generation, last_scheduled, last_fire,
               last_task, next_fire, fires, skips, missed, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (project, name) DO UPDATE SET generation = excluded.generation,
               last_scheduled = excluded.last_scheduled, last_fire = excluded.last_fire,
               last_task = excluded.last_task, next_fire = excluded.next_fire,
               fires = excluded.fires, skips = excluded.skips, missed = excluded.missed,
               updated_at = excluded.updated_at",
        )
        .await?;
    c.execute(
        &upsert,
        &[
            &project,
            &name,
            &(state.generation as i64),
            &state.last_scheduled,
            &state.last_fire,
            &state.last_task.map(|t| t as i64),
            &state.next_fire,
            &(state.fires as i64),
            &(state.skips as i64),
            &(state.missed as i64),
            &now,
        ],
    )
    .await?;
    if let Some(e) = event {
        let id = insert_event(c, project, name, e).await?;
        if id % 50 == 0 {
            c.execute(
                "DELETE FROM trigger_events WHERE project = $1 AND name = $2 AND id <=
                   (SELECT id FROM trigger_events WHERE project = $1 AND name = $2
                    ORDER BY id DESC LIMIT 1 OFFSET $3)",
                &[&project, &name, &HISTORY_ROWS],
            )
            .await?;
        }
    }
    Ok(())
}

/// Appends a history row; returns its id.
async fn insert_event(
    c: &impl GenericClient,
    project: &str,
    name: &str,
    e: &TriggerEvent,
) -> Result<i64> {
    let insert = c
        .prepare_cached(
            "INSERT INTO trigger_events (project, name, at, kind, scheduled, task_id,
               lateness_ms, reason)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .await?;
    let row = c
        .query_one(
            &insert,
            &[
                &project,
                &name,
                &e.at,
                &e.kind.as_str(),
                &e.scheduled,
                &e.task.map(|t| t as i64),
                &e.lateness_ms,
                &e.reason,
            ],
        )
        .await?;
    Ok(row.try_get(0)?)
}

impl TriggerStore for Triggers {
    fn all(&self) -> Result<HashMap<(String, String), TriggerState>> {
        self.db.block(async {
            let c = self.db.client().await?;
            let rows = c
                .query(
                    concat!(
                        "SELECT project, name, ",
                        state_columns!(),
                        " FROM trigger_state"
                    ),
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| Ok(((r.try_get(0)?, r.try_get(1)?), state(r, 2)?)))
                .collect()
        })
    }

    fn get(&self, project: &str, name: &str) -> Result<Option<TriggerState>> {
        self.db.block(async {
            let c = self.db.client().await?;
            let row = c
                .query_opt(
                    concat!(
                        "SELECT ",
                        state_columns!(),
                        " FROM trigger_state WHERE project = $1 AND name = $2"
                    ),
                    &[&project, &name],
                )
                .await?;
            row.map(|r| state(&r, 0)).transpose()
        })
    }

    fn save(
        &self,
        project: &str,
        name: &str,
        state: &TriggerState,
        event: Option<&TriggerEvent>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.db.block(async {
            let mut c = self.db.client().await?;
            let tx = c.transaction().await?;
            save_in(&tx, project, name, state, event, now).await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn save_many(&self, rows: &[SaveRow], now: DateTime<Utc>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.db.block(async {
            let mut c = self.db.client().await?;
            let tx = c.transaction().await?;
            for r in rows {
                save_in(&tx, &r.project, &r.name, &r.state, r.event.as_ref(), now).await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn manual_fire(&self, project: &str, name: &str, e: &TriggerEvent) -> Result<()> {
        let fired = e.kind == EventKind::Fired;
        self.db.block(async {
            let mut c = self.db.client().await?;
            let tx = c.transaction().await?;
            insert_event(&tx, project, name, e).await?;
            // A trigger without a state row yet gets one with generation 0, which its
            // TriggerActor takes as "start afresh", as it would without a row.
            tx.execute(
                "INSERT INTO trigger_state (project, name, generation, manual_fires, manual_skips,
                   last_manual_fire, last_manual_task, updated_at)
                 VALUES ($1, $2, 0, $3, $4, $5, $6, $7)
                 ON CONFLICT (project, name) DO UPDATE SET
                   manual_fires = trigger_state.manual_fires + excluded.manual_fires,
                   manual_skips = trigger_state.manual_skips + excluded.manual_skips,
                   last_manual_fire = coalesce(excluded.last_manual_fire,
                                               trigger_state.last_manual_fire),
                   last_manual_task = coalesce(excluded.last_manual_task,
                                               trigger_state.last_manual_task)",
                &[
                    &project,
                    &name,
                    &i64::from(fired),
                    &i64::from(!fired),
                    &fired.then_some(e.at),
                    &e.task.filter(|_| fired).map(|t| t as i64),
                    &e.at,
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    fn manual_fires(&self, project: &str, name: &str) -> Result<ManualFires> {
        self.db.block(async {
            let c = self.db.client().await?;
            let row = c
                .query_opt(
                    "SELECT manual_fires, manual_skips, last_manual_fire, last_manual_task
                     FROM trigger_state WHERE project = $1 AND name = $2",
                    &[&project, &name],
                )
                .await?;
            Ok(match row {
                Some(r) => ManualFires {
                    fires: r.try_get::<_, i64>(0)? as u64,
                    skips: r.try_get::<_, i64>(1)? as u64,
                    last_fire: r.try_get(2)?,
                    last_task: r.try_get::<_, Option<i64>>(3)?.map(|t| t as u64),
                },
                None => ManualFires::default(),
            })
        })
    }

    fn remove(&self, project: &str, name: &str) -> Result<()> {
        self.db.block(async {
            let mut c = self.db.client().await?;
            let tx = c.transaction().await?;
            tx.execute(
                "DELETE FROM trigger_state WHERE project = $1 AND name = $2",
                &[&project, &name],
            )
            .await?;
            tx.execute(
                "DELETE FROM trigger_events WHERE project = $1 AND name = $2",
                &[&project, &name],
            )
            .await?;
            tx.commit().await?;
            Ok::<_, StoreError>(())
        })
    }

    fn events(&self, project: &str, name: &str, limit: usize) -> Result<Vec<TriggerEvent>> {
        self.db.block(async {
            let c = self.db.client().await?;
            let rows = c
                .query(
                    "SELECT at, kind, scheduled, task_id, lateness_ms, reason FROM trigger_events
                     WHERE project = $1 AND name = $2 ORDER BY id DESC LIMIT $3",
                    &[&project, &name, &(limit as i64)],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(TriggerEvent {
                        at: r.try_get(0)?,
                        kind: EventKind::parse(r.try_get(1)?),
                        scheduled: r.try_get(2)?,
                        task: r.try_get::<_, Option<i64>>(3)?.map(|t| t as u64),
                        lateness_ms: r.try_get(4)?,
                        reason: r.try_get(5)?,
                    })
                })
                .collect()
        })
    }
}
