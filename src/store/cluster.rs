//! Membership and the leader lease: every daemon is a node with a heartbeat row (its id, host,
//! pid, version, the snapshot revision it has published, its TTL), and one node at a time
//! holds the leader lease — a row with a holder, an expiry and a fencing token — and runs the
//! cron triggers.
//!
//! The lease is the store's, not an advisory lock's: a lock held by a connection survives a
//! partition of its node for as long as the connection looks alive, while a lease expires on
//! the database's side whatever the holder believes. Taking over after expiry increments the
//! token; a fire checks the token in the transaction that creates its task, so a deposed
//! leader that still fires creates nothing.
//!
//! Times are the calling node's clock (`now`): the nodes' clocks must agree to well within the
//! TTL (NTP does). A skewed clock costs availability — a node may take the lease early or
//! late — never a second fire, which the token and the unique scheduled instant forbid.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::Result;

/// The lease the cron triggers run under.
pub const LEADER: &str = "leader";

/// Node rows that stopped (or died) this long ago are removed, so that the table stays as long
/// as the cluster is wide, however often nodes come and go.
pub const FORGET_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a node writes about itself on each heartbeat.
#[derive(Debug, Clone)]
pub struct Beat {
    pub node: String,
    /// This process's own random instance id: tells a restarted node from its predecessor,
    /// and two daemons given the same `--node-id` apart.
    pub instance: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    /// The snapshot revision this node has published.
    pub revision: u64,
    pub ttl: Duration,
    pub webhook: Option<String>,
    /// Tasks this node runs now.
    pub running: u64,
}

/// A node as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub node: String,
    pub instance: String,
    pub host: String,
    pub pid: u32,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub heartbeat_at: DateTime<Utc>,
    pub revision: u64,
    pub ttl: Duration,
    pub webhook: Option<String>,
    pub running: u64,
    /// Set when the node stopped cleanly.
    pub stopped_at: Option<DateTime<Utc>>,
}

impl NodeRecord {
    /// Whether the node counts as alive at `now`: it did not stop and its last heartbeat is
    /// younger than its TTL.
    pub fn live(&self, now: DateTime<Utc>) -> bool {
        self.stopped_at.is_none() && !expired(self.heartbeat_at, self.ttl, now)
    }
}

/// Whether `since + ttl` has passed at `now`.
pub fn expired(since: DateTime<Utc>, ttl: Duration, now: DateTime<Utc>) -> bool {
    match chrono::Duration::from_std(ttl) {
        Ok(ttl) => since + ttl <= now,
        Err(_) => false,
    }
}

/// A lease as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    /// Increments whenever the lease changes hands (or is taken again after it expired).
    pub token: u64,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

/// Proof that a write is made by the lease's holder: the store refuses the write, in the same
/// transaction, unless the lease still names this holder and token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub holder: String,
    pub token: u64,
}

/// How a node's claim to its id went at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Joined {
    /// The id is ours (new, or its previous holder stopped, died or was this host).
    Joined,
    /// A live daemon on another host holds the id.
    Taken {
        host: String,
        heartbeat_at: DateTime<Utc>,
    },
}

/// The membership table and the leases.
pub trait ClusterStore: Send + Sync {
    /// Claims `beat.node` at start: refused while another host's live daemon holds it.
    fn join(&self, beat: &Beat, now: DateTime<Utc>) -> Result<Joined>;

    /// Records a heartbeat; `false` when another instance has taken the id since `join` (this
    /// node must stop acting as it).
    fn heartbeat(&self, beat: &Beat, now: DateTime<Utc>) -> Result<bool>;

    /// Marks the node stopped (a clean shutdown): it leaves the count of live nodes at once.
    fn leave(&self, node: &str, instance: &str, now: DateTime<Utc>) -> Result<()>;

    /// Every node, ordered by id (rows forgotten after [`FORGET_AFTER`] excepted).
    fn nodes(&self) -> Result<Vec<NodeRecord>>;

    /// Removes the rows of nodes that stopped or died before `before`; returns how many.
    fn forget(&self, before: DateTime<Utc>) -> Result<usize>;

    /// Takes or renews lease `name` for `holder` until `now + ttl`: the token it holds it with,
    /// or `None` while another holder's lease has not expired.
    fn acquire(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<u64>>;

    /// Gives lease `name` up (a clean shutdown), if `fence` still holds it: another node may
    /// take it at once.
    fn release(&self, name: &str, fence: &Fence, now: DateTime<Utc>) -> Result<()>;

    /// Lease `name` as it stands (expired or not), if it was ever taken.
    fn lease(&self, name: &str) -> Result<Option<Lease>>;
}
