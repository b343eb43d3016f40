//! Entity streams: every committed domain event is also appended to the stream of the entity
//! it is about (`order` / `A-1001`), in the same commit that puts it in the outbox, so the
//! life of an entity can be read back in commit order and folded to its state at any instant.
//! Streams are append-only and hash-chained like the audit trail; `verify` finds an edited,
//! removed or reordered event.
//!
//! Pure functions; the store decides where events live.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Deserialize;

use crate::audit::Finding;
use crate::chain::{self, GENESIS, Link, Walk, Walker};
use crate::storage::{EntityDraft, EntityEvent, EntityRef, OutboxEvent};

impl EntityRef {
    /// The entity an event is about: the first segment of its type and its subject; `None`
    /// for a type without a dot (which the host refuses before any commit).
    pub fn of(event_type: &str, subject: &str) -> Option<Self> {
        let (entity_type, _) = event_type.split_once('.')?;
        Some(Self {
            entity_type: entity_type.to_owned(),
            id: subject.to_owned(),
        })
    }

    /// `type/id`, as logs, findings and the command line show it.
    pub fn label(&self) -> String {
        format!("{}/{}", self.entity_type, self.id)
    }

    /// `entity:type/id`: its stream's name among all chains, as findings and checkpoints
    /// name it (an audit stream is named by its message id alone).
    pub fn chain(&self) -> String {
        format!("entity:{}/{}", self.entity_type, self.id)
    }
}

/// The draft that appends `event` to its entity's stream, with the event time its data
/// gives (`"occurred_at"`, RFC 3339), if any.
pub(crate) fn draft(event: &OutboxEvent) -> Option<EntityDraft> {
    /// Only the one field is read; the rest of the payload is skipped, not built.
    #[derive(Deserialize)]
    struct EventTime {
        occurred_at: Option<String>,
    }
    let entity = EntityRef::of(&event.event_type, &event.subject)?;
    let occurred_at = serde_json::from_str::<EventTime>(&event.data)
        .ok()
        .and_then(|t| t.occurred_at)
        .and_then(|text| text.parse::<Timestamp>().ok());
    Some(EntityDraft {
        entity,
        event: event.clone(),
        occurred_at,
    })
}

/// Gives a draft its place and hash, after `head` (the stream's last event, if any).
pub(crate) fn seal(head: Option<&EntityEvent>, draft: EntityDraft) -> EntityEvent {
    let (seq, prev, committed_at) = match head {
        Some(head) => (
            head.seq + 1,
            head.hash.clone(),
            draft.event.time.max(head.committed_at),
        ),
        None => (1, GENESIS.to_owned(), draft.event.time),
    };
    let mut event = EntityEvent {
        entity: draft.entity,
        seq,
        event: draft.event,
        committed_at,
        occurred_at: draft.occurred_at,
        prev,
        hash: String::new(),
    };
    event.hash = hash(&event);
    event
}

/// sha256 over the previous hash and every other field, in a fixed order.
fn hash(event: &EntityEvent) -> String {
    let e = &event.event;
    let producer = e
        .producer
        .as_ref()
        .map(|p| format!("{}@{} {}", p.name, p.version, p.sha256))
        .unwrap_or_default();
    let occurred = event.occurred_at.map(|t| t.to_string()).unwrap_or_default();
    chain::digest(&[
        event.prev.as_bytes(),
        event.entity.entity_type.as_bytes(),
        event.entity.id.as_bytes(),
        &event.seq.to_be_bytes(),
        e.id.as_bytes(),
        e.message_id.as_bytes(),
        e.route.as_bytes(),
        e.event_type.as_bytes(),
        e.subject.as_bytes(),
        e.partition_key.as_bytes(),
        e.data.as_bytes(),
        e.time.to_string().as_bytes(),
        producer.as_bytes(),
        occurred.as_bytes(),
        event.committed_at.to_string().as_bytes(),
    ])
}

impl EntityEvent {
    /// When it happened: its event time, or its commit time when the vendor said none.
    pub fn occurred_or_committed(&self) -> Timestamp {
        self.occurred_at.unwrap_or(self.committed_at)
    }
}

/// Walks every stream as `audit::verify` walks the audit trail: places must run 1, 2, 3…,
/// each event must hash to its `hash` and each `prev` be the hash before it. A finding names
/// its stream `entity:TYPE/ID`.
pub fn verify(streams: &BTreeMap<EntityRef, Vec<EntityEvent>>) -> Vec<Finding> {
    let mut walker = Walker::default();
    for (entity, events) in streams {
        for event in events {
            let walk = walker.of(entity, || entity.chain());
            step(walk, entity, event);
        }
    }
    walker.finish().1
}

/// Checks the next event of `entity`'s stream, which `walk` is on.
pub(crate) fn step(walk: &mut Walk, entity: &EntityRef, event: &EntityEvent) {
    if event.entity != *entity {
        let problem = format!(
            "event names stream {} but is stored in {}",
            event.entity.label(),
            entity.label()
        );
        walk.found(event.seq, problem);
    }
    walk.step(&Link {
        position: event.seq,
        prev: &event.prev,
        hash: &event.hash,
        computed: hash(event),
    });
}

#[cfg(test)]
mod tests;
