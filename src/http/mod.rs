//! The daemon's HTTP servers, all warp: the control API on the Unix socket (`control`), the
//! webhook receiver on TCP (`webhook`), and the admin listener with `/metrics` on TCP (`admin`). Filters (routes, limits) are kept apart from handlers
//! (plain async functions that call actors or read the snapshot). This is the edge that assigns
//! HTTP statuses: `control::ControlError::status` for the control API, the typed body and
//! payload errors of `webhook` for deliveries.
//!
//! Architecture invariant: `http` sits below `daemon` and above `actors` — it never imports the
//! daemon's wiring, and no actor imports it (`tests/tidy.rs` checks both).

pub mod admin;
pub mod control;
pub mod webhook;

use std::future::Future;
use std::time::{Duration, Instant};

/// A listener the servers accept connections on (TCP for webhooks, Unix for control).
trait Listen {
    type Io;
    fn accept_io(&self) -> impl Future<Output = std::io::Result<Self::Io>> + Send;
}

impl Listen for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept_io(&self) -> std::io::Result<Self::Io> {
        self.accept().await.map(|(io, _)| io)
    }
}

impl Listen for tokio::net::UnixListener {
    type Io = tokio::net::UnixStream;
    async fn accept_io(&self) -> std::io::Result<Self::Io> {
        self.accept().await.map(|(io, _)| io)
    }
}

/// `listener`'s next connection. An accept that fails (out of file descriptors, most likely)
/// waits 100 ms for some to close and tries again, saying so in the log once every 10 s
/// (through `last_warning`) rather than ten times a second; `what` names the server.
async fn accept_next<L: Listen>(
    listener: &L,
    what: &str,
    last_warning: &mut Option<Instant>,
) -> L::Io {
    loop {
        match listener.accept_io().await {
            Ok(io) => return io,
            Err(e) => {
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(error = %e, "{what} cannot accept connections");
                    *last_warning = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
