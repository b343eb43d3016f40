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
    /// When the host committed it, as the stream tells it: the commit's time, or its
    /// predecessor's when that is later (a commit that took its time before another's may
    /// land after it), so that commit times never go back along a stream and "the state as
    /// committed at T" is a prefix of the stream.
    pub committed_at: Timestamp,
    /// When it happened, by the vendor's word, if it says.
    pub occurred_at: Option<Timestamp>,
    /// The hash of the stream's previous event (64 zeros for the first).
    #[serde(with = "super::codec::hex_digest")]
    pub prev: String,
    /// This event's hash: sha256 over `prev` and the event's other fields.
    #[serde(with = "super::codec::hex_digest")]
    pub hash: String,
}

/// An entity's state folded through its stream's first `seq` events by one projector version,
/// kept so that a later read folds from here: at most N events more rather than the whole
/// stream. Derived data: a snapshot can be dropped at any time, and a new projector version
/// never reads an old version's (they are keyed by its name, version and hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The last event folded into it.
    pub seq: u64,
    /// That event's commit time in the stream (the latest of every event folded, since the
    /// stream's commit times never go back).
    pub committed_at: Timestamp,
    /// The latest event time among the events folded (an event without one counts its
    /// commit time).
    pub occurred_until: Timestamp,
    /// The state, JSON.
    pub state: String,
    /// The events the projector refused on the way.
    pub refused: Vec<RefusedEvent>,
}

/// An event of a stream that its projector refused: the state stayed as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedEvent {
    /// Its place in the stream.
    pub seq: u64,
    /// The projector's code, for example `already-shipped`.
    pub code: String,
    /// The projector's sentence.
    pub message: String,
}

/// Which snapshot a read can start from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotBound {
    /// The latest.
    Latest,
    /// The latest whose events were all committed at or before this instant.
    CommittedBy(Timestamp),
    /// The latest whose events all happened at or before this instant.
    OccurredBy(Timestamp),
}

impl Snapshot {
    /// Whether a read bounded by `bound` may start from this snapshot.
    pub fn fits(&self, bound: SnapshotBound) -> bool {
        match bound {
            SnapshotBound::Latest => true,
            SnapshotBound::CommittedBy(at) => self.committed_at <= at,
            SnapshotBound::OccurredBy(at) => self.occurred_until <= at,
        }
    }
}
