//! RetentionActor (`retention`): removes finished tasks, with their step runs, events, payload
//! file and run logs (the task's directory under `<data-dir>/runs`), and returns the freed
//! database pages to the file system. What goes is decided by `domain::retention`:
//! - a trigger's `historyLimit` keeps exactly its newest N succeeded (and M failed or
//!   cancelled) tasks, checked each time one of its tasks finishes, so webhook triggers are
//!   pruned as surely as cron triggers;
//! - every other finished task goes once it finished longer ago than the daemon's
//!   `--task-retention-age`, or once its workflow has more than `--task-retention-count`
//!   newer finished tasks (checked when a task of the workflow finishes and at every pass);
//! - `task delete` and `task prune --older-than` remove what the operator names.
//!
//! The work is queued and done one batch per message (at most [`BATCH`] tasks in one short
//! transaction), so a webhook delivery waits for at most one batch's commit and a long prune
//! never holds the database. Rows go first, then their directories: a crash in between leaves
//! directories without a task, which the sweep at every start removes. Pending and running
//! tasks are never touched: every delete statement requires a finished task. Nor is the newest
//! task, so that no task id is ever reused (see `store/sqlite/retention.rs`).
//!
//! The periodic pass (every `--retention-interval`) is driven by a ticker task that sends
//! [`RetentionMsg::Tick`]; the actor's state aborts it when dropped.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ractor::{ActorProcessingErr, RpcReplyPort};
use serde_json::json;
use tokio::sync::watch;

use super::clock::Clock;
use super::runtime::{Addr, Behaviour, Message};
use crate::api::TaskState;
use crate::domain::retention::{Age, HistoryLimited, Policy, history_limit};
use crate::domain::snapshot::Snapshot;
use crate::store::{AgeScan, Deleted, StoreError, TaskStore};

/// Registry name of the retention actor.
pub const NAME: &str = "retention";

/// The most tasks one transaction deletes (with their step runs and events). Measured on a
/// 45,113-task trigger pruned to 10: 6 ms per batch on average, under 40 ms at worst on a
/// loaded two-core machine.
pub const BATCH: usize = 500;

/// Database pages one vacuum step returns to the file system (1 MiB of 4 KiB pages: a step
/// holds the write lock for about a millisecond).
const VACUUM_PAGES: u32 = 256;

/// How long after a task finishes its trigger's and workflow's limits are applied: the finishes
/// of a busy trigger within it share one transaction.
const COALESCE: Duration = Duration::from_millis(50);

/// How many history-limited triggers one step of the periodic pass checks.
const TRIGGERS_PER_STEP: usize = 64;

/// The retention the daemon runs with (its flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub policy: Policy,
    /// How often the periodic pass runs.
    pub interval: Duration,
}

impl Default for Retention {
    /// 30 days, 10,000 finished tasks per workflow, a pass every minute.
    fn default() -> Retention {
        Retention {
            policy: Policy::default(),
            interval: Duration::from_secs(60),
        }
    }
}

/// A task that just finished (from the task supervisor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finished {
    pub project: String,
    pub workflow: String,
    pub trigger: Option<String>,
}

/// Which tasks `task prune --older-than` removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneRequest {
    pub older_than: Age,
    /// Only this project's tasks (`None`: every project).
    pub project: Option<String>,
}

/// Why `task delete` or `task prune` did not remove what was asked.
#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error("task {0} not found (orchestrator task list shows the tasks)")]
    NotFound(u64),
    #[error(
        "task {id} is {}: only a finished task can be deleted; cancel it first (orchestrator task cancel {id})",
        .state.as_str()
    )]
    NotFinished { id: u64, state: TaskState },
    #[error(
        "task {0} is the newest task and is kept so that its id is never given to another task; it can be deleted once a newer task exists"
    )]
    Newest(u64),
    #[error("the task store failed: {0}")]
    Store(#[from] StoreError),
}

pub enum RetentionMsg {
    Finished(Finished),
    /// The periodic pass is due.
    Tick,
    /// Do the next batch of the queued work.
    Step,
    /// `task delete`.
    Delete(u64, RpcReplyPort<Result<(), RetentionError>>),
    /// `task prune --older-than`: answers how many tasks were removed.
    Prune(PruneRequest, RpcReplyPort<Result<u64, RetentionError>>),
}

impl Message for RetentionMsg {
    fn kind(&self) -> &'static str {
        match self {
            RetentionMsg::Finished(_) => "Finished",
            RetentionMsg::Tick => "Tick",
            RetentionMsg::Step => "Step",
            RetentionMsg::Delete(..) => "Delete",
            RetentionMsg::Prune(..) => "Prune",
        }
    }
}

pub struct RetentionArgs {
    pub store: Arc<dyn TaskStore>,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    /// `<data-dir>/runs`.
    pub runs_dir: PathBuf,
    pub retention: Retention,
    pub clock: Clock,
}

/// One piece of queued work; each step does one batch of the job at the queue's front.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Job {
    /// Remove directories under `runs/` whose task is gone (`ids[at..]` are still to check).
    Orphans { ids: Vec<u64>, at: usize },
    /// A trigger's `historyLimit`.
    Trigger { project: String, trigger: String },
    /// Every history-limited trigger (`keys[at..]` are still to check).
    Triggers {
        keys: Vec<(String, String)>,
        at: usize,
    },
    /// Find the workflows over the count.
    Counts,
    /// A workflow's count.
    Workflow { project: String, workflow: String },
    /// The age sweep, from task id `after` on.
    Age { after: u64 },
    /// Return free pages to the file system.
    Vacuum,
}

/// What a job step left to do.
enum Left {
    Done,
    /// The same job again.
    More(Job),
    /// Other jobs (the workflows a count found), after this one.
    Then(Vec<Job>),
}

pub struct RetentionActor;

pub struct RetentionState {
    args: RetentionArgs,
    queue: VecDeque<Job>,
    /// Trigger and workflow jobs in the queue (so a burst of finishes queues each once).
    queued: HashSet<Job>,
    /// A `Step` is in the mailbox.
    stepping: bool,
    /// Something was deleted since the last vacuum.
    vacuum_due: bool,
    /// At most how many counted finished tasks each workflow has, as far as this actor knows
    /// (see [`RetentionState::finished`]); forgotten at every pass.
    counts: HashMap<(String, String), u64>,
    ticker: tokio::task::JoinHandle<()>,
    removed_tasks: u64,
    removed_dirs: u64,
    /// Tasks removed since the last pass began (logged once per pass).
    removed_in_pass: u64,
    pass_started: Option<DateTime<Utc>>,
    last_pass: Option<DateTime<Utc>>,
    last_error: Option<String>,
}

impl Drop for RetentionState {
    fn drop(&mut self) {
        self.ticker.abort();
    }
}

impl RetentionState {
    fn snapshot(&self) -> Arc<Snapshot> {
        self.args.snapshots.borrow().clone()
    }

    fn policy(&self) -> Policy {
        self.args.retention.policy
    }

    /// Queues `job` (a trigger or workflow job only once) and makes sure a step will run.
    fn push(&mut self, me: &Addr<RetentionMsg>, job: Job) {
        self.enqueue(job);
        self.kick(me);
    }

    fn enqueue(&mut self, job: Job) {
        let dedupe = matches!(job, Job::Trigger { .. } | Job::Workflow { .. });
        if dedupe && !self.queued.insert(job.clone()) {
            return;
        }
        if !dedupe && self.queue.contains(&job) {
            return;
        }
        self.queue.push_back(job);
    }

    fn kick(&mut self, me: &Addr<RetentionMsg>) {
        if !self.stepping && !self.queue.is_empty() {
            self.stepping = me.cast(RetentionMsg::Step).is_ok();
        }
    }

    /// Like [`kick`](Self::kick), but the step runs after [`COALESCE`], so that the tasks of a
    /// busy trigger that finish meanwhile are pruned in one transaction, not one each.
    fn kick_soon(&mut self, me: &Addr<RetentionMsg>) {
        if !self.stepping && !self.queue.is_empty() {
            me.send_after(COALESCE, || RetentionMsg::Step);
            self.stepping = true;
        }
    }

    fn finished(&mut self, me: &Addr<RetentionMsg>, f: Finished) {
        if let Some(trigger) = f.trigger {
            let snapshot = self.snapshot();
            if history_limit(&snapshot, &f.project, &trigger).is_some() {
                self.enqueue(Job::Trigger {
                    project: f.project.clone(),
                    trigger,
                });
            }
        }
        // A workflow's count is checked when it may be over by more than 1% (at least one
        // task): the check reads every finished task of the workflow, so it is paid once per
        // `keep / 100` finishes, not on every one. The periodic pass brings every workflow back
        // to the count exactly.
        let keep = self.policy().max_count;
        let key = (f.project, f.workflow);
        let due = match self.counts.get_mut(&key) {
            Some(known) => {
                *known += 1;
                *known > keep + keep / 100
            }
            None => true,
        };
        if due {
            let (project, workflow) = key;
            self.enqueue(Job::Workflow { project, workflow });
        }
        self.kick_soon(me);
    }

    /// The periodic pass: every history limit, every workflow's count, the age sweep.
    fn tick(&mut self, me: &Addr<RetentionMsg>) {
        let snapshot = self.snapshot();
        let limited = HistoryLimited::of(&snapshot);
        let keys: Vec<(String, String)> = limited
            .succeeded
            .iter()
            .chain(&limited.failed)
            .filter_map(|k| k.split_once('/'))
            .map(|(p, t)| (p.to_owned(), t.to_owned()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if self.pass_started.is_none() {
            self.pass_started = Some(self.args.clock.now());
        }
        self.counts.clear();
        if !keys.is_empty() {
            self.push(me, Job::Triggers { keys, at: 0 });
        }
        self.push(me, Job::Counts);
        self.push(me, Job::Age { after: 0 });
    }

    /// Removes the run directories of deleted tasks.
    fn remove_dirs(&mut self, ids: &[u64]) {
        for id in ids {
            let dir = self.args.runs_dir.join(id.to_string());
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => self.removed_dirs += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot remove a deleted task's run logs")
                }
            }
        }
    }

    /// Records deleted tasks and removes their directories.
    fn removed(&mut self, ids: &[u64]) {
        if ids.is_empty() {
            return;
        }
        self.remove_dirs(ids);
        self.removed_tasks += ids.len() as u64;
        self.removed_in_pass += ids.len() as u64;
        self.vacuum_due = true;
        tracing::debug!(tasks = ids.len(), "retention removed finished tasks");
    }

    /// Does one batch of the job at the front of the queue.
    fn step(&mut self, me: &Addr<RetentionMsg>) {
        self.stepping = false;
        let Some(job) = self.queue.pop_front() else {
            return;
        };
        self.queued.remove(&job);
        match self.run(job) {
            Ok(Left::Done) => {}
            Ok(Left::More(job)) => {
                if matches!(job, Job::Trigger { .. } | Job::Workflow { .. }) {
                    self.queued.insert(job.clone());
                }
                self.queue.push_front(job);
            }
            Ok(Left::Then(jobs)) => {
                for job in jobs {
                    self.push(me, job);
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "retention could not remove old tasks; it tries again at the next pass");
                self.last_error = Some(e.to_string());
            }
        }
        if self.queue.is_empty() {
            if self.vacuum_due {
                self.vacuum_due = false;
                self.queue.push_back(Job::Vacuum);
            } else if let Some(started) = self.pass_started.take() {
                if self.removed_in_pass > 0 {
                    tracing::info!(
                        tasks = self.removed_in_pass,
                        "retention removed finished tasks and their run logs"
                    );
                }
                self.removed_in_pass = 0;
                self.last_pass = Some(started);
            }
        }
        self.kick(me);
    }

    fn run(&mut self, job: Job) -> Result<Left, StoreError> {
        let store = self.args.store.clone();
        match job {
            Job::Orphans { ids, at } => {
                let end = (at + BATCH).min(ids.len());
                let chunk = &ids[at..end];
                let alive: HashSet<u64> = store.existing(chunk)?.into_iter().collect();
                let gone: Vec<u64> = chunk
                    .iter()
                    .copied()
                    .filter(|id| !alive.contains(id))
                    .collect();
                self.remove_dirs(&gone);
                Ok(if end < ids.len() {
                    Left::More(Job::Orphans { ids, at: end })
                } else {
                    Left::Done
                })
            }
            Job::Trigger { project, trigger } => {
                let snapshot = self.snapshot();
                let Some((succeeded, failed)) = history_limit(&snapshot, &project, &trigger) else {
                    return Ok(Left::Done);
                };
                let ids = store.prune_trigger(&project, &trigger, succeeded, failed, BATCH)?;
                let full = ids.len() == BATCH;
                self.removed(&ids);
                Ok(if full {
                    Left::More(Job::Trigger { project, trigger })
                } else {
                    Left::Done
                })
            }
            Job::Triggers { keys, mut at } => {
                let snapshot = self.snapshot();
                let mut deleted = 0;
                let stop = (at + TRIGGERS_PER_STEP).min(keys.len());
                while at < stop && deleted < BATCH {
                    let (project, trigger) = &keys[at];
                    if let Some((s, f)) = history_limit(&snapshot, project, trigger) {
                        let ids = store.prune_trigger(project, trigger, s, f, BATCH - deleted)?;
                        deleted += ids.len();
                        self.removed(&ids);
                        if deleted == BATCH {
                            break; // This trigger may have more: look at it again.
                        }
                    }
                    at += 1;
                }
                Ok(if at < keys.len() {
                    Left::More(Job::Triggers { keys, at })
                } else {
                    Left::Done
                })
            }
            Job::Counts => {
                let limited = HistoryLimited::of(&self.snapshot());
                let over = store.over_count(self.policy().max_count, &limited)?;
                Ok(Left::Then(
                    over.into_iter()
                        .map(|(project, workflow)| Job::Workflow { project, workflow })
                        .collect(),
                ))
            }
            Job::Workflow { project, workflow } => {
                let limited = HistoryLimited::of(&self.snapshot());
                let keep = self.policy().max_count;
                let ids = store.prune_workflow(&project, &workflow, keep, &limited, BATCH)?;
                let full = ids.len() == BATCH;
                self.removed(&ids);
                Ok(if full {
                    Left::More(Job::Workflow { project, workflow })
                } else {
                    // At most `keep` now.
                    self.counts.insert((project, workflow), keep);
                    Left::Done
                })
            }
            Job::Age { after } => {
                let limited = HistoryLimited::of(&self.snapshot());
                let swept = store.prune_older(&AgeScan {
                    finished_before: self.args.clock.now() - self.policy().max_age.as_chrono(),
                    project: None,
                    limited: Some(&limited),
                    after,
                    batch: BATCH,
                })?;
                self.removed(&swept.removed);
                Ok(match swept.next {
                    Some(after) => Left::More(Job::Age { after }),
                    None => Left::Done,
                })
            }
            Job::Vacuum => {
                let left = store.reclaim(VACUUM_PAGES)?;
                Ok(if left > 0 {
                    Left::More(Job::Vacuum)
                } else {
                    Left::Done
                })
            }
        }
    }

    fn delete(&mut self, me: &Addr<RetentionMsg>, id: u64) -> Result<(), RetentionError> {
        match self.args.store.delete_finished(id)? {
            Deleted::Removed => {
                self.removed(&[id]);
                self.push_vacuum(me);
                tracing::info!(task = id, "task deleted");
                Ok(())
            }
            Deleted::NotFound => Err(RetentionError::NotFound(id)),
            Deleted::NotFinished(state) => Err(RetentionError::NotFinished { id, state }),
            Deleted::Newest => Err(RetentionError::Newest(id)),
        }
    }

    /// `task prune --older-than`: every finished task in scope that finished before the cut-off,
    /// whatever its trigger's `historyLimit`, batch by batch (other tasks of the runtime run
    /// between the batches).
    async fn prune(
        &mut self,
        me: &Addr<RetentionMsg>,
        req: &PruneRequest,
    ) -> Result<u64, RetentionError> {
        let cutoff = self.args.clock.now() - req.older_than.as_chrono();
        let mut after = 0;
        let mut removed = 0;
        loop {
            let swept = self.args.store.prune_older(&AgeScan {
                finished_before: cutoff,
                project: req.project.as_deref(),
                limited: None,
                after,
                batch: BATCH,
            })?;
            removed += swept.removed.len() as u64;
            self.removed(&swept.removed);
            match swept.next {
                Some(next) => after = next,
                None => break,
            }
            tokio::task::yield_now().await;
        }
        self.push_vacuum(me);
        tracing::info!(tasks = removed, older_than = %req.older_than, "tasks pruned by request");
        Ok(removed)
    }

    fn push_vacuum(&mut self, me: &Addr<RetentionMsg>) {
        if self.vacuum_due {
            self.vacuum_due = false;
            self.push(me, Job::Vacuum);
        }
    }
}

/// The task ids that have a directory under `runs_dir` (other entries are left alone).
fn task_dirs(runs_dir: &Path) -> Vec<u64> {
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return Vec::new();
    };
    let mut ids: Vec<u64> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect();
    ids.sort_unstable();
    ids
}

/// The bytes of the files under `dir` (run logs, prompts, payloads; symbolic links are not
/// followed), for `daemon status`.
pub fn disk_usage(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

impl Behaviour for RetentionActor {
    type Msg = RetentionMsg;
    type State = RetentionState;
    type Args = RetentionArgs;
    const TYPE: &'static str = "RetentionActor";

    async fn pre_start(
        &self,
        me: Addr<RetentionMsg>,
        args: RetentionArgs,
    ) -> Result<RetentionState, ActorProcessingErr> {
        let interval = args.retention.interval;
        let ticker = {
            let me = me.clone();
            // Not instrumented: a tick starts a pass of its own, in no earlier span.
            tokio::spawn(async move {
                let mut every = tokio::time::interval(interval);
                every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                every.tick().await; // The first tick is immediate; the start queues its pass.
                loop {
                    every.tick().await;
                    if me.cast(RetentionMsg::Tick).is_err() {
                        return;
                    }
                }
            })
        };
        let ids = task_dirs(&args.runs_dir);
        let mut state = RetentionState {
            args,
            queue: VecDeque::new(),
            queued: HashSet::new(),
            stepping: false,
            vacuum_due: false,
            counts: HashMap::new(),
            ticker,
            removed_tasks: 0,
            removed_dirs: 0,
            removed_in_pass: 0,
            pass_started: None,
            last_pass: None,
            last_error: None,
        };
        if !ids.is_empty() {
            state.push(&me, Job::Orphans { ids, at: 0 });
        }
        state.tick(&me);
        Ok(state)
    }

    async fn handle(
        &self,
        me: &Addr<RetentionMsg>,
        msg: RetentionMsg,
        state: &mut RetentionState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            RetentionMsg::Finished(f) => state.finished(me, f),
            RetentionMsg::Tick => state.tick(me),
            RetentionMsg::Step => state.step(me),
            RetentionMsg::Delete(id, reply) => {
                let _ = reply.send(state.delete(me, id));
            }
            RetentionMsg::Prune(req, reply) => {
                let _ = reply.send(state.prune(me, &req).await);
            }
        }
        Ok(())
    }

    fn inspect(&self, state: &RetentionState) -> serde_json::Value {
        let policy = state.policy();
        json!({
            "maxAge": policy.max_age.to_string(),
            "maxCount": policy.max_count,
            "intervalSeconds": state.args.retention.interval.as_secs(),
            "queued": state.queue.len(),
            "removedTasks": state.removed_tasks,
            "removedRunDirs": state.removed_dirs,
            "lastPass": state.last_pass.map(|t| t.to_rfc3339()),
            "lastError": state.last_error,
        })
    }
}

#[cfg(test)]
mod tests;
