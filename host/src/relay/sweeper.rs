//! The sweeper: forgets idempotency keys past their retention and published events past the
//! relay's retention, so the store stays bounded at a steady load. Each sweep reads only what
//! has expired and writes in batches of [`BATCH`] records, so ingest waits for the writer lock
//! at most one batch at a time, however large the store.

use std::sync::Arc;

use jiff::Timestamp;
use tokio_util::sync::CancellationToken;

use super::Relay;

/// Records removed per write (and per hold of the writer lock).
const BATCH: usize = 250;
/// How many times as long as a batch took the sweeper rests after it: a sweep has at most
/// an eighth of the store's time.
const REST_FACTOR: u32 = 7;
/// The least rest between two batches.
const REST: std::time::Duration = std::time::Duration::from_millis(5);

/// Sweeps every `sweep_interval` until `cancel` fires.
pub(super) async fn run(relay: Arc<Relay>, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(relay.config.sweep_interval) => {}
        }
        let (sweeping, stop) = (relay.clone(), cancel.clone());
        if let Err(e) = tokio::task::spawn_blocking(move || sweep(&sweeping, &stop)).await {
            tracing::error!(error = %e, "the sweep task failed");
        }
    }
}

/// One sweep, batch after batch until nothing has expired, resting between batches
/// [`REST_FACTOR`] times as long as the last one took: the writer lock is not fair, and a
/// sweep that took it back at once would starve ingest, and what it removes (keys spread all
/// over the store) swells the flushes that ingest waits for. A sweep takes longer so that
/// ingest does not; at rest, a sweep of a batch of 250 takes a few milliseconds, so the
/// sweeper still removes thousands of records a second, more than a host ingests. A failure is logged and the next
/// sweep tries again. A sweep of a large backlog takes minutes, and a host that is stopping
/// waits for its relay: so it stops between two batches once `cancel` fires, and the next
/// run's sweep goes on from what is left.
fn sweep(relay: &Relay, cancel: &CancellationToken) {
    let now = relay.clock.now();
    let before = now
        .checked_sub(relay.config.published_retention)
        .unwrap_or(Timestamp::MIN);
    let mut removed = 0;
    while !cancel.is_cancelled() {
        let started = std::time::Instant::now();
        match relay.storage.sweep(now, before, BATCH) {
            Ok(swept) => {
                removed += swept.removed;
                relay.metrics.swept(swept.removed);
                if !swept.more {
                    break;
                }
                std::thread::sleep((started.elapsed() * REST_FACTOR).max(REST));
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
