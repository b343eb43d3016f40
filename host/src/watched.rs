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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::outcome::Activated;
use crate::pipeline::Pipeline;
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
}

impl WatchedDir {
    pub(crate) fn new(
        dir: PathBuf,
        debounce: Duration,
        pipeline: Pipeline,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            dir,
            debounce,
            pipeline,
            metrics,
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

    /// Receives the file at `path` as a new version, unless it is unchanged or incomplete.
    async fn take(&self, path: &Path, taken: &mut HashMap<PathBuf, String>) {
        let read = {
            let path = path.to_owned();
            tokio::task::spawn_blocking(move || std::fs::read(path)).await
        };
        let Ok(Ok(wasm)) = read else {
            // Gone (renamed away, deleted) or unreadable: nothing to take.
            return;
        };
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
            Activated::Kept { version, .. } => tracing::info!(
                file,
                plugin = version.name,
                version = version.version,
                "plugin file kept; no route serves the plugin"
            ),
            other => tracing::warn!(file, outcome = ?other, "plugin file not taken"),
        }
    }

    /// The candidate files now, with their hashes: what is there before watching begins.
    async fn snapshot(&self) -> HashMap<PathBuf, String> {
        let files = self.files().await;
        tokio::task::spawn_blocking(move || {
            files
                .into_iter()
                .filter_map(|path| {
                    let wasm = std::fs::read(&path).ok()?;
                    Some((path, crate::plugin::sha256_hex(&wasm)))
                })
                .collect()
        })
        .await
        .unwrap_or_default()
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

/// Whether a path may be a plugin version: `*.wasm`, not hidden.
fn candidate(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    !name.starts_with('.') && path.extension().is_some_and(|e| e == "wasm")
}
