//! Membership and leases on PostgreSQL (migration 2): [`Cluster`] implements [`ClusterStore`]
//! on the `nodes` and `leases` tables that every node of the database shares. Taking the lease
//! is one `INSERT … ON CONFLICT DO UPDATE … WHERE` statement: it succeeds for the holder or
//! once the lease expired, and the row lock it takes serializes nodes that try at once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_postgres::Row;

use super::Db;
use crate::store::cluster::{Beat, ClusterStore, Fence, Joined, Lease, NodeRecord};
use crate::store::{Result, StoreError};

/// The membership table and leases of one PostgreSQL database.
pub struct Cluster {
    db: Arc<Db>,
}

impl Cluster {
    pub fn new(db: Arc<Db>) -> Cluster {
        Cluster { db }
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

const NODE_COLUMNS: &str = "id, instance, host, pid, version, started_at, heartbeat_at, revision, ttl_ms, webhook, stopped_at, running";

fn node(r: &Row) -> Result<NodeRecord> {
    Ok(NodeRecord {
        node: r.try_get(0)?,
        instance: r.try_get(1)?,
        host: r.try_get(2)?,
        pid: u32::try_from(r.try_get::<_, i64>(3)?).unwrap_or(0),
        version: r.try_get(4)?,
        started_at: r.try_get(5)?,
        heartbeat_at: r.try_get(6)?,
        revision: u64::try_from(r.try_get::<_, i64>(7)?).unwrap_or(0),
        ttl: Duration::from_millis(u64::try_from(r.try_get::<_, i64>(8)?).unwrap_or(0)),
        webhook: r.try_get(9)?,
        stopped_at: r.try_get(10)?,
        running: u64::try_from(r.try_get::<_, i64>(11)?).unwrap_or(0),
    })
}

impl ClusterStore for Cluster {
    fn join(&self, b: &Beat, now: DateTime<Utc>) -> Result<Joined> {
        self.db.block(async {
            let mut c = self.db.client().await?;
            let tx = c.transaction().await?;
            let held = tx
                .query_opt(
                    &format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = $1 FOR UPDATE"),
                    &[&b.node],
                )
                .await?
                .map(|r| node(&r))
                .transpose()?;
            if let Some(n) = held
                && n.host != b.host
                && n.live(now)
            {
                return Ok(Joined::Taken {
                    host: n.host,
                    heartbeat_at: n.heartbeat_at,
                });
            }
            tx.execute(
                "INSERT INTO nodes (id, instance, host, pid, version, started_at, heartbeat_at,
                   revision, ttl_ms, webhook, stopped_at, running)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11)
                 ON CONFLICT (id) DO UPDATE SET instance = excluded.instance,
                   host = excluded.host, pid = excluded.pid, version = excluded.version,
                   started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
                   revision = excluded.revision, ttl_ms = excluded.ttl_ms,
                   webhook = excluded.webhook, stopped_at = NULL, running = excluded.running",
                &[
                    &b.node,
                    &b.instance,
                    &b.host,
                    &i64::from(b.pid),
                    &b.version,
                    &b.started_at,
                    &now,
                    &(b.revision as i64),
                    &millis(b.ttl),
                    &b.webhook,
                    &(b.running as i64),
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(Joined::Joined)
        })
    }

    fn heartbeat(&self, b: &Beat, now: DateTime<Utc>) -> Result<bool> {
        self.db.block(async {
            let c = self.db.client().await?;
            let stmt = c
                .prepare_cached(
                    "UPDATE nodes SET heartbeat_at = $3, revision = $4, webhook = $5,
                       running = $6, stopped_at = NULL
                     WHERE id = $1 AND instance = $2",
                )
                .await?;
            let n = c
                .execute(
                    &stmt,
                    &[
                        &b.node,
                        &b.instance,
                        &now,
                        &(b.revision as i64),
                        &b.webhook,
                        &(b.running as i64),
                    ],
                )
                .await?;
            Ok(n == 1)
        })
    }

    fn leave(&self, node: &str, instance: &str, now: DateTime<Utc>) -> Result<()> {
        self.db.block(async {
            let c = self.db.client().await?;
            c.execute(
                "UPDATE nodes SET stopped_at = $3 WHERE id = $1 AND instance = $2",
                &[&node, &instance, &now],
            )
            .await?;
            Ok(())
        })
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>> {
        self.db.block(async {
            let c = self.db.client().await?;
            let rows = c
                .query(
                    &format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY id"),
                    &[],
                )
                .await?;
            rows.iter().map(node).collect()
        })
    }

    fn forget(&self, before: DateTime<Utc>) -> Result<usize> {
        self.db.block(async {
            let c = self.db.client().await?;
            let n = c
                .execute(
                    "DELETE FROM nodes WHERE COALESCE(stopped_at, heartbeat_at) < $1",
                    &[&before],
                )
                .await?;
            Ok(n as usize)
        })
    }

    fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<u64>> {
        let until = now
            + chrono::Duration::from_std(ttl).map_err(|_| StoreError::Corrupt {
                what: "lease TTL".into(),
                detail: format!("{ttl:?} is out of range"),
            })?;
        self.db.block(async {
            let c = self.db.client().await?;
            let stmt = c
                .prepare_cached(
                    "INSERT INTO leases (name, holder, token, acquired_at, expires_at)
                     VALUES ($1, $2, 1, $3, $4)
                     ON CONFLICT (name) DO UPDATE SET
                       token = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > $3
                               THEN leases.token ELSE leases.token + 1 END,
                       acquired_at = CASE WHEN leases.holder = excluded.holder
                                      AND leases.expires_at > $3
                                     THEN leases.acquired_at ELSE excluded.acquired_at END,
                       holder = excluded.holder, expires_at = excluded.expires_at
                     WHERE leases.holder = excluded.holder OR leases.expires_at <= $3
                     RETURNING token",
                )
                .await?;
            let row = c.query_opt(&stmt, &[&name, &holder, &now, &until]).await?;
            row.map(|r| r.try_get::<_, i64>(0).map(|t| t as u64))
                .transpose()
                .map_err(StoreError::from)
        })
    }

    fn release(&self, name: &str, fence: &Fence, now: DateTime<Utc>) -> Result<()> {
        self.db.block(async {
            let c = self.db.client().await?;
            c.execute(
                "UPDATE leases SET expires_at = $4
                 WHERE name = $1 AND holder = $2 AND token = $3 AND expires_at > $4",
                &[&name, &fence.holder, &(fence.token as i64), &now],
            )
            .await?;
            Ok(())
        })
    }

    fn lease(&self, name: &str) -> Result<Option<Lease>> {
        self.db.block(async {
            let c = self.db.client().await?;
            let row = c
                .query_opt(
                    "SELECT holder, token, acquired_at, expires_at FROM leases WHERE name = $1",
                    &[&name],
                )
                .await?;
            row.map(|r| {
                Ok(Lease {
                    holder: r.try_get(0)?,
                    token: r.try_get::<_, i64>(1)? as u64,
                    acquired_at: r.try_get(2)?,
                    expires_at: r.try_get(3)?,
                })
            })
            .transpose()
        })
    }
}
