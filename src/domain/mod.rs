//! The pure core of orchestrator: manifests, validation, lowering into typed values, the
//! snapshot, schedules, signatures, filters, prompt rendering, redaction, and the workflow and
//! rotation state machines. Nothing in here performs IO, reads the clock or touches tokio,
//! warp or ractor (the `domain_is_pure` test in `tests/tidy.rs` enforces it), so every rule of the
//! product can be unit-tested as plain functions.

pub mod diagnostic;
pub mod filter;
pub mod limits;
pub mod locate;
pub mod lower;
pub mod manifest;
pub mod redact;
pub mod render;
pub mod rotation;
pub mod schedule;
pub mod signature;
pub mod snapshot;
pub mod validate;
pub mod workflow;
