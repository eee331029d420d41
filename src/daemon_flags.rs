//! `orchestratord`'s command line: the clap struct its `--help` comes from, apart from the
//! daemon so that the CLI can write the daemon's man page (`orchestrator man`) without linking
//! the daemon's stack. Plain clap and the pure `domain` only (`tests/tidy.rs` checks it); the
//! values are turned into a `daemon::Config` by `bin/orchestratord.rs`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};

use crate::domain::retention::{Age, MAX_COUNT as MAX_RETENTION_COUNT};

/// orchestratord: runs agent workflows from cron schedules and signed webhooks.
#[derive(Debug, Parser)]
#[command(name = "orchestratord", version, about, max_term_width = 100)]
pub struct Flags {
    /// Where everything durable lives (created 0700) [default: ~/.orchestratord].
    #[arg(long, env = "ORCHESTRATOR_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// The control socket [default: <data-dir>/orchestrator.sock].
    #[arg(long, env = "ORCHESTRATOR_SOCKET", value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Webhook server address (IP:PORT, port 0 picks one), or `none`.
    #[arg(long, default_value = "127.0.0.1:19090", value_name = "ADDR|none")]
    pub webhook_bind: WebhookBind,
    /// Admin listener address (IP:PORT, port 0 picks one), or `none`: serves `GET /metrics`
    /// (Prometheus text format), apart from the public webhook port.
    #[arg(
        long,
        env = "ORCHESTRATOR_ADMIN_BIND",
        default_value = "127.0.0.1:19091",
        value_name = "ADDR|none"
    )]
    pub admin_bind: AdminBind,
    /// Log format on stderr; levels come from RUST_LOG (default info).
    #[arg(long, value_enum, default_value_t = LogFormat::Pretty)]
    pub log_format: LogFormat,
    /// Passivation, for very large installations: a cron trigger whose next fire is further away
    /// than this many seconds (up to a year) has no TriggerActor; the trigger supervisor starts
    /// it again half this long before the fire. Saves about 9 KB per trigger. Unset (the
    /// default): every trigger keeps its actor.
    #[arg(long, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(2..=31_536_000))]
    pub trigger_resident_window: Option<u64>,
    /// Webhook deliveries handled at once; more are answered 429.
    #[arg(long, default_value_t = 1024, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub webhook_max_in_flight: u32,
    /// Seconds a webhook delivery's body may take to arrive; slower ones are answered 408.
    #[arg(long, default_value_t = 10, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=600))]
    pub webhook_body_timeout: u64,
    /// Seconds a webhook connection may take to send a request's headers, and may stay idle
    /// between requests, before it is closed.
    #[arg(long, default_value_t = 30, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub webhook_header_timeout: u64,
    /// Open webhook connections; at the cap a new one takes the place of the longest-idle one.
    #[arg(long, default_value_t = 4096, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub webhook_max_connections: u32,
    /// Finished tasks (with their step runs, events and run logs) are removed this long after
    /// they finished: a whole number and a unit, s, m, h, d or w (up to 36500d). A trigger's
    /// historyLimit wins for that trigger's tasks.
    #[arg(long, default_value = "30d", value_name = "DURATION")]
    pub task_retention_age: Age,
    /// Each workflow keeps at most this many finished tasks (the oldest go first); a trigger's
    /// historyLimit wins for that trigger's tasks.
    #[arg(long, default_value_t = 10_000, value_name = "N",
          value_parser = clap::value_parser!(u64).range(1..=MAX_RETENTION_COUNT))]
    pub task_retention_count: u64,
    /// Seconds between two retention passes (old tasks are also removed as soon as a task
    /// finishes over its trigger's or its workflow's count).
    #[arg(long, default_value_t = 60, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub retention_interval: u64,
    /// Where the state lives: `sqlite` (the default: `state.db` in the data dir, nothing to
    /// install) or a PostgreSQL URL, postgres://USER[:PASSWORD]@HOST:PORT/DATABASE, shared by
    /// every daemon of a cluster.
    #[arg(
        long,
        env = "ORCHESTRATOR_STORE",
        default_value = "sqlite",
        value_name = "sqlite|postgres://…",
        hide_default_value = true,
        hide_env_values = true
    )]
    // Parsed by the daemon after clap, not by clap: clap's error would echo the value, and a URL
    // may hold a password.
    pub store: String,
    /// The 32-byte key that seals SecretStore values (mode 0600) [default: <data-dir>/secret.key,
    /// created on first start]. Every daemon on one PostgreSQL database needs the same file.
    #[arg(long, env = "ORCHESTRATOR_SECRET_KEY_FILE", value_name = "PATH")]
    pub secret_key_file: Option<PathBuf>,
    /// This daemon's name among the nodes of one database: 1 to 64 letters, digits, '.', '_'
    /// or '-' [default: the host name and a hash of the data dir].
    #[arg(long, env = "ORCHESTRATOR_NODE_ID", value_name = "ID")]
    pub node_id: Option<NodeId>,
    /// Seconds after its last heartbeat (one a second) that a node counts as dead; also how
    /// long the leader's lease lasts without renewal, so the longest a failover takes.
    #[arg(long, default_value_t = 10, value_name = "SECONDS",
          value_parser = clap::value_parser!(u64).range(3..=3600))]
    pub node_ttl: u64,
    /// The most tasks this daemon runs at once, over all workflows (each workflow's
    /// max_parallel holds too); the others wait, oldest first [default: 4 per core].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub max_running: Option<u32>,
}

/// `--log-format`: how the daemon's log lines on stderr look (README "The daemon's log").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One line per event for people: time, level, spans, target, message, fields.
    Pretty,
    /// One JSON object per line, for a log collector.
    Json,
}

/// Where the webhook server listens (`--webhook-bind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookBind {
    Disabled,
    Addr(SocketAddr),
}

/// A `--webhook-bind` value that is neither `IP:PORT` nor `none`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid address {0:?}: use IP:PORT such as 127.0.0.1:19090 (port 0 picks a free port), or `none`"
)]
pub struct InvalidBind(String);

impl std::str::FromStr for WebhookBind {
    type Err = InvalidBind;
    fn from_str(s: &str) -> Result<Self, InvalidBind> {
        if s == "none" {
            return Ok(WebhookBind::Disabled);
        }
        s.parse()
            .map(WebhookBind::Addr)
            .map_err(|_| InvalidBind(s.to_owned()))
    }
}

/// Where the admin listener (`/metrics`) listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminBind {
    Disabled,
    Addr(SocketAddr),
}

/// An `--admin-bind` value that is neither `IP:PORT` nor `none`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid admin address {0:?}: use IP:PORT such as 127.0.0.1:19091 (port 0 picks a free port), or `none`"
)]
pub struct InvalidAdminBind(String);

impl std::str::FromStr for AdminBind {
    type Err = InvalidAdminBind;
    fn from_str(s: &str) -> Result<Self, InvalidAdminBind> {
        if s == "none" {
            return Ok(AdminBind::Disabled);
        }
        s.parse()
            .map(AdminBind::Addr)
            .map_err(|_| InvalidAdminBind(s.to_owned()))
    }
}

/// A node id: 1 to 64 letters, digits, `.`, `_` or `-`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeId(String);

/// A `--node-id` that is not a node id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid node id {0:?}: use 1 to 64 letters, digits, '.', '_' or '-' (such as web-1), unique per daemon"
)]
pub struct InvalidNodeId(String);

impl std::str::FromStr for NodeId {
    type Err = InvalidNodeId;
    fn from_str(s: &str) -> Result<Self, InvalidNodeId> {
        let ok = (1..=64).contains(&s.len())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if ok {
            Ok(NodeId(s.to_owned()))
        } else {
            let shown: String = s.chars().take(80).collect();
            Err(InvalidNodeId(shown))
        }
    }
}

impl NodeId {
    /// The default: the host name and the first 8 hex digits of the data dir's SHA-256, so that
    /// two daemons on one host (each with its own data dir) differ.
    pub fn default_for(host: &str, data_dir: &std::path::Path) -> NodeId {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(data_dir.as_os_str().as_encoded_bytes());
        let host: String = host
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                    c
                } else {
                    '-'
                }
            })
            .take(48)
            .collect();
        NodeId(format!("{host}-{}", &hex::encode(hash)[..8]))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}
