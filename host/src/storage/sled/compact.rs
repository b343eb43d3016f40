//! Compaction (`Db::compact`, and `Db::live_bytes`, the record bytes it keeps): a copy of the
//! store's records into fresh sled files, put in place of the old ones. sled reuses the space
//! a removal frees but never gives it back to the file system, so after retention and
//! archival have removed history, the files only shrink by a copy.
//!
//! Where the store is: a store made by `Db::open` lives in the data dir itself; once
//! compacted, it lives in `DATA/store`, and the copy in progress in `DATA/store.new`. The
//! copy is written and flushed whole before anything moves:
//!
//! - the first compaction renames `store.new` to `store` (one rename), then removes sled's
//!   files from the data dir;
//! - a later one renames `store` to `store.old`, then `store.new` to `store`, then removes
//!   `store.old`.
//!
//! [`settle`] runs before every open and finishes or discards what a crash interrupted:
//! `store.old` only exists once the copy is whole, so with it and without `store`, the copy
//! goes in place; a `store.new` left otherwise is an unfinished copy and goes.

use std::path::{Path, PathBuf};

use super::open::open_sled;
use super::{Db, backend, sled_error};
use crate::storage::StorageError;

/// The page cache of a compaction's two stores: records stream through it.
const COPY_CACHE: u64 = 64 << 20;
/// Bytes of records per write of the copy, in key order. sled's files came out tightest at
/// about this size on this project's stores (measured from 4 KiB to 8 MiB: 1.6 times the
/// record bytes here, 2.1 at 4 KiB, 2.4 at 8 MiB, 3.4 one record per write).
const BATCH_BYTES: usize = 256 << 10;

/// What a compaction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Compacted {
    /// The store's files, in bytes, before.
    pub before: u64,
    /// The store's files, in bytes, after.
    pub after: u64,
    /// The records copied (every tree).
    pub records: u64,
}

impl Db {
    /// Copies the store in `dir` into fresh files and puts them in its place, giving back to
    /// the file system the space that removals freed (sled reuses that space but its files
    /// never shrink). The store must not be open; see `sled/compact.rs` for how a crash
    /// during the copy or the swap is settled at the next open.
    ///
    /// # Errors
    ///
    /// [`StorageError::Backend`] when the store is in use or a file cannot be read, written,
    /// renamed or removed.
    pub fn compact(dir: &Path) -> Result<Compacted, StorageError> {
        compact(dir)
    }

    /// The bytes of the records the store holds (keys and values), as against its size on
    /// disk: sled reuses the space a removal frees, but its files keep their size.
    ///
    /// # Errors
    ///
    /// [`StorageError::Backend`] when the store cannot be read.
    pub fn live_bytes(&self) -> Result<u64, StorageError> {
        let mut total = 0u64;
        for item in self.tree().iter() {
            let (key, value) = item.map_err(sled_error)?;
            total += (key.len() + value.len()) as u64;
        }
        Ok(total)
    }
}

/// The directory sled's files are in for the store in `data`, once what an interrupted
/// compaction left is settled.
pub(super) fn settle(data: &Path) -> Result<PathBuf, StorageError> {
    let (current, new, old) = (
        data.join("store"),
        data.join("store.new"),
        data.join("store.old"),
    );
    if old.exists() {
        if !current.exists() {
            rename(&new, &current)?;
        }
        remove(&old)?;
    }
    if new.exists() {
        remove(&new)?;
    }
    if current.exists() {
        // A first compaction that stopped before it removed the files it replaced.
        for name in sled_files(data)? {
            remove(&data.join(name))?;
        }
        return Ok(current);
    }
    Ok(data.to_path_buf())
}

/// Copies the store in `data` into fresh files and puts them in its place. The store must not
/// be open (its lock is taken for the copy).
///
/// # Errors
///
/// [`StorageError::Backend`] when the store is in use, or a file cannot be read, written,
/// renamed or removed; what is left is settled at the next open.
fn compact(data: &Path) -> Result<Compacted, StorageError> {
    let from = settle(data)?;
    let before = size(&from)?;
    let new = data.join("store.new");
    let source = open_sled(&from, COPY_CACHE)?;
    let target = open_sled(&new, COPY_CACHE)?;
    let mut records = 0u64;
    for name in source.tree_names() {
        let (reader, writer) = (
            source.open_tree(&name).map_err(sled_error)?,
            target.open_tree(&name).map_err(sled_error)?,
        );
        let (mut batch, mut bytes) = (::sled::Batch::default(), 0usize);
        for item in reader.iter() {
            let (key, value) = item.map_err(sled_error)?;
            bytes += key.len() + value.len();
            batch.insert(key, value);
            records += 1;
            if bytes >= BATCH_BYTES {
                writer
                    .apply_batch(std::mem::take(&mut batch))
                    .map_err(sled_error)?;
                bytes = 0;
            }
        }
        writer.apply_batch(batch).map_err(sled_error)?;
    }
    target.flush().map_err(sled_error)?;
    drop(target);
    drop(source);
    let current = data.join("store");
    if from == current {
        rename(&current, &data.join("store.old"))?;
        rename(&new, &current)?;
        remove(&data.join("store.old"))?;
    } else {
        rename(&new, &current)?;
        for name in sled_files(data)? {
            remove(&data.join(name))?;
        }
    }
    Ok(Compacted {
        before,
        after: size(&current)?,
        records,
    })
}

/// sled's own files in a data dir: `conf`, `db`, `blobs` and the `snap.*` snapshots (the
/// data dir also holds the host's `plugins` and `compiled` directories).
fn sled_files(data: &Path) -> Result<Vec<String>, StorageError> {
    let entries = std::fs::read_dir(data)
        .map_err(|e| backend(format!("cannot read {}: {e}", data.display())))?;
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| backend(format!("cannot read {}: {e}", data.display())))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if matches!(name.as_str(), "conf" | "db" | "blobs") || name.starts_with("snap.") {
            names.push(name);
        }
    }
    Ok(names)
}

/// The bytes of sled's files for a store in `dir`.
fn size(dir: &Path) -> Result<u64, StorageError> {
    let mut total = 0;
    for name in sled_files(dir)? {
        total += tree_size(&dir.join(name))?;
    }
    Ok(total)
}

fn tree_size(path: &Path) -> Result<u64, StorageError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| backend(format!("cannot read {}: {e}", path.display())))?;
    if !meta.is_dir() {
        return Ok(meta.len());
    }
    let mut total = 0;
    for entry in std::fs::read_dir(path)
        .map_err(|e| backend(format!("cannot read {}: {e}", path.display())))?
    {
        let entry = entry.map_err(|e| backend(format!("cannot read {}: {e}", path.display())))?;
        total += tree_size(&entry.path())?;
    }
    Ok(total)
}

/// Renames `from` to `to` and syncs their directory, so that the rename survives a crash.
fn rename(from: &Path, to: &Path) -> Result<(), StorageError> {
    std::fs::rename(from, to).map_err(|e| {
        backend(format!(
            "cannot rename {} to {}: {e}",
            from.display(),
            to.display()
        ))
    })?;
    sync_parent(to)
}

fn remove(path: &Path) -> Result<(), StorageError> {
    let removed = if path.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    removed.map_err(|e| backend(format!("cannot remove {}: {e}", path.display())))?;
    sync_parent(path)
}

fn sync_parent(path: &Path) -> Result<(), StorageError> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    std::fs::File::open(parent)
        .and_then(|dir| dir.sync_all())
        .map_err(|e| backend(format!("cannot sync {}: {e}", parent.display())))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::Db;

    /// Keys `0..n` of `len` bytes each in the store's tree.
    fn fill(store: &Db, keys: std::ops::Range<u32>, len: usize) {
        for n in keys {
            let value: Vec<u8> = (0..len).map(|i| (i as u32 ^ n) as u8).collect();
            store.tree().insert(n.to_be_bytes(), value).unwrap();
        }
    }

    fn keys(dir: &Path) -> Vec<u32> {
        let store = Db::open(dir).unwrap();
        store
            .tree()
            .iter()
            .keys()
            .filter_map(|key| Some(u32::from_be_bytes(key.ok()?.as_ref().try_into().ok()?)))
            .collect()
    }

    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                copy_dir(&entry.path(), &to.join(entry.file_name()));
            } else {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }

    #[test]
    fn a_compaction_gives_back_what_removals_freed_and_keeps_every_record() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        std::fs::create_dir_all(data.join("plugins")).unwrap();
        std::fs::write(data.join("plugins/orders.wasm"), b"a plugin").unwrap();
        {
            let store = Db::open(data).unwrap();
            fill(&store, 0..4000, 2000);
            for n in 0..3600u32 {
                store.tree().remove(n.to_be_bytes()).unwrap();
            }
            store.flush().unwrap();
        }
        let done = Db::compact(data).unwrap();
        assert!(
            done.after * 2 < done.before,
            "a tenth of the records stay: {done:?}"
        );
        assert!(data.join("store").is_dir());
        assert!(!data.join("db").exists() && !data.join("conf").exists());
        assert_eq!(
            std::fs::read(data.join("plugins/orders.wasm")).unwrap(),
            b"a plugin",
            "the host's own files stay"
        );
        assert_eq!(keys(data), (3600..4000).collect::<Vec<_>>());
        // A second compaction: the store is already in `store`.
        let again = Db::compact(data).unwrap();
        assert_eq!(again.records, done.records);
        assert_eq!(keys(data), (3600..4000).collect::<Vec<_>>());
        assert!(!data.join("store.old").exists() && !data.join("store.new").exists());
    }

    #[test]
    fn what_a_crash_leaves_mid_compaction_is_settled_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path();
        fill(&Db::open(data).unwrap(), 0..100, 100);

        // A copy that stopped half way: discarded, the old files still serve.
        std::fs::create_dir_all(data.join("store.new")).unwrap();
        std::fs::write(data.join("store.new/db"), b"half a copy").unwrap();
        assert_eq!(keys(data).len(), 100);
        assert!(!data.join("store.new").exists());

        // The first compaction renamed the copy in, then stopped before removing the files
        // it replaced: they go.
        Db::compact(data).unwrap();
        std::fs::write(data.join("db"), b"an old file").unwrap();
        std::fs::write(data.join("snap.00000000001"), b"an old snapshot").unwrap();
        assert_eq!(keys(data).len(), 100);
        assert!(!data.join("db").exists() && !data.join("snap.00000000001").exists());

        // A later compaction moved the current store aside, then stopped before renaming the
        // whole copy in: the copy goes in.
        {
            let store = Db::open(data).unwrap();
            fill(&store, 100..150, 100);
            store.flush().unwrap();
        }
        copy_dir(&data.join("store"), &data.join("store.new"));
        std::fs::rename(data.join("store"), data.join("store.old")).unwrap();
        assert_eq!(keys(data), (0..150).collect::<Vec<_>>());
        assert!(!data.join("store.old").exists() && !data.join("store.new").exists());
    }
}
