//! The chains in the sled store: its write in progress (a [`Staging`] under the writer lock)
//! as the shared chain code's [`ChainWrite`], which seals; here are only where a sealed event
//! goes (one record per commit and audit stream; one key per entity event, with the entity
//! type indexed under its route) and how a head is read (the staging's, else the tree's).

use std::collections::HashSet;

use ::sled::IVec;

use super::staging::{Staging, Writes};
use super::{Db, sled_error};
use crate::chain::Tip;
use crate::storage::chains::{self, ChainWrite};
use crate::storage::codec::{
    AuditRecord, audit_key, audit_prefix, decode, encode, entity_key, entity_type_key,
};
use crate::storage::{
    Anchor, AuditDraft, AuditEvent, AuditItem, EntityDraft, EntityEvent, EntityRef, StorageError,
    StreamCut,
};

/// A staging, as the chains write into it.
struct Chained<'s, 'a, 'k> {
    db: &'s Db,
    staging: &'s mut Staging<'a>,
    /// The (route, entity type) keys the tree has, when entity events are written.
    known_types: Option<&'k HashSet<Vec<u8>>>,
}

impl ChainWrite for Chained<'_, '_, '_> {
    fn audit_head(&mut self, stream: &str) -> Result<Option<Tip>, StorageError> {
        self.staging.audit_head(self.db, stream)
    }

    fn put_audit_segment(&mut self, stream: &str, segment: Vec<AuditEvent>) {
        let head = segment.last().cloned();
        let (key, value) = segment_record(stream, segment);
        self.staging.writes.insert(key, value);
        if let Some(head) = head {
            self.staging.moved_audit(head);
        }
    }

    fn entity_head(&mut self, entity: &EntityRef) -> Result<Option<EntityEvent>, StorageError> {
        self.staging.entity_head(self.db, entity)
    }

    fn put_entity_event(&mut self, event: EntityEvent) {
        let key = entity_key(&event.entity, event.seq);
        self.staging.writes.insert(key.as_slice(), encode(&event));
        self.staging.entity_keys.insert(event.event.id.clone(), key);
        let type_key = entity_type_key(&event.event.route, &event.entity.entity_type);
        if !self.staging.has_type(self.known_types, &type_key) {
            self.staging.put_type(type_key);
        }
        self.staging.moved_entity(event);
    }
}

impl Db {
    /// Seals audit drafts onto their streams, in `staging`.
    pub(super) fn append_audit(
        &self,
        staging: &mut Staging<'_>,
        drafts: Vec<AuditDraft>,
    ) -> Result<(), StorageError> {
        let mut chained = Chained {
            db: self,
            staging,
            known_types: None,
        };
        chains::append_audit(&mut chained, drafts)
    }

    /// Appends entity drafts to their streams, in `staging`; a (route, entity type) key not
    /// in `known` (the tree's) nor staged is written too.
    pub(super) fn append_entities(
        &self,
        staging: &mut Staging<'_>,
        drafts: Vec<EntityDraft>,
        known: &HashSet<Vec<u8>>,
    ) -> Result<(), StorageError> {
        let mut chained = Chained {
            db: self,
            staging,
            known_types: Some(known),
        };
        chains::append_entities(&mut chained, drafts)
    }
}

impl Db {
    /// Cuts each stream, under the writer lock: the records up to the cut's version go (a
    /// record that runs past it keeps its later events, under its first remaining version),
    /// and the anchor takes key version 0 (a closed stream's anchor goes), in one batch.
    pub(super) fn cut_audit(&self, cuts: &[StreamCut]) -> Result<(), StorageError> {
        let mut state = self.lock();
        let mut writes = Writes::default();
        for cut in cuts {
            let mut moved = false;
            for item in self.tree().scan_prefix(audit_prefix(&cut.stream)) {
                let (key, value) = item.map_err(sled_error)?;
                match audit_item(&key, &value)? {
                    Stored::Anchor(old) if old.version > cut.version => break,
                    Stored::Anchor(_) => {
                        moved = true;
                        writes.remove(&*key);
                    }
                    Stored::Events(events) => {
                        if events.first().is_none_or(|e| e.version > cut.version) {
                            break;
                        }
                        moved = true;
                        writes.remove(&*key);
                        let rest: Vec<AuditEvent> = events
                            .into_iter()
                            .filter(|e| e.version > cut.version)
                            .collect();
                        if !rest.is_empty() {
                            let (key, value) = segment_record(&cut.stream, rest);
                            writes.insert(key, value);
                        }
                    }
                }
            }
            if let (true, Some(anchor)) = (moved, &cut.anchor) {
                writes.insert(audit_key(&cut.stream, 0), encode(anchor));
            }
        }
        let counters = state.counters.clone();
        self.apply(&mut state, writes, counters)
    }
}

/// An audit key's record: a stream's anchor (under version 0), or one commit's events.
pub(super) enum Stored {
    Anchor(Anchor),
    Events(Vec<AuditEvent>),
}

/// Reads the record under an audit key.
pub(super) fn audit_item(key: &[u8], value: &[u8]) -> Result<Stored, StorageError> {
    if key.ends_with(&0u64.to_be_bytes()) {
        Ok(Stored::Anchor(decode(key, value)?))
    } else {
        Ok(Stored::Events(
            decode::<AuditRecord>(key, value)?.into_events(),
        ))
    }
}

/// The items under audit keys, as a walk hands them over.
pub(super) fn audit_items(key: &[u8], value: &[u8]) -> Result<Vec<AuditItem>, StorageError> {
    Ok(match audit_item(key, value)? {
        Stored::Anchor(anchor) => vec![AuditItem::Anchor(anchor)],
        Stored::Events(events) => events.into_iter().map(AuditItem::Event).collect(),
    })
}

/// A new message's stream, opened without a read: its head, and the drafts of other
/// streams, to be appended after their heads.
pub(super) struct Opened {
    pub(super) head: Option<AuditEvent>,
    pub(super) others: Vec<AuditDraft>,
}

/// Opens the stream of `message_id`, a new message, in `writes`, with its own drafts.
pub(super) fn open_stream(
    writes: &mut Writes,
    message_id: &str,
    drafts: Vec<AuditDraft>,
) -> Opened {
    let (segment, others) = chains::open_stream(message_id, drafts);
    let head = segment.last().cloned();
    if head.is_some() {
        let (key, value) = segment_record(message_id, segment);
        writes.insert(key, value);
    }
    Opened { head, others }
}

/// The record of one commit's events of an audit stream, under its first version.
fn segment_record(stream: &str, segment: Vec<AuditEvent>) -> (Vec<u8>, IVec) {
    let first = segment.first().map_or(0, |event| event.version);
    (
        audit_key(stream, first),
        encode(&AuditRecord::Segment(segment)).into(),
    )
}
