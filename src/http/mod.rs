//! The daemon's two HTTP servers, both warp: the control API on the Unix socket (`control`) and the
//! webhook receiver on TCP (`webhook`). Filters (routes, limits) are kept apart from handlers
//! (plain async functions that call actors or read the snapshot).

pub mod control;
pub mod webhook;
