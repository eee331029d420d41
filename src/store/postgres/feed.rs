//! The revision feed on PostgreSQL: one connection of its own (outside the pool) that
//! `LISTEN`s on [`CHANNEL`]; every desired-state commit `NOTIFY`s it with its revision, inside
//! its transaction, so the notice arrives only for what committed. After connecting (and after
//! every reconnect) the listener reads the stored revision, so that nothing committed while it
//! was not listening is missed. While it is disconnected the feed says so, and the node treats
//! its snapshot as unproven.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_postgres::{AsyncMessage, NoTls};

use super::Db;
use crate::store::feed::{Feed, FeedReceiver};

/// The notification channel of desired-state commits.
pub(crate) const CHANNEL: &str = "orchestrator_revision";

/// How long the listener waits before connecting again.
const RECONNECT: Duration = Duration::from_millis(500);

impl Db {
    /// Starts the listener on the store's runtime; it runs until the store is dropped.
    pub(crate) fn listen(self: &Arc<Self>) -> FeedReceiver {
        let (tx, rx) = watch::channel(Feed::Disconnected);
        let config = self.config.clone();
        self.handle.spawn(async move {
            let mut logged = false;
            loop {
                match listen_once(&config, &tx).await {
                    Ok(()) => return, // every receiver is gone
                    Err(e) => {
                        tx.send_replace(Feed::Disconnected);
                        if !logged {
                            tracing::warn!(error = %e, "the desired-state listener lost its connection; webhooks wait until it is back");
                            logged = true;
                        }
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(RECONNECT).await;
            }
        });
        rx
    }
}

/// One connection's life: LISTEN, read the stored revision, forward notifications until the
/// connection fails (`Err`) or nobody follows the feed any more (`Ok`).
async fn listen_once(
    config: &tokio_postgres::Config,
    tx: &watch::Sender<Feed>,
) -> Result<(), tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let (notes, mut received) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(AsyncMessage::Notification(n)) => {
                    if notes.send(Ok(n.payload().to_owned())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = notes.send(Err(e));
                    return;
                }
            }
        }
    });
    let result = async {
        client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
        let stored: String = client
            .query_one("SELECT value FROM meta WHERE key = 'revision'", &[])
            .await?
            .try_get(0)?;
        let mut latest = stored.parse::<u64>().unwrap_or(0);
        tx.send_replace(Feed::Connected { latest });
        loop {
            tokio::select! {
                note = received.recv() => match note {
                    Some(Ok(payload)) => {
                        if let Ok(r) = payload.parse::<u64>()
                            && r > latest
                        {
                            latest = r;
                            tx.send_replace(Feed::Connected { latest });
                        }
                    }
                    Some(Err(e)) => return Err(e),
                    // The connection ended without an error: connect again.
                    None => {
                        return client
                            .simple_query("SELECT 1")
                            .await
                            .map(drop);
                    }
                },
                () = tx.closed() => return Ok(()),
            }
        }
    }
    .await;
    driver.abort();
    result
}
