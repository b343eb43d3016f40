//! The records of entity streams: which entity an event is about, a draft to append, and an
//! event as its stream keeps it. The rules (which entity, sealing, verifying) are in
//! `crate::entity`.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::OutboxEvent;

/// The entity a domain event is about: the first segment of its type (`order` in
/// `order.paid.v1`) and its subject.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct EntityRef {
    /// The entity type, for example `order`.
    pub entity_type: String,
    /// The entity's id: the events' subject.
    pub id: String,
}

/// An event to append to its entity's stream, in the commit that puts it in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityDraft {
    /// The stream.
    pub entity: EntityRef,
    /// The event, as committed (its commit time is `event.time`).
    pub event: OutboxEvent,
    /// When it happened, by the vendor's word (`occurred_at` in its data), if it says.
    pub occurred_at: Option<Timestamp>,
}

/// An event in its entity's stream: append-only, chained to its predecessor by hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntityEvent {
    /// The stream.
    pub entity: EntityRef,
    /// 1 for the stream's first event, then one more each time: its commit order.
    pub seq: u64,
    /// The event: its id, type, data, commit time, the message and plugin version it came
    /// from.
    pub event: OutboxEvent,
    /// When it happened, by the vendor's word, if it says.
    pub occurred_at: Option<Timestamp>,
    /// The hash of the stream's previous event (64 zeros for the first).
    pub prev: String,
    /// This event's hash: sha256 over `prev` and the event's other fields.
    pub hash: String,
}
