//! `Db`, the embedded [`Storage`] on sled: the only module that uses sled. Keys and record
//! encodings are in `codec.rs`; the outbox (per-sink delivery state and schedules) is in
//! `sled/outbox.rs`, claims in `sled/claims.rs`, where the chains' sealed events go (the
//! shared `storage/chains.rs` seals them) in `sled/chains.rs`, entity streams read in
//! `sled/entities.rs`, the time-indexed sweep in `sled/sweep.rs`, commits
//! combined into one batch in `sled/combine.rs` (staged in `sled/staging.rs`), flushes
//! shared in `sled/flush.rs`, the move from older layouts in `sled/migrate.rs`, and the copy
//! that gives freed space back to the file system in `sled/compact.rs`.
//!
//! Everything lives in one tree, by key prefix, so that one `apply_batch` is one atomic
//! write. Writes that read first (commits, delivery records, sweeps) run under one mutex, so
//! a batch is never based on a stale read (a commit combined with others reads through what
//! they staged); a sequence number is taken and written in the same critical section, so
//! sequence order is commit order. The depth counters live beside the sequence number under
//! that mutex and are written in the same batches as what they count.
//!
//! Claims in flight are held in memory, not written, under a lock of their own
//! (`sled/claims.rs`).
//!
//! Durability: sled flushes with `sync_file_range`, which survives a process crash but does
//! not flush the disk's cache: for power-loss durability, use a backend that fsyncs.

mod chains;
mod claims;
mod combine;
mod compact;
mod entities;
mod flush;
mod migrate;
mod open;
mod outbox;
mod staging;
mod sweep;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use jiff::Timestamp;
use serde::de::DeserializeOwned;

use self::claims::Claims;
use self::combine::Queue;
pub use self::compact::Compacted;
use self::flush::Flusher;
use self::open::{DEFAULT_CACHE, open_sled};
use self::staging::{Pending, Staging, Writes};
use super::codec::{
    AuditRecord, COUNTERS, Counters, EventRecord, IdempotencyEntry, KeptAnswer, SEQ, answer_key,
    audit_key, audit_prefix, dead_letter_key, decode, encode, idempotency_key, message_key,
    read_seq, route_dead_letter_key, route_dead_letter_prefix,
};
use crate::storage::{
    Anchor, AuditDraft, AuditEvent, Claim, ClaimToken, Commit, DeadLetter, DeliveryOutcome, Depths,
    Due, Durable, EntityEvent, EntityRef, Forgot, MessageRecord, Released, Snapshot, SnapshotBound,
    Storage, StorageError, Swept,
};

/// The embedded store.
#[derive(Debug, Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    db: ::sled::Db,
    tree: ::sled::Tree,
    write: Mutex<WriteState>,
    claims: Claims,
    queue: Queue,
    flush: Arc<Flusher>,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for Inner {
    /// Stops the flush thread so that the sled files are released when the last handle goes.
    fn drop(&mut self) {
        self.flush.stop();
        let thread = self
            .flusher
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

/// What the writer lock guards besides the tree.
#[derive(Debug)]
struct WriteState {
    next_seq: u64,
    counters: Counters,
    /// The (route, entity type) keys written since the store opened: each is written once,
    /// not with every event.
    entity_types: HashSet<Vec<u8>>,
}

impl Db {
    /// Opens (or creates) the store in `dir`, moving a store written by an older host to the
    /// current layout first.
    ///
    /// # Errors
    ///
    /// [`StorageError::Backend`] when sled cannot open the directory (another holder keeps
    /// its lock for longer than a few seconds, or its files are damaged), and
    /// [`StorageError::Corrupt`] when its counters or records cannot be read.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        Self::open_with_cache(dir, DEFAULT_CACHE)
    }

    /// Opens the store in `dir` as [`Db::open`] does, with a page cache of about
    /// `cache_bytes`: what a reader of the whole store (`dragoman audit verify`) keeps in
    /// memory besides its own state.
    ///
    /// # Errors
    ///
    /// As [`Db::open`].
    pub fn open_with_cache(dir: &Path, cache_bytes: u64) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir)
            .map_err(|e| backend(format!("cannot create {}: {e}", dir.display())))?;
        let db = open_sled(&compact::settle(dir)?, cache_bytes)?;
        let tree = db.open_tree("pipeline").map_err(sled_error)?;
        migrate::to_current(&tree)?;
        let next_seq = match tree.get(SEQ).map_err(sled_error)? {
            Some(bytes) => super::codec::read_seq(&bytes).ok_or_else(|| StorageError::Corrupt {
                key: "s/seq".into(),
                message: format!("{} bytes, expected 8", bytes.len()),
            })?,
            None => 1,
        };
        let counters = match tree.get(COUNTERS).map_err(sled_error)? {
            Some(bytes) => decode(COUNTERS, &bytes)?,
            None => Counters::default(),
        };
        let counters = migrate::count_routes(&tree, counters)?;
        let (flush, thread) = Flusher::start(db.clone(), next_seq - 1)
            .map_err(|e| backend(format!("cannot start the flush thread: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                db,
                tree,
                write: Mutex::new(WriteState {
                    next_seq,
                    counters,
                    entity_types: HashSet::new(),
                }),
                claims: Claims::default(),
                queue: Queue::default(),
                flush,
                flusher: Mutex::new(Some(thread)),
            }),
        })
    }

    /// Flushes everything to disk now.
    ///
    /// # Errors
    ///
    /// [`StorageError::Backend`] when the flush fails.
    pub fn flush(&self) -> Result<(), StorageError> {
        self.inner.db.flush().map(drop).map_err(sled_error)
    }

    fn lock(&self) -> MutexGuard<'_, WriteState> {
        // The state is only advanced after a successful write.
        self.inner
            .write
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tree(&self) -> &::sled::Tree {
        &self.inner.tree
    }

    fn get<T: DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        self.tree()
            .get(key)
            .map_err(sled_error)?
            .map(|v| decode(key, &v))
            .transpose()
    }

    fn contains(&self, key: &[u8]) -> Result<bool, StorageError> {
        self.tree().contains_key(key).map_err(sled_error)
    }

    /// Applies `writes` as one batch with the counters they bring, if they changed; the
    /// caller holds the writer lock as `state` and the counters take effect only once the
    /// batch is written.
    fn apply(
        &self,
        state: &mut WriteState,
        mut writes: Writes,
        counters: Counters,
    ) -> Result<(), StorageError> {
        let changed = counters != state.counters;
        if changed {
            writes.insert(COUNTERS, encode(&counters));
        }
        self.tree()
            .apply_batch(writes.into_batch())
            .map_err(sled_error)?;
        if changed {
            state.counters = counters;
        }
        Ok(())
    }
}

impl Storage for Db {
    fn claim(
        &self,
        route: &str,
        key: &str,
        now: Timestamp,
        in_flight_timeout: Duration,
    ) -> Result<Claim, StorageError> {
        self.inner
            .claims
            .claim(route, key, now, in_flight_timeout, || {
                Ok(
                    match self.get::<IdempotencyEntry>(&idempotency_key(route, key))? {
                        Some(IdempotencyEntry::Done(completed)) if completed.expires_at > now => {
                            Some(completed)
                        }
                        _ => None,
                    },
                )
            })
    }

    fn release(&self, claim: &ClaimToken) -> Result<(), StorageError> {
        self.inner.claims.release(claim);
        Ok(())
    }

    fn commit(&self, commit: Commit) -> Result<(), StorageError> {
        // The key is the claim's when one is held (a command's keys have a namespace of
        // their own), else the message's (a replay).
        let (route, key) = match &commit.claim {
            Some(claim) => (claim.route.clone(), claim.key.clone()),
            None => (commit.message.route.clone(), commit.message.key.clone()),
        };
        let committing = self
            .inner
            .claims
            .commit(&route, &key, commit.claim.as_ref())?;
        self.write_queued(combine::Prepared::new(commit, &route, &key))?;
        committing.written();
        Ok(())
    }

    fn append(&self, audit: Vec<AuditDraft>) -> Result<(), StorageError> {
        let mut state = self.lock();
        let pending = Pending::default();
        let mut staging = Staging::new(&pending, Writes::default());
        self.append_audit(&mut staging, audit)?;
        let counters = state.counters.clone();
        self.apply(&mut state, staging.writes, counters)
    }

    fn durable(&self) -> Durable {
        self.inner.flush.durable()
    }

    fn due(
        &self,
        sink: &str,
        now: Timestamp,
        busy: &BTreeSet<String>,
        chains: usize,
        per_chain: usize,
    ) -> Result<Due, StorageError> {
        self.due_chains(sink, now, busy, chains, per_chain)
    }

    fn record_delivery(
        &self,
        seq: u64,
        sink: &str,
        outcome: DeliveryOutcome,
        audit: Vec<AuditDraft>,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        self.record(seq, sink, outcome, audit, now)
    }

    fn release_held(
        &self,
        sink: &str,
        partition_key: Option<&str>,
        now: Timestamp,
        limit: usize,
        audit: &dyn Fn(&Released) -> Vec<AuditDraft>,
    ) -> Result<Released, StorageError> {
        self.release_held_keys(sink, partition_key, now, limit, audit)
    }

    fn requeue(&self, dead_letter: &str, audit: Vec<AuditDraft>) -> Result<(), StorageError> {
        self.requeue_delivery(dead_letter, audit)
    }

    fn dead_letters(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StorageError> {
        let start = after.map_or_else(
            || b"q\0".to_vec(),
            |id| {
                // The first key after `after`'s.
                let mut key = dead_letter_key(id);
                key.push(0);
                key
            },
        );
        self.tree()
            .range(start..b"q\x01".to_vec())
            .take(limit)
            .map(|item| {
                let (k, v) = item.map_err(sled_error)?;
                decode(&k, &v)
            })
            .collect()
    }

    fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StorageError> {
        self.get(&dead_letter_key(id))
    }

    fn update_dead_letter(
        &self,
        entry: DeadLetter,
        audit: Vec<AuditDraft>,
    ) -> Result<(), StorageError> {
        let mut state = self.lock();
        let Some(before) = self.get::<DeadLetter>(&dead_letter_key(&entry.id))? else {
            return Err(StorageError::NotFound {
                what: "dead letter",
                id: entry.id,
            });
        };
        let pending = Pending::default();
        let mut staging = Staging::new(&pending, Writes::default());
        let mut counters = state.counters.clone();
        staging.remove_dead_letter(&before);
        counters.dead_letter(&before, false);
        staging.put_dead_letter(&entry);
        counters.dead_letter(&entry, true);
        self.append_audit(&mut staging, audit)?;
        self.apply(&mut state, staging.writes, counters)
    }

    fn discard_dead_letter(&self, id: &str, audit: Vec<AuditDraft>) -> Result<(), StorageError> {
        self.remove_dead_letter(id, audit, false)
    }

    fn evict_dead_letter(&self, id: &str, audit: Vec<AuditDraft>) -> Result<(), StorageError> {
        self.remove_dead_letter(id, audit, true)
    }

    fn route_dead_letters(
        &self,
        route: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StorageError> {
        let prefix = route_dead_letter_prefix(route);
        let start = match after {
            // The first key after `after`'s.
            Some(id) => [route_dead_letter_key(route, id).as_slice(), &[0]].concat(),
            None => prefix.clone(),
        };
        let mut entries = Vec::new();
        for item in self.tree().range(start..) {
            if entries.len() >= limit {
                break;
            }
            let (k, _) = item.map_err(sled_error)?;
            let Some(id) = k.strip_prefix(prefix.as_slice()) else {
                break;
            };
            let id = String::from_utf8_lossy(id);
            // The index and the entries are written together; an entry is read by its id.
            if let Some(entry) = self.get::<DeadLetter>(&dead_letter_key(&id))? {
                entries.push(entry);
            }
        }
        Ok(entries)
    }

    fn message(&self, id: &str) -> Result<Option<MessageRecord>, StorageError> {
        self.get(&message_key(id))
    }

    fn history(&self, message_id: &str) -> Result<Vec<AuditEvent>, StorageError> {
        let mut events = Vec::new();
        let prefix = audit_prefix(message_id);
        // Version 0 is the anchor's key; events start at 1.
        for item in self.tree().range(audit_key(message_id, 1)..) {
            let (k, v) = item.map_err(sled_error)?;
            if !k.starts_with(&prefix) {
                break;
            }
            events.extend(decode::<AuditRecord>(&k, &v)?.into_events());
        }
        Ok(events)
    }

    fn forget_messages(
        &self,
        after: Option<&str>,
        limit: usize,
        forget: &(dyn Fn(&str, &str, Timestamp) -> Option<bool> + Sync),
    ) -> Result<Forgot, StorageError> {
        self.forget_old_messages(after, limit, forget)
    }

    fn audit_anchor(&self, message_id: &str) -> Result<Option<Anchor>, StorageError> {
        self.get(&audit_key(message_id, 0))
    }

    fn archive_audit(&self, cuts: &[crate::storage::StreamCut]) -> Result<(), StorageError> {
        self.cut_audit(cuts)
    }

    fn walk_audit(&self, visit: &mut super::AuditVisit<'_>) -> Result<(), StorageError> {
        for item in self.tree().scan_prefix(b"a\0") {
            let (k, v) = item.map_err(sled_error)?;
            // The stream is named by the key, so an event moved between streams is caught.
            let id = k[2..].split(|b| *b == 0).next().unwrap_or_default();
            let id = String::from_utf8_lossy(id);
            for item in chains::audit_items(&k, &v)? {
                visit(&id, item)?;
            }
        }
        Ok(())
    }

    fn entity_stream(&self, entity: &EntityRef) -> Result<Vec<EntityEvent>, StorageError> {
        self.read_entity_stream(entity)
    }

    fn entity_events(
        &self,
        entity: &EntityRef,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EntityEvent>, StorageError> {
        self.read_entity_events(entity, after, limit)
    }

    fn entity_snapshot(
        &self,
        entity: &EntityRef,
        projector: &str,
        bound: SnapshotBound,
    ) -> Result<Option<Snapshot>, StorageError> {
        self.read_entity_snapshot(entity, projector, bound)
    }

    fn put_entity_snapshot(
        &self,
        entity: &EntityRef,
        projector: &str,
        snapshot: &Snapshot,
    ) -> Result<(), StorageError> {
        self.write_entity_snapshot(entity, projector, snapshot)
    }

    fn walk_entities(&self, visit: &mut super::EntityVisit<'_>) -> Result<(), StorageError> {
        self.walk_entity_streams(visit)
    }

    fn entity_types(&self) -> Result<BTreeMap<String, BTreeSet<String>>, StorageError> {
        self.read_entity_types()
    }

    fn sweep(
        &self,
        now: Timestamp,
        published_before: Timestamp,
        limit: usize,
    ) -> Result<Swept, StorageError> {
        self.sweep_expired(now, published_before, limit)
    }

    fn remember_answer(
        &self,
        key: &str,
        answer: &serde_json::Value,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        let kept = KeptAnswer {
            answer: answer.clone(),
            at,
        };
        self.tree()
            .insert(answer_key(key), encode(&kept))
            .map(drop)
            .map_err(sled_error)
    }

    fn recall_answer(
        &self,
        key: &str,
    ) -> Result<Option<(serde_json::Value, Timestamp)>, StorageError> {
        Ok(self
            .get::<KeptAnswer>(&answer_key(key))?
            .map(|kept| (kept.answer, kept.at)))
    }

    fn depths(&self) -> Result<Depths, StorageError> {
        let counters = self.lock().counters.clone();
        // The oldest event with sinks to go is the first by sequence number: one read.
        let oldest = match self.tree().scan_prefix(b"o\0").next() {
            Some(item) => {
                let (k, v) = item.map_err(sled_error)?;
                let record = decode::<EventRecord>(&k, &v)?;
                Some(
                    self.event_of(read_seq(&k[2..]).unwrap_or_default(), &record)?
                        .time,
                )
            }
            None => None,
        };
        Ok(Depths {
            outbox: counters.outbox,
            oldest,
            sinks: counters.sinks,
            dead_letters: counters.dead_letters,
            dead_letter_routes: counters.routes,
            pool: None,
            oldest_transaction: None,
        })
    }
}

impl Db {
    /// Removes dead letter `id` with `audit`; `with_message` takes a translation or command
    /// entry's stored message too.
    fn remove_dead_letter(
        &self,
        id: &str,
        audit: Vec<AuditDraft>,
        with_message: bool,
    ) -> Result<(), StorageError> {
        let mut state = self.lock();
        let Some(entry) = self.get::<DeadLetter>(&dead_letter_key(id))? else {
            return Err(StorageError::NotFound {
                what: "dead letter",
                id: id.into(),
            });
        };
        let pending = Pending::default();
        let mut staging = Staging::new(&pending, Writes::default());
        staging.remove_dead_letter(&entry);
        if with_message && !matches!(entry.kind, crate::storage::DeadLetterKind::Delivery { .. }) {
            staging.writes.remove(message_key(&entry.message_id));
        }
        self.append_audit(&mut staging, audit)?;
        let mut counters = state.counters.clone();
        counters.dead_letter(&entry, false);
        self.apply(&mut state, staging.writes, counters)
    }
}

fn sled_error(e: ::sled::Error) -> StorageError {
    backend(e.to_string())
}

fn backend(message: String) -> StorageError {
    StorageError::Backend(message)
}

#[cfg(test)]
mod tests;
