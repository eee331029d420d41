//! Resources end to end (issue: foundation): apply/get/describe/delete of every kind through the
//! real CLI and daemon, refusal of bad input with nothing changed, durability across `kill -9`,
//! the data-dir lock, file modes, and secrets kept out of the database, the log and the output.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::common::{CLI, Run, TestDaemon, eventually, manifests_dir};

const ALL_KINDS: &str = r#"
apiVersion: orchestrator.dev/v2
kind: Workspace
metadata: {name: main, labels: {team: platform}}
spec: {root_path: ./work, description: "main workspace"}
---
apiVersion: orchestrator.dev/v2
kind: EnvStore
metadata: {name: settings}
spec: {data: {LOG_LEVEL: debug, REGION: eu-west-1}}
---
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {name: hooks}
spec:
  data:
    github: "gh-secret-value-0001"
    slack: "slack-secret-value-0002"
---
apiVersion: orchestrator.dev/v2
kind: StepTemplate
metadata: {name: review}
spec: {prompt: "Review {goal} in {workspace_root} (cycle {cycle})", description: "code review"}
---
apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {name: reviewer}
spec:
  command: "claude -p {prompt}"
  capabilities: [review, plan]
  env:
    - {name: MODE, value: strict}
    - fromRef: settings
    - {name: GH_SECRET, refValue: {name: hooks, key: github}}
  timeout_secs: 900
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: pr-review}
spec:
  steps:
    - {id: review, template: review, required_capability: review, retries: 1}
    - {id: notify, command: "echo done"}
  loop: {mode: fixed, max_cycles: 2}
---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {name: nightly}
spec:
  cron: {schedule: "30 1 * * *", timezone: Europe/Berlin}
  action: {workflow: pr-review, workspace: main, goal: "nightly review"}
  concurrencyPolicy: Forbid
---
apiVersion: orchestrator.dev/v2
kind: Trigger
metadata: {name: on-push}
spec:
  event:
    source: webhook
    webhook:
      secret: {fromRef: hooks, keys: [github]}
      scheme: github
  action: {workflow: pr-review, workspace: main}
"#;

const KINDS: [(&str, &str); 7] = [
    ("workspace", "main"),
    ("envstore", "settings"),
    ("secretstore", "hooks"),
    ("steptemplate", "review"),
    ("agent", "reviewer"),
    ("workflow", "pr-review"),
    ("trigger", "nightly"),
];

fn revision(d: &TestDaemon) -> u64 {
    d.cli(&["daemon", "status", "-o", "json"]).json()["revision"]
        .as_u64()
        .expect("revision")
}

#[test]
fn every_kind_round_trips_through_apply_get_describe_delete() {
    let d = TestDaemon::start();
    let out = d.apply(ALL_KINDS);
    for line in [
        "workspace/main created",
        "envstore/settings created",
        "secretstore/hooks created",
        "steptemplate/review created",
        "agent/reviewer created",
        "workflow/pr-review created",
        "trigger/nightly created",
        "trigger/on-push created",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }

    for (kind, name) in KINDS {
        // Table: header plus the resource.
        let table = d.cli(&["get", kind]).ok().to_owned();
        assert!(table.starts_with("NAME"), "{table}");
        assert!(table.contains(name), "{table}");
        // JSON and YAML of the list and of the single resource.
        let list = d.cli(&["get", kind, "-o", "json"]).json();
        assert!(
            list["items"]
                .as_array()
                .is_some_and(|i| i.iter().any(|r| r["metadata"]["name"] == name))
        );
        let one = d
            .cli(&["get", &format!("{kind}/{name}"), "-o", "json"])
            .json();
        assert_eq!(one["metadata"]["name"], name);
        assert_eq!(one["metadata"]["generation"], 1);
        assert_eq!(one["apiVersion"], "orchestrator.dev/v2");
        let yaml = d.cli(&["get", kind, name, "-o", "yaml"]).ok().to_owned();
        assert!(yaml.contains(&format!("name: {name}")), "{yaml}");
        // Describe, human and structured.
        let text = d.cli(&["describe", kind, name]).ok().to_owned();
        assert!(
            text.contains(&format!("Name:        {name}")) && text.contains("History"),
            "{text}"
        );
        let desc = d.cli(&["describe", kind, name, "-o", "json"]).json();
        assert_eq!(desc["history"][0]["action"], "created");
    }

    // Plural and short kind names.
    assert!(d.cli(&["get", "triggers"]).ok().contains("nightly"));
    assert!(d.cli(&["get", "wf"]).ok().contains("pr-review"));
    assert!(d.cli(&["get", "SecretStores"]).ok().contains("hooks"));

    // The workspace's relative root was resolved against the manifest's directory.
    let ws = d.cli(&["get", "workspace", "main", "-o", "json"]).json();
    let root = d.dir.path().join("work");
    assert_eq!(ws["spec"]["root_path"], root.display().to_string());

    // References are listed by describe.
    let desc = d
        .cli(&["describe", "workflow", "pr-review", "-o", "json"])
        .json();
    let refs = desc["referencedBy"].to_string();
    assert!(
        refs.contains("trigger/nightly") && refs.contains("trigger/on-push"),
        "{refs}"
    );

    // Delete everything with -f (references among them are fine together).
    let path = d.write("all.yaml", ALL_KINDS);
    let out = d
        .cli(&["delete", "-f", path.to_str().expect("path")])
        .ok()
        .to_owned();
    assert_eq!(out.matches(" deleted").count(), 8, "{out}");
    for (kind, name) in KINDS {
        let gone = d.cli(&["get", kind, name]);
        assert!(gone.fails().contains("not found"), "{}", gone.stderr);
    }
}

#[test]
fn reapply_is_unchanged_and_a_change_bumps_the_generation() {
    let d = TestDaemon::start();
    d.apply(ALL_KINDS);
    let rev = revision(&d);
    let again = d.apply(ALL_KINDS);
    assert_eq!(again.matches(" unchanged").count(), 8, "{again}");
    assert_eq!(
        revision(&d),
        rev,
        "an unchanged apply must not bump the revision"
    );

    let changed = ALL_KINDS.replace("nightly review", "nightly review v2");
    let out = d.apply(&changed);
    assert!(out.contains("trigger/nightly configured"), "{out}");
    assert!(out.contains("workflow/pr-review unchanged"), "{out}");
    let t = d.cli(&["get", "trigger", "nightly", "-o", "json"]).json();
    assert_eq!(t["metadata"]["generation"], 2);
    assert_eq!(revision(&d), rev + 1);

    // A changed secret value is a change too, and is recorded by fingerprint only.
    let rotated = changed.replace("gh-secret-value-0001", "gh-secret-value-0003");
    assert!(d.apply(&rotated).contains("secretstore/hooks configured"));
    let desc = d
        .cli(&["describe", "secretstore", "hooks", "-o", "json"])
        .json();
    assert_eq!(
        desc["history"][0]["detail"]["changed"],
        serde_json::json!(["github"])
    );
    assert!(!desc.to_string().contains("gh-secret-value"));

    // --dry-run reports and changes nothing.
    let dry_text = rotated.replace("debug", "info");
    let path = d.write("dry.yaml", &dry_text);
    let out = d
        .cli(&["apply", "--dry-run", "-f", path.to_str().expect("path")])
        .ok()
        .to_owned();
    assert!(
        out.contains("envstore/settings configured (dry run)"),
        "{out}"
    );
    let env = d.cli(&["get", "envstore", "settings", "-o", "json"]).json();
    assert_eq!(env["spec"]["data"]["LOG_LEVEL"], "debug");
}

/// One table row: a manifest (after the apiVersion line) and what stderr must say.
struct Bad {
    name: &'static str,
    manifest: &'static str,
    args: &'static [&'static str],
    want: &'static [&'static str],
}

const GOOD_BASE: &str = r#"
apiVersion: orchestrator.dev/v2
kind: Workspace
metadata: {name: main}
spec: {root_path: /tmp}
---
apiVersion: orchestrator.dev/v2
kind: StepTemplate
metadata: {name: t}
spec: {prompt: "do {goal}"}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {name: w}
spec:
  steps: [{id: s, command: "true"}]
---
apiVersion: orchestrator.dev/v2
kind: SecretStore
metadata: {name: hooks}
spec: {data: {github: "s3cr3t-value"}}
"#;

const BAD: &[Bad] = &[
    Bad {
        name: "malformed yaml",
        manifest: "kind: Workflow\nmetadata: {name: x\n",
        args: &[],
        want: &["bad.yaml:", "check the YAML syntax"],
    },
    Bad {
        name: "wrong apiVersion",
        manifest: "apiVersion: orchestrator.dev/v1\nkind: Workflow\n",
        args: &[],
        want: &[
            "unsupported apiVersion \"orchestrator.dev/v1\"",
            "use `apiVersion: orchestrator.dev/v2`",
        ],
    },
    Bad {
        name: "unknown kind",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: Workflw\n",
        args: &[],
        want: &["unknown kind \"Workflw\"", "did you mean `Workflow`?"],
    },
    Bad {
        name: "unknown field",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: Workflow\nmetadata: {name: x}\nspec:\n  steps:\n    - {id: a, command: x, retires: 2}\n",
        args: &[],
        want: &[
            "bad.yaml:11",
            "spec.steps[0].retires: unknown field `retires`",
            "did you mean `retries`?",
        ],
    },
    Bad {
        name: "missing field",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: StepTemplate\nmetadata: {name: x}\nspec: {description: d}\n",
        args: &[],
        want: &["spec.prompt: missing field `prompt`", "add `prompt:`"],
    },
    Bad {
        name: "wrong type",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: Workflow\nmetadata: {name: x}\nspec:\n  steps: [{id: a, command: x}]\n  max_parallel: many\n",
        args: &[],
        want: &[
            "spec.max_parallel: invalid type",
            "use a non-negative whole number",
        ],
    },
    Bad {
        name: "bad name",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: StepTemplate\nmetadata: {name: Bad Name}\nspec: {prompt: p}\n",
        args: &[],
        want: &["metadata.name: invalid name \"Bad Name\""],
    },
    Bad {
        name: "duplicate name",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: StepTemplate\nmetadata: {name: dup}\nspec: {prompt: p}\n---\napiVersion: orchestrator.dev/v2\nkind: StepTemplate\nmetadata: {name: dup}\nspec: {prompt: q}\n",
        args: &[],
        want: &["duplicate StepTemplate \"dup\"", "already declared in"],
    },
    Bad {
        name: "project mismatch",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: StepTemplate\nmetadata: {name: x, project: alpha}\nspec: {prompt: p}\n",
        args: &["-p", "beta"],
        want: &["project \"alpha\" does not match --project \"beta\""],
    },
    Bad {
        name: "trigger to missing workflow",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {name: x}\nspec:\n  cron: {schedule: '@daily'}\n  action: {workflow: ww, workspace: main}\n",
        args: &[],
        want: &[
            "spec.action.workflow: Workflow \"ww\" not found",
            "did you mean \"w\"?",
        ],
    },
    Bad {
        name: "trigger to missing workspace",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {name: x}\nspec:\n  cron: {schedule: '@daily'}\n  action: {workflow: w, workspace: nope}\n",
        args: &[],
        want: &["spec.action.workspace: Workspace \"nope\" not found"],
    },
    Bad {
        name: "trigger to missing store",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {name: x}\nspec:\n  event:\n    source: webhook\n    webhook: {secret: {fromRef: nostore}}\n  action: {workflow: w, workspace: main}\n",
        args: &[],
        want: &["spec.event.webhook.secret.fromRef: SecretStore \"nostore\" not found"],
    },
    Bad {
        name: "trigger to missing key",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {name: x}\nspec:\n  event:\n    source: webhook\n    webhook: {secret: {fromRef: hooks, keys: [gitlab]}}\n  action: {workflow: w, workspace: main}\n",
        args: &[],
        want: &[
            "secret.keys[0]: SecretStore \"hooks\" has no key \"gitlab\"",
            "its keys are github",
        ],
    },
    Bad {
        name: "step to missing template",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: Workflow\nmetadata: {name: x}\nspec:\n  steps: [{id: a, template: nope, required_capability: plan}]\n",
        args: &[],
        want: &["spec.steps[0].template: StepTemplate \"nope\" not found"],
    },
    Bad {
        name: "capability nobody has",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: Workflow\nmetadata: {name: x}\nspec:\n  steps: [{id: a, template: t, required_capability: fly}]\n",
        args: &[],
        want: &["no agent in project \"default\" has capability \"fly\""],
    },
    Bad {
        name: "agent env to missing store",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: Agent\nmetadata: {name: x}\nspec:\n  command: 'a {prompt}'\n  env: [{fromRef: nothing}]\n",
        args: &[],
        want: &["spec.env[0].fromRef: no SecretStore or EnvStore named \"nothing\""],
    },
    Bad {
        name: "agent env to missing key",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: Agent\nmetadata: {name: x}\nspec:\n  command: 'a {prompt}'\n  env: [{name: T, refValue: {name: hooks, key: slack}}]\n",
        args: &[],
        want: &["spec.env[0].refValue: SecretStore \"hooks\" has no key \"slack\""],
    },
    Bad {
        name: "cron expression",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {name: x}\nspec:\n  cron: {schedule: '0 2 * *'}\n  action: {workflow: w, workspace: main}\n",
        args: &[],
        want: &[
            "spec.cron.schedule: invalid cron schedule \"0 2 * *\"",
            "expected 5 fields",
        ],
    },
    Bad {
        name: "cron day of week",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {name: x}\nspec:\n  cron: {schedule: '0 2 * * 8'}\n  action: {workflow: w, workspace: main}\n",
        args: &[],
        want: &["day-of-week"],
    },
    Bad {
        name: "time zone",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {name: x}\nspec:\n  cron: {schedule: '0 2 * * 0', timezone: Asia/Tokio}\n  action: {workflow: w, workspace: main}\n",
        args: &[],
        want: &[
            "spec.cron.timezone: unknown time zone \"Asia/Tokio\"",
            "Asia/Tokyo",
        ],
    },
    Bad {
        name: "filter syntax",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {name: x}\nspec:\n  event:\n    source: webhook\n    webhook: {secret: {fromRef: hooks}}\n    filter: {condition: \"payload.type == \"}\n  action: {workflow: w, workspace: main}\n",
        args: &[],
        want: &["spec.event.filter.condition: invalid CEL condition"],
    },
    Bad {
        name: "unsplittable command",
        manifest: "apiVersion: orchestrator.dev/v2\nkind: Agent\nmetadata: {name: x}\nspec: {command: \"claude -p '{prompt}\"}\n",
        args: &[],
        want: &["spec.command: command cannot be split into arguments: missing closing quote"],
    },
];

#[test]
fn every_bad_input_is_refused_with_its_own_message_and_changes_nothing() {
    let d = TestDaemon::start();
    d.apply(GOOD_BASE);
    let rev = revision(&d);
    let before = d.cli(&["get", "steptemplate", "-o", "json"]).json();
    for case in BAD {
        // The bad document travels with a good one that would otherwise be created.
        let text = format!(
            "apiVersion: orchestrator.dev/v2\nkind: StepTemplate\nmetadata: {{name: innocent}}\nspec: {{prompt: p}}\n---\n{}",
            case.manifest
        );
        let path = d.write("bad.yaml", &text);
        let mut args = vec!["apply", "-f", "bad.yaml"];
        args.extend_from_slice(case.args);
        let _ = path;
        let run = d.cli(&args);
        assert_eq!(
            run.code, 1,
            "{}: expected exit 1, got {}\n{}{}",
            case.name, run.code, run.stdout, run.stderr
        );
        assert!(
            run.stderr.starts_with("orchestrator: apply refused"),
            "{}: {}",
            case.name,
            run.stderr
        );
        for want in case.want {
            assert!(
                run.stderr.contains(want),
                "{}: {want:?} missing from:\n{}",
                case.name,
                run.stderr
            );
        }
        assert!(
            !run.stderr.contains("s3cr3t-value"),
            "{}: secret in error",
            case.name
        );
    }
    assert_eq!(revision(&d), rev, "a refused apply changed the store");
    assert_eq!(d.cli(&["get", "steptemplate", "-o", "json"]).json(), before);
    assert!(
        d.cli(&["get", "steptemplate", "innocent"])
            .fails()
            .contains("not found")
    );
}

#[test]
fn several_problems_are_reported_at_once() {
    let d = TestDaemon::start();
    let text = "apiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {name: x}\nspec:\n  cron: {schedule: 'nope'}\n  action: {workflow: w1, workspace: ws1}\n---\napiVersion: orchestrator.dev/v2\nkind: Agent\nmetadata: {name: A}\nspec: {command: 'x'}\n";
    let path = d.write("many.yaml", text);
    let run = d.cli(&["apply", "-f", path.to_str().expect("path")]);
    let err = run.fails();
    for want in [
        "spec.cron.schedule",
        "spec.action.workflow",
        "spec.action.workspace",
        "metadata.name",
        "no {prompt} placeholder",
    ] {
        assert!(err.contains(want), "{want:?} missing from:\n{err}");
    }
    assert!(err.contains("5 problems"), "{err}");
}

#[test]
fn a_masked_secret_copied_from_get_is_refused() {
    let d = TestDaemon::start();
    d.apply(GOOD_BASE);
    let yaml = d
        .cli(&["get", "secretstore", "hooks", "-o", "yaml"])
        .ok()
        .to_owned();
    assert!(!yaml.contains("s3cr3t-value"));
    let run = d.cli_stdin(&["apply", "-f", "-"], &yaml);
    assert!(
        run.fails()
            .contains("masked value copied from `orchestrator get`"),
        "{}",
        run.stderr
    );
    // A non-secret resource's `get -o yaml` output applies again unchanged.
    let yaml = d
        .cli(&["get", "workflow", "w", "-o", "yaml"])
        .ok()
        .to_owned();
    assert!(
        d.cli_stdin(&["apply", "-f", "-"], &yaml)
            .ok()
            .contains("workflow/w unchanged")
    );
}

#[test]
fn delete_is_refused_while_referenced_and_names_the_referrers() {
    let d = TestDaemon::start();
    d.apply(ALL_KINDS);
    let run = d.cli(&["delete", "secretstore", "hooks"]);
    let err = run.fails();
    assert!(err.contains("still referenced"), "{err}");
    assert!(
        err.contains("agent/reviewer: spec.env[2].refValue"),
        "{err}"
    );
    assert!(
        err.contains("trigger/on-push: spec.event.webhook.secret.fromRef"),
        "{err}"
    );
    assert!(
        d.cli(&["get", "secretstore", "hooks"])
            .ok()
            .contains("hooks")
    );
    // Removing the capability the workflow needs is refused too.
    let run = d.cli(&["delete", "agent", "reviewer"]);
    assert!(
        run.fails().contains("needs capability \"review\""),
        "{}",
        run.stderr
    );
    // An unreferenced resource goes; a missing one is an error.
    assert!(
        d.cli(&["delete", "trigger", "nightly"])
            .ok()
            .contains("trigger/nightly deleted")
    );
    assert!(
        d.cli(&["delete", "trigger", "nightly"])
            .fails()
            .contains("not found")
    );
}

#[test]
fn kill_9_right_after_apply_loses_nothing() {
    let mut d = TestDaemon::start();
    d.apply(ALL_KINDS);
    let before: Vec<serde_json::Value> = KINDS
        .iter()
        .map(|(k, _)| d.cli(&["get", k, "-o", "json"]).json())
        .collect();
    d.kill9();
    d.spawn();
    for ((k, _), want) in KINDS.iter().zip(&before) {
        assert_eq!(
            &d.cli(&["get", k, "-o", "json"]).json(),
            want,
            "{k} changed across kill -9"
        );
    }
    // The secret is still usable (decrypts) after the restart: describe shows its fingerprint.
    let desc = d
        .cli(&["describe", "secretstore", "hooks", "-o", "json"])
        .json();
    assert_eq!(desc["keys"].as_array().map(Vec::len), Some(2));
}

#[test]
fn a_second_daemon_on_the_same_data_dir_exits_1_naming_the_first() {
    let d = TestDaemon::start();
    let (mut child, ready) = d.spawn_raw();
    assert!(ready.is_err(), "a second daemon became ready");
    let code = crate::common::wait_child(&mut child, Duration::from_secs(20));
    assert_eq!(code, 1);
    let log = d.log();
    let want = format!(
        "another orchestratord (pid {}) is already running on data dir",
        d.pid()
    );
    assert!(log.contains(&want), "{want:?} not in log:\n{log}");
    // The first one still answers.
    d.cli(&["daemon", "status"]).ok();
}

#[test]
fn files_are_private_and_secrets_never_leave_in_clear() {
    let mut d = TestDaemon::start();
    d.apply(ALL_KINDS);
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&d.socket), 0o600, "socket");
    assert_eq!(mode(&d.data_dir), 0o700, "data dir");
    assert_eq!(mode(&d.data_dir.join("secret.key")), 0o600, "key file");
    assert_eq!(mode(&d.data_dir.join("state.db")), 0o600, "database");

    let secrets = ["gh-secret-value-0001", "slack-secret-value-0002"];
    let outputs = [
        d.cli(&["get", "secretstore", "-o", "json"]).stdout,
        d.cli(&["get", "secretstore", "hooks", "-o", "yaml"]).stdout,
        d.cli(&["get", "secretstore"]).stdout,
        d.cli(&["describe", "secretstore", "hooks"]).stdout,
        d.cli(&["describe", "secretstore", "hooks", "-o", "json"])
            .stdout,
        d.cli(&["get", "agent", "reviewer", "-o", "json"]).stdout,
    ];
    for out in &outputs {
        for s in secrets {
            assert!(!out.contains(s), "secret in CLI output:\n{out}");
        }
    }
    assert!(
        outputs[3].contains("*** (20 bytes, sha256:"),
        "{}",
        outputs[3]
    );

    d.terminate();
    for file in ["state.db", "state.db-wal"] {
        let bytes = std::fs::read(d.data_dir.join(file)).unwrap_or_default();
        let hay = String::from_utf8_lossy(&bytes);
        for s in secrets {
            assert!(!hay.contains(s), "secret in {file}");
        }
    }
    let log = d.log();
    assert!(log.contains("ready"), "daemon log is empty?");
    for s in secrets {
        assert!(!log.contains(s), "secret in daemon log");
    }
}

#[test]
fn sigterm_stops_the_daemon_cleanly() {
    let mut d = TestDaemon::start();
    d.apply(GOOD_BASE);
    assert_eq!(d.terminate(), 0);
    assert!(!d.socket.exists(), "socket left behind");
    // And it starts again on the same data dir with its state.
    d.spawn();
    assert!(d.cli(&["get", "workflow"]).ok().contains("w"));
}

#[test]
fn without_a_daemon_the_cli_says_how_to_start_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sock = dir.path().join("none.sock");
    let out = std::process::Command::new(CLI)
        .args(["--socket", sock.to_str().expect("path"), "get", "workflows"])
        .output()
        .expect("run cli");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    };
    let err = run.fails();
    assert!(
        err.starts_with("orchestrator: no daemon is answering on"),
        "{err}"
    );
    assert!(err.contains("start it with `orchestratord`"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn usage_errors_exit_2() {
    let d = TestDaemon::start();
    assert_eq!(d.cli(&["apply"]).code, 2);
    assert_eq!(d.cli(&["get"]).code, 2);
    assert_eq!(d.cli(&["frobnicate"]).code, 2);
    let run = d.cli(&["get", "gizmo"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("unknown kind \"gizmo\""),
        "{}",
        run.stderr
    );
}

#[test]
fn the_secret_rotation_bundle_applies_from_stdin_dirs_and_files() {
    let d = TestDaemon::start();
    let bundle = manifests_dir().join("secret-rotation");
    let out = d
        .cli(&["apply", "-f", bundle.to_str().expect("path")])
        .ok()
        .to_owned();
    for line in [
        "workspace/default created",
        "secretstore/webhook-secrets created",
        "steptemplate/rotate-secrets created",
        "trigger/weekly-secret-rotation created",
        "workflow/secret-rotation created",
        "agent/rotator created",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }
    // The same three documents through stdin are unchanged.
    let text = std::fs::read_to_string(bundle.join("20-rotation.yaml")).expect("read");
    let out = d.cli_stdin(&["apply", "-f", "-"], &text).ok().to_owned();
    assert_eq!(out.matches("unchanged").count(), 3, "{out}");
    let ws = d.cli(&["get", "workspace", "default", "-o", "json"]).json();
    assert_eq!(ws["spec"]["root_path"], bundle.display().to_string());
    eventually(Duration::from_secs(5), "trigger listed", || {
        d.cli(&["get", "trigger"])
            .stdout
            .contains("weekly-secret-rotation")
            .then_some(())
    });
}

#[test]
fn projects_are_namespaces() {
    let d = TestDaemon::start();
    let text = "apiVersion: orchestrator.dev/v2\nkind: StepTemplate\nmetadata: {name: t}\nspec: {prompt: p}\n";
    let path = d.write("t.yaml", text);
    let p = path.to_str().expect("path");
    assert!(
        d.cli(&["apply", "-f", p])
            .ok()
            .contains("steptemplate/t created")
    );
    assert!(
        d.cli(&["-p", "team-b", "apply", "-f", p])
            .ok()
            .contains("steptemplate/t created (project team-b)")
    );
    let all = d.cli(&["get", "steptemplates", "-A"]).ok().to_owned();
    assert!(all.contains("team-b") && all.contains("default"), "{all}");
    assert!(
        d.cli(&["-p", "team-b", "delete", "steptemplate", "t"])
            .ok()
            .contains("deleted")
    );
    assert!(d.cli(&["get", "steptemplate", "t"]).ok().contains("t"));
}
