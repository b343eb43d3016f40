//! `Postgres`, the [`Storage`] on PostgreSQL, which several hosts may share: the only module
//! that speaks SQL. The schema is in `host/migrations/` (applied at open, `postgres/migrate.rs`);
//! a commit is one SQL transaction (`postgres/commit.rs`); the outbox, the relay's reads and
//! writes, and the sweep are in `postgres/outbox.rs`.
//!
//! What keeps two writers apart is the database's: a commit takes transaction-scoped advisory
//! locks on the partition keys it adds events to, on the audit streams it appends to, and on
//! the entity streams it extends, always in one global order (so two commits never deadlock),
//! before it reads a head or takes a sequence number. So within one partition key, sequence
//! order is commit order, and a chain is sealed after the head every other writer sees.
//! Claims in flight are columns of the key's row, taken by one statement: two replicas racing
//! on one key get one `Fresh` and one `InFlight`.
//!
//! Durability is PostgreSQL's: a commit returns once the database has committed it (with the
//! server's `synchronous_commit`), so [`Storage::durable`] has nothing left to wait for.
//!
//! The trait is synchronous (its callers run on blocking threads); the connections run on a
//! small runtime of the store's own, and each call waits for its statements there.

mod commit;
mod leases;
mod migrate;
mod outbox;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use jiff::Timestamp;
use serde::de::DeserializeOwned;
use tokio_postgres::NoTls;

use super::codec::{decode, encode};
use crate::storage::{
    AuditDraft, AuditEvent, Claim, ClaimToken, Commit, Completed, Cut, DeadLetter, DeliveryOutcome,
    Depths, Due, Durable, EntityEvent, EntityRef, MessageRecord, PoolDepth, Released, SharedPlugin,
    Snapshot, SnapshotBound, Storage, StorageError, Swept,
};

/// The advisory lock held while migrations run (one key, outside the ranges of the locks in
/// `postgres/commit.rs`).
const ADVISORY_MIGRATE: i64 = 0x4452_4147_4f4d_414e;

/// How long a call waits for a free connection before it fails.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// How long opening a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a readiness probe waits for the database.
const READY_WAIT: Duration = Duration::from_secs(2);

/// Rows read per query by the reads that return everything (verification).
const PAGE: i64 = 1000;

/// The store on PostgreSQL.
#[derive(Debug, Clone)]
pub struct Postgres {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    runtime: Option<tokio::runtime::Runtime>,
    pool: Connections,
    /// Which buckets of each sink this host delivers.
    leases: leases::Leases,
    /// This store's claim owner key and the session whose advisory lock on it says the
    /// owner lives: the claims it takes are alive only as long as that session. A session
    /// lost is replaced with a new key, so that the claims of the old one (whose releases
    /// may have been lost with it) are nobody's.
    session: tokio::sync::Mutex<(i64, tokio_postgres::Client)>,
    config: tokio_postgres::Config,
}

impl Drop for Inner {
    /// Stops the connections' runtime without waiting: a store may be dropped anywhere.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl Postgres {
    /// Connects to the database at `url` with up to `pool` connections, and brings its schema
    /// to the layout this host writes (under an advisory lock, so replicas starting together
    /// apply each migration once).
    ///
    /// # Errors
    ///
    /// [`StorageError::Backend`] when the URL is not valid, the database cannot be reached,
    /// a migration fails, or the schema is newer than this host knows. The URL is never in
    /// the message (it may hold a password).
    pub fn connect(url: &str, pool: usize) -> Result<Self, StorageError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StorageError::Backend(format!("the database URL cannot be read: {e}")))?;
        config.connect_timeout(CONNECT_TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("dragoman");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("dragoman-postgres")
            .enable_all()
            .build()
            .map_err(|e| StorageError::Backend(format!("cannot start the store's runtime: {e}")))?;
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(pool.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StorageError::Backend(format!("cannot make the pool: {e}")))?;
        let owner = new_owner();
        let session = wait(&runtime, async {
            let mut client = pool.get().await.map_err(pool_error)?;
            migrate::to_current(&mut client).await?;
            own_claims(&config, owner).await
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                runtime: Some(runtime),
                pool: Connections {
                    pool,
                    waits: AtomicU64::new(0),
                    errors: AtomicU64::new(0),
                },
                leases: leases::Leases::default(),
                session: tokio::sync::Mutex::new((owner, session)),
                config,
            }),
        })
    }

    /// The schema version this host writes.
    pub fn schema_version() -> i32 {
        migrate::known()
    }

    /// Runs `future` on the store's runtime and waits for it ([`wait`]).
    fn run<T: Send>(
        &self,
        future: impl Future<Output = Result<T, StorageError>> + Send,
    ) -> Result<T, StorageError> {
        let runtime = self
            .inner
            .runtime
            .as_ref()
            .ok_or_else(|| StorageError::Backend("the store is closed".into()))?;
        wait(runtime, future)
    }

    /// This store's owner key. A claim or a lease is this store's only while its owner
    /// session lives: one lost with its connection is replaced first, with a new key.
    async fn owner(&self) -> Result<i64, StorageError> {
        let mut session = self.inner.session.lock().await;
        if session.1.is_closed() {
            let owner = new_owner();
            *session = (owner, own_claims(&self.inner.config, owner).await?);
        }
        Ok(session.0)
    }

    fn pool(&self) -> &Connections {
        &self.inner.pool
    }

    /// One statement's rows, with the statement prepared once per connection.
    fn rows(
        &self,
        sql: &'static str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StorageError> {
        self.run(async {
            let client = self.pool().get().await?;
            let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
            client.query(&statement, params).await.map_err(pg_error)
        })
    }

    /// One statement, for the rows it changed.
    fn execute(
        &self,
        sql: &'static str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StorageError> {
        self.run(async {
            let client = self.pool().get().await?;
            let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
            client.execute(&statement, params).await.map_err(pg_error)
        })
    }
}

/// The pool, with what it counts for `/metrics`.
#[derive(Debug)]
struct Connections {
    pool: Pool,
    waits: AtomicU64,
    errors: AtomicU64,
}

impl Connections {
    /// A connection: an idle one, a new one while the pool is not full, else the first one
    /// given back (a wait, counted), within [`POOL_WAIT`].
    async fn get(&self) -> Result<deadpool_postgres::Object, StorageError> {
        let status = self.pool.status();
        if status.available == 0 && status.size >= status.max_size {
            self.waits.fetch_add(1, Ordering::Relaxed);
        }
        self.pool.get().await.map_err(|e| {
            self.errors.fetch_add(1, Ordering::Relaxed);
            pool_error(e)
        })
    }

    fn depth(&self) -> PoolDepth {
        let status = self.pool.status();
        PoolDepth {
            max: status.max_size as u64,
            open: status.size as u64,
            idle: status.available as u64,
            waiting: status.waiting as u64,
            waits: self.waits.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

impl Storage for Postgres {
    fn claim(
        &self,
        route: &str,
        key: &str,
        now: Timestamp,
        in_flight_timeout: Duration,
    ) -> Result<Claim, StorageError> {
        let until = now.checked_add(in_flight_timeout).unwrap_or(Timestamp::MAX);
        let owner = self.run(self.owner())?;
        // A claim that finds the key neither done nor held, yet cannot take it, met a claim
        // released or a key swept between its two statements: it tries again, a few times.
        for _ in 0..3 {
            let token: i64 = rand::random();
            let taken = self.rows(
                "INSERT INTO dragoman.idempotency AS i
                     (route, key, claim_token, claim_until_us, claim_owner)
                 VALUES ($1, $2, $3, $4, $6)
                 ON CONFLICT (route, key) DO UPDATE
                     SET claim_token = EXCLUDED.claim_token,
                         claim_until_us = EXCLUDED.claim_until_us,
                         claim_owner = EXCLUDED.claim_owner
                     WHERE NOT (i.completed IS NOT NULL AND i.expires_us > $5)
                       AND NOT (i.claim_token IS NOT NULL AND i.claim_until_us > $5
                                AND dragoman.owner_alive(i.claim_owner))
                 RETURNING claim_token",
                &[&route, &key, &token, &us(until), &us(now), &owner],
            )?;
            if !taken.is_empty() {
                return Ok(Claim::Fresh(ClaimToken {
                    route: route.into(),
                    key: key.into(),
                    token: token as u64,
                }));
            }
            let rows = self.rows(
                "SELECT completed, expires_us,
                        CASE WHEN dragoman.owner_alive(claim_owner) THEN claim_until_us END
                 FROM dragoman.idempotency WHERE route = $1 AND key = $2",
                &[&route, &key],
            )?;
            let Some(row) = rows.first() else { continue };
            let completed: Option<Vec<u8>> = row.get(0);
            let expires: Option<i64> = row.get(1);
            let claim_until: Option<i64> = row.get(2);
            if let (Some(bytes), Some(expires)) = (completed, expires)
                && expires > us(now)
            {
                let completed: Completed = record("idempotency key", key, &bytes)?;
                return Ok(Claim::Done(completed));
            }
            if claim_until.is_some_and(|until| until > us(now)) {
                return Ok(Claim::InFlight);
            }
        }
        Ok(Claim::InFlight)
    }

    fn release(&self, claim: &ClaimToken) -> Result<(), StorageError> {
        let token = claim.token as i64;
        let gone = self.execute(
            "DELETE FROM dragoman.idempotency
             WHERE route = $1 AND key = $2 AND claim_token = $3 AND completed IS NULL",
            &[&claim.route, &claim.key, &token],
        )?;
        if gone == 0 {
            self.execute(
                "UPDATE dragoman.idempotency SET claim_token = NULL, claim_until_us = NULL
                 WHERE route = $1 AND key = $2 AND claim_token = $3",
                &[&claim.route, &claim.key, &token],
            )?;
        }
        Ok(())
    }

    fn commit(&self, commit: Commit) -> Result<(), StorageError> {
        self.run(commit::commit(self.pool(), commit))
    }

    fn append(&self, audit: Vec<AuditDraft>) -> Result<(), StorageError> {
        self.run(commit::append(self.pool(), audit))
    }

    fn durable(&self) -> Durable {
        Box::pin(std::future::ready(Ok(())))
    }

    fn due(
        &self,
        sink: &str,
        now: Timestamp,
        busy: &BTreeSet<String>,
        chains: usize,
        per_chain: usize,
    ) -> Result<Due, StorageError> {
        self.run(async {
            let owner = self.owner().await?;
            let held = self.inner.leases.held(self.pool(), owner, sink).await?;
            outbox::due(self.pool(), sink, &held, now, busy, chains, per_chain).await
        })
    }

    fn record_delivery(
        &self,
        seq: u64,
        sink: &str,
        outcome: DeliveryOutcome,
        audit: Vec<AuditDraft>,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        self.run(async {
            let owner = self.owner().await?;
            outbox::record_delivery(
                self.pool(),
                (&self.inner.leases, owner),
                seq,
                sink,
                outcome,
                audit,
                now,
            )
            .await
        })
    }

    fn release_held(
        &self,
        sink: &str,
        partition_key: Option<&str>,
        now: Timestamp,
        limit: usize,
        audit: &dyn Fn(&Released) -> Vec<AuditDraft>,
    ) -> Result<Released, StorageError> {
        // The audit events are made from what is found, between the store's statements.
        let held = self.run(outbox::held(self.pool(), sink, partition_key, now, limit))?;
        if held.keys.is_empty() {
            return Ok(held);
        }
        let drafts = audit(&held);
        self.run(outbox::release(self.pool(), sink, &held.keys, now, drafts))?;
        Ok(held)
    }

    fn requeue(&self, dead_letter: &str, audit: Vec<AuditDraft>) -> Result<(), StorageError> {
        self.run(outbox::requeue(self.pool(), dead_letter, audit))
    }

    fn dead_letters(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StorageError> {
        let after = after.unwrap_or_default();
        let rows = self.rows(
            "SELECT id, entry FROM dragoman.dead_letters WHERE id > $1 ORDER BY id LIMIT $2",
            &[&after, &limit_of(limit)],
        )?;
        rows.iter().map(dead_letter_row).collect()
    }

    fn route_dead_letters(
        &self,
        route: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StorageError> {
        let after = after.unwrap_or_default();
        let rows = self.rows(
            "SELECT id, entry FROM dragoman.dead_letters WHERE route = $1 AND id > $2
             ORDER BY id LIMIT $3",
            &[&route, &after, &limit_of(limit)],
        )?;
        rows.iter().map(dead_letter_row).collect()
    }

    fn evict_dead_letter(&self, id: &str, audit: Vec<AuditDraft>) -> Result<(), StorageError> {
        self.run(commit::remove_dead_letter(self.pool(), id, audit, true))
    }

    fn dead_letter(&self, id: &str) -> Result<Option<DeadLetter>, StorageError> {
        let rows = self.rows(
            "SELECT id, entry FROM dragoman.dead_letters WHERE id = $1",
            &[&id],
        )?;
        rows.first().map(dead_letter_row).transpose()
    }

    fn update_dead_letter(
        &self,
        entry: DeadLetter,
        audit: Vec<AuditDraft>,
    ) -> Result<(), StorageError> {
        self.run(commit::update_dead_letter(self.pool(), entry, audit))
    }

    fn discard_dead_letter(&self, id: &str, audit: Vec<AuditDraft>) -> Result<(), StorageError> {
        self.run(commit::remove_dead_letter(self.pool(), id, audit, false))
    }

    fn message(&self, id: &str) -> Result<Option<MessageRecord>, StorageError> {
        let rows = self.rows(
            "SELECT id, route, key, content_type, headers, body, received_us, cut_size,
                    cut_sha256
             FROM dragoman.messages WHERE id = $1",
            &[&id],
        )?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        let headers: Vec<u8> = row.get(4);
        let cut_size: Option<i64> = row.get(7);
        let cut_sha256: Option<String> = row.get(8);
        Ok(Some(MessageRecord {
            id: row.get(0),
            route: row.get(1),
            key: row.get(2),
            content_type: row.get(3),
            headers: record("message", id, &headers)?,
            body: row.get(5),
            received_at: instant(row.get(6))?,
            cut: match (cut_size, cut_sha256) {
                (Some(size), Some(sha256)) => Some(Cut {
                    size: size as u64,
                    sha256,
                }),
                _ => None,
            },
        }))
    }

    fn history(&self, message_id: &str) -> Result<Vec<AuditEvent>, StorageError> {
        // A stream is as long as its message's life: bounded by the host's own events.
        let rows = self.rows(
            "SELECT event FROM dragoman.audit WHERE stream = $1 ORDER BY version",
            &[&message_id],
        )?;
        rows.iter()
            .map(|row| record("audit event", message_id, &row.get::<_, Vec<u8>>(0)))
            .collect()
    }

    fn audit_streams(&self) -> Result<BTreeMap<String, Vec<AuditEvent>>, StorageError> {
        // Every stream, read by pages in key order.
        let mut streams: BTreeMap<String, Vec<AuditEvent>> = BTreeMap::new();
        let (mut stream, mut version) = (String::new(), 0i64);
        loop {
            let rows = self.rows(
                "SELECT stream, version, event FROM dragoman.audit
                 WHERE (stream, version) > ($1, $2) ORDER BY stream, version LIMIT $3",
                &[&stream, &version, &PAGE],
            )?;
            let full = rows.len() as i64 == PAGE;
            for row in rows {
                stream = row.get(0);
                version = row.get(1);
                // The stream is named by the row, so an event moved between streams is caught.
                let event = record("audit event", &stream, &row.get::<_, Vec<u8>>(2))?;
                streams.entry(stream.clone()).or_default().push(event);
            }
            if !full {
                return Ok(streams);
            }
        }
    }

    fn entity_stream(&self, entity: &EntityRef) -> Result<Vec<EntityEvent>, StorageError> {
        self.entity_events(entity, 0, usize::MAX)
    }

    fn entity_events(
        &self,
        entity: &EntityRef,
        after: u64,
        limit: usize,
    ) -> Result<Vec<EntityEvent>, StorageError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows = self.rows(
            "SELECT event FROM dragoman.entity_events
             WHERE entity_type = $1 AND entity_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
            &[&entity.entity_type, &entity.id, &after, &limit_of(limit)],
        )?;
        rows.iter()
            .map(|row| record("entity event", &entity.id, &row.get::<_, Vec<u8>>(0)))
            .collect()
    }

    fn entity_snapshot(
        &self,
        entity: &EntityRef,
        projector: &str,
        bound: SnapshotBound,
    ) -> Result<Option<Snapshot>, StorageError> {
        // Latest first, a page at a time: a read of the present stops at the first one.
        let mut below = i64::MAX;
        loop {
            let rows = self.rows(
                "SELECT seq, snapshot FROM dragoman.snapshots
                 WHERE projector = $1 AND entity_type = $2 AND entity_id = $3 AND seq < $4
                 ORDER BY seq DESC LIMIT $5",
                &[&projector, &entity.entity_type, &entity.id, &below, &PAGE],
            )?;
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

    fn put_entity_snapshot(
        &self,
        entity: &EntityRef,
        projector: &str,
        snapshot: &Snapshot,
    ) -> Result<(), StorageError> {
        let seq = snapshot.seq as i64;
        self.execute(
            "INSERT INTO dragoman.snapshots (projector, entity_type, entity_id, seq, snapshot)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (projector, entity_type, entity_id, seq)
             DO UPDATE SET snapshot = EXCLUDED.snapshot",
            &[
                &projector,
                &entity.entity_type,
                &entity.id,
                &seq,
                &encode(snapshot),
            ],
        )
        .map(drop)
    }

    fn entity_streams(&self) -> Result<BTreeMap<EntityRef, Vec<EntityEvent>>, StorageError> {
        // Every stream, read by pages in key order.
        let mut streams: BTreeMap<EntityRef, Vec<EntityEvent>> = BTreeMap::new();
        let (mut entity_type, mut id, mut seq) = (String::new(), String::new(), 0i64);
        loop {
            let rows = self.rows(
                "SELECT entity_type, entity_id, seq, event FROM dragoman.entity_events
                 WHERE (entity_type, entity_id, seq) > ($1, $2, $3)
                 ORDER BY entity_type, entity_id, seq LIMIT $4",
                &[&entity_type, &id, &seq, &PAGE],
            )?;
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
                streams.entry(entity).or_default().push(event);
            }
            if !full {
                return Ok(streams);
            }
        }
    }

    fn entity_types(&self) -> Result<BTreeMap<String, BTreeSet<String>>, StorageError> {
        // One row per route and entity type: as few as the routes' kinds of event.
        let rows = self.rows(
            "SELECT route, entity_type FROM dragoman.entity_types ORDER BY route, entity_type",
            &[],
        )?;
        let mut types: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for row in rows {
            types.entry(row.get(0)).or_default().insert(row.get(1));
        }
        Ok(types)
    }

    fn sweep(
        &self,
        now: Timestamp,
        published_before: Timestamp,
        limit: usize,
    ) -> Result<Swept, StorageError> {
        self.run(outbox::sweep(self.pool(), now, published_before, limit))
    }

    fn remember_answer(
        &self,
        key: &str,
        answer: &serde_json::Value,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        self.execute(
            "INSERT INTO dragoman.answers (key, at_us, answer) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET at_us = EXCLUDED.at_us, answer = EXCLUDED.answer",
            &[&key.as_bytes(), &us(at), &encode(answer)],
        )
        .map(drop)
    }

    fn recall_answer(
        &self,
        key: &str,
    ) -> Result<Option<(serde_json::Value, Timestamp)>, StorageError> {
        let rows = self.rows(
            "SELECT answer, at_us FROM dragoman.answers WHERE key = $1",
            &[&key.as_bytes()],
        )?;
        rows.first()
            .map(|row| {
                let answer = record("answer", key, &row.get::<_, Vec<u8>>(0))?;
                Ok((answer, instant(row.get(1))?))
            })
            .transpose()
    }

    fn shares_plugins(&self) -> bool {
        true
    }

    fn share_plugin(&self, shared: &SharedPlugin) -> Result<(), StorageError> {
        let percent = shared.canary.map(i32::from);
        self.execute(
            "WITH c AS (
                 INSERT INTO dragoman.plugin_components (sha256, wasm) VALUES ($2, $3)
                 ON CONFLICT (sha256) DO NOTHING
             )
             INSERT INTO dragoman.plugins (name, sha256, canary_percent, origin, generation)
             VALUES ($1, $2, $4, $5, nextval('dragoman.plugin_generation'))
             ON CONFLICT (name) DO UPDATE SET
                 sha256 = EXCLUDED.sha256, canary_percent = EXCLUDED.canary_percent,
                 origin = EXCLUDED.origin, generation = EXCLUDED.generation",
            &[
                &shared.name,
                &shared.sha256,
                &shared.wasm,
                &percent,
                &shared.origin,
            ],
        )
        .map(drop)
    }

    fn shared_plugins(&self, after: u64) -> Result<Vec<SharedPlugin>, StorageError> {
        // One row per plugin: as few as the plugins.
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let rows = self.rows(
            "SELECT p.name, p.sha256, p.canary_percent, p.origin, p.generation, c.wasm
             FROM dragoman.plugins p JOIN dragoman.plugin_components c USING (sha256)
             WHERE p.generation > $1 ORDER BY p.generation",
            &[&after],
        )?;
        Ok(rows
            .iter()
            .map(|row| SharedPlugin {
                name: row.get(0),
                sha256: row.get(1),
                canary: row
                    .get::<_, Option<i32>>(2)
                    .and_then(|p| u8::try_from(p).ok()),
                origin: row.get(3),
                generation: row.get::<_, i64>(4) as u64,
                wasm: row.get(5),
            })
            .collect())
    }

    fn ready(&self) -> Result<(), StorageError> {
        self.run(async {
            let probe = async {
                let client = self.pool().get().await?;
                client.simple_query("SELECT 1").await.map_err(pg_error)
            };
            match tokio::time::timeout(READY_WAIT, probe).await {
                Ok(answered) => answered.map(drop),
                Err(_) => Err(StorageError::Backend(format!(
                    "the database did not answer within {} s",
                    READY_WAIT.as_secs()
                ))),
            }
        })
    }

    fn depths(&self) -> Result<Depths, StorageError> {
        let mut depths = self.run(outbox::depths(self.pool()))?;
        depths.pool = Some(self.pool().depth());
        Ok(depths)
    }
}

/// A new claim owner key.
fn new_owner() -> i64 {
    commit::Lock::Owner.key(&format!("{:x}", rand::random::<u64>()))
}

/// Opens the session that holds `owner`'s advisory lock, and takes it.
async fn own_claims(
    config: &tokio_postgres::Config,
    owner: i64,
) -> Result<tokio_postgres::Client, StorageError> {
    let (session, connection) = config.connect(NoTls).await.map_err(pg_error)?;
    tokio::spawn(connection);
    session
        .execute("SELECT pg_advisory_lock($1)", &[&owner])
        .await
        .map_err(pg_error)?;
    Ok(session)
}

/// Runs `future` on `runtime` and waits for it: from a blocking thread directly, from a task
/// of a multi-threaded runtime in place, and from a single-threaded runtime on a thread of
/// its own.
fn wait<T: Send>(
    runtime: &tokio::runtime::Runtime,
    future: impl Future<Output = Result<T, StorageError>> + Send,
) -> Result<T, StorageError> {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
            tokio::task::block_in_place(|| runtime.block_on(future))
        }
        Ok(_) => std::thread::scope(|scope| {
            scope
                .spawn(|| runtime.block_on(future))
                .join()
                .unwrap_or_else(|_| Err(StorageError::Backend("a store call panicked".into())))
        }),
        Err(_) => runtime.block_on(future),
    }
}

/// An instant as the schema keeps it: microseconds since the Unix epoch.
fn us(at: Timestamp) -> i64 {
    at.as_microsecond()
}

fn instant(us: i64) -> Result<Timestamp, StorageError> {
    Timestamp::from_microsecond(us).map_err(|e| StorageError::Corrupt {
        key: format!("{us} µs"),
        message: e.to_string(),
    })
}

/// A limit as SQL takes it.
fn limit_of(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A record read whole, named for the error.
fn record<T: DeserializeOwned>(what: &str, id: &str, bytes: &[u8]) -> Result<T, StorageError> {
    decode(format!("{what} {id}").as_bytes(), bytes)
}

fn dead_letter_row(row: &tokio_postgres::Row) -> Result<DeadLetter, StorageError> {
    let id: String = row.get(0);
    record("dead letter", &id, &row.get::<_, Vec<u8>>(1))
}

fn pg_error(e: tokio_postgres::Error) -> StorageError {
    match e.as_db_error() {
        Some(db) => StorageError::Backend(format!(
            "the database refused: {} ({})",
            db.message(),
            db.code().code()
        )),
        None => StorageError::Backend(format!("the database failed: {e}")),
    }
}

fn pool_error(e: deadpool_postgres::PoolError) -> StorageError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(e),
        other => StorageError::Backend(format!("no database connection: {other}")),
    }
}
