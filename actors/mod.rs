//! The actor system. Every actor is a [`introspect::Behaviour`] run by the instrumented ractor
//! actor of `introspect.rs`, and every parent is the one restarting [`supervisor::Supervisor`].
//!
//! ```text
//! root                      Supervisor (daemon.rs starts it)
//! ├── secret-store          SecretStoreActor: single writer of desired state; serializes every
//! │                         apply/delete, commits to SQLite, publishes an immutable Snapshot
//! └── webhook               WebhookActor: owns the warp server; each request reads the newest
//!                           Snapshot at its start
//! ```
//!
//! Message flow: the control API (Unix socket) sends `Apply`/`Delete`/`Describe` to
//! `secret-store`; it commits and publishes `Arc<Snapshot>` on a `watch` channel before it
//! replies. The webhook server holds a receiver of that channel; `get` reads it directly.
//!
//! Restart policy (root): both children are `Permanent`. A child that stops unexpectedly is
//! restarted at once; one that restarts more than 5 times within 10 s escalates, which fails the
//! root, and the daemon then exits with status 1 so that its service manager restarts it. A
//! restarted `secret-store` reloads its state from SQLite (same revision); a restarted `webhook`
//! serves the listener the daemon bound once, so the port does not change.

pub mod agent;
pub mod introspect;
pub mod secret_store;
pub mod supervisor;
pub mod webhook;
pub mod workflow;
