//! Verification stamps on SQLite: [`Verifications`] implements [`VerificationStore`] on the
//! `last_verified_*` columns of `secret_keys` (migration 1) and its `last_tested_*` columns
//! (migration 6), through the connection `Pair` it shares with the delivery log.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Pair, opt_ts, ts};
use crate::store::{Proof, Result, Verification, VerificationStore};

/// The verification stamps of one SQLite database.
pub struct Verifications {
    pair: Arc<Pair>,
}

impl Verifications {
    /// The stamps on `pair` (shared with the delivery log; migrations already ran).
    pub(super) fn new(pair: Arc<Pair>) -> Verifications {
        Verifications { pair }
    }
}

impl VerificationStore for Verifications {
    fn record(&self, stamps: &[Verification]) -> Result<()> {
        self.pair.write(|conn| {
            conn.execute_batch("BEGIN IMMEDIATE")?;
            for v in stamps {
                let done = match v.proof {
                    Proof::Delivery => conn
                        .prepare_cached(
                            "UPDATE secret_keys SET last_verified_at = ?5, last_verified_trigger = ?4
                             WHERE project = ?1 AND store = ?2 AND key = ?3
                               AND (last_verified_at IS NULL OR last_verified_at < ?5)",
                        )
                        .and_then(|mut s| {
                            s.execute(params![v.project, v.store, v.key, v.trigger, ts(v.at)])
                        }),
                    Proof::DryRun | Proof::WebhookTest => conn
                        .prepare_cached(
                            "UPDATE secret_keys SET last_tested_at = ?5, last_tested_trigger = ?4,
                               last_tested_by = ?6
                             WHERE project = ?1 AND store = ?2 AND key = ?3
                               AND (last_tested_at IS NULL OR last_tested_at < ?5)",
                        )
                        .and_then(|mut s| {
                            s.execute(params![
                                v.project,
                                v.store,
                                v.key,
                                v.trigger,
                                ts(v.at),
                                v.proof.as_str()
                            ])
                        }),
                };
                if let Err(e) = done {
                    let _ = conn.execute_batch("ROLLBACK");
                    return Err(e.into());
                }
            }
            conn.execute_batch("COMMIT")?;
            Ok(())
        })
    }

    fn last_verified(
        &self,
        project: &str,
        store: &str,
        key: &str,
    ) -> Result<Option<DateTime<Utc>>> {
        self.pair.read(|c| {
            let at = c
                .prepare_cached(
                    "SELECT last_verified_at FROM secret_keys
                     WHERE project = ?1 AND store = ?2 AND key = ?3",
                )?
                .query_row(params![project, store, key], |r| {
                    r.get::<_, Option<String>>(0)
                })
                .optional()?
                .flatten();
            opt_ts(at)
        })
    }
}
