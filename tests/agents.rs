//! AI agents whose runs are legible (issue 16, item 2), end to end on a real daemon: a fake
//! agent script prints a recorded stream-json transcript (written by the test, in the shape
//! `claude -p --output-format stream-json --verbose` prints); `task show` has what it reported,
//! the next step gets its result, the guards stop runs that go over them; and tasks of a
//! Workspace with `worktree: true` each run in their own git worktree of a real repository.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{TestDaemon, eventually};

/// The fake agent: prints the transcript named by `$TRANSCRIPT`, records its arguments, and
/// with `$LINGER` set keeps running that many seconds (so only a guard can stop it early).
const FAKE_AGENT: &str = r#"#!/bin/sh
printf '%s\n' "$@" > "$TRANSCRIPT.args"
cat "$TRANSCRIPT"
if [ -n "$LINGER" ]; then exec sleep "$LINGER"; fi
exit 0
"#;

fn system() -> String {
    r#"{"type":"system","subtype":"init","session_id":"5f1c-test-session","tools":["Bash","Read","Edit"],"model":"claude-test"}"#.into()
}

/// One assistant turn: a text block and a tool call, as two events of one message.
fn turn(n: u32, tool: &str) -> Vec<String> {
    vec![
        format!(
            r#"{{"type":"assistant","message":{{"id":"msg_{n}","type":"message","role":"assistant","content":[{{"type":"text","text":"Step {n}."}}],"usage":{{"input_tokens":{},"output_tokens":3}}}},"session_id":"5f1c-test-session"}}"#,
            100 * n
        ),
        format!(
            r#"{{"type":"assistant","message":{{"id":"msg_{n}","type":"message","role":"assistant","content":[{{"type":"tool_use","id":"toolu_{n}","name":"{tool}","input":{{}}}}],"usage":{{"input_tokens":{},"output_tokens":9}}}},"session_id":"5f1c-test-session"}}"#,
            100 * n
        ),
        format!(
            r#"{{"type":"user","message":{{"role":"user","content":[{{"type":"tool_result","tool_use_id":"toolu_{n}","content":"ok"}}]}},"session_id":"5f1c-test-session"}}"#
        ),
    ]
}

fn result(text: &str, turns: u32, cost: f64) -> String {
    serde_json::json!({
        "type": "result", "subtype": "success", "is_error": false, "duration_ms": 1234,
        "num_turns": turns, "result": text, "session_id": "5f1c-test-session",
        "total_cost_usd": cost,
        "usage": {"input_tokens": 1500, "output_tokens": 420, "cache_read_input_tokens": 10},
    })
    .to_string()
}

/// Writes the fake agent and a transcript of `lines`; returns (agent path, transcript path).
fn fake(d: &TestDaemon, name: &str, lines: &[String]) -> (PathBuf, PathBuf) {
    let agent = d.write("fake-claude", FAKE_AGENT);
    make_executable(&agent);
    let transcript = d.write(&format!("{name}.jsonl"), &(lines.join("\n") + "\n"));
    (agent, transcript)
}

fn make_executable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// An Agent running the fake agent on `transcript`, the template and a workflow whose second
/// step writes `{think_output}` into the workspace.
fn manifests(
    d: &TestDaemon,
    agent: &Path,
    transcript: &Path,
    extra_spec: &str,
    linger: &str,
) -> String {
    format!(
        r#"{ws}---
apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {{name: claude}}
spec:
  command: "{agent} -p {{prompt}} --output-format stream-json --verbose"
  capabilities: [think]
  output: stream-json
  timeout_secs: 600
  env:
    - {{name: TRANSCRIPT, value: "{transcript}"}}
    - {{name: LINGER, value: "{linger}"}}
{extra_spec}
---
apiVersion: orchestrator.dev/v2
kind: StepTemplate
metadata: {{name: ask}}
spec: {{prompt: "solve {{goal}}"}}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {{name: think}}
spec:
  steps:
    - {{id: think, template: ask, required_capability: think}}
    - {{id: relay, command: "sh -c 'printf %s \"$1\" > relayed.txt' sh {{think_output}}"}}
"#,
        ws = d.workspace(),
        agent = agent.display(),
        transcript = transcript.display(),
    )
}

fn create(d: &TestDaemon, workflow: &str, goal: &str) -> u64 {
    d.cli(&["task", "create", "--workflow", workflow, "--goal", goal])
        .ok()
        .trim()
        .parse()
        .expect("task id")
}

/// Live processes whose command line contains `needle`.
fn running(needle: &str) -> bool {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .any(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
            !zombie
                && String::from_utf8_lossy(&cmd)
                    .replace('\0', " ")
                    .contains(needle)
        })
}

#[test]
fn a_stream_json_run_records_its_result_turns_tokens_cost_and_tools_and_passes_the_result_on() {
    let d = TestDaemon::start();
    let answer = "The answer is 42.\nIt took \"three\" turns.";
    let mut lines = vec![system()];
    lines.extend(turn(1, "Bash"));
    lines.push("this line is not json".into());
    lines.extend(turn(2, "Read"));
    lines.extend(turn(3, "Bash"));
    lines.push(result(answer, 3, 0.0375));
    let (agent, transcript) = fake(&d, "good", &lines);
    d.apply(&manifests(&d, &agent, &transcript, "", ""));
    let id = create(&d, "think", "the puzzle");
    let t = d.finished_task(id);
    assert_eq!(t["task"]["state"], "succeeded", "{t:#}");

    let think = &t["steps"][0];
    let j = &think["streamJson"];
    assert_eq!(j["result"], answer, "{think:#}");
    assert_eq!(j["subtype"], "success");
    assert_eq!(j["isError"], false);
    assert_eq!(j["turns"], 3);
    assert_eq!(j["inputTokens"], 1500);
    assert_eq!(j["outputTokens"], 420);
    assert_eq!(j["costUsd"], 0.0375);
    assert_eq!(j["sessionId"], "5f1c-test-session");
    assert_eq!(
        j["tools"],
        serde_json::json!([{"name": "Bash", "count": 2}, {"name": "Read", "count": 1}])
    );
    assert_eq!(j["badLines"], 1, "the line that is not JSON");
    assert!(
        t["steps"][1].get("streamJson").is_none(),
        "a command step reports no stream"
    );

    // The next step got the final result, not the raw stream.
    let relayed = std::fs::read_to_string(d.workspace_dir().join("relayed.txt")).expect("relay");
    assert_eq!(relayed, answer);
    // The agent was run as claude would be, with the rendered prompt.
    let args = std::fs::read_to_string(transcript.with_extension("jsonl.args")).expect("args");
    assert_eq!(
        args,
        "-p\nsolve the puzzle\n--output-format\nstream-json\n--verbose\n"
    );
    // The run log keeps the raw stream.
    let log = std::fs::read_to_string(think["logPath"].as_str().expect("log path")).expect("log");
    assert!(
        log.contains(r#"out {"type":"system","subtype":"init""#),
        "{log}"
    );
    assert!(log.contains("out this line is not json"), "{log}");

    let table = d.cli(&["task", "show", &id.to_string()]).ok().to_owned();
    for want in [
        "usage:   3 turns, 1500 tokens in, 420 out, $0.0375",
        "session: 5f1c-test-session",
        "tools:   Bash ×2, Read ×1",
        "      The answer is 42.",
    ] {
        assert!(table.contains(want), "{want:?} missing:\n{table}");
    }
}

#[test]
fn a_run_over_max_turns_is_stopped_while_it_runs_with_the_reason_on_step_and_task() {
    let d = TestDaemon::start();
    let mut lines = vec![system()];
    for n in 1..=5 {
        lines.extend(turn(n, "Edit"));
    }
    let (agent, transcript) = fake(&d, "long", &lines);
    d.apply(&manifests(&d, &agent, &transcript, "  maxTurns: 4", "4111"));
    let id = create(&d, "think", "forever");
    let t = d.finished_task(id);
    let reason = "stopped: 5 turns exceed maxTurns 4";
    assert_eq!(t["task"]["state"], "failed", "{t:#}");
    assert_eq!(t["steps"][0]["reason"], reason, "{t:#}");
    let task_reason = t["task"]["reason"].as_str().expect("task reason");
    assert!(task_reason.contains(reason), "{task_reason}");
    assert_eq!(t["steps"][0]["streamJson"]["turns"], 5);
    assert_eq!(t["steps"][0]["signal"], 15, "SIGTERM to the group: {t:#}");
    assert_eq!(
        t["steps"].as_array().map(Vec::len),
        Some(1),
        "relay never ran"
    );
    assert!(!running("sleep 4111"), "the agent's process group is gone");
}

#[test]
fn a_run_over_max_cost_is_stopped_with_that_reason() {
    let d = TestDaemon::start();
    let mut lines = vec![system()];
    lines.extend(turn(1, "Bash"));
    lines.push(result("expensive", 1, 0.75));
    let (agent, transcript) = fake(&d, "costly", &lines);
    let guards = "  maxCostUsd: 0.5\n  maxTurns: 10";
    d.apply(&manifests(&d, &agent, &transcript, guards, "4222"));
    let id = create(&d, "think", "money");
    let t = d.finished_task(id);
    assert_eq!(t["task"]["state"], "failed", "{t:#}");
    assert_eq!(
        t["steps"][0]["reason"],
        "stopped: cost 0.75 USD exceeds maxCostUsd 0.5"
    );
    assert_eq!(t["steps"][0]["streamJson"]["costUsd"], 0.75);
    assert!(!running("sleep 4222"));
}

#[test]
fn a_stream_without_a_result_or_with_an_error_fails_the_step() {
    let d = TestDaemon::start();
    let mut lines = vec![system()];
    lines.extend(turn(1, "Bash"));
    let (agent, transcript) = fake(&d, "cut", &lines);
    d.apply(&manifests(&d, &agent, &transcript, "", ""));
    let t = d.finished_task(create(&d, "think", "x"));
    assert_eq!(t["task"]["state"], "failed", "{t:#}");
    assert_eq!(
        t["steps"][0]["reason"],
        "the agent's stream-json output has no result line"
    );
    assert_eq!(t["steps"][0]["exitCode"], 0);

    let error = serde_json::json!({"type": "result", "subtype": "error_max_turns",
        "is_error": true, "num_turns": 7, "session_id": "s"});
    std::fs::write(&transcript, format!("{}\n{error}\n", system())).expect("rewrite");
    let t = d.finished_task(create(&d, "think", "y"));
    assert_eq!(
        t["steps"][0]["reason"],
        "the agent reported an error (error_max_turns)"
    );
    assert_eq!(t["steps"][0]["streamJson"]["turns"], 7);
}

#[test]
fn apply_refuses_guards_without_stream_json_and_worktrees_outside_git() {
    let d = TestDaemon::start();
    let plain = d.dir.path().join("plain");
    std::fs::create_dir_all(&plain).expect("mkdir");
    let text = format!(
        r#"apiVersion: orchestrator.dev/v2
kind: Workspace
metadata: {{name: default}}
spec: {{root_path: "{}", worktree: true}}
---
apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {{name: a}}
spec: {{command: "echo {{prompt}}", maxTurns: 3, maxCostUsd: -1}}
"#,
        plain.display()
    );
    let path = d.write("bad.yaml", &text);
    let err = d
        .cli(&["apply", "-f", path.to_str().expect("utf-8")])
        .fails()
        .to_owned();
    for want in [
        "spec.worktree: ",
        "is not in a git work tree",
        "spec.maxTurns: maxTurns needs `output: stream-json`",
        "spec.maxCostUsd: maxCostUsd -1 is not a positive amount",
    ] {
        assert!(err.contains(want), "{want:?} missing:\n{err}");
    }
    let empty = d.dir.path().join("empty-repo");
    git(&empty, &["init", "-q", "."]);
    let text = format!(
        "apiVersion: orchestrator.dev/v2\nkind: Workspace\nmetadata: {{name: default}}\nspec: {{root_path: \"{}\", worktree: true}}\n",
        empty.display()
    );
    let path = d.write("empty.yaml", &text);
    let err = d
        .cli(&["apply", "-f", path.to_str().expect("utf-8")])
        .fails()
        .to_owned();
    assert!(err.contains("has no commit yet"), "{err}");
}

/// Runs git in `dir` (created), failing the test if git fails.
fn git(dir: &Path, args: &[&str]) -> String {
    std::fs::create_dir_all(dir).expect("mkdir");
    let out = Command::new("git")
        .args(["-c", "user.name=Test", "-c", "user.email=test@example.com"])
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository with one commit: `README` and `src/lib.txt`.
fn repository(dir: &Path) {
    git(dir, &["init", "-q", "."]);
    std::fs::write(dir.join("README"), "hello from main\n").expect("write");
    std::fs::create_dir_all(dir.join("src")).expect("mkdir");
    std::fs::write(dir.join("src/lib.txt"), "lib\n").expect("write");
    git(dir, &["add", "."]);
    git(dir, &["commit", "-q", "-m", "first"]);
}

#[test]
fn worktree_tasks_each_run_in_their_own_checkout_which_goes_after_success_and_stays_after_failure()
{
    let d = TestDaemon::start();
    let repo = d.dir.path().join("repo");
    repository(&repo);
    let meet = d.dir.path().join("meet");
    std::fs::create_dir_all(&meet).expect("mkdir");
    // Each task records where it runs, leaves a file of its own, and waits until the test has
    // seen both tasks running at once.
    let step = r#"sh -c 'pwd > "$1/pwd-$ORCHESTRATOR_TASK_ID"; test -f README || exit 9; touch "mine-$ORCHESTRATOR_TASK_ID"; [ $(ls mine-* | wc -l) -eq 1 ] || exit 8; while [ ! -e "$1/go" ]; do sleep 0.05; done' sh {goal}"#;
    d.apply(&format!(
        r#"apiVersion: orchestrator.dev/v2
kind: Workspace
metadata: {{name: default}}
spec: {{root_path: "{repo}", worktree: true}}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {{name: pair}}
spec:
  max_parallel: 2
  steps:
    - id: work
      command: {step:?}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {{name: broken}}
spec:
  steps:
    - {{id: spoil, command: "sh -c 'echo changed >> README; touch left-behind; exit 3'"}}
"#,
        repo = repo.display(),
    ));
    let goal = meet.display().to_string();
    let a = create(&d, "pair", &goal);
    let b = create(&d, "pair", &goal);
    let pwd = |id: u64| {
        eventually(Duration::from_secs(60), "both tasks to run", || {
            std::fs::read_to_string(meet.join(format!("pwd-{id}"))).ok()
        })
        .trim()
        .to_owned()
    };
    let (pa, pb) = (PathBuf::from(pwd(a)), PathBuf::from(pwd(b)));
    assert_ne!(pa, pb);
    for (id, p) in [(a, &pa), (b, &pb)] {
        assert!(
            p.starts_with(d.data_dir.join("runs").join(id.to_string())),
            "{}",
            p.display()
        );
        let shown = d.task(id);
        assert_eq!(shown["task"]["state"], "running");
        assert_eq!(shown["task"]["worktree"]["state"], "created", "{shown:#}");
        assert_eq!(
            shown["task"]["worktree"]["path"]
                .as_str()
                .map(PathBuf::from),
            Some(p.clone())
        );
        assert_eq!(
            std::fs::read_to_string(p.join("README")).expect("checkout"),
            "hello from main\n"
        );
    }
    let listed = git(&repo, &["worktree", "list", "--porcelain"]);
    assert_eq!(listed.matches("worktree ").count(), 3, "{listed}");
    assert!(
        !repo.join(format!("mine-{a}")).exists(),
        "the main checkout is untouched"
    );

    std::fs::write(meet.join("go"), "").expect("go");
    for (id, p) in [(a, &pa), (b, &pb)] {
        let t = d.finished_task(id);
        assert_eq!(t["task"]["state"], "succeeded", "{t:#}");
        assert_eq!(t["task"]["worktree"]["state"], "removed", "{t:#}");
        assert!(!p.exists(), "{} is gone", p.display());
    }
    let listed = git(&repo, &["worktree", "list", "--porcelain"]);
    assert_eq!(listed.matches("worktree ").count(), 1, "{listed}");

    let c = create(&d, "broken", "x");
    let t = d.finished_task(c);
    assert_eq!(t["task"]["state"], "failed", "{t:#}");
    assert_eq!(t["task"]["worktree"]["state"], "kept", "{t:#}");
    let kept = PathBuf::from(t["task"]["worktree"]["path"].as_str().expect("path"));
    assert!(kept.join("left-behind").exists(), "kept for inspection");
    assert_eq!(
        std::fs::read_to_string(kept.join("README")).expect("readme"),
        "hello from main\nchanged\n"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("README")).expect("readme"),
        "hello from main\n"
    );
    let table = d.cli(&["task", "show", &c.to_string()]).ok().to_owned();
    assert!(
        table.contains(&format!("Worktree:   {} (kept)", kept.display())),
        "{table}"
    );
}

#[test]
fn a_workspace_root_inside_a_repository_runs_steps_in_the_same_place_of_the_worktree() {
    let d = TestDaemon::start();
    let repo = d.dir.path().join("mono");
    repository(&repo);
    d.apply(&format!(
        r#"apiVersion: orchestrator.dev/v2
kind: Workspace
metadata: {{name: default}}
spec: {{root_path: "{}", worktree: true}}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {{name: sub}}
spec:
  steps:
    - {{id: look, command: "sh -c 'cat lib.txt > /dev/null && pwd > \"$1\"' sh {{goal}}"}}
"#,
        repo.join("src").display()
    ));
    let out = d.dir.path().join("pwd.txt");
    let id = create(&d, "sub", out.to_str().expect("utf-8"));
    let t = d.finished_task(id);
    assert_eq!(t["task"]["state"], "succeeded", "{t:#}");
    let pwd = std::fs::read_to_string(&out).expect("pwd");
    let worktree = d
        .data_dir
        .join("runs")
        .join(id.to_string())
        .join("worktree");
    assert_eq!(pwd.trim(), worktree.join("src").display().to_string());
}

#[test]
fn after_a_crash_a_resumed_task_reuses_its_worktree_and_still_passes_the_stream_result_on() {
    let mut d = TestDaemon::start();
    let repo = d.dir.path().join("repo");
    repository(&repo);
    let out = d.dir.path().join("out");
    std::fs::create_dir_all(&out).expect("mkdir");
    let answer = "resumed answer";
    let mut lines = vec![system()];
    lines.extend(turn(1, "Bash"));
    lines.push(result(answer, 1, 0.01));
    let (agent, transcript) = fake(&d, "resume", &lines);
    // The relay's first attempt hangs until the daemon is killed; its retry writes what it got.
    let relay = r#"sh -c 'if [ ! -e "$2/once" ]; then touch "$2/once"; exec sleep 4333; fi; printf %s "$1" > "$2/relayed.txt"; pwd > "$2/pwd"' sh {think_output} {goal}"#;
    d.apply(&format!(
        r#"apiVersion: orchestrator.dev/v2
kind: Workspace
metadata: {{name: default}}
spec: {{root_path: "{repo}", worktree: true}}
---
apiVersion: orchestrator.dev/v2
kind: Agent
metadata: {{name: claude}}
spec:
  command: "{agent} -p {{prompt}}"
  capabilities: [think]
  output: stream-json
  env: [{{name: TRANSCRIPT, value: "{transcript}"}}]
---
apiVersion: orchestrator.dev/v2
kind: StepTemplate
metadata: {{name: ask}}
spec: {{prompt: "{{goal}}"}}
---
apiVersion: orchestrator.dev/v2
kind: Workflow
metadata: {{name: think}}
spec:
  steps:
    - {{id: think, template: ask, required_capability: think}}
    - {{id: relay, command: {relay:?}, retries: 1}}
"#,
        repo = repo.display(),
        agent = agent.display(),
        transcript = transcript.display(),
    ));
    let id = create(&d, "think", out.to_str().expect("utf-8"));
    eventually(Duration::from_secs(60), "the relay's first attempt", || {
        out.join("once").exists().then_some(())
    });
    let worktree = PathBuf::from(
        d.task(id)["task"]["worktree"]["path"]
            .as_str()
            .expect("path"),
    );
    d.kill9();
    d.spawn();
    let t = d.finished_task(id);
    assert_eq!(t["task"]["state"], "succeeded", "{t:#}");
    assert_eq!(
        std::fs::read_to_string(out.join("relayed.txt")).expect("relayed"),
        answer,
        "the stored result, not the raw stream, after the restart"
    );
    assert_eq!(
        std::fs::read_to_string(out.join("pwd"))
            .expect("pwd")
            .trim(),
        worktree.display().to_string(),
        "the retry ran in the same worktree"
    );
    assert_eq!(t["task"]["worktree"]["state"], "removed");
    assert!(!worktree.exists());
    assert!(!running("sleep 4333"), "the orphaned attempt was killed");
}

/// An agent that fails unless it is resuming: without `--resume` it prints an interrupted
/// transcript and exits 1; with it, a result naming the session it resumed.
const RESUMING_AGENT: &str = r#"#!/bin/sh
printf '%s\n' "$@" >> "$TRANSCRIPT.args"
for a in "$@"; do
  if [ "$resume" = next ]; then resume="$a"; fi
  if [ "$a" = --resume ]; then resume=next; fi
done
if [ -z "$resume" ]; then cat "$TRANSCRIPT"; exit 1; fi
printf '{"type":"result","subtype":"success","is_error":false,"num_turns":2,"result":"resumed %s","session_id":"%s"}\n' "$resume" "$resume"
"#;

#[test]
fn a_retried_stream_json_step_resumes_the_session_its_failed_attempt_reported() {
    let d = TestDaemon::start();
    let mut lines = vec![system()];
    lines.extend(turn(1, "Bash"));
    let (_, transcript) = fake(&d, "interrupted", &lines);
    let agent = d.write("resuming-claude", RESUMING_AGENT);
    make_executable(&agent);
    let resume = "  resumeArgs: \"--resume {session_id}\"\n";
    d.apply(&format!(
        "{}---\napiVersion: orchestrator.dev/v2\nkind: Workflow\nmetadata: {{name: again}}\nspec:\n  steps:\n    - {{id: think, template: ask, required_capability: think, retries: 1, backoff: {{initial_delay_secs: 0.1}}}}\n",
        manifests(&d, &agent, &transcript, resume, "")
    ));
    let t = d.finished_task(create(&d, "again", "x"));
    assert_eq!(t["task"]["state"], "succeeded", "{t:#}");
    let steps = t["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 2, "{t:#}");
    assert_eq!(
        steps[0]["streamJson"]["sessionId"], "5f1c-test-session",
        "{t:#}"
    );
    let argv: Vec<&str> = steps[1]["argv"]
        .as_array()
        .expect("argv")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert_eq!(
        argv[argv.len() - 2..],
        ["--resume", "5f1c-test-session"],
        "{argv:?}"
    );
    assert_eq!(
        steps[1]["streamJson"]["result"],
        "resumed 5f1c-test-session"
    );
    // The first attempt started fresh: no --resume.
    let first: Vec<&str> = steps[0]["argv"]
        .as_array()
        .expect("argv")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(!first.contains(&"--resume"), "{first:?}");

    // resumeArgs knows only {session_id}, and needs stream-json.
    let bad = d.cli_stdin(
        &["apply", "-f", "-"],
        "apiVersion: orchestrator.dev/v2\nkind: Agent\nmetadata: {name: bad}\nspec: {command: \"x {prompt}\", capabilities: [z], resumeArgs: \"--resume {goal}\"}\n",
    );
    assert_ne!(bad.code, 0);
    assert!(
        bad.stderr
            .contains("unknown placeholder {goal} in resumeArgs"),
        "{}",
        bad.stderr
    );
    assert!(
        bad.stderr
            .contains("resumeArgs needs `output: stream-json`"),
        "{}",
        bad.stderr
    );
}
