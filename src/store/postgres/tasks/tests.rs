//! What only the PostgreSQL task store must show, on a fresh database each: two nodes (two
//! pools) creating tasks for one delivery id at once make one task, many claims of one pending
//! task at once start it on one node, expired delivery ids are pruned as tasks are created, and
//! text PostgreSQL cannot hold is stored all the same. The cases both backends share are
//! `store::task_cases`.

use std::sync::{Arc, Barrier};

use chrono::{DateTime, Duration, Utc};

use super::super::testing::fresh;
use super::super::{Db, Replays};
use super::Tasks;
use crate::api::RunState;
use crate::store::task_cases::{at, new_task};
use crate::store::{ReplayStore, RunEnd, SeenDelivery, StoreError, TaskStore};

fn delivery(id: &str, expires_at: DateTime<Utc>) -> SeenDelivery {
    SeenDelivery {
        project: "default".into(),
        trigger: "hook".into(),
        id: id.into(),
        expires_at,
    }
}

fn count(db: &Db, sql: &str) -> i64 {
    db.block(async {
        let c = db.client().await.expect("client");
        c.query_one(sql, &[])
            .await
            .expect("count")
            .try_get(0)
            .expect("a count")
    })
}

#[test]
fn one_delivery_sent_to_two_nodes_at_once_makes_one_task() {
    let Some(t) = fresh("one_delivery_two_nodes") else {
        return;
    };
    let other = Arc::new(Db::connect(&t.url).expect("a second node's pool"));
    let nodes = [Tasks::new(t.db.clone()), Tasks::new(other)];
    const PER_NODE: usize = 8;
    for round in 0..5 {
        let id = format!("d-{round}");
        let start = Barrier::new(2 * PER_NODE);
        let results: Vec<_> = std::thread::scope(|s| {
            let callers: Vec<_> = (0..2 * PER_NODE)
                .map(|n| {
                    let (node, start, id) = (&nodes[n % 2], &start, &id);
                    s.spawn(move || {
                        start.wait();
                        node.create_with(
                            &new_task("w", &n.to_string()),
                            Some(&delivery(id, at(5))),
                            at(0),
                        )
                    })
                })
                .collect();
            callers
                .into_iter()
                .map(|c| c.join().expect("caller"))
                .collect()
        });
        let created: Vec<u64> = results
            .iter()
            .filter_map(|r| r.as_ref().ok().map(|t| t.id))
            .collect();
        assert_eq!(created.len(), 1, "round {round}: {results:?}");
        for r in &results {
            match r {
                Ok(_) => {}
                Err(StoreError::DuplicateDelivery { task }) => assert_eq!(*task, created[0]),
                Err(e) => panic!("round {round}: {e}"),
            }
        }
        assert_eq!(
            Replays::new(t.db.clone())
                .seen("default", "hook", &id, at(1))
                .expect("seen"),
            Some(created[0])
        );
    }
    assert_eq!(count(&t.db, "SELECT COUNT(*) FROM tasks"), 5);
    assert_eq!(count(&t.db, "SELECT COUNT(*) FROM task_events"), 5);
    assert_eq!(count(&t.db, "SELECT COUNT(*) FROM webhook_deliveries"), 5);
}

#[test]
fn expired_delivery_ids_are_pruned_as_tasks_are_created() {
    let Some(t) = fresh("expired_delivery_ids_are_pruned") else {
        return;
    };
    let tasks = Tasks::new(t.db.clone());
    for n in 0..5 {
        tasks
            .create_with(
                &new_task("w", "{}"),
                Some(&delivery(&format!("old-{n}"), at(1))),
                at(0),
            )
            .expect("created");
    }
    // None had expired by the time of its own creation.
    assert_eq!(count(&t.db, "SELECT COUNT(*) FROM webhook_deliveries"), 5);
    tasks.create(&new_task("w", "{}"), at(2)).expect("created");
    assert_eq!(
        count(&t.db, "SELECT COUNT(*) FROM webhook_deliveries"),
        5,
        "a creation without a delivery neither records nor prunes"
    );
    let new = tasks
        .create_with(
            &new_task("w", "{}"),
            Some(&delivery("new", at(2) + Duration::minutes(5))),
            at(2),
        )
        .expect("created");
    assert_eq!(
        count(&t.db, "SELECT COUNT(*) FROM webhook_deliveries"),
        1,
        "the expired ids are gone"
    );
    assert_eq!(
        Replays::new(t.db.clone())
            .seen("default", "hook", "new", at(3))
            .expect("seen"),
        Some(new.id)
    );
}

#[test]
fn a_nul_in_an_agents_output_is_stored_as_a_replacement_character() {
    let Some(t) = fresh("a_nul_in_an_agents_output") else {
        return;
    };
    let tasks = Tasks::new(t.db.clone());
    let id = tasks
        .create(&new_task("w", "{}"), at(0))
        .expect("created")
        .id;
    let run = tasks
        .start_run(id, "s", 1, 1, None, &["a\0b".into()], "s.log", at(1))
        .expect("run");
    let end = RunEnd {
        state: RunState::Failed,
        exit_code: Some(1),
        signal: None,
        reason: Some("bad\0reason".into()),
        stdout: "out\0put".into(),
        stdout_bytes: 7,
        stderr_bytes: 0,
        stream: None,
    };
    tasks.finish_run(run, &end, at(2)).expect("finish");
    let runs = tasks.runs(id).expect("runs");
    assert_eq!(
        runs[0].argv,
        vec!["a\0b"],
        "argv is JSON: its NUL is escaped"
    );
    assert_eq!(runs[0].reason.as_deref(), Some("bad\u{FFFD}reason"));
    assert_eq!(
        tasks.outputs(id).expect("outputs")[0].stdout,
        "out\u{FFFD}put"
    );
}

#[test]
fn a_pending_task_claimed_by_many_nodes_at_once_starts_on_one() {
    let Some(t) = fresh("a_pending_task_claimed_at_once") else {
        return;
    };
    let other = Arc::new(Db::connect(&t.url).expect("a second node's pool"));
    let nodes = [Tasks::new(t.db.clone()), Tasks::new(other)];
    const CLAIMERS: usize = 8;
    for round in 0..5 {
        let id = nodes[0]
            .create(&new_task("w", &round.to_string()), at(0))
            .expect("created")
            .id;
        let start = Barrier::new(CLAIMERS);
        let won: Vec<String> = std::thread::scope(|s| {
            let claimers: Vec<_> = (0..CLAIMERS)
                .map(|n| {
                    let (store, start) = (&nodes[n % 2], &start);
                    s.spawn(move || {
                        start.wait();
                        let node = format!("n{n}");
                        store
                            .claim(id, &node, at(1))
                            .expect("claim")
                            .then_some(node)
                    })
                })
                .collect();
            claimers
                .into_iter()
                .filter_map(|c| c.join().expect("claimer"))
                .collect()
        });
        assert_eq!(won.len(), 1, "round {round}: {won:?}");
        let task = nodes[1].get(id).expect("get").expect("task");
        assert_eq!(task.node.as_deref(), Some(won[0].as_str()));
        let running = nodes[1]
            .events(id)
            .expect("events")
            .iter()
            .filter(|e| e.message == "running")
            .count();
        assert_eq!(running, 1, "round {round}");
    }
}
