//! orchestrator: a control plane for agent workflows. A daemon (`orchestratord`) holds
//! declarative resources applied from YAML, starts tasks from cron triggers and signed webhooks,
//! runs workflow steps as agent subprocesses, and rotates the secrets webhooks are signed with.
//!
//! Reading order, the layers from the bottom up (each imports only those before it; README's
//! Architecture section has the rule, `tests/tidy.rs` checks it):
//! 1. [`domain`]: the pure core (manifests, validation, lowering, the snapshot, schedules, the
//!    cron trigger plan, signatures, templates, step launches, the workflow and rotation
//!    machines).
//! 2. [`api`]: the wire types the control API and the CLI share; [`layout`]: the data dir's
//!    file names; [`metrics`]: the Prometheus registry the layers above count in.
//! 3. [`store`]: persistence behind one trait per concern (SQLite today) and secret encryption;
//!    [`process`]: every child process.
//! 4. [`actors`]: the supervision tree and the actors that own each concern.
//! 5. [`rotation`]: staged secret rotation with its providers.
//! 6. [`http`]: the control API (Unix socket), the webhook server (TCP) and the admin listener
//!    (`/metrics`, TCP).
//! 7. [`daemon`] and [`cli`]: the two programs' entry points; [`daemon_flags`]: the daemon's
//!    command line, which the CLI reads too (for the daemon's man page).

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod cli;
pub mod daemon;
pub mod daemon_flags;
pub mod domain;
pub mod http;
pub mod layout;
pub mod metrics;
pub mod process;
pub mod rotation;
pub mod store;

#[path = "../actors/mod.rs"]
pub mod actors;
