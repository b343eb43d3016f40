//! Opening sled on a data dir: its page cache, and the wait for its lock.

use std::path::Path;
use std::time::{Duration, Instant};

use super::backend;
use crate::storage::StorageError;

/// How long `open` waits for the data dir's lock. sled releases the lock when the last of its
/// handles goes, and its background threads hold handles for a moment after a store in this
/// process is dropped; a restart in the same process waits that moment out. Another process
/// holding the lock is reported when the wait runs out.
const LOCK_WAIT: Duration = Duration::from_secs(5);

/// sled's page cache for a serving host: its own default.
pub(super) const DEFAULT_CACHE: u64 = 1 << 30;

pub(super) fn open_sled(dir: &Path, cache_bytes: u64) -> Result<::sled::Db, StorageError> {
    let deadline = Instant::now() + LOCK_WAIT;
    loop {
        let opened = std::panic::catch_unwind(|| {
            ::sled::Config::new()
                .path(dir)
                .cache_capacity(cache_bytes)
                .open()
        })
        .map_err(|_| {
            backend(format!(
                "the store in {} is damaged and cannot be opened",
                dir.display()
            ))
        })?;
        match opened {
            Ok(db) => return Ok(db),
            Err(::sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                if Instant::now() >= deadline {
                    return Err(backend(format!(
                        "the store in {} is in use: another process (or a store in this \
                         process that is still open) holds its lock",
                        dir.display()
                    )));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => {
                return Err(backend(format!(
                    "cannot open the store in {}: {e}",
                    dir.display()
                )));
            }
        }
    }
}
