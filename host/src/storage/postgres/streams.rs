//! The chains walked: every audit event and every entity event, by pages in key order
//! (what verification reads), and the latest snapshot that fits a bound, latest first.

use super::connections::Connections;
use super::{PAGE, record};
use crate::storage::{
    AuditItem, AuditVisit, EntityRef, EntityVisit, Snapshot, SnapshotBound, StorageError,
};

/// Every audit event, stream by stream, read by pages in key order.
pub(super) async fn walk_audit(
    pool: &Connections,
    visit: &mut AuditVisit<'_>,
) -> Result<(), StorageError> {
    let (mut stream, mut version) = (String::new(), -1i64);
    loop {
        let rows = pool
            .query(
                "SELECT stream, version, event FROM dragoman.audit
                 WHERE (stream, version) > ($1, $2) ORDER BY stream, version LIMIT $3",
                &[&stream, &version, &PAGE],
            )
            .await?;
        let full = rows.len() as i64 == PAGE;
        for row in rows {
            stream = row.get(0);
            version = row.get(1);
            // The stream is named by the row, so an event moved between streams is caught.
            let bytes: Vec<u8> = row.get(2);
            let item = if version == 0 {
                AuditItem::Anchor(record("audit anchor", &stream, &bytes)?)
            } else {
                AuditItem::Event(record("audit event", &stream, &bytes)?)
            };
            visit(&stream, item)?;
        }
        if !full {
            return Ok(());
        }
    }
}

/// The latest snapshot of `entity` by `projector` that fits `bound`.
pub(super) async fn snapshot(
    pool: &Connections,
    entity: &EntityRef,
    projector: &str,
    bound: SnapshotBound,
) -> Result<Option<Snapshot>, StorageError> {
    // Latest first, a page at a time: a read of the present stops at the first one.
    let mut below = i64::MAX;
    loop {
        let rows = pool
            .query(
                "SELECT seq, snapshot FROM dragoman.snapshots
                 WHERE projector = $1 AND entity_type = $2 AND entity_id = $3 AND seq < $4
                 ORDER BY seq DESC LIMIT $5",
                &[&projector, &entity.entity_type, &entity.id, &below, &PAGE],
            )
            .await?;
        let full = rows.len() as i64 == PAGE;
        for row in &rows {
            below = row.get(0);
            let snapshot: Snapshot = record("snapshot", &entity.id, &row.get::<_, Vec<u8>>(1))?;
            if snapshot.fits(bound) {
                return Ok(Some(snapshot));
            }
        }
        if !full {
            return Ok(None);
        }
    }
}

/// Every entity event, stream by stream, read by pages in key order.
pub(super) async fn walk_entities(
    pool: &Connections,
    visit: &mut EntityVisit<'_>,
) -> Result<(), StorageError> {
    let (mut entity_type, mut id, mut seq) = (String::new(), String::new(), 0i64);
    loop {
        let rows = pool
            .query(
                "SELECT entity_type, entity_id, seq, event FROM dragoman.entity_events
                 WHERE (entity_type, entity_id, seq) > ($1, $2, $3)
                 ORDER BY entity_type, entity_id, seq LIMIT $4",
                &[&entity_type, &id, &seq, &PAGE],
            )
            .await?;
        let full = rows.len() as i64 == PAGE;
        for row in rows {
            entity_type = row.get(0);
            id = row.get(1);
            seq = row.get(2);
            // The stream is named by the row, so an event moved between streams is caught.
            let entity = EntityRef {
                entity_type: entity_type.clone(),
                id: id.clone(),
            };
            let event = record("entity event", &id, &row.get::<_, Vec<u8>>(3))?;
            visit(&entity, event)?;
        }
        if !full {
            return Ok(());
        }
    }
}
