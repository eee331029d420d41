//! What the task actors share: the store, the snapshots, where runs go, this node's id and how
//! many tasks it runs at once.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::domain::redact::SecretRegistry;
use crate::domain::snapshot::Snapshot;
use crate::store::TaskStore;

/// What the task actors share.
#[derive(Clone)]
pub struct TaskContext {
    pub store: Arc<dyn TaskStore>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// `<data-dir>/runs`: one directory per task with logs, prompt files and the payload.
    pub runs_dir: PathBuf,
    pub socket: PathBuf,
    /// `PATH HOME USER LANG TERM` as the daemon has them (PATH with the daemon's own directory
    /// first, so agents find the `orchestrator` CLI).
    pub base_env: Arc<Vec<(String, String)>>,
    /// SIGTERM → SIGKILL grace for agents.
    pub grace: Duration,
    /// Bytes of each output stream written to a run log.
    pub stream_cap: u64,
    /// Bytes of stdout kept for `{prev_stdout}` / `{<step>_output}`.
    pub capture_cap: usize,
    /// The daemon's live secret set; each step run redacts its output with a lease on it.
    pub secrets: Arc<SecretRegistry>,
    /// How many tasks this node runs now (its heartbeat reports it).
    pub running: Arc<std::sync::atomic::AtomicUsize>,
    /// This node's id: recorded on the tasks it claims (one another node claimed first halts).
    pub node: String,
    /// The most tasks this node runs at once (`--max-running`).
    pub max_running: usize,
}

impl TaskContext {
    pub(super) fn task_dir(&self, id: u64) -> PathBuf {
        self.runs_dir.join(id.to_string())
    }
}
