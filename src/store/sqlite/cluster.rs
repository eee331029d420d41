//! Membership and leases on SQLite (migration 11): [`Cluster`] implements [`ClusterStore`] on
//! one connection. The data dir's lock allows one daemon, so the table holds this node (and
//! the ids it ran under before) and the lease is always this node's to take; the same calls as
//! on PostgreSQL keep one code path above the store.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};

use super::{Conn, Durability, immediate, opt_ts, parse_ts, ts};
use crate::store::cluster::{Beat, ClusterStore, Fence, Joined, Lease, NodeRecord};
use crate::store::{Result, StoreError};

/// The membership table and leases of one SQLite database.
pub struct Cluster {
    conn: Conn,
}

impl Cluster {
    /// Opens the connection (migrations already ran). Heartbeats commit with
    /// `synchronous=NORMAL`: one lost on power failure is written again a second later.
    pub(super) fn open(data_dir: &Path) -> Result<Cluster> {
        Ok(Cluster {
            conn: Conn::open(data_dir, Durability::Normal)?,
        })
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

fn node(r: &Row<'_>) -> Result<NodeRecord> {
    Ok(NodeRecord {
        node: r.get(0)?,
        instance: r.get(1)?,
        host: r.get(2)?,
        pid: u32::try_from(r.get::<_, i64>(3)?).unwrap_or(0),
        version: r.get(4)?,
        started_at: parse_ts(&r.get::<_, String>(5)?)?,
        heartbeat_at: parse_ts(&r.get::<_, String>(6)?)?,
        revision: u64::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
        ttl: Duration::from_millis(u64::try_from(r.get::<_, i64>(8)?).unwrap_or(0)),
        webhook: r.get(9)?,
        stopped_at: opt_ts(r.get(10)?)?,
        running: u64::try_from(r.get::<_, i64>(11)?).unwrap_or(0),
    })
}

const NODE_COLUMNS: &str = "id, instance, host, pid, version, started_at, heartbeat_at, revision, ttl_ms, webhook, stopped_at, running";

impl ClusterStore for Cluster {
    fn join(&self, b: &Beat, now: DateTime<Utc>) -> Result<Joined> {
        self.conn.run(|c| {
            let tx = immediate(c)?;
            let held = tx
                .query_row(
                    &format!("SELECT {NODE_COLUMNS} FROM nodes WHERE id = ?1"),
                    [&b.node],
                    |r| Ok(node(r)),
                )
                .optional()?
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
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, NULL, ?11)
                 ON CONFLICT (id) DO UPDATE SET instance = excluded.instance,
                   host = excluded.host, pid = excluded.pid, version = excluded.version,
                   started_at = excluded.started_at, heartbeat_at = excluded.heartbeat_at,
                   revision = excluded.revision, ttl_ms = excluded.ttl_ms,
                   webhook = excluded.webhook, stopped_at = NULL, running = excluded.running",
                params![
                    b.node,
                    b.instance,
                    b.host,
                    i64::from(b.pid),
                    b.version,
                    ts(b.started_at),
                    ts(now),
                    b.revision as i64,
                    millis(b.ttl),
                    b.webhook,
                    b.running as i64,
                ],
            )?;
            tx.commit()?;
            Ok(Joined::Joined)
        })
    }

    fn heartbeat(&self, b: &Beat, now: DateTime<Utc>) -> Result<bool> {
        self.conn.run(|c| {
            let n = c
                .prepare_cached(
                    "UPDATE nodes SET heartbeat_at = ?3, revision = ?4, webhook = ?5,
                       running = ?6, stopped_at = NULL
                     WHERE id = ?1 AND instance = ?2",
                )?
                .execute(params![
                    b.node,
                    b.instance,
                    ts(now),
                    b.revision as i64,
                    b.webhook,
                    b.running as i64
                ])?;
            Ok(n == 1)
        })
    }

    fn leave(&self, node: &str, instance: &str, now: DateTime<Utc>) -> Result<()> {
        self.conn.run(|c| {
            c.execute(
                "UPDATE nodes SET stopped_at = ?3 WHERE id = ?1 AND instance = ?2",
                params![node, instance, ts(now)],
            )?;
            Ok(())
        })
    }

    fn nodes(&self) -> Result<Vec<NodeRecord>> {
        self.conn.run(|c| {
            let mut stmt =
                c.prepare_cached(&format!("SELECT {NODE_COLUMNS} FROM nodes ORDER BY id"))?;
            let rows = stmt.query_map([], |r| Ok(node(r)))?;
            let mut out = Vec::new();
            for r in rows {
                out.push(r??);
            }
            Ok(out)
        })
    }

    fn forget(&self, before: DateTime<Utc>) -> Result<usize> {
        self.conn.run(|c| {
            let n = c.execute(
                "DELETE FROM nodes WHERE COALESCE(stopped_at, heartbeat_at) < ?1",
                [ts(before)],
            )?;
            Ok(n)
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
        self.conn.run(|c| {
            let tx = immediate(c)?;
            let token: Option<i64> = tx
                .query_row(
                    "INSERT INTO leases (name, holder, token, acquired_at, expires_at)
                     VALUES (?1, ?2, 1, ?3, ?4)
                     ON CONFLICT (name) DO UPDATE SET
                       token = CASE WHEN leases.holder = excluded.holder AND leases.expires_at > ?3
                               THEN leases.token ELSE leases.token + 1 END,
                       acquired_at = CASE WHEN leases.holder = excluded.holder
                                      AND leases.expires_at > ?3
                                     THEN leases.acquired_at ELSE excluded.acquired_at END,
                       holder = excluded.holder, expires_at = excluded.expires_at
                     WHERE leases.holder = excluded.holder OR leases.expires_at <= ?3
                     RETURNING token",
                    params![name, holder, ts(now), ts(until)],
                    |r| r.get(0),
                )
                .optional()?;
            tx.commit()?;
            Ok(token.map(|t| t as u64))
        })
    }

    fn release(&self, name: &str, fence: &Fence, now: DateTime<Utc>) -> Result<()> {
        self.conn.run(|c| {
            c.execute(
                "UPDATE leases SET expires_at = ?4
                 WHERE name = ?1 AND holder = ?2 AND token = ?3 AND expires_at > ?4",
                params![name, fence.holder, fence.token as i64, ts(now)],
            )?;
            Ok(())
        })
    }

    fn lease(&self, name: &str) -> Result<Option<Lease>> {
        self.conn.run(|c| {
            c.query_row(
                "SELECT holder, token, acquired_at, expires_at FROM leases WHERE name = ?1",
                [name],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )
            .optional()?
            .map(|(holder, token, acquired, expires)| {
                Ok(Lease {
                    holder,
                    token: token as u64,
                    acquired_at: parse_ts(&acquired)?,
                    expires_at: parse_ts(&expires)?,
                })
            })
            .transpose()
        })
    }
}
