//! The audit trail's and the entity streams' chains as every backend writes them: drafts
//! grouped by stream, each sealed after its stream's head by the chain rules
//! (`audit::seal`, `entity::seal`), one audit record per commit and stream. A backend stores
//! and reads; it hands its write in progress over as a [`ChainWrite`]: the heads as that
//! write sees them (its own earlier writes included), and where sealed events go.

use std::collections::BTreeMap;

use super::{AuditDraft, AuditEvent, EntityDraft, EntityEvent, EntityRef, StorageError};
use crate::chain::Tip;
use crate::{audit, entity};

/// A backend's write in progress, as the chains need it. The backend holds what keeps two
/// writes from sealing after one head (a writer lock, a row lock).
pub(crate) trait ChainWrite {
    /// Where audit stream `stream` stands: its last event, or its anchor when every event
    /// was archived.
    ///
    /// # Errors
    ///
    /// When the backend fails.
    fn audit_head(&mut self, stream: &str) -> Result<Option<Tip>, StorageError>;

    /// Writes one commit's sealed events of audit stream `stream`, in order.
    fn put_audit_segment(&mut self, stream: &str, segment: Vec<AuditEvent>);

    /// The last event of `entity`'s stream.
    ///
    /// # Errors
    ///
    /// When the backend fails.
    fn entity_head(&mut self, entity: &EntityRef) -> Result<Option<EntityEvent>, StorageError>;

    /// Writes one sealed event of its entity's stream.
    fn put_entity_event(&mut self, event: EntityEvent);
}

/// Seals audit drafts onto their streams, each stream's after its head, in `write`.
///
/// # Errors
///
/// When a head cannot be read.
pub(crate) fn append_audit(
    write: &mut impl ChainWrite,
    drafts: Vec<AuditDraft>,
) -> Result<(), StorageError> {
    for (stream, drafts) in by_stream(drafts) {
        let head = write.audit_head(&stream)?;
        let segment = seal_segment(head, drafts);
        if !segment.is_empty() {
            write.put_audit_segment(&stream, segment);
        }
    }
    Ok(())
}

/// Appends each entity draft to its stream after the stream's head, in `write` (several
/// drafts of one commit may be about one entity: each is the next one's head).
///
/// # Errors
///
/// When a head cannot be read.
pub(crate) fn append_entities(
    write: &mut impl ChainWrite,
    drafts: Vec<EntityDraft>,
) -> Result<(), StorageError> {
    for draft in drafts {
        let head = write.entity_head(&draft.entity)?;
        write.put_entity_event(entity::seal(head.as_ref(), draft));
    }
    Ok(())
}

/// A new message's audit stream, sealed from its start without a read: the segment that
/// opens it (empty when no draft is its own), and the drafts of other streams, which go
/// after their heads.
pub(crate) fn open_stream(
    message_id: &str,
    drafts: Vec<AuditDraft>,
) -> (Vec<AuditEvent>, Vec<AuditDraft>) {
    let (own, others): (Vec<_>, Vec<_>) = drafts
        .into_iter()
        .partition(|draft| draft.message_id == message_id);
    (seal_segment(None, own), others)
}

/// Drafts by the stream they join, each stream's in order.
fn by_stream(drafts: Vec<AuditDraft>) -> BTreeMap<String, Vec<AuditDraft>> {
    let mut streams: BTreeMap<String, Vec<AuditDraft>> = BTreeMap::new();
    for draft in drafts {
        streams
            .entry(draft.message_id.clone())
            .or_default()
            .push(draft);
    }
    streams
}

/// One stream's drafts sealed after `head` (none: they open the stream).
fn seal_segment(mut head: Option<Tip>, drafts: Vec<AuditDraft>) -> Vec<AuditEvent> {
    let mut segment = Vec::with_capacity(drafts.len());
    for draft in drafts {
        let event = audit::seal(head.as_ref(), draft);
        head = Some(event.tip());
        segment.push(event);
    }
    segment
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use jiff::Timestamp;
    use serde_json::json;

    use super::*;

    /// A write in memory: streams as the chain code leaves them, one entry per segment.
    #[derive(Default)]
    struct Memory {
        audit: BTreeMap<String, Vec<Vec<AuditEvent>>>,
        entities: BTreeMap<EntityRef, Vec<EntityEvent>>,
    }

    impl ChainWrite for Memory {
        fn audit_head(&mut self, stream: &str) -> Result<Option<Tip>, StorageError> {
            Ok(self
                .audit
                .get(stream)
                .and_then(|segments| Some(segments.last()?.last()?.tip())))
        }

        fn put_audit_segment(&mut self, stream: &str, segment: Vec<AuditEvent>) {
            self.audit
                .entry(stream.to_owned())
                .or_default()
                .push(segment);
        }

        fn entity_head(&mut self, entity: &EntityRef) -> Result<Option<EntityEvent>, StorageError> {
            Ok(self.entities.get(entity).and_then(|s| s.last().cloned()))
        }

        fn put_entity_event(&mut self, event: EntityEvent) {
            self.entities
                .entry(event.entity.clone())
                .or_default()
                .push(event);
        }
    }

    fn draft(stream: &str, kind: &str) -> AuditDraft {
        AuditDraft::new(stream, Timestamp::UNIX_EPOCH, kind, json!({}))
    }

    fn streams(memory: &Memory) -> BTreeMap<String, Vec<AuditEvent>> {
        memory
            .audit
            .iter()
            .map(|(id, segments)| (id.clone(), segments.concat()))
            .collect()
    }

    #[test]
    fn each_write_seals_one_segment_per_stream_after_its_head() {
        let mut memory = Memory::default();
        let (opening, others) = open_stream(
            "m1",
            vec![
                draft("m1", "received"),
                draft("m0", "noted"),
                draft("m1", "committed"),
            ],
        );
        assert_eq!(
            opening.iter().map(|e| e.version).collect::<Vec<_>>(),
            [1, 2]
        );
        memory.put_audit_segment("m1", opening);
        append_audit(&mut memory, others).unwrap();
        append_audit(
            &mut memory,
            vec![
                draft("m1", "delivered"),
                draft("m0", "again"),
                draft("m1", "published"),
            ],
        )
        .unwrap();
        assert_eq!(memory.audit["m1"].len(), 2, "one segment per write");
        let versions: Vec<u64> = memory.audit["m1"][1].iter().map(|e| e.version).collect();
        assert_eq!(versions, [3, 4]);
        assert_eq!(memory.audit["m0"].len(), 2);
        assert!(crate::audit::verify(&streams(&memory)).is_empty());
    }

    #[test]
    fn entity_drafts_of_one_write_chain_onto_each_other() {
        let mut memory = Memory::default();
        let entity = EntityRef {
            entity_type: "order".into(),
            id: "A-1".into(),
        };
        let event = |n: u64| {
            let event = crate::storage::OutboxEvent {
                id: format!("e{n}"),
                message_id: format!("m{n}"),
                route: "orders".into(),
                event_type: "order.created.v1".into(),
                subject: "A-1".into(),
                partition_key: "A-1".into(),
                data: "{}".into(),
                time: Timestamp::UNIX_EPOCH,
                traceparent: String::new(),
                tracestate: None,
                producer: None,
            };
            EntityDraft {
                entity: entity.clone(),
                event,
                occurred_at: None,
            }
        };
        append_entities(&mut memory, vec![event(1), event(2)]).unwrap();
        append_entities(&mut memory, vec![event(3)]).unwrap();
        let stream = &memory.entities[&entity];
        assert_eq!(stream.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert!(crate::entity::verify(&memory.entities).is_empty());
    }
}
