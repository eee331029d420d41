//! The creation of a task on PostgreSQL: the task, its first event and (for a webhook
//! delivery) the delivery id it answers, in one transaction per call. PostgreSQL's own group
//! commit batches the WAL flushes of concurrent commits, so SQLite's writer thread has no
//! counterpart here; the commit is durable when it returns (`synchronous_commit` on).
//!
//! The replay record decides, on every node at once: the task's id is drawn first, and the
//! delivery id is upserted with it — `ON CONFLICT … DO UPDATE … WHERE expires_at <= now`, so
//! an expired record is replaced and an unexpired one, or one another node is committing right
//! now (the unique index makes this insert wait for that transaction), leaves the upsert
//! without a row: the call answers [`StoreError::DuplicateDelivery`] with the task the record
//! names, and nothing is written. The same transaction deletes a few expired records
//! (`FOR UPDATE SKIP LOCKED`, so two nodes pruning at once never wait on each other).

use chrono::{DateTime, Utc};
use deadpool_postgres::GenericClient;

use super::super::Db;
use super::text;
use crate::api::{TaskInfo, WorktreeState};
use crate::store::cluster::LEADER;
use crate::store::task_rows::{created_info, created_message};
use crate::store::{NewTask, Result, SeenDelivery, StoreError};

/// Expired delivery ids one creation deletes (SQLite's group commit deletes twice what a batch
/// adds, and a few).
const PRUNED_PER_CREATION: i64 = 18;

/// How often a creation is tried again when the unexpired record it lost to was gone by the
/// time it was read (pruned after it expired meanwhile).
const TRIES: usize = 3;

/// See [`TaskStore::create_with`](crate::store::TaskStore::create_with).
pub(super) fn create_with(
    db: &Db,
    t: &NewTask,
    delivery: Option<&SeenDelivery>,
    now: DateTime<Utc>,
) -> Result<TaskInfo> {
    db.block(async {
        let mut c = db.client().await?;
        for _ in 0..TRIES {
            let tx = c.transaction().await?;
            match insert(&tx, t, delivery, now).await? {
                Inserted::Task(id) => {
                    if delivery.is_some() {
                        prune(&tx, now).await?;
                    }
                    tx.commit().await?;
                    return Ok(created_info(t, id, now));
                }
                Inserted::Duplicate(Some(task)) => {
                    tx.rollback().await?;
                    return Err(StoreError::DuplicateDelivery { task });
                }
                Inserted::Duplicate(None) => tx.rollback().await?,
                Inserted::Fenced => {
                    tx.rollback().await?;
                    return Err(StoreError::Fenced);
                }
                Inserted::Fired(task) => {
                    tx.rollback().await?;
                    return Err(StoreError::AlreadyFired { task });
                }
            }
        }
        Err(StoreError::Postgres(format!(
            "the record of this webhook delivery kept changing while the task was created ({TRIES} tries)"
        )))
    })
}

/// What one insert did.
enum Inserted {
    Task(u64),
    /// An unexpired record of the delivery exists; it names this task (`None`: it was gone
    /// when read, try again).
    Duplicate(Option<u64>),
    /// A cron fire whose lease another node holds now.
    Fenced,
    /// A cron fire of an instant that already created this task.
    Fired(u64),
}

async fn insert(
    tx: &impl GenericClient,
    t: &NewTask,
    delivery: Option<&SeenDelivery>,
    now: DateTime<Utc>,
) -> Result<Inserted> {
    if let Some(f) = &t.fence {
        // FOR SHARE: a node taking the lease over waits for this fire's commit, and a fire
        // that comes after the takeover sees the new holder and token.
        let holds = tx
            .prepare_cached(
                "SELECT 1 FROM leases WHERE name = $1 AND holder = $2 AND token = $3 FOR SHARE",
            )
            .await?;
        if tx
            .query_opt(&holds, &[&LEADER, &f.holder, &(f.token as i64)])
            .await?
            .is_none()
        {
            return Ok(Inserted::Fenced);
        }
    }
    let next = tx
        .prepare_cached("SELECT nextval(pg_get_serial_sequence('tasks', 'id'))")
        .await?;
    let id: i64 = tx.query_one(&next, &[]).await?.try_get(0)?;
    if let Some(d) = delivery {
        let upsert = tx
            .prepare_cached(
                "INSERT INTO webhook_deliveries (project, trigger, delivery, expires_at, task_id)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (project, trigger, delivery) DO UPDATE
                   SET expires_at = excluded.expires_at, task_id = excluded.task_id
                   WHERE webhook_deliveries.expires_at <= $6
                 RETURNING task_id",
            )
            .await?;
        let (project, trigger, delivery_id) = (text(&d.project), text(&d.trigger), text(&d.id));
        let won = tx
            .query_opt(
                &upsert,
                &[&project, &trigger, &delivery_id, &d.expires_at, &id, &now],
            )
            .await?;
        if won.is_none() {
            // The record is unexpired and committed (the upsert waited for any transaction
            // writing it); this statement's snapshot sees it.
            let task =
                super::super::replay::recorded(tx, &project, &trigger, &delivery_id, now).await?;
            return Ok(Inserted::Duplicate(task));
        }
    }
    let insert = tx
        .prepare_cached(
            "INSERT INTO tasks (id, project, workflow, workspace, workspace_root, workflow_spec,
               goal, payload, origin, trigger, scheduled_at, state, reason, created_at,
               finished_at, held, worktree_state)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .await?;
    let spec = t.workflow_spec.to_string();
    tx.execute(
        &insert,
        &[
            &id,
            &text(&t.project),
            &text(&t.workflow),
            &text(&t.workspace),
            &text(&t.workspace_root),
            &text(&spec),
            &t.goal.as_deref().map(text),
            &t.payload.as_deref().map(text),
            &text(&t.origin),
            &t.trigger.as_deref().map(text),
            &t.scheduled_at,
            &t.state.as_str(),
            &t.reason.as_deref().map(text),
            &now,
            &t.state.is_finished().then_some(now),
            &t.held,
            &t.worktree.then(|| WorktreeState::Requested.as_str()),
        ],
    )
    .await?;
    let event = tx
        .prepare_cached("INSERT INTO task_events (task_id, at, message) VALUES ($1, $2, $3)")
        .await?;
    tx.execute(&event, &[&id, &now, &text(&created_message(&t.origin))])
        .await?;
    if t.fence.is_some()
        && let (Some(trigger), Some(at)) = (&t.trigger, t.scheduled_at)
    {
        // Unique per (trigger, instant): a second fire of the instant waits for the first's
        // commit and then finds it.
        let fired = tx
            .prepare_cached(
                "INSERT INTO cron_fires (project, trigger, scheduled_at, task_id)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING task_id",
            )
            .await?;
        let (project, trigger) = (text(&t.project), text(trigger));
        if tx
            .query_opt(&fired, &[&project, &trigger, &at, &id])
            .await?
            .is_none()
        {
            let first: i64 = tx
                .query_one(
                    "SELECT task_id FROM cron_fires
                     WHERE project = $1 AND trigger = $2 AND scheduled_at = $3",
                    &[&project, &trigger, &at],
                )
                .await?
                .try_get(0)?;
            return Ok(Inserted::Fired(first as u64));
        }
    }
    Ok(Inserted::Task(id as u64))
}

/// Deletes a few delivery ids expired by `now`, skipping those another transaction holds.
async fn prune(tx: &impl GenericClient, now: DateTime<Utc>) -> Result<()> {
    let prune = tx
        .prepare_cached(
            "DELETE FROM webhook_deliveries d USING (
               SELECT project, trigger, delivery FROM webhook_deliveries
               WHERE expires_at <= $1 ORDER BY expires_at LIMIT $2
               FOR UPDATE SKIP LOCKED) e
             WHERE d.project = e.project AND d.trigger = e.trigger AND d.delivery = e.delivery",
        )
        .await?;
    tx.execute(&prune, &[&now, &PRUNED_PER_CREATION]).await?;
    Ok(())
}
