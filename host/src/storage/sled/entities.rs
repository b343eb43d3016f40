//! Entity streams in the sled store: reading streams, snapshots and the entity types by route
//! (a commit's events are appended by the shared chain code, `sled/chains.rs`).

use std::collections::{BTreeMap, BTreeSet};

use super::{Db, sled_error};
use crate::storage::codec::{
    decode, encode, entity_key, entity_prefix, snapshot_key, snapshot_prefix,
};
use crate::storage::{EntityEvent, EntityRef, Snapshot, SnapshotBound, StorageError};

impl Db {
    pub(super) fn read_entity_stream(
        &self,
        entity: &EntityRef,
    ) -> Result<Vec<EntityEvent>, StorageError> {
        self.tree()
            .scan_prefix(entity_prefix(entity))
            .map(|item| {
                let (k, v) = item.map_err(sled_error)?;
                decode::<EntityEvent>(&k, &v)
            })
            .collect()
    }

    pub(super) fn read_entity_events(
        &self,
        entity: &EntityRef,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EntityEvent>, StorageError> {
        let start = entity_key(entity, after.saturating_add(1));
        let end = entity_key(entity, u64::MAX);
        self.tree()
            .range(start..=end)
            .take(limit)
            .map(|item| {
                let (k, v) = item.map_err(sled_error)?;
                decode::<EntityEvent>(&k, &v)
            })
            .collect()
    }

    pub(super) fn read_entity_snapshot(
        &self,
        entity: &EntityRef,
        projector: &str,
        bound: SnapshotBound,
    ) -> Result<Option<Snapshot>, StorageError> {
        // Latest first: a read of the present stops at the first one.
        for item in self
            .tree()
            .scan_prefix(snapshot_prefix(projector, entity))
            .rev()
        {
            let (k, v) = item.map_err(sled_error)?;
            let snapshot = decode::<Snapshot>(&k, &v)?;
            if snapshot.fits(bound) {
                return Ok(Some(snapshot));
            }
        }
        Ok(None)
    }

    pub(super) fn write_entity_snapshot(
        &self,
        entity: &EntityRef,
        projector: &str,
        snapshot: &Snapshot,
    ) -> Result<(), StorageError> {
        self.tree()
            .insert(
                snapshot_key(projector, entity, snapshot.seq),
                encode(snapshot),
            )
            .map_err(sled_error)?;
        Ok(())
    }

    pub(super) fn walk_entity_streams(
        &self,
        visit: &mut crate::storage::EntityVisit<'_>,
    ) -> Result<(), StorageError> {
        for item in self.tree().scan_prefix(b"n\0") {
            let (k, v) = item.map_err(sled_error)?;
            // The stream is named by the key, so an event moved between streams is caught.
            let mut parts = k[2..].split(|b| *b == 0);
            let entity = EntityRef {
                entity_type: String::from_utf8_lossy(parts.next().unwrap_or_default()).into(),
                id: String::from_utf8_lossy(parts.next().unwrap_or_default()).into(),
            };
            visit(&entity, decode::<EntityEvent>(&k, &v)?)?;
        }
        Ok(())
    }

    pub(super) fn read_entity_types(
        &self,
    ) -> Result<BTreeMap<String, BTreeSet<String>>, StorageError> {
        let mut types: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for item in self.tree().scan_prefix(b"y\0") {
            let (k, _) = item.map_err(sled_error)?;
            let mut parts = k[2..].splitn(2, |b| *b == 0);
            let route = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
            let entity_type = String::from_utf8_lossy(parts.next().unwrap_or_default());
            types
                .entry(route)
                .or_default()
                .insert(entity_type.into_owned());
        }
        Ok(types)
    }
}
