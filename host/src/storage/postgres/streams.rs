//! The chains walked: every audit event and every entity event, by pages in key order
//! (what verification reads), and the latest snapshot that fits a bound, latest first; and
//! audit streams cut where their archived events end.

use super::commit::{Lock, lock};
use super::connections::{Connections, pg_error};
use super::{PAGE, record};
use crate::storage::codec::encode;
use crate::storage::{
    AuditItem, AuditVisit, EntityRef, EntityVisit, Snapshot, SnapshotBound, StorageError, StreamCut,
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

/// Cuts audit streams, in one transaction under each stream's lock: the events up to a cut's
/// version go, and its anchor takes version 0 (a closed stream's anchor goes). A stream with
/// nothing at or below the cut's version (cut as far or further already) is left as it is.
pub(super) async fn archive_audit(
    pool: &Connections,
    cuts: &[StreamCut],
) -> Result<(), StorageError> {
    if cuts.is_empty() {
        return Ok(());
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    lock(
        &tx,
        cuts.iter().map(|c| Lock::Audit.key(&c.stream)).collect(),
    )
    .await?;
    let streams: Vec<&str> = cuts.iter().map(|c| c.stream.as_str()).collect();
    let versions: Vec<i64> = cuts.iter().map(|c| c.version as i64).collect();
    let anchors: Vec<Option<Vec<u8>>> =
        cuts.iter().map(|c| c.anchor.as_ref().map(encode)).collect();
    let statement = tx
        .prepare_cached(
            "WITH cut AS (
                 SELECT * FROM unnest($1::text[], $2::int8[], $3::bytea[])
                     AS c(stream, version, anchor)
             ), gone AS (
                 DELETE FROM dragoman.audit a USING cut
                 WHERE a.stream = cut.stream AND a.version BETWEEN 1 AND cut.version
                 RETURNING a.stream
             ), closed AS (
                 DELETE FROM dragoman.audit a USING cut
                 WHERE a.stream = cut.stream AND a.version = 0 AND cut.anchor IS NULL
                   AND EXISTS (SELECT 1 FROM gone WHERE gone.stream = cut.stream)
                 RETURNING a.stream
             )
             INSERT INTO dragoman.audit (stream, version, event)
             SELECT stream, 0, anchor FROM cut
             WHERE anchor IS NOT NULL
               AND EXISTS (SELECT 1 FROM gone WHERE gone.stream = cut.stream)
             ON CONFLICT (stream, version) DO UPDATE SET event = EXCLUDED.event",
        )
        .await
        .map_err(pg_error)?;
    tx.execute(&statement, &[&streams, &versions, &anchors])
        .await
        .map_err(pg_error)?;
    tx.commit().await.map_err(pg_error)
}
