//! ClusterActor (`cluster`): this daemon as a node. Once a second it writes its heartbeat
//! (with the snapshot revision it has published) and takes or renews the leader lease; it
//! publishes whether this node leads on a `watch` channel that the trigger supervisor follows —
//! only the leader runs the cron triggers.
//!
//! Leadership is held for less than the lease: the node counts its lease from *before* the
//! renewal it sent, and gives leadership up one [`MARGIN`] before that runs out when renewals
//! fail (the database is unreachable, or this process was stopped). By the time another node
//! may take the expired lease, this one has stopped firing; and a fire it still attempts is
//! refused by the store, which checks the lease's fencing token in the fire's transaction.
//!
//! The leader also fails the running tasks of a node that died (its heartbeat older than its
//! TTL, and it did not stop cleanly) with reason `interrupted: node X stopped heartbeating`;
//! the dead node kills their process groups when it comes back (the task supervisor's crash
//! recovery). The dead node's queue was in its memory: the leader's task supervisor then takes
//! up the pending tasks that no node has started.
//!
//! Every node runs, every [`ClusterArgs::resume`]'s period, a pass the daemon gives it: the one
//! that takes up the staged rotations of nodes that died (`rotation::resume_all`, which claims
//! each rotation's row before it drives it).
//!
//! On SQLite there is one node (the data dir's lock), and it always leads.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ractor::ActorProcessingErr;
use serde_json::json;
use tokio::sync::watch;

use super::clock::Clock;
use super::runtime::{Addr, Behaviour, Message};
use super::task_supervisor::{TASKS, TaskSupMsg};
use crate::domain::snapshot::Snapshot;
use crate::store::TaskStore;
use crate::store::cluster::{Beat, ClusterStore, FORGET_AFTER, Fence, LEADER, NodeRecord};

/// Registry name of the cluster actor.
pub const NAME: &str = "cluster";

/// The most a node that cannot renew its lease gives up before the lease runs out.
pub const MARGIN: Duration = Duration::from_secs(2);

/// Between two heartbeats.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// A node id that a live daemon on another host holds.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(
        "node id {node:?} is in use by a live daemon on host {host} (last heartbeat {at}): give each daemon its own --node-id"
    )]
    Taken {
        node: String,
        host: String,
        at: String,
    },
    #[error("cannot join the cluster: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Claims this node's id at start and takes the leader lease if it is free: the leadership the
/// actors start with.
pub fn join(store: &dyn ClusterStore, beat: &Beat) -> Result<Option<Leader>, JoinError> {
    let started = Instant::now();
    let now = chrono::Utc::now();
    if let crate::store::Joined::Taken { host, heartbeat_at } = store.join(beat, now)? {
        return Err(JoinError::Taken {
            node: beat.node.clone(),
            host,
            at: heartbeat_at.to_rfc3339(),
        });
    }
    let token = store.acquire(LEADER, &beat.node, beat.ttl, now)?;
    Ok(token.map(|token| Leader {
        fence: Fence {
            holder: beat.node.clone(),
            token,
        },
        until: started + beat.ttl.saturating_sub(margin(beat.ttl)),
    }))
}

/// Leaves the cluster at shutdown: releases the lease `lead` holds and marks the node stopped.
/// Failures are logged: the lease and the heartbeat expire on their own.
pub fn leave(store: &dyn ClusterStore, beat: &Beat, lead: Option<&Leader>) {
    let now = chrono::Utc::now();
    if let Some(l) = lead
        && let Err(e) = store.release(LEADER, &l.fence, now)
    {
        tracing::warn!(error = %e, "cannot release the leader lease; another node takes it when it expires");
    }
    if let Err(e) = store.leave(&beat.node, &beat.instance, now) {
        tracing::warn!(error = %e, "cannot mark this node stopped; it counts as dead after its TTL");
    }
}

/// The reason a task fails with when its node died while it ran.
pub fn dead_node_reason(node: &str) -> String {
    format!("interrupted: node {node} stopped heartbeating")
}

/// Heartbeats between two passes that forget long-gone nodes.
const FORGET_EVERY: u64 = 600;

/// This node's leadership: the lease's token and when this node stops counting on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leader {
    pub fence: Fence,
    /// Leadership ends here unless a renewal moves it on.
    pub until: Instant,
}

impl Leader {
    /// Whether this node may still act as the leader.
    pub fn holds(&self) -> bool {
        Instant::now() < self.until
    }
}

/// Whether this node leads: `Some` while it holds the lease.
pub type Leadership = watch::Receiver<Option<Leader>>;

/// For a node that leads for good (tests of the trigger actors without a ClusterActor): takes
/// the lease for a year and returns a leadership that never changes.
pub fn lead_alone(store: &dyn ClusterStore, node: &str) -> crate::store::Result<Leadership> {
    let year = Duration::from_secs(365 * 24 * 3600);
    let token = store
        .acquire(LEADER, node, year, chrono::Utc::now())?
        .ok_or(crate::store::StoreError::Fenced)?;
    let lead = Leader {
        fence: Fence {
            holder: node.to_owned(),
            token,
        },
        until: Instant::now() + year,
    };
    Ok(watch::channel(Some(lead)).1)
}

/// How long before its lease runs out a node that cannot renew it stops leading: a third of
/// the TTL, at most [`MARGIN`].
pub fn margin(ttl: Duration) -> Duration {
    (ttl / 3).min(MARGIN)
}

pub struct ClusterArgs {
    pub store: Arc<dyn ClusterStore>,
    /// What the heartbeat says of this node (its revision is filled in on each beat).
    pub beat: Beat,
    pub snapshots: watch::Receiver<Arc<Snapshot>>,
    pub leader: Arc<watch::Sender<Option<Leader>>>,
    /// Between two heartbeats (one second).
    pub interval: Duration,
    /// How many tasks this node runs (the task supervisor keeps it).
    pub running: Arc<std::sync::atomic::AtomicUsize>,
    /// Where the leader fails the running tasks of dead nodes.
    pub tasks: Arc<dyn TaskStore>,
    pub clock: Clock,
    /// A pass run every so often while this node holds its id (it spawns its own work): the
    /// daemon's resumes the staged rotations of nodes that died.
    pub resume: Option<(Duration, Pass)>,
}

/// A periodic pass of [`ClusterArgs::resume`].
pub type Pass = Arc<dyn Fn() + Send + Sync>;

pub enum ClusterMsg {
    /// The heartbeat and lease renewal, once a second.
    Beat,
    /// A new snapshot was published: the heartbeat reports its revision at once, so that an
    /// apply on another node sees this one caught up without waiting for the next second.
    Published,
}

impl Message for ClusterMsg {
    fn kind(&self) -> &'static str {
        match self {
            ClusterMsg::Beat => "Beat",
            ClusterMsg::Published => "Published",
        }
    }
}

pub struct ClusterActor;

pub struct ClusterState {
    args: ClusterArgs,
    beats: u64,
    failures: u64,
    /// The id was taken by another instance: this node stopped acting as it.
    displaced: bool,
    last_error: Option<String>,
    timer: Option<tokio::task::JoinHandle<()>>,
    watcher: tokio::task::JoinHandle<()>,
    /// Dead nodes (id, instance, last heartbeat) whose tasks this leader has failed already.
    swept: HashSet<(String, String, DateTime<Utc>)>,
    /// Tasks failed because their node died, since this actor started.
    failed_tasks: u64,
}

impl Drop for ClusterState {
    fn drop(&mut self) {
        if let Some(t) = self.timer.take() {
            t.abort();
        }
        self.watcher.abort();
        // A failed actor leads no more (its successor takes the lease again at once).
        self.args.leader.send_if_modified(|l| l.take().is_some());
    }
}

impl ClusterState {
    fn beat(&mut self, me: &Addr<ClusterMsg>) {
        let started = Instant::now();
        let now = self.args.clock.now();
        self.args.beat.revision = self.args.snapshots.borrow().revision;
        self.args.beat.running =
            self.args.running.load(std::sync::atomic::Ordering::Relaxed) as u64;
        let store = self.args.store.clone();
        let node = self.args.beat.node.clone();
        let ttl = self.args.beat.ttl;
        let result = if self.displaced {
            Ok(None)
        } else {
            store.heartbeat(&self.args.beat, now).and_then(|ours| {
                if !ours {
                    tracing::error!(
                        node = %node,
                        "another daemon took this node id; this one stops leading and running cron triggers: give each daemon its own --node-id"
                    );
                    self.displaced = true;
                    return Ok(None);
                }
                store.acquire(LEADER, &node, ttl, now)
            })
        };
        match result {
            Ok(token) => {
                self.last_error = None;
                let lead = token.map(|token| Leader {
                    fence: Fence {
                        holder: node.clone(),
                        token,
                    },
                    until: started + ttl.saturating_sub(margin(ttl)),
                });
                let leads = lead.is_some();
                self.publish(lead);
                if leads {
                    self.sweep(me, now);
                }
            }
            Err(e) => {
                self.failures += 1;
                let shown = e.to_string();
                if self.last_error.as_deref() != Some(shown.as_str()) {
                    tracing::warn!(error = %shown, "cannot write this node's heartbeat; retrying every second");
                    self.last_error = Some(shown);
                }
                // Leadership runs out on its own `until`; drop it once that has passed.
                let still = self
                    .args
                    .leader
                    .borrow()
                    .as_ref()
                    .is_some_and(Leader::holds);
                if !still {
                    self.publish(None);
                }
            }
        }
        self.beats += 1;
        if let Some((every, pass)) = &self.args.resume
            && !self.displaced
        {
            let beats = (every.as_millis() / self.args.interval.as_millis().max(1)).max(1);
            if u128::from(self.beats) % beats == 0 {
                pass();
            }
        }
        if self.beats % FORGET_EVERY == 1
            && let Ok(age) = chrono::Duration::from_std(FORGET_AFTER)
            && let Err(e) = store.forget(now - age)
        {
            tracing::warn!(error = %e, "cannot forget long-gone nodes");
        }
        let next = self.args.interval.saturating_sub(started.elapsed());
        self.timer = Some(me.send_after(next, || ClusterMsg::Beat));
    }

    /// Reports a newly published revision (the heartbeat alone, no lease renewal).
    fn published(&mut self) {
        let revision = self.args.snapshots.borrow().revision;
        if self.displaced || revision == self.args.beat.revision {
            return;
        }
        self.args.beat.revision = revision;
        if let Err(e) = self
            .args
            .store
            .heartbeat(&self.args.beat, self.args.clock.now())
        {
            tracing::debug!(error = %e, "cannot report the published revision now; the next heartbeat does");
        }
    }

    /// The leader fails the running tasks of nodes that died — their heartbeat is older than
    /// their TTL and they did not stop cleanly (a clean stop ended its tasks itself) — once per
    /// death. The store checks, in the same transaction, that the node has not come back.
    fn sweep(&mut self, me: &Addr<ClusterMsg>, now: DateTime<Utc>) {
        let nodes = match self.args.store.nodes() {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "cannot list the nodes to find dead ones");
                return;
            }
        };
        let dead: Vec<&NodeRecord> = nodes
            .iter()
            .filter(|n| n.node != self.args.beat.node && n.stopped_at.is_none() && !n.live(now))
            .collect();
        let key = |n: &NodeRecord| (n.node.clone(), n.instance.clone(), n.heartbeat_at);
        self.swept.retain(|k| dead.iter().any(|n| key(n) == *k));
        for n in dead {
            if self.swept.contains(&key(n)) {
                continue;
            }
            let reason = dead_node_reason(&n.node);
            match self.args.tasks.fail_node(n, &reason, now) {
                Ok(ids) => {
                    if !ids.is_empty() {
                        tracing::warn!(node = %n.node, tasks = ?ids, "a node stopped heartbeating: its running tasks failed as interrupted");
                        self.failed_tasks += ids.len() as u64;
                    }
                    self.swept.insert(key(n));
                    // Its queue was in its memory: this node takes up the pending tasks.
                    if let Some(t) = me.registry().lookup::<TaskSupMsg>(TASKS) {
                        let _ = t.cast(TaskSupMsg::Adopt);
                    }
                }
                Err(e) => {
                    tracing::warn!(node = %n.node, error = %e, "cannot fail the tasks of a dead node; retrying on the next heartbeat");
                }
            }
        }
    }

    fn publish(&self, lead: Option<Leader>) {
        self.args.leader.send_if_modified(|cur| {
            let changed = cur.as_ref().map(|l| &l.fence) != lead.as_ref().map(|l| &l.fence);
            match (&lead, changed) {
                (Some(l), false) => {
                    if let Some(c) = cur.as_mut() {
                        c.until = l.until; // a renewal: the followers need not wake
                    }
                }
                (Some(l), true) => {
                    tracing::info!(
                        token = l.fence.token,
                        "this node is now the leader: it runs the cron triggers"
                    );
                }
                (None, true) => tracing::info!("this node no longer leads: its cron triggers stop"),
                (None, false) => {}
            }
            if changed {
                *cur = lead.clone();
            }
            changed
        });
    }
}

impl Behaviour for ClusterActor {
    type Msg = ClusterMsg;
    type State = ClusterState;
    type Args = ClusterArgs;
    const TYPE: &'static str = "ClusterActor";

    async fn pre_start(
        &self,
        me: Addr<ClusterMsg>,
        args: ClusterArgs,
    ) -> Result<ClusterState, ActorProcessingErr> {
        me.cast(ClusterMsg::Beat)?;
        let watcher = {
            let (mut rx, me) = (args.snapshots.clone(), me.clone());
            tokio::spawn(async move {
                while rx.changed().await.is_ok() {
                    if me.cast(ClusterMsg::Published).is_err() {
                        return;
                    }
                }
            })
        };
        Ok(ClusterState {
            watcher,
            args,
            beats: 0,
            failures: 0,
            displaced: false,
            last_error: None,
            timer: None,
            swept: HashSet::new(),
            failed_tasks: 0,
        })
    }

    async fn handle(
        &self,
        me: &Addr<ClusterMsg>,
        msg: ClusterMsg,
        state: &mut ClusterState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            ClusterMsg::Beat => state.beat(me),
            ClusterMsg::Published => state.published(),
        }
        Ok(())
    }

    fn inspect(&self, state: &ClusterState) -> serde_json::Value {
        let leader = state.args.leader.borrow().clone();
        json!({
            "node": state.args.beat.node,
            "revision": state.args.beat.revision,
            "ttlSeconds": state.args.beat.ttl.as_secs_f64(),
            "beats": state.beats,
            "failures": state.failures,
            "displaced": state.displaced,
            "lastError": state.last_error,
            "deadNodeTasksFailed": state.failed_tasks,
            "leader": leader.as_ref().map(|l| json!({
                "token": l.fence.token,
                "holdsForSeconds": l.until.saturating_duration_since(Instant::now()).as_secs_f64(),
            })),
        })
    }
}
