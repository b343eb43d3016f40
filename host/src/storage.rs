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
//! The sled implementation is [`Db`] (`storage/sled.rs`); the layout of its records is in
//! `storage/codec.rs`.
//!
//! Over 600 lines on purpose: the `Storage` trait is one concept, the promises of a backend,
//! and a trait's methods with their contracts cannot be split across files; its records are
//! in submodules (`storage/entities.rs`).

mod codec;
mod entities;
mod sled;

pub use self::entities::{
    EntityDraft, EntityEvent, EntityRef, RefusedEvent, Snapshot, SnapshotBound,
};
pub use self::sled::Db;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::outcome::Settled;

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

/// A message as received, kept for the dead letter channel and the audit trail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The host's id, also the correlation id.
    pub id: String,
    /// The route it came in on.
    pub route: String,
    /// Its idempotency key.
    pub key: String,
    /// The declared content type.
    pub content_type: Option<String>,
    /// Its headers.
    pub headers: Vec<(String, String)>,
    /// Its body.
    #[serde(with = "codec::base64_bytes")]
    pub body: Vec<u8>,
    /// When it arrived.
    pub received_at: Timestamp,
}

/// A domain event on its way to the sinks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEvent {
    /// The event's id: stable across retries, the downstream deduplication key.
    pub id: String,
    /// The message that caused it (its causation and correlation id).
    pub message_id: String,
    /// The route.
    pub route: String,
    /// The CloudEvents `type`.
    pub event_type: String,
    /// The CloudEvents `subject`.
    pub subject: String,
    /// Events with the same key are published in commit order.
    pub partition_key: String,
    /// The JSON payload, exactly as the plugin wrote it.
    pub data: String,
    /// When the event was committed.
    pub time: Timestamp,
    /// The W3C trace context of the message.
    pub traceparent: String,
    /// The plugin version that produced the event; `None` in records written before hosts
    /// kept it.
    #[serde(default)]
    pub producer: Option<Producer>,
}

/// The plugin version that produced an event: its provenance, sent with it to every sink
/// and named on its dead letter, whatever the route serves by then.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Producer {
    /// The plugin's name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The sha256 of its component.
    pub sha256: String,
}

impl Producer {
    /// `name@version`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.name, self.version)
    }
}

/// One sink's delivery state for one event.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not before this instant.
    pub next_at: Option<Timestamp>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the first attempt failed; `None` in records written before hosts kept it.
    #[serde(default)]
    pub first_failed_at: Option<Timestamp>,
}

/// An event waiting for one sink, with its delivery state there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingDelivery {
    /// The event's place in commit order.
    pub seq: u64,
    /// The event.
    pub event: OutboxEvent,
    /// Its delivery state at this sink.
    pub delivery: Delivery,
}

/// The deliveries of one partition key to one sink that may go now, in commit order: the
/// first is the oldest the sink still waits for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueChain {
    /// The partition key.
    pub partition_key: String,
    /// Its deliveries, oldest first.
    pub deliveries: Vec<PendingDelivery>,
}

/// What one sink may deliver now, and when the next of its keys is due.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Due {
    /// Chains due at the instant asked about, the longest waiting first.
    pub chains: Vec<DueChain>,
    /// When the earliest chain that is not due yet will be, if any.
    pub next_at: Option<Timestamp>,
}

/// What the relay learned from one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The sink acknowledged the event.
    Delivered,
    /// It failed; try again at `next_at`.
    Failed {
        /// Why.
        error: String,
        /// When to try again.
        next_at: Timestamp,
    },
    /// It failed for the last time; the event goes to the dead letter channel.
    DeadLettered(Box<DeadLetter>),
}

/// An entry of the dead letter channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// The entry's id.
    pub id: String,
    /// Why it is here.
    pub kind: DeadLetterKind,
    /// The message concerned.
    pub message_id: String,
    /// The route.
    pub route: String,
    /// The last error, for people.
    pub error: String,
    /// A stable error code, for machines.
    pub code: String,
    /// The plugin that handled it: `name@version`.
    pub plugin: String,
    /// The plugin's sha256.
    pub plugin_sha256: String,
    /// Attempts so far (translations or deliveries).
    pub attempts: u32,
    /// When it first arrived here.
    pub created_at: Timestamp,
    /// When it last changed.
    pub updated_at: Timestamp,
    /// The bytes it keeps: its message's body, or its event's data (what the route's bound
    /// on dead letter bytes counts); 0 in entries written before hosts counted them.
    #[serde(default)]
    pub bytes: u64,
}

/// Why an entry is in the dead letter channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeadLetterKind {
    /// The plugin refused the message or faulted on it.
    Translation,
    /// The plugin refused a command or the vendor's answer to it, or faulted on either.
    Command,
    /// A sink refused an event too many times.
    Delivery {
        /// The sink.
        sink: String,
        /// The event, as it was in the outbox.
        event: Box<OutboxEvent>,
    },
}

/// An audit event before the store gives it a version and a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditDraft {
    /// The message whose stream it joins.
    pub message_id: String,
    /// What happened: `received`, `translated`, `committed`, …
    pub kind: String,
    /// Details.
    pub data: serde_json::Value,
    /// When (the host's clock).
    pub at: Timestamp,
}

impl AuditDraft {
    /// An event of `kind` for `message_id`'s stream, at `at`.
    pub fn new(message_id: &str, at: Timestamp, kind: &str, data: serde_json::Value) -> Self {
        Self {
            message_id: message_id.to_owned(),
            kind: kind.to_owned(),
            data,
            at,
        }
    }
}

/// An audit event as stored: immutable, chained to its predecessor by hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// The message whose stream it belongs to.
    pub message_id: String,
    /// 1 for the first event of a stream, then one more each time.
    pub version: u64,
    /// What happened.
    pub kind: String,
    /// Details.
    pub data: serde_json::Value,
    /// When it was recorded.
    pub at: Timestamp,
    /// The hash of the previous event of the stream (64 zeros for the first).
    pub prev: String,
    /// This event's hash: sha256 over `prev` and the event's other fields.
    pub hash: String,
}

/// Everything one ingest (or replay) commits, all or nothing.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The claim held; the commit fails with [`StorageError::ClaimLost`] if it is not current.
    /// `None` for a replay from the dead letter channel, which holds no claim.
    pub claim: Option<ClaimToken>,
    /// The outcome remembered under the key.
    pub completed: Completed,
    /// The message, stored unless it already is.
    pub message: MessageRecord,
    /// Events for the outbox, with the sinks that get them; an event for no sink is not
    /// kept (the commit's audit events name it).
    pub events: Vec<(OutboxEvent, Vec<String>)>,
    /// An entry for the dead letter channel.
    pub dead_letter: Option<DeadLetter>,
    /// A dead letter entry that this commit resolves (a successful replay).
    pub resolves: Option<String>,
    /// Audit events.
    pub audit: Vec<AuditDraft>,
    /// Whether the message is new: its id was just minted and nothing is recorded under it,
    /// so its audit drafts start its stream and the store may seal them without reading the
    /// stream, before it takes any lock. `false` is always correct, only slower; `true` for
    /// a message that has a stream breaks the chain (and `verify` says so).
    pub new_message: bool,
    /// Events to append to their entities' streams (empty when the host keeps none).
    pub entities: Vec<EntityDraft>,
}

impl Commit {
    /// Whether it gives the outbox an event: one with a sink to go.
    pub fn feeds_outbox(&self) -> bool {
        self.events.iter().any(|(_, sinks)| !sinks.is_empty())
    }
}

/// What a backend reports to `/metrics` and `/readyz`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Depths {
    /// Outbox events with at least one sink to go.
    pub outbox: u64,
    /// When the oldest of them was committed.
    pub oldest: Option<Timestamp>,
    /// Deliveries each sink still waits for.
    pub sinks: BTreeMap<String, u64>,
    /// Entries in the dead letter channel.
    pub dead_letters: u64,
    /// Entries in the dead letter channel per route, with the bytes they keep.
    pub dead_letter_routes: BTreeMap<String, DeadLetterDepth>,
}

/// A route's share of the dead letter channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetterDepth {
    /// Entries.
    pub count: u64,
    /// The bytes they keep ([`DeadLetter::bytes`]).
    pub bytes: u64,
}

impl DeadLetterDepth {
    /// Counts `entry` in (`add`) or out.
    pub fn count(&mut self, entry: &DeadLetter, add: bool) {
        if add {
            self.count += 1;
            self.bytes = self.bytes.saturating_add(entry.bytes);
        } else {
            self.count = self.count.saturating_sub(1);
            self.bytes = self.bytes.saturating_sub(entry.bytes);
        }
    }
}

/// What releasing a sink's held keys did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Released {
    /// The partition keys made due now.
    pub keys: Vec<String>,
    /// Whether more keys are held: call again.
    pub more: bool,
}

/// What one sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Keys and published events forgotten.
    pub removed: u64,
    /// Whether the sweep stopped at its limit with more to go.
    pub more: bool,
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

    /// A message's audit events, in version order.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn history(&self, message_id: &str) -> Result<Vec<AuditEvent>, StorageError>;

    /// Every audit stream, for verification: message id to its events in stored order.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn audit_streams(&self) -> Result<BTreeMap<String, Vec<AuditEvent>>, StorageError>;

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

    /// Every entity stream, for verification.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn entity_streams(&self) -> Result<BTreeMap<EntityRef, Vec<EntityEvent>>, StorageError>;

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

    /// Outbox and dead letter sizes, kept as counters: no scan.
    ///
    /// # Errors
    ///
    /// [`StorageError`] when the backend fails.
    fn depths(&self) -> Result<Depths, StorageError>;
}
