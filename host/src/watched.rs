//! The watched plugins directory: a `*.wasm` file created or changed in it is received as a
//! new version of the plugin it names itself, exactly as `PUT /v1/plugins/{name}` would
//! (checked, kept, made active on the routes that serve the plugin, or refused and audited).
//!
//! The file system tells of changes (inotify on Linux, through `notify`); a file is read
//! once nothing has happened to it for the debounce time, so a copy under way is read when
//! it is done, and a file that is then a WebAssembly binary cut short is left alone (counted
//! as `incomplete`) until its next change; any other file is received, and refused if it is
//! not a component. Hidden files (`.name`, as editors and
//! `rsync` write before renaming) are ignored. Files present when the host starts are not
//! taken: the registry already says what each route serves; only what changes afterwards
//! is. A file whose bytes were taken already is not taken again.
//!
//! Files are taken one at a time, in the order they settle.
//!
//! Only regular files are read (a symlink to one is fine), at most the upload's size cap,
//! with a reader that stops there: a link to `/dev/zero`, a FIFO or a directory named
//! `x.wasm` is refused by its type before any open that could block, and logged once, not
//! at every change.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::outcome::Activated;
use crate::pipeline::Pipeline;
use crate::plugin::MAX_COMPONENT_BYTES;
use crate::telemetry::Metrics;

/// How many change notices may wait; beyond it the directory is read again whole.
const NOTICES: usize = 1024;

/// The watched directory and what it has taken.
#[derive(Debug)]
pub(crate) struct WatchedDir {
    dir: PathBuf,
    debounce: Duration,
    pipeline: Pipeline,
    metrics: Arc<Metrics>,
    /// The host's readiness, which waits for the directory to be watched.
    ready: crate::relay::Running,
}

impl WatchedDir {
    pub(crate) fn new(
        dir: PathBuf,
        debounce: Duration,
        pipeline: Pipeline,
        metrics: Arc<Metrics>,
        ready: crate::relay::Running,
    ) -> Self {
        // Not ready until the directory is watched (`/readyz` says so).
        ready.set_plugins_watched(false);
        Self {
            dir,
            debounce,
            pipeline,
            metrics,
            ready,
        }
    }

    /// Watches until `cancel`.
    pub(crate) async fn run(self: Arc<Self>, cancel: CancellationToken) {
        use notify::Watcher as _;
        if let Err(e) = std::fs::create_dir_all(&self.dir) {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot make the plugins directory; not watching it");
            return;
        }
        let (tx, mut notices) = tokio::sync::mpsc::channel::<Vec<PathBuf>>(NOTICES);
        // Set when a notice was lost (the queue was full, or the watcher erred): the next
        // tick reads the whole directory instead.
        let lost = Arc::new(AtomicBool::new(false));
        let lost_by_watcher = lost.clone();
        let watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let sent = match event {
                Ok(event) if event.kind.is_access() => true,
                Ok(event) => tx.try_send(event.paths).is_ok(),
                Err(_) => false,
            };
            if !sent {
                lost_by_watcher.store(true, Ordering::SeqCst);
            }
        });
        let mut watcher = match watcher {
            Ok(watcher) => watcher,
            Err(e) => {
                tracing::error!(error = %e, "cannot watch the plugins directory");
                return;
            }
        };
        if let Err(e) = watcher.watch(&self.dir, notify::RecursiveMode::NonRecursive) {
            tracing::error!(dir = %self.dir.display(), error = %e, "cannot watch the plugins directory");
            return;
        }
        tracing::info!(dir = %self.dir.display(), "watching for plugin versions");
        let mut taken = self.snapshot().await;
        self.ready.set_plugins_watched(true);
        let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(self.debounce / 4);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                notice = notices.recv() => match notice {
                    Some(paths) => {
                        for path in paths.into_iter().filter(|p| candidate(p)) {
                            pending.insert(path, Instant::now());
                        }
                    }
                    None => return,
                },
                _ = tick.tick() => {
                    if lost.swap(false, Ordering::SeqCst) {
                        for path in self.files().await {
                            pending.entry(path).or_insert_with(Instant::now);
                        }
                    }
                    let settled: Vec<PathBuf> = pending
                        .iter()
                        .filter(|(_, at)| at.elapsed() >= self.debounce)
                        .map(|(path, _)| path.clone())
                        .collect();
                    for path in settled {
                        pending.remove(&path);
                        self.take(&path, &mut taken).await;
                    }
                }
            }
        }
    }

    /// Receives the file at `path` as a new version, unless it is unchanged, incomplete or
    /// not a regular file of at most the size cap.
    async fn take(&self, path: &Path, taken: &mut Taken) {
        let read = {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || read_bounded(&path, MAX_COMPONENT_BYTES)).await
        };
        let Ok(read) = read else {
            return;
        };
        let Some(wasm) = self.judge(path, read, &mut taken.refused) else {
            return;
        };
        let taken = &mut taken.hashes;
        let sha256 = crate::plugin::sha256_hex(&wasm);
        if taken.get(path) == Some(&sha256) {
            self.metrics.plugin_file("unchanged");
            return;
        }
        // A WebAssembly binary cut short is a write under way; anything else that is not a
        // component is taken, so that its refusal says why.
        let started = wasm.len() < 8 || wasm.starts_with(b"\0asm");
        if started && !crate::fixtures::is_whole(&wasm) {
            self.metrics.plugin_file("incomplete");
            tracing::debug!(file = %path.display(), "not a whole component yet; waiting for its next change");
            return;
        }
        taken.insert(path.to_owned(), sha256);
        self.metrics.plugin_file("taken");
        let file = path.display().to_string();
        match self
            .pipeline
            .push(None, wasm, crate::registry::Serve::Activate)
            .await
        {
            Activated::Serving { version, swaps, .. } => tracing::info!(
                file,
                plugin = version.name,
                version = version.version,
                routes = swaps.len(),
                "plugin file taken"
            ),
            Activated::Folding {
                version, changed, ..
            } => tracing::info!(
                file,
                projector = version.name,
                version = version.version,
                entity_types = changed.len(),
                "projector file taken"
            ),
            Activated::Kept { version, .. } => tracing::info!(
                file,
                plugin = version.name,
                version = version.version,
                "plugin file kept; no route serves the plugin"
            ),
            other => tracing::warn!(file, outcome = ?other, "plugin file not taken"),
        }
    }

    /// What a read gave: the bytes, or nothing (a refusal is counted and logged the first
    /// time the file gives it, and remembered in `refused`).
    fn judge(
        &self,
        path: &Path,
        read: Result<Vec<u8>, Unread>,
        refused: &mut HashMap<PathBuf, String>,
    ) -> Option<Vec<u8>> {
        match read {
            Ok(wasm) => {
                refused.remove(path);
                Some(wasm)
            }
            Err(Unread::Gone) => None,
            Err(unread) => {
                let why = unread.to_string();
                if refused.get(path) != Some(&why) {
                    self.metrics.plugin_file("refused");
                    tracing::warn!(file = %path.display(), reason = %why, "plugin file refused");
                    refused.insert(path.to_owned(), why);
                }
                None
            }
        }
    }

    /// The candidate files now, with their hashes: what is there before watching begins
    /// (read as [`WatchedDir::take`] reads, so a file it would refuse is refused here).
    async fn snapshot(&self) -> Taken {
        let files = self.files().await;
        let read = tokio::task::spawn_blocking(move || {
            files
                .into_iter()
                .map(|path| {
                    let read = read_bounded(&path, MAX_COMPONENT_BYTES);
                    (path, read)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        let mut taken = Taken::default();
        for (path, read) in read {
            if let Some(wasm) = self.judge(&path, read, &mut taken.refused) {
                let sha256 = crate::plugin::sha256_hex(&wasm);
                taken.hashes.insert(path, sha256);
            }
        }
        taken
    }

    /// The candidate files in the directory.
    async fn files(&self) -> Vec<PathBuf> {
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || {
            std::fs::read_dir(&dir)
                .map(|entries| {
                    entries
                        .filter_map(|e| e.ok().map(|e| e.path()))
                        .filter(|p| candidate(p))
                        .collect()
                })
                .unwrap_or_default()
        })
        .await
        .unwrap_or_default()
    }
}

/// What the watcher has seen of each file: the hash of the bytes it took, and why it last
/// refused one (so that a refusal is logged once).
#[derive(Debug, Default)]
struct Taken {
    hashes: HashMap<PathBuf, String>,
    refused: HashMap<PathBuf, String>,
}

/// Why a file was not read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Unread {
    /// Renamed away or deleted meanwhile: nothing to take.
    #[error("the file is gone")]
    Gone,
    /// Not a regular file (after following a link): a device, a FIFO, a socket, a directory.
    #[error("not a regular file ({0})")]
    NotRegular(&'static str),
    /// Larger than the cap.
    #[error("{size} bytes is over the {cap}-byte cap on a component")]
    TooLarge {
        /// Its size, as far as it was read.
        size: u64,
        /// The cap.
        cap: usize,
    },
    /// It could not be read.
    #[error("cannot read it: {0}")]
    Io(std::io::Error),
}

/// Reads the regular file at `path` (following a link), at most `cap` bytes: its type is
/// checked before it is opened (a FIFO's open blocks), and it is opened without blocking and
/// checked again (a file swapped meanwhile), then read with a reader that stops past `cap`.
pub(crate) fn read_bounded(path: &Path, cap: usize) -> Result<Vec<u8>, Unread> {
    use std::io::Read as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let io = |e: std::io::Error| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Unread::Gone
        } else {
            Unread::Io(e)
        }
    };
    let cap_bytes = u64::try_from(cap).unwrap_or(u64::MAX);
    let check = |meta: &std::fs::Metadata| {
        if !meta.is_file() {
            return Err(Unread::NotRegular(file_type(meta)));
        }
        if meta.len() > cap_bytes {
            return Err(Unread::TooLarge {
                size: meta.len(),
                cap,
            });
        }
        Ok(())
    };
    check(&std::fs::metadata(path).map_err(io)?)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    check(&file.metadata().map_err(io)?)?;
    let mut bytes = Vec::new();
    file.take(cap_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() > cap {
        return Err(Unread::TooLarge {
            size: bytes.len() as u64,
            cap,
        });
    }
    Ok(bytes)
}

/// The kind of a file that is not a regular one, for the refusal.
fn file_type(meta: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt as _;
    let kind = meta.file_type();
    if kind.is_dir() {
        "a directory"
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

/// Whether a path may be a plugin version: `*.wasm`, not hidden.
fn candidate(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && path.extension().is_some_and(|e| e == "wasm")
}
