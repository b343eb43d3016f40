//! The plugin registry: every version of every plugin the host was given, kept as its bytes,
//! and which version each route serves.
//!
//! A rollback must never depend on a compiled artifact that a newer wasmtime cannot load,
//! so the registry keeps the component itself; the compiled cache (`plugin/cache.rs`) only
//! makes loading it fast. Layout, under the data directory's `plugins/`:
//!
//! - `versions/SHA256.wasm`: the component, written once (to a temporary name, fsynced,
//!   renamed, the directory fsynced) and never changed: its name is its hash;
//! - `versions/SHA256.json`: what it says it is (name, version, vendor API version) and when
//!   it was first received, written after the component;
//! - `routes.json`: per route (and per entity type, as `projector:TYPE`, for the projector
//!   that folds it), the active version, the ones active before it (most recent
//!   last, for rollback) and the hash of the file the configuration names (so an operator
//!   who points the config at a new file gets it at the next start, while a restart with the
//!   same config serves what was active), replaced whole with the same write-rename dance.
//!
//! This module knows nothing of wasmtime: the caller loads and checks a version before it
//! asks for it to be kept or made active.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

mod gc;

pub(crate) use gc::plan;

/// Why the registry could not do it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A file could not be read or written.
    #[error("plugin registry, {path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// A file is not what the registry wrote.
    #[error("plugin registry, {path}: {message}")]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One version of a plugin, as the registry knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// The name the plugin gives itself.
    pub name: String,
    /// Its own version.
    pub version: String,
    /// The vendor API version it speaks.
    pub vendor_api_version: String,
    /// The sha256 of its component.
    pub sha256: String,
    /// The component's size in bytes.
    pub size: u64,
    /// When the host first received it.
    pub received_at: Timestamp,
    /// For a projector, the entity type it folds (a projector speaks no vendor's API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub folds: Option<String>,
}

impl Version {
    /// The registry's record of a loaded plugin whose component is `wasm`, received `now`.
    pub(crate) fn of(plugin: &crate::plugin::Plugin, wasm: &[u8], now: Timestamp) -> Self {
        let info = plugin.info();
        Self {
            name: info.name.clone(),
            version: info.version.clone(),
            vendor_api_version: info.vendor_api_version.clone(),
            sha256: plugin.id().sha256.clone(),
            size: wasm.len() as u64,
            received_at: now,
            folds: None,
        }
    }

    /// The registry's record of a loaded projector whose component is `wasm`.
    pub(crate) fn of_projector(
        projector: &crate::plugin::Projector,
        wasm: &[u8],
        now: Timestamp,
    ) -> Self {
        let info = projector.info();
        Self {
            name: info.name.clone(),
            version: info.version.clone(),
            vendor_api_version: String::new(),
            sha256: projector.id().sha256.clone(),
            size: wasm.len() as u64,
            received_at: now,
            folds: Some(info.entity_type.clone()),
        }
    }
}

/// The audit stream of a plugin's versions.
pub(crate) fn plugin_stream(name: &str) -> String {
    format!("plugin:{name}")
}

/// The registry's name for the projector of an entity type, beside the routes' names (which
/// never hold a `:`).
pub(crate) fn projector_slot(entity_type: &str) -> String {
    format!("projector:{entity_type}")
}

/// What a route serves, and served before.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RouteState {
    /// The sha256 of the active version.
    pub(crate) active: String,
    /// The versions active before, most recent last.
    pub(crate) previous: Vec<String>,
    /// The sha256 of the file the configuration named when this state was written.
    pub(crate) configured: String,
}

/// What a slot serves at start ([`Registry::at_start`]).
#[derive(Debug)]
pub(crate) struct AtStart {
    /// The component's bytes.
    pub(crate) wasm: Vec<u8>,
    /// Where they came from, for logs and errors.
    pub(crate) shown: String,
    configured_sha: String,
    state: Option<RouteState>,
}

/// What becomes of a version once it passed its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// Kept in the registry only.
    Keep,
    /// Made active on every route that serves the plugin.
    Activate,
    /// Serves this percent (1 to 99) of each such route's messages beside the active version,
    /// judged, and rolled back by itself when it fails more.
    Canary(u8),
    /// Translates each such route's messages in shadow: compared with the active version's
    /// output, never committed.
    Shadow,
}

/// Which version to take, as an operator names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// The plugin's own version string.
    Version(String),
    /// The sha256 of the component, whole or its first 12 or more hex digits.
    Sha256(String),
}

impl Selector {
    /// A selector from what an operator typed: hex of 12 to 64 digits is a hash, anything
    /// else a version.
    pub fn parse(text: &str) -> Self {
        let text = text.trim();
        if (12..=64).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit()) {
            Self::Sha256(text.to_ascii_lowercase())
        } else {
            Self::Version(text.to_owned())
        }
    }

    fn matches(&self, version: &Version) -> bool {
        match self {
            Self::Version(v) => version.version == *v,
            Self::Sha256(prefix) => version.sha256.starts_with(prefix.as_str()),
        }
    }
}

impl std::fmt::Display for Selector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Version(v) => write!(f, "version {v}"),
            Self::Sha256(sha) => write!(f, "sha256 {sha}"),
        }
    }
}

/// What a selector found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Exactly one version.
    One(Version),
    /// None.
    None,
    /// Several (one version string given to different components): name it by hash.
    Ambiguous(Vec<Version>),
}

/// The registry in a directory.
#[derive(Debug)]
pub(crate) struct Registry {
    dir: PathBuf,
    /// How many earlier versions a route remembers, and versions of a plugin kept.
    keep: usize,
    /// The routes' states, as `routes.json` holds them; the lock also orders its writes.
    routes: Mutex<BTreeMap<String, RouteState>>,
}

impl Registry {
    /// Opens (or creates) the registry in `dir`, keeping `keep` versions of each plugin and
    /// as many earlier versions per route.
    ///
    /// # Errors
    ///
    /// When the directory cannot be made or `routes.json` cannot be read.
    pub(crate) fn open(dir: &Path, keep: usize) -> Result<Self, RegistryError> {
        let versions = dir.join("versions");
        std::fs::create_dir_all(&versions).map_err(|error| RegistryError::Io {
            path: versions.clone(),
            error,
        })?;
        let file = dir.join("routes.json");
        let routes = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| RegistryError::Damaged {
                path: file.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(error) => return Err(RegistryError::Io { path: file, error }),
        };
        Ok(Self {
            dir: dir.to_owned(),
            keep: keep.max(1),
            routes: Mutex::new(routes),
        })
    }

    /// How many versions of a plugin it keeps beyond the protected ones.
    pub(crate) fn keep_versions(&self) -> usize {
        self.keep
    }

    /// Every version some route serves or may roll back to.
    pub(crate) fn in_use(&self) -> std::collections::BTreeSet<String> {
        self.lock()
            .values()
            .flat_map(|state| std::iter::once(&state.active).chain(&state.previous))
            .filter(|sha| !sha.is_empty())
            .cloned()
            .collect()
    }

    /// Removes a kept version's component and record (a version no route may go back to).
    ///
    /// # Errors
    ///
    /// When a file cannot be removed.
    pub(crate) fn forget(&self, sha256: &str) -> Result<(), RegistryError> {
        for path in [self.metadata_path(sha256), self.component_path(sha256)] {
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(RegistryError::Io { path, error }),
            }
        }
        Ok(())
    }

    fn component_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("versions").join(format!("{sha256}.wasm"))
    }

    fn metadata_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("versions").join(format!("{sha256}.json"))
    }

    /// Keeps a version's component and metadata; returns whether it was new. A version kept
    /// before keeps its first `received_at`.
    ///
    /// # Errors
    ///
    /// When a file cannot be written.
    pub(crate) fn keep(&self, wasm: &[u8], version: &Version) -> Result<bool, RegistryError> {
        let metadata = self.metadata_path(&version.sha256);
        if metadata.exists() && self.component_path(&version.sha256).exists() {
            return Ok(false);
        }
        write_atomically(&self.component_path(&version.sha256), wasm)?;
        let json = serde_json::to_vec_pretty(version).expect("a version serializes");
        write_atomically(&metadata, &json)?;
        Ok(true)
    }

    /// The component of a kept version.
    ///
    /// # Errors
    ///
    /// When it is not kept or cannot be read, or its bytes no longer match their hash.
    pub(crate) fn component(&self, sha256: &str) -> Result<Vec<u8>, RegistryError> {
        let path = self.component_path(sha256);
        let bytes = std::fs::read(&path).map_err(|error| RegistryError::Io {
            path: path.clone(),
            error,
        })?;
        if crate::plugin::sha256_hex(&bytes) != sha256 {
            return Err(RegistryError::Damaged {
                path,
                message: "the component no longer matches its sha256".into(),
            });
        }
        Ok(bytes)
    }

    /// Every kept version, of every plugin, oldest first.
    ///
    /// # Errors
    ///
    /// When the directory cannot be listed or a metadata file read.
    pub(crate) fn versions(&self) -> Result<Vec<Version>, RegistryError> {
        let dir = self.dir.join("versions");
        let io = |path: &Path, error| RegistryError::Io {
            path: path.to_owned(),
            error,
        };
        let mut found = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| io(&dir, e))? {
            let path = entry.map_err(|e| io(&dir, e))?.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let bytes = std::fs::read(&path).map_err(|e| io(&path, e))?;
            let version: Version =
                serde_json::from_slice(&bytes).map_err(|e| RegistryError::Damaged {
                    path: path.clone(),
                    message: e.to_string(),
                })?;
            found.push(version);
        }
        found.sort_by(|a, b| (a.received_at, &a.sha256).cmp(&(b.received_at, &b.sha256)));
        Ok(found)
    }

    /// The version of plugin `name` that `selector` names.
    ///
    /// # Errors
    ///
    /// As [`Registry::versions`].
    pub(crate) fn find(&self, name: &str, selector: &Selector) -> Result<Found, RegistryError> {
        let mut matching: Vec<Version> = self
            .versions()?
            .into_iter()
            .filter(|v| v.name == name && selector.matches(v))
            .collect();
        Ok(match matching.len() {
            0 => Found::None,
            1 => Found::One(matching.remove(0)),
            _ => Found::Ambiguous(matching),
        })
    }

    /// What a route (or a projector's slot) serves at start, given the bytes of the file its
    /// configuration names (`configured`, named `shown` in logs): the registry's active
    /// version while the configuration names the same file as when that was recorded (a
    /// restart serves what was active), else the configured file (an operator pointed the
    /// config at a new one). Record it with [`Registry::started`] once it loaded.
    pub(crate) fn at_start(&self, slot: &str, configured: Vec<u8>, shown: String) -> AtStart {
        let configured_sha = crate::plugin::sha256_hex(&configured);
        let state = self.route(slot);
        let mut start = AtStart {
            wasm: configured,
            shown,
            configured_sha,
            state,
        };
        if let Some(state) = start
            .state
            .as_ref()
            .filter(|s| s.configured == start.configured_sha && s.active != start.configured_sha)
        {
            match self.component(&state.active) {
                Ok(kept) => {
                    start.wasm = kept;
                    start.shown = format!("the registry's version {}", state.active);
                }
                Err(e) => tracing::error!(
                    slot, error = %e,
                    "the active version cannot be read; serving the configured file"
                ),
            }
        }
        start
    }

    /// Keeps the version a slot serves at start, and records it as active.
    ///
    /// # Errors
    ///
    /// When a file cannot be written.
    pub(crate) fn started(
        &self,
        slot: &str,
        start: &AtStart,
        version: &Version,
    ) -> Result<(), RegistryError> {
        self.keep(&start.wasm, version)?;
        let recorded = start
            .state
            .as_ref()
            .is_some_and(|s| s.active == version.sha256 && s.configured == start.configured_sha);
        if !recorded {
            self.set_active(slot, &version.sha256, Some(&start.configured_sha))?;
        }
        Ok(())
    }

    /// What `route` serves, if the registry has a state for it.
    pub(crate) fn route(&self, route: &str) -> Option<RouteState> {
        self.lock().get(route).cloned()
    }

    /// Records that `route` serves `sha256` now; the version it served goes on its history
    /// (unless it is the same). `configured` replaces the configured file's hash when given.
    ///
    /// # Errors
    ///
    /// When `routes.json` cannot be written; the state in memory is then unchanged.
    pub(crate) fn set_active(
        &self,
        route: &str,
        sha256: &str,
        configured: Option<&str>,
    ) -> Result<RouteState, RegistryError> {
        let keep = self.keep;
        let mut states = self.update(&[route], |state| {
            activate(state, sha256, keep);
            if let Some(configured) = configured {
                configured.clone_into(&mut state.configured);
            }
        })?;
        Ok(states.remove(0))
    }

    /// Records that every route of `routes` serves `sha256` now, in one write: all of them,
    /// or (when it fails) none.
    ///
    /// # Errors
    ///
    /// When `routes.json` cannot be written; the state in memory is then unchanged.
    pub(crate) fn set_active_all(
        &self,
        routes: &[&str],
        sha256: &str,
    ) -> Result<(), RegistryError> {
        self.update(routes, |state| activate(state, sha256, self.keep))
            .map(drop)
    }

    /// Records that every route of `routes` went back to the version active before its
    /// current one, which leaves its history (a route with no earlier version stays), in one
    /// write: all of them, or (when it fails) none.
    ///
    /// # Errors
    ///
    /// When `routes.json` cannot be written; the state in memory is then unchanged.
    pub(crate) fn roll_back_all(&self, routes: &[&str]) -> Result<(), RegistryError> {
        self.update(routes, roll_back).map(drop)
    }

    /// The version that a rollback of `route` would go back to.
    pub(crate) fn previous(&self, route: &str) -> Option<String> {
        self.route(route).and_then(|s| s.previous.last().cloned())
    }

    /// Applies `change` to the state of each route of `routes` and writes them in one file:
    /// the states after, in the same order.
    fn update(
        &self,
        routes: &[&str],
        change: impl Fn(&mut RouteState),
    ) -> Result<Vec<RouteState>, RegistryError> {
        let mut held = self.lock();
        let mut next = held.clone();
        let mut states = Vec::with_capacity(routes.len());
        for route in routes {
            let state = next.entry((*route).to_owned()).or_default();
            change(state);
            states.push(state.clone());
        }
        let json = serde_json::to_vec_pretty(&next).expect("route states serialize");
        write_atomically(&self.dir.join("routes.json"), &json)?;
        *held = next;
        Ok(states)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, RouteState>> {
        self.routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// `state` serves `sha256` now; what it served before goes on its history (unless it is the
/// same), which keeps the last `keep`.
fn activate(state: &mut RouteState, sha256: &str, keep: usize) {
    if !state.active.is_empty() && state.active != sha256 {
        let before = std::mem::take(&mut state.active);
        state.previous.push(before);
        let excess = state.previous.len().saturating_sub(keep);
        state.previous.drain(..excess);
    }
    sha256.clone_into(&mut state.active);
}

/// `state` serves the version before its current one again (nothing without one).
fn roll_back(state: &mut RouteState) {
    if let Some(before) = state.previous.pop() {
        state.active = before;
    }
}

/// Writes `bytes` to `path` so that a crash leaves the old file or the new one, whole: a
/// temporary name, fsync, rename, fsync of the directory.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), RegistryError> {
    use std::io::Write as _;
    let io = |error| RegistryError::Io {
        path: path.to_owned(),
        error,
    };
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let dir = path.parent().expect("registry files are in a directory");
    let unique = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let temporary = path.with_extension(format!("tmp-{}-{unique}", std::process::id()));
    let mut file = std::fs::File::create(&temporary).map_err(io)?;
    file.write_all(bytes).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&temporary, path).map_err(io)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)
}

#[cfg(test)]
mod tests;
