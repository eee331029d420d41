//! The pruning statements against a real SQLite database in a temp dir: what each keeps, that
//! no pending or running task is ever deleted, batching, and the incremental vacuum.

use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::api::TaskState;
use crate::domain::retention::{HistoryLimited, key};
use crate::store::{AgeScan, Deleted, NewTask, TaskStore};

struct Db {
    dir: tempfile::TempDir,
    tasks: Arc<dyn TaskStore>,
}

fn db() -> Db {
    let dir = tempfile::tempdir().expect("temp dir");
    let stores = crate::store::sqlite::open(dir.path()).expect("open the store");
    Db {
        dir,
        tasks: stores.tasks,
    }
}

/// Minute `m` of a fixed day.
fn at(m: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2030, 1, 1, 0, 0, 0)
        .single()
        .expect("time")
        + Duration::minutes(m)
}

impl Db {
    /// A task of `workflow` (from `trigger`) created at minute `created`; it ends in `state` at
    /// minute `created + 1` when that state is a finished one.
    fn task(&self, workflow: &str, trigger: Option<&str>, state: TaskState, created: i64) -> u64 {
        self.task_in("default", workflow, trigger, state, created, None)
    }

    fn task_in(
        &self,
        project: &str,
        workflow: &str,
        trigger: Option<&str>,
        state: TaskState,
        created: i64,
        payload: Option<String>,
    ) -> u64 {
        let new = NewTask {
            project: project.into(),
            workflow: workflow.into(),
            workspace: "default".into(),
            workspace_root: "/tmp".into(),
            workflow_spec: serde_json::json!({"steps": []}),
            goal: None,
            payload,
            origin: "cli".into(),
            trigger: trigger.map(str::to_owned),
            scheduled_at: None,
            state: TaskState::Pending,
            reason: None,
            held: false,
            worktree: false,
            fence: None,
        };
        let id = self.tasks.create(&new, at(created)).expect("create").id;
        if state != TaskState::Pending {
            self.tasks
                .set_state(id, TaskState::Running, None, at(created))
                .expect("running");
            self.tasks
                .start_run(id, "s", 1, 1, None, &["true".into()], "s.log", at(created))
                .expect("run");
        }
        if state.is_finished() {
            self.tasks
                .set_state(id, state, None, at(created + 1))
                .expect("finish");
        }
        id
    }

    /// The ids of every task, oldest first.
    fn ids(&self) -> Vec<u64> {
        let q = crate::api::TaskQuery {
            limit: Some(10_000),
            ..Default::default()
        };
        let mut ids: Vec<u64> = self
            .tasks
            .list(&q, None)
            .expect("list")
            .iter()
            .map(|t| t.id)
            .collect();
        ids.sort_unstable();
        ids
    }
}

use TaskState::{Cancelled, Failed, Pending, Running, Succeeded};

#[test]
fn a_history_limit_keeps_exactly_the_newest_n_of_each_outcome() {
    let d = db();
    let s: Vec<u64> = (0..5)
        .map(|i| d.task("w", Some("t"), Succeeded, i))
        .collect();
    let f1 = d.task("w", Some("t"), Failed, 10);
    let c = d.task("w", Some("t"), Cancelled, 11);
    let running = d.task("w", Some("t"), Running, -100);
    let pending = d.task("w", Some("t"), Pending, -99);
    let other = d.task("w", Some("u"), Succeeded, -98);
    // A batch of 2 leaves more to do: the caller comes back.
    let first = d
        .tasks
        .prune_trigger("default", "t", Some(2), Some(1), 2)
        .expect("prune");
    assert_eq!(first, vec![s[1], s[2]], "the newest beyond the limit first");
    let second = d
        .tasks
        .prune_trigger("default", "t", Some(2), Some(1), 2)
        .expect("prune");
    assert_eq!(second, vec![s[0], f1]);
    let last = d
        .tasks
        .prune_trigger("default", "t", Some(2), Some(1), 2)
        .expect("prune");
    assert!(last.is_empty(), "{last:?}");
    assert_eq!(d.ids(), {
        let mut want = vec![s[3], s[4], c, running, pending, other];
        want.sort_unstable();
        want
    });
    // Only the limits given apply; zero keeps none.
    let gone = d
        .tasks
        .prune_trigger("default", "t", None, Some(0), 500)
        .expect("prune");
    assert_eq!(gone, vec![c]);
    assert!(d.tasks.get(running).expect("get").is_some());
    assert!(d.tasks.get(pending).expect("get").is_some());
}

#[test]
fn the_count_keeps_each_workflows_newest_and_leaves_history_limited_tasks_alone() {
    let d = db();
    let old_running = d.task("w", None, Running, 0);
    let plain: Vec<u64> = (1..=5).map(|i| d.task("w", None, Succeeded, i)).collect();
    let limited_ok = d.task("w", Some("t"), Succeeded, 6);
    let limited_failed = d.task("w", Some("t"), Failed, 7);
    let newest = d.task("w", None, Failed, 8);
    let small = d.task("v", None, Succeeded, 9);
    let limited = HistoryLimited {
        succeeded: vec![key("default", "t")],
        failed: vec![],
    };
    // w has 5 + 1 (t's failed task: its trigger limits only succeeded ones) + 1 = 7 counted.
    assert_eq!(
        d.tasks.over_count(3, &limited).expect("over"),
        vec![("default".to_owned(), "w".to_owned())]
    );
    let gone = d
        .tasks
        .prune_workflow("default", "w", 3, &limited, 500)
        .expect("prune");
    assert_eq!(gone, vec![plain[0], plain[1], plain[2], plain[3]]);
    assert_eq!(d.ids(), {
        let mut want = vec![
            old_running,
            plain[4],
            limited_ok,
            limited_failed,
            newest,
            small,
        ];
        want.sort_unstable();
        want
    });
    assert!(d.tasks.over_count(3, &limited).expect("over").is_empty());
    assert!(
        d.tasks
            .prune_workflow("default", "w", 3, &limited, 500)
            .expect("prune")
            .is_empty(),
        "at the count: nothing more goes"
    );
}

#[test]
fn the_age_sweep_removes_what_finished_before_the_cut_off_in_batches() {
    let d = db();
    let a = d.task("w", None, Succeeded, 0); // finished at 1
    let b = d.task("w", None, Running, 1); // old, but running
    let c = d.task("w", Some("t"), Succeeded, 2); // limited
    let e = d.task_in("p", "w", None, Failed, 3, None); // another project
    let f = d.task("w", None, Cancelled, 4); // finished at 5
    let g = d.task("w", None, Succeeded, 9); // finished at 10: after the cut-off
    let h = d.task("w", None, Succeeded, 20); // created after the cut-off
    let limited = HistoryLimited {
        succeeded: vec![key("default", "t")],
        failed: vec![],
    };
    let mut after = 0;
    let mut removed = Vec::new();
    let mut steps = 0;
    loop {
        let swept = d
            .tasks
            .prune_older(&AgeScan {
                finished_before: at(10),
                project: Some("default"),
                limited: Some(&limited),
                after,
                batch: 2,
            })
            .expect("sweep");
        removed.extend(swept.removed);
        steps += 1;
        match swept.next {
            Some(n) => after = n,
            None => break,
        }
    }
    assert_eq!(removed, vec![a, f]);
    assert!(steps >= 3, "batches of two: {steps} steps");
    assert_eq!(d.ids(), vec![b, c, e, g, h]);
    // Every project, no limit: the limited task and the other project's go too.
    let swept = d
        .tasks
        .prune_older(&AgeScan {
            finished_before: at(10),
            project: None,
            limited: None,
            after: 0,
            batch: 500,
        })
        .expect("sweep");
    assert_eq!(swept.removed, vec![c, e]);
    assert_eq!(swept.next, None);
    assert_eq!(d.ids(), vec![b, g, h]);
}

#[test]
fn delete_removes_a_finished_task_with_its_rows_and_refuses_the_others() {
    let d = db();
    let done = d.task("w", None, Failed, 0);
    let running = d.task("w", None, Running, 1);
    let pending = d.task("w", None, Pending, 2);
    assert!(!d.tasks.runs(done).expect("runs").is_empty());
    assert_eq!(
        d.tasks.delete_finished(done).expect("delete"),
        Deleted::Removed
    );
    assert!(d.tasks.get(done).expect("get").is_none());
    assert!(d.tasks.runs(done).expect("runs").is_empty(), "step runs go");
    assert!(
        d.tasks.events(done).expect("events").is_empty(),
        "events go"
    );
    assert_eq!(
        d.tasks.delete_finished(done).expect("delete"),
        Deleted::NotFound
    );
    assert_eq!(
        d.tasks.delete_finished(running).expect("delete"),
        Deleted::NotFinished(Running)
    );
    assert_eq!(
        d.tasks.delete_finished(pending).expect("delete"),
        Deleted::NotFinished(Pending)
    );
    assert_eq!(d.ids(), vec![running, pending]);
    assert_eq!(
        d.tasks.existing(&[done, running, 999]).expect("existing"),
        vec![running]
    );
    // The newest task stays until a newer one exists, so that its id is never reused.
    let newest = d.task("w", None, Succeeded, 3);
    assert_eq!(
        d.tasks.delete_finished(newest).expect("delete"),
        Deleted::Newest
    );
    let swept = d
        .tasks
        .prune_older(&AgeScan {
            finished_before: at(100),
            project: None,
            limited: None,
            after: 0,
            batch: 500,
        })
        .expect("sweep");
    assert!(swept.removed.is_empty(), "{swept:?}");
    assert!(
        d.tasks
            .prune_workflow("default", "w", 0, &HistoryLimited::default(), 500)
            .expect("prune")
            .is_empty()
    );
    let newer = d.task("w", None, Pending, 4);
    assert!(newer > newest);
    assert_eq!(
        d.tasks.delete_finished(newest).expect("delete"),
        Deleted::Removed
    );
    let next = d.task("w", None, Pending, 5);
    assert!(next > newer, "ids are never reused");
}

#[test]
fn freed_pages_go_back_to_the_file_system() {
    let d = db();
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
    let conn = super::super::connect(d.dir.path(), super::super::Durability::Full).expect("open");
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .expect("checkpoint");
    let file = std::fs::metadata(d.dir.path().join(crate::layout::DB_FILE))
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
