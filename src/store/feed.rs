//! The revision feed: how a node learns, without polling, that another node committed desired
//! state. A store several nodes share publishes it (PostgreSQL's `LISTEN`/`NOTIFY`); SQLite, with
//! one daemon per data dir, has none.

/// What this node knows of the store's newest desired-state revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feed {
    /// Listening: the newest revision committed (by any node) that this node has heard of.
    Connected { latest: u64 },
    /// Not listening (starting, or the connection was lost and is being made again): this node
    /// cannot know whether its snapshot is current.
    Disconnected,
}

impl Feed {
    /// Whether a node serving `published` may trust it: it listens and has heard of nothing
    /// newer.
    pub fn current(&self, published: u64) -> bool {
        matches!(self, Feed::Connected { latest } if *latest <= published)
    }

    /// The newer revision this node has heard of, if any.
    pub fn newer_than(&self, published: u64) -> Option<u64> {
        match self {
            Feed::Connected { latest } if *latest > published => Some(*latest),
            _ => None,
        }
    }
}

/// Follows the feed; `None` in [`Stores`](super::Stores) for a store without one.
pub type FeedReceiver = tokio::sync::watch::Receiver<Feed>;
