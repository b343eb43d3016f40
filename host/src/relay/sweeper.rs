//! The sweeper: forgets idempotency keys past their retention and published events past the
//! relay's retention, so the store stays bounded at a steady load. Each sweep reads only what
//! has expired and writes in batches of [`BATCH`] records, so ingest waits for the writer lock
//! at most one batch at a time, however large the store.

use std::sync::Arc;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::Relay;

/// Records removed per write (and per hold of the writer lock).
const BATCH: usize = 1000;

/// Sweeps every `sweep_interval` until `cancel` fires.
pub(super) async fn run(relay: Arc<Relay>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(relay.config.sweep_interval) => {}
        }
        let sweeping = relay.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || sweep(&sweeping)).await {
            tracing::error!(error = %e, "the sweep task failed");
        }
    }
}

/// One sweep, batch after batch until nothing has expired; a failure is logged and the next
/// sweep tries again.
fn sweep(relay: &Relay) {
    let now = relay.clock.now();
    let before = now
        .checked_sub(relay.config.published_retention)
        .unwrap_or(Timestamp::MIN);
    let mut removed = 0;
    loop {
        match relay.storage.sweep(now, before, BATCH) {
            Ok(swept) => {
                removed += swept.removed;
                relay.metrics.swept(swept.removed);
                if !swept.more {
                    break;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "sweep failed");
                break;
            }
        }
    }
    if removed > 0 {
        tracing::debug!(removed, "swept expired keys and published events");
    }
}
