//! A write being staged under the writer lock: its key writes, and the heads it moved.
//!
//! Several commits may go to sled as one batch (`sled/group.rs`). A commit that reads a
//! head (the last event of an audit or entity stream, whether a delivery chain or a dead
//! letter exists) must then see what the commits before it in the same batch wrote, which
//! the tree does not have yet: [`Staging`] reads its own writes first, then the group's
//! ([`Pending`]), then the tree. A commit's staging joins the group only once it is whole,
//! so a commit that fails half way leaves nothing behind.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use ::sled::IVec;

use super::chains::{Stored, audit_item};
use super::{Db, sled_error};
use crate::chain::Tip;
use crate::storage::codec::{
    audit_prefix, dead_letter_key, decode, encode, entity_prefix, head_key, route_dead_letter_key,
};
use crate::storage::{AuditEvent, DeadLetter, EntityEvent, EntityRef, StorageError};

/// Key writes in order, a later one of a key winning, as in a sled batch; unlike one, they
/// can be appended to another's.
#[derive(Debug, Default)]
pub(super) struct Writes(Vec<(IVec, Option<IVec>)>);

impl Writes {
    pub(super) fn insert<K: Into<IVec>, V: Into<IVec>>(&mut self, key: K, value: V) {
        self.0.push((key.into(), Some(value.into())));
    }

    pub(super) fn remove<K: Into<IVec>>(&mut self, key: K) {
        self.0.push((key.into(), None));
    }

    pub(super) fn append(&mut self, other: Writes) {
        self.0.extend(other.0);
    }

    pub(super) fn into_batch(self) -> ::sled::Batch {
        let mut batch = ::sled::Batch::default();
        for (key, value) in self.0 {
            match value {
                Some(value) => batch.insert(key, value),
                None => batch.remove(key),
            }
        }
        batch
    }
}

/// What writes staged before, in the same batch, moved: heads the tree does not have yet.
#[derive(Debug, Default)]
pub(super) struct Pending {
    audit: BTreeMap<String, AuditEvent>,
    entities: BTreeMap<EntityRef, EntityEvent>,
    /// (sink, partition key) whose head key is written.
    chains: BTreeSet<(String, String)>,
    /// Dead letter keys written (`true`) or removed (`false`).
    dead_letters: BTreeMap<Vec<u8>, bool>,
    /// (route, entity type) keys written.
    pub(super) types: HashSet<Vec<u8>>,
}

impl Pending {
    /// Takes in what a later staging moved.
    pub(super) fn absorb(&mut self, later: Pending) {
        self.audit.extend(later.audit);
        self.entities.extend(later.entities);
        self.chains.extend(later.chains);
        self.dead_letters.extend(later.dead_letters);
        self.types.extend(later.types);
    }
}

/// One write's staging: its own writes and moves, over what was staged before it.
#[derive(Debug)]
pub(super) struct Staging<'a> {
    before: &'a Pending,
    pub(super) own: Pending,
    pub(super) writes: Writes,
    /// The key of each entity event this commit wrote, by its outbox event's id: where that
    /// event's data is kept once.
    pub(super) entity_keys: HashMap<String, Vec<u8>>,
}

impl<'a> Staging<'a> {
    /// A staging after `before`, starting with `writes`.
    pub(super) fn new(before: &'a Pending, writes: Writes) -> Self {
        Self {
            before,
            own: Pending::default(),
            writes,
            entity_keys: HashMap::new(),
        }
    }

    /// Where `message_id`'s audit stream stands: its last event, or its anchor.
    pub(super) fn audit_head(
        &self,
        db: &Db,
        message_id: &str,
    ) -> Result<Option<Tip>, StorageError> {
        if let Some(head) = self
            .own
            .audit
            .get(message_id)
            .or_else(|| self.before.audit.get(message_id))
        {
            return Ok(Some(head.tip()));
        }
        match db
            .tree()
            .scan_prefix(audit_prefix(message_id))
            .next_back()
            .transpose()
            .map_err(sled_error)?
        {
            Some((k, v)) => Ok(match audit_item(&k, &v)? {
                Stored::Anchor(anchor) => Some(anchor.tip()),
                Stored::Events(mut events) => events.pop().map(|e| e.tip()),
            }),
            None => Ok(None),
        }
    }

    pub(super) fn moved_audit(&mut self, head: AuditEvent) {
        self.own.audit.insert(head.message_id.clone(), head);
    }

    /// The last event of `entity`'s stream.
    pub(super) fn entity_head(
        &self,
        db: &Db,
        entity: &EntityRef,
    ) -> Result<Option<EntityEvent>, StorageError> {
        if let Some(head) = self
            .own
            .entities
            .get(entity)
            .or_else(|| self.before.entities.get(entity))
        {
            return Ok(Some(head.clone()));
        }
        db.tree()
            .scan_prefix(entity_prefix(entity))
            .next_back()
            .transpose()
            .map_err(sled_error)?
            .map(|(k, v)| decode::<EntityEvent>(&k, &v))
            .transpose()
    }

    pub(super) fn moved_entity(&mut self, head: EntityEvent) {
        self.own.entities.insert(head.entity.clone(), head);
    }

    /// Whether the delivery chain of `partition_key` at `sink` has its head key.
    pub(super) fn has_chain(
        &self,
        db: &Db,
        sink: &str,
        partition_key: &str,
    ) -> Result<bool, StorageError> {
        let chain = (sink.to_owned(), partition_key.to_owned());
        if self.own.chains.contains(&chain) || self.before.chains.contains(&chain) {
            return Ok(true);
        }
        db.contains(&head_key(sink, partition_key))
    }

    pub(super) fn opened_chain(&mut self, sink: &str, partition_key: &str) {
        self.own
            .chains
            .insert((sink.to_owned(), partition_key.to_owned()));
    }

    /// Whether the dead letter stored under `key` exists.
    pub(super) fn has_dead_letter(&self, db: &Db, key: &[u8]) -> Result<bool, StorageError> {
        match self
            .own
            .dead_letters
            .get(key)
            .or_else(|| self.before.dead_letters.get(key))
        {
            Some(present) => Ok(*present),
            None => db.contains(key),
        }
    }

    /// Writes `entry` (new, or in place of itself), indexed under its route.
    pub(super) fn put_dead_letter(&mut self, entry: &DeadLetter) {
        let key = dead_letter_key(&entry.id);
        self.writes.insert(key.as_slice(), encode(entry));
        self.writes
            .insert(route_dead_letter_key(&entry.route, &entry.id), &[]);
        self.own.dead_letters.insert(key, true);
    }

    pub(super) fn remove_dead_letter(&mut self, entry: &DeadLetter) {
        let key = dead_letter_key(&entry.id);
        self.writes.remove(key.as_slice());
        self.writes
            .remove(route_dead_letter_key(&entry.route, &entry.id));
        self.own.dead_letters.insert(key, false);
    }

    /// Whether a (route, entity type) key is written, in the tree (`known`) or staged.
    pub(super) fn has_type(&self, known: Option<&HashSet<Vec<u8>>>, key: &[u8]) -> bool {
        known.is_some_and(|k| k.contains(key))
            || self.own.types.contains(key)
            || self.before.types.contains(key)
    }

    pub(super) fn put_type(&mut self, key: Vec<u8>) {
        self.writes.insert(key.as_slice(), &[]);
        self.own.types.insert(key);
    }
}
