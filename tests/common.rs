//! The test harness: [`TestDaemon`] runs the real `orchestratord` binary on a temporary data dir
//! with the webhook server on 127.0.0.1 port 0, waits for its ready line, and runs the real
//! `orchestrator` CLI against it. Every wait is a poll with a deadline; nothing sleeps for a
//! fixed time.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const DAEMON: &str = env!("CARGO_BIN_EXE_orchestratord");
pub const CLI: &str = env!("CARGO_BIN_EXE_orchestrator");

/// How long the daemon may take to print its ready line.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

pub struct TestDaemon {
    pub dir: tempfile::TempDir,
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    pub webhook: Option<SocketAddr>,
    /// The admin listener (`/metrics`) the ready line reports.
    pub admin: Option<SocketAddr>,
    /// The last ready line the daemon printed.
    pub ready_line: String,
    pub log_path: PathBuf,
    child: Option<Child>,
    pub extra_args: Vec<String>,
    /// A program the daemon is started through (`sh -c 'ulimit …; exec "$@"'`), if any.
    pub wrapper: Vec<String>,
}

/// The result of one CLI run.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "expected success\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        &self.stdout
    }

    /// Asserts exit status 1 and returns stderr.
    #[track_caller]
    pub fn fails(&self) -> &str {
        assert_eq!(
            self.code, 1,
            "expected exit 1\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        &self.stderr
    }

    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok())
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

impl TestDaemon {
    /// Starts a daemon on a fresh data dir.
    pub fn start() -> TestDaemon {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> TestDaemon {
        Self::start_wrapped(&[], extra)
    }

    /// Starts the daemon through `wrapper` (a program and its arguments, the daemon's path and
    /// arguments follow).
    pub fn start_wrapped(wrapper: &[&str], extra: &[&str]) -> TestDaemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let data_dir = dir.path().join("data");
        let mut d = TestDaemon {
            socket: data_dir.join("orchestrator.sock"),
            log_path: dir.path().join("daemon.log"),
            data_dir,
            dir,
            webhook: None,
            admin: None,
            ready_line: String::new(),
            child: None,
            extra_args: extra.iter().map(|s| (*s).to_owned()).collect(),
            wrapper: wrapper.iter().map(|s| (*s).to_owned()).collect(),
        };
        d.spawn();
        d
    }

    /// Starts the daemon process and waits for its ready line.
    pub fn spawn(&mut self) {
        let (child, ready) = self.spawn_raw();
        let line = ready
            .unwrap_or_else(|e| panic!("daemon did not become ready: {e}\nlog:\n{}", self.log()));
        self.webhook = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("webhook="))
            .and_then(|a| a.parse().ok());
        self.admin = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("admin="))
            .and_then(|a| a.parse().ok());
        self.ready_line = line;
        self.child = Some(child);
    }

    /// Starts a daemon on this data dir and returns the child and its ready line (or why not).
    pub fn spawn_raw(&self) -> (Child, Result<String, String>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("log file");
        let mut cmd = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(DAEMON);
                c
            }
            None => Command::new(DAEMON),
        };
        cmd.arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--webhook-bind")
            .arg("127.0.0.1:0")
            .args(&self.extra_args)
            .env("RUST_LOG", "debug")
            .env_remove("ORCHESTRATOR_SOCKET")
            .env_remove("ORCHESTRATOR_DATA_DIR")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log));
        // Tests start many daemons at once: never the default admin port, unless the test
        // names its own.
        if !self
            .extra_args
            .iter()
            .any(|a| a.starts_with("--admin-bind"))
        {
            cmd.args(["--admin-bind", "127.0.0.1:0"]);
        }
        let mut child = cmd.spawn().expect("spawn orchestratord");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the daemon never blocks on a full pipe.
            for _ in lines {}
        });
        let ready = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(line) if line.starts_with("orchestratord ready") => Ok(line),
            Ok(other) => Err(format!("unexpected first line {other:?}")),
            Err(_) => Err("no ready line (the daemon exited or hung)".to_owned()),
        };
        (child, ready)
    }

    /// Runs the CLI against this daemon.
    pub fn cli(&self, args: &[&str]) -> Run {
        self.cli_in(args, None, self.dir.path())
    }

    /// Runs the CLI with `input` on stdin.
    pub fn cli_stdin(&self, args: &[&str], input: &str) -> Run {
        self.cli_in(args, Some(input), self.dir.path())
    }

    pub fn cli_in(&self, args: &[&str], input: Option<&str>, cwd: &Path) -> Run {
        let mut cmd = Command::new(CLI);
        cmd.arg("--socket")
            .arg(&self.socket)
            .args(args)
            .current_dir(cwd)
            .env_remove("ORCHESTRATOR_SOCKET")
            .env_remove("ORCHESTRATOR_PROJECT")
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn orchestrator");
        if let Some(input) = input {
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(input.as_bytes()).expect("write stdin");
        }
        Run::from(child.wait_with_output().expect("wait orchestrator"))
    }

    /// Writes `text` to a file in the test dir and returns its path.
    /// `task show ID -o json`.
    pub fn task(&self, id: u64) -> serde_json::Value {
        self.cli(&["task", "show", &id.to_string(), "-o", "json"])
            .json()
    }

    /// `task show ID -o json` once the task has ended (waits up to 60 s).
    pub fn finished_task(&self, id: u64) -> serde_json::Value {
        eventually(
            Duration::from_secs(60),
            &format!("task {id} to end"),
            || {
                let t = self.task(id);
                let state = t["task"]["state"].as_str().unwrap_or("").to_owned();
                matches!(state.as_str(), "succeeded" | "failed" | "cancelled").then_some(t)
            },
        )
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&path, text).expect("write manifest");
        path
    }

    /// Applies `text` (written to a file) and asserts success.
    #[track_caller]
    pub fn apply(&self, text: &str) -> String {
        let path = self.write("apply.yaml", text);
        self.cli(&["apply", "-f", path.to_str().expect("utf-8 path")])
            .ok()
            .to_owned()
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Takes the daemon process (to wait for it exiting on its own).
    pub fn take_child(&mut self) -> Child {
        self.child.take().expect("daemon running")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).expect("daemon running")
    }

    /// SIGKILL, no chance to clean up.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit status (with a deadline).
    pub fn terminate(&mut self) -> i32 {
        let mut c = self.child.take().expect("daemon running");
        signal(c.id(), libc_sigterm());
        wait_child(&mut c, Duration::from_secs(30))
    }

    /// The tests' workspace directory, `<tempdir>/ws` (created).
    pub fn workspace_dir(&self) -> PathBuf {
        let ws = self.dir.path().join("ws");
        std::fs::create_dir_all(&ws).expect("workspace dir");
        ws
    }

    /// The `default` Workspace document, rooted at [`workspace_dir`](Self::workspace_dir).
    pub fn workspace(&self) -> String {
        format!(
            "apiVersion: orchestrator.dev/v2\nkind: Workspace\nmetadata: {{name: default}}\nspec: {{root_path: \"{}\"}}\n",
            self.workspace_dir().display()
        )
    }

    /// Names of the running actors, from the supervision tree of `orchestrator actors`.
    pub fn actor_names(&self) -> Vec<String> {
        fn walk(node: &serde_json::Value, out: &mut Vec<String>) {
            if let Some(n) = node["name"].as_str() {
                out.push(n.to_owned());
            }
            for c in node["children"].as_array().into_iter().flatten() {
                walk(c, out);
            }
        }
        let mut out = Vec::new();
        walk(&self.cli(&["actors", "-o", "json"]).json(), &mut out);
        out
    }

    /// Restarts the daemon on the same data dir.
    pub fn restart(&mut self) {
        if self.child.is_some() {
            self.terminate();
        }
        self.spawn();
    }
}

impl Drop for TestDaemon {
    /// A graceful stop, so that a failing test leaves no agent processes behind.
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            signal(c.id(), libc_sigterm());
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn libc_sigterm() -> i32 {
    15
}

/// Sends `sig` to `pid` through the `kill` program (keeps the tests free of unsafe code).
pub fn signal(pid: u32, sig: i32) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status();
}

/// Waits for a child with a deadline; kills it when the deadline passes.
pub fn wait_child(c: &mut Child, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = c.try_wait() {
            return status.code().unwrap_or(-1);
        }
        if Instant::now() > deadline {
            let _ = c.kill();
            let _ = c.wait();
            panic!("process {} did not exit within {limit:?}", c.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `f` until it returns `Some`, or panics with `what` after `limit`.
#[track_caller]
pub fn eventually<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The repository's `manifests/` directory.
pub fn manifests_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests")
}

/// A minimal HTTP/1.1 exchange over TCP: the request is written exactly as given (so tests can
/// send malformed ones), the connection closed by `Connection: close`, and the status and body
/// returned. `None` when the server closed the connection without answering.
pub fn http_raw(addr: SocketAddr, request: &[u8]) -> Option<(u16, String)> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    s.set_write_timeout(Some(Duration::from_secs(10))).ok()?;
    // A server may answer (413) before the whole body is sent and close: ignore write errors.
    let _ = s.write_all(request);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    // Chunked answers: keep only the JSON, which is what the tests look at.
    let body = match (body.find('{'), body.rfind('}')) {
        (Some(a), Some(b)) if b >= a => body[a..=b].to_owned(),
        _ => body,
    };
    Some((status, body))
}

/// A well-formed POST with the given headers and body.
pub fn post(
    addr: SocketAddr,
    path: &str,
    headers: &[(String, String)],
    body: &[u8],
) -> (u16, String) {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    http_raw(addr, &bytes).unwrap_or_else(|| panic!("no answer to POST {path}"))
}

/// A platform that lives in files, for `command` rotation providers in tests: its secret is the
/// file `secret` (the provider's set program writes it), and whenever the file `ping` appears
/// (its test program creates it) the platform removes it and sends a delivery signed with its
/// secret to the daemon's webhook `path`, from outside the daemon, as a platform does — a real
/// delivery, or a dry run (`X-Orchestrator-Dry-Run: 1`) while [`FilePlatform::dry_runs`] is set.
/// The answers' statuses are kept in `answers`. It stops when dropped.
pub struct FilePlatform {
    pub dry_runs: std::sync::Arc<std::sync::atomic::AtomicBool>,
    pub answers: std::sync::Arc<std::sync::Mutex<Vec<u16>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl FilePlatform {
    pub fn start(
        secret: PathBuf,
        ping: PathBuf,
        addr: SocketAddr,
        path: &str,
        scheme: orchestrator::domain::signature::Scheme,
    ) -> FilePlatform {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let dry_runs = Arc::new(AtomicBool::new(false));
        let answers = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (dry_runs, answers, stop, path) = (
                dry_runs.clone(),
                answers.clone(),
                stop.clone(),
                path.to_owned(),
            );
            std::thread::spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    if std::fs::remove_file(&ping).is_ok() {
                        n += 1;
                        let value = std::fs::read_to_string(&secret).unwrap_or_default();
                        let body = format!(r#"{{"platform": "ping", "n": {n}}}"#);
                        let now = chrono::Utc::now();
                        let mut h = orchestrator::domain::signature::sign(
                            scheme,
                            None,
                            value.as_bytes(),
                            body.as_bytes(),
                            now.timestamp(),
                            &format!("platform-{n}-{}", now.timestamp_nanos_opt().unwrap_or(0)),
                        );
                        h.push(("Content-Type".into(), "application/json".into()));
                        if dry_runs.load(Ordering::Relaxed) {
                            h.push(("X-Orchestrator-Dry-Run".into(), "1".into()));
                        }
                        let (status, _) = post(addr, &path, &h, body.as_bytes());
                        answers.lock().expect("answers").push(status);
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
            })
        };
        FilePlatform {
            dry_runs,
            answers,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FilePlatform {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
