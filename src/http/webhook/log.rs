//! The delivery log's writer side: each request that reached a webhook trigger fills a
//! [`Logged`] as it is handled (trigger, key name, delivery id, payload, task, outcome), which
//! becomes one [`NewDelivery`] when it is answered; [`record_deliveries`] writes them to the
//! store in batches every 200 ms, so a burst costs one transaction, not one per request. The
//! channel is bounded: when the store cannot keep up, entries are dropped (and counted), never
//! the deliveries themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::Utc;
use tokio::sync::mpsc;

use crate::store::{DeliveryStore, NewDelivery};

/// Entries waiting for the writer at most.
pub(super) const QUEUED: usize = 4096;

/// What a request has shown of itself so far.
#[derive(Default)]
pub(super) struct Logged {
    /// (project, trigger), once the path named a webhook trigger: only then is it logged.
    pub(super) trigger: Option<(String, String)>,
    pub(super) key: Option<String>,
    pub(super) delivery_id: Option<String>,
    pub(super) payload_bytes: u64,
    /// Only once the signature verified, and never for a dry run.
    pub(super) payload: Option<String>,
    pub(super) task: Option<u64>,
    /// Set where the status alone does not say it (`filtered`, `duplicate`, …).
    pub(super) outcome: Option<&'static str>,
    /// The trigger's scheme, once the path named a webhook trigger (for the metrics).
    pub(super) scheme: Option<crate::domain::signature::Scheme>,
}

impl Logged {
    /// The log entry of a request answered with `status`; none if it named no webhook trigger.
    pub(super) fn entry(self, status: u16) -> Option<NewDelivery> {
        let (project, trigger) = self.trigger?;
        let outcome = self.outcome.unwrap_or(match status {
            // 200: LINE's and Slack forms' answer to an accepted delivery (`ack.rs`).
            200 | 202 => "accepted",
            400 => "bad request",
            401 => "unauthorized",
            408 => "body timeout",
            413 => "too large",
            _ => "not created",
        });
        Some(NewDelivery {
            project,
            trigger,
            received_at: Utc::now(),
            status,
            outcome: outcome.to_owned(),
            key: self.key,
            task: self.task,
            delivery_id: self.delivery_id,
            payload_bytes: self.payload_bytes,
            payload: self.payload,
        })
    }
}

/// The sending side, with the count of entries dropped because the writer fell behind.
#[derive(Clone)]
pub(super) struct LogSender {
    tx: mpsc::Sender<NewDelivery>,
    pub(super) dropped: Arc<AtomicU64>,
}

impl LogSender {
    pub(super) fn channel() -> (LogSender, mpsc::Receiver<NewDelivery>) {
        let (tx, rx) = mpsc::channel(QUEUED);
        let dropped = Arc::new(AtomicU64::new(0));
        (LogSender { tx, dropped }, rx)
    }

    pub(super) fn send(&self, entry: NewDelivery) {
        if self.tx.try_send(entry).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Writes log entries to the store, batched every 200 ms (at most [`QUEUED`] per batch). Runs
/// until the sender side is dropped.
pub async fn record_deliveries(store: Arc<dyn DeliveryStore>, mut rx: mpsc::Receiver<NewDelivery>) {
    loop {
        let Some(first) = rx.recv().await else { return };
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + Duration::from_millis(200);
        while batch.len() < QUEUED {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(d)) => batch.push(d),
                _ => break,
            }
        }
        let store = store.clone();
        let written = tokio::task::spawn_blocking(move || store.record(&batch)).await;
        if let Ok(Err(e)) = written {
            tracing::warn!(error = %e, "cannot record webhook deliveries");
        }
    }
}
