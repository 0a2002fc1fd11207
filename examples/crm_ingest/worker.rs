//! Background tasks: the projector that turns inbox rows into `calls` and
//! `trainings`, and the writer that drains the delivery-log channel.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot, watch, Notify};

use super::storage::{LogEntry, Projection, Storage};

/// How often the projector looks at the inbox when nobody woke it (rows
/// written by another process, or a missed wake-up).
const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// First wait after a database error; doubles up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// Longest wait between retries after database errors.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Most log entries written in one transaction.
const LOG_BATCH: usize = 512;

/// Projects inbox rows, oldest first, one transaction per row, until
/// `stop` turns true. A row being projected when `stop` turns true is
/// finished first; rows left in the inbox are picked up on the next start.
pub(crate) async fn project_inbox(
    storage: Storage,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    tracing::info!("projector started");
    let mut backoff = FIRST_BACKOFF;
    loop {
        if *stop.borrow() {
            break;
        }
        let wait = match storage.project_next().await {
            Ok(Some(done)) => {
                backoff = FIRST_BACKOFF;
                match done.projection {
                    Projection::Call | Projection::Training => tracing::info!(
                        event_id = %done.event_id,
                        event = %done.event,
                        into = ?done.projection,
                        "inbox row projected"
                    ),
                    Projection::Ignored => tracing::info!(
                        event_id = %done.event_id,
                        event = %done.event,
                        "event kept in the inbox but not projected: this app knows no table for it"
                    ),
                    Projection::Invalid => tracing::warn!(
                        event_id = %done.event_id,
                        event = %done.event,
                        "inbox row no longer parses; marked processed and left in the inbox for inspection"
                    ),
                }
                continue;
            }
            Ok(None) => {
                backoff = FIRST_BACKOFF;
                POLL_INTERVAL
            }
            Err(error) => {
                tracing::warn!(%error, retry_in = ?backoff, "projector: database error");
                let wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                wait
            }
        };
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
            // Stop asked, or the app is gone (sender dropped): stop either way.
            _ = stop.wait_for(|stop| *stop) => break,
        }
    }
    tracing::info!("projector stopped");
}

/// Writes delivery-log entries in batches until `stop` fires, then writes
/// what is still queued and returns.
pub(crate) async fn write_delivery_log(
    storage: Storage,
    mut entries: mpsc::Receiver<LogEntry>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut batch = Vec::with_capacity(LOG_BATCH);
    let mut stopping = false;
    loop {
        let received = if stopping {
            entries.recv_many(&mut batch, LOG_BATCH).await
        } else {
            tokio::select! {
                n = entries.recv_many(&mut batch, LOG_BATCH) => n,
                _ = &mut stop => {
                    // No new entries from now on; drain the queued ones.
                    entries.close();
                    stopping = true;
                    continue;
                }
            }
        };
        if received == 0 {
            break; // closed and empty
        }
        let count = batch.len();
        if let Err(error) = storage.log(std::mem::take(&mut batch)).await {
            tracing::warn!(%error, lost = count, "delivery-log entries could not be written");
        }
    }
    tracing::debug!("delivery-log writer stopped");
}
