//! The records a backend keeps and gives back: a message as received, an outbox event with
//! its per-sink delivery state, a dead letter, an audit event, everything one commit holds,
//! and what a backend reports of itself. Plain data: the rules that make them are above the
//! trait, and a backend only stores and reads them.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::codec;
use super::{ClaimToken, Completed, EntityDraft};

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
    /// Its body: whole, or its first bytes when `cut` says so.
    #[serde(with = "codec::base64_bytes")]
    pub body: Vec<u8>,
    /// When it arrived.
    pub received_at: Timestamp,
    /// Set when only the first bytes of the body are kept (a route's cap on what a dead
    /// letter keeps): the whole body's size and sha256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut: Option<Cut>,
}

/// What a body cut short was whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cut {
    /// Its size in bytes.
    pub size: u64,
    /// Its sha256, lower-case hex.
    pub sha256: String,
}

impl MessageRecord {
    /// Keeps at most the first `max` bytes of the body, noting the whole body's size and
    /// hash when it was longer.
    pub fn cut_body(&mut self, max: u64) {
        let keep = usize::try_from(max).unwrap_or(usize::MAX);
        if self.body.len() <= keep || self.cut.is_some() {
            return;
        }
        self.cut = Some(Cut {
            size: self.body.len() as u64,
            sha256: crate::plugin::sha256_hex(&self.body),
        });
        self.body.truncate(keep);
        self.body.shrink_to_fit();
    }
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
    /// The vendors' entries of that context (W3C `tracestate`), as the caller gave them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
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
    #[serde(with = "codec::hex_digest")]
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
    #[serde(with = "codec::hex_digest")]
    pub prev: String,
    /// This event's hash: sha256 over `prev` and the event's other fields.
    #[serde(with = "codec::hex_digest")]
    pub hash: String,
}

impl AuditEvent {
    /// Where its stream stands once it is the last event.
    pub(crate) fn tip(&self) -> crate::chain::Tip {
        crate::chain::Tip {
            position: self.version,
            hash: self.hash.clone(),
        }
    }
}

/// Where an audit stream's hot part starts once its older events went to the archive: the
/// last archived event (its version, hash and time), the archive segment that holds it with
/// that segment's digest, and the message's state folded through it. The stream's next
/// event is sealed after it, and its state is folded on from here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anchor {
    /// The last archived event's version.
    pub version: u64,
    /// Its hash.
    #[serde(with = "codec::hex_digest")]
    pub hash: String,
    /// When it was recorded.
    pub at: Timestamp,
    /// The archive segment that holds it.
    pub segment: String,
    /// That segment's sha256, lower-case hex.
    #[serde(with = "codec::hex_digest")]
    pub digest: String,
    /// The message's state folded through the last archived event
    /// ([`crate::audit::MessageState`] as JSON).
    pub state: serde_json::Value,
}

impl Anchor {
    /// Where its stream stands when no event follows it.
    pub(crate) fn tip(&self) -> crate::chain::Tip {
        crate::chain::Tip {
            position: self.version,
            hash: self.hash.clone(),
        }
    }
}

/// One audit stream cut where its archived events end: its events up to `version` leave the
/// hot store, and `anchor` takes their place, or nothing when the stream is closed (its
/// message settled for good, past its idempotency retention: no event can follow).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamCut {
    /// The stream.
    pub stream: String,
    /// The last archived event's version.
    pub version: u64,
    /// Where the hot stream goes on from; `None` for a closed stream.
    pub anchor: Option<Anchor>,
}

/// What a walk of the audit trail hands over: a stream's anchor (before its first event, when
/// older events were archived), or an event.
#[derive(Debug, Clone, PartialEq)]
pub enum AuditItem {
    /// Where the stream's hot part starts.
    Anchor(Anchor),
    /// An event.
    Event(AuditEvent),
}

/// Everything one ingest (or replay) commits, all or nothing.
#[derive(Debug, Clone)]
pub struct Commit {
    /// The claim held; the commit fails with [`StorageError::ClaimLost`](super::StorageError::ClaimLost)
    /// if it is not current.
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
    /// The connection pool of a store behind a network (`None` for an embedded one).
    pub pool: Option<PoolDepth>,
    /// The oldest transaction open on the store's database, if it keeps one open elsewhere
    /// (`None` for an embedded store, or when none is open).
    pub oldest_transaction: Option<OpenTransaction>,
}

/// A connection pool's state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolDepth {
    /// Connections it may open.
    pub max: u64,
    /// Connections open.
    pub open: u64,
    /// Of those, idle.
    pub idle: u64,
    /// Calls waiting for a connection now.
    pub waiting: u64,
    /// Calls that waited for a connection since the store opened.
    pub waits: u64,
    /// Calls that got no connection since the store opened.
    pub errors: u64,
}

/// A transaction open on the database: while one is, the database keeps what it could
/// clean up, and the rows it locks wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenTransaction {
    /// The backend process holding it.
    pub pid: i32,
    /// How long it has been open.
    pub age: std::time::Duration,
    /// Its state (`idle in transaction`, `active`, …).
    pub state: String,
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

/// What one page of [`super::Storage::forget_messages`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forgot {
    /// Messages removed.
    pub removed: u64,
    /// The last message read: where the next page starts.
    pub last: Option<String>,
    /// Whether the pass is over (the page ended it, or the store has no more).
    pub ended: bool,
}

impl Forgot {
    /// One page as a backend reads it: `messages` (id, route, when received) in id order,
    /// at most `limit`, each put to `forget`. The ids to remove, and the page.
    ///
    /// # Errors
    ///
    /// The first error `messages` yields.
    pub(crate) fn page<E>(
        messages: impl Iterator<Item = Result<(String, String, Timestamp), E>>,
        limit: usize,
        forget: &(dyn Fn(&str, &str, Timestamp) -> Option<bool> + Sync),
    ) -> Result<(Vec<String>, Self), E> {
        let (mut gone, mut page, mut read) = (Vec::new(), Self::default(), 0);
        for message in messages.take(limit) {
            let (id, route, received) = message?;
            read += 1;
            match forget(&id, &route, received) {
                None => {
                    page.ended = true;
                    break;
                }
                Some(true) => gone.push(id.clone()),
                Some(false) => {}
            }
            page.last = Some(id);
        }
        page.ended |= read < limit;
        page.removed = gone.len() as u64;
        Ok((gone, page))
    }
}

/// What a plugin serves, as the hosts sharing a store share it: the version made active, or
/// the one serving as a canary beside it, with the component itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedPlugin {
    /// The plugin's name.
    pub name: String,
    /// The sha256 of the version.
    pub sha256: String,
    /// `Some(percent)` when it serves as a canary, else it is the active version.
    pub canary: Option<u8>,
    /// The component.
    pub wasm: Vec<u8>,
    /// The host that made the change (each host process draws its own).
    pub origin: i64,
    /// Its place among the store's plugin changes (given by the store).
    pub generation: u64,
}
