//! Table tests of [`launch`]: prompt delivery, environment precedence, store references and
//! their failures, timeouts and command steps, each checked as the whole `Launch` it yields.

use super::*;
use crate::domain::lower::lower_workflow;
use crate::domain::manifest::{Manifest, WorkflowSpec, parse_documents};
use chrono::{DateTime, Utc};

const PROMPT: &str = "do {goal} in {workspace_root} c{cycle} {step_id}: {prev_stdout}/{a_output}/{payload}/{payload_file} #{task_id} {workflow}@{project}";
/// `PROMPT` rendered for the task of [`vars`] at step `s`, cycle 2.
const RENDERED: &str =
    "do the goal in /ws c2 s: prev/out-a/{\"n\":1}/runs/7/payload.json #7 w@default";
const PROMPT_PATH: &str = "runs/7/s-c2-a1.prompt";

/// Resources every case has: the template `t`, a SecretStore, an EnvStore, and a SecretStore and
/// an EnvStore that share the name `both`.
const BASE: &str = r#"
kind: StepTemplate
metadata: {name: t}
spec: {prompt: "PROMPT"}
---
kind: SecretStore
metadata: {name: sec}
spec: {data: {token: s3cret}}
---
kind: EnvStore
metadata: {name: envs}
spec: {data: {B: from-store, C: c, not-a-name: x, 1X: y}}
---
kind: SecretStore
metadata: {name: both}
spec: {data: {V: secret-side}}
---
kind: EnvStore
metadata: {name: both}
spec: {data: {V: env-side}}
"#;

fn manifests(text: &str) -> Vec<Manifest> {
    let text = text
        .replace("kind:", "apiVersion: orchestrator.dev/v2\nkind:")
        .replace("\"PROMPT\"", &format!("{PROMPT:?}"));
    let (docs, problems) = parse_documents("t.yaml", &text);
    assert!(problems.is_empty(), "{problems:?}");
    docs.into_iter()
        .map(|d| {
            let mut m = d.manifest;
            m.metadata.project = Some("default".into());
            m
        })
        .collect()
}

fn snapshot(agents: &str) -> Snapshot {
    let all = manifests(&format!("{BASE}---\n{agents}"));
    let s = Snapshot::default();
    s.apply(&s.plan(&all, DateTime::<Utc>::UNIX_EPOCH))
}

/// The workflow `w` whose second step (index 1, id `s`) is `step`.
fn workflow(step: &str) -> WorkflowSpec {
    let text = format!(
        "kind: Workflow\nmetadata: {{name: w}}\nspec:\n  steps:\n    - {{id: a, command: 'true'}}\n    - {step}\n"
    );
    match manifests(&text).remove(0).spec {
        Spec::Workflow(w) => w,
        other => panic!("{other:?}"),
    }
}

const BASE_ENV: [(&str, &str); 2] = [("PATH", "/bin"), ("HOME", "/home/u")];
/// What every run gets last.
const ORCHESTRATOR_ENV: [(&str, &str); 4] = [
    ("ORCHESTRATOR_SOCKET", "/data/orchestrator.sock"),
    ("ORCHESTRATOR_TASK_ID", "7"),
    ("ORCHESTRATOR_STEP_ID", "s"),
    ("ORCHESTRATOR_PROJECT", "default"),
];

fn pos() -> Position {
    Position {
        cycle: 2,
        step: 1,
        attempt: 1,
    }
}

/// Runs [`launch`] for step `s` of [`workflow`] with the agents `agents`.
fn run(agents: &str, step: &str, payload: Option<&str>) -> Result<Launch, LaunchError> {
    let snapshot = snapshot(agents);
    let spec = workflow(step);
    let lowered = lower_workflow(&spec).expect("lowers");
    let outputs = HashMap::from([("a".to_owned(), "out-a".to_owned())]);
    let base_env: Vec<(String, String)> = BASE_ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let files = RunFiles::new(Path::new("runs/7"), "s", pos());
    launch(&StepRun {
        task: TaskVars {
            id: 7,
            project: "default",
            workflow: "w",
            goal: Some("the goal"),
            workspace_root: "/ws",
            payload,
            payload_file: Path::new("runs/7/payload.json"),
            prev_stdout: "prev",
            outputs: &outputs,
        },
        step: &spec.steps[1],
        pos: pos(),
        steps: Ok(&lowered),
        snapshot: &snapshot,
        base_env: &base_env,
        socket: Path::new("/data/orchestrator.sock"),
        files: &files,
        resume_session: None,
    })
}

/// What a case expects. `env` lists the variables between the base environment (whatever of it
/// survives is listed too) and the `ORCHESTRATOR_*` ones, which every run gets last.
struct Want {
    agent: Option<&'static str>,
    argv: &'static [&'static str],
    env: &'static [(&'static str, &'static str)],
    stdin: Option<&'static str>,
    prompt_file: Option<&'static str>,
    timeout: u64,
    skipped: &'static [(&'static str, &'static str)],
}

const PLAIN: Want = Want {
    agent: Some("a"),
    argv: &["agent"],
    env: &BASE_ENV,
    stdin: None,
    prompt_file: None,
    timeout: 1800,
    skipped: &[],
};

#[track_caller]
fn check(agents: &str, step: &str, want: Result<Want, &str>) {
    let got = run(agents, step, Some("{\"n\":1}"));
    let want = match want {
        Err(text) => {
            assert_eq!(got.map_err(|e| e.to_string()).err().as_deref(), Some(text));
            return;
        }
        Ok(w) => w,
    };
    let got = got.unwrap_or_else(|e| panic!("{agents}: {e}"));
    let env: Vec<(&str, &str)> = got
        .env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let want_env: Vec<(&str, &str)> = want.env.iter().chain(&ORCHESTRATOR_ENV).copied().collect();
    assert_eq!(got.agent.as_deref(), want.agent, "{agents}");
    assert_eq!(got.argv, want.argv, "{agents}");
    assert_eq!(env, want_env, "{agents}");
    assert_eq!(
        got.stdin.as_deref(),
        want.stdin.map(str::as_bytes),
        "{agents}"
    );
    assert_eq!(
        got.prompt_file,
        want.prompt_file
            .map(|text| (PathBuf::from(PROMPT_PATH), text.to_owned())),
        "{agents}"
    );
    assert_eq!(got.timeout, Duration::from_secs(want.timeout), "{agents}");
    let skipped: Vec<(&str, &str)> = got
        .skipped
        .iter()
        .map(|s| (s.store.as_str(), s.key.as_str()))
        .collect();
    assert_eq!(skipped, want.skipped, "{agents}");
}

const TEMPLATE_STEP: &str = "{id: s, template: t, required_capability: code}";

fn agent(spec: &str) -> String {
    format!("kind: Agent\nmetadata: {{name: a}}\nspec: {{capabilities: [code], {spec}}}\n")
}

#[test]
fn prompt_delivery() {
    let cases = [
        (
            "command: \"agent -p '{prompt}' --in {prompt_file}\"",
            Want {
                argv: &["agent", "-p", RENDERED, "--in", PROMPT_PATH],
                ..PLAIN
            },
        ),
        (
            "command: agent, promptDelivery: stdin",
            Want {
                stdin: Some(RENDERED),
                ..PLAIN
            },
        ),
        (
            "command: agent, promptDelivery: env",
            Want {
                env: &[
                    ("PATH", "/bin"),
                    ("HOME", "/home/u"),
                    ("ORCH_PROMPT", RENDERED),
                ],
                ..PLAIN
            },
        ),
        (
            "command: 'agent {prompt_file}', promptDelivery: file",
            Want {
                argv: &["agent", PROMPT_PATH],
                env: &[
                    ("PATH", "/bin"),
                    ("HOME", "/home/u"),
                    ("ORCH_PROMPT_FILE", PROMPT_PATH),
                ],
                prompt_file: Some(RENDERED),
                ..PLAIN
            },
        ),
    ];
    for (spec, want) in cases {
        check(&agent(spec), TEMPLATE_STEP, Ok(want));
    }
}

#[test]
fn environment_precedence_and_store_references() {
    let cases = [
        // A later entry replaces an earlier one of the same name, the base environment's too;
        // the ORCHESTRATOR_* variables always win. Keys that are no variable names are skipped.
        (
            "command: agent, env: [{name: PATH, value: /agent/bin}, {fromRef: envs}, {name: B, value: from-value}, {name: ORCHESTRATOR_TASK_ID, value: evil}]",
            Ok(Want {
                env: &[
                    ("HOME", "/home/u"),
                    ("PATH", "/agent/bin"),
                    ("C", "c"),
                    ("B", "from-value"),
                ],
                skipped: &[("envs", "1X"), ("envs", "not-a-name")],
                ..PLAIN
            }),
        ),
        // refValue reads one key, from a SecretStore before an EnvStore of the same name.
        (
            "command: agent, env: [{name: TOKEN, refValue: {name: sec, key: token}}, {name: V, refValue: {name: both, key: V}}]",
            Ok(Want {
                env: &[
                    ("PATH", "/bin"),
                    ("HOME", "/home/u"),
                    ("TOKEN", "s3cret"),
                    ("V", "secret-side"),
                ],
                ..PLAIN
            }),
        ),
        (
            "command: agent, env: [{fromRef: both}]",
            Ok(Want {
                env: &[("PATH", "/bin"), ("HOME", "/home/u"), ("V", "secret-side")],
                ..PLAIN
            }),
        ),
        (
            "command: agent, env: [{name: A, value: '1'}, {fromRef: gone}]",
            Err("agent \"a\": store \"gone\" no longer exists"),
        ),
        (
            "command: agent, env: [{name: T, refValue: {name: gone, key: token}}]",
            Err("agent \"a\": store \"gone\" no longer exists"),
        ),
        (
            "command: agent, env: [{name: T, refValue: {name: sec, key: nope}}]",
            Err("agent \"a\": store \"sec\" has no key \"nope\" any more"),
        ),
        (
            "command: agent, env: [{name: T, refValue: {name: envs, key: nope}}]",
            Err("agent \"a\": store \"envs\" has no key \"nope\" any more"),
        ),
    ];
    for (spec, want) in cases {
        check(&agent(spec), TEMPLATE_STEP, want);
    }
}

#[test]
fn timeouts_step_over_agent_over_default() {
    let cases = [
        ("command: agent, timeout_secs: 60", TEMPLATE_STEP, 60),
        (
            "command: agent, timeout_secs: 60",
            "{id: s, template: t, required_capability: code, timeout_secs: 5}",
            5,
        ),
        ("command: agent", TEMPLATE_STEP, 1800),
    ];
    for (spec, step, timeout) in cases {
        check(&agent(spec), step, Ok(Want { timeout, ..PLAIN }));
    }
}

#[test]
fn command_steps_render_their_own_words() {
    let plain = Want {
        agent: None,
        argv: &["echo", "the goal", "7-2", "out-a"],
        ..PLAIN
    };
    let cases = [
        (
            "{id: s, command: \"echo {goal} '{task_id}-{cycle}' {a_output}\"}",
            1800,
        ),
        // An agent's timeout does not apply to a command step.
        (
            "{id: s, command: \"echo {goal} '{task_id}-{cycle}' {a_output}\", timeout_secs: 9}",
            9,
        ),
    ];
    for (step, timeout) in cases {
        let agents = agent("command: agent, timeout_secs: 60");
        check(&agents, step, Ok(Want { timeout, ..plain }));
    }
}

#[test]
fn picking_the_agent_and_the_template() {
    let two = "kind: Agent\nmetadata: {name: b}\nspec: {command: second, capabilities: [code]}\n---\nkind: Agent\nmetadata: {name: a}\nspec: {command: first, capabilities: [code, other]}\n";
    let disabled = "kind: Agent\nmetadata: {name: a}\nspec: {command: agent, capabilities: [code], enabled: false}\n";
    let cases = [
        // The first enabled agent by name.
        (
            two,
            TEMPLATE_STEP,
            Ok(Want {
                argv: &["first"],
                ..PLAIN
            }),
        ),
        (
            disabled,
            TEMPLATE_STEP,
            Err("no enabled agent has capability \"code\""),
        ),
        (
            two,
            "{id: s, template: t, required_capability: none}",
            Err("no enabled agent has capability \"none\""),
        ),
        (
            two,
            "{id: s, template: missing, required_capability: code}",
            Err("step template \"missing\" no longer exists"),
        ),
    ];
    for (agents, step, want) in cases {
        check(agents, step, want);
    }
}

#[test]
fn a_task_without_payload_renders_empty_payload_placeholders() {
    let got = run(
        &agent("command: \"agent '{payload}|{payload_file}'\""),
        TEMPLATE_STEP,
        None,
    )
    .expect("launches");
    assert_eq!(got.argv, ["agent", "|"]);
}

#[test]
fn workflows_that_no_longer_lower_or_lost_the_step() {
    let snapshot = snapshot(&agent("command: agent"));
    let spec = workflow(TEMPLATE_STEP);
    let outputs = HashMap::new();
    let files = RunFiles::new(Path::new("runs/7"), "s", pos());
    let broken = LowerError::StepShape { step: "s".into() };
    let short = LoweredWorkflow { steps: Vec::new() };
    let cases = [
        (
            Err(&broken),
            "the task's workflow does not lower: step \"s\" has neither a template nor a command",
        ),
        (Ok(&short), "step 1 of the workflow no longer exists"),
    ];
    for (steps, want) in cases {
        let got = launch(&StepRun {
            task: TaskVars {
                id: 7,
                project: "default",
                workflow: "w",
                goal: None,
                workspace_root: "/ws",
                payload: None,
                payload_file: Path::new("runs/7/payload.json"),
                prev_stdout: "",
                outputs: &outputs,
            },
            step: &spec.steps[1],
            pos: pos(),
            steps,
            snapshot: &snapshot,
            base_env: &[],
            socket: Path::new("/s"),
            files: &files,
            resume_session: None,
        });
        let err = got.expect_err("fails");
        assert_eq!(err.to_string(), want);
        assert_eq!(err.agent(), None);
    }
}

#[test]
fn the_run_marker_comes_last_and_replaces_any_earlier_one() {
    let mut got = run(
        &agent("command: agent, env: [{name: ORCHESTRATOR_RUN_ID, value: forged}]"),
        TEMPLATE_STEP,
        None,
    )
    .expect("launches");
    got.mark_run(42);
    let marks: Vec<_> = got.env.iter().filter(|(k, _)| k == RUN_ID_VAR).collect();
    assert_eq!(marks, [&(RUN_ID_VAR.to_owned(), "42".to_owned())]);
    assert_eq!(got.env.last().map(|(k, _)| k.as_str()), Some(RUN_ID_VAR));
    // The debug form names variables, never their values.
    assert!(!format!("{got:?}").contains("forged"));
}

#[test]
fn run_files_are_named_by_step_cycle_and_attempt() {
    let files = RunFiles::new(
        Path::new("/d/runs/3"),
        "build",
        Position {
            cycle: 4,
            step: 0,
            attempt: 2,
        },
    );
    assert_eq!(files.log, Path::new("/d/runs/3/build-c4-a2.log"));
    assert_eq!(files.prompt, Path::new("/d/runs/3/build-c4-a2.prompt"));
}
