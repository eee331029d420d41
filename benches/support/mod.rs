//! What the end-to-end benches share: a release-built daemon on a temporary data dir (webhooks
//! on 127.0.0.1 port 0), the CLI, and process statistics from `/proc`.

#![allow(dead_code)]

pub mod load;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub struct Daemon {
    pub child: Child,
    pub socket: PathBuf,
    pub webhook: Option<String>,
    pub dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SIGTERM first so that running agents are stopped too.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        for _ in 0..400 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    pub fn start() -> Daemon {
        Self::start_with(&[])
    }

    /// Starts a daemon with extra flags.
    pub fn start_with(extra: &[&str]) -> Daemon {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let mut child = Command::new(env!("CARGO_BIN_EXE_orchestratord"))
            .arg("--data-dir")
            .arg(&data)
            .args([
                "--webhook-bind",
                "127.0.0.1:0",
                "--admin-bind",
                "127.0.0.1:0",
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start daemon");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("ready line");
        assert!(line.starts_with("orchestratord ready"), "{line}");
        let webhook = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("webhook="))
            .map(str::to_owned);
        Daemon {
            child,
            socket: data.join("orchestrator.sock"),
            webhook,
            dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Runs the CLI and returns stdout; panics on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
            .arg("--socket")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("run cli");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Applies manifest text through the CLI's stdin.
    pub fn apply(&self, text: &str) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
            .arg("--socket")
            .arg(&self.socket)
            .args(["apply", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("run cli");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("write");
        assert!(child.wait().expect("wait").success());
    }

    /// A directory inside the daemon's temporary dir.
    pub fn path(&self, name: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::create_dir_all(&p).expect("mkdir");
        p
    }
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        })
        .unwrap_or(0)
}

/// The median of some durations, in milliseconds.
pub fn median_ms(mut v: Vec<std::time::Duration>) -> f64 {
    v.sort();
    v.get(v.len() / 2).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

pub fn percentile_ms(mut v: Vec<std::time::Duration>, p: f64) -> f64 {
    v.sort();
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i].as_secs_f64() * 1000.0
}

pub fn workspace_manifest(root: &Path) -> String {
    format!(
        "apiVersion: orchestrator.dev/v2\nkind: Workspace\nmetadata: {{name: default}}\nspec: {{root_path: \"{}\"}}\n",
        root.display()
    )
}

/// The value of the environment variable `name` as a number, or `default`.
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A workspace at `root`, a SecretStore `hooks` holding `secret` as `github`, a workflow `quick`
/// whose one step is `true`, and a GitHub webhook trigger `hook` starting it
/// (`concurrencyPolicy: Allow`, `historyLimit: {successful: 10, failed: 10}`).
pub fn hook_manifests(root: &Path, secret: &str) -> String {
    format!(
        "{}---\napiVersion: orchestrator.dev/v2\nkind: SecretStore\nmetadata: {{name: hooks}}\nspec: {{data: {{github: \"{secret}\"}}}}\n---\napiVersion: orchestrator.dev/v2\nkind: Workflow\nmetadata: {{name: quick}}\nspec:\n  max_parallel: 64\n  steps: [{{id: s, command: \"true\"}}]\n---\napiVersion: orchestrator.dev/v2\nkind: Trigger\nmetadata: {{name: hook}}\nspec:\n  event:\n    source: webhook\n    webhook: {{secret: {{fromRef: hooks}}, scheme: github}}\n  action: {{workflow: quick, workspace: default}}\n  concurrencyPolicy: Allow\n  historyLimit: {{successful: 10, failed: 10}}\n",
        workspace_manifest(root)
    )
}

/// A POST of `body` to `url`, signed the GitHub way with `secret` as delivery `id`.
pub fn github_delivery(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    body: &[u8],
    id: &str,
) -> reqwest::RequestBuilder {
    use orchestrator::domain::signature::{Scheme, sign};
    let mut req = client.post(url).body(body.to_vec());
    for (k, v) in sign(Scheme::Github, None, secret.as_bytes(), body, 0, id) {
        req = req.header(k, v);
    }
    req
}
