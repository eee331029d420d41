//! orchestrator: a control plane for agent workflows. A daemon (`orchestratord`) holds
//! declarative resources applied from YAML, starts tasks from cron triggers and signed webhooks,
//! runs workflow steps as agent subprocesses, and rotates the secrets webhooks are signed with.
//!
//! Reading order:
//! 1. [`domain`]: the pure core (manifests, validation, schedules, signatures, templates).
//! 2. [`store`]: persistence behind one trait per concern (SQLite today) and secret encryption.
//! 3. [`actors`]: the supervision tree and the actors that own each concern.
//! 4. [`http`]: the control API (Unix socket) and the webhook server (TCP).
//! 5. [`api`]: the wire types the control API and the CLI share.
//! 6. [`daemon`] and [`cli`]: the two programs' entry points.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod cli;
pub mod daemon;
pub mod domain;
pub mod http;
pub mod layout;
pub mod process;
pub mod rotation;
pub mod store;

#[path = "../actors/mod.rs"]
pub mod actors;
