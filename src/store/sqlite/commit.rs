//! Group commit of new tasks: [`GroupCommit`] owns a thread that takes every task creation
//! waiting, writes them all (each task, its first event and the webhook delivery id it answers)
//! in one transaction on the task tables' writer connection, commits it with
//! `synchronous=FULL` — the WAL is fsynced before `COMMIT` returns — and only then answers each
//! caller. While one batch is being committed the next callers queue, so under load a batch holds
//! every creation that arrived during the previous commit: N concurrent creations cost one fsync,
//! not N, and a lone creation waits for nothing but its own.
//!
//! A creation whose delivery id the table already holds (unexpired) writes nothing and is
//! answered [`StoreError::DuplicateDelivery`] with the task that id created: the table, not a
//! map in memory, decides what is a replay, so the window holds however many ids arrive in it
//! and survives a restart. Two creations of one id in a batch see each other the same way.
//!
//! The same transaction prunes expired delivery ids (a few more than it adds), so the replay
//! table stays about as large as the window. A batch that fails is retried one creation at a
//! time, so that each caller gets its own answer; a panic while writing fails that batch's callers
//! and the thread goes on with the next.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

use chrono::{DateTime, Utc};
use prometheus_client::metrics::histogram::Histogram;
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use super::replay::recorded;
use super::{Pair, blocking, immediate, lock, ts};
use crate::api::WorktreeState;
use crate::store::cluster::LEADER;
use crate::store::task_rows::created_message;
use crate::store::{NewTask, Result, SeenDelivery, StoreError};

/// The most creations one transaction takes.
const MAX_BATCH: usize = 1024;

/// One creation waiting for its commit.
struct Job {
    task: NewTask,
    delivery: Option<SeenDelivery>,
    now: DateTime<Utc>,
    done: mpsc::SyncSender<Result<u64>>,
}

/// What the writer thread has done so far.
pub(super) struct Counts {
    /// Creations handed to the thread.
    pub(super) sent: AtomicU64,
    /// Transactions committed (each one fsync).
    pub(super) commits: AtomicU64,
    /// How long each transaction took to write and fsync (`metrics`'s
    /// `orchestrator_store_commit_duration_seconds`).
    pub(super) seconds: Histogram,
}

impl Default for Counts {
    fn default() -> Counts {
        Counts {
            sent: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            seconds: crate::metrics::commit_histogram(),
        }
    }
}

/// The task creations' writer thread; it stops when this is dropped.
pub(super) struct GroupCommit {
    jobs: mpsc::Sender<Job>,
    pub(super) counts: Arc<Counts>,
}

impl GroupCommit {
    /// Starts the writer thread on `pair`'s writer connection.
    pub(super) fn start(pair: Arc<Pair>) -> Result<GroupCommit> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let counts = Arc::new(Counts::default());
        let seen = counts.clone();
        std::thread::Builder::new()
            .name("task-commit".into())
            .spawn(move || run(&pair, &queue, &seen))
            .map_err(StoreError::Thread)?;
        Ok(GroupCommit { jobs, counts })
    }

    /// Creates a task (and records `delivery`) in the next group commit; returns its id once the
    /// commit is durable. Blocks the calling thread meanwhile.
    pub(super) fn create(
        &self,
        task: &NewTask,
        delivery: Option<&SeenDelivery>,
        now: DateTime<Utc>,
    ) -> Result<u64> {
        let (done, answer) = mpsc::sync_channel(1);
        let job = Job {
            task: task.clone(),
            delivery: delivery.cloned(),
            now,
            done,
        };
        self.jobs.send(job).map_err(|_| StoreError::WriterStopped)?;
        self.counts.sent.fetch_add(1, Ordering::Relaxed);
        blocking(|| answer.recv()).unwrap_or(Err(StoreError::WriterStopped))
    }
}

/// The writer thread: one batch per turn, until every sender is gone.
fn run(pair: &Pair, queue: &mpsc::Receiver<Job>, counts: &Counts) {
    while let Ok(first) = queue.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        match catch_unwind(AssertUnwindSafe(|| commit(pair, &batch, counts))) {
            Ok(results) => {
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.done.send(result);
                }
            }
            // The callers' answer channels close with the batch: each gets `WriterStopped`.
            Err(_) => tracing::error!(
                tasks = batch.len(),
                "the task writer panicked; these task creations were not committed"
            ),
        }
    }
}

/// What one job's insert did.
enum Inserted {
    Task(u64),
    /// The delivery was already recorded: it created this task, and nothing was written.
    Duplicate(u64),
    /// A cron fire whose lease is gone: nothing was written.
    Fenced,
    /// A cron fire of an instant that already created this task: nothing was written.
    Fired(u64),
}

impl Inserted {
    fn answer(self) -> Result<u64> {
        match self {
            Inserted::Task(id) => Ok(id),
            Inserted::Duplicate(task) => Err(StoreError::DuplicateDelivery { task }),
            Inserted::Fenced => Err(StoreError::Fenced),
            Inserted::Fired(task) => Err(StoreError::AlreadyFired { task }),
        }
    }
}

/// Writes `batch` in one durable transaction; if that fails, each job in its own.
fn commit(pair: &Pair, batch: &[Job], counts: &Counts) -> Vec<Result<u64>> {
    let mut conn = lock(&pair.writer.0);
    let all = durable(&mut conn, &counts.seconds, |tx| {
        let ids = batch
            .iter()
            .map(|job| insert(tx, job))
            .collect::<Result<Vec<Inserted>>>()?;
        prune(tx, batch)?;
        Ok(ids)
    });
    match all {
        Ok(ids) => {
            counts.commits.fetch_add(1, Ordering::Relaxed);
            ids.into_iter().map(Inserted::answer).collect()
        }
        Err(e) if batch.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::warn!(error = %e, tasks = batch.len(), "a group commit failed; committing its tasks one by one");
            batch
                .iter()
                .map(|job| {
                    let inserted = durable(&mut conn, &counts.seconds, |tx| insert(tx, job))?;
                    counts.commits.fetch_add(1, Ordering::Relaxed);
                    inserted.answer()
                })
                .collect()
        }
    }
}

/// Runs `f` in a write transaction committed with `synchronous=FULL` (the connection's setting
/// for its other writes, `NORMAL`, is restored after); the time it took goes to `seconds`.
fn durable<T>(
    conn: &mut Connection,
    seconds: &Histogram,
    f: impl FnOnce(&Transaction<'_>) -> Result<T>,
) -> Result<T> {
    let started = std::time::Instant::now();
    conn.execute_batch("PRAGMA synchronous=FULL")?;
    let result = (|| {
        let tx = immediate(conn)?;
        let value = f(&tx)?;
        tx.commit()?;
        Ok(value)
    })();
    if let Err(e) = conn.execute_batch("PRAGMA synchronous=NORMAL") {
        // Committed either way; the connection just stays at the safer setting.
        tracing::warn!(error = %e, "cannot restore synchronous=NORMAL on the task writer");
    }
    seconds.observe(started.elapsed().as_secs_f64());
    result
}

/// Inserts one task, its first event and its delivery id, unless the delivery was already
/// recorded.
fn insert(tx: &Transaction<'_>, job: &Job) -> Result<Inserted> {
    let (t, now) = (&job.task, job.now);
    if let Some(d) = &job.delivery
        && let Some(task) = recorded(tx, &d.project, &d.trigger, &d.id, now)?
    {
        return Ok(Inserted::Duplicate(task));
    }
    if let Some(fence) = &t.fence {
        let holds = tx
            .prepare_cached("SELECT 1 FROM leases WHERE name = ?1 AND holder = ?2 AND token = ?3")?
            .exists(params![LEADER, fence.holder, fence.token as i64])?;
        if !holds {
            return Ok(Inserted::Fenced);
        }
        if let (Some(trigger), Some(at)) = (&t.trigger, t.scheduled_at) {
            let fired: Option<i64> = tx
                .prepare_cached(
                    "SELECT task_id FROM cron_fires
                     WHERE project = ?1 AND trigger = ?2 AND scheduled_at = ?3",
                )?
                .query_row(params![t.project, trigger, ts(at)], |r| r.get(0))
                .optional()?;
            if let Some(task) = fired {
                return Ok(Inserted::Fired(task as u64));
            }
        }
    }
    tx.prepare_cached(
        "INSERT INTO tasks (project, workflow, workspace, workspace_root, workflow_spec, goal, payload,
           origin, trigger, scheduled_at, state, reason, created_at, finished_at, held, worktree_state)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
    )?
    .execute(params![
        t.project,
        t.workflow,
        t.workspace,
        t.workspace_root,
        t.workflow_spec.to_string(),
        t.goal,
        t.payload,
        t.origin,
        t.trigger,
        t.scheduled_at.map(ts),
        t.state.as_str(),
        t.reason,
        ts(now),
        t.state.is_finished().then(|| ts(now)),
        t.held,
        t.worktree.then(|| WorktreeState::Requested.as_str()),
    ])?;
    let id = tx.last_insert_rowid();
    tx.prepare_cached("INSERT INTO task_events (task_id, at, message) VALUES (?1, ?2, ?3)")?
        .execute(params![id, ts(now), created_message(&t.origin)])?;
    if let Some(d) = &job.delivery {
        tx.prepare_cached(
            "INSERT OR REPLACE INTO webhook_deliveries (project, trigger, delivery, expires_at, task_id)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute(params![d.project, d.trigger, d.id, ts(d.expires_at), id])?;
    }
    if t.fence.is_some()
        && let (Some(trigger), Some(at)) = (&t.trigger, t.scheduled_at)
    {
        tx.prepare_cached(
            "INSERT INTO cron_fires (project, trigger, scheduled_at, task_id) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![t.project, trigger, ts(at), id])?;
    }
    Ok(Inserted::Task(id as u64))
}

/// Deletes delivery ids expired by the batch's time: twice as many as the batch adds (and a
/// few), so that the table shrinks back to the window after a burst.
fn prune(tx: &Transaction<'_>, batch: &[Job]) -> Result<()> {
    let added = batch.iter().filter(|j| j.delivery.is_some()).count();
    let Some(now) = batch.iter().map(|j| j.now).max() else {
        return Ok(());
    };
    if added == 0 {
        return Ok(());
    }
    tx.prepare_cached(
        "DELETE FROM webhook_deliveries WHERE rowid IN (
           SELECT rowid FROM webhook_deliveries WHERE expires_at <= ?1 ORDER BY expires_at LIMIT ?2)",
    )?
    .execute(params![ts(now), (2 * added + 16) as i64])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::super::{Durability, connect, migrate};
    use super::*;
    use crate::api::TaskState;

    fn task(n: usize) -> NewTask {
        NewTask {
            project: "default".into(),
            workflow: "w".into(),
            workspace: "default".into(),
            workspace_root: "/tmp".into(),
            workflow_spec: serde_json::json!({"steps": []}),
            goal: None,
            payload: Some(format!("{{\"n\": {n}}}")),
            origin: "webhook/hook".into(),
            trigger: Some("hook".into()),
            scheduled_at: None,
            state: TaskState::Pending,
            reason: None,
            held: true,
            worktree: false,
            fence: None,
        }
    }

    fn delivery(id: &str, expires_at: DateTime<Utc>) -> SeenDelivery {
        SeenDelivery {
            project: "default".into(),
            trigger: "hook".into(),
            id: id.into(),
            expires_at,
        }
    }

    fn migrated() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        migrate(&mut connect(dir.path(), Durability::Full).expect("connect")).expect("migrate");
        dir
    }

    #[test]
    fn concurrent_creations_share_one_commit_and_each_gets_its_own_row() {
        let dir = migrated();
        let pair = Arc::new(Pair::open(dir.path()).expect("pair"));
        let commits = Arc::new(GroupCommit::start(pair.clone()).expect("writer"));
        const N: usize = 32;
        let now = Utc::now();
        // Hold the writer connection: the thread takes what has arrived and waits for it while
        // the rest queue, so at most two transactions can hold the 32 creations.
        let held = lock(&pair.writer.0);
        let callers: Vec<_> = (0..N)
            .map(|n| {
                let commits = commits.clone();
                std::thread::spawn(move || {
                    let d = delivery(&format!("d-{n}"), now + chrono::Duration::minutes(5));
                    commits.create(&task(n), Some(&d), now)
                })
            })
            .collect();
        let deadline = Instant::now() + Duration::from_secs(30);
        while commits.counts.sent.load(Ordering::Relaxed) < N as u64 {
            assert!(Instant::now() < deadline, "the creations were not all sent");
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(held);
        let mut ids: Vec<u64> = callers
            .into_iter()
            .map(|c| c.join().expect("caller").expect("created"))
            .collect();
        let commits_made = commits.counts.commits.load(Ordering::Relaxed);
        assert!(
            (1..=2).contains(&commits_made),
            "{N} creations took {commits_made} commits"
        );
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), N, "every caller has a task of its own");
        // Committed: another connection sees every task and the delivery it answers.
        let other = connect(dir.path(), Durability::Full).expect("connect");
        for n in 0..N {
            let (payload, task_id): (String, i64) = other
                .query_row(
                    "SELECT t.payload, d.task_id FROM webhook_deliveries d JOIN tasks t ON t.id = d.task_id
                     WHERE d.delivery = ?1",
                    params![format!("d-{n}")],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .expect("the delivery and its task");
            assert_eq!(payload, format!("{{\"n\": {n}}}"));
            assert!(ids.contains(&(task_id as u64)));
        }
    }

    #[test]
    fn delivery_ids_are_kept_until_they_expire_then_pruned() {
        let dir = migrated();
        let stores = crate::store::sqlite::open(dir.path()).expect("stores");
        // The store keeps milliseconds.
        let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("now");
        let past = now - chrono::Duration::seconds(1);
        for n in 0..5 {
            let d = delivery(&format!("old-{n}"), past);
            stores
                .tasks
                .create_with(&task(n), Some(&d), past - chrono::Duration::minutes(5))
                .expect("created");
        }
        let count = || -> i64 {
            connect(dir.path(), Durability::Full)
                .expect("connect")
                .query_row("SELECT count(*) FROM webhook_deliveries", [], |r| r.get(0))
                .expect("count")
        };
        // Each creation prunes what had expired by its time (none of these had).
        assert_eq!(count(), 5);
        let seen = |id: &str| {
            stores
                .replay
                .seen("default", "hook", id, now)
                .expect("seen")
        };
        assert_eq!(seen("old-0"), None, "an expired id is no replay");
        let soon = delivery("soon", now + chrono::Duration::minutes(1));
        let late = delivery("late", now + chrono::Duration::minutes(5));
        let mut ids = Vec::new();
        for d in [&soon, &late] {
            ids.push(
                stores
                    .tasks
                    .create_with(&task(9), Some(d), now)
                    .expect("created")
                    .id,
            );
        }
        assert_eq!(count(), 2, "the expired ids are gone");
        assert_eq!(seen("soon"), Some(ids[0]));
        assert_eq!(seen("late"), Some(ids[1]));
        assert_eq!(
            stores
                .replay
                .seen("default", "other", "late", now)
                .expect("seen"),
            None,
            "the same id under another trigger is another delivery"
        );
        // A creation without a delivery records none.
        stores.tasks.create(&task(10), now).expect("created");
        assert_eq!(count(), 2);
    }

    #[test]
    fn a_delivery_id_creates_one_task_within_its_window_and_a_new_one_after() {
        let dir = migrated();
        let stores = crate::store::sqlite::open(dir.path()).expect("stores");
        let now = DateTime::from_timestamp_millis(Utc::now().timestamp_millis()).expect("now");
        let d = delivery("d-1", now + chrono::Duration::minutes(5));
        let first = stores
            .tasks
            .create_with(&task(1), Some(&d), now)
            .expect("created")
            .id;
        let tasks = || -> i64 {
            connect(dir.path(), Durability::Full)
                .expect("connect")
                .query_row("SELECT count(*) FROM tasks", [], |r| r.get(0))
                .expect("count")
        };
        match stores.tasks.create_with(&task(2), Some(&d), now) {
            Err(StoreError::DuplicateDelivery { task }) => assert_eq!(task, first),
            other => panic!("a replay was not refused: {other:?}"),
        }
        assert_eq!(tasks(), 1, "the replay wrote nothing");
        // Two creations of one new id in one batch: one task, one duplicate.
        let pair = Arc::new(Pair::open(dir.path()).expect("pair"));
        let commits = GroupCommit::start(pair.clone()).expect("writer");
        let twin = delivery("d-2", now + chrono::Duration::minutes(5));
        let jobs: Vec<_> = (0..2)
            .map(|n| {
                let (done, answer) = mpsc::sync_channel(1);
                let job = Job {
                    task: task(n),
                    delivery: Some(twin.clone()),
                    now,
                    done,
                };
                (job, answer)
            })
            .collect();
        let (batch, answers): (Vec<_>, Vec<_>) = jobs.into_iter().unzip();
        let results = commit(&pair, &batch, &commits.counts);
        drop(answers);
        match (&results[0], &results[1]) {
            (Ok(id), Err(StoreError::DuplicateDelivery { task })) => assert_eq!(id, task),
            other => panic!("one batch made two tasks of one delivery: {other:?}"),
        }
        // After its window the id is new again.
        let later = now + chrono::Duration::minutes(6);
        let again = delivery("d-1", later + chrono::Duration::minutes(5));
        let second = stores
            .tasks
            .create_with(&task(3), Some(&again), later)
            .expect("created after the window")
            .id;
        assert_ne!(second, first);
    }
}
