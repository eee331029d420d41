//! Tasks end to end (issue: workflows, tasks and agents): real daemons running real agent
//! subprocesses. Processes are found through `/proc/*/cmdline`; every test uses its own
//! `sleep` duration so that parallel tests never see each other's processes.

use std::time::Duration;

use crate::common::{TestDaemon, eventually};

/// A secret store and a template that renders the goal.
const BASE: &str = r#"
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {name: creds}
spec: {data: {token: "tok-SECRET-9f8e7d6c5b"}}
---
apiVersion: orchestrator.dev/v2
kind: StepTemplate
metadata: {name: say}
spec: {prompt: "{goal}"}
"#;

fn setup(d: &TestDaemon, extra: &str) -> std::path::PathBuf {
    d.apply(&format!("{}---{BASE}---\n{extra}", d.workspace()));
    d.workspace_dir()
}

fn create(d: &TestDaemon, workflow: &str, extra: &[&str]) -> u64 {
    let mut args = vec!["task", "create", "--workflow", workflow];
    args.extend_from_slice(extra);
    d.cli(&args).ok().trim().parse().expect("task id")
}

/// Pids of live processes whose command line contains `needle`.
fn pids(needle: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if !zombie && cmd.contains(needle) {
            out.push(pid);
        }
    }
    out
}

fn wait_gone(needle: &str) {
    eventually(
        Duration::from_secs(30),
        &format!("no process running {needle:?}"),
        || pids(needle).is_empty().then_some(()),
    );
}

#[test]
fn a_two_step_workflow_passes_prev_stdout_and_failures_fail_the_task() {
    let d = TestDaemon::start();
    setup(
        &d,
        r#"
apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {name: speaker}
spec: {command: "sh -c 'echo \"agent heard: $1\"' sh {prompt}", capabilities: [talk]}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: two}
spec:
  steps:
    - {id: talk, template: say, required_capability: talk}
    - {id: relay, command: "printf 'step two got [%s]' {prev_stdout}"}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: broken}
spec:
  steps:
    - {id: fail, command: "sh -c 'echo failing; exit 3'"}
    - {id: never, command: "touch never-ran"}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: flaky}
spec:
  steps:
    - id: try
      command: "sh -c 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo attempt $n; [ $n -ge 3 ]'"
      retries: 2
"#,
    );
    let id = create(&d, "two", &["--goal", "hello world"]);
    let t = d.finished_task(id);
    assert_eq!(t["task"]["state"], "succeeded", "{t:#}");
    assert_eq!(t["steps"][0]["agent"], "speaker");
    assert_eq!(t["steps"][0]["exitCode"], 0);
    let argv = t["steps"][1]["argv"].as_array().expect("argv").clone();
    assert_eq!(argv[2], "agent heard: hello world", "{argv:?}");
    let logs = d.cli(&["task", "logs", &id.to_string()]).ok().to_owned();
    assert!(
        logs.contains("out step two got [agent heard: hello world]"),
        "{logs}"
    );

    // A failing step fails the task with its exit code; later steps never run.
    let run = d.cli(&["task", "create", "--workflow", "broken", "--wait"]);
    let err = run.fails();
    assert!(
        err.contains("failed: step \"fail\" failed: exit code 3"),
        "{err}"
    );
    let id: u64 = run
        .stdout
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .expect("id");
    let t = d.task(id);
    assert_eq!(t["steps"].as_array().map(Vec::len), Some(1));
    assert_eq!(t["steps"][0]["exitCode"], 3);
    assert!(!d.dir.path().join("ws/never-ran").exists());

    // Retries: the third attempt succeeds.
    let id = create(&d, "flaky", &[]);
    let t = d.finished_task(id);
    assert_eq!(t["task"]["state"], "succeeded", "{t:#}");
    let states: Vec<String> = t["steps"]
        .as_array()
        .expect("steps")
        .iter()
        .map(|s| format!("{}:{}", s["attempt"], s["state"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(states, ["1:failed", "2:failed", "3:succeeded"]);
}

#[test]
fn hostile_goals_and_payloads_arrive_verbatim_and_run_nothing() {
    let d = TestDaemon::start();
    let ws = setup(
        &d,
        r#"
apiVersion: orchestrator.dev/v2
kind: StepTemplate
metadata: {name: both}
spec: {prompt: "{goal}|{payload}"}
---
apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {name: by-arg}
spec: {command: "sh -c 'printf %s \"$1\" > got-arg' sh {prompt}", capabilities: [arg]}
---
apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {name: by-stdin}
spec: {command: "sh -c 'cat > got-stdin'", capabilities: [stdin], promptDelivery: stdin}
---
apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {name: by-file}
spec: {command: "sh -c 'cat \"$1\" > got-file' sh {prompt_file}", capabilities: [file], promptDelivery: file}
---
apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {name: by-env}
spec: {command: "sh -c 'printf %s \"$ORCH_PROMPT\" > got-env'", capabilities: [env], promptDelivery: env}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: deliver}
spec:
  steps:
    - {id: a, template: both, required_capability: arg}
    - {id: s, template: both, required_capability: stdin}
    - {id: f, template: both, required_capability: file}
    - {id: e, template: both, required_capability: env}
    - {id: c, command: "sh -c 'printf %s \"$1\" > got-command' sh {goal}"}
"#,
    );
    let goal = "'; touch pwned-quote; ' $(touch pwned-subst) `touch pwned-tick` \"x\" && touch pwned-and\nsecond line ; touch pwned-semi ✓";
    let payload = r#"{"text": "$(touch pwned-payload) `id` '; rm -rf / '"}"#;
    let id = create(&d, "deliver", &["--goal", goal, "--payload", payload]);
    let t = d.finished_task(id);
    assert_eq!(t["task"]["state"], "succeeded", "{t:#}");
    let want = format!("{goal}|{payload}");
    for mode in ["arg", "stdin", "file", "env"] {
        let got = std::fs::read_to_string(ws.join(format!("got-{mode}"))).expect("agent output");
        assert_eq!(got, want, "prompt by {mode} was altered");
    }
    assert_eq!(
        std::fs::read_to_string(ws.join("got-command")).expect("command output"),
        goal
    );
    for entry in std::fs::read_dir(&ws).expect("ws").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with("pwned"),
            "{name} was created: text ran as shell syntax"
        );
    }
    // The prompt file is private.
    use std::os::unix::fs::PermissionsExt;
    let prompt = d.data_dir.join(format!("runs/{id}/f-c1-a1.prompt"));
    let mode = std::fs::metadata(&prompt)
        .expect("prompt file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn an_agent_applies_manifests_back_into_the_daemon() {
    let d = TestDaemon::start();
    setup(
        &d,
        r#"
apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {name: applier}
spec:
  command: >-
    sh -c 'printf "apiVersion: orchestrator.dev/v2\nkind: EnvStore\nmetadata: {name: from-agent, project: %s}\nspec: {data: {TASK: \"%s\", STEP: \"%s\"}}\n"
    "$ORCHESTRATOR_PROJECT" "$ORCHESTRATOR_TASK_ID" "$ORCHESTRATOR_STEP_ID" | orchestrator apply -f -'
  capabilities: [apply]
  promptDelivery: env
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: self-apply}
spec:
  steps: [{id: write, template: say, required_capability: apply}]
"#,
    );
    let id = create(&d, "self-apply", &[]);
    let t = d.finished_task(id);
    assert_eq!(t["task"]["state"], "succeeded", "{t:#}");
    let env = d
        .cli(&["get", "envstore", "from-agent", "-o", "json"])
        .json();
    assert_eq!(env["spec"]["data"]["TASK"], id.to_string());
    assert_eq!(env["spec"]["data"]["STEP"], "write");
    let logs = d.cli(&["task", "logs", &id.to_string()]).ok().to_owned();
    assert!(logs.contains("envstore/from-agent created"), "{logs}");
}

#[test]
fn a_secret_printed_by_an_agent_never_reaches_the_run_log() {
    let d = TestDaemon::start();
    setup(
        &d,
        r#"
apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {name: leaky}
spec:
  command: >-
    sh -c 'echo "token=$TOKEN"; echo "$TOKEN" >&2; a=${TOKEN%??????}; b=${TOKEN#"$a"};
    printf %s "$a"; sleep 0.2; printf "%s\n" "$b"; echo {prompt}'
  capabilities: [leak]
  env: [{name: TOKEN, refValue: {name: creds, key: token}}]
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: leak}
spec:
  steps:
    - {id: leak, template: say, required_capability: leak}
    - {id: next, command: "printf %s {prev_stdout}"}
"#,
    );
    let id = create(&d, "leak", &["--goal", "done"]);
    let t = d.finished_task(id);
    assert_eq!(t["task"]["state"], "succeeded", "{t:#}");
    let secret = "tok-SECRET-9f8e7d6c5b";
    let mut redacted = 0;
    for entry in std::fs::read_dir(d.data_dir.join(format!("runs/{id}")))
        .expect("run dir")
        .flatten()
    {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        assert!(
            !text.contains(secret),
            "secret in {}",
            entry.path().display()
        );
        assert!(
            !text.contains("tok-SECRET") && !text.contains("9f8e7d6c5b"),
            "part of the secret in {}",
            entry.path().display()
        );
        redacted += text.matches("[REDACTED]").count();
    }
    assert!(
        redacted >= 3,
        "expected the three prints to be redacted, saw {redacted}"
    );
    for out in [
        d.cli(&["task", "logs", &id.to_string()]).stdout,
        d.cli(&["task", "show", &id.to_string(), "-o", "json"])
            .stdout,
    ] {
        assert!(!out.contains(secret));
    }
    d.cli(&["daemon", "status"]).ok();
    let db = std::fs::read(d.data_dir.join("state.db-wal")).unwrap_or_default();
    assert!(
        !String::from_utf8_lossy(&db).contains(secret),
        "secret in the task tables"
    );
}

#[test]
fn cancel_and_timeout_kill_the_agent_and_its_grandchildren() {
    let d = TestDaemon::start();
    setup(
        &d,
        r#"
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: slow}
spec:
  steps: [{id: wait, command: "sh -c 'sleep 6001 & sleep 6001'"}]
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: too-slow}
spec:
  steps: [{id: wait, command: "sh -c 'sleep 6002 & sleep 6002'", timeout_secs: 1}]
"#,
    );
    let id = create(&d, "slow", &[]);
    eventually(Duration::from_secs(20), "both sleeps running", || {
        (pids("sleep 6001").len() >= 2).then_some(())
    });
    let out = d.cli(&["task", "cancel", &id.to_string()]).ok().to_owned();
    assert!(out.contains("cancelled"), "{out}");
    wait_gone("sleep 6001");
    let t = d.task(id);
    assert_eq!(t["task"]["state"], "cancelled");
    assert_eq!(t["steps"][0]["state"], "cancelled");
    // Cancelling again is an error that names the state.
    let again = d.cli(&["task", "cancel", &id.to_string()]);
    assert!(
        again.fails().contains("already cancelled"),
        "{}",
        again.stderr
    );

    let id = create(&d, "too-slow", &[]);
    let t = d.finished_task(id);
    assert_eq!(t["task"]["state"], "failed");
    assert!(
        t["task"]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("timed out"),
        "{t:#}"
    );
    assert_eq!(t["steps"][0]["state"], "timed_out");
    wait_gone("sleep 6002");
}

#[test]
fn kill_9_of_the_daemon_leaves_no_agent_behind_and_marks_the_task_interrupted() {
    let mut d = TestDaemon::start();
    setup(
        &d,
        r#"
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: long}
spec:
  steps: [{id: wait, command: "sh -c 'sleep 6003 & sleep 6003'"}]
"#,
    );
    let id = create(&d, "long", &[]);
    eventually(Duration::from_secs(20), "both sleeps running", || {
        (pids("sleep 6003").len() >= 2).then_some(())
    });
    d.kill9();
    assert!(
        pids("sleep 6003").len() >= 2,
        "the agents outlive a SIGKILLed daemon until the next start"
    );
    d.spawn();
    wait_gone("sleep 6003");
    let t = d.finished_task(id);
    assert_eq!(t["task"]["state"], "failed");
    let reason = t["task"]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("interrupted"), "{reason}");
    assert_eq!(t["steps"][0]["state"], "interrupted");
}

#[test]
fn max_parallel_1_runs_tasks_of_a_workflow_one_after_the_other() {
    let d = TestDaemon::start();
    let ws = setup(
        &d,
        r#"
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: serial}
spec:
  max_parallel: 1
  steps: [{id: s, command: "sh -c 'echo start-$1 >> order; sleep 0.4; echo end-$1 >> order' sh {task_id}"}]
"#,
    );
    let a = create(&d, "serial", &[]);
    let b = create(&d, "serial", &[]);
    let c = create(&d, "serial", &[]);
    for id in [a, b, c] {
        assert_eq!(d.finished_task(id)["task"]["state"], "succeeded");
    }
    let order = std::fs::read_to_string(ws.join("order")).expect("order file");
    let want = format!("start-{a}\nend-{a}\nstart-{b}\nend-{b}\nstart-{c}\nend-{c}\n");
    assert_eq!(order, want);
}

#[test]
fn bad_task_input_gets_clear_errors() {
    let d = TestDaemon::start();
    let ws = setup(
        &d,
        r#"
apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {name: ghost}
spec: {command: "claude-not-installed -p {prompt}", capabilities: [ghost]}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: haunted}
spec:
  steps: [{id: boo, template: say, required_capability: ghost}]
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: quick}
spec:
  steps: [{id: q, command: "true"}]
"#,
    );
    let run = d.cli(&["task", "create", "--workflow", "nope"]);
    assert!(
        run.fails()
            .contains("workflow \"nope\" not found in project \"default\""),
        "{}",
        run.stderr
    );
    let run = d.cli(&[
        "task",
        "create",
        "--workflow",
        "quick",
        "--workspace",
        "nowhere",
    ]);
    assert!(
        run.fails().contains("workspace \"nowhere\" not found"),
        "{}",
        run.stderr
    );
    let run = d.cli(&[
        "task",
        "create",
        "--workflow",
        "quick",
        "--payload",
        "{not json",
    ]);
    // A malformed argument is a usage error: exit 2, nothing sent.
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("--payload is not valid JSON"),
        "{}",
        run.stderr
    );
    let run = d.cli(&["task", "show", "424242"]);
    assert!(
        run.fails().contains("task 424242 not found"),
        "{}",
        run.stderr
    );

    // A missing agent program fails the task with the agent and the program named.
    let run = d.cli(&["task", "create", "--workflow", "haunted", "--wait"]);
    let err = run.fails();
    assert!(
        err.contains("agent \"ghost\": command not found: claude-not-installed"),
        "{err}"
    );

    // A finished task cannot be cancelled.
    let id = create(&d, "quick", &[]);
    d.finished_task(id);
    let run = d.cli(&["task", "cancel", &id.to_string()]);
    assert!(
        run.fails()
            .contains(&format!("task {id} already succeeded")),
        "{}",
        run.stderr
    );

    // A workspace whose directory is gone is refused at creation.
    std::fs::remove_dir_all(&ws).expect("remove ws");
    let run = d.cli(&["task", "create", "--workflow", "quick"]);
    assert!(
        run.fails().contains("does not exist or is not a directory"),
        "{}",
        run.stderr
    );

    // The daemon is still fine.
    d.cli(&["daemon", "status"]).ok();
}

#[test]
fn no_start_holds_a_task_and_logs_follow_streams_until_the_end() {
    let d = TestDaemon::start();
    setup(
        &d,
        r#"
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: ticker}
spec:
  steps: [{id: tick, command: "sh -c 'for i in 1 2 3; do echo tick $i; sleep 0.2; done'"}]
"#,
    );
    let id = create(&d, "ticker", &["--no-start"]);
    assert_eq!(d.task(id)["task"]["state"], "pending");
    let list = d
        .cli(&["task", "list", "--state", "pending"])
        .ok()
        .to_owned();
    assert!(list.contains(&id.to_string()), "{list}");
    assert!(
        d.cli(&["task", "start", &id.to_string()])
            .ok()
            .contains("started")
    );
    let follow = d
        .cli(&["task", "logs", &id.to_string(), "--follow"])
        .ok()
        .to_owned();
    for i in 1..=3 {
        assert!(follow.contains(&format!("out tick {i}")), "{follow}");
    }
    assert_eq!(d.task(id)["task"]["state"], "succeeded");
}

/// Ids of every task `task list -A` shows, oldest first.
fn listed(d: &TestDaemon) -> Vec<u64> {
    let list = d
        .cli(&["task", "list", "-A", "--limit", "1000", "-o", "json"])
        .json();
    let mut ids: Vec<u64> = list["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .map(|t| t["id"].as_u64().expect("id"))
        .collect();
    ids.sort_unstable();
    ids
}

/// Task ids that have a run directory, sorted.
fn run_dirs(d: &TestDaemon) -> Vec<u64> {
    let mut ids: Vec<u64> = std::fs::read_dir(d.data_dir.join("runs"))
        .map(|e| {
            e.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    ids.sort_unstable();
    ids
}

const RETAINED: &str = r#"
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: kept}
spec:
  max_parallel: 10
  steps: [{id: s, command: "sh -c 'echo run-$1; sleep $2' sh {task_id} {goal}"}]
"#;

#[test]
fn retention_removes_the_oldest_finished_tasks_and_their_run_logs_by_count_and_by_age_never_a_running_task()
 {
    let d = TestDaemon::start_with(&["--task-retention-count", "3", "--retention-interval", "1"]);
    setup(&d, RETAINED);
    // The oldest task runs throughout: neither the count nor an age prune may touch it.
    let running = create(&d, "kept", &["--goal", "6004"]);
    eventually(Duration::from_secs(20), "the long task running", || {
        (!pids("sleep 6004").is_empty()).then_some(())
    });
    let done: Vec<u64> = (0..6)
        .map(|_| {
            let id = create(&d, "kept", &["--goal", "0"]);
            assert_eq!(d.finished_task(id)["task"]["state"], "succeeded");
            id
        })
        .collect();

    // By count: the workflow keeps its three newest finished tasks, and their run logs.
    let mut want = vec![running, done[3], done[4], done[5]];
    want.sort_unstable();
    eventually(Duration::from_secs(30), "three finished tasks kept", || {
        (listed(&d) == want).then_some(())
    });
    eventually(
        Duration::from_secs(30),
        "the run logs of removed tasks gone",
        || (run_dirs(&d) == want).then_some(()),
    );
    for id in &done[..3] {
        let gone = d.cli(&["task", "show", &id.to_string()]);
        assert!(gone.fails().contains("not found"), "{}", gone.stderr);
    }
    let logs = d
        .cli(&["task", "logs", &done[5].to_string()])
        .ok()
        .to_owned();
    assert!(logs.contains(&format!("run-{}", done[5])), "{logs}");

    // What the daemon keeps on disk, and the oldest task, are in its status.
    let status = d.cli(&["daemon", "status", "-o", "json"]).json();
    let storage = &status["storage"];
    assert_eq!(
        storage["oldestTask"]["id"].as_u64(),
        Some(running),
        "{status:#}"
    );
    assert_eq!(storage["tasks"], 4, "{status:#}");
    assert_eq!(storage["retentionCount"], 3);
    assert_eq!(storage["retentionAge"], "30d");
    assert!(storage["databaseBytes"].as_u64() > Some(0), "{status:#}");
    assert!(storage["runLogBytes"].as_u64() > Some(0), "{status:#}");
    let shown = d.cli(&["daemon", "status"]).ok().to_owned();
    for line in [
        "Database:",
        "Run logs:",
        &format!("Oldest:     task {running} created"),
    ] {
        assert!(shown.contains(line), "{line:?} in {shown}");
    }

    // By age, on request: every finished task that finished a second ago or more, but the
    // newest task (kept so that its id is never given to another task).
    let mut removed = 0;
    eventually(
        Duration::from_secs(30),
        "the finished tasks pruned by age",
        || {
            let out = d
                .cli(&["task", "prune", "--older-than", "1s"])
                .ok()
                .to_owned();
            let n: u64 = out
                .split_whitespace()
                .nth(1)
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("prune answers a count: {out}"));
            removed += n;
            (removed == 2).then_some(())
        },
    );
    assert_eq!(listed(&d), vec![running, done[5]]);
    assert_eq!(run_dirs(&d), vec![running, done[5]]);
    assert_eq!(
        d.cli(&["task", "show", &running.to_string(), "-o", "json"])
            .json()["task"]["state"],
        "running"
    );

    // One by one: a running task is refused, a finished one goes with its run logs.
    let refused = d.cli(&["task", "delete", &running.to_string()]);
    assert!(
        refused.fails().contains(&format!(
            "task {running} is running: only a finished task can be deleted; cancel it first"
        )),
        "{}",
        refused.stderr
    );
    d.cli(&["task", "cancel", &running.to_string()]).ok();
    wait_gone("sleep 6004");
    let out = d
        .cli(&["task", "delete", &running.to_string()])
        .ok()
        .to_owned();
    assert_eq!(out.trim(), format!("task {running} deleted"));
    assert_eq!(listed(&d), vec![done[5]]);
    assert_eq!(run_dirs(&d), vec![done[5]]);
    let again = d.cli(&["task", "delete", &running.to_string()]);
    assert!(again.fails().contains("not found"), "{}", again.stderr);
    let newest = d.cli(&["task", "delete", &done[5].to_string()]);
    assert!(
        newest.fails().contains("is the newest task"),
        "{}",
        newest.stderr
    );
}

#[test]
fn the_daemon_removes_tasks_older_than_its_retention_age_but_not_running_ones() {
    let d = TestDaemon::start_with(&["--task-retention-age", "2s", "--retention-interval", "1"]);
    setup(&d, RETAINED);
    let quick = create(&d, "kept", &["--goal", "0"]);
    assert_eq!(d.finished_task(quick)["task"]["state"], "succeeded");
    let running = create(&d, "kept", &["--goal", "6005"]);
    eventually(
        Duration::from_secs(30),
        "the finished task aged out",
        || (listed(&d) == vec![running]).then_some(()),
    );
    eventually(Duration::from_secs(30), "its run logs gone", || {
        (run_dirs(&d) == vec![running]).then_some(())
    });
    assert_eq!(
        d.cli(&["daemon", "status", "-o", "json"]).json()["storage"]["retentionAge"],
        "2s"
    );
    d.cli(&["task", "cancel", &running.to_string()]).ok();
    wait_gone("sleep 6005");
}

#[test]
fn bad_retention_settings_are_refused_with_the_fix() {
    for (args, want) in [
        (
            vec!["--task-retention-age", "30"],
            "invalid duration \"30\": use a whole number and a unit: s, m, h, d or w",
        ),
        (vec!["--task-retention-age", "0d"], "it must be at least 1s"),
        (
            vec!["--task-retention-count", "0"],
            "0 is not in 1..=100000000",
        ),
        (vec!["--retention-interval", "0"], "0 is not in 1..=86400"),
    ] {
        let out = std::process::Command::new(crate::common::DAEMON)
            .args(&args)
            .arg("--data-dir")
            .arg("/nonexistent/never-created")
            .output()
            .expect("run orchestratord");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(want), "{args:?}: {stderr}");
    }
    let d = TestDaemon::start();
    // Usage errors (clap's exit status 2) and a refusal of the daemon (1).
    for (args, code, want) in [
        (
            vec!["task", "prune", "--older-than", "soon"],
            2,
            "invalid duration \"soon\": use a whole number and a unit",
        ),
        (vec!["task", "prune"], 2, "--older-than <DURATION>"),
        (vec!["task", "delete", "12345"], 1, "task 12345 not found"),
    ] {
        let run = d.cli(&args);
        assert_eq!(run.code, code, "{args:?}: {}", run.stderr);
        assert!(run.stderr.contains(want), "{args:?}: {}", run.stderr);
    }
}

#[test]
fn a_waiting_agents_output_is_in_the_log_while_it_runs_and_a_split_secret_never_is() {
    let d = TestDaemon::start();
    // TOKEN comes from the SecretStore, so redaction is active. The agent prints a line, a
    // partial line and the first half of the secret, says so on stderr, waits 5 s, then prints
    // the second half.
    setup(
        &d,
        r#"
apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {name: waiter}
spec:
  command: >-
    sh -c 'a=${TOKEN%??????}; b=${TOKEN#"$a"}; echo live-line; printf progress-;
    printf %s "$a"; echo half-printed >&2; sleep 5.013; printf "%s\n" "$b"; echo {prompt}'
  capabilities: [wait]
  env: [{name: TOKEN, refValue: {name: creds, key: token}}]
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: waiting}
spec:
  steps: [{id: wait, template: say, required_capability: wait}]
"#,
    );
    let id = create(&d, "waiting", &["--goal", "finished"]);
    let logs = || d.cli(&["task", "logs", &id.to_string()]).ok().to_owned();
    let seen = eventually(
        Duration::from_secs(20),
        "the agent's output in `task logs`",
        || {
            let out = logs();
            (out.contains("err half-printed") && out.contains("out progress-")).then_some(out)
        },
    );
    // All of that is visible while the agent still sleeps, not when it exits.
    assert!(
        !pids("sleep 5.013").is_empty(),
        "the agent ended first:\n{seen}"
    );
    assert_eq!(d.task(id)["task"]["state"], "running", "{seen}");
    assert!(seen.contains("out live-line\n"), "{seen}");
    // The half of the secret already printed is held back, not logged.
    assert!(!seen.contains("tok-SECRET"), "{seen}");

    let t = d.finished_task(id);
    assert_eq!(t["task"]["state"], "succeeded", "{t:#}");
    let out = logs();
    assert!(
        !out.contains("tok-SECRET") && !out.contains("9f8e7d6c5b") && !out.contains("7d6c5b"),
        "{out}"
    );
    // The rest of the partial line, once the second half came: a `+` line continues it.
    assert!(out.contains("out progress-\n"), "{out}");
    assert!(out.contains("out+ [REDACTED]\n"), "{out}");
    assert!(out.contains("out finished\n"), "{out}");
}

#[test]
fn retries_wait_their_backoff_and_a_silent_agent_is_stopped_by_its_idle_timeout() {
    let d = TestDaemon::start();
    setup(
        &d,
        r#"apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: flaky}
spec:
  steps:
    - id: s
      command: "sh -c 'exit 3'"
      retries: 3
      backoff: {initial_delay_secs: 0.2, factor: 2}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: stalled}
spec:
  steps:
    - {id: s, command: "sh -c 'echo waiting for an answer; exec sleep 61'", idle_timeout_secs: 1}
"#,
    );
    let id = create(&d, "flaky", &[]);
    let t = d.finished_task(id);
    assert_eq!(t["task"]["state"], "failed", "{t}");
    let steps = t["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 4, "one attempt and three retries: {t}");
    // The recorded delays are the backoff's: 0.2 s doubling.
    let waits: Vec<&str> = t["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["message"].as_str())
        .filter(|m| m.contains("(backoff)"))
        .collect();
    assert_eq!(
        waits,
        [
            "step \"s\" attempt 2 starts in 0.200 s (backoff)",
            "step \"s\" attempt 3 starts in 0.400 s (backoff)",
            "step \"s\" attempt 4 starts in 0.800 s (backoff)",
        ],
        "{t}"
    );
    // Each retry started no sooner than its delay after the previous attempt ended (a lower
    // bound only: a loaded machine may start it later).
    let at = |v: &serde_json::Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().expect("time")).expect("a time")
    };
    for (n, pair) in steps.windows(2).enumerate() {
        let gap = at(&pair[1]["startedAt"]) - at(&pair[0]["finishedAt"]);
        let want = 200 << n;
        assert!(
            gap.num_milliseconds() >= want,
            "attempt {} started {} ms after the previous one ended, before its {want} ms backoff",
            n + 2,
            gap.num_milliseconds()
        );
    }

    let id = create(&d, "stalled", &[]);
    let t = d.finished_task(id);
    assert_eq!(t["task"]["state"], "failed", "{t}");
    let run = &t["steps"][0];
    assert_eq!(run["state"], "timed_out", "{t}");
    assert!(
        run["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("no output for 1 s (idle_timeout_secs)")),
        "{t}"
    );
    wait_gone("exec sleep 61");
    let logs = d.cli(&["task", "logs", &id.to_string()]);
    assert!(logs.ok().contains("waiting for an answer"));

    // Bad values are refused with the fix.
    let refused = d.cli_stdin(
        &["apply", "-f", "-"],
        "apiVersion: orchestrator.dev/v2\nkind: Workflow\nmetadata: {name: bad}\nspec:\n  steps:\n    - {id: s, command: 'true', retries: 1, idle_timeout_secs: 0, backoff: {factor: 0.5, jitter: 2}}\n",
    );
    let err = refused.stderr.clone();
    assert_ne!(refused.code, 0);
    for want in [
        "idle_timeout_secs is 0",
        "factor 0.5 is out of range",
        "jitter 2 is out of range",
    ] {
        assert!(err.contains(want), "{want:?} missing from:\n{err}");
    }
}
