//! SQLite's own part of retention, against a real database in a temp dir: the incremental
//! vacuum. What every backend's prunes keep is `store::task_cases`.

use std::sync::Arc;

use crate::api::TaskState;
use crate::store::task_cases::{Db, at};
use crate::store::{AgeScan, TaskStore};
use TaskState::{Running, Succeeded};

struct Store {
    dir: tempfile::TempDir,
    tasks: Arc<dyn TaskStore>,
}

fn db() -> Store {
    let dir = tempfile::tempdir().expect("temp dir");
    let stores = crate::store::sqlite::open(dir.path()).expect("open the store");
    Store {
        dir,
        tasks: stores.tasks,
    }
}

#[test]
fn freed_pages_go_back_to_the_file_system() {
    let store = db();
    let d = Db {
        tasks: &*store.tasks,
    };
    let big = "x".repeat(64 * 1024);
    let ids: Vec<u64> = (0..64)
        .map(|i| {
            d.task_in(
                "default",
                "w",
                None,
                Succeeded,
                i,
                Some(format!("\"{big}\"")),
            )
        })
        .collect();
    let newest = d.task("w", None, Running, 2000);
    let full = d.tasks.storage().expect("storage");
    assert_eq!(full.tasks, 65);
    assert_eq!(full.finished_tasks, 64);
    assert_eq!(full.oldest.map(|(id, _)| id), Some(ids[0]));
    let gone = d
        .tasks
        .prune_older(&AgeScan {
            finished_before: at(1000),
            project: None,
            limited: None,
            after: 0,
            batch: 500,
        })
        .expect("sweep");
    assert_eq!(gone.removed.len(), 64);
    let freed = d.tasks.storage().expect("storage");
    assert!(freed.free_bytes >= 4 << 20, "{freed:?}");
    let mut left = u64::MAX;
    for _ in 0..100 {
        left = d.tasks.reclaim(64).expect("reclaim");
        if left == 0 {
            break;
        }
    }
    assert_eq!(left, 0);
    let after = d.tasks.storage().expect("storage");
    assert_eq!(after.free_bytes, 0);
    assert_eq!(after.tasks, 1);
    assert_eq!(after.oldest.map(|(id, _)| id), Some(newest));
    // The file shrinks once the write-ahead log is checkpointed into it.
    let conn =
        super::super::connect(store.dir.path(), super::super::Durability::Full).expect("open");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    let file = std::fs::metadata(store.dir.path().join(crate::layout::DB_FILE))
        .expect("db")
        .len();
    assert!(
        file < full.db_bytes.max(4 << 20) / 2,
        "{file} bytes after, {} before",
        full.db_bytes
    );
}

#[test]
fn a_database_made_before_incremental_vacuum_is_switched_once() {
    use super::{VacuumMode, incremental_vacuum_on};
    let dir = tempfile::tempdir().expect("temp dir");
    {
        // As an earlier version made it: the tables first, no auto_vacuum.
        let mut c =
            super::super::connect(dir.path(), super::super::Durability::Full).expect("open");
        super::super::migrate(&mut c).expect("migrate");
        c.execute_batch("INSERT INTO meta (key, value) VALUES ('kept', 'yes')")
            .expect("a row");
        let mode: i64 = c
            .query_row("PRAGMA auto_vacuum", [], |r| r.get(0))
            .expect("mode");
        assert_eq!(mode, 0);
    }
    assert!(matches!(
        incremental_vacuum_on(dir.path()).expect("switch"),
        VacuumMode::Switched { .. }
    ));
    assert_eq!(
        incremental_vacuum_on(dir.path()).expect("again"),
        VacuumMode::Incremental
    );
    let c = super::super::connect(dir.path(), super::super::Durability::Full).expect("open");
    let kept: String = c
        .query_row("SELECT value FROM meta WHERE key = 'kept'", [], |r| {
            r.get(0)
        })
        .expect("the row survives");
    assert_eq!(kept, "yes");
}
