//! The outbox on PostgreSQL: what a sink may deliver now, what one attempt changed, keys
//! released from backoff, a dead letter put back, the sweep and the depths.
//!
//! The relay keeps no cursor: each sink's delivery state is a row per event, deleted when the
//! event is delivered, and a sink finds its work through its chains (`dragoman.chains`, one
//! row per partition key with deliveries to go, by when it is due). So an event whose
//! transaction commits late is found when it commits, whatever was delivered meanwhile:
//! nothing moves past it. Within a partition key, numbers are taken under the key's lock, so
//! number order is commit order, and a chain is read in that order.

use std::collections::BTreeSet;

use jiff::Timestamp;

use super::commit::{Lock, append_audit, audit_locks, enqueue, lock, put_dead_letter};
use super::leases::Leases;
use super::{Connections, instant, limit_of, pg_error, record, us};
use crate::storage::{
    AuditDraft, DeadLetter, DeadLetterKind, Delivery, DeliveryOutcome, Depths, Due, DueChain,
    OutboxEvent, PendingDelivery, Released, StorageError, Swept,
};

/// What `sink` may deliver at `now` in the buckets `held`.
pub(super) async fn due(
    pool: &Connections,
    sink: &str,
    held: &[i32],
    now: Timestamp,
    busy: &BTreeSet<String>,
    chains: usize,
    per_chain: usize,
) -> Result<Due, StorageError> {
    if held.is_empty() {
        return Ok(Due::default());
    }
    let client = pool.get().await?;
    let busy: Vec<&str> = busy.iter().map(String::as_str).collect();
    let statement = client
        .prepare_cached(
            "SELECT c.partition_key, d.seq, d.attempts, d.next_at_us, d.last_error,
                    d.first_failed_us, o.event
             FROM (
                 SELECT partition_key, due_us FROM dragoman.chains
                 WHERE sink = $1 AND bucket = ANY($6::int4[]) AND due_us <= $2
                   AND partition_key <> ALL($3::text[])
                 ORDER BY due_us, partition_key LIMIT $4
             ) c
             CROSS JOIN LATERAL (
                 SELECT * FROM dragoman.deliveries
                 WHERE sink = $1 AND partition_key = c.partition_key
                 ORDER BY seq LIMIT $5
             ) d
             JOIN dragoman.outbox o ON o.seq = d.seq
             ORDER BY c.due_us, c.partition_key, d.seq",
        )
        .await
        .map_err(pg_error)?;
    let rows = client
        .query(
            &statement,
            &[
                &sink,
                &us(now),
                &busy,
                &limit_of(chains),
                &limit_of(per_chain),
                &held,
            ],
        )
        .await
        .map_err(pg_error)?;
    let mut due = Due::default();
    for row in rows {
        let partition_key: String = row.get(0);
        let seq: i64 = row.get(1);
        let attempts: i32 = row.get(2);
        let next_at: Option<i64> = row.get(3);
        let first_failed: Option<i64> = row.get(5);
        let event: OutboxEvent =
            record("outbox event", &seq.to_string(), &row.get::<_, Vec<u8>>(6))?;
        let delivery = PendingDelivery {
            seq: seq as u64,
            event,
            delivery: Delivery {
                attempts: attempts as u32,
                next_at: next_at.map(instant).transpose()?,
                last_error: row.get(4),
                first_failed_at: first_failed.map(instant).transpose()?,
            },
        };
        match due.chains.last_mut() {
            Some(chain) if chain.partition_key == partition_key => {
                // The head has failed before and will likely fail again: it goes alone, and
                // the rest once it is through.
                if chain.deliveries[0].delivery.attempts == 0 {
                    chain.deliveries.push(delivery);
                }
            }
            _ => due.chains.push(DueChain {
                partition_key,
                deliveries: vec![delivery],
            }),
        }
    }
    if due.chains.len() < chains {
        let statement = client
            .prepare_cached(
                "SELECT due_us FROM dragoman.chains
                 WHERE sink = $1 AND bucket = ANY($3::int4[]) AND due_us > $2
                 ORDER BY due_us LIMIT 1",
            )
            .await
            .map_err(pg_error)?;
        if let Some(row) = client
            .query_opt(&statement, &[&sink, &us(now), &held])
            .await
            .map_err(pg_error)?
        {
            due.next_at = Some(instant(row.get(0))?);
        }
    }
    Ok(due)
}

pub(super) async fn record_delivery(
    pool: &Connections,
    (leases, owner): (&Leases, i64),
    seq: u64,
    sink: &str,
    outcome: DeliveryOutcome,
    audit: Vec<AuditDraft>,
    now: Timestamp,
) -> Result<(), StorageError> {
    let not_found = || StorageError::NotFound {
        what: "outbox delivery",
        id: format!("{seq} to {sink}"),
    };
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let seq = i64::try_from(seq).map_err(|_| not_found())?;
    let statement = tx
        .prepare_cached("SELECT partition_key FROM dragoman.outbox WHERE seq = $1")
        .await
        .map_err(pg_error)?;
    let Some(row) = tx.query_opt(&statement, &[&seq]).await.map_err(pg_error)? else {
        return Err(not_found());
    };
    let key: String = row.get(0);
    lock(
        &tx,
        std::iter::once(Lock::Partition.key(&key))
            .chain(audit_locks(&audit))
            .collect(),
    )
    .await?;
    // Only the holder of the key's bucket, in the term it knows, records: the lease row is
    // held (FOR SHARE) until this commits, so it cannot be taken over meanwhile.
    let statement = tx
        .prepare_cached(
            "SELECT bucket, term, holder, expires_at > now() FROM dragoman.leases
             WHERE sink = $1 AND bucket = (hashtextextended($2, 0) & 63)::integer
             FOR SHARE",
        )
        .await
        .map_err(pg_error)?;
    let lease = tx
        .query_opt(&statement, &[&sink, &key])
        .await
        .map_err(pg_error)?;
    let current = lease.is_some_and(|row| {
        let (bucket, term, holder, live): (i32, i64, i64, bool) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        live && holder == owner && leases.term(sink, bucket) == Some(term)
    });
    if !current {
        return Err(StorageError::LeaseLost {
            sink: sink.to_owned(),
            partition_key: key,
        });
    }
    let statement = tx
        .prepare_cached(
            "SELECT 1 FROM dragoman.deliveries WHERE sink = $1 AND partition_key = $2 AND seq = $3",
        )
        .await
        .map_err(pg_error)?;
    if tx
        .query_opt(&statement, &[&sink, &key, &seq])
        .await
        .map_err(pg_error)?
        .is_none()
    {
        return Err(not_found());
    }
    let dead_letter = match outcome {
        DeliveryOutcome::Failed { error, next_at } => {
            // The delivery counts the attempt, and the key waits at this sink until the retry.
            let statement = tx
                .prepare_cached(
                    "WITH d AS (
                         UPDATE dragoman.deliveries
                         SET attempts = attempts + 1, next_at_us = $4, last_error = $5,
                             first_failed_us = coalesce(first_failed_us, $6)
                         WHERE sink = $1 AND partition_key = $2 AND seq = $3
                     )
                     UPDATE dragoman.chains SET due_us = $4
                     WHERE sink = $1 AND partition_key = $2",
                )
                .await
                .map_err(pg_error)?;
            tx.execute(
                &statement,
                &[&sink, &key, &seq, &us(next_at), &error, &us(now)],
            )
            .await
            .map_err(pg_error)?;
            None
        }
        DeliveryOutcome::Delivered => {
            done(&tx, sink, &key, seq, now).await?;
            None
        }
        DeliveryOutcome::DeadLettered(entry) => {
            done(&tx, sink, &key, seq, now).await?;
            Some(entry)
        }
    };
    if let Some(entry) = &dead_letter {
        put_dead_letter(&tx, entry).await?;
    }
    append_audit(&tx, audit).await?;
    tx.commit().await.map_err(pg_error)
}

/// The delivery of `seq` at `sink` is over: the event is published once no sink waits for it,
/// and the key's last delivery at the sink takes its chain with it.
async fn done(
    tx: &deadpool_postgres::Transaction<'_>,
    sink: &str,
    key: &str,
    seq: i64,
    now: Timestamp,
) -> Result<(), StorageError> {
    let statement = tx
        .prepare_cached(
            "WITH d AS (
                 DELETE FROM dragoman.deliveries
                 WHERE sink = $1 AND partition_key = $2 AND seq = $3
             ), o AS (
                 UPDATE dragoman.outbox
                 SET sinks_left = sinks_left - 1,
                     published_us = CASE WHEN sinks_left = 1 THEN $4::int8 END
                 WHERE seq = $3
             )
             DELETE FROM dragoman.chains c
             WHERE c.sink = $1 AND c.partition_key = $2 AND NOT EXISTS (
                 SELECT 1 FROM dragoman.deliveries
                 WHERE sink = $1 AND partition_key = $2 AND seq <> $3
             )",
        )
        .await
        .map_err(pg_error)?;
    tx.execute(&statement, &[&sink, &key, &seq, &us(now)])
        .await
        .map_err(pg_error)?;
    Ok(())
}

/// Up to `limit` keys of `sink` held in backoff after `now` (or only `partition_key`).
pub(super) async fn held(
    pool: &Connections,
    sink: &str,
    partition_key: Option<&str>,
    now: Timestamp,
    limit: usize,
) -> Result<Released, StorageError> {
    let client = pool.get().await?;
    let statement = client
        .prepare_cached(
            "SELECT partition_key FROM dragoman.chains
             WHERE sink = $1 AND due_us > $2 AND ($3::text IS NULL OR partition_key = $3)
             ORDER BY due_us, partition_key LIMIT $4",
        )
        .await
        .map_err(pg_error)?;
    let mut keys: Vec<String> = client
        .query(
            &statement,
            &[
                &sink,
                &us(now),
                &partition_key,
                &limit_of(limit.saturating_add(1)),
            ],
        )
        .await
        .map_err(pg_error)?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let more = keys.len() > limit;
    keys.truncate(limit);
    Ok(Released { keys, more })
}

/// Makes `keys` due at `now` at `sink`, their heads' own retry times cleared and their
/// attempts as they were, with `audit`: only those still held.
pub(super) async fn release(
    pool: &Connections,
    sink: &str,
    keys: &[String],
    now: Timestamp,
    audit: Vec<AuditDraft>,
) -> Result<(), StorageError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    lock(
        &tx,
        keys.iter()
            .map(|key| Lock::Partition.key(key))
            .chain(audit_locks(&audit))
            .collect(),
    )
    .await?;
    let statement = tx
        .prepare_cached(
            "WITH c AS (
                 UPDATE dragoman.chains SET due_us = $3
                 WHERE sink = $1 AND partition_key = ANY($2::text[]) AND due_us > $3
                 RETURNING partition_key
             )
             UPDATE dragoman.deliveries d SET next_at_us = NULL
             FROM c
             WHERE d.sink = $1 AND d.partition_key = c.partition_key AND d.seq = (
                 SELECT min(seq) FROM dragoman.deliveries
                 WHERE sink = $1 AND partition_key = c.partition_key
             )",
        )
        .await
        .map_err(pg_error)?;
    tx.execute(&statement, &[&sink, &keys, &us(now)])
        .await
        .map_err(pg_error)?;
    append_audit(&tx, audit).await?;
    tx.commit().await.map_err(pg_error)
}

pub(super) async fn requeue(
    pool: &Connections,
    dead_letter: &str,
    audit: Vec<AuditDraft>,
) -> Result<(), StorageError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await.map_err(pg_error)?;
    let statement = tx
        .prepare_cached("SELECT entry FROM dragoman.dead_letters WHERE id = $1 FOR UPDATE")
        .await
        .map_err(pg_error)?;
    let Some(row) = tx
        .query_opt(&statement, &[&dead_letter])
        .await
        .map_err(pg_error)?
    else {
        return Err(StorageError::NotFound {
            what: "dead letter",
            id: dead_letter.into(),
        });
    };
    let entry: DeadLetter = record("dead letter", dead_letter, &row.get::<_, Vec<u8>>(0))?;
    let DeadLetterKind::Delivery { sink, event } = entry.kind else {
        return Err(StorageError::NotFound {
            what: "delivery dead letter",
            id: dead_letter.into(),
        });
    };
    lock(
        &tx,
        std::iter::once(Lock::Partition.key(&event.partition_key))
            .chain(audit_locks(&audit))
            .collect(),
    )
    .await?;
    enqueue(&tx, &event, &[sink]).await?;
    let statement = tx
        .prepare_cached("DELETE FROM dragoman.dead_letters WHERE id = $1")
        .await
        .map_err(pg_error)?;
    tx.execute(&statement, &[&dead_letter])
        .await
        .map_err(pg_error)?;
    append_audit(&tx, audit).await?;
    tx.commit().await.map_err(pg_error)
}

pub(super) async fn sweep(
    pool: &Connections,
    now: Timestamp,
    published_before: Timestamp,
    limit: usize,
) -> Result<Swept, StorageError> {
    let client = pool.get().await?;
    let limit = limit_of(limit);
    // Keys expired and not claimed again, and claims past their timeout on keys never done.
    let statement = client
        .prepare_cached(
            "WITH gone AS (
                 SELECT route, key FROM dragoman.idempotency
                 WHERE completed IS NOT NULL AND expires_us <= $1
                   AND (claim_token IS NULL OR claim_until_us <= $1)
                 ORDER BY expires_us LIMIT $2
             )
             DELETE FROM dragoman.idempotency i USING gone
             WHERE i.route = gone.route AND i.key = gone.key AND i.expires_us <= $1",
        )
        .await
        .map_err(pg_error)?;
    let keys = client
        .execute(&statement, &[&us(now), &limit])
        .await
        .map_err(pg_error)?;
    let statement = client
        .prepare_cached(
            "WITH gone AS (
                 SELECT route, key FROM dragoman.idempotency
                 WHERE completed IS NULL AND claim_until_us <= $1
                 ORDER BY claim_until_us LIMIT $2
             )
             DELETE FROM dragoman.idempotency i USING gone
             WHERE i.route = gone.route AND i.key = gone.key AND i.completed IS NULL
               AND i.claim_until_us <= $1",
        )
        .await
        .map_err(pg_error)?;
    client
        .execute(&statement, &[&us(now), &limit])
        .await
        .map_err(pg_error)?;
    let rest = (limit - keys as i64).max(0);
    let statement = client
        .prepare_cached(
            "DELETE FROM dragoman.outbox WHERE seq IN (
                 SELECT seq FROM dragoman.outbox WHERE published_us <= $1
                 ORDER BY published_us LIMIT $2
             )",
        )
        .await
        .map_err(pg_error)?;
    let published = client
        .execute(&statement, &[&us(published_before), &rest])
        .await
        .map_err(pg_error)?;
    let removed = keys + published;
    Ok(Swept {
        removed,
        more: removed as i64 >= limit,
    })
}

pub(super) async fn depths(pool: &Connections) -> Result<Depths, StorageError> {
    let client = pool.get().await?;
    // Counted, not kept: a counter row would be one row every commit writes. Each count reads
    // what waits (an index of the outbox's waiting events, the deliveries, the dead letters),
    // not what was ever written.
    let statement = client
        .prepare_cached(
            "SELECT (SELECT count(*) FROM dragoman.outbox WHERE sinks_left > 0),
                    (SELECT time_us FROM dragoman.outbox WHERE sinks_left > 0
                     ORDER BY seq LIMIT 1)",
        )
        .await
        .map_err(pg_error)?;
    let row = client.query_one(&statement, &[]).await.map_err(pg_error)?;
    let outbox: i64 = row.get(0);
    let oldest: Option<i64> = row.get(1);
    let mut depths = Depths {
        outbox: outbox as u64,
        oldest: oldest.map(instant).transpose()?,
        ..Depths::default()
    };
    let statement = client
        .prepare_cached("SELECT sink, count(*) FROM dragoman.deliveries GROUP BY sink")
        .await
        .map_err(pg_error)?;
    for row in client.query(&statement, &[]).await.map_err(pg_error)? {
        depths.sinks.insert(row.get(0), row.get::<_, i64>(1) as u64);
    }
    let statement = client
        .prepare_cached(
            "SELECT route, count(*), coalesce(sum(bytes), 0)::int8
             FROM dragoman.dead_letters GROUP BY route",
        )
        .await
        .map_err(pg_error)?;
    for row in client.query(&statement, &[]).await.map_err(pg_error)? {
        let count = row.get::<_, i64>(1) as u64;
        depths.dead_letters += count;
        depths.dead_letter_routes.insert(
            row.get(0),
            crate::storage::DeadLetterDepth {
                count,
                bytes: row.get::<_, i64>(2) as u64,
            },
        );
    }
    // The oldest transaction open on the database but this one: while it is, the rows it
    // locks wait and the database keeps what it could clean up.
    let statement = client
        .prepare_cached(
            "SELECT pid, state, extract(epoch FROM now() - xact_start)::float8
             FROM pg_stat_activity
             WHERE datname = current_database() AND xact_start IS NOT NULL
               AND pid <> pg_backend_pid()
             ORDER BY xact_start LIMIT 1",
        )
        .await
        .map_err(pg_error)?;
    if let Some(row) = client.query_opt(&statement, &[]).await.map_err(pg_error)? {
        let age: f64 = row.get(2);
        depths.oldest_transaction = Some(crate::storage::OpenTransaction {
            pid: row.get(0),
            state: row.get::<_, Option<String>>(1).unwrap_or_default(),
            age: std::time::Duration::from_secs_f64(age.max(0.0)),
        });
    }
    Ok(depths)
}
