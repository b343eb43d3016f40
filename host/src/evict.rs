//! Keeps each route's share of the dead letter channel within its bound
//! (`[routes.NAME.dead_letters]`): once a write takes a route past its entries or bytes, its
//! oldest entries are removed, with their stored messages, until it is within again; each
//! removal is an audit event on its message's stream (`dead_letter_evicted`) and counted in
//! `/metrics`. The store keeps the counts (`Depths::dead_letter_routes`) and an index of each
//! route's entries, so this reads only what it removes.

use jiff::Timestamp;
use serde_json::json;

use crate::config::DeadLetterBound;
use crate::storage::{AuditDraft, DeadLetterDepth, Storage, StorageError};
use crate::telemetry::Metrics;

/// Entries read at a time.
const PAGE: usize = 64;

/// Whether a route holding `depth` is past `bound`.
pub(crate) fn over(depth: DeadLetterDepth, bound: DeadLetterBound) -> bool {
    depth.count > bound.max_entries || depth.bytes > bound.max_bytes
}

/// Removes `route`'s oldest dead letters while it is past `bound`; returns how many went.
/// Blocks on the store: call it from a blocking thread.
///
/// # Errors
///
/// [`StorageError`] when the store fails; what was removed before stays removed.
pub(crate) fn enforce(
    storage: &dyn Storage,
    metrics: &Metrics,
    route: &str,
    bound: DeadLetterBound,
    now: Timestamp,
) -> Result<u64, StorageError> {
    let mut depth = storage
        .depths()?
        .dead_letter_routes
        .get(route)
        .copied()
        .unwrap_or_default();
    let mut evicted = 0;
    let mut after: Option<String> = None;
    while over(depth, bound) {
        let page = storage.route_dead_letters(route, after.as_deref(), PAGE)?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some(last.id.clone());
        for entry in page {
            if !over(depth, bound) {
                break;
            }
            let reason = if depth.count > bound.max_entries {
                "max_entries"
            } else {
                "max_bytes"
            };
            let audit = AuditDraft::new(
                &entry.message_id,
                now,
                "dead_letter_evicted",
                json!({
                    "dead_letter": entry.id,
                    "route": route,
                    "bytes": entry.bytes,
                    "over": reason,
                }),
            );
            match storage.evict_dead_letter(&entry.id, vec![audit]) {
                // Removed meanwhile (a replay, a discard, another eviction): not ours.
                Ok(()) | Err(StorageError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            depth.count(&entry, false);
            evicted += 1;
            metrics.evicted(route);
        }
    }
    if evicted > 0 {
        tracing::warn!(
            route,
            evicted,
            "dead letters evicted to keep the route within its bound"
        );
    }
    Ok(evicted)
}
