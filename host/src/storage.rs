//! What the pipeline keeps, and the one trait every backend implements: idempotency claims,
//! the transactional outbox, the dead letter channel and the audit trail.
//!
//! The promises a backend makes (each checked by the conformance suite in
//! `tests/it/storage.rs`):
//! - [`Storage::commit`] writes the idempotency outcome, the message, the outbox events, the
//!   dead letter entry and the audit events all at once or not at all, and only while the
//!   caller's claim is still the current one;
//! - outbox sequence numbers grow in commit order, and [`Storage::due`] returns, per sink and
//!   partition key, deliveries in that order, only once [`Storage::durable`] has made them
//!   durable, and never a key whose delivery waits for its retry time;
//! - audit events of one message form a chain: versions 1, 2, 3… each carrying the hash of
//!   the one before.
//!
//! The sled implementation is [`Db`] (`storage/sled.rs`); the PostgreSQL one, which several
//! hosts can share, is [`Postgres`] (`storage/postgres.rs`, its schema in `host/migrations/`).
//! Both encode their records with `storage/codec.rs`.
//!
//! The records the trait reads and writes are in `storage/records.rs` (messages, outbox
//! events and their delivery state, dead letters, audit events, a commit) and
//! `storage/entities.rs` (entity streams). The chains (audit and entity streams) are sealed
//! once for every backend, in `storage/chains.rs`: a backend hands its write in progress
//! over as a `ChainWrite` (heads as that write sees them, and where sealed events go).

mod chains;
mod codec;
mod entities;
mod postgres;
mod records;
mod sled;

pub use self::entities::{
    EntityDraft, EntityEvent, EntityRef, RefusedEvent, Snapshot, SnapshotBound,
};
pub use self::postgres::Postgres;
pub use self::records::{
    Anchor, AuditDraft, AuditEvent, AuditItem, Commit, Cut, DeadLetter, DeadLetterDepth,
    DeadLetterKind, Delivery, DeliveryOutcome, Depths, Due, DueChain, Forgot, MessageRecord,
    OpenTransaction, OutboxEvent, PendingDelivery, PoolDepth, Producer, Released, SharedPlugin,
    StreamCut, Swept,
};
pub use self::sled::{Compacted, Db};

pub(crate) use self::codec::{decode as decode_record, encode as encode_record};

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::outcome::Settled;

/// What [`Storage::walk_audit`] hands each item to: the stream it is stored in, and the item
/// (the stream's anchor, then its events).
pub type AuditVisit<'a> = dyn FnMut(&str, AuditItem) -> Result<(), StorageError> + Send + 'a;

/// What [`Storage::walk_entities`] hands each event to: the stream it is stored in, and the
/// event.
pub type EntityVisit<'a> =
    dyn FnMut(&EntityRef, EntityEvent) -> Result<(), StorageError> + Send + 'a;

/// A storage failure: the operation did not happen.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    /// The backend failed (I/O, corruption).
    #[error("storage failed: {0}")]
    Backend(String),
    /// A record could not be decoded: the data is from a newer version or damaged.
    #[error("stored record {key} cannot be decoded: {message}")]
    Corrupt {
        /// Which record.
        key: String,
        /// Why.
        message: String,
    },
    /// The claim this commit relies on is no longer the caller's.
    #[error("the idempotency claim on {key} was lost")]
    ClaimLost {
        /// The idempotency key.
        key: String,
    },
    /// This host no longer holds the lease of the partition key's bucket at the sink:
    /// another host delivers it now, and this one's delivery record is refused.
    #[error("the lease of partition key {partition_key} at sink {sink} is another host's")]
    LeaseLost {
        /// The sink.
        sink: String,
        /// The partition key.
        partition_key: String,
    },
    /// No such record.
    #[error("no {what} `{id}`")]
    NotFound {
        /// What kind of record.
        what: &'static str,
        /// Its id.
        id: String,
    },
}

/// The result of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nobody holds the key: the caller does now.
    Fresh(ClaimToken),
    /// The key was processed: here is what was answered.
    Done(Completed),
    /// Another delivery of the key is being processed right now.
    InFlight,
}

/// Proof of holding a claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimToken {
    /// The route.
    pub route: String,
    /// The idempotency key.
    pub key: String,
    /// Unique per claim.
    pub token: u64,
}

/// What a processed key keeps: the payload's fingerprint and how the message was settled,
/// given back as it was to every redelivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "codec::CompletedRecord")]
pub struct Completed {
    /// The sha256 of the body that was processed.
    pub fingerprint: String,
    /// The outcome.
    pub settled: Settled,
    /// When the key may be forgotten.
    pub expires_at: Timestamp,
}

/// A future that resolves once everything committed before it was created is durable.
pub type Durable = Pin<Box<dyn Future<Output = Result<(), StorageError>> + Send>>;

/// A storage backend. Methods block briefly (they are called from blocking threads);
/// [`Storage::durable`] is the one that waits for the disk, and is async so that concurrent
/// commits share a flush.
pub trait Storage: Send + Sync + std::fmt::Debug + 'static {
    /// Claims `key` on `route` for this process until `now + in_flight_timeout`.
    ///
    /// A key that is done and not expired at `now` is [`Claim::Done`]; one that is held by
    /// another live claim is [`Claim::InFlight`]; anything else (never seen, expired, a claim
    /// past its timeout or left by a process that is gone) is claimed afresh.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails; then nothing is claimed.
    fn claim(
        &self,
        route: &str,
        key: &str,
        now: Timestamp,
        in_flight_timeout: Duration,
    ) -> Result<Claim, StorageError>;

    /// Gives a claim up, so that a redelivery runs again.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn release(&self, claim: &ClaimToken) -> Result<(), StorageError>;

    /// Writes everything in `commit` at once.
    ///
    /// # Errors
    ///
    /// [`StorageError::ClaimLost`] when the claim is no longer current, else a backend error;
    /// either way nothing was written.
    fn commit(&self, commit: Commit) -> Result<(), StorageError>;

    /// Appends audit events on their own (a duplicate delivery noted on the original
    /// message's stream, for example). Not flushed on its own.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn append(&self, audit: Vec<AuditDraft>) -> Result<(), StorageError>;

    /// Resolves once every commit made before the call is durable.
    fn durable(&self) -> Durable;

    /// What `sink` may deliver at `now`: up to `chains` partition keys whose next delivery
    /// is due (the longest waiting first, skipping those in `busy`, which the caller is
    /// delivering already), each with up to `per_chain` durable deliveries in commit order.
    /// Reads only what it returns: keys in backoff and other sinks' backlogs cost nothing.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn due(
        &self,
        sink: &str,
        now: Timestamp,
        busy: &BTreeSet<String>,
        chains: usize,
        per_chain: usize,
    ) -> Result<Due, StorageError>;

    /// Records one delivery attempt of event `seq` to `sink`, with its audit events. A
    /// failure puts the event's partition key at `sink` in backoff until its `next_at`; the
    /// last sink to have the event publishes it.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn record_delivery(
        &self,
        seq: u64,
        sink: &str,
        outcome: DeliveryOutcome,
        audit: Vec<AuditDraft>,
        now: Timestamp,
    ) -> Result<(), StorageError>;

    /// Makes up to `limit` partition keys that wait for their retry time at `sink` (only
    /// `partition_key` when given) due at `now`, with the audit events `audit` makes of what
    /// was released, in the same write: an operator's "try again now". Attempts and the retry
    /// budget stay as they were. Nothing held: nothing written.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails; then nothing changed.
    fn release_held(
        &self,
        sink: &str,
        partition_key: Option<&str>,
        now: Timestamp,
        limit: usize,
        audit: &dyn Fn(&Released) -> Vec<AuditDraft>,
    ) -> Result<Released, StorageError>;

    /// Puts an event back in the outbox for one sink (a delivery dead letter replayed).
    ///
    /// # Errors
    ///
    /// [`StorageError::NotFound`] for an unknown entry, else a backend error.
    fn requeue(&self, dead_letter: &str, audit: Vec<AuditDraft>) -> Result<(), StorageError>;

    /// Up to `limit` entries of the dead letter channel after the entry `after` (from the
    /// start when `None`), in id order (the oldest first: ids are time-ordered).
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn dead_letters(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StorageError>;

    /// Up to `limit` entries of `route`'s dead letters after the entry `after`, oldest first:
    /// costs what it returns, whatever other routes hold.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn route_dead_letters(
        &self,
        route: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StorageError>;

    /// Removes a dead letter entry to keep its route within its bound, with audit events: as
    /// [`Storage::discard_dead_letter`], and a translation or command entry's stored message
    /// goes with it (its body was kept only to replay it).
    ///
    /// # Errors
    ///
    /// [`StorageError::NotFound`] for an unknown entry, else a backend error.
    fn evict_dead_letter(&self, id: &str, audit: Vec<AuditDraft>) -> Result<(), StorageError>;

    /// One dead letter entry.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StorageError>;

    /// Replaces a dead letter entry (a replay that failed again), with audit events.
    ///
    /// # Errors
    ///
    /// [`StorageError::NotFound`] for an unknown entry, else a backend error.
    fn update_dead_letter(
        &self,
        entry: DeadLetter,
        audit: Vec<AuditDraft>,
    ) -> Result<(), StorageError>;

    /// Removes a dead letter entry for good, with audit events.
    ///
    /// # Errors
    ///
    /// [`StorageError::NotFound`] for an unknown entry, else a backend error.
    fn discard_dead_letter(&self, id: &str, audit: Vec<AuditDraft>) -> Result<(), StorageError>;

    /// A stored message.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn message(&self, id: &str) -> Result<Option<MessageRecord>, StorageError>;

    /// A message's audit events in the hot store, in version order: after its anchor, when
    /// older ones were archived.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn history(&self, message_id: &str) -> Result<Vec<AuditEvent>, StorageError>;

    /// Removes stored messages (bodies kept for replay and inspection) in id order after
    /// `after`, reading at most `limit`: each one `forget` (given its id, its route and when it
    /// was received) answers `Some(true)` goes, `Some(false)` stays, and the first it answers
    /// `None` ends the pass. Message ids are time-ordered, so a pass costs what is old.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails; then nothing was removed.
    fn forget_messages(
        &self,
        after: Option<&str>,
        limit: usize,
        forget: &(dyn Fn(&str, &str, Timestamp) -> Option<bool> + Sync),
    ) -> Result<Forgot, StorageError>;

    /// Where a message's audit stream starts in the hot store, when older events were
    /// archived.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn audit_anchor(&self, message_id: &str) -> Result<Option<Anchor>, StorageError>;

    /// Removes archived audit events from the hot store: for each cut, the stream's events up
    /// to its version go, and its anchor takes their place (a closed stream's anchor goes
    /// too), in one write. Events appended after the cut stay; a stream already cut further
    /// is left as it is.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails; then nothing changed.
    fn archive_audit(&self, cuts: &[StreamCut]) -> Result<(), StorageError>;

    /// Every audit event, handed to `visit` one at a time with the stream it is stored in:
    /// stream by stream, each in stored order, after the stream's anchor when it has one. Verification reads the whole trail this way,
    /// in memory bounded by a page of events, whatever the store's size.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails, or the first error `visit` returns.
    fn walk_audit(&self, visit: &mut AuditVisit<'_>) -> Result<(), StorageError>;

    /// Every audit stream's hot events: message id to its events in stored order (anchors
    /// left out). For tests and small stores; verification walks them with
    /// [`Storage::walk_audit`].
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn audit_streams(&self) -> Result<BTreeMap<String, Vec<AuditEvent>>, StorageError> {
        let mut streams: BTreeMap<String, Vec<AuditEvent>> = BTreeMap::new();
        self.walk_audit(&mut |stream, item| {
            if let AuditItem::Event(event) = item {
                streams.entry(stream.to_owned()).or_default().push(event);
            }
            Ok(())
        })?;
        Ok(streams)
    }

    /// An entity's stream, in commit order (empty for an entity never seen).
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn entity_stream(&self, entity: &EntityRef) -> Result<Vec<EntityEvent>, StorageError>;

    /// Up to `limit` events of an entity's stream after place `after`, in commit order: a
    /// page, costing what it reads.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn entity_events(
        &self,
        entity: &EntityRef,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EntityEvent>, StorageError>;

    /// The latest snapshot of `entity` by `projector` (its name, version and hash) that
    /// [fits](Snapshot::fits) `bound`, if any.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn entity_snapshot(
        &self,
        entity: &EntityRef,
        projector: &str,
        bound: SnapshotBound,
    ) -> Result<Option<Snapshot>, StorageError>;

    /// Keeps a snapshot of `entity` by `projector`; one at the same place is replaced (the
    /// fold is pure, so it holds the same state).
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn put_entity_snapshot(
        &self,
        entity: &EntityRef,
        projector: &str,
        snapshot: &Snapshot,
    ) -> Result<(), StorageError>;

    /// Every entity event, handed to `visit` one at a time with the stream it is stored in:
    /// stream by stream, each in commit order, in bounded memory (as [`Storage::walk_audit`]).
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails, or the first error `visit` returns.
    fn walk_entities(&self, visit: &mut EntityVisit<'_>) -> Result<(), StorageError>;

    /// Every entity stream, whole. For tests and small stores; verification walks them with
    /// [`Storage::walk_entities`].
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn entity_streams(&self) -> Result<BTreeMap<EntityRef, Vec<EntityEvent>>, StorageError> {
        let mut streams: BTreeMap<EntityRef, Vec<EntityEvent>> = BTreeMap::new();
        self.walk_entities(&mut |entity, event| {
            streams.entry(entity.clone()).or_default().push(event);
            Ok(())
        })?;
        Ok(streams)
    }

    /// The entity types each route's committed events were about, for the topology.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn entity_types(&self) -> Result<BTreeMap<String, BTreeSet<String>>, StorageError>;

    /// Forgets up to `limit` idempotency keys expired at `now` and published events
    /// published at or before `published_before`, and claims past their timeout; returns how
    /// many records went. Costs what it removes (expiry is indexed by time), and holds the
    /// writer lock for one batch of at most `limit` records: call it again while
    /// [`Swept::more`] says so.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn sweep(
        &self,
        now: Timestamp,
        published_before: Timestamp,
        limit: usize,
    ) -> Result<Swept, StorageError>;

    /// Keeps `answer` as the last good answer under `key` (a route's command type and
    /// subject), received at `at`, in place of the one before. What a route whose vendor's
    /// circuit is open answers in `cached` mode.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn remember_answer(
        &self,
        key: &str,
        answer: &serde_json::Value,
        at: Timestamp,
    ) -> Result<(), StorageError>;

    /// The last answer kept under `key`, with when it was received.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn recall_answer(
        &self,
        key: &str,
    ) -> Result<Option<(serde_json::Value, Timestamp)>, StorageError>;

    /// Whether several hosts share this store, and with it what their plugins serve.
    fn shares_plugins(&self) -> bool {
        false
    }

    /// Records what plugin `shared.name` serves now, for the other hosts of the store (its
    /// `generation` is the store's to give). An embedded store, which no other host shares,
    /// keeps nothing.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn share_plugin(&self, shared: &SharedPlugin) -> Result<(), StorageError> {
        let _ = shared;
        Ok(())
    }

    /// What each plugin changed since `after` serves now: one entry per plugin, the latest,
    /// in generation order.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn shared_plugins(&self, after: u64) -> Result<Vec<SharedPlugin>, StorageError> {
        let _ = after;
        Ok(Vec::new())
    }

    /// Whether the store answers now (`/readyz` asks): an embedded store always does; one
    /// behind a network fails while it cannot be reached.
    ///
    /// # Errors
    ///
    /// [`StorageError`] naming why the store does not answer.
    fn ready(&self) -> Result<(), StorageError> {
        Ok(())
    }

    /// Outbox and dead letter sizes, kept as counters: no scan.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn depths(&self) -> Result<Depths, StorageError>;
}
