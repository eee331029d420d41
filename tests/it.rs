//! Integration tests: the real binaries against temporary data dirs (see `common.rs`), daemons
//! run in-process (`inprocess.rs`), plus repository-wide checks (`tidy.rs`).

mod actors;
mod agents;
mod cli;
mod cluster;
mod cluster_pg;
mod common;
mod deliveries;
mod durability;
mod fake_http;
mod github_app;
mod hostile;
mod inprocess;
mod integrations;
mod merge;
mod metrics;
mod pg_nodes;
mod pg_rotation;
mod postgres;
mod proof;
mod props;
mod resources;
mod rotation;
mod system;
mod tasks;
mod tidy;
mod tokens;
mod triggers;
mod webhooks;
