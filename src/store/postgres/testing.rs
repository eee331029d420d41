//! The PostgreSQL backend's unit tests get a fresh database each: [`fresh`] creates one on the
//! server `ORCHESTRATOR_TEST_POSTGRES` names (default: the local server, user `root`, database
//! `test`), and drops it when the returned guard goes. Without a server the test says so on one
//! line and does not run — except under `CI=true`, where that is a failure.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use super::{Db, create_database, drop_database};

/// The server the tests use.
pub(crate) fn server_url() -> String {
    std::env::var("ORCHESTRATOR_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/test".to_owned())
}

/// A database of one test, dropped with it.
pub(crate) struct TestDb {
    pub db: Arc<Db>,
    pub url: String,
    name: String,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = drop_database(&server_url(), &self.name);
    }
}

/// A new empty database with the schema migrated, or `None` (with one line saying why) when
/// there is no server outside CI.
pub(crate) fn fresh(test: &str) -> Option<TestDb> {
    static N: AtomicU32 = AtomicU32::new(0);
    let server = server_url();
    // Unique across test processes running at once: the start instant and a counter.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let name = format!("orch_unit_{nanos}_{}", N.fetch_add(1, Ordering::Relaxed));
    let url = match create_database(&server, &name) {
        Ok(url) => url,
        Err(e) => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("CI=true and PostgreSQL at {server} is not usable: {e}");
            }
            eprintln!("{test}: did not run: PostgreSQL at {server} is not usable ({e})");
            return None;
        }
    };
    let db = Arc::new(Db::connect(&url).expect("connect to the new database"));
    let key = super::SecretKey::from_bytes([7; 32]);
    db.block(db.migrate_and_check(&key, std::path::Path::new("test.key")))
        .expect("migrate");
    Some(TestDb { db, url, name })
}
