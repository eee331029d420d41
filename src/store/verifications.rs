//! The "last verified at" stamps of SecretStore keys: which key verified a webhook delivery,
//! when, and for which trigger. The webhook path writes them (batched, newest per key);
//! `describe secretstore` shows them (through [`super::ResourceStore::key_meta`]) and a
//! rotation's test stage waits for one.

use chrono::{DateTime, Utc};

use super::Result;

/// One delivery that verified: which key of which store, for which trigger.
#[derive(Debug, Clone)]
pub struct Verification {
    pub project: String,
    pub store: String,
    pub key: String,
    pub trigger: String,
    pub at: DateTime<Utc>,
}

/// The verification stamps: written in batches by the webhook path's recorder (on a blocking
/// thread), read by a rotation's test stage.
pub trait VerificationStore: Send + Sync {
    /// Records which keys verified webhook deliveries, and when, in one transaction; a stamp
    /// older than the one recorded is ignored.
    fn record(&self, stamps: &[Verification]) -> Result<()>;

    /// When `key` of the SecretStore `store` last verified a delivery; `None` if never (or if
    /// there is no such key).
    fn last_verified(&self, project: &str, store: &str, key: &str)
    -> Result<Option<DateTime<Utc>>>;
}
