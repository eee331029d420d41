//! The pure core of orchestrator: manifests, validation, lowering into typed values, the
//! snapshot, the three-way merge of SecretStore keys at apply, schedules, the cron trigger plan
//! (cursor, missed fires, resident or dormant), signatures, filters, prompt rendering, what a
//! step run launches, redaction, the retention rules, the reading of agents' stream-json output,
//! a task's git worktree, and the workflow (with its resume) and rotation state machines.
//! Nothing in here performs IO, reads the clock or touches tokio, warp or ractor (the
//! `domain_is_pure` test in `tests/tidy.rs` enforces it), so every rule of the product can be
//! unit-tested as plain functions.

pub mod diagnostic;
pub mod filter;
pub mod launch;
pub mod limits;
pub mod locate;
pub mod lower;
pub mod manifest;
pub mod redact;
pub mod render;
pub mod retention;
pub mod rotation;
pub mod schedule;
pub mod secret_merge;
pub mod signature;
pub mod snapshot;
pub mod stream_json;
pub mod token;
pub mod trigger_plan;
pub mod validate;
pub mod workflow;
pub mod worktree;
