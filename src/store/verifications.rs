//! The "last verified at" and "last tested at" stamps of SecretStore keys: which key verified a
//! webhook delivery's signature, when, for which trigger, and whether the delivery was a real one
//! from an outside sender ([`Proof::Delivery`], "verified") or only a check — a dry run
//! (`X-Orchestrator-Dry-Run: 1`) or the daemon's own `orchestrator webhook test` ("tested"). The
//! two are stored apart and never stand in for each other: a rotation's test stage waits for a
//! "last verified at" stamp only, so the daemon cannot prove a new key by itself. The webhook
//! path writes them (batched, newest per key and kind); `describe secretstore` shows them
//! (through [`super::ResourceStore::key_meta`]).

use chrono::{DateTime, Utc};

use super::Result;

/// What a delivery whose signature verified proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proof {
    /// A real delivery from an outside sender: "last verified at". Only this proves a key.
    Delivery,
    /// A dry run (`X-Orchestrator-Dry-Run: 1`) from an outside sender: "last tested at".
    DryRun,
    /// `orchestrator webhook test`, the daemon's own request: "last tested at".
    WebhookTest,
}

impl Proof {
    /// How `describe secretstore` names a test (`last_tested_by`).
    pub fn as_str(self) -> &'static str {
        match self {
            Proof::Delivery => "delivery",
            Proof::DryRun => "dry run",
            Proof::WebhookTest => "webhook test",
        }
    }
}

/// One delivery that verified: which key of which store, for which trigger, and what it proves.
#[derive(Debug, Clone)]
pub struct Verification {
    pub project: String,
    pub store: String,
    pub key: String,
    pub trigger: String,
    pub at: DateTime<Utc>,
    pub proof: Proof,
}

/// The verification stamps: written in batches by the webhook path's recorder (on a blocking
/// thread), read by a rotation's test stage.
pub trait VerificationStore: Send + Sync {
    /// Records which keys verified webhook deliveries, and when, in one transaction: a
    /// [`Proof::Delivery`] as "last verified at", the others as "last tested at". A stamp older
    /// than the one recorded is ignored.
    fn record(&self, stamps: &[Verification]) -> Result<()>;

    /// When `key` of the SecretStore `store` last verified a real delivery from an outside
    /// sender; `None` if never (or if there is no such key). Tests never count.
    fn last_verified(&self, project: &str, store: &str, key: &str)
    -> Result<Option<DateTime<Utc>>>;
}
