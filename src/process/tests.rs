//! Tests of the agent runner: real `sh` children with their exit codes, environment, stdin, run
//! log, caps, redaction, timeout, cancel and process-group cleanup.

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use nix::unistd::Pid;

use super::group::parse_stat;
use super::*;
use crate::domain::redact::{Redactor, SecretRegistry};

const DEADLINE: Duration = Duration::from_secs(30);

fn path_var() -> String {
    std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".to_owned())
}

fn spec(argv: &[&str], dir: &Path) -> SpawnSpec {
    SpawnSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        cwd: dir.to_owned(),
        env: vec![("PATH".to_owned(), path_var())],
        stdin: None,
        log_path: dir.join("logs/run.log"),
        timeout: Duration::from_secs(120),
        grace: Duration::from_secs(10),
        stream_cap: 16 << 20,
        capture_cap: 1 << 20,
        secrets: Secrets::fixed(Arc::new(Redactor::none())),
        stream: None,
        idle_timeout: None,
    }
}

fn sh(script: &str, dir: &Path) -> SpawnSpec {
    spec(&["sh", "-c", script], dir)
}

async fn run(spec: SpawnSpec) -> (Finished, String) {
    let log_path = spec.log_path.clone();
    let finished = spawn(spec).expect("spawn").wait().await.expect("wait");
    assert!(finished.log_error.is_none(), "{:?}", finished.log_error);
    let log = std::fs::read_to_string(&log_path).expect("read log");
    (finished, log)
}

/// The log as `(tag, text)` pairs, checking every line's timestamp on the way.
fn lines(log: &str) -> Vec<(String, String)> {
    log.lines()
        .map(|line| {
            let mut parts = line.splitn(3, ' ');
            let at = parts.next().unwrap_or_default();
            assert!(
                at.len() == 24 && at.ends_with('Z'),
                "timestamp {at:?} in {line:?}"
            );
            DateTime::parse_from_rfc3339(at).expect("RFC 3339 timestamp");
            let tag = parts.next().unwrap_or_default().to_owned();
            (tag, parts.next().unwrap_or_default().to_owned())
        })
        .collect()
}

/// The lines of one stream as the agent wrote them: a `{tag}+` line (the rest of a line whose
/// beginning was flushed after a pause) is joined to the line before it.
fn out_lines(log: &str, tag: &str) -> Vec<String> {
    let rest = format!("{tag}+");
    let mut out: Vec<String> = Vec::new();
    for (t, text) in lines(log) {
        if t == tag {
            out.push(text);
        } else if t == rest {
            out.last_mut()
                .expect("a `+` line follows a line of its stream")
                .push_str(&text);
        }
    }
    out
}

/// Polls `condition` until it holds; panics with `what` after [`DEADLINE`].
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits for the first `out` line of a running agent's log and parses it as a pid.
async fn first_pid_in_log(log_path: &Path) -> i32 {
    let mut pid = None;
    eventually("the grandchild's pid in the log", || {
        let log = std::fs::read_to_string(log_path).unwrap_or_default();
        pid = out_lines(&log, "out").first().and_then(|l| l.parse().ok());
        pid.is_some()
    })
    .await;
    pid.unwrap_or_default()
}

fn process_alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| parse_stat(&stat))
        .is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// The leader is our child: once `wait` returned it must not even be a zombie.
fn assert_reaped(pgid: i32) {
    assert!(
        !Path::new(&format!("/proc/{pgid}")).exists(),
        "leader {pgid} was not reaped"
    );
}

async fn assert_group_gone(pgid: i32, grandchild: i32) {
    assert_reaped(pgid);
    eventually("the process group to die", || !group_alive(pgid)).await;
    eventually("the grandchild to die", || !process_alive(grandchild)).await;
}

#[tokio::test]
async fn exit_codes_and_signals() {
    async fn check(script: &str, want: Outcome, exit: Exit) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (finished, _) = run(sh(script, dir.path())).await;
        assert_eq!(finished.outcome, want, "{script}");
        assert_eq!(finished.exit, exit, "{script}");
        assert!(finished.ended_at >= finished.started_at);
    }
    check("exit 0", Outcome::Exited(0), Exit::Code(0)).await;
    check("exit 3", Outcome::Exited(3), Exit::Code(3)).await;
    check("kill -KILL $$", Outcome::Signaled(9), Exit::Signal(9)).await;
}

#[tokio::test]
async fn output_is_captured_and_logged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = sh(
        "echo hello; echo oops >&2; printf 'two\\r\\n'; printf 'no newline'",
        dir.path(),
    );
    let log_path = spec.log_path.clone();
    let (finished, log) = run(spec).await;
    assert_eq!(finished.outcome, Outcome::Exited(0));
    assert_eq!(finished.stdout, "hello\ntwo\r\nno newline");
    assert_eq!((finished.stdout_bytes, finished.stderr_bytes), (21, 5));
    assert!(!finished.truncated && !finished.capture_truncated);
    assert_eq!(out_lines(&log, "out"), ["hello", "two", "no newline"]);
    assert_eq!(out_lines(&log, "err"), ["oops"]);
    let mode = std::fs::metadata(&log_path)
        .expect("log")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[tokio::test]
async fn environment_is_exactly_what_was_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env_spec = spec(&["env"], dir.path());
    env_spec.env.push(("FOO".to_owned(), "bar baz".to_owned()));
    let (finished, _) = run(env_spec).await;
    let mut vars: Vec<&str> = finished.stdout.lines().collect();
    vars.sort();
    assert_eq!(
        vars,
        ["FOO=bar baz".to_owned(), format!("PATH={}", path_var())]
    );

    // The daemon's own HOME must not leak through.
    let mut script = sh("echo \"$HOME-$FOO\"", dir.path());
    script.env.push(("FOO".to_owned(), "bar".to_owned()));
    let (finished, _) = run(script).await;
    assert_eq!(finished.stdout, "-bar\n");
}

#[tokio::test]
async fn working_directory_is_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dir.path().join("work space");
    std::fs::create_dir(&work).expect("mkdir");
    let mut pwd = spec(&["pwd", "-P"], &work);
    pwd.log_path = dir.path().join("run.log");
    let (finished, _) = run(pwd).await;
    let want = work.canonicalize().expect("canonicalize");
    assert_eq!(
        finished.stdout.trim_end(),
        want.to_str().expect("utf-8 path")
    );

    // A program path with a slash is relative to the working directory. (A `#!` script sees
    // the path it was executed by as `$0`.)
    let agent = work.join("agent.sh");
    std::fs::write(&agent, "#!/bin/sh\necho \"$0 $1\"\n").expect("write");
    std::fs::set_permissions(&agent, Permissions::from_mode(0o755)).expect("chmod");
    let mut relative = spec(&["./agent.sh", "arg"], &work);
    relative.log_path = dir.path().join("run.log");
    let (finished, _) = run(relative).await;
    assert_eq!(finished.stdout, format!("{} arg\n", agent.display()));
}

#[tokio::test]
async fn hostile_text_arrives_verbatim_on_stdin_and_in_argv() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pwned = dir.path().join("pwned");
    let hostile = format!(
        "'; touch {p}; '\n$(touch {p})\n`touch {p}`\n\"; touch {p}; \"\n日本語 ✓ ümlaut\n",
        p = pwned.display()
    );

    let mut on_stdin = spec(&["cat"], dir.path());
    on_stdin.stdin = Some(hostile.clone().into_bytes());
    let (finished, _) = run(on_stdin).await;
    assert_eq!(finished.stdout, hostile);

    let (finished, _) = run(spec(&["printf", "%s", &hostile], dir.path())).await;
    assert_eq!(finished.stdout, hostile);
    assert!(!pwned.exists(), "hostile text was run by a shell");
}

#[tokio::test]
async fn a_child_that_never_reads_stdin_does_not_block() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = spec(&["true"], dir.path());
    spec.stdin = Some(vec![b'x'; 4 << 20]);
    let (finished, _) = run(spec).await;
    assert_eq!(finished.outcome, Outcome::Exited(0));
}

#[tokio::test]
async fn spawn_errors_name_the_problem() {
    let dir = tempfile::tempdir().expect("tempdir");
    let not_executable = dir.path().join("script.sh");
    std::fs::write(&not_executable, "#!/bin/sh\n").expect("write");
    let script = not_executable.to_str().expect("utf-8 path");

    #[track_caller]
    fn check(spec: SpawnSpec, want: &str) {
        match spawn(spec) {
            Ok(running) => panic!("spawned {running:?}, want an error containing {want:?}"),
            Err(err) => {
                let message = err.to_string();
                assert!(message.contains(want), "{message:?} lacks {want:?}");
            }
        }
    }
    let d = dir.path();
    check(
        spec(&["no-such-agent-xyz", "-p"], d),
        "command not found: no-such-agent-xyz: it is in no directory of the agent's PATH",
    );
    check(
        spec(&["/no/such/agent"], d),
        "command not found: /no/such/agent",
    );
    check(spec(&[script], d), "is not executable");
    check(spec(&[], d), "agent command is empty");
    let mut no_path = spec(&["sh"], d);
    no_path.env.clear();
    check(no_path, "the agent's environment has no PATH");
    let mut missing_cwd = spec(&["true"], d);
    missing_cwd.cwd = d.join("gone");
    check(missing_cwd, "working directory");
    let mut bad_log = spec(&["true"], d);
    bad_log.log_path = not_executable.join("run.log");
    check(bad_log, "run log");
    assert!(
        matches!(
            spawn(spec(&["no-such-agent-xyz"], d)),
            Err(ProcessError::NotFound { program, .. }) if program == "no-such-agent-xyz"
        ),
        "NotFound carries the program name"
    );
}

#[tokio::test]
async fn timeout_terminates_the_whole_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh("sleep 600 & echo $!; sleep 600", dir.path());
    spec.timeout = Duration::from_secs(2);
    let log_path = spec.log_path.clone();
    let running = spawn(spec).expect("spawn");
    let pgid = running.pid() as i32;
    let finished = running.wait().await.expect("wait");
    assert_eq!(finished.outcome, Outcome::TimedOut);
    assert_eq!(finished.exit, Exit::Signal(15));
    let log = std::fs::read_to_string(&log_path).expect("log");
    let grandchild = out_lines(&log, "out")
        .first()
        .and_then(|pid| pid.parse().ok())
        .expect("the script printed its grandchild's pid");
    assert_group_gone(pgid, grandchild).await;
}

#[tokio::test]
async fn cancel_terminates_the_whole_group_and_escalates_after_grace() {
    async fn check(script: &str, want: Exit) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = sh(script, dir.path());
        spec.grace = Duration::from_millis(200);
        let log_path = spec.log_path.clone();
        let running = spawn(spec).expect("spawn");
        let pgid = running.pid() as i32;
        let canceller = running.canceller();
        let waiting = tokio::spawn(running.wait());
        let grandchild = first_pid_in_log(&log_path).await;
        canceller.cancel();
        canceller.cancel();
        let finished = waiting.await.expect("join").expect("wait");
        assert_eq!(finished.outcome, Outcome::Cancelled, "{script}");
        assert_eq!(finished.exit, want, "{script}");
        assert_group_gone(pgid, grandchild).await;
    }
    check("sleep 600 & echo $!; sleep 600", Exit::Signal(15)).await;
    // SIGTERM is ignored by the shell and both sleeps, so only SIGKILL ends them.
    check(
        "trap '' TERM; sleep 600 & echo $!; sleep 600",
        Exit::Signal(9),
    )
    .await;
}

#[tokio::test]
async fn background_child_holding_stdout_does_not_hang_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    let running = spawn(sh("sleep 600 & echo $!; echo done", dir.path())).expect("spawn");
    let pgid = running.pid() as i32;
    let finished = running.wait().await.expect("wait");
    assert_eq!(finished.outcome, Outcome::Exited(0));
    let mut lines = finished.stdout.lines();
    let grandchild = lines.next().and_then(|pid| pid.parse().ok()).expect("pid");
    assert_eq!(lines.next(), Some("done"));
    assert_group_gone(pgid, grandchild).await;
}

#[tokio::test]
async fn process_that_left_the_group_does_not_hang_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The escaped process reports its pid only once it has its own session, so the group
    // kill after the leader exits cannot catch it.
    let mut spec = sh(
        "setsid sh -c 'echo $$ > pid.tmp && mv pid.tmp pid && exec sleep 600' & \
         until [ -s pid ]; do sleep 0.01; done; cat pid; echo done",
        dir.path(),
    );
    spec.grace = Duration::ZERO;
    let (finished, log) = run(spec).await;
    let escaped: i32 = finished
        .stdout
        .lines()
        .next()
        .and_then(|pid| pid.parse().ok())
        .expect("pid");
    // It is outside our group, so the test cleans it up itself.
    let _ = nix::sys::signal::kill(Pid::from_raw(escaped), Signal::SIGKILL);
    assert_eq!(finished.outcome, Outcome::Exited(0));
    assert!(finished.capture_truncated);
    let out = out_lines(&log, "out");
    assert_eq!(out[1..2], ["done"]);
    assert!(
        out.iter().any(|l| l.starts_with("[stdout still held open")),
        "{log}"
    );
}

#[tokio::test]
async fn stream_cap_truncates_the_log_and_the_child_completes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh("yes | head -c 5000000; echo tail >&2", dir.path());
    spec.stream_cap = 1_000_000;
    let (finished, log) = run(spec).await;
    assert_eq!(finished.outcome, Outcome::Exited(0));
    assert_eq!(finished.stdout_bytes, 5_000_000);
    assert!(finished.truncated && finished.capture_truncated);
    assert_eq!(finished.stdout.len(), 1_000_000);
    let out = out_lines(&log, "out");
    assert_eq!(out.len(), 500_001);
    assert!(out[..500_000].iter().all(|l| l == "y"));
    assert_eq!(out[500_000], "[stdout truncated after 1000000 bytes]");
    assert_eq!(out_lines(&log, "err"), ["tail"]);
}

#[tokio::test]
async fn long_lines_are_split() {
    let dir = tempfile::tempdir().expect("tempdir");
    let script = "head -c 200000 /dev/zero | tr '\\0' a; echo; \
                  printf a; head -c 70000 /dev/zero | tr '\\0' x | sed 's/x/é/g'";
    let (_, log) = run(sh(script, dir.path())).await;
    let lengths: Vec<usize> = out_lines(&log, "out").iter().map(String::len).collect();
    // `a` and 70000 two-byte characters: the first cut backs off one byte so that it falls
    // between characters, and no U+FFFD appears.
    assert_eq!(lengths, [65536, 65536, 65536, 3392, 65535, 65536, 8930]);
    assert!(!log.contains('\u{FFFD}'));
}

#[tokio::test]
async fn capture_cap_never_splits_a_character() {
    async fn check(text: &str, cap: usize, want: &str, truncated: bool) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut spec = spec(&["printf", "%s", text], dir.path());
        spec.capture_cap = cap;
        let (finished, log) = run(spec).await;
        assert_eq!(finished.stdout, want, "{text:?} capped at {cap}");
        assert_eq!(
            finished.capture_truncated, truncated,
            "{text:?} capped at {cap}"
        );
        assert_eq!(out_lines(&log, "out"), [text], "the log is not capped");
    }
    let e = "é".repeat(100);
    check(&e, 10, "ééééé", true).await;
    check(&e, 11, "ééééé", true).await;
    check(&e, 1, "", true).await;
    check(&e, 200, &e, false).await;
    check("日本語テキスト", 8, "日本", true).await;
    check("a😀b", 4, "a", true).await;
    check("a😀b", 5, "a😀", true).await;
}

#[tokio::test]
async fn secrets_are_redacted_in_the_log_and_the_capture() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh(
        "printf 'token=hunter2-'; sleep 0.1; printf 'secret\\n'; \
         printf 'multi-first\\nmulti-second\\n' >&2; echo hunter2-secret",
        dir.path(),
    );
    spec.secrets = Secrets::fixed(Arc::new(Redactor::new([
        "hunter2-secret",
        "multi-first\nmulti-second",
    ])));
    let (finished, log) = run(spec).await;
    assert_eq!(finished.stdout, "token=[REDACTED]\n[REDACTED]\n");
    assert_eq!(out_lines(&log, "out"), ["token=[REDACTED]", "[REDACTED]"]);
    assert_eq!(out_lines(&log, "err"), ["[REDACTED]"]);
    for leak in ["hunter2", "secret", "multi"] {
        assert!(!log.contains(leak), "{leak:?} in the log:\n{log}");
    }
}

/// A partial line is in the log while the agent still runs; when it is killed, the tail held
/// back as the possible start of a secret is logged as it is (it is not the whole secret), so no
/// output is lost and no secret appears.
#[tokio::test]
async fn a_partial_line_is_logged_while_running_and_nothing_is_lost_on_kill() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spec = sh("printf 'waiting for tok-SEC'; sleep 600", dir.path());
    spec.secrets = Secrets::fixed(Arc::new(Redactor::new(["tok-SECRET-1234"])));
    let log_path = spec.log_path.clone();
    let running = spawn(spec).expect("spawn");
    let canceller = running.canceller();
    let waiting = tokio::spawn(running.wait());
    eventually("the partial line in the log of the running agent", || {
        std::fs::read_to_string(&log_path).is_ok_and(|log| log.contains(" out waiting for \n"))
    })
    .await;
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert!(
        !log.contains("tok"),
        "the held tail was logged early:\n{log}"
    );
    assert!(!waiting.is_finished(), "the agent ended first");
    canceller.cancel();
    let finished = waiting.await.expect("join").expect("wait");
    assert_eq!(finished.outcome, Outcome::Cancelled);
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert_eq!(out_lines(&log, "out"), ["waiting for tok-SEC"], "{log}");
    assert_eq!(finished.stdout, "waiting for tok-SEC");
}

/// A value that becomes a secret while the agent runs is redacted from the output read after
/// the change, and one removed meanwhile stays redacted for this run.
#[tokio::test]
async fn the_redactor_follows_secrets_changed_while_the_agent_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = Arc::new(SecretRegistry::new());
    registry.update(["old-secret-1234"]);
    let go = dir.path().join("go");
    let script = format!(
        "echo started; while [ ! -e '{go}' ]; do sleep 0.01; done; \
         printf 'new=brand-new-'; sleep 0.1; printf 'secret-5678\\n'; echo old=old-secret-1234",
        go = go.display()
    );
    let mut spec = sh(&script, dir.path());
    let log_path = spec.log_path.clone();
    spec.secrets = registry.lease();
    let running = spawn(spec).expect("spawn");
    let deadline = Instant::now() + DEADLINE;
    // The first line is in the log before the agent goes on: a line is not held back.
    while !std::fs::read_to_string(&log_path).is_ok_and(|l| l.contains("out started")) {
        assert!(
            Instant::now() < deadline,
            "the first line never reached the log"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    registry.update(["brand-new-secret-5678"]);
    std::fs::write(&go, "").expect("go");
    let finished = running.wait().await.expect("wait");
    let log = std::fs::read_to_string(&log_path).expect("log");
    assert_eq!(
        out_lines(&log, "out"),
        ["started", "new=[REDACTED]", "old=[REDACTED]"]
    );
    assert_eq!(finished.stdout, "started\nnew=[REDACTED]\nold=[REDACTED]\n");
    assert_eq!(registry.stats().leases, 0, "the run's lease ends with it");
}

#[tokio::test]
async fn dropping_a_running_agent_kills_its_group() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = sh("sleep 600 & echo $!; sleep 600", dir.path());
    let log_path = spec.log_path.clone();
    let running = spawn(spec).expect("spawn");
    let pgid = running.pid() as i32;
    let grandchild = first_pid_in_log(&log_path).await;
    assert!(group_alive(pgid));
    drop(running);
    eventually("the group to die", || !group_alive(pgid)).await;
    eventually("the grandchild to die", || !process_alive(grandchild)).await;
}

#[tokio::test]
async fn kill_marked_kills_exactly_the_marked_processes_of_this_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let scope = format!(
        "ORCHESTRATOR_SOCKET={}",
        dir.path().join("a.sock").display()
    );
    // (socket, run id, to be killed)
    let cases = [
        ("a.sock", "7", true),
        ("a.sock", "8", false),
        ("b.sock", "7", false),
    ];
    let mut agents = Vec::new();
    for (i, (socket, run, doomed)) in cases.into_iter().enumerate() {
        let mut s = sh(
            "sleep 600 & echo $!; sleep 600",
            &dir.path().join(i.to_string()),
        );
        std::fs::create_dir_all(&s.cwd).expect("cwd");
        let socket = dir.path().join(socket).display().to_string();
        s.env.push(("ORCHESTRATOR_SOCKET".into(), socket));
        s.env.push(("ORCHESTRATOR_RUN_ID".into(), run.into()));
        let log_path = s.log_path.clone();
        let running = spawn(s).expect("spawn");
        let grandchild = first_pid_in_log(&log_path).await;
        agents.push((running, grandchild, doomed));
    }
    let runs = std::collections::HashSet::from(["7".to_owned()]);
    // The leader and its sleeps (the shell may exec the last one itself).
    assert!(kill_marked(&scope, "ORCHESTRATOR_RUN_ID", &runs) >= 2);
    for (running, grandchild, doomed) in &agents {
        let pgid = running.pid() as i32;
        if *doomed {
            eventually("the marked grandchild to die", || {
                !process_alive(*grandchild)
            })
            .await;
            eventually("the marked group to die", || !group_alive(pgid)).await;
        } else {
            assert!(process_alive(*grandchild), "an unmarked process was killed");
            assert!(group_alive(pgid));
        }
    }
    let none = std::collections::HashSet::new();
    assert_eq!(kill_marked(&scope, "ORCHESTRATOR_RUN_ID", &none), 0);
}

#[test]
fn debug_shows_no_environment_values_or_prompt() {
    let dir = Path::new("/tmp");
    let mut spec = spec(&["agent", "--prompt", "do the secret thing"], dir);
    spec.env
        .push(("API_TOKEN".to_owned(), "hunter2".to_owned()));
    spec.stdin = Some(b"prompt with hunter2".to_vec());
    let shown = format!("{spec:?}");
    assert!(
        shown.contains("API_TOKEN") && shown.contains("agent"),
        "{shown}"
    );
    assert!(
        !shown.contains("hunter2") && !shown.contains("secret thing"),
        "{shown}"
    );
}

/// Writes a stream-json transcript for `cat` to print, so the tests need no quoting in `sh`.
fn transcript(dir: &Path, lines: &[&str]) -> String {
    let path = dir.join("transcript.jsonl");
    std::fs::write(&path, lines.join("\n") + "\n").expect("write transcript");
    path.display().to_string()
}

fn turn(id: &str, tool: &str) -> String {
    format!(
        r#"{{"type":"assistant","message":{{"id":"{id}","content":[{{"type":"tool_use","name":"{tool}"}}],"usage":{{"input_tokens":5,"output_tokens":2}}}}}}"#
    )
}

#[tokio::test]
async fn a_stream_json_run_is_parsed_past_the_log_cap_and_redacted_once_parsed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let filler = format!(
        r#"{{"type":"user","message":{{"content":"{}"}}}}"#,
        "x".repeat(4096)
    );
    let (t1, t2) = (turn("m1", "Bash"), turn("m2", "Edit"));
    // The secret holds a quote, so the JSON text carries it escaped: only the parse shows it.
    let result = r#"{"type":"result","subtype":"success","is_error":false,"result":"the key is s3\"cret","num_turns":2,"total_cost_usd":0.25,"usage":{"input_tokens":10,"output_tokens":4},"session_id":"abc"}"#;
    let file = transcript(dir.path(), &[&t1, &filler, &t2, result]);
    let mut spec = spec(&["cat", &file], dir.path());
    spec.stream_cap = 1024;
    spec.secrets = Secrets::fixed(Arc::new(Redactor::new(["s3\"cret"])));
    spec.stream = Some(Guards::default());
    let (f, log) = run(spec).await;
    assert_eq!(f.outcome, Outcome::Exited(0));
    assert!(f.truncated, "the log was capped");
    assert!(
        !log.contains("the key is"),
        "the result line is past the cap"
    );
    assert_eq!(f.stdout, "", "a stream-json run captures no raw stdout");
    let s = f.stream.expect("a summary");
    assert_eq!(s.result.as_deref(), Some("the key is [REDACTED]"));
    assert_eq!((s.turns, s.cost_usd), (2, Some(0.25)));
    assert_eq!((s.input_tokens, s.output_tokens), (Some(10), Some(4)));
    assert_eq!(s.session_id.as_deref(), Some("abc"));
    let tools: Vec<&str> = s.tools.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(tools, ["Bash", "Edit"]);
}

#[tokio::test]
async fn a_stream_json_run_over_its_guard_is_stopped_while_it_runs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (t1, t2, t3) = (turn("m1", "Bash"), turn("m2", "Bash"), turn("m3", "Bash"));
    let file = transcript(dir.path(), &[&t1, &t2, &t3]);
    let script = format!("cat {file}; exec sleep 3111");
    let mut spec = sh(&script, dir.path());
    spec.stream = Some(Guards {
        max_turns: Some(2),
        max_cost_usd: None,
    });
    let (f, log) = tokio::time::timeout(DEADLINE, run(spec))
        .await
        .expect("the guard stops the run long before the sleep ends");
    assert_eq!(f.outcome, Outcome::Stopped);
    assert_eq!(f.exit, Exit::Signal(15), "SIGTERM to the group");
    let s = f.stream.expect("a summary");
    assert_eq!(
        s.stopped.as_deref(),
        Some("stopped: 3 turns exceed maxTurns 2")
    );
    assert!(
        log.contains(r#""id":"m3""#),
        "the raw stream is logged: {log}"
    );
}

#[tokio::test]
async fn a_run_that_stays_silent_past_its_idle_timeout_is_stopped_and_one_that_talks_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut silent = sh("echo started; exec sleep 60", dir.path());
    silent.idle_timeout = Some(Duration::from_secs(1));
    let finished = spawn(silent).expect("spawn").wait().await.expect("wait");
    assert_eq!(finished.outcome, Outcome::IdleTimedOut { secs: 1 });
    assert_eq!(finished.stdout, "started\n");
    // Output resets the clock: a run that prints every 0.2 s outlives a 5 s idle limit.
    let mut talking = sh(
        "for i in 1 2 3 4 5 6 7 8 9 10; do echo $i; sleep 0.2; done",
        dir.path(),
    );
    talking.idle_timeout = Some(Duration::from_secs(5));
    talking.log_path = dir.path().join("logs/talking.log");
    let finished = spawn(talking).expect("spawn").wait().await.expect("wait");
    assert_eq!(finished.outcome, Outcome::Exited(0));
}
