//! A commit as one SQL transaction, and the other writes that append to the chains.
//!
//! Each write first takes its transaction-scoped advisory locks (partition keys, audit
//! streams, entity streams), sorted, in one statement; then it reads the heads it will seal
//! after, in one statement per kind; then the shared chain code (`storage/chains.rs`) seals
//! in memory, and the sealed events go in one statement (a commit's with its message).

use std::collections::HashMap;

use deadpool_postgres::Transaction;

use super::{Connections, pg_error, record, us};
use crate::chain::Tip;
use crate::storage::chains::{self, ChainWrite};
use crate::storage::codec::encode;
use crate::storage::{
    Anchor, AuditDraft, AuditEvent, Commit, DeadLetter, DeadLetterKind, EntityDraft, EntityEvent,
    EntityRef, OutboxEvent, StorageError,
};

/// The kinds of advisory lock, each in a range of its own of the 64-bit key space.
#[derive(Debug, Clone, Copy)]
pub(super) enum Lock {
    /// A partition key: its events' numbers and its delivery chains.
    Partition = 1,
    /// An audit stream's head.
    Audit = 2,
    /// An entity stream's head.
    Entity = 3,
    /// A store's claims (a session lock, held while the store lives).
    Owner = 4,
}

impl Lock {
    /// The lock's key: its kind in the top byte, a hash of the name below (stable across
    /// processes and versions: every replica must compute the same key).
    pub(super) fn key(self, name: &str) -> i64 {
        // FNV-1a, 64 bits, folded to 56.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in name.as_bytes() {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        ((self as i64) << 56) | (hash & 0x00ff_ffff_ffff_ffff) as i64
    }
}

/// Takes `keys`' advisory locks for the rest of the transaction, in ascending order: every
/// writer takes its locks in that one order, so no two wait for each other.
pub(super) async fn lock(tx: &Transaction<'_>, mut keys: Vec<i64>) -> Result<(), StorageError> {
    if keys.is_empty() {
        return Ok(());
    }
    keys.sort_unstable();
    keys.dedup();
    let statement = tx
        .prepare_cached(
            "SELECT count(pg_advisory_xact_lock(k))
             FROM unnest($1::int8[]) WITH ORDINALITY AS l(k, n)",
        )
        .await
        .map_err(pg_error)?;
    tx.query_one(&statement, &[&keys]).await.map_err(pg_error)?;
    Ok(())
}

/// The audit streams `drafts` append to, as lock keys.
pub(super) fn audit_locks(drafts: &[AuditDraft]) -> impl Iterator<Item = i64> + '_ {
    drafts.iter().map(|d| Lock::Audit.key(&d.message_id))
}

/// The heads a write will seal after, read in one statement per kind, and what the chain
/// code sealed after them.
#[derive(Debug, Default)]
pub(super) struct Heads {
    audit: HashMap<String, Option<Tip>>,
    entities: HashMap<EntityRef, Option<EntityEvent>>,
    sealed_audit: Vec<AuditEvent>,
    sealed_entities: Vec<EntityEvent>,
}

impl ChainWrite for Heads {
    fn audit_head(&mut self, stream: &str) -> Result<Option<Tip>, StorageError> {
        self.audit.get(stream).cloned().ok_or_else(|| {
            StorageError::Backend(format!("the head of audit stream {stream} was not read"))
        })
    }

    fn put_audit_segment(&mut self, stream: &str, segment: Vec<AuditEvent>) {
        self.audit
            .insert(stream.to_owned(), segment.last().map(AuditEvent::tip));
        self.sealed_audit.extend(segment);
    }

    fn entity_head(&mut self, entity: &EntityRef) -> Result<Option<EntityEvent>, StorageError> {
        self.entities.get(entity).cloned().ok_or_else(|| {
            StorageError::Backend(format!(
                "the head of entity stream {} was not read",
                entity.id
            ))
        })
    }

    fn put_entity_event(&mut self, event: EntityEvent) {
        self.entities
            .insert(event.entity.clone(), Some(event.clone()));
        self.sealed_entities.push(event);
    }
}

impl Heads {
    /// Reads the heads of the streams `audit` and `entities` append to.
    pub(super) async fn read(
        tx: &Transaction<'_>,
        audit: &[AuditDraft],
        entities: &[EntityDraft],
    ) -> Result<Self, StorageError> {
        let mut heads = Self::default();
        let mut streams: Vec<&str> = audit.iter().map(|d| d.message_id.as_str()).collect();
        streams.sort_unstable();
        streams.dedup();
        if !streams.is_empty() {
            for stream in &streams {
                heads.audit.insert((*stream).to_owned(), None);
            }
            let statement = tx
                .prepare_cached(
                    "SELECT s, a.version, a.event FROM unnest($1::text[]) AS s
                     CROSS JOIN LATERAL (
                         SELECT version, event FROM dragoman.audit WHERE stream = s
                         ORDER BY version DESC LIMIT 1
                     ) a",
                )
                .await
                .map_err(pg_error)?;
            for row in tx.query(&statement, &[&streams]).await.map_err(pg_error)? {
                let stream: String = row.get(0);
                let version: i64 = row.get(1);
                let bytes: Vec<u8> = row.get(2);
                // Version 0 is the stream's anchor: every event before it was archived.
                let head = if version == 0 {
                    record::<Anchor>("audit anchor", &stream, &bytes)?.tip()
                } else {
                    record::<AuditEvent>("audit event", &stream, &bytes)?.tip()
                };
                heads.audit.insert(stream, Some(head));
            }
        }
        if !entities.is_empty() {
            let mut types = Vec::new();
            let mut ids = Vec::new();
            for draft in entities {
                if heads.entities.insert(draft.entity.clone(), None).is_none() {
                    types.push(draft.entity.entity_type.as_str());
                    ids.push(draft.entity.id.as_str());
                }
            }
            let statement = tx
                .prepare_cached(
                    "SELECT e.event FROM unnest($1::text[], $2::text[]) AS s(t, i)
                     CROSS JOIN LATERAL (
                         SELECT event FROM dragoman.entity_events
                         WHERE entity_type = s.t AND entity_id = s.i
                         ORDER BY seq DESC LIMIT 1
                     ) e",
                )
                .await
                .map_err(pg_error)?;
            for row in tx
                .query(&statement, &[&types, &ids])
                .await
                .map_err(pg_error)?
            {
                let head: EntityEvent = record("entity event", "head", &row.get::<_, Vec<u8>>(0))?;
                heads.entities.insert(head.entity.clone(), Some(head));
            }
        }
        Ok(heads)
    }
}

/// Sealed audit events as the columns of `dragoman.audit`: stream, version, event.
fn audit_columns(events: &[AuditEvent]) -> (Vec<&str>, Vec<i64>, Vec<Vec<u8>>) {
    (
        events.iter().map(|e| e.message_id.as_str()).collect(),
        events.iter().map(|e| e.version as i64).collect(),
        events.iter().map(encode).collect(),
    )
}

/// Writes sealed audit events.
async fn write_audit(tx: &Transaction<'_>, events: &[AuditEvent]) -> Result<(), StorageError> {
    if events.is_empty() {
        return Ok(());
    }
    let (streams, versions, bytes) = audit_columns(events);
    let statement = tx
        .prepare_cached(
            "INSERT INTO dragoman.audit (stream, version, event)
             SELECT * FROM unnest($1::text[], $2::int8[], $3::bytea[])",
        )
        .await
        .map_err(pg_error)?;
    tx.execute(&statement, &[&streams, &versions, &bytes])
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// Seals `drafts` after their heads and writes them, in `tx`, whose caller holds their
/// streams' locks.
pub(super) async fn append_audit(
    tx: &Transaction<'_>,
    drafts: Vec<AuditDraft>,
) -> Result<(), StorageError> {
    if drafts.is_empty() {
        return Ok(());
    }
    let mut heads = Heads::read(tx, &drafts, &[]).await?;
    chains::append_audit(&mut heads, drafts)?;
    write_audit(tx, &heads.sealed_audit).await
}

/// Puts `event` in the outbox for `sinks` (not empty), in `tx`, whose caller holds the
/// event's partition key lock: its number is taken now, after every commit before it on the
/// key. A key's first delivery to go at a sink is due at the event's time.
pub(super) async fn enqueue(
    tx: &Transaction<'_>,
    event: &OutboxEvent,
    sinks: &[String],
) -> Result<(), StorageError> {
    let statement = tx
        .prepare_cached(
            "WITH o AS (
                 INSERT INTO dragoman.outbox (partition_key, time_us, event, sinks_left)
                 VALUES ($1, $2, $3, $4) RETURNING seq
             ), d AS (
                 INSERT INTO dragoman.deliveries (sink, partition_key, seq)
                 SELECT s, $1, o.seq FROM o, unnest($5::text[]) AS s
             )
             INSERT INTO dragoman.chains (sink, partition_key, due_us)
             SELECT s, $1, $2 FROM unnest($5::text[]) AS s
             ON CONFLICT (sink, partition_key) DO NOTHING",
        )
        .await
        .map_err(pg_error)?;
    let left = i32::try_from(sinks.len()).unwrap_or(i32::MAX);
    tx.execute(
        &statement,
        &[
            &event.partition_key,
            &us(event.time),
            &encode(event),
            &left,
            &sinks,
        ],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// Writes a dead letter entry, new or in place of itself.
pub(super) async fn put_dead_letter(
    tx: &Transaction<'_>,
    entry: &DeadLetter,
) -> Result<(), StorageError> {
    let statement = tx
        .prepare_cached(
            "INSERT INTO dragoman.dead_letters (id, route, bytes, entry) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE
                 SET route = EXCLUDED.route, bytes = EXCLUDED.bytes, entry = EXCLUDED.entry",
        )
        .await
        .map_err(pg_error)?;
    let bytes = i64::try_from(entry.bytes).unwrap_or(i64::MAX);
    tx.execute(
        &statement,
        &[&entry.id, &entry.route, &bytes, &encode(entry)],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// Everything of one commit, in one transaction of few statements (each costs the database
/// more than the rows it writes): the locks with the key's outcome, the events for the
/// outbox, the heads to seal after, then the message and every sealed event in one.
pub(super) async fn commit(pool: &Connections, commit: Commit) -> Result<(), StorageError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let Commit {
        claim,
        completed,
        message,
        events,
        dead_letter,
        resolves,
        audit,
        new_message,
        entities,
    } = commit;
    // A new message's stream starts here: sealed without a read or a lock (nobody else
    // knows its id).
    let (opening, audit) = if new_message {
        chains::open_stream(&message.id, audit)
    } else {
        (Vec::new(), audit)
    };
    let events: Vec<(OutboxEvent, Vec<String>)> = events
        .into_iter()
        .filter(|(_, sinks)| !sinks.is_empty())
        .collect();
    let mut locks: Vec<i64> = events
        .iter()
        .map(|(event, _)| Lock::Partition.key(&event.partition_key))
        .chain(audit_locks(&audit))
        .chain(
            entities
                .iter()
                .map(|d| Lock::Entity.key(&format!("{}\0{}", d.entity.entity_type, d.entity.id))),
        )
        .collect();
    locks.sort_unstable();
    locks.dedup();

    // The locks, then the key's outcome, only while the claim is still the caller's (a
    // replay holds none, and settles the key whoever claimed it).
    let (route, key) = match &claim {
        Some(claim) => (claim.route.clone(), claim.key.clone()),
        None => (message.route.clone(), message.key.clone()),
    };
    let outcome = encode(&completed);
    let expires = us(completed.expires_at);
    match &claim {
        Some(claim) => {
            let statement = tx
                .prepare_cached(
                    "WITH l AS (
                         SELECT count(pg_advisory_xact_lock(k)) AS n
                         FROM unnest($6::int8[]) WITH ORDINALITY AS l(k, i)
                     )
                     UPDATE dragoman.idempotency
                     SET completed = $3, expires_us = $4, claim_token = NULL,
                         claim_until_us = NULL
                     WHERE route = $1 AND key = $2 AND claim_token = $5
                       AND (SELECT n FROM l) >= 0",
                )
                .await
                .map_err(pg_error)?;
            let token = claim.token as i64;
            let updated = tx
                .execute(
                    &statement,
                    &[&route, &key, &outcome, &expires, &token, &locks],
                )
                .await
                .map_err(pg_error)?;
            if updated == 0 {
                return Err(StorageError::ClaimLost { key });
            }
        }
        None => {
            lock(&tx, locks).await?;
            let statement = tx
                .prepare_cached(
                    "INSERT INTO dragoman.idempotency (route, key, completed, expires_us)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (route, key) DO UPDATE
                         SET completed = EXCLUDED.completed, expires_us = EXCLUDED.expires_us,
                             claim_token = NULL, claim_until_us = NULL",
                )
                .await
                .map_err(pg_error)?;
            tx.execute(&statement, &[&route, &key, &outcome, &expires])
                .await
                .map_err(pg_error)?;
        }
    }

    for (event, sinks) in &events {
        enqueue(&tx, event, sinks).await?;
    }
    if let Some(entry) = &dead_letter {
        put_dead_letter(&tx, entry).await?;
    }
    if let Some(id) = &resolves {
        let statement = tx
            .prepare_cached("DELETE FROM dragoman.dead_letters WHERE id = $1")
            .await
            .map_err(pg_error)?;
        tx.execute(&statement, &[id]).await.map_err(pg_error)?;
    }
    let mut heads = if audit.is_empty() && entities.is_empty() {
        Heads::default()
    } else {
        Heads::read(&tx, &audit, &entities).await?
    };
    heads.sealed_audit = opening;
    chains::append_audit(&mut heads, audit)?;
    chains::append_entities(&mut heads, entities)?;
    write_message_and_chains(&tx, &message, &heads).await?;
    tx.commit().await.map_err(pg_error)
}

/// The message, the sealed audit and entity events and the entity types, in one statement.
async fn write_message_and_chains(
    tx: &Transaction<'_>,
    message: &crate::storage::MessageRecord,
    heads: &Heads,
) -> Result<(), StorageError> {
    let statement = tx
        .prepare_cached(
            "WITH m AS (
                 INSERT INTO dragoman.messages (id, route, key, content_type, headers, body,
                                                received_us, cut_size, cut_sha256)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT (id) DO UPDATE SET
                     route = EXCLUDED.route, key = EXCLUDED.key,
                     content_type = EXCLUDED.content_type, headers = EXCLUDED.headers,
                     body = EXCLUDED.body, received_us = EXCLUDED.received_us,
                     cut_size = EXCLUDED.cut_size, cut_sha256 = EXCLUDED.cut_sha256
             ), a AS (
                 INSERT INTO dragoman.audit (stream, version, event)
                 SELECT * FROM unnest($10::text[], $11::int8[], $12::bytea[])
             ), e AS (
                 INSERT INTO dragoman.entity_events (entity_type, entity_id, seq, event)
                 SELECT * FROM unnest($13::text[], $14::text[], $15::int8[], $16::bytea[])
             )
             INSERT INTO dragoman.entity_types (route, entity_type)
             SELECT DISTINCT * FROM unnest($17::text[], $13::text[])
             ON CONFLICT DO NOTHING",
        )
        .await
        .map_err(pg_error)?;
    let cut_size = message.cut.as_ref().map(|c| c.size as i64);
    let cut_sha256 = message.cut.as_ref().map(|c| c.sha256.as_str());
    let (streams, versions, audit_bytes) = audit_columns(&heads.sealed_audit);
    let sealed = &heads.sealed_entities;
    let types: Vec<&str> = sealed
        .iter()
        .map(|e| e.entity.entity_type.as_str())
        .collect();
    let ids: Vec<&str> = sealed.iter().map(|e| e.entity.id.as_str()).collect();
    let seqs: Vec<i64> = sealed.iter().map(|e| e.seq as i64).collect();
    let entity_bytes: Vec<Vec<u8>> = sealed.iter().map(encode).collect();
    let routes: Vec<&str> = sealed.iter().map(|e| e.event.route.as_str()).collect();
    tx.execute(
        &statement,
        &[
            &message.id,
            &message.route,
            &message.key,
            &message.content_type,
            &encode(&message.headers),
            &message.body,
            &us(message.received_at),
            &cut_size,
            &cut_sha256,
            &streams,
            &versions,
            &audit_bytes,
            &types,
            &ids,
            &seqs,
            &entity_bytes,
            &routes,
        ],
    )
    .await
    .map_err(pg_error)?;
    Ok(())
}

/// Audit events on their own.
pub(super) async fn append(pool: &Connections, audit: Vec<AuditDraft>) -> Result<(), StorageError> {
    if audit.is_empty() {
        return Ok(());
    }
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    lock(&tx, audit_locks(&audit).collect()).await?;
    append_audit(&tx, audit).await?;
    tx.commit().await.map_err(pg_error)
}

/// Removes dead letter `id` with `audit`; `with_message` takes a translation or command
/// entry's stored message too.
pub(super) async fn remove_dead_letter(
    pool: &Connections,
    id: &str,
    audit: Vec<AuditDraft>,
    with_message: bool,
) -> Result<(), StorageError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    lock(&tx, audit_locks(&audit).collect()).await?;
    let statement = tx
        .prepare_cached("DELETE FROM dragoman.dead_letters WHERE id = $1 RETURNING entry")
        .await
        .map_err(pg_error)?;
    let Some(row) = tx.query_opt(&statement, &[&id]).await.map_err(pg_error)? else {
        return Err(StorageError::NotFound {
            what: "dead letter",
            id: id.into(),
        });
    };
    let entry: DeadLetter = record("dead letter", id, &row.get::<_, Vec<u8>>(0))?;
    if with_message && !matches!(entry.kind, DeadLetterKind::Delivery { .. }) {
        let statement = tx
            .prepare_cached("DELETE FROM dragoman.messages WHERE id = $1")
            .await
            .map_err(pg_error)?;
        tx.execute(&statement, &[&entry.message_id])
            .await
            .map_err(pg_error)?;
    }
    append_audit(&tx, audit).await?;
    tx.commit().await.map_err(pg_error)
}

/// Replaces dead letter `entry` (by its id), with `audit`.
pub(super) async fn update_dead_letter(
    pool: &Connections,
    entry: DeadLetter,
    audit: Vec<AuditDraft>,
) -> Result<(), StorageError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    lock(&tx, audit_locks(&audit).collect()).await?;
    let statement = tx
        .prepare_cached(
            "UPDATE dragoman.dead_letters SET route = $2, bytes = $3, entry = $4 WHERE id = $1",
        )
        .await
        .map_err(pg_error)?;
    let bytes = i64::try_from(entry.bytes).unwrap_or(i64::MAX);
    let updated = tx
        .execute(
            &statement,
            &[&entry.id, &entry.route, &bytes, &encode(&entry)],
        )
        .await
        .map_err(pg_error)?;
    if updated == 0 {
        return Err(StorageError::NotFound {
            what: "dead letter",
            id: entry.id,
        });
    }
    append_audit(&tx, audit).await?;
    tx.commit().await.map_err(pg_error)
}
