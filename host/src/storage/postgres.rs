//! `Postgres`, the [`Storage`] on PostgreSQL, which several hosts may share: the only module
//! that speaks SQL. The schema is in `host/migrations/` (applied at open, `postgres/migrate.rs`);
//! a commit is one SQL transaction (`postgres/commit.rs`); the outbox, the relay's reads and
//! writes, and the sweep are in `postgres/outbox.rs`; claims and the owner session that keeps
//! them alive in `postgres/claims.rs`; the pool in `postgres/connections.rs`; what each plugin
//! serves, shared by the hosts, in `postgres/plugins.rs`; whole streams and snapshots read back
//! in `postgres/streams.rs`.
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

mod claims;
mod commit;
mod connections;
mod leases;
mod migrate;
mod outbox;
mod plugins;
mod streams;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use serde::de::DeserializeOwned;

use self::claims::{new_owner, own_claims};
use self::connections::{CONNECT_TIMEOUT, Connections, pg_error, wait};
use super::codec::{decode, encode};
use crate::storage::{
    Anchor, AuditDraft, AuditEvent, Claim, ClaimToken, Commit, Cut, DeadLetter, DeliveryOutcome,
    Depths, Due, Durable, EntityEvent, EntityRef, Forgot, MessageRecord, Released, SharedPlugin,
    Snapshot, SnapshotBound, Storage, StorageError, Swept,
};

/// The advisory lock held while migrations run (one key, outside the ranges of the locks in
/// `postgres/commit.rs`).
const ADVISORY_MIGRATE: i64 = 0x4452_4147_4f4d_414e;

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
        let pool = Connections::new(config.clone(), pool)?;
        let owner = new_owner();
        let session = wait(&runtime, async {
            let mut client = pool.get().await?;
            migrate::to_current(&mut client).await?;
            own_claims(&config, owner).await
        })?;
        Ok(Self {
            inner: Arc::new(Inner {
                runtime: Some(runtime),
                pool,
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

    /// One statement's rows ([`Connections::query`]).
    fn rows(
        &self,
        sql: &'static str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StorageError> {
        self.run(self.pool().query(sql, params))
    }

    /// One statement, for the rows it changed ([`Connections::execute`]).
    fn execute(
        &self,
        sql: &'static str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<u64, StorageError> {
        self.run(self.pool().execute(sql, params))
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
        self.run(async {
            let owner = self.owner().await?;
            claims::claim(self.pool(), owner, route, key, now, in_flight_timeout).await
        })
    }

    fn release(&self, claim: &ClaimToken) -> Result<(), StorageError> {
        self.run(claims::release(self.pool(), claim))
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
            "SELECT event FROM dragoman.audit WHERE stream = $1 AND version > 0 ORDER BY version",
            &[&message_id],
        )?;
        rows.iter()
            .map(|row| record("audit event", message_id, &row.get::<_, Vec<u8>>(0)))
            .collect()
    }

    fn forget_messages(
        &self,
        after: Option<&str>,
        limit: usize,
        forget: &(dyn Fn(&str, &str, Timestamp) -> Option<bool> + Sync),
    ) -> Result<Forgot, StorageError> {
        let rows = self.rows(
            "SELECT id, route, received_us FROM dragoman.messages
             WHERE id > $1 ORDER BY id LIMIT $2",
            &[&after.unwrap_or(""), &(limit as i64)],
        )?;
        let messages = rows.iter().map(|row| {
            let id: String = row.get(0);
            let received =
                Timestamp::from_microsecond(row.get(2)).map_err(|e| StorageError::Corrupt {
                    key: id.clone(),
                    message: e.to_string(),
                })?;
            Ok((id, row.get(1), received))
        });
        let (gone, forgot) = Forgot::page(messages, limit, forget)?;
        if !gone.is_empty() {
            self.rows(
                "DELETE FROM dragoman.messages WHERE id = ANY($1) RETURNING id",
                &[&gone],
            )?;
        }
        Ok(forgot)
    }

    fn audit_anchor(&self, message_id: &str) -> Result<Option<Anchor>, StorageError> {
        let rows = self.rows(
            "SELECT event FROM dragoman.audit WHERE stream = $1 AND version = 0",
            &[&message_id],
        )?;
        rows.first()
            .map(|row| record("audit anchor", message_id, &row.get::<_, Vec<u8>>(0)))
            .transpose()
    }

    fn archive_audit(&self, cuts: &[crate::storage::StreamCut]) -> Result<(), StorageError> {
        self.run(streams::archive_audit(self.pool(), cuts))
    }

    fn walk_audit(&self, visit: &mut crate::storage::AuditVisit<'_>) -> Result<(), StorageError> {
        self.run(streams::walk_audit(self.pool(), visit))
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
        self.run(streams::snapshot(self.pool(), entity, projector, bound))
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

    fn walk_entities(
        &self,
        visit: &mut crate::storage::EntityVisit<'_>,
    ) -> Result<(), StorageError> {
        self.run(streams::walk_entities(self.pool(), visit))
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
        self.run(plugins::share(self.pool(), shared))
    }

    fn shared_plugins(&self, after: u64) -> Result<Vec<SharedPlugin>, StorageError> {
        self.run(plugins::changed_since(self.pool(), after))
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
