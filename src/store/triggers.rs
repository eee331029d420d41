//! Durable state of cron triggers: per trigger the last scheduled instant, last fire, last task,
//! next fire and counters, plus a bounded history of fires, skips and missed fires with their
//! reasons. TriggerActors write it; `get`/`describe trigger` read it. The records themselves
//! ([`TriggerState`], [`TriggerEvent`]) are the domain's (`domain::trigger_plan`). Manual fires
//! (`orchestrator trigger fire`) are counted in [`ManualFires`], apart from the TriggerActor's
//! state, so that neither writer overwrites the other's counts; `get trigger` adds them up.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::Result;
use crate::domain::trigger_plan::{TriggerEvent, TriggerState};

/// How many history rows are kept per trigger.
pub const HISTORY_ROWS: i64 = 200;

/// The manual fires of one trigger: how many created a task, how many were skipped (by the
/// concurrency policy, or because creating the task failed), and the last one that created a
/// task.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ManualFires {
    pub fires: u64,
    pub skips: u64,
    pub last_fire: Option<DateTime<Utc>>,
    pub last_task: Option<u64>,
}

/// One trigger's state, and a history row to go with it, for [`TriggerStore::save_many`].
#[derive(Debug, Clone, PartialEq)]
pub struct SaveRow {
    pub project: String,
    pub name: String,
    pub state: TriggerState,
    pub event: Option<TriggerEvent>,
}

/// The trigger tables. The history of a trigger is trimmed to about [`HISTORY_ROWS`] as it
/// grows.
pub trait TriggerStore: Send + Sync {
    /// The state of every trigger, keyed by (project, name).
    fn all(&self) -> Result<HashMap<(String, String), TriggerState>>;

    /// The state of one trigger.
    fn get(&self, project: &str, name: &str) -> Result<Option<TriggerState>>;

    /// Writes a trigger's state and, optionally, one history row, in one transaction.
    fn save(
        &self,
        project: &str,
        name: &str,
        state: &TriggerState,
        event: Option<&TriggerEvent>,
        now: DateTime<Utc>,
    ) -> Result<()>;

    /// Writes the states (and history rows) of many triggers in one transaction: the supervisor
    /// planning triggers it does not start an actor for.
    fn save_many(&self, rows: &[SaveRow], now: DateTime<Utc>) -> Result<()>;

    /// Records a manual fire (`trigger fire`): its history row and its [`ManualFires`] count, in
    /// one transaction, without touching the TriggerActor's state (it owns those columns).
    fn manual_fire(&self, project: &str, name: &str, e: &TriggerEvent) -> Result<()>;

    /// The manual fires of a trigger so far (zero if none).
    fn manual_fires(&self, project: &str, name: &str) -> Result<ManualFires>;

    /// Forgets a deleted trigger.
    fn remove(&self, project: &str, name: &str) -> Result<()>;

    /// The newest `limit` history rows of a trigger, newest first.
    fn events(&self, project: &str, name: &str, limit: usize) -> Result<Vec<TriggerEvent>>;
}
