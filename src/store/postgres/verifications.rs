//! Verification stamps on PostgreSQL: [`Verifications`] implements [`VerificationStore`] on the
//! `last_verified_*` and `last_tested_*` columns of `secret_keys`. Every node's webhook server
//! writes here, so a key verified on one node is "last verified" for all of them.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::Db;
use crate::store::{Proof, Result, Verification, VerificationStore};

/// The verification stamps of one PostgreSQL database.
pub struct Verifications {
    db: Arc<Db>,
}

impl Verifications {
    pub fn new(db: Arc<Db>) -> Verifications {
        Verifications { db }
    }
}

impl VerificationStore for Verifications {
    fn record(&self, stamps: &[Verification]) -> Result<()> {
        if stamps.is_empty() {
            return Ok(());
        }
        self.db.block(async {
            let mut c = self.db.client().await?;
            let tx = c.transaction().await?;
            let verified = tx
                .prepare_cached(
                    "UPDATE secret_keys SET last_verified_at = $5, last_verified_trigger = $4
                     WHERE project = $1 AND store = $2 AND key = $3
                       AND (last_verified_at IS NULL OR last_verified_at < $5)",
                )
                .await?;
            let tested = tx
                .prepare_cached(
                    "UPDATE secret_keys SET last_tested_at = $5, last_tested_trigger = $4,
                       last_tested_by = $6
                     WHERE project = $1 AND store = $2 AND key = $3
                       AND (last_tested_at IS NULL OR last_tested_at < $5)",
                )
                .await?;
            for v in stamps {
                match v.proof {
                    Proof::Delivery => {
                        tx.execute(
                            &verified,
                            &[&v.project, &v.store, &v.key, &v.trigger, &v.at],
                        )
                        .await?
                    }
                    Proof::DryRun | Proof::WebhookTest => {
                        tx.execute(
                            &tested,
                            &[
                                &v.project,
                                &v.store,
                                &v.key,
                                &v.trigger,
                                &v.at,
                                &v.proof.as_str(),
                            ],
                        )
                        .await?
                    }
                };
            }
            tx.commit().await?;
            Ok(())
        })
    }

    fn last_verified(
        &self,
        project: &str,
        store: &str,
        key: &str,
    ) -> Result<Option<DateTime<Utc>>> {
        self.db.block(async {
            let c = self.db.client().await?;
            let row = c
                .query_opt(
                    "SELECT last_verified_at FROM secret_keys
                     WHERE project = $1 AND store = $2 AND key = $3",
                    &[&project, &store, &key],
                )
                .await?;
            Ok(match row {
                Some(r) => r.try_get(0)?,
                None => None,
            })
        })
    }
}
