//! The control API's wire types, shared by the daemon's server (`http::control`) and the CLI's
//! client, so the two cannot drift apart. Paths are versioned under `/v1`. Every error is an
//! [`ErrorBody`] `{error, details[]}` with a fitting HTTP status. `-o json` output of the CLI is
//! these types serialized, which keeps it stable for agents to parse.
//!
//! Architecture invariant: this module imports only `domain` (checked by `tests/tidy.rs`), so the
//! CLI, the console and every layer of the daemon can use it without seeing each other. One file
//! per resource family: [`resources`] (apply, delete, get, describe), [`tasks`], [`triggers`],
//! [`secrets`] (keys, rotations, webhook tests), [`actors`] (tree, inspect, trace) and
//! [`cluster`] (nodes and the leader).

use serde::{Deserialize, Serialize};

use crate::domain::diagnostic::{Diagnostic, refused};

pub mod actors;
pub mod cluster;
pub mod resources;
pub mod secrets;
pub mod tasks;
pub mod triggers;

pub use actors::*;
pub use cluster::*;
pub use resources::*;
pub use secrets::*;
pub use tasks::*;
pub use triggers::*;

/// An error answer: a one-line summary and, for validation failures, one entry per problem.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    pub error: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<Diagnostic>,
}

/// A failed control request as the server produces it: a status and the body.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub body: ErrorBody,
}

impl ApiError {
    pub fn new(status: u16, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: error.into(),
                details: Vec::new(),
            },
        }
    }
    pub fn with_details(mut self, details: Vec<Diagnostic>) -> ApiError {
        self.body.details = details;
        self
    }
    /// 422: the request was understood but its manifests are invalid.
    pub fn invalid(what: &str, details: Vec<Diagnostic>) -> ApiError {
        ApiError::new(422, refused(what, details.len())).with_details(details)
    }
    pub fn bad_request(error: impl Into<String>) -> ApiError {
        ApiError::new(400, error)
    }
    pub fn not_found(error: impl Into<String>) -> ApiError {
        ApiError::new(404, error)
    }
    pub fn conflict(error: impl Into<String>) -> ApiError {
        ApiError::new(409, error)
    }
    pub fn internal(error: impl Into<String>) -> ApiError {
        ApiError::new(500, error)
    }
    pub fn unavailable(error: impl Into<String>) -> ApiError {
        ApiError::new(503, error)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.body.error)
    }
}
