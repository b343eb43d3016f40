//! The on-disk cache of compiled components.
//!
//! A component is compiled once per engine configuration: the file name is the sha256 of the
//! wasm bytes and a hash of everything in the engine that affects the machine code
//! (`Engine::precompile_compatibility_hash`, which covers the wasmtime version, the target and
//! the compiler settings). A file is the serialized component followed by its CRC-32 (a
//! checksum against torn and damaged files, quick on tens of megabytes; the directory is
//! trusted, so it need not resist tampering);
//! it is written to a temporary name, fsynced, renamed into place and the directory fsynced,
//! so a crash or a power loss leaves either no file or a whole one, and a torn or damaged file
//! fails its checksum before any of its machine code is loaded. A file that fails to load is
//! recompiled and replaced.
//!
//! The cache directory must be as trusted as the host binary: loading a cached file runs the
//! machine code in it.
//!
//! The cache is bounded: a file loaded is touched (its modification time is its last use),
//! and after a write the least recently used files go until the cache is within its cap
//! (never the one just written). The compiled files of a version the registry no longer
//! keeps go with it ([`Cache::forget`]).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

/// Where compiled components live, or nowhere.
#[derive(Debug, Clone)]
pub(crate) struct Cache {
    dir: Option<PathBuf>,
    engine_hash: String,
    max_bytes: u64,
}

/// A compiled file the cache removed, or would remove.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CompiledFile {
    /// Its file name.
    pub file: String,
    /// Its size in bytes.
    pub bytes: u64,
}

/// How a component was obtained, for logs and benchmarks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    /// Compiled from the wasm bytes (and written to the cache, if there is one).
    Compiled,
    /// Loaded from the on-disk cache.
    Cached,
}

impl Cache {
    pub(crate) fn new(engine: &Engine, dir: Option<PathBuf>, max_bytes: u64) -> Self {
        let mut hasher = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self {
            dir,
            engine_hash: crate::hex::encode(&hasher.0.finalize()[..16]),
            max_bytes,
        }
    }

    /// The compiled files of the components whose sha256 `forgotten` holds (of any engine),
    /// removed unless `dry_run`.
    pub(crate) fn forget(&self, forgotten: &[&str], dry_run: bool) -> Vec<CompiledFile> {
        let mut gone: Vec<CompiledFile> = self
            .files()
            .into_iter()
            .filter(|(path, ..)| {
                file_name(path)
                    .split_once('-')
                    .is_some_and(|(sha256, _)| forgotten.contains(&sha256))
            })
            .filter(|(path, ..)| dry_run || remove(path))
            .map(|(path, bytes, _)| CompiledFile {
                file: file_name(&path),
                bytes,
            })
            .collect();
        gone.sort_by(|a, b| a.file.cmp(&b.file));
        gone
    }

    /// Removes the least recently used files until the cache is within its cap, sparing
    /// `kept`.
    fn bound(&self, kept: &Path) {
        let mut files = self.files();
        let mut total: u64 = files.iter().map(|(_, bytes, _)| bytes).sum();
        files.sort_by_key(|(_, _, used)| *used);
        for (path, bytes, _) in files {
            if total <= self.max_bytes {
                break;
            }
            if path != kept && remove(&path) {
                tracing::info!(file = %path.display(), bytes, "compiled component evicted from the cache");
                total = total.saturating_sub(bytes);
            }
        }
    }

    /// Every compiled file: its path, size and last use.
    fn files(&self) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
        let Some(dir) = &self.dir else {
            return Vec::new();
        };
        let Ok(entries) = std::fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "cwasm"))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((e.path(), meta.len(), meta.modified().ok()?))
            })
            .collect()
    }

    fn path(&self, sha256: &str) -> Option<PathBuf> {
        self.dir
            .as_ref()
            .map(|dir| dir.join(format!("{sha256}-{}.cwasm", self.engine_hash)))
    }

    /// The compiled form of `wasm`, from the cache when it has it.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        sha256: &str,
    ) -> wasmtime::Result<(Component, Provenance)> {
        let path = self.path(sha256);
        if let Some(path) = path.as_ref().filter(|p| p.exists()) {
            match read_checked(path).and_then(|bytes| deserialize(engine, &bytes)) {
                Ok(component) => {
                    touch(path);
                    return Ok((component, Provenance::Cached));
                }
                Err(e) => tracing::warn!(
                    path = %path.display(), error = %e, "cached component unusable; recompiling"
                ),
            }
        }
        let component = Component::new(engine, wasm)?;
        if let Some(path) = path {
            match store(&component, &path) {
                Ok(()) => self.bound(&path),
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "could not write the compiled component to the cache");
                }
            }
        }
        Ok((component, Provenance::Compiled))
    }
}

#[expect(
    unsafe_code,
    reason = "loading precompiled machine code is unsafe by nature"
)]
fn deserialize(engine: &Engine, bytes: &[u8]) -> wasmtime::Result<Component> {
    // SAFETY: the bytes passed their checksum (`read_checked`), so they are the whole of what
    // `store` below wrote from `Component::serialize` with an engine of the same
    // compatibility hash (it is in the file name), into the cache directory that the
    // operator owns; wasmtime checks the header and the engine settings again.
    unsafe { Component::deserialize(engine, bytes) }
}

/// The length of the checksum after the serialized component.
const CHECKSUM: usize = 4;

/// A cache file's component bytes, if they match the checksum that follows them.
fn read_checked(path: &Path) -> wasmtime::Result<Vec<u8>> {
    let mut bytes = std::fs::read(path)?;
    let Some(split) = bytes.len().checked_sub(CHECKSUM) else {
        wasmtime::bail!("{} bytes, too short for a cached component", bytes.len());
    };
    if crc32fast::hash(&bytes[..split]).to_le_bytes()[..] != bytes[split..] {
        wasmtime::bail!("the file does not match its checksum (torn or damaged)");
    }
    bytes.truncate(split);
    Ok(bytes)
}

fn store(component: &Component, path: &Path) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut bytes = component.serialize().map_err(std::io::Error::other)?;
    let checksum = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&checksum.to_le_bytes());
    let dir = path.parent().expect("a cache path has a directory");
    std::fs::create_dir_all(dir)?;
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let unique = NEXT.fetch_add(1, Ordering::Relaxed);
    let temporary = path.with_extension(format!("tmp-{}-{unique}", std::process::id()));
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(&bytes)?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temporary, path)?;
    // The rename itself is durable only once the directory is.
    std::fs::File::open(dir)?.sync_all()
}

/// Marks a cache file as used now (its modification time); a failure only makes it look
/// older.
fn touch(path: &Path) {
    let touched = std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(std::time::SystemTime::now()));
    if let Err(e) = touched {
        tracing::debug!(path = %path.display(), error = %e, "could not mark a cached component as used");
    }
}

/// Removes a cache file; whether it went (or was gone already).
fn remove(path: &Path) -> bool {
    match std::fs::remove_file(path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a cached component");
            false
        }
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// The sha256 of `bytes`, lower-case hex.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    crate::hex::encode(&Sha256::digest(bytes))
}

/// Feeds `Hash` input into sha256, so the engine hash is stable across runs and builds.
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn finish(&self) -> u64 {
        unreachable!("only the sha256 digest is read")
    }

    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }
}
