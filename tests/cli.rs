//! The CLI as a user and an agent meet it: every subcommand's `--help` describes every argument
//! and shows examples, with the global options listed once; a misspelt kind gets a "did you
//! mean" and usage errors exit 2; every `-o json` output has camelCase field names; `get -w`
//! and `task list -w` print changes as they happen and stop on Ctrl-C or when the daemon goes;
//! and the daemon logs one `debug` line per control call, with no INFO, WARN or ERROR for a
//! caller's mistake or a `--follow` that hung up.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::common::{CLI, TestDaemon, eventually, signal, wait_child};

const LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Help
// ---------------------------------------------------------------------------------------------

/// What is missing from the help of `cmd` and its subcommands: an argument without a help line,
/// a command whose long help has no example. `paths` collects every command's path.
fn walk(
    cmd: &clap::Command,
    path: &mut Vec<String>,
    problems: &mut Vec<String>,
    paths: &mut Vec<Vec<String>>,
) {
    paths.push(path.clone());
    let name = format!("orchestrator {}", path.join(" "));
    for a in cmd.get_arguments() {
        if a.is_hide_set() {
            continue;
        }
        let help = a.get_help().or(a.get_long_help()).map(|h| h.to_string());
        if help.is_none_or(|h| h.trim().is_empty()) {
            problems.push(format!("{}: {} has no help line", name.trim(), a.get_id()));
        }
    }
    let long = cmd
        .get_after_long_help()
        .map(|h| h.to_string())
        .unwrap_or_default();
    if !long.contains("Examples:\n  orchestrator ") {
        problems.push(format!("{}: its --help shows no example", name.trim()));
    }
    for sc in cmd.get_subcommands() {
        if sc.get_name() == "help" {
            continue;
        }
        path.push(sc.get_name().to_owned());
        walk(sc, path, problems, paths);
        path.pop();
    }
}

#[test]
fn every_argument_has_a_help_line_and_every_command_examples() {
    // The check itself finds what it must find.
    let bare = clap::Command::new("x").arg(clap::Arg::new("undocumented"));
    let (mut problems, mut paths) = (Vec::new(), Vec::new());
    walk(&bare, &mut Vec::new(), &mut problems, &mut paths);
    assert_eq!(
        problems,
        [
            "orchestrator: undocumented has no help line",
            "orchestrator: its --help shows no example"
        ]
    );

    let mut root = orchestrator::cli::command();
    root.build();
    let (mut problems, mut paths) = (Vec::new(), Vec::new());
    walk(&root, &mut Vec::new(), &mut problems, &mut paths);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Every command group and command is there (and was walked).
    for want in [
        "task prune",
        "task delete",
        "actors trace",
        "secret rotate",
        "webhook test",
        "daemon status",
    ] {
        assert!(
            paths.iter().any(|p| p.join(" ") == want),
            "{want} was not walked"
        );
    }
    assert!(paths.len() >= 30, "only {} commands walked", paths.len());

    // What the real binary prints: examples everywhere, the global options once.
    for path in &paths {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let out = Command::new(CLI).args(&args).output().expect("run cli");
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {text}");
        assert!(text.contains("Examples:"), "{args:?}:\n{text}");
        let listed = text.matches("--socket <PATH>").count();
        if path.is_empty() {
            assert!(text.contains("Global options:\n"), "{text}");
            assert_eq!(listed, 1, "{text}");
        } else {
            assert_eq!(listed, 0, "{args:?} lists the global options:\n{text}");
            assert!(
                text.contains("Global options: --socket PATH, -p/--project PROJECT, -o/--output"),
                "{args:?}:\n{text}"
            );
        }
    }

    // `actors --help` names the actors the way `actors inspect NAME` takes them.
    let out = Command::new(CLI)
        .args(["actors", "--help"])
        .output()
        .expect("run cli");
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "root",
        "secret-store",
        "tasks",
        "workflow/<task-id>",
        "agent/<task-id>/<step>/<n>",
        "triggers",
        "trigger/<project>/<name>",
        "retention",
        "tokens",
        "webhook",
    ] {
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{name} "))),
            "actors --help does not list {name}:\n{text}"
        );
    }
}

#[test]
fn a_misspelt_kind_gets_a_did_you_mean_and_usage_errors_exit_2() {
    let d = TestDaemon::start();
    for (args, want) in [
        (&["get", "trigers"][..], "did you mean `triggers`?"),
        (&["get", "workflw/nightly"], "did you mean `workflow`?"),
        (
            &["describe", "secretstor", "hooks"],
            "did you mean `secretstore`?",
        ),
        (&["delete", "agnet", "a"], "did you mean `agent`?"),
    ] {
        let run = d.cli(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
        assert!(
            run.stderr.starts_with("orchestrator: unknown kind"),
            "{}",
            run.stderr
        );
        assert!(run.stderr.contains(want), "{args:?}: {}", run.stderr);
    }
    // clap's usage errors, and the ones the commands find in their arguments.
    for args in [
        &["get"][..],
        &["frobnicate"],
        &["get", "triggers", "-o", "jsn"],
        &["task", "show", "seven"],
        &["task", "prune", "--older-than", "7 days"],
        &["get", "trigger/nightly", "nightly"],
        &["trigger", "fire", "nightly", "--payload", "{not json"],
    ] {
        let run = d.cli(args);
        assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
    }
    // What the daemon refuses is an ordinary error: exit 1.
    let run = d.cli(&["get", "trigger", "nightly"]);
    assert!(run.fails().contains("not found"), "{}", run.stderr);
}

// ---------------------------------------------------------------------------------------------
// JSON field names
// ---------------------------------------------------------------------------------------------

/// The manifests of the JSON scan: one of each kind, a cron and a webhook trigger.
fn everything(d: &TestDaemon) -> String {
    format!(
        r#"{ws}---
apiVersion: orchestrator.dev/v2
kind: EnvStore
metadata: {{name: config, labels: {{team_name: ops}}}}
spec: {{data: {{deploy_region: eu}}}}
---
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {{name: hooks}}
spec: {{data: {{github: s3cret-value-for-the-scan, old_key: another-secret-value}}}}
---
apiVersion: orchestrator.dev/v2
kind: StepTemplate
metadata: {{name: say}}
spec: {{prompt: "say {{goal}}"}}
---
apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {{name: echo}}
spec: {{command: "echo {{prompt}}", capabilities: [speak], timeout_secs: 30}}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {{name: w}}
spec:
  steps: [{{id: s, template: say, required_capability: speak}}]
  max_parallel: 2
---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {{name: nightly}}
spec:
  cron: {{schedule: "0 2 * * 0", timezone: Asia/Tokyo}}
  action: {{workflow: w, workspace: default}}
  concurrencyPolicy: Allow
---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {{name: hook}}
spec:
  event:
    source: webhook
    webhook: {{secret: {{fromRef: hooks}}, scheme: github}}
  action: {{workflow: w, workspace: default}}
"#,
        ws = d.workspace()
    )
}

/// The keys of `v` that are not camelCase, by path. Skipped: what users name (labels,
/// annotations, the names of a SecretStore's keys), the kind names that count resources, and the manifests' own field names (`spec`,
/// and a history row's `detail`, which is the spec as applied), which follow the manifest
/// format (SPEC §3).
fn snake_keys(v: &serde_json::Value, path: &str, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, child) in map {
                let here = format!("{path}.{k}");
                if k.contains('_') || k.contains('-') || k.starts_with(char::is_uppercase) {
                    out.push(here.clone());
                }
                // `resources` counts resources by kind (`{"SecretStore": 1}`).
                let user_named = matches!(k.as_str(), "labels" | "annotations")
                    || (matches!(k.as_str(), "keys" | "resources") && child.is_object());
                if user_named || matches!(k.as_str(), "spec" | "detail") {
                    continue;
                }
                snake_keys(child, &here, out);
            }
        }
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                snake_keys(item, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn every_json_output_has_camel_case_field_names() {
    // The scan finds what it must find, and leaves user names alone.
    let mut found = Vec::new();
    snake_keys(
        &serde_json::json!({"dry_run": true, "labels": {"a_b": "c"}, "keys": [{"set_by": "x"}], "spec": {"root_path": "/"}}),
        "",
        &mut found,
    );
    assert_eq!(found, [".dry_run", ".keys[0].set_by"]);

    let d = TestDaemon::start();
    let manifests = d.write("all.yaml", &everything(&d));
    let file = manifests.to_str().expect("utf-8 path");
    let outputs: std::cell::RefCell<Vec<(String, serde_json::Value)>> = Default::default();
    let json = |args: &[&str]| -> serde_json::Value {
        let mut all = args.to_vec();
        all.extend(["-o", "json"]);
        let v = d.cli(&all).json();
        outputs.borrow_mut().push((args.join(" "), v.clone()));
        v
    };

    let applied = json(&["apply", "-f", file]);
    assert_eq!(applied["dryRun"], false, "{applied}");
    let dry = json(&["apply", "-f", file, "--dry-run"]);
    assert_eq!(dry["dryRun"], true, "{dry}");
    for kind in [
        "workspace",
        "envstore",
        "secretstore",
        "steptemplate",
        "agent",
        "workflow",
        "trigger",
    ] {
        json(&["get", kind]);
    }
    for (kind, name) in [
        ("workspace", "default"),
        ("envstore", "config"),
        ("secretstore", "hooks"),
        ("steptemplate", "say"),
        ("agent", "echo"),
        ("workflow", "w"),
        ("trigger", "nightly"),
        ("trigger", "hook"),
    ] {
        json(&["get", kind, name]);
        json(&["describe", kind, name]);
    }
    let done = json(&[
        "task",
        "create",
        "--workflow",
        "w",
        "--goal",
        "hi",
        "--wait",
    ]);
    let id = done["id"].as_u64().expect("task id").to_string();
    json(&["task", "list"]);
    let shown = json(&["task", "show", &id]);
    assert!(shown["steps"][0]["exitCode"].is_number(), "{shown}");
    let held = json(&["task", "create", "--workflow", "w", "--no-start"]);
    let held = held["id"].as_u64().expect("task id").to_string();
    json(&["task", "cancel", &held]);
    let fired = json(&["trigger", "fire", "nightly", "--payload", r#"{"a_b": 1}"#]);
    assert!(fired["task"]["createdAt"].is_string(), "{fired}");
    json(&["trigger", "suspend", "nightly"]);
    json(&["trigger", "resume", "nightly"]);
    json(&["webhook", "test", "hook", "--key", "github"]);
    let set = d.cli_stdin(
        &["secret", "set", "hooks", "fresh", "-o", "json"],
        "a-value-for-the-fresh-key",
    );
    outputs.borrow_mut().push(("secret set".into(), set.json()));
    json(&["secret", "unset", "hooks", "old_key"]);
    let described = json(&["describe", "secretstore", "hooks"]);
    assert!(described["keys"][0]["updatedAt"].is_string(), "{described}");
    json(&["delete", "trigger", "hook", "--dry-run"]);
    json(&["delete", "trigger", "hook"]);
    json(&["task", "delete", &id]);
    json(&["task", "prune", "--older-than", "1s"]);
    let tree = json(&["actors"]);
    let mut names = Vec::new();
    fn names_of(n: &serde_json::Value, out: &mut Vec<String>) {
        out.extend(n["name"].as_str().map(str::to_owned));
        for c in n["children"].as_array().into_iter().flatten() {
            names_of(c, out);
        }
    }
    names_of(&tree, &mut names);
    assert!(names.len() >= 7, "{names:?}");
    // Not the actors of tasks, which may have finished meanwhile.
    for name in names
        .iter()
        .filter(|n| !n.contains('/') || n.starts_with("trigger/"))
    {
        json(&["actors", "inspect", name]);
    }
    json(&["actors", "trace", "secret-store"]);
    json(&["daemon", "status"]);
    json(&[
        "schedule",
        "0 2 * * 0",
        "--timezone",
        "Asia/Tokyo",
        "-n",
        "2",
    ]);

    let outputs = outputs.into_inner();
    let mut bad = Vec::new();
    for (command, v) in &outputs {
        let mut keys = Vec::new();
        snake_keys(v, "", &mut keys);
        bad.extend(keys.into_iter().map(|k| format!("{command}: {k}")));
    }
    assert!(
        bad.is_empty(),
        "JSON keys that are not camelCase:\n{}",
        bad.join("\n")
    );
    assert!(outputs.len() > 40, "only {} outputs scanned", outputs.len());
}

// ---------------------------------------------------------------------------------------------
// Watching
// ---------------------------------------------------------------------------------------------

/// A CLI running in the background, its stdout lines arriving as they are printed.
struct Background {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Background {
    fn start(d: &TestDaemon, args: &[&str]) -> Background {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(CLI);
        command
            .arg("--socket")
            .arg(&d.socket)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // As in a terminal: Ctrl-C's SIGINT has its default action. A test run started in the
        // background of a non-interactive shell (`cargo test &`) inherits SIGINT ignored, and
        // the CLI would keep that.
        // SAFETY: `signal` is async-signal-safe, and nothing else runs in the forked child.
        unsafe {
            command.pre_exec(|| {
                libc::signal(libc::SIGINT, libc::SIG_DFL);
                Ok(())
            });
        }
        let mut child = command.spawn().expect("spawn orchestrator");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Background {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line that `want` accepts, among those printed so far (kept in `seen`) or the
    /// next ones.
    #[track_caller]
    fn wait_for(&mut self, what: &str, want: impl Fn(&str) -> bool) -> String {
        if let Some(line) = self.seen.iter().find(|l| want(l)) {
            return line.clone();
        }
        let deadline = Instant::now() + LIMIT;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line with {what}; the watch printed:\n{}",
            self.seen.join("\n")
        );
    }

    /// Sends `sig` and returns the exit code and stderr.
    fn stop(self, sig: i32) -> (i32, String) {
        signal(self.child.id(), sig);
        self.finish()
    }

    /// Waits for the CLI to end by itself.
    fn finish(mut self) -> (i32, String) {
        let code = wait_child(&mut self.child, LIMIT);
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        (code, err)
    }
}

const SIGINT: i32 = 2;

#[test]
fn get_watch_prints_each_change_until_the_daemon_goes() {
    let mut d = TestDaemon::start();
    d.apply(&everything(&d));
    let mut watch = Background::start(&d, &["get", "triggers", "-w", "-o", "json"]);
    let event = |line: &str| -> serde_json::Value {
        serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    };
    let is = |line: &str, change: &str, name: &str| {
        let v = event(line);
        v["event"] == change && v["object"]["metadata"]["name"] == name
    };
    watch.wait_for("nightly added", |l| is(l, "added", "nightly"));
    watch.wait_for("hook added", |l| is(l, "added", "hook"));

    d.cli(&["trigger", "suspend", "nightly"]).ok();
    let changed = watch.wait_for("nightly changed", |l| is(l, "changed", "nightly"));
    assert_eq!(
        event(&changed)["object"]["spec"]["suspend"],
        true,
        "{changed}"
    );
    d.cli(&["delete", "trigger", "hook"]).ok();
    watch.wait_for("hook deleted", |l| is(l, "deleted", "hook"));
    // Every line is one event of the documented shape, with camelCase keys.
    for line in &watch.seen {
        let v = event(line);
        let mut keys = Vec::new();
        snake_keys(&v, "", &mut keys);
        assert!(keys.is_empty(), "{keys:?} in {line}");
        assert_eq!(v.as_object().map(|o| o.len()), Some(2), "{line}");
    }

    // The daemon stops: the watch ends with an error that says so.
    d.terminate();
    let (code, err) = watch.finish();
    assert_eq!(code, 1, "{err}");
    assert!(
        err.starts_with("orchestrator: stopped watching: the daemon went away"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn task_list_watch_shows_a_new_task_and_its_end_and_stops_on_ctrl_c() {
    let d = TestDaemon::start();
    d.apply(&everything(&d));
    let mut watch = Background::start(&d, &["task", "list", "-w"]);
    watch.wait_for("the empty list", |l| l == "no tasks found (watching)");
    let id = d
        .cli(&[
            "task",
            "create",
            "--workflow",
            "w",
            "--goal",
            "hi",
            "--wait",
        ])
        .ok()
        .split_whitespace()
        .next()
        .expect("task id")
        .to_owned();
    let header = watch.wait_for("the header", |l| l.starts_with("ID "));
    assert!(
        header.contains("STATE") && header.contains("WORKFLOW"),
        "{header}"
    );
    let row = |state: &'static str| {
        let id = id.clone();
        move |l: &str| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            cells.first() == Some(&id.as_str()) && cells.get(1) == Some(&state)
        }
    };
    watch.wait_for("the task succeeded", row("succeeded"));
    // Another change: a cancelled task appears, once, with its state.
    let held = d
        .cli(&["task", "create", "--workflow", "w", "--no-start"])
        .ok()
        .trim()
        .to_owned();
    d.cli(&["task", "cancel", &held]).ok();
    watch.wait_for("the cancelled task", |l| {
        l.split_whitespace().next() == Some(held.as_str()) && l.contains("cancelled")
    });
    let rows_of_first = watch
        .seen
        .iter()
        .filter(|l| l.split_whitespace().next() == Some(id.as_str()))
        .count();
    assert!(
        (1..=3).contains(&rows_of_first),
        "task {id} printed {rows_of_first} times:\n{}",
        watch.seen.join("\n")
    );

    let (code, err) = watch.stop(SIGINT);
    assert_eq!(code, 0, "Ctrl-C ends a watch quietly: {err}");
    assert!(err.is_empty(), "{err}");
}

// ---------------------------------------------------------------------------------------------
// The daemon's log
// ---------------------------------------------------------------------------------------------

#[test]
fn the_daemon_logs_one_debug_line_per_control_call_and_no_warning_for_a_callers_mistake() {
    let d = TestDaemon::start();
    d.apply(&format!(
        "{}---\napiVersion: orchestrator.dev/v2\nkind: Workflow\nmetadata: {{name: slow}}\nspec:\n  steps: [{{id: s, command: \"sh -c 'while :; do echo tick; sleep 0.2; done'\"}}]\n",
        d.workspace()
    ));
    // Mistakes: an unknown name, an invalid manifest, an unknown task.
    d.cli(&["get", "trigger", "nope"]).fails();
    let bad = d.write(
        "bad.yaml",
        "apiVersion: orchestrator.dev/v2\nkind: Workspace\nmetadata: {name: x}\nspec: {root_pat: /}\n",
    );
    d.cli(&["apply", "-f", bad.to_str().expect("utf-8")])
        .fails();
    d.cli(&["task", "show", "999"]).fails();
    // A `--follow` that the user stops with Ctrl-C.
    let id = d
        .cli(&["task", "create", "--workflow", "slow"])
        .ok()
        .trim()
        .to_owned();
    let mut follow = Background::start(&d, &["task", "logs", &id, "--follow"]);
    follow.wait_for("the agent's first line", |l| l.contains("out tick"));
    let _ = follow.stop(SIGINT);
    eventually(LIMIT, "the hung-up follow in the log", || {
        d.log()
            .contains("control connection closed by the client")
            .then_some(())
    });
    d.cli(&["task", "cancel", &id]).ok();

    let log = d.log();
    let access: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("orchestrator::http::control::serve: answered"))
        .collect();
    assert!(access.iter().all(|l| l.contains(" DEBUG ")), "{access:#?}");
    let logs = format!("/v1/tasks/{id}/logs");
    for (path, status) in [
        ("/v1/resources/trigger/nope", 404),
        ("/v1/apply", 422),
        ("/v1/apply", 200),
        ("/v1/tasks/999", 404),
        (logs.as_str(), 200),
    ] {
        let lines: Vec<&&str> = access
            .iter()
            .filter(|l| {
                l.contains(&format!("path={path}}}")) && l.contains(&format!("status={status} "))
            })
            .collect();
        assert_eq!(lines.len(), 1, "{path} {status}: {access:#?}");
    }
    let loud: Vec<&str> = log
        .lines()
        .filter(|l| {
            l.contains(" ERROR ")
                || (l.contains(" WARN ") && l.contains("request{"))
                || (l.contains(" INFO ") && (l.contains("warp") || l.contains("control::serve")))
        })
        .collect();
    assert!(loud.is_empty(), "{}", loud.join("\n"));
}
