//! The `[plugins]` table: where new plugin versions arrive besides the API, and when a
//! canary is rolled back by itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// By default, how many versions of each plugin the registry keeps beyond the protected ones
/// (active, in a canary or shadow, or in a route's history), and how many earlier versions a
/// route remembers for rollback.
pub const DEFAULT_KEEP_VERSIONS: usize = 10;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugins {
    watch_dir: Option<PathBuf>,
    debounce_ms: Option<u64>,
    canary_window: Option<usize>,
    canary_minimum: Option<usize>,
    canary_margin_percent: Option<u8>,
    keep_versions: Option<usize>,
}

/// Where new plugin versions arrive besides the API.
#[derive(Debug, Clone)]
pub struct PluginsConfig {
    /// A directory whose new or changed `*.wasm` files are received as new versions (and
    /// made active on the routes that serve their plugin), if any.
    pub watch_dir: Option<PathBuf>,
    /// How long a file must be left alone before it is read: a file still being written is
    /// not taken.
    pub debounce: Duration,
    /// When a canary is rolled back by itself.
    pub canary: CanaryPolicy,
    /// How many versions of each plugin the registry keeps beyond the protected ones (active,
    /// in a canary or shadow, in a route's history), and how many earlier versions each route
    /// can roll back to.
    pub keep_versions: usize,
}

/// When a canary version is rolled back automatically: once it has translated at least
/// `minimum` of its last `window` messages, if the share it failed (refused or faulted on)
/// exceeds the share the stable version failed of its last `window` by more than
/// `margin_percent` points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanaryPolicy {
    /// How many of each version's latest messages are counted.
    pub window: usize,
    /// How many the canary must have translated before it is judged.
    pub minimum: usize,
    /// By how many percentage points its failure rate may exceed the stable version's.
    pub margin_percent: u8,
}

impl Default for CanaryPolicy {
    fn default() -> Self {
        Self {
            window: 200,
            minimum: 20,
            margin_percent: 10,
        }
    }
}

impl RawPlugins {
    /// The checked settings, defaults filled in; `resolve` makes a path relative to the
    /// config file's directory.
    pub(super) fn into_config(self, resolve: &dyn Fn(&Path) -> PathBuf) -> PluginsConfig {
        let default = CanaryPolicy::default();
        let window = self.canary_window.unwrap_or(default.window).max(1);
        PluginsConfig {
            watch_dir: self.watch_dir.map(|d| resolve(&d)),
            debounce: Duration::from_millis(self.debounce_ms.unwrap_or(250)),
            canary: CanaryPolicy {
                window,
                minimum: self
                    .canary_minimum
                    .unwrap_or(default.minimum)
                    .clamp(1, window),
                margin_percent: self
                    .canary_margin_percent
                    .unwrap_or(default.margin_percent)
                    .min(100),
            },
            keep_versions: self.keep_versions.unwrap_or(DEFAULT_KEEP_VERSIONS).max(1),
        }
    }
}
