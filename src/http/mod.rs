//! The daemon's two HTTP servers, both warp: the control API on the Unix socket (`control`) and the
//! webhook receiver on TCP (`webhook`). Filters (routes, limits) are kept apart from handlers
//! (plain async functions that call actors or read the snapshot). This is the edge that assigns
//! HTTP statuses: `control::ControlError::status` for the control API, the typed body and
//! payload errors of `webhook` for deliveries.
//!
//! Architecture invariant: `http` sits below `daemon` and above `actors` — it never imports the
//! daemon's wiring, and no actor imports it (`tests/tidy.rs` checks both).

pub mod control;
pub mod webhook;
