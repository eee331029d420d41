//! The actor system. Every actor is a [`runtime::Behaviour`] run by the instrumented ractor
//! actor of `runtime.rs`, and every parent is the one restarting [`supervisor::Supervisor`].
//!
//! ```text
//! root                          Supervisor (daemon.rs starts it)
//! ├── secret-store              SecretStoreActor: single writer of desired state; serializes
//! │                             every apply/delete, commits to SQLite, publishes a Snapshot
//! ├── cluster                   ClusterActor (cluster.rs): this node's heartbeat, the leader
//! │                             lease; only the leader's trigger supervisor arms triggers;
//! │                             the leader fails dead nodes' running tasks
//! ├── tasks                     TaskSupervisor (task_supervisor.rs): creates and queues tasks,
//! │   │                         max_parallel per workflow, --max-running per node, crash
//! │   │                         recovery of this node's runs at start
//! │   └── workflow/<task-id>    WorkflowActor (workflow.rs): drives one task through its steps
//! │       │                     (in its own git worktree if its workspace says so)
//! │       └── agent/<task-id>/<step>/<n>   AgentActor (agent.rs): wraps one agent subprocess
//! ├── triggers                  TriggerSupervisor: reconciles cron triggers on each Snapshot
//! │   └── trigger/<project>/<name>   TriggerActor: one armed timer per cron trigger
//! ├── retention                 RetentionActor (retention.rs): removes finished tasks and their
//! │                             run logs in batches (historyLimit, age, count, delete, prune)
//! ├── tokens                    TokenRefreshActor (token_refresh.rs): one timer for the tokens
//! │                             that providers refresh ahead of expiry, retries with backoff
//! └── webhook                   WebhookActor: owns the warp server; each request reads the
//!                               newest Snapshot at its start
//! ```
//!
//! Message flow: the control API (Unix socket) sends `Apply`/`Delete`/`Describe` to
//! `secret-store`; it commits and publishes `Arc<Snapshot>` on a `watch` channel before it
//! replies. The webhook server holds a receiver of that channel; `get` reads it directly. A
//! child never names its parent's message type: an AgentActor reports its exit through an
//! [`runtime::Recipient`] that its WorkflowActor derives from its own address.
//!
//! Restart policy. Every parent embeds the same restart machinery (`supervisor::ChildSet`),
//! counted per child: at most 5 restarts within 10 s.
//! - root: `secret-store`, `cluster`, `tasks`, `triggers`, `retention`, `tokens` and `webhook` are `Permanent` and
//!   escalate when they exceed the intensity; the root then fails and the daemon exits with
//!   status 1, so that its service manager restarts it. A restarted `secret-store` reloads its
//!   state from SQLite (same revision); a restarted `webhook` serves the listener the daemon
//!   bound once (same port); a restarted `tasks` kills leftover agent groups and resumes the
//!   running tasks; a restarted `retention` starts a pass (its queued work is found again); a
//!   restarted `tokens` re-arms from the expiries kept in the store.
//! - tasks: each WorkflowActor is `Transient` (restarted only when it fails; a finished task
//!   stops it normally) and `GiveUp`: one that keeps failing is dropped and its task fails, so a
//!   single bad task never takes the others down. A restarted WorkflowActor resumes from the
//!   task's rows: the step that was running counts as an interrupted attempt.
//! - triggers: each TriggerActor is `Permanent` and `GiveUp`; a restarted one reloads its state
//!   and counts the fires it missed meanwhile. One that keeps failing is dropped (logged) and
//!   started again by the next reconcile (any apply).
//! - AgentActors are not restarted: their WorkflowActor treats a failed AgentActor as a failed
//!   attempt (retried per the step's `retries`). The AgentActor's state kills its process group
//!   when dropped, which also happens when its parent dies.

pub mod agent;
pub mod clock;
pub mod cluster;
pub mod retention;
pub mod runtime;
pub mod secret_store;
pub mod supervisor;
pub mod task_supervisor;
pub mod token_refresh;
pub mod trigger;
pub mod trigger_supervisor;
pub mod webhook;
pub mod workflow;
