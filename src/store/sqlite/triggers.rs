//! The trigger tables on SQLite (migration 3, and the manual fire columns of migration 7):
//! [`Triggers`] implements [`TriggerStore`] on a connection `Pair`, like the task tables.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, params};

use super::{Pair, immediate, opt_ts, parse_ts, ts};
use crate::domain::trigger_plan::{EventKind, TriggerEvent, TriggerState};
use crate::store::{HISTORY_ROWS, ManualFires, Result, SaveRow, TriggerStore};

/// A trigger's state and optional history row, inside the caller's transaction. Every 50th
/// history row also trims the trigger's history to the newest [`HISTORY_ROWS`].
fn save_in(
    c: &Connection,
    project: &str,
    name: &str,
    state: &TriggerState,
    event: Option<&TriggerEvent>,
    now: DateTime<Utc>,
) -> Result<()> {
    upsert_state(c, project, name, state, now)?;
    if let Some(e) = event {
        insert_event(c, project, name, e)?;
        if c.last_insert_rowid() % 50 == 0 {
            c.prepare_cached(
                "DELETE FROM trigger_events WHERE project = ?1 AND name = ?2 AND id <=
                   (SELECT id FROM trigger_events WHERE project = ?1 AND name = ?2
                    ORDER BY id DESC LIMIT 1 OFFSET ?3)",
            )?
            .execute(params![project, name, HISTORY_ROWS])?;
        }
    }
    Ok(())
}

/// Inserts or replaces a trigger's state row.
fn upsert_state(
    c: &Connection,
    project: &str,
    name: &str,
    state: &TriggerState,
    now: DateTime<Utc>,
) -> Result<()> {
    c.prepare_cached(
        "INSERT INTO trigger_state (project, name, generation, last_scheduled, last_fire, last_task,
           next_fire, fires, skips, missed, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         ON CONFLICT (project, name) DO UPDATE SET generation = excluded.generation,
           last_scheduled = excluded.last_scheduled, last_fire = excluded.last_fire,
           last_task = excluded.last_task, next_fire = excluded.next_fire,
           fires = excluded.fires, skips = excluded.skips, missed = excluded.missed,
           updated_at = excluded.updated_at",
    )?
    .execute(params![
        project,
        name,
        state.generation as i64,
        state.last_scheduled.map(ts),
        state.last_fire.map(ts),
        state.last_task.map(|t| t as i64),
        state.next_fire.map(ts),
        state.fires as i64,
        state.skips as i64,
        state.missed as i64,
        ts(now),
    ])?;
    Ok(())
}

fn insert_event(
    c: &Connection,
    project: &str,
    name: &str,
    e: &TriggerEvent,
) -> rusqlite::Result<usize> {
    c.prepare_cached(
        "INSERT INTO trigger_events (project, name, at, kind, scheduled, task_id, lateness_ms, reason)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        project,
        name,
        ts(e.at),
        e.kind.as_str(),
        e.scheduled.map(ts),
        e.task.map(|t| t as i64),
        e.lateness_ms,
        e.reason,
    ])
}

/// The trigger tables of one SQLite database.
pub struct Triggers {
    pair: Pair,
}

impl Triggers {
    /// Opens the trigger tables of the database in `data_dir` (migrations already ran).
    pub fn open(data_dir: &Path) -> Result<Triggers> {
        Ok(Triggers {
            pair: Pair::open(data_dir)?,
        })
    }

    /// Runs `f` in one write transaction (BEGIN IMMEDIATE) and commits it.
    fn write(&self, f: impl FnOnce(&Connection) -> Result<()>) -> Result<()> {
        self.pair.write(|c| {
            let tx = immediate(c)?;
            f(&tx)?;
            tx.commit()?;
            Ok(())
        })
    }
}

/// The columns of a `trigger_state` row that make a [`TriggerState`], in this order (a macro, so
/// that the statements below are built at compile time).
macro_rules! state_columns {
    () => {
        "generation, last_scheduled, last_fire, last_task, next_fire, fires, skips, missed"
    };
}

/// A [`TriggerState`] as its row holds it (timestamps as text), read from `state_columns!()`
/// starting at column `at`.
struct StateRow {
    generation: i64,
    instants: [Option<String>; 3],
    task: Option<i64>,
    counts: [i64; 3],
}

impl StateRow {
    fn read(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<StateRow> {
        Ok(StateRow {
            generation: r.get(at)?,
            instants: [r.get(at + 1)?, r.get(at + 2)?, r.get(at + 4)?],
            task: r.get(at + 3)?,
            counts: [r.get(at + 5)?, r.get(at + 6)?, r.get(at + 7)?],
        })
    }

    fn into_state(self) -> Result<TriggerState> {
        let [sched, fire, next] = self.instants;
        let [fires, skips, missed] = self.counts;
        Ok(TriggerState {
            generation: self.generation as u64,
            last_scheduled: opt_ts(sched)?,
            last_fire: opt_ts(fire)?,
            last_task: self.task.map(|t| t as u64),
            next_fire: opt_ts(next)?,
            fires: fires as u64,
            skips: skips as u64,
            missed: missed as u64,
        })
    }
}

impl TriggerStore for Triggers {
    fn all(&self) -> Result<HashMap<(String, String), TriggerState>> {
        self.pair.read(|c| {
            let mut stmt = c.prepare_cached(concat!(
                "SELECT project, name, ",
                state_columns!(),
                " FROM trigger_state"
            ))?;
            let rows = stmt.query_map([], |r| {
                Ok((
                    (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                    StateRow::read(r, 2)?,
                ))
            })?;
            let mut out = HashMap::new();
            for row in rows {
                let (key, state) = row?;
                out.insert(key, state.into_state()?);
            }
            Ok(out)
        })
    }

    fn get(&self, project: &str, name: &str) -> Result<Option<TriggerState>> {
        self.pair.read(|c| {
            c.prepare_cached(concat!(
                "SELECT ",
                state_columns!(),
                " FROM trigger_state WHERE project = ?1 AND name = ?2"
            ))?
            .query_row(params![project, name], |r| StateRow::read(r, 0))
            .optional()?
            .map(StateRow::into_state)
            .transpose()
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
        self.write(|tx| save_in(tx, project, name, state, event, now))
    }

    fn save_many(&self, rows: &[SaveRow], now: DateTime<Utc>) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.write(|tx| {
            for r in rows {
                save_in(tx, &r.project, &r.name, &r.state, r.event.as_ref(), now)?;
            }
            Ok(())
        })
    }

    fn manual_fire(&self, project: &str, name: &str, e: &TriggerEvent) -> Result<()> {
        let fired = e.kind == EventKind::Fired;
        self.write(|tx| {
            insert_event(tx, project, name, e)?;
            // A trigger without a state row yet gets one with generation 0, which its
            // TriggerActor takes as "start afresh", as it would without a row.
            tx.prepare_cached(
                "INSERT INTO trigger_state (project, name, generation, manual_fires, manual_skips,
                   last_manual_fire, last_manual_task, updated_at)
                 VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (project, name) DO UPDATE SET
                   manual_fires = manual_fires + excluded.manual_fires,
                   manual_skips = manual_skips + excluded.manual_skips,
                   last_manual_fire = coalesce(excluded.last_manual_fire, last_manual_fire),
                   last_manual_task = coalesce(excluded.last_manual_task, last_manual_task)",
            )?
            .execute(params![
                project,
                name,
                i64::from(fired),
                i64::from(!fired),
                fired.then(|| ts(e.at)),
                e.task.filter(|_| fired).map(|t| t as i64),
                ts(e.at),
            ])?;
            Ok(())
        })
    }

    fn manual_fires(&self, project: &str, name: &str) -> Result<ManualFires> {
        self.pair.read(|c| {
            let row = c
                .prepare_cached(
                    "SELECT manual_fires, manual_skips, last_manual_fire, last_manual_task
                     FROM trigger_state WHERE project = ?1 AND name = ?2",
                )?
                .query_row(params![project, name], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, Option<i64>>(3)?,
                    ))
                })
                .optional()?;
            Ok(match row {
                Some((fires, skips, last_fire, last_task)) => ManualFires {
                    fires: fires as u64,
                    skips: skips as u64,
                    last_fire: opt_ts(last_fire)?,
                    last_task: last_task.map(|t| t as u64),
                },
                None => ManualFires::default(),
            })
        })
    }

    fn remove(&self, project: &str, name: &str) -> Result<()> {
        self.write(|tx| {
            tx.prepare_cached("DELETE FROM trigger_state WHERE project = ?1 AND name = ?2")?
                .execute(params![project, name])?;
            tx.prepare_cached("DELETE FROM trigger_events WHERE project = ?1 AND name = ?2")?
                .execute(params![project, name])?;
            Ok(())
        })
    }

    fn events(&self, project: &str, name: &str, limit: usize) -> Result<Vec<TriggerEvent>> {
        self.pair.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT at, kind, scheduled, task_id, lateness_ms, reason FROM trigger_events
                 WHERE project = ?1 AND name = ?2 ORDER BY id DESC LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![project, name, limit as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<f64>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (at, kind, scheduled, task, lateness, reason) = row?;
                out.push(TriggerEvent {
                    at: parse_ts(&at)?,
                    kind: EventKind::parse(&kind),
                    scheduled: opt_ts(scheduled)?,
                    task: task.map(|t| t as u64),
                    lateness_ms: lateness,
                    reason,
                });
            }
            Ok(out)
        })
    }
}
