//! The PostgreSQL backend (`--store postgres://…`): several daemons on one database. Every store
//! trait is implemented on one connection pool (deadpool-postgres over tokio-postgres), driven
//! by the store's own small runtime, so that the blocking trait calls work from any thread —
//! an actor's `block_in_place`, the task writer's own thread, a test without a runtime — and
//! never wait on the daemon's busy workers.
//!
//! The schema is versioned ([`schema::MIGRATIONS`]); the migrations run once, in one
//! transaction, under an advisory lock, so that nodes starting together neither race nor run a
//! migration twice. Secret values are sealed exactly as on SQLite ([`super::crypto`]) with a key
//! every node shares (`--secret-key-file`); the database records the key's fingerprint
//! ([`SecretKey::fingerprint`]) when it is first used, and a node whose key file has another one
//! is refused at start — with both fingerprints, never the key. The database never holds a plain
//! value.
//!
//! Every write is a transaction on the primary; PostgreSQL's commit is durable
//! (`synchronous_commit` is the server's choice, `on` by default), which is what the traits'
//! "durable before it returns" promises.

use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use tokio_postgres::NoTls;

use super::crypto::SecretKey;
use super::{Result, StoreError};

mod cluster;
mod deliveries;
mod feed;
mod replay;
mod resources;
mod rotations;
mod schema;
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

/// The advisory lock key that serializes migrations and the key check across nodes
/// (`pg_advisory_xact_lock`): "orch" in ASCII.
const MIGRATION_LOCK: i64 = 0x6f72_6368;

/// Connections per node: the actors' writes, the control API's reads and the webhook path's
/// batched writers each take one for the length of a statement or transaction.
const POOL_SIZE: usize = 16;

/// How long a call waits for a free connection, or for a new one to be made.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// Whether `url` names the PostgreSQL backend.
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The URL without what it may hold of a secret: `postgres host:port/database`.
pub(super) fn describe(url: &str) -> String {
    match url.parse::<tokio_postgres::Config>() {
        Ok(c) => {
            let host = c
                .get_hosts()
                .first()
                .map(|h| match h {
                    tokio_postgres::config::Host::Tcp(name) => name.clone(),
                    tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
                })
                .unwrap_or_else(|| "localhost".to_owned());
            let port = c.get_ports().first().copied().unwrap_or(5432);
            format!(
                "postgres {host}:{port}/{}",
                c.get_dbname().unwrap_or("(default)")
            )
        }
        Err(_) => "postgres".to_owned(),
    }
}

/// Opens every store on the PostgreSQL database at `url`: connects, runs the migrations under
/// the advisory lock, and checks `key` against the fingerprint the database recorded.
pub fn open(url: &str, key: SecretKey, key_path: &Path) -> Result<super::Stores> {
    let db = Arc::new(Db::connect(url)?);
    db.block(db.migrate_and_check(&key, key_path))?;
    Ok(super::Stores {
        resources: Arc::new(Resources::new(db.clone(), key)),
        tasks: Arc::new(Tasks::new(db.clone())),
        triggers: Arc::new(Triggers::new(db.clone())),
        rotations: Arc::new(Rotations::new(db.clone())),
        verifications: Arc::new(Verifications::new(db.clone())),
        replay: Arc::new(Replays::new(db.clone())),
        deliveries: Arc::new(Deliveries::new(db.clone())),
        cluster: Arc::new(Cluster::new(db.clone())),
        feed: Some(db.listen()),
    })
}

/// The pool and the runtime that drives its connections.
pub struct Db {
    pool: Pool,
    /// Where the pool connects: the feed's own connection connects there too.
    config: tokio_postgres::Config,
    /// Where the calls run: the runtime `_rt` owns.
    handle: tokio::runtime::Handle,
    _rt: Rt,
}

/// The store's runtime, shut down without waiting when the store goes (a runtime dropped the
/// ordinary way inside the daemon's async code would panic).
struct Rt(Option<tokio::runtime::Runtime>);

impl Drop for Rt {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Db {
    fn connect(url: &str) -> Result<Db> {
        let config: tokio_postgres::Config = url.parse().map_err(|e| StoreError::BadUrl {
            detail: format!("{e}"),
        })?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("store-postgres")
            .enable_all()
            .build()
            .map_err(StoreError::Runtime)?;
        let pool = {
            let _enter = rt.enter();
            Pool::builder(manager)
                .max_size(POOL_SIZE)
                .runtime(Runtime::Tokio1)
                .wait_timeout(Some(POOL_WAIT))
                .create_timeout(Some(POOL_WAIT))
                .build()
                .map_err(|e| StoreError::Postgres(e.to_string()))?
        };
        let db = Db {
            pool,
            config,
            handle: rt.handle().clone(),
            _rt: Rt(Some(rt)),
        };
        // Connect once now, so that a wrong URL or a server that is down is reported at start.
        db.block(async { db.client().await.map(drop) })?;
        Ok(db)
    }

    /// Runs `fut` on the store's runtime and waits for it, from whatever thread calls: on a
    /// worker of a multi-thread runtime in `block_in_place`, on a current-thread runtime from a
    /// scoped thread (blocking there is the caller's choice, as with SQLite), elsewhere directly.
    pub(crate) fn block<F>(&self, fut: F) -> F::Output
    where
        F: Future + Send,
        F::Output: Send,
    {
        let rt = &self.handle;
        match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| rt.block_on(fut))
            }
            Ok(_) => std::thread::scope(|s| {
                s.spawn(|| rt.block_on(fut))
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p))
            }),
            Err(_) => rt.block_on(fut),
        }
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<Object> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Postgres(e.to_string()))
    }

    async fn migrate_and_check(&self, key: &SecretKey, key_path: &Path) -> Result<()> {
        let mut c = self.client().await?;
        let tx = c.transaction().await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        // `CREATE TABLE IF NOT EXISTS` of a table that exists is a NOTICE on every start.
        tx.batch_execute("SET LOCAL client_min_messages = warning")
            .await?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
            .await?;
        let version: i64 = match tx
            .query_opt("SELECT version FROM schema_version", &[])
            .await?
        {
            Some(row) => row.try_get(0)?,
            None => {
                tx.execute("INSERT INTO schema_version (version) VALUES (0)", &[])
                    .await?;
                0
            }
        };
        let supported = schema::MIGRATIONS.len() as i64;
        if version > supported {
            return Err(StoreError::TooNew {
                found: version,
                supported,
            });
        }
        for sql in &schema::MIGRATIONS[version as usize..] {
            tx.batch_execute(sql).await?;
        }
        tx.execute("UPDATE schema_version SET version = $1", &[&supported])
            .await?;
        let ours = key.fingerprint();
        let recorded: Option<String> = tx
            .query_opt("SELECT value FROM meta WHERE key = 'key_fingerprint'", &[])
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        match recorded {
            Some(theirs) if theirs != ours => {
                return Err(StoreError::KeyMismatch {
                    path: key_path.to_owned(),
                    file: ours,
                    database: theirs,
                });
            }
            Some(_) => {}
            None => {
                tx.execute(
                    "INSERT INTO meta (key, value) VALUES ('key_fingerprint', $1)",
                    &[&ours],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> StoreError {
        // The server's own message says what went wrong; the client's display alone is often
        // only "db error".
        let detail = match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => match std::error::Error::source(&e) {
                Some(src) => format!("{e}: {src}"),
                None => e.to_string(),
            },
        };
        StoreError::Postgres(detail)
    }
}

/// Creates a new, empty database beside the one `url` names and returns its URL (tests create
/// one per daemon); [`drop_database`] removes it.
pub fn create_database(url: &str, name: &str) -> Result<String> {
    let db = Db::connect(url)?;
    db.block(async {
        let c = db.client().await?;
        c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        Ok::<_, StoreError>(())
    })?;
    Ok(with_dbname(url, name))
}

/// Drops a database made by [`create_database`] (connections to it are ended).
pub fn drop_database(url: &str, name: &str) -> Result<()> {
    let db = Db::connect(url)?;
    db.block(async {
        let c = db.client().await?;
        c.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await?;
        Ok(())
    })
}

/// `url` with its database name replaced by `name` (URL or key=value form).
fn with_dbname(url: &str, name: &str) -> String {
    if !is_postgres_url(url) {
        return format!("{url} dbname={name}");
    }
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_part = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{host_part}/{name}?{q}"),
        None => format!("{host_part}/{name}"),
    }
}

#[cfg(test)]
pub(crate) mod testing;

/// The backend-neutral checks of `store::conformance`, on a fresh PostgreSQL database each.
#[cfg(test)]
mod conformance_tests {
    use super::testing::fresh;
    use super::*;
    use crate::store::{conformance, task_cases};

    #[test]
    fn desired_state_and_stamps() {
        let Some(t) = fresh("desired_state_and_stamps") else {
            return;
        };
        let r = Resources::new(t.db.clone(), SecretKey::from_bytes([7; 32]));
        conformance::desired_state_and_stamps(&r, &Verifications::new(t.db.clone()));
    }

    #[test]
    fn trigger_state() {
        let Some(t) = fresh("trigger_state") else {
            return;
        };
        conformance::trigger_state(&Triggers::new(t.db.clone()));
    }

    #[test]
    fn rotations() {
        let Some(t) = fresh("rotations") else {
            return;
        };
        conformance::rotations(&Rotations::new(t.db.clone()));
    }

    #[test]
    fn rotation_claims() {
        let Some(t) = fresh("rotation_claims") else {
            return;
        };
        conformance::rotation_claims(&Rotations::new(t.db.clone()), &Cluster::new(t.db.clone()));
    }

    #[test]
    fn delivery_log() {
        let Some(t) = fresh("delivery_log") else {
            return;
        };
        conformance::delivery_log(&Deliveries::new(t.db.clone()));
    }

    #[test]
    fn membership_and_lease() {
        let Some(t) = fresh("membership_and_lease") else {
            return;
        };
        conformance::membership(&Cluster::new(t.db.clone()));
        t.db.block(async {
            let c = t.db.client().await.expect("client");
            c.batch_execute("DELETE FROM nodes").await.expect("clear");
        });
        conformance::lease(&Cluster::new(t.db.clone()));
    }

    #[test]
    fn cron_fires_are_fenced_and_once() {
        let Some(t) = fresh("cron_fires_are_fenced_and_once") else {
            return;
        };
        conformance::cron_fires_are_fenced_and_once(
            &Tasks::new(t.db.clone()),
            &Cluster::new(t.db.clone()),
        );
    }

    #[test]
    fn a_history_limit_keeps_exactly_the_newest_n_of_each_outcome() {
        let Some(t) = fresh("a_history_limit_keeps_exactly_the_newest_n_of_each_outcome") else {
            return;
        };
        task_cases::a_history_limit_keeps_exactly_the_newest_n_of_each_outcome(&Tasks::new(
            t.db.clone(),
        ));
    }

    #[test]
    fn the_count_keeps_each_workflows_newest_and_leaves_history_limited_tasks_alone() {
        let Some(t) =
            fresh("the_count_keeps_each_workflows_newest_and_leaves_history_limited_tasks_alone")
        else {
            return;
        };
        task_cases::the_count_keeps_each_workflows_newest_and_leaves_history_limited_tasks_alone(
            &Tasks::new(t.db.clone()),
        );
    }

    #[test]
    fn the_age_sweep_removes_what_finished_before_the_cut_off_in_batches() {
        let Some(t) = fresh("the_age_sweep_removes_what_finished_before_the_cut_off_in_batches")
        else {
            return;
        };
        task_cases::the_age_sweep_removes_what_finished_before_the_cut_off_in_batches(&Tasks::new(
            t.db.clone(),
        ));
    }

    #[test]
    fn delete_removes_a_finished_task_with_its_rows_and_refuses_the_others() {
        let Some(t) = fresh("delete_removes_a_finished_task_with_its_rows_and_refuses_the_others")
        else {
            return;
        };
        task_cases::delete_removes_a_finished_task_with_its_rows_and_refuses_the_others(
            &Tasks::new(t.db.clone()),
        );
    }

    #[test]
    fn task_life() {
        let Some(t) = fresh("task_life") else {
            return;
        };
        task_cases::task_life(&Tasks::new(t.db.clone()));
    }

    #[test]
    fn interrupted_runs() {
        let Some(t) = fresh("interrupted_runs") else {
            return;
        };
        task_cases::interrupted_runs(&Tasks::new(t.db.clone()));
    }

    #[test]
    fn tasks_name_their_node() {
        let Some(t) = fresh("tasks_name_their_node") else {
            return;
        };
        conformance::tasks_name_their_node(&Tasks::new(t.db.clone()));
    }

    #[test]
    fn a_dead_nodes_tasks_fail() {
        let Some(t) = fresh("a_dead_nodes_tasks_fail") else {
            return;
        };
        conformance::a_dead_nodes_tasks_fail(
            &Tasks::new(t.db.clone()),
            &Cluster::new(t.db.clone()),
        );
    }

    #[test]
    fn delivery_replay() {
        let Some(t) = fresh("delivery_replay") else {
            return;
        };
        task_cases::delivery_replay(&Tasks::new(t.db.clone()), &Replays::new(t.db.clone()));
    }

    #[test]
    fn storage() {
        let Some(t) = fresh("storage") else {
            return;
        };
        let tasks = Tasks::new(t.db.clone());
        task_cases::storage(&tasks);
        assert_eq!(
            crate::store::TaskStore::reclaim(&tasks, 64).expect("reclaim"),
            0,
            "no page is the node's to return"
        );
    }
}

#[cfg(test)]
mod key_tests {
    use super::testing::fresh;
    use super::*;
    use crate::store::ResourceStore;

    #[test]
    fn another_key_file_is_refused_with_both_fingerprints_and_no_value_is_stored_plain() {
        let Some(t) = fresh("another_key_file_is_refused") else {
            return;
        };
        // The database was first used with [7; 32] (see `testing::fresh`).
        let other = SecretKey::from_bytes([9; 32]);
        let err =
            t.db.block(t.db.migrate_and_check(&other, Path::new("/etc/other.key")))
                .expect_err("another key is refused");
        let shown = err.to_string();
        let ours = SecretKey::from_bytes([7; 32]).fingerprint();
        assert!(matches!(err, StoreError::KeyMismatch { .. }), "{shown}");
        assert!(
            shown.contains(&other.fingerprint()) && shown.contains(&ours),
            "{shown}"
        );
        assert!(shown.contains("/etc/other.key"), "{shown}");

        let r = Resources::new(t.db.clone(), SecretKey::from_bytes([7; 32]));
        crate::store::conformance::desired_state_and_stamps(&r, &Verifications::new(t.db.clone()));
        let (_, changes) = {
            let text = "apiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata:\n  name: kept\nspec:\n  data:\n    k: \"plain-kept-value\"\n";
            let (docs, p) = crate::domain::manifest::parse_documents("f", text);
            assert!(p.is_empty(), "{p:?}");
            let m: Vec<_> = docs.into_iter().map(|d| d.manifest).collect();
            let snap = r.load_snapshot().expect("load");
            (snap.clone(), snap.plan(&m, chrono::Utc::now()))
        };
        r.commit(
            &changes,
            r.revision().expect("rev") + 1,
            chrono::Utc::now(),
            crate::domain::secret_merge::SetBy::Apply,
        )
        .expect("commit");
        // Every row of every table, as text: no plain value anywhere.
        let dump: String = t.db.block(async {
            let c = t.db.client().await.expect("client");
            let tables = c
                .query(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'",
                    &[],
                )
                .await
                .expect("tables");
            let mut all = String::new();
            for row in tables {
                let name: String = row.try_get(0).expect("a table name");
                for r in c
                    .query(
                        &format!("SELECT row_to_json(t)::text FROM \"{name}\" t"),
                        &[],
                    )
                    .await
                    .expect("rows")
                {
                    all.push_str(r.try_get::<_, &str>(0).expect("a row as JSON"));
                }
            }
            all
        });
        assert!(dump.contains("kept"), "the dump holds the rows");
        for plain in ["plain-kept-value", "plain-old-value", "plain-new-value"] {
            // BYTEA shows as hex in JSON.
            assert!(
                !dump.contains(plain) && !dump.contains(&hex::encode(plain)),
                "{plain} is stored in plain text"
            );
        }
    }
}
