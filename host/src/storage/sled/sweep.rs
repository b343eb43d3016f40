//! The sweep: forgets processed keys past their retention and published events past the
//! relay's, reading only what has expired (both are indexed by time), in batches of a bounded
//! size so that the writer lock, and with it ingest, is never held for long.

use jiff::Timestamp;

use super::{Db, sled_error};
use crate::storage::codec::{IdempotencyEntry, expired_idempotency_key, instant_after};
use crate::storage::{StorageError, Swept};

impl Db {
    pub(super) fn sweep_expired(
        &self,
        now: Timestamp,
        published_before: Timestamp,
        limit: usize,
    ) -> Result<Swept, StorageError> {
        let mut state = self.lock();
        let mut batch = ::sled::Batch::default();
        let mut removed = 0u64;
        let mut read = 0usize;
        // Expiry entries at or before `now`. A key processed again after it expired has a
        // newer entry of its own; the older one goes without the key.
        let end = [b"x\0".as_slice(), &instant_after(now)].concat();
        for item in self.tree().range(b"x\0".to_vec()..end) {
            if read >= limit {
                break;
            }
            read += 1;
            let (k, _) = item.map_err(sled_error)?;
            batch.remove(&k);
            let key = expired_idempotency_key(&k);
            if let Some(IdempotencyEntry::Done(completed)) = self.get(&key)?
                && completed.expires_at <= now
            {
                batch.remove(key);
                removed += 1;
            }
        }
        let end = [b"t\0".as_slice(), &instant_after(published_before)].concat();
        for item in self.tree().range(b"t\0".to_vec()..end) {
            if read >= limit {
                break;
            }
            read += 1;
            let (k, _) = item.map_err(sled_error)?;
            batch.remove(k);
            removed += 1;
        }
        state.claims.retain(|_, held| held.until > now);
        let counters = state.counters.clone();
        self.apply(&mut state, batch, counters)?;
        Ok(Swept {
            removed,
            more: read >= limit,
        })
    }
}
