//! The SQLite backend: one database file in the data dir (rusqlite, bundled SQLite, WAL), its
//! versioned schema migrations, the one connection helper every table group opens its
//! connections with, and the text form of the timestamps it stores. Each submodule implements
//! one of the store's traits: [`Resources`], [`Tasks`], [`Triggers`], [`Rotations`],
//! [`Verifications`], [`Replays`], [`Deliveries`]; `commit.rs` is the group commit that creates
//! tasks.
//!
//! Several connections write (desired state, tasks, triggers, rotations, verification stamps);
//! every write transaction is `BEGIN IMMEDIATE`, so that a writer waits (`busy_timeout`)
//! instead of failing when it would otherwise upgrade a stale read snapshot. Desired state and
//! rotations commit with `synchronous=FULL`, and so does the creation of a task (with the webhook
//! delivery id it answers), in group commits: whoever was told a task exists may rely on it. The
//! busy updates (task progress, triggers, verification stamps) commit with `synchronous=NORMAL`:
//! a commit survives a crash or `kill -9` of the daemon (the WAL is in the operating system's
//! cache) but the last few may be lost on power failure — they roll back to an earlier state of
//! a task that exists, which the crash recovery handles like any interrupted run.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::{Connection, Transaction, TransactionBehavior};

use super::crypto::SecretKey;
use super::{Result, StoreError, Stores};
use crate::layout::DB_FILE;

mod cluster;
mod commit;
mod deliveries;
mod replay;
mod resources;
mod retention;
mod rotations;
mod task_nodes;
mod tasks;
mod triggers;
mod verifications;

pub use cluster::Cluster;
pub use deliveries::Deliveries;
pub use replay::Replays;
pub use resources::Resources;
pub use rotations::Rotations;
pub use tasks::Tasks;
pub use triggers::Triggers;
pub use verifications::Verifications;

/// Opens every store of the SQLite database in `data_dir` (which must exist): loads (or creates)
/// the secret key file, runs the migrations, and opens each table group's connections.
pub fn open(data_dir: &Path) -> Result<Stores> {
    open_with_key(data_dir, SecretKey::load_or_create(data_dir)?)
}

/// [`open`] with the secret key already loaded (`--secret-key-file`).
pub fn open_with_key(data_dir: &Path, key: SecretKey) -> Result<Stores> {
    let resources = Resources::open_with_key(data_dir, key)?;
    retention::switch_to_incremental_vacuum(data_dir);
    // The webhook server's two batched writers share one pair of connections.
    let webhook = Arc::new(Pair::open(data_dir)?);
    Ok(Stores {
        resources: Arc::new(resources),
        tasks: Arc::new(Tasks::open(data_dir)?),
        triggers: Arc::new(Triggers::open(data_dir)?),
        rotations: Arc::new(Rotations::open(data_dir)?),
        verifications: Arc::new(Verifications::new(webhook.clone())),
        replay: Arc::new(Replays::open(data_dir)?),
        deliveries: Arc::new(Deliveries::new(webhook)),
        cluster: Arc::new(Cluster::open(data_dir)?),
        feed: None,
    })
}

/// Schema migrations; `PRAGMA user_version` holds how many have run.
const MIGRATIONS: &[&str] = &[
    // 1: desired state, secret key metadata, change history.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
     INSERT INTO meta (key, value) VALUES ('revision', '0');
     CREATE TABLE resources (
        project TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
        generation INTEGER NOT NULL, metadata TEXT NOT NULL, spec TEXT NOT NULL,
        sealed BLOB, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
        PRIMARY KEY (project, kind, name));
     CREATE TABLE secret_keys (
        project TEXT NOT NULL, store TEXT NOT NULL, key TEXT NOT NULL,
        fingerprint TEXT NOT NULL, length INTEGER NOT NULL, updated_at TEXT NOT NULL,
        last_verified_at TEXT, last_verified_trigger TEXT,
        PRIMARY KEY (project, store, key));
     CREATE TABLE history (
        id INTEGER PRIMARY KEY, at TEXT NOT NULL, revision INTEGER NOT NULL,
        project TEXT NOT NULL, kind TEXT NOT NULL, name TEXT NOT NULL,
        generation INTEGER NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL);
     CREATE INDEX history_by_resource ON history (project, kind, name, id DESC);",
    // 2: tasks, their step runs and events.
    "CREATE TABLE tasks (
        id INTEGER PRIMARY KEY, project TEXT NOT NULL, workflow TEXT NOT NULL,
        workspace TEXT NOT NULL, workspace_root TEXT NOT NULL, workflow_spec TEXT NOT NULL,
        goal TEXT, payload TEXT, origin TEXT NOT NULL, trigger TEXT, scheduled_at TEXT,
        state TEXT NOT NULL, reason TEXT, held INTEGER NOT NULL DEFAULT 0,
        cycle INTEGER NOT NULL DEFAULT 0, step TEXT,
        created_at TEXT NOT NULL, started_at TEXT, finished_at TEXT);
     CREATE INDEX tasks_by_state ON tasks (state, id);
     CREATE INDEX tasks_by_workflow ON tasks (project, workflow, state);
     CREATE INDEX tasks_by_trigger ON tasks (project, trigger, id DESC);
     CREATE TABLE step_runs (
        id INTEGER PRIMARY KEY, task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
        step TEXT NOT NULL, cycle INTEGER NOT NULL, attempt INTEGER NOT NULL,
        agent TEXT, argv TEXT NOT NULL, pid INTEGER, pid_start INTEGER,
        state TEXT NOT NULL, exit_code INTEGER, signal INTEGER, reason TEXT,
        stdout TEXT, stdout_bytes INTEGER NOT NULL DEFAULT 0, stderr_bytes INTEGER NOT NULL DEFAULT 0,
        log_path TEXT NOT NULL, started_at TEXT NOT NULL, finished_at TEXT);
     CREATE INDEX step_runs_by_task ON step_runs (task_id, id);
     CREATE INDEX step_runs_by_state ON step_runs (state);
     CREATE TABLE task_events (
        id INTEGER PRIMARY KEY, task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
        at TEXT NOT NULL, message TEXT NOT NULL);
     CREATE INDEX task_events_by_task ON task_events (task_id, id);",
    // 3: cron trigger state and fire history.
    "CREATE TABLE trigger_state (
        project TEXT NOT NULL, name TEXT NOT NULL, generation INTEGER NOT NULL,
        last_scheduled TEXT, last_fire TEXT, last_task INTEGER, next_fire TEXT,
        fires INTEGER NOT NULL DEFAULT 0, skips INTEGER NOT NULL DEFAULT 0,
        missed INTEGER NOT NULL DEFAULT 0, updated_at TEXT NOT NULL,
        PRIMARY KEY (project, name));
     CREATE TABLE trigger_events (
        id INTEGER PRIMARY KEY, project TEXT NOT NULL, name TEXT NOT NULL, at TEXT NOT NULL,
        kind TEXT NOT NULL, scheduled TEXT, task_id INTEGER, lateness_ms REAL, reason TEXT);
     CREATE INDEX trigger_events_by_trigger ON trigger_events (project, name, id DESC);",
    // 4: staged secret rotations.
    "CREATE TABLE rotations (
        id INTEGER PRIMARY KEY, project TEXT NOT NULL, store TEXT NOT NULL, key TEXT NOT NULL,
        provider TEXT NOT NULL, stage TEXT NOT NULL, outcome TEXT, reason TEXT,
        old_fingerprint TEXT, new_fingerprint TEXT, platform_set INTEGER NOT NULL DEFAULT 0,
        started_at TEXT NOT NULL, set_at TEXT, verified_at TEXT, finished_at TEXT,
        updated_at TEXT NOT NULL);
     CREATE INDEX rotations_by_store ON rotations (project, store, id DESC);",
    // 5: webhook delivery ids that created a task, until their replay window ends.
    "CREATE TABLE webhook_deliveries (
        project TEXT NOT NULL, trigger TEXT NOT NULL, delivery TEXT NOT NULL,
        expires_at TEXT NOT NULL, task_id INTEGER NOT NULL,
        PRIMARY KEY (project, trigger, delivery));
     CREATE INDEX webhook_deliveries_by_expiry ON webhook_deliveries (expires_at);",
    // 6: "last tested at" of SecretStore keys (dry runs and `webhook test`), kept apart from
    // "last verified at" (real deliveries).
    "ALTER TABLE secret_keys ADD COLUMN last_tested_at TEXT;
     ALTER TABLE secret_keys ADD COLUMN last_tested_trigger TEXT;
     ALTER TABLE secret_keys ADD COLUMN last_tested_by TEXT;",
    // 7: manual fires (`trigger fire`), counted apart from the TriggerActor's own columns.
    "ALTER TABLE trigger_state ADD COLUMN manual_fires INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE trigger_state ADD COLUMN manual_skips INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE trigger_state ADD COLUMN last_manual_fire TEXT;
     ALTER TABLE trigger_state ADD COLUMN last_manual_task INTEGER;",
    // 8: the three-way merge of SecretStore applies: what the last apply declared per key
    // (fingerprints and keep markers, JSON), and who set each key's live value.
    "ALTER TABLE resources ADD COLUMN applied TEXT;
     ALTER TABLE secret_keys ADD COLUMN set_by TEXT;",
    // 9: what stream-json agents report per step run (`turns` is set for such a run only; the
    // tools called are JSON `[{name, count}]`), and each task's git worktree.
    "ALTER TABLE step_runs ADD COLUMN turns INTEGER;
     ALTER TABLE step_runs ADD COLUMN result TEXT;
     ALTER TABLE step_runs ADD COLUMN result_truncated INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE step_runs ADD COLUMN result_subtype TEXT;
     ALTER TABLE step_runs ADD COLUMN is_error INTEGER;
     ALTER TABLE step_runs ADD COLUMN input_tokens INTEGER;
     ALTER TABLE step_runs ADD COLUMN output_tokens INTEGER;
     ALTER TABLE step_runs ADD COLUMN cost_usd REAL;
     ALTER TABLE step_runs ADD COLUMN session_id TEXT;
     ALTER TABLE step_runs ADD COLUMN tools TEXT;
     ALTER TABLE step_runs ADD COLUMN bad_lines INTEGER;
     ALTER TABLE tasks ADD COLUMN worktree_state TEXT;
     ALTER TABLE tasks ADD COLUMN worktree_path TEXT;",
    // 10: the webhook delivery log (bounded per trigger by its writer).
    "CREATE TABLE webhook_delivery_log (
        id INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL, trigger TEXT NOT NULL,
        received_at TEXT NOT NULL, status INTEGER NOT NULL, outcome TEXT NOT NULL,
        key_name TEXT, task_id INTEGER, delivery_id TEXT, payload_bytes INTEGER NOT NULL,
        payload TEXT);
     CREATE INDEX webhook_delivery_log_by_trigger ON webhook_delivery_log (project, trigger, id);",
    // 11: membership and leases (one node on SQLite: the data dir's lock allows one daemon),
    // and each cron fire's scheduled instant, unique per trigger.
    "CREATE TABLE nodes (
        id TEXT PRIMARY KEY, instance TEXT NOT NULL, host TEXT NOT NULL, pid INTEGER NOT NULL,
        version TEXT NOT NULL, started_at TEXT NOT NULL, heartbeat_at TEXT NOT NULL,
        revision INTEGER NOT NULL, ttl_ms INTEGER NOT NULL, webhook TEXT,
        running INTEGER NOT NULL DEFAULT 0, stopped_at TEXT);
     CREATE TABLE leases (
        name TEXT PRIMARY KEY, holder TEXT NOT NULL, token INTEGER NOT NULL,
        acquired_at TEXT NOT NULL, expires_at TEXT NOT NULL);
     CREATE TABLE cron_fires (
        project TEXT NOT NULL, trigger TEXT NOT NULL, scheduled_at TEXT NOT NULL,
        task_id INTEGER NOT NULL REFERENCES tasks (id) ON DELETE CASCADE,
        PRIMARY KEY (project, trigger, scheduled_at));
     CREATE INDEX cron_fires_by_task ON cron_fires (task_id);",
    // 12: the node that runs each task, and the step runs whose process groups a dead node
    // left behind (PostgreSQL's migration 3; on SQLite the data dir has one node).
    "ALTER TABLE tasks ADD COLUMN node TEXT;
     ALTER TABLE step_runs ADD COLUMN orphaned INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX tasks_by_node ON tasks (node, state);
     CREATE INDEX step_runs_orphaned ON step_runs (task_id) WHERE orphaned;",
    // 13: the node that runs each staged rotation (its claim; PostgreSQL's migration 4).
    "ALTER TABLE rotations ADD COLUMN node TEXT;",
];

/// Formats a time the way the store writes it (RFC 3339, milliseconds, `Z`).
fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn parse_ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt {
            what: "timestamp".into(),
            detail: format!("{s:?}: {e}"),
        })
}

fn opt_ts(s: Option<String>) -> Result<Option<DateTime<Utc>>> {
    s.as_deref().map(parse_ts).transpose()
}

/// How a connection commits (see the module doc).
#[derive(Clone, Copy)]
enum Durability {
    Full,
    Normal,
}

/// The size the write-ahead log is cut back to whenever a checkpoint has emptied it: a burst
/// of writes (a big prune) grows it, and without a limit it would keep its high-water size.
const WAL_SIZE_LIMIT: u64 = 8 << 20;

/// Opens a connection to the database with the durability settings: the one way this backend
/// connects.
fn connect(data_dir: &Path, durability: Durability) -> Result<Connection> {
    let conn = Connection::open(data_dir.join(DB_FILE))?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000; PRAGMA journal_size_limit={WAL_SIZE_LIMIT};",
    ))?;
    if let Durability::Normal = durability {
        conn.execute_batch("PRAGMA synchronous=NORMAL;")?;
    }
    Ok(conn)
}

/// Runs the migrations that have not run yet, in one transaction.
fn migrate(conn: &mut Connection) -> Result<()> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let supported = MIGRATIONS.len() as i64;
    if version > supported {
        return Err(StoreError::TooNew {
            found: version,
            supported,
        });
    }
    let tx = immediate(conn)?;
    for sql in &MIGRATIONS[version as usize..] {
        tx.execute_batch(sql)?;
    }
    tx.execute_batch(&format!("PRAGMA user_version = {supported}"))?;
    tx.commit()?;
    Ok(())
}

/// Begins a write transaction (`BEGIN IMMEDIATE`).
fn immediate(c: &mut Connection) -> rusqlite::Result<Transaction<'_>> {
    c.transaction_with_behavior(TransactionBehavior::Immediate)
}

fn lock(m: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    // A panic while holding the lock leaves SQLite consistent (transactions roll back), so a
    // poisoned lock is still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs blocking SQLite work without stalling the async runtime's other tasks.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// One connection behind a lock, its work run in [`blocking`].
struct Conn(Mutex<Connection>);

impl Conn {
    fn open(data_dir: &Path, durability: Durability) -> Result<Conn> {
        Ok(Conn(Mutex::new(connect(data_dir, durability)?)))
    }

    fn run<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        blocking(|| f(&mut lock(&self.0)))
    }
}

/// A writer (`synchronous=NORMAL`) and a read-only reader on the database, so that reads never
/// wait behind a commit (WAL).
struct Pair {
    writer: Conn,
    reader: Conn,
}

impl Pair {
    /// Opens the pair (migrations already ran).
    fn open(data_dir: &Path) -> Result<Pair> {
        let writer = Conn::open(data_dir, Durability::Normal)?;
        let reader = connect(data_dir, Durability::Full)?;
        reader.execute_batch("PRAGMA query_only=ON;")?;
        Ok(Pair {
            writer,
            reader: Conn(Mutex::new(reader)),
        })
    }

    fn write<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        self.writer.run(f)
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> Result<T>) -> Result<T> {
        self.reader.run(|c| f(c))
    }
}

/// The backend-neutral checks of `store::conformance`, on a fresh SQLite database each.
#[cfg(test)]
mod conformance_tests {
    use crate::store::{conformance, task_cases};

    fn stores() -> (tempfile::TempDir, crate::store::Stores) {
        let dir = tempfile::tempdir().expect("temp dir");
        let stores = super::open(dir.path()).expect("stores");
        (dir, stores)
    }

    #[test]
    fn desired_state_and_stamps() {
        let (_dir, s) = stores();
        conformance::desired_state_and_stamps(&*s.resources, &*s.verifications);
    }

    #[test]
    fn trigger_state() {
        let (_dir, s) = stores();
        conformance::trigger_state(&*s.triggers);
    }

    #[test]
    fn rotations() {
        let (_dir, s) = stores();
        conformance::rotations(&*s.rotations);
    }

    #[test]
    fn rotation_claims() {
        let (_dir, s) = stores();
        conformance::rotation_claims(&*s.rotations, &*s.cluster);
    }

    #[test]
    fn delivery_log() {
        let (_dir, s) = stores();
        conformance::delivery_log(&*s.deliveries);
    }

    #[test]
    fn membership_and_lease() {
        let (_dir, s) = stores();
        conformance::membership(&*s.cluster);
        let (_dir, s) = stores();
        conformance::lease(&*s.cluster);
    }

    #[test]
    fn cron_fires_are_fenced_and_once() {
        let (_dir, s) = stores();
        conformance::cron_fires_are_fenced_and_once(&*s.tasks, &*s.cluster);
    }

    #[test]
    fn a_history_limit_keeps_exactly_the_newest_n_of_each_outcome() {
        let (_dir, s) = stores();
        task_cases::a_history_limit_keeps_exactly_the_newest_n_of_each_outcome(&*s.tasks);
    }

    #[test]
    fn the_count_keeps_each_workflows_newest_and_leaves_history_limited_tasks_alone() {
        let (_dir, s) = stores();
        task_cases::the_count_keeps_each_workflows_newest_and_leaves_history_limited_tasks_alone(
            &*s.tasks,
        );
    }

    #[test]
    fn the_age_sweep_removes_what_finished_before_the_cut_off_in_batches() {
        let (_dir, s) = stores();
        task_cases::the_age_sweep_removes_what_finished_before_the_cut_off_in_batches(&*s.tasks);
    }

    #[test]
    fn delete_removes_a_finished_task_with_its_rows_and_refuses_the_others() {
        let (_dir, s) = stores();
        task_cases::delete_removes_a_finished_task_with_its_rows_and_refuses_the_others(&*s.tasks);
    }

    #[test]
    fn task_life() {
        let (_dir, s) = stores();
        task_cases::task_life(&*s.tasks);
    }

    #[test]
    fn interrupted_runs() {
        let (_dir, s) = stores();
        task_cases::interrupted_runs(&*s.tasks);
    }

    #[test]
    fn tasks_name_their_node() {
        let (_dir, s) = stores();
        conformance::tasks_name_their_node(&*s.tasks);
    }

    #[test]
    fn a_dead_nodes_tasks_fail() {
        let (_dir, s) = stores();
        conformance::a_dead_nodes_tasks_fail(&*s.tasks, &*s.cluster);
    }

    #[test]
    fn delivery_replay() {
        let (_dir, s) = stores();
        task_cases::delivery_replay(&*s.tasks, &*s.replay);
    }

    #[test]
    fn storage() {
        let (_dir, s) = stores();
        task_cases::storage(&*s.tasks);
    }
}
