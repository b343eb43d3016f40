//! The sweep: forgets processed keys past their retention and published events past the
//! relay's, reading only what has expired (both are indexed by time), in batches of a bounded
//! size. What to remove is found without the writer lock; under it, each expired key is only
//! checked again (it may have been processed anew since) and the batch written, so ingest
//! waits for a sweep at most one short batch at a time, however large the store. Old message
//! bodies go the same way, a page at a time (`forget_old_messages`).

use jiff::Timestamp;

use super::staging::Writes;
use super::{Db, sled_error};
use crate::storage::codec::{
    IdempotencyEntry, decode, expired_idempotency_key, instant_after, message_key,
};
use crate::storage::{Forgot, MessageRecord, StorageError, Swept};

impl Db {
    pub(super) fn sweep_expired(
        &self,
        now: Timestamp,
        published_before: Timestamp,
        limit: usize,
    ) -> Result<Swept, StorageError> {
        // Expiry entries at or before `now`, and published events at or before
        // `published_before`: read without the lock.
        let end = [b"x\0".as_slice(), &instant_after(now)].concat();
        let expiries: Vec<::sled::IVec> = self
            .tree()
            .range(b"x\0".to_vec()..end)
            .keys()
            .take(limit)
            .collect::<Result<_, _>>()
            .map_err(sled_error)?;
        let end = [b"t\0".as_slice(), &instant_after(published_before)].concat();
        let published: Vec<::sled::IVec> = self
            .tree()
            .range(b"t\0".to_vec()..end)
            .keys()
            .take(limit - expiries.len())
            .collect::<Result<_, _>>()
            .map_err(sled_error)?;
        let more = expiries.len() + published.len() >= limit;
        self.inner.claims.forget_expired(now);

        let mut state = self.lock();
        let mut batch = Writes::default();
        let mut removed = 0u64;
        for expiry in expiries {
            // A key processed again after it expired has a newer entry of its own; this older
            // one goes without the key.
            let key = expired_idempotency_key(&expiry);
            if let Some(IdempotencyEntry::Done(completed)) = self.get(&key)?
                && completed.expires_at <= now
            {
                batch.remove(key);
                removed += 1;
            }
            batch.remove(expiry);
        }
        for key in published {
            batch.remove(key);
            removed += 1;
        }
        let counters = state.counters.clone();
        self.apply(&mut state, batch, counters)?;
        Ok(Swept { removed, more })
    }

    pub(super) fn forget_old_messages(
        &self,
        after: Option<&str>,
        limit: usize,
        forget: &(dyn Fn(&str, &str, Timestamp) -> Option<bool> + Sync),
    ) -> Result<Forgot, StorageError> {
        let start = match after {
            // The key just after `after`'s.
            Some(id) => [message_key(id), vec![0]].concat(),
            None => message_key(""),
        };
        let messages = self
            .tree()
            .range(start..)
            .map(|item| item.map_err(sled_error))
            .take_while(|item| {
                item.as_ref()
                    .map_or(true, |(key, _)| key.starts_with(b"m\0"))
            })
            .map(|item| {
                let (key, value) = item?;
                let record: MessageRecord = decode(&key, &value)?;
                Ok((record.id, record.route, record.received_at))
            });
        let (gone, forgot) = Forgot::page(messages, limit, forget)?;
        if gone.is_empty() {
            return Ok(forgot);
        }
        let mut state = self.lock();
        let mut writes = Writes::default();
        for id in gone {
            writes.remove(message_key(&id));
        }
        let counters = state.counters.clone();
        self.apply(&mut state, writes, counters)?;
        Ok(forgot)
    }
}
