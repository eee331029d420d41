//! The webhook delivery log end to end: every request that reaches a webhook trigger is listed by
//! `webhook deliveries` with its status, outcome, key name and task (never a secret); a logged
//! delivery's payload starts a new task with `webhook redeliver`; `task rerun` starts a task like
//! an earlier one.

use std::time::Duration;

use orchestrator::domain::signature::Scheme;

use crate::common::{TestDaemon, eventually, post};
use crate::webhooks::{STORE_OLD, addr, hook, setup, signed, status_of, tasks_of};

fn deliveries(d: &TestDaemon, trigger: &str) -> Vec<serde_json::Value> {
    d.cli(&["webhook", "deliveries", trigger, "-o", "json"])
        .json()["deliveries"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn the_delivery_log_lists_every_request_and_redelivers_a_kept_payload() {
    let d = TestDaemon::start();
    let filter = "    filter: {condition: \"payload.ref == 'refs/heads/main'\"}\n";
    setup(&d, &hook("gh", "github", filter));
    let a = addr(&d);
    let main = r#"{"ref": "refs/heads/main", "n": 1}"#;
    let dev = r#"{"ref": "refs/heads/dev", "n": 2}"#;
    let send = |body: &str, secret: &str, id: &str| {
        status_of(&post(
            a,
            "/webhook/gh",
            &signed(Scheme::Github, secret, body, id),
            body.as_bytes(),
        ))
    };
    let (status, v) = send(main, STORE_OLD, "d-1");
    assert_eq!(
        (status, v["status"].as_str()),
        (202, Some("accepted")),
        "{v}"
    );
    let first = v["task"].as_u64().expect("task");
    assert_eq!(send(dev, STORE_OLD, "d-2").1["status"], "filtered");
    let (_, v) = send(main, STORE_OLD, "d-1");
    assert_eq!(
        (v["status"].as_str(), v["task"].as_u64()),
        (Some("duplicate"), Some(first))
    );
    assert_eq!(send(main, "not-the-secret", "d-3").0, 401);
    // A path that names no trigger is not logged (its name is the sender's choice).
    assert_eq!(
        post(
            a,
            "/webhook/nope",
            &signed(Scheme::Github, STORE_OLD, main, "d-5"),
            main.as_bytes()
        )
        .0,
        404
    );

    // The log is written in batches: wait for all four.
    let rows = eventually(Duration::from_secs(20), "four logged deliveries", || {
        let rows = deliveries(&d, "gh");
        (rows.len() == 4).then_some(rows)
    });
    let outcomes: Vec<&str> = rows
        .iter()
        .map(|r| r["outcome"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        outcomes,
        ["unauthorized", "duplicate", "filtered", "accepted"],
        "newest first: {rows:?}"
    );
    let accepted = &rows[3];
    assert_eq!(accepted["status"], 202);
    assert_eq!(accepted["key"], "current");
    assert_eq!(accepted["task"].as_u64(), Some(first));
    assert_eq!(accepted["deliveryId"], "d-1");
    assert_eq!(accepted["payloadBytes"].as_u64(), Some(main.len() as u64));
    assert_eq!(accepted["redeliverable"], true);
    assert_eq!(
        rows[1]["task"].as_u64(),
        Some(first),
        "a duplicate names its task"
    );
    let unauthorized = &rows[0];
    assert_eq!(unauthorized["status"], 401);
    assert!(unauthorized.get("key").is_none(), "{unauthorized}");
    assert_eq!(
        unauthorized["redeliverable"], false,
        "an unverified body is never kept"
    );

    // The table, and no secret anywhere in what the log shows.
    let table = d.cli(&["webhook", "deliveries", "gh"]);
    let table = table.ok();
    assert!(table.starts_with("ID "), "{table}");
    assert!(
        table.contains("filtered") && table.contains("unauthorized"),
        "{table}"
    );
    let json = d
        .cli(&["webhook", "deliveries", "gh", "-o", "json"])
        .ok()
        .to_owned();
    for text in [table, json.as_str()] {
        assert!(
            !text.contains(STORE_OLD),
            "a secret in the delivery log: {text}"
        );
    }

    // The filtered delivery, redelivered: a task with its payload (the filter does not apply).
    let filtered = rows[2]["id"].as_u64().expect("id").to_string();
    let run = d.cli(&["webhook", "redeliver", &filtered]);
    let task: u64 = run.ok().trim().parse().expect("a task id");
    let shown = d
        .cli(&["task", "show", &task.to_string(), "-o", "json"])
        .json();
    assert_eq!(shown["payload"].as_str(), Some(dev), "{shown}");
    assert_eq!(
        shown["task"]["origin"].as_str(),
        Some(format!("redelivery/{filtered}").as_str()),
        "{shown}"
    );
    assert_eq!(tasks_of(&d, "gh"), 2);

    // What cannot be redelivered says why.
    let unauthorized = unauthorized["id"].as_u64().expect("id").to_string();
    let refused = d.cli(&["webhook", "redeliver", &unauthorized]);
    assert!(
        refused.fails().contains("has no stored payload"),
        "{}",
        refused.stderr
    );
    let missing = d.cli(&["webhook", "redeliver", "987654"]);
    assert!(
        missing.fails().contains("is not in the log"),
        "{}",
        missing.stderr
    );
    let unknown = d.cli(&["webhook", "deliveries", "gh-typo"]);
    assert!(unknown.fails().contains("not found"), "{}", unknown.stderr);

    // `task rerun`: the same workflow, goal and payload, in a new task.
    let run = d.cli(&["task", "rerun", &first.to_string()]);
    let rerun: u64 = run.ok().trim().parse().expect("a task id");
    assert_ne!(rerun, first);
    let (old, new) = (
        d.cli(&["task", "show", &first.to_string(), "-o", "json"])
            .json(),
        d.cli(&["task", "show", &rerun.to_string(), "-o", "json"])
            .json(),
    );
    for field in ["workflow", "workspace", "goal"] {
        assert_eq!(
            old["task"][field], new["task"][field],
            "{field}: {old} / {new}"
        );
    }
    assert_eq!(old["payload"].as_str(), Some(main));
    assert_eq!(new["payload"], old["payload"]);
    assert_eq!(
        new["task"]["origin"].as_str(),
        Some(format!("rerun/{first}").as_str())
    );
    let missing = d.cli(&["task", "rerun", "987654"]);
    assert!(missing.fails().contains("987654"), "{}", missing.stderr);
}
