//! The sweeper: forgets idempotency keys past their retention and published events past the
//! relay's retention, so the store stays bounded at a steady load.

use jiff::Timestamp;

use crate::clock::Clock;
use crate::config::RelayConfig;
use crate::storage::Storage;

/// One sweep; failures are logged and the next sweep tries again.
pub(super) fn sweep(storage: &dyn Storage, clock: &dyn Clock, config: &RelayConfig) {
    let now = clock.now();
    let before = now
        .checked_sub(config.published_retention)
        .unwrap_or(Timestamp::MIN);
    match storage.sweep(now, before) {
        Ok(0) => {}
        Ok(n) => tracing::debug!(removed = n, "swept expired keys and published events"),
        Err(e) => tracing::warn!(error = %e, "sweep failed"),
    }
}
