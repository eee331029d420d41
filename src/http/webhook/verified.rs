//! The "last verified at" recorder: deliveries send one stamp per verified signature (which key
//! of which store verified it, when, and whether it was a real delivery or a test) over a
//! channel, and [`record_verifications`] writes them to the store in batches, so a burst of
//! deliveries costs one write every 200 ms, not one each.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::store::{Proof, Verification, VerificationStore};

/// Writes "last verified at" and "last tested at" stamps to the store, batched: the newest stamp
/// per key and kind, every 200 ms (a test never hides a real delivery of the same batch). Runs
/// until the sender side is dropped.
pub async fn record_verifications(
    store: Arc<dyn VerificationStore>,
    mut rx: mpsc::Receiver<Verification>,
) {
    loop {
        let Some(first) = rx.recv().await else { return };
        let mut batch: HashMap<(String, String, String, Proof), Verification> = HashMap::new();
        batch.insert(
            (
                first.project.clone(),
                first.store.clone(),
                first.key.clone(),
                first.proof,
            ),
            first,
        );
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        while let Ok(Some(v)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            batch.insert(
                (v.project.clone(), v.store.clone(), v.key.clone(), v.proof),
                v,
            );
        }
        let store = store.clone();
        let written = tokio::task::spawn_blocking(move || {
            let stamps: Vec<Verification> = batch.into_values().collect();
            store.record(&stamps)
        })
        .await;
        if let Ok(Err(e)) = written {
            tracing::warn!(error = %e, "cannot record webhook verifications");
        }
    }
}
