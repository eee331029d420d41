//! Durable state of cron triggers: per trigger the last scheduled instant, last fire, last task,
//! next fire and counters, plus a bounded history of fires, skips and missed fires with their
//! reasons. TriggerActors write it; `get`/`describe trigger` read it. The records themselves
//! ([`TriggerState`], [`TriggerEvent`]) are the domain's (`domain::trigger_plan`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::Result;
use crate::domain::trigger_plan::{TriggerEvent, TriggerState};

/// How many history rows are kept per trigger.
pub const HISTORY_ROWS: i64 = 200;

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

    /// Appends a history row without touching the state (manual and webhook fires: the
    /// TriggerActor owns the state row).
    fn event(&self, project: &str, name: &str, e: &TriggerEvent) -> Result<()>;

    /// Forgets a deleted trigger.
    fn remove(&self, project: &str, name: &str) -> Result<()>;

    /// The newest `limit` history rows of a trigger, newest first.
    fn events(&self, project: &str, name: &str, limit: usize) -> Result<Vec<TriggerEvent>>;
}
