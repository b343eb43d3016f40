//! The schema's migrations: SQL files in `host/migrations/`, numbered, each applied once in a
//! transaction of its own and recorded in `dragoman.schema_versions`. A host applies what is
//! missing at start under an advisory lock, so replicas starting together apply each once;
//! it refuses a database whose schema is newer than it knows.

use tokio_postgres::Client;

use super::{ADVISORY_MIGRATE, pg_error};
use crate::storage::StorageError;

/// The migrations this host knows, in order: (version, name, SQL).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "store",
        include_str!("../../../migrations/0001_store.sql"),
    ),
    (
        2,
        "leases",
        include_str!("../../../migrations/0002_leases.sql"),
    ),
    (
        3,
        "plugins",
        include_str!("../../../migrations/0003_plugins.sql"),
    ),
    (
        4,
        "owner_alive",
        include_str!("../../../migrations/0004_owner_alive.sql"),
    ),
];

/// The newest schema version this host knows.
pub(super) fn known() -> i32 {
    MIGRATIONS.last().map_or(0, |(version, _, _)| *version)
}

/// Brings the schema up to [`known`], or says why it cannot.
pub(super) async fn to_current(client: &mut Client) -> Result<(), StorageError> {
    client
        .execute("SELECT pg_advisory_lock($1)", &[&ADVISORY_MIGRATE])
        .await
        .map_err(pg_error)?;
    let outcome = apply(client).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&ADVISORY_MIGRATE])
        .await
        .map_err(pg_error);
    outcome.and(unlocked.map(drop))
}

async fn apply(client: &mut Client) -> Result<(), StorageError> {
    client
        .batch_execute(
            "CREATE SCHEMA IF NOT EXISTS dragoman;
             CREATE TABLE IF NOT EXISTS dragoman.schema_versions (
                 version    integer PRIMARY KEY,
                 name       text NOT NULL,
                 applied_at timestamptz NOT NULL DEFAULT now()
             );",
        )
        .await
        .map_err(pg_error)?;
    let current: i32 = client
        .query_one(
            "SELECT coalesce(max(version), 0) FROM dragoman.schema_versions",
            &[],
        )
        .await
        .map_err(pg_error)?
        .get(0);
    if current > known() {
        return Err(StorageError::Backend(format!(
            "the database's schema is at version {current}, newer than this host knows \
             ({}): run a newer host, or a database of its own",
            known()
        )));
    }
    for (version, name, sql) in MIGRATIONS {
        if *version <= current {
            continue;
        }
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.batch_execute(sql).await.map_err(|e| {
            StorageError::Backend(format!("migration {version:04}_{name} failed: {e}"))
        })?;
        tx.execute(
            "INSERT INTO dragoman.schema_versions (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(pg_error)?;
        tx.commit().await.map_err(pg_error)?;
        tracing::info!(version, name, "applied a schema migration");
    }
    Ok(())
}
