//! Two daemons in one test process: `daemon::run` with the data dirs and listeners the test
//! opens and binds, each daemon spawning its actors in a registry of its own. Both hold `root`,
//! `tasks` and `workflow/1` at the same time, and neither sees the other's.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use orchestrator::daemon::{
    self, AdminBind, Config, DataDir, Listeners, WebhookBind, WebhookLimits,
};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How long a step of the test may take (it takes milliseconds).
const PATIENCE: Duration = Duration::from_secs(30);

struct InProcess {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    run: Option<JoinHandle<anyhow::Result<()>>>,
}

impl InProcess {
    /// Opens a data dir in a fresh temp dir, binds the socket there and the webhook server on
    /// an ephemeral loopback port, and runs the daemon on this runtime until [`InProcess::stop`].
    fn start() -> InProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = Config {
            data_dir: dir.path().join("data"),
            socket: None,
            webhook_bind: WebhookBind::Addr("127.0.0.1:0".parse().expect("address")),
            admin_bind: AdminBind::Disabled,
            trigger_resident_window: None,
            webhook_limits: WebhookLimits::default(),
            retention: Default::default(),
            store: orchestrator::store::Backend::Sqlite,
            secret_key_file: None,
            node_id: None,
            node_ttl: daemon::NODE_TTL,
            max_running: None,
        };
        let data = DataDir::open(&config.data_dir).expect("data dir");
        let listeners = Listeners::bind(&config, &data).expect("listeners");
        let socket = listeners.socket.clone();
        let (stop, stopped) = oneshot::channel::<()>();
        let run = tokio::spawn(daemon::run(config, data, listeners, async {
            let _ = stopped.await;
        }));
        let http = orchestrator::rotation::http_client()
            .unix_socket(socket.clone())
            .timeout(PATIENCE)
            .build()
            .expect("client");
        InProcess {
            _dir: dir,
            socket,
            http,
            stop: Some(stop),
            run: Some(run),
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> (u16, Value) {
        let resp = req.send().await.expect("the daemon answers");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("http://daemon{path}")))
            .await
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(format!("http://daemon{path}")).json(&body))
            .await
    }

    /// Applies `text` (YAML documents of project `default`).
    async fn apply(&self, text: &str, base: &Path) {
        let body = json!({"sources": [{
            "name": "test.yaml",
            "baseDir": base.display().to_string(),
            "text": text,
        }]});
        let (status, answer) = self.post("/v1/apply", body).await;
        assert_eq!(status, 200, "{answer}");
    }

    /// Waits until task `id` is in `state`.
    async fn until_task(&self, id: u64, state: &str) -> Value {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let (status, task) = self.get(&format!("/v1/tasks/{id}")).await;
            assert_eq!(status, 200, "{task}");
            if task["task"]["state"] == state {
                return task;
            }
            assert!(Instant::now() < deadline, "task {id} never {state}: {task}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the daemon as SIGTERM would and returns what `run` returned.
    async fn stop(&mut self) -> anyhow::Result<()> {
        let _ = self.stop.take().expect("running").send(());
        let run = self.run.take().expect("running");
        tokio::time::timeout(PATIENCE, run)
            .await
            .expect("the daemon stops")
            .expect("the daemon task did not panic")
    }
}

/// A Workspace and a Workflow `name` whose one step sleeps until it is cancelled.
fn manifests(ws: &Path, name: &str) -> String {
    format!(
        "apiVersion: orchestrator.dev/v2\nkind: Workspace\nmetadata: {{name: default}}\nspec: {{root_path: {ws:?}}}\n---\napiVersion: orchestrator.dev/v2\nkind: Workflow\nmetadata: {{name: {name}}}\nspec:\n  steps: [{{id: wait, command: \"sleep 60\"}}]\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_run_side_by_side_in_one_process() {
    let mut a = InProcess::start();
    let mut b = InProcess::start();
    let ws = tempfile::tempdir().expect("workspace");
    a.apply(&manifests(ws.path(), "alpha"), ws.path()).await;
    b.apply(&manifests(ws.path(), "beta"), ws.path()).await;

    // Each daemon numbers its tasks from 1: both run `workflow/1` at once.
    for (d, workflow) in [(&a, "alpha"), (&b, "beta")] {
        let (status, task) = d.post("/v1/tasks", json!({"workflow": workflow})).await;
        assert_eq!(status, 200, "{task}");
        assert_eq!(task["id"], 1, "{task}");
    }
    for (d, workflow) in [(&a, "alpha"), (&b, "beta")] {
        d.until_task(1, "running").await;
        let (status, inspect) = d.get("/v1/actors/workflow/1/inspect").await;
        assert_eq!(status, 200, "{inspect}");
        assert_eq!(inspect["state"]["workflow"], workflow, "{inspect}");
        let (status, tree) = d.get("/v1/actors").await;
        assert_eq!(status, 200, "{tree}");
        assert_eq!(tree["name"], "root", "{tree}");
        let tasks = tree["children"]
            .as_array()
            .and_then(|c| c.iter().find(|n| n["name"] == "tasks"))
            .unwrap_or_else(|| panic!("no tasks actor in {tree}"));
        let names: Vec<&Value> = tasks["children"]
            .as_array()
            .map(|c| c.iter().map(|n| &n["name"]).collect())
            .unwrap_or_default();
        assert_eq!(names, [&json!("workflow/1")], "{tree}");
    }

    // Cancelling in one leaves the other's task running.
    let (status, answer) = a.post("/v1/tasks/1/cancel", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    a.until_task(1, "cancelled").await;
    let task = b.until_task(1, "running").await;
    assert_eq!(task["task"]["workflow"], "beta", "{task}");

    // Killing an actor in one restarts it there and leaves the other's alone.
    let (status, answer) = b.post("/v1/actors/secret-store/kill", json!({})).await;
    assert_eq!(status, 200, "{answer}");
    let deadline = Instant::now() + PATIENCE;
    loop {
        let (status, inspect) = b.get("/v1/actors/secret-store/inspect").await;
        if status == 200 && inspect["stats"]["restarts"] == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "never restarted: {inspect}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, inspect) = a.get("/v1/actors/secret-store/inspect").await;
    assert_eq!(status, 200, "{inspect}");
    assert_eq!(inspect["stats"]["restarts"], 0, "{inspect}");

    for d in [&mut a, &mut b] {
        d.stop().await.expect("a clean shutdown");
        assert!(!d.socket.exists(), "{} left behind", d.socket.display());
    }
}
