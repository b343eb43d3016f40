//! Leases: which host delivers which partition keys of a sink. A sink's keys fall in
//! [`BUCKETS`] buckets; a host reads and records deliveries only in the buckets it holds.
//!
//! A host refreshes its leases of a sink when it reads what the sink may deliver, at most
//! every [`RENEW_EVERY`]: it renews those it holds (only for its own term), counts the hosts
//! that hold a lease of the sink, takes free or expired buckets up to its share (each taken
//! bucket's term grows by one) and gives back what it holds beyond its share, so that the
//! buckets spread over the hosts as they come and go. A lease lasts [`TTL`] on the
//! database's clock: a host that is gone has its buckets taken once they expire.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::{Connections, pg_error};
use crate::storage::StorageError;

/// Buckets per sink.
pub(super) const BUCKETS: i32 = 64;

/// How long a lease lasts unless renewed.
pub(super) const TTL: Duration = Duration::from_secs(10);

/// How often a holder renews.
pub(super) const RENEW_EVERY: Duration = Duration::from_secs(3);

/// A host's leases. A lease's holder is the host's claim owner key: a lease whose holder's
/// session is gone (the host was killed) is free at once, like its claims; one whose holder
/// lives but stopped renewing is free when it expires.
#[derive(Debug, Default)]
pub(super) struct Leases {
    sinks: Mutex<HashMap<String, Held>>,
}

/// The buckets held at one sink, with their terms.
#[derive(Debug, Clone, Default)]
pub(super) struct Held {
    holder: i64,
    pub(super) terms: BTreeMap<i32, i64>,
    refreshed: Option<Instant>,
}

impl Leases {
    /// The term held of `bucket` at `sink`, as this host last knew it.
    pub(super) fn term(&self, sink: &str, bucket: i32) -> Option<i64> {
        self.lock().get(sink)?.terms.get(&bucket).copied()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.sinks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The buckets `holder` holds at `sink`, refreshed first when it is time.
    pub(super) async fn held(
        &self,
        pool: &Connections,
        holder: i64,
        sink: &str,
    ) -> Result<Vec<i32>, StorageError> {
        let held = self.lock().get(sink).cloned().unwrap_or_default();
        if held.holder == holder && held.refreshed.is_some_and(|at| at.elapsed() < RENEW_EVERY) {
            return Ok(held.terms.keys().copied().collect());
        }
        let started = Instant::now();
        let mine = if held.holder == holder {
            held.terms
        } else {
            BTreeMap::new()
        };
        let terms = match self.refresh(pool, holder, sink, &mine).await {
            Ok(terms) => terms,
            Err(e) => {
                // Nothing is known to be held: nothing is delivered until the next refresh.
                self.lock().remove(sink);
                return Err(e);
            }
        };
        let buckets = terms.keys().copied().collect();
        self.lock().insert(
            sink.to_owned(),
            Held {
                holder,
                terms,
                refreshed: Some(started),
            },
        );
        Ok(buckets)
    }

    async fn refresh(
        &self,
        pool: &Connections,
        holder: i64,
        sink: &str,
        held: &BTreeMap<i32, i64>,
    ) -> Result<BTreeMap<i32, i64>, StorageError> {
        let client = pool.get().await?;
        let ttl = TTL.as_secs_f64();
        let mut terms = BTreeMap::new();
        if !held.is_empty() {
            let buckets: Vec<i32> = held.keys().copied().collect();
            let old: Vec<i64> = held.values().copied().collect();
            let statement = client
                .prepare_cached(
                    "UPDATE dragoman.leases l
                     SET expires_at = now() + make_interval(secs => $4)
                     FROM unnest($2::int4[], $3::int8[]) AS h(bucket, term)
                     WHERE l.sink = $1 AND l.bucket = h.bucket AND l.term = h.term
                       AND l.holder = $5 AND l.expires_at > now()
                     RETURNING l.bucket, l.term",
                )
                .await
                .map_err(pg_error)?;
            for row in client
                .query(&statement, &[&sink, &buckets, &old, &ttl, &holder])
                .await
                .map_err(pg_error)?
            {
                terms.insert(row.get(0), row.get(1));
            }
        }
        // This host's share: the buckets over the hosts holding a lease of the sink.
        let statement = client
            .prepare_cached(
                "SELECT count(DISTINCT holder) FROM dragoman.leases
                 WHERE sink = $1 AND expires_at > now() AND holder <> $2
                   AND holder IN (SELECT owner FROM dragoman.owners)",
            )
            .await
            .map_err(pg_error)?;
        let others: i64 = client
            .query_one(&statement, &[&sink, &holder])
            .await
            .map_err(pg_error)?
            .get(0);
        let hosts = i32::try_from(others + 1).unwrap_or(BUCKETS);
        let share = usize::try_from((BUCKETS + hosts - 1) / hosts).unwrap_or(1);
        if terms.len() < share {
            let statement = client
                .prepare_cached(
                    "WITH alive AS (SELECT owner FROM dragoman.owners), free AS (
                         SELECT b FROM generate_series(0, 63) AS b
                         LEFT JOIN dragoman.leases l ON l.sink = $1 AND l.bucket = b
                         WHERE l.bucket IS NULL OR l.expires_at <= now()
                            OR l.holder NOT IN (SELECT owner FROM alive)
                         ORDER BY random() LIMIT $2
                     )
                     INSERT INTO dragoman.leases AS l (sink, bucket, holder, term, expires_at)
                     SELECT $1, b, $3, 1, now() + make_interval(secs => $4) FROM free
                     ON CONFLICT (sink, bucket) DO UPDATE
                         SET holder = EXCLUDED.holder, term = l.term + 1,
                             expires_at = EXCLUDED.expires_at
                         WHERE l.expires_at <= now()
                            OR l.holder NOT IN (SELECT owner FROM alive)
                     RETURNING bucket, term",
                )
                .await
                .map_err(pg_error)?;
            let need = (share - terms.len()) as i64;
            for row in client
                .query(&statement, &[&sink, &need, &holder, &ttl])
                .await
                .map_err(pg_error)?
            {
                terms.insert(row.get(0), row.get(1));
            }
        } else if terms.len() > share {
            // Beyond its share: the extra buckets go back, for the others to take.
            let extra: Vec<i32> = terms
                .keys()
                .rev()
                .take(terms.len() - share)
                .copied()
                .collect();
            let statement = client
                .prepare_cached(
                    "UPDATE dragoman.leases SET expires_at = now()
                     WHERE sink = $1 AND bucket = ANY($2::int4[]) AND holder = $3",
                )
                .await
                .map_err(pg_error)?;
            client
                .execute(&statement, &[&sink, &extra, &holder])
                .await
                .map_err(pg_error)?;
            for bucket in extra {
                terms.remove(&bucket);
            }
        }
        Ok(terms)
    }
}
