//! `store`: where the host keeps what it knows. Unset, the embedded sled store in `data_dir`;
//! `{ type = "postgres", url = { env = "DRAGOMAN_DATABASE_URL" }, pool = 16 }`, a PostgreSQL
//! database that several hosts may share (the URL is a secret: a literal, `{ env = … }` or
//! `{ file = … }`, never shown).

use std::path::Path;

use serde::Deserialize;

use super::secret::{RawSecret, Secret};

/// The connections a PostgreSQL store opens at most, unless the config says.
pub const DEFAULT_POOL: usize = 16;

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub(super) enum RawStore {
    Sled,
    Postgres { url: RawSecret, pool: Option<usize> },
}

/// Where the host keeps what it knows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum StoreConfig {
    /// The embedded store, in the data dir.
    #[default]
    Sled,
    /// A PostgreSQL database.
    Postgres {
        /// Its URL (it may hold a password).
        url: Secret,
        /// Connections at most.
        pool: usize,
    },
}

pub(super) fn check(raw: Option<RawStore>, base: &Path) -> Result<StoreConfig, String> {
    match raw {
        None | Some(RawStore::Sled) => Ok(StoreConfig::Sled),
        Some(RawStore::Postgres { url, pool }) => {
            let pool = pool.unwrap_or(DEFAULT_POOL);
            if !(1..=1024).contains(&pool) {
                return Err(format!("store.pool = {pool}: give 1 to 1024 connections"));
            }
            Ok(StoreConfig::Postgres {
                url: url.resolve(base, "store.url")?,
                pool,
            })
        }
    }
}
