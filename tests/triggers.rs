//! Cron triggers end to end (issue: cron triggers): real daemons, real clocks. Checks that a
//! trigger does *not* fire during a window watch the task list for the whole window instead of
//! sleeping blindly.

use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, TimeZone, Timelike, Utc};

use crate::common::{TestDaemon, eventually, manifests_dir};

fn base(d: &TestDaemon) -> String {
    format!(
        r#"{}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {{name: quick}}
spec:
  max_parallel: 100
  steps: [{{id: s, command: "true"}}]
"#,
        d.workspace()
    )
}

fn trigger(name: &str, schedule: &str, workflow: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: {name}}}\nspec:\n  cron: {{schedule: \"{schedule}\"}}\n  action: {{workflow: {workflow}, workspace: default}}\n{extra}"
    )
}

fn workflow(name: &str, command: &str) -> String {
    format!(
        "---\napiVersion: orchestrator.dev/v2\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n  max_parallel: 100\n  steps: [{{id: s, command: \"{command}\"}}]\n"
    )
}

/// Tasks created by `trigger`, oldest first.
fn tasks_of(d: &TestDaemon, trigger: &str) -> Vec<serde_json::Value> {
    let v = d
        .cli(&[
            "task",
            "list",
            "--trigger",
            trigger,
            "--limit",
            "1000",
            "-o",
            "json",
        ])
        .json();
    let mut tasks = v["tasks"].as_array().cloned().unwrap_or_default();
    tasks.reverse();
    tasks
}

fn scheduled(t: &serde_json::Value) -> DateTime<Utc> {
    t["scheduledAt"]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_else(|| panic!("task without scheduledAt: {t}"))
}

fn wait_tasks(d: &TestDaemon, trigger: &str, n: usize) -> Vec<serde_json::Value> {
    eventually(
        Duration::from_secs(30),
        &format!("{n} tasks of {trigger}"),
        || {
            let t = tasks_of(d, trigger);
            (t.len() >= n).then_some(t)
        },
    )
}

/// Watches for `window` and fails if `trigger` creates a task meanwhile.
fn assert_quiet(d: &TestDaemon, trigger: &str, window: Duration) {
    let before = tasks_of(d, trigger).len();
    let end = Instant::now() + window;
    while Instant::now() < end {
        let now = tasks_of(d, trigger).len();
        assert_eq!(now, before, "{trigger} fired while it should not");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn fires(d: &TestDaemon, trigger: &str) -> Vec<serde_json::Value> {
    d.cli(&["describe", "trigger", trigger, "-o", "json"])
        .json()["fires"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn an_every_2_seconds_trigger_fires_on_schedule_survives_restarts_and_suspends() {
    let mut d = TestDaemon::start();
    d.apply(&format!(
        "{}{}",
        base(&d),
        trigger("tick", "*/2 * * * * *", "quick", "")
    ));
    let tasks = wait_tasks(&d, "tick", 2);
    for pair in tasks.windows(2) {
        let (a, b) = (scheduled(&pair[0]), scheduled(&pair[1]));
        assert_eq!(a.timestamp() % 2, 0, "scheduled on an odd second: {a}");
        assert_eq!((b - a).num_seconds(), 2, "fires not 2 s apart: {a} {b}");
    }
    assert_eq!(tasks[0]["origin"], "trigger/tick");
    let goal = tasks[0]["goal"].as_str().unwrap_or("");
    assert!(
        goal.contains("tick") && goal.contains("scheduled for"),
        "{goal}"
    );
    let described = d.cli(&["describe", "trigger", "tick"]).ok().to_owned();
    assert!(
        described.contains("Armed:       by its TriggerActor trigger/default/tick (resident)"),
        "{described}"
    );
    let table = d.cli(&["get", "trigger", "tick"]).ok().to_owned();
    assert!(
        table.contains("LAST FIRE") && table.contains("NEXT FIRE"),
        "{table}"
    );

    // A restart continues without a re-apply.
    d.restart();
    let restarted = Utc::now();
    eventually(Duration::from_secs(20), "a fire after the restart", || {
        tasks_of(&d, "tick")
            .iter()
            .any(|t| scheduled(t) > restarted)
            .then_some(())
    });

    // Suspend stops it, resume restarts it.
    assert!(
        d.cli(&["trigger", "suspend", "tick"])
            .ok()
            .contains("trigger/tick suspended")
    );
    let t = d.cli(&["get", "trigger", "tick", "-o", "json"]).json();
    assert_eq!(t["spec"]["suspend"], true);
    assert!(t["status"]["nextFire"].is_null(), "{t}");
    assert_quiet(&d, "tick", Duration::from_millis(4500));
    let suspended_until = Utc::now();
    assert!(
        d.cli(&["trigger", "resume", "tick"])
            .ok()
            .contains("trigger/tick resumed")
    );
    eventually(Duration::from_secs(20), "a fire after resume", || {
        tasks_of(&d, "tick")
            .iter()
            .any(|t| scheduled(t) > suspended_until)
            .then_some(())
    });
}

#[test]
fn concurrency_policies_forbid_replace_and_allow() {
    let d = TestDaemon::start();
    let text = format!(
        "{}{}{}{}{}{}",
        base(&d),
        workflow("slow", "sleep 5"),
        workflow("slower", "sh -c 'sleep 6101 & sleep 6101'"),
        trigger(
            "forbid",
            "*/2 * * * * *",
            "slow",
            "  concurrencyPolicy: Forbid\n"
        ),
        trigger(
            "replace",
            "*/2 * * * * *",
            "slower",
            "  concurrencyPolicy: Replace\n"
        ),
        trigger(
            "allow",
            "*/2 * * * * *",
            "slow",
            "  concurrencyPolicy: Allow\n"
        ),
    );
    d.apply(&text);

    // Forbid: while the first `sleep 5` runs, the next fire is skipped and recorded.
    let skip = eventually(Duration::from_secs(30), "a recorded Forbid skip", || {
        fires(&d, "forbid")
            .into_iter()
            .find(|f| f["kind"] == "skipped")
    });
    let reason = skip["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("concurrencyPolicy Forbid") && reason.contains("still pending or running"),
        "{reason}"
    );
    let status = d.cli(&["get", "trigger", "forbid", "-o", "json"]).json()["status"].clone();
    assert!(status["skips"].as_u64().unwrap_or(0) >= 1, "{status}");

    // Replace: the running task is cancelled (its process group killed) and a new one starts.
    let tasks = wait_tasks(&d, "replace", 2);
    let first = tasks[0]["id"].as_u64().expect("id");
    let detail = eventually(Duration::from_secs(30), "the replaced task to end", || {
        let t = d
            .cli(&["task", "show", &first.to_string(), "-o", "json"])
            .json();
        (t["task"]["state"] == "cancelled").then_some(t)
    });
    assert!(
        detail["task"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("replaced"),
        "{detail}"
    );
    let pid = detail["steps"][0]["pid"].as_i64().expect("pid");
    eventually(
        Duration::from_secs(10),
        "the replaced agent's group to be gone",
        || (!group_alive(pid)).then_some(()),
    );

    // Allow: two `sleep 5` tasks of one trigger run at the same time.
    eventually(
        Duration::from_secs(30),
        "overlapping tasks of an Allow trigger",
        || {
            let running = tasks_of(&d, "allow")
                .iter()
                .filter(|t| t["state"] == "running")
                .count();
            (running >= 2).then_some(())
        },
    );
    d.cli(&["trigger", "suspend", "replace"]).ok();
}

/// Whether any live process belongs to process group `pgid`.
fn group_alive(pgid: i64) -> bool {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .any(|stat| {
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let f: Vec<&str> = rest.split_whitespace().collect();
            f.len() > 3 && f[0] != "Z" && f[2] == pgid.to_string()
        })
}

#[test]
fn missed_fires_run_once_within_the_deadline_and_are_recorded_otherwise() {
    let mut d = TestDaemon::start();
    let text = format!(
        "{}{}{}",
        base(&d),
        trigger(
            "catchup",
            "*/2 * * * * *",
            "quick",
            "  concurrencyPolicy: Allow\n  startingDeadlineSeconds: 60\n"
        ),
        trigger(
            "strict",
            "*/2 * * * * *",
            "quick",
            "  concurrencyPolicy: Allow\n"
        ),
    );
    d.apply(&text);
    wait_tasks(&d, "catchup", 1);
    wait_tasks(&d, "strict", 1);
    assert_eq!(d.terminate(), 0);
    let stopped = Utc::now();
    // Stay down across at least two scheduled instants.
    eventually(Duration::from_secs(10), "5 s of downtime", || {
        (Utc::now() - stopped > chrono::Duration::milliseconds(5000)).then_some(())
    });
    let started = Utc::now();
    d.spawn();
    let during = |t: &serde_json::Value| scheduled(t) > stopped && scheduled(t) <= started;
    let caught = eventually(Duration::from_secs(20), "the caught-up fire", || {
        let c: Vec<_> = tasks_of(&d, "catchup").into_iter().filter(during).collect();
        (!c.is_empty()).then_some(c)
    });
    assert_eq!(caught.len(), 1, "exactly one missed fire runs: {caught:#?}");
    // The one that runs is the most recent one.
    let latest = scheduled(&caught[0]);
    assert!(
        started - latest <= chrono::Duration::seconds(2),
        "{latest} is not the latest before {started}"
    );

    let missed = eventually(
        Duration::from_secs(20),
        "a missed record for strict",
        || {
            fires(&d, "strict")
                .into_iter()
                .find(|f| f["kind"] == "missed")
        },
    );
    let reason = missed["reason"].as_str().unwrap_or("");
    assert!(
        reason.contains("were missed") && reason.contains("startingDeadlineSeconds"),
        "{reason}"
    );
    assert!(
        tasks_of(&d, "strict").iter().all(|t| !during(t)),
        "strict ran a missed fire"
    );
    let status = d.cli(&["get", "trigger", "strict", "-o", "json"]).json()["status"].clone();
    assert!(status["missed"].as_u64().unwrap_or(0) >= 2, "{status}");
}

#[test]
fn the_bundled_weekly_rotation_trigger_fires_next_on_sunday_0200_tokyo() {
    let d = TestDaemon::start();
    let bundle = manifests_dir().join("secret-rotation");
    d.cli(&["apply", "-f", bundle.to_str().expect("path")]).ok();
    let t = d
        .cli(&["get", "trigger", "weekly-secret-rotation", "-o", "json"])
        .json();
    let next = t["status"]["nextFire"].clone();
    // The coming Sunday 02:00 in Tokyo, computed independently.
    let tokyo = chrono_tz::Asia::Tokyo;
    let now = Utc::now().with_timezone(&tokyo);
    let mut day = now.date_naive();
    let want = loop {
        if day.weekday() == chrono::Weekday::Sun {
            let at = tokyo
                .from_local_datetime(&day.and_hms_opt(2, 0, 0).expect("02:00"))
                .single()
                .expect("Tokyo has no DST");
            if at > now {
                break at;
            }
        }
        day = day.succ_opt().expect("next day");
    };
    assert_eq!(
        next["local"],
        want.format("%Y-%m-%d %H:%M:%S JST").to_string(),
        "{t}"
    );
    assert_eq!(
        next["utc"],
        want.with_timezone(&Utc)
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    );
    let table = d.cli(&["get", "triggers"]).ok().to_owned();
    assert!(
        table.contains(&want.format("%Y-%m-%d 02:00:00 JST").to_string()),
        "{table}"
    );
}

#[test]
fn killing_one_trigger_actor_restarts_only_it() {
    let d = TestDaemon::start();
    let text = format!(
        "{}{}{}",
        base(&d),
        trigger(
            "victim",
            "* * * * * *",
            "quick",
            "  concurrencyPolicy: Allow\n"
        ),
        trigger(
            "bystander",
            "* * * * * *",
            "quick",
            "  concurrencyPolicy: Allow\n"
        ),
    );
    d.apply(&text);
    wait_tasks(&d, "victim", 1);
    wait_tasks(&d, "bystander", 1);
    let out = d
        .cli(&["actors", "kill", "trigger/default/victim"])
        .ok()
        .to_owned();
    assert!(out.contains("failed on purpose"), "{out}");
    let killed = Utc::now();
    // The victim is back and fires again.
    eventually(
        Duration::from_secs(10),
        "the victim to fire after its restart",
        || {
            tasks_of(&d, "victim")
                .iter()
                .any(|t| scheduled(t) > killed)
                .then_some(())
        },
    );
    // The bystander kept its schedule: every second, no gaps, no missed fires.
    eventually(
        Duration::from_secs(10),
        "three more bystander fires",
        || {
            let t: Vec<_> = tasks_of(&d, "bystander")
                .into_iter()
                .filter(|t| scheduled(t) > killed)
                .collect();
            (t.len() >= 3).then_some(())
        },
    );
    let times: Vec<DateTime<Utc>> = tasks_of(&d, "bystander").iter().map(scheduled).collect();
    for pair in times.windows(2) {
        assert_eq!(
            (pair[1] - pair[0]).num_seconds(),
            1,
            "bystander skipped a fire: {times:?}"
        );
    }
    assert!(fires(&d, "bystander").iter().all(|f| f["kind"] == "fired"));
    // The root cannot be killed; unknown actors are named.
    assert!(
        d.cli(&["actors", "kill", "root"])
            .fails()
            .contains("cannot be killed")
    );
    assert!(
        d.cli(&["actors", "kill", "trigger/default/nope"])
            .fails()
            .contains("no running actor")
    );
}

#[test]
fn manual_fires_payloads_and_history_limits() {
    let d = TestDaemon::start();
    let ws = d.dir.path().join("ws");
    let text = format!(
        "{}{}{}{}",
        base(&d),
        workflow(
            "echo",
            "sh -c 'printf %s \\\"$1\\\" > payload-$2' sh {payload} {task_id}"
        ),
        trigger(
            "manual",
            "0 0 1 1 *",
            "echo",
            "  concurrencyPolicy: Allow\n"
        ),
        trigger(
            "pruned",
            "* * * * * *",
            "quick",
            "  concurrencyPolicy: Allow\n  historyLimit: {successful: 2, failed: 1}\n"
        ),
    );
    d.apply(&text);
    let id = d
        .cli(&[
            "trigger",
            "fire",
            "manual",
            "--payload",
            r#"{"ref": "main"}"#,
        ])
        .ok()
        .trim()
        .to_owned();
    let file = ws.join(format!("payload-{id}"));
    // The shell creates the file before printf writes it: wait for the content.
    let got = eventually(Duration::from_secs(20), "the manual task", || {
        std::fs::read_to_string(&file)
            .ok()
            .filter(|s| !s.is_empty())
    });
    assert_eq!(got, r#"{"ref": "main"}"#);
    let run = d.cli(&["trigger", "fire", "manual", "--payload", "{oops"]);
    // A malformed argument is a usage error: exit 2, nothing sent.
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("--payload is not valid JSON"),
        "{}",
        run.stderr
    );
    let run = d.cli(&["trigger", "fire", "nope"]);
    assert!(
        run.fails().contains("trigger/nope not found"),
        "{}",
        run.stderr
    );
    let manual = fires(&d, "manual");
    assert!(
        manual.iter().any(|f| f["reason"] == "fired by request"),
        "{manual:#?}"
    );

    // historyLimit keeps the newest two succeeded tasks (and their logs).
    eventually(
        Duration::from_secs(30),
        "at least five fires of pruned",
        || {
            let st = d.cli(&["get", "trigger", "pruned", "-o", "json"]).json();
            (st["status"]["fires"].as_u64().unwrap_or(0) >= 5).then_some(())
        },
    );
    let done: Vec<_> = tasks_of(&d, "pruned")
        .into_iter()
        .filter(|t| t["state"] == "succeeded")
        .collect();
    assert!(
        done.len() <= 3,
        "history not pruned: {} succeeded tasks kept",
        done.len()
    );
    let runs: Vec<_> = std::fs::read_dir(d.data_dir.join("runs"))
        .expect("runs")
        .flatten()
        .collect();
    assert!(
        runs.len() < 5 + 2,
        "run directories not pruned: {}",
        runs.len()
    );
    // Exactly two once the last task has finished (the limit is applied when a task finishes,
    // not only when the next one is created), and no run directory of a pruned task is left.
    d.cli(&["trigger", "suspend", "pruned"]).ok();
    eventually(
        Duration::from_secs(30),
        "exactly two succeeded tasks",
        || {
            let tasks = tasks_of(&d, "pruned");
            let active = tasks
                .iter()
                .any(|t| t["state"] == "pending" || t["state"] == "running");
            let done = tasks.iter().filter(|t| t["state"] == "succeeded").count();
            (!active && done == 2).then_some(())
        },
    );
    let mut listed: Vec<String> = d
        .cli(&["task", "list", "--limit", "1000", "-o", "json"])
        .json()["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["id"].to_string())
        .collect();
    listed.sort();
    eventually(
        Duration::from_secs(30),
        "one run directory per task kept",
        || {
            let mut dirs: Vec<String> = std::fs::read_dir(d.data_dir.join("runs"))
                .expect("runs")
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            dirs.sort();
            (dirs == listed).then_some(())
        },
    );
}

/// The trigger supervisor's self-report (`actors inspect triggers`).
fn supervisor_state(d: &TestDaemon) -> serde_json::Value {
    d.cli(&["actors", "inspect", "triggers", "-o", "json"])
        .json()["state"]
        .clone()
}

#[test]
fn passivated_triggers_wake_before_their_fire_and_survive_a_restart() {
    // With a 2 s resident window an every-6-seconds trigger spends most of its time passivated:
    // no actor, just an entry in the supervisor's wake queue.
    let mut d = TestDaemon::start_with(&["--trigger-resident-window", "2"]);
    d.apply(&format!(
        "{}{}{}",
        base(&d),
        trigger("sparse", "*/6 * * * * *", "quick", ""),
        trigger("dense", "* * * * * *", "quick", "  suspend: true\n"),
    ));
    eventually(Duration::from_secs(20), "sparse passivated", || {
        let s = supervisor_state(&d);
        let gone = !d
            .actor_names()
            .contains(&"trigger/default/sparse".to_owned());
        // Asking for the actor meanwhile says why it is not there.
        let asked = d.cli(&["actors", "inspect", "trigger/default/sparse"]);
        let explained = asked.code == 1 && asked.stderr.contains("resident window");
        // And `describe` says where the trigger is armed.
        let armed = d
            .cli(&["describe", "trigger", "sparse", "-o", "json"])
            .json()["armed"]
            .clone();
        let queued = armed["by"] == "wakeQueue" && armed["nextFire"].is_string();
        (s["dormant"] == 1 && s["triggers"] == 1 && gone && explained && queued).then_some(())
    });
    let tasks = wait_tasks(&d, "sparse", 2);
    let dense = d.cli(&["describe", "trigger", "dense"]).ok().to_owned();
    assert!(dense.contains("Armed:       no (suspended"), "{dense}");

    // A restart while it is dormant: it continues without a re-apply and misses nothing.
    let before = tasks.len();
    eventually(
        Duration::from_secs(20),
        "a fresh fire to restart after",
        || (tasks_of(&d, "sparse").len() > before).then_some(()),
    );
    d.restart();
    let restarted = Utc::now();
    let tasks = eventually(
        Duration::from_secs(30),
        "two fires after the restart",
        || {
            let t = tasks_of(&d, "sparse");
            (t.iter().filter(|t| scheduled(t) > restarted).count() >= 2).then_some(t)
        },
    );
    for pair in tasks.windows(2) {
        let (a, b) = (scheduled(&pair[0]), scheduled(&pair[1]));
        assert_eq!(
            (b - a).num_seconds(),
            6,
            "a fire was skipped between {a} and {b}"
        );
    }
    let kinds: Vec<_> = fires(&d, "sparse")
        .iter()
        .map(|f| f["kind"].as_str().unwrap_or("").to_owned())
        .collect();
    assert!(kinds.iter().all(|k| k == "fired"), "{kinds:?}");
    // The trigger supervisor's own restart, a change of schedule while dormant, suspend, resume
    // and delete run on paused time in `actors/trigger_supervisor/tests.rs`
    // (`a_dormant_trigger_survives_a_restart_of_its_supervisor`,
    // `a_dormant_trigger_is_reconfigured_suspended_resumed_and_deleted`).
}

/// Stops the daemon right after a trigger is applied and before its first fire, starts it after
/// that fire's instant, and checks the fire is recorded as missed (and did not run).
fn never_fired_then_down(extra: &[&str]) {
    let mut d = TestDaemon::start_with(extra);
    d.apply(&base(&d));
    let at = Utc::now() + chrono::Duration::seconds(6);
    let second = at.timestamp() % 60;
    d.apply(&trigger(
        "once",
        &format!("{second} * * * * *"),
        "quick",
        "",
    ));
    assert_eq!(d.terminate(), 0);
    let due = at.with_nanosecond(0).unwrap_or(at);
    assert!(
        Utc::now() < due,
        "the daemon stopped too late for this test"
    );
    eventually(
        Duration::from_secs(15),
        "the fire's instant to pass",
        || (Utc::now() > due + chrono::Duration::seconds(1)).then_some(()),
    );
    d.spawn();
    let missed = eventually(Duration::from_secs(20), "a missed record", || {
        fires(&d, "once")
            .into_iter()
            .find(|f| f["kind"] == "missed")
    });
    let reason = missed["reason"].as_str().unwrap_or("");
    assert!(reason.contains("1 fire(s)"), "{extra:?}: {reason}");
    assert!(tasks_of(&d, "once").is_empty(), "{extra:?}: it ran");
}

#[test]
fn a_resident_trigger_that_never_fired_records_the_fire_missed_while_the_daemon_was_down() {
    never_fired_then_down(&[]);
}

#[test]
fn a_passivated_trigger_that_never_fired_records_the_fire_missed_while_the_daemon_was_down() {
    // With a 2 s window the trigger, 6 s from its fire, is planned dormant without an actor.
    never_fired_then_down(&["--trigger-resident-window", "2"]);
}

/// The card's shape by default: every cron trigger has its TriggerActor from apply to delete,
/// the weekly rotation trigger included, so it can be inspected, traced and killed.
#[test]
fn a_weekly_trigger_has_its_actor_right_after_apply() {
    let d = TestDaemon::start();
    d.apply(&format!(
        "{}{}",
        base(&d),
        trigger("weekly", "0 3 * * 1", "quick", "")
    ));
    eventually(Duration::from_secs(10), "the weekly TriggerActor", || {
        d.actor_names()
            .contains(&"trigger/default/weekly".to_owned())
            .then_some(())
    });
    let inspect = d
        .cli(&["actors", "inspect", "trigger/default/weekly", "-o", "json"])
        .json();
    assert!(inspect["state"].is_object(), "{inspect}");
    let armed = d
        .cli(&["describe", "trigger", "weekly", "-o", "json"])
        .json()["armed"]
        .clone();
    assert_eq!(armed["by"], "actor", "{armed}");
    d.cli(&["delete", "trigger", "weekly"]).ok();
    eventually(Duration::from_secs(10), "no actor after delete", || {
        (!d.actor_names()
            .contains(&"trigger/default/weekly".to_owned()))
        .then_some(())
    });
}

/// Log lines stay as long as they were: every fire is a root span of its own. (Nested in the
/// previous fire's span, as it was, the line of the 20th fire carried all 19 before it, and a
/// per-minute trigger wrote 85 KB lines after a day.)
#[test]
fn the_log_line_of_the_20th_fire_is_no_longer_than_the_first() {
    let d = TestDaemon::start();
    d.apply(&format!(
        "{}{}",
        base(&d),
        trigger("tick", "* * * * * *", "quick", "")
    ));
    let lines = eventually(Duration::from_secs(60), "20 fires in the log", || {
        let log = d.log();
        let created: Vec<String> = log
            .lines()
            .filter(|l| l.contains("task created") && l.contains("origin=trigger/tick"))
            .map(str::to_owned)
            .collect();
        (created.len() >= 20).then_some(created)
    });
    let (first, last) = (&lines[0], &lines[19]);
    assert!(first.contains("fire{"), "{first}");
    // The task id and the instant may add a few characters.
    assert!(
        last.len() <= first.len() + 8,
        "the 20th fire's line grew:\n{first}\n{last}"
    );
}

/// Issue 15: a manual `trigger fire` counts as a fire — `get trigger` shows it under LAST FIRE
/// and FIRES, `describe trigger` in its status and history — for a cron trigger (whose
/// TriggerActor keeps its own counts) and a webhook trigger alike, and across a restart.
#[test]
fn manual_fires_count_as_fires() {
    let mut d = TestDaemon::start();
    d.apply(&format!(
        "{}{}---\napiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {{name: hooks}}\nspec: {{data: {{k: \"manual-fire-secret-0123\"}}}}\n---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: hook}}\nspec:\n  event:\n    source: webhook\n    webhook: {{secret: {{fromRef: hooks}}, scheme: hmac-sha256}}\n  action: {{workflow: quick, workspace: default}}\n  concurrencyPolicy: Allow\n",
        base(&d),
        trigger("weekly", "0 2 * * 0", "quick", "  concurrencyPolicy: Allow\n")
    ));
    let status = |d: &TestDaemon, name: &str| {
        d.cli(&["get", "trigger", name, "-o", "json"]).json()["status"].clone()
    };
    for name in ["weekly", "hook"] {
        let before = status(&d, name);
        assert_eq!(before["fires"], 0, "{name}: {before}");
        assert!(before["lastFire"].is_null(), "{name}: {before}");
        let first = d.cli(&["trigger", "fire", name]).ok().trim().to_owned();
        let second = d.cli(&["trigger", "fire", name]).ok().trim().to_owned();
        assert_ne!(first, second);
        let after = status(&d, name);
        assert_eq!(after["fires"], 2, "{name}: {after}");
        assert!(after["lastFire"]["utc"].is_string(), "{name}: {after}");
        assert_eq!(after["lastTask"].to_string(), second, "{name}: {after}");
        let table = d.cli(&["get", "trigger", name]).ok().to_owned();
        // The last columns are FIRES, GEN and AGE.
        let row = table.lines().nth(1).expect("a row");
        assert_eq!(
            row.split_whitespace().rev().nth(2),
            Some("2"),
            "FIRES is not 2:\n{table}"
        );
        if name == "weekly" {
            assert!(
                !row.contains(" - "),
                "LAST FIRE or NEXT FIRE is empty:\n{table}"
            );
        }
        let desc = d.cli(&["describe", "trigger", name, "-o", "json"]).json();
        assert_eq!(desc["resource"]["status"]["fires"], 2, "{desc:#}");
        let history = desc["fires"].as_array().cloned().unwrap_or_default();
        assert_eq!(history.len(), 2, "{desc:#}");
        assert!(history.iter().all(|f| f["kind"] == "fired"), "{desc:#}");
    }
    // The TriggerActor's own writes (a restart resumes and saves its state) keep them.
    d.restart();
    for name in ["weekly", "hook"] {
        eventually(
            Duration::from_secs(10),
            "the counts after a restart",
            || (status(&d, name)["fires"] == 2).then_some(()),
        );
    }
    d.cli(&["trigger", "fire", "weekly"]).ok();
    assert_eq!(status(&d, "weekly")["fires"], 3);
    assert!(status(&d, "weekly")["nextFire"]["utc"].is_string());
}
