//! The store's connections: a pool that counts its waits and failures for `/metrics`, the
//! statements run on it, how a synchronous caller waits for them, and the database's errors
//! as the store's.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use crate::storage::{PoolDepth, StorageError};

/// How long a call waits for a free connection before it fails.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// How long opening a connection may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The pool, with what it counts for `/metrics`.
#[derive(Debug)]
pub(super) struct Connections {
    pool: Pool,
    waits: AtomicU64,
    errors: AtomicU64,
}

impl Connections {
    /// A pool of up to `size` connections to the database `config` names.
    pub(super) fn new(config: tokio_postgres::Config, size: usize) -> Result<Self, StorageError> {
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(size.max(1))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StorageError::Backend(format!("cannot make the pool: {e}")))?;
        Ok(Self {
            pool,
            waits: AtomicU64::new(0),
            errors: AtomicU64::new(0),
        })
    }

    /// One statement's rows, with the statement prepared once per connection.
    pub(super) async fn query(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StorageError> {
        let client = self.get().await?;
        let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
        client.query(&statement, params).await.map_err(pg_error)
    }

    /// One statement, for the rows it changed.
    pub(super) async fn execute(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StorageError> {
        let client = self.get().await?;
        let statement = client.prepare_cached(sql).await.map_err(pg_error)?;
        client.execute(&statement, params).await.map_err(pg_error)
    }

    /// A connection: an idle one, a new one while the pool is not full, else the first one
    /// given back (a wait, counted), within [`POOL_WAIT`].
    pub(super) async fn get(&self) -> Result<deadpool_postgres::Object, StorageError> {
        let status = self.pool.status();
        if status.available == 0 && status.size >= status.max_size {
            self.waits.fetch_add(1, Ordering::Relaxed);
        }
        self.pool.get().await.map_err(|e| {
            self.errors.fetch_add(1, Ordering::Relaxed);
            pool_error(e)
        })
    }

    pub(super) fn depth(&self) -> PoolDepth {
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

/// Runs `future` on `runtime` and waits for it: from a blocking thread directly, from a task
/// of a multi-threaded runtime in place, and from a single-threaded runtime on a thread of
/// its own.
pub(super) fn wait<T: Send>(
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

pub(super) fn pg_error(e: tokio_postgres::Error) -> StorageError {
    match e.as_db_error() {
        Some(db) => StorageError::Backend(format!(
            "the database refused: {} ({})",
            db.message(),
            db.code().code()
        )),
        None => StorageError::Backend(format!("the database failed: {e}")),
    }
}

pub(super) fn pool_error(e: deadpool_postgres::PoolError) -> StorageError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => pg_error(e),
        other => StorageError::Backend(format!("no database connection: {other}")),
    }
}
