//! The configuration file: `RawConfig` is what serde reads from TOML (unknown keys refused,
//! with their line), `Config` is what the host runs on, checked and with paths resolved.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::plugin::Limits;

mod archive;
mod auth;
mod breaker;
mod checkpoints;
mod dead_letters;
mod plugins;
mod projectors;
mod routes;
mod secret;
mod sinks;
mod source;
mod store;
mod vendors;

pub use self::archive::{ArchiveConfig, DEFAULT_ARCHIVE_INTERVAL, HotRetention};
pub use self::auth::{DEFAULT_TOLERANCE, RouteAuth};
pub use self::checkpoints::{CheckpointsConfig, DEFAULT_CHECKPOINT_INTERVAL};
pub use self::dead_letters::{
    DEFAULT_MAX_DEAD_LETTER_BYTES, DEFAULT_MAX_DEAD_LETTERS, DeadLetterBound,
};
use self::plugins::RawPlugins;
pub use self::plugins::{CanaryPolicy, DEFAULT_KEEP_VERSIONS, PluginsConfig};
pub use self::projectors::ProjectorConfig;
use self::routes::RawRoute;
pub use self::routes::{CREDENTIAL_HEADERS, DEFAULT_MAX_RETRY_AFTER, RetryPolicy, RouteConfig};
use self::sinks::RawSink;
pub use self::sinks::{HttpSink, SinkAuth, SinkConfig};
pub use self::source::{JetStreamSource, MAX_BATCH as MAX_SOURCE_BATCH, SourceConfig};
pub use self::store::{DEFAULT_POOL, StoreConfig};
pub use self::vendors::{CommandsConfig, Degradation, VendorConfig};

use self::secret::RawSecret;
pub use self::secret::{Secret, SinkUrl};

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {error}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is not valid TOML or has unknown, missing or mistyped keys.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the line.
        message: String,
    },
}

/// By default, at most 1 MiB of body per message.
pub const DEFAULT_MAX_BODY: usize = 1 << 20;
/// By default, an idempotency key is remembered for 24 hours.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(24 * 3600);
/// By default, a claim left by a crash can be taken over after 30 s.
pub const DEFAULT_INFLIGHT_TIMEOUT: Duration = Duration::from_secs(30);
/// By default, published events are kept for an hour before they are compacted.
pub const DEFAULT_PUBLISHED_RETENTION: Duration = Duration::from_secs(3600);

// ===== What the file says =====

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: SocketAddr,
    data_dir: PathBuf,
    store: Option<store::RawStore>,
    admin_token: Option<RawSecret>,
    allow_unauthenticated_admin: Option<bool>,
    max_body_bytes: Option<usize>,
    #[serde(default)]
    sandbox: RawSandbox,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    relay: RawRelay,
    #[serde(default)]
    plugins: RawPlugins,
    #[serde(default)]
    sinks: BTreeMap<String, RawSink>,
    #[serde(default)]
    vendors: BTreeMap<String, vendors::RawVendor>,
    #[serde(default)]
    projectors: BTreeMap<String, projectors::RawProjector>,
    checkpoints: Option<checkpoints::RawCheckpoints>,
    archive: Option<archive::RawArchive>,
    routes: BTreeMap<String, RawRoute>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    max_connections: Option<usize>,
    header_timeout_ms: Option<u64>,
    body_timeout_ms: Option<u64>,
    max_waiting: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSandbox {
    deadline_ms: Option<u64>,
    memory_mib: Option<usize>,
    output_kib: Option<usize>,
    max_instances: Option<u32>,
    cache_dir: Option<PathBuf>,
    cache_max_mib: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelay {
    poll_interval_ms: Option<u64>,
    published_retention_secs: Option<u64>,
    concurrency: Option<usize>,
    sweep_interval_secs: Option<u64>,
}

// ===== What the host runs on =====

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// Where the host keeps its files: the sled store (unless `store` names another), the
    /// plugin registry and the compiled cache.
    pub data_dir: PathBuf,
    /// Where the host keeps what it knows.
    pub store: StoreConfig,
    /// The bearer token admin calls must carry, if any.
    pub admin_token: Option<Secret>,
    /// Whether the admin API may go without a token on a non-loopback address (the operator
    /// said so; a warning is logged at every start).
    pub allow_unauthenticated_admin: bool,
    /// The largest message body accepted, in bytes.
    pub max_body: usize,
    /// The sandbox limits of every plugin call.
    pub limits: Limits,
    /// How many plugin instances may be alive at once.
    pub max_instances: u32,
    /// Where compiled components are cached.
    pub cache_dir: PathBuf,
    /// How many bytes of compiled components the cache keeps (least recently used go first).
    pub cache_max_bytes: u64,
    /// What the HTTP server allows each client.
    pub http: HttpConfig,
    /// The relay's settings.
    pub relay: RelayConfig,
    /// Where new plugin versions may also arrive.
    pub plugins: PluginsConfig,
    /// The sinks, by name.
    pub sinks: BTreeMap<String, SinkConfig>,
    /// Each sink's circuit breaker, by sink name.
    pub breakers: BTreeMap<String, crate::breaker::BreakerConfig>,
    /// The vendors routes send commands to, by name (distinct from every sink's name: each
    /// names its circuit breaker).
    pub vendors: BTreeMap<String, VendorConfig>,
    /// The routes, by name.
    pub routes: BTreeMap<String, RouteConfig>,
    /// The projector of each entity type (`[projectors.TYPE]`).
    pub projectors: BTreeMap<String, ProjectorConfig>,
    /// Signed checkpoints of every chain head, if the file asks for them.
    pub checkpoints: Option<CheckpointsConfig>,
    /// Where audit history past its route's hot retention goes, if anywhere.
    pub archive: Option<ArchiveConfig>,
}

/// What the HTTP server allows, so that no client can exhaust the host.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Open connections at most (kept below the process's file limit); a new one beyond it
    /// takes the place of the longest idle one.
    pub max_connections: usize,
    /// How long a request head may take to arrive, counted from when the connection is
    /// opened or has answered its last request (so it also closes idle connections).
    pub header_timeout: Duration,
    /// How long a message body may take to arrive.
    pub body_timeout: Duration,
    /// Message requests (ingest, translate) that may wait for a worker beyond those running;
    /// more are answered 503 with `Retry-After` before their body is read.
    pub max_waiting: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_waiting: 256,
        }
    }
}

/// How the outbox relay runs.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The backstop timer: the relay also wakes on every commit.
    pub poll_interval: Duration,
    /// How long published events are kept before they are compacted.
    pub published_retention: Duration,
    /// How many partition keys a sink publishes to at once.
    pub concurrency: usize,
    /// How often expired idempotency keys and old published events are forgotten.
    pub sweep_interval: Duration,
}

impl Config {
    /// Reads and checks a configuration file. Relative paths in it are relative to the
    /// file's directory.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Read`] when the file cannot be read, [`ConfigError::Invalid`] for bad
    /// TOML, an unknown, missing or mistyped key (named, with its line), a route that names
    /// an unknown sink, or a value out of range.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parses a configuration from text; relative paths are taken from `base`.
    ///
    /// # Errors
    ///
    /// A message naming the key and the line.
    // Long on purpose: one pass from the raw file to the checked config, section by section,
    // each check beside the key it checks.
    pub fn parse(text: &str, base: &Path) -> Result<Self, String> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| one_line(&e.to_string()))?;
        let line = |span: Range<usize>| text[..span.start.min(text.len())].lines().count().max(1);
        let resolve = |p: &Path| resolve(base, p);

        let mut sinks = BTreeMap::new();
        let mut breakers = BTreeMap::new();
        for (name, sink) in raw.sinks {
            let (sink, breaker) = sink.check(&name, base)?;
            sinks.insert(name.clone(), sink);
            breakers.insert(name, breaker);
        }
        let mut vendors = BTreeMap::new();
        for (name, vendor) in raw.vendors {
            if !valid_name(&name) {
                return Err(format!(
                    "vendors.{name}: a vendor name is letters, digits, `-` and `_`"
                ));
            }
            if sinks.contains_key(&name) {
                return Err(format!(
                    "vendors.{name}: a sink has that name too; each names its circuit breaker"
                ));
            }
            let (vendor, breaker) = vendor.check(&name, base)?;
            vendors.insert(name.clone(), vendor);
            breakers.insert(name, breaker);
        }
        if raw.routes.is_empty() {
            return Err("no routes: add at least one `[routes.NAME]` table".into());
        }
        let max_waiting = raw
            .http
            .max_waiting
            .unwrap_or(HttpConfig::default().max_waiting);
        let context = routes::Context {
            sinks: &sinks,
            vendors: &vendors,
            max_waiting,
            base,
            archive: raw.archive.is_some(),
            line: &line,
        };
        let mut routes = BTreeMap::new();
        for (name, route) in raw.routes {
            let route = route.check(&name, &context)?;
            routes.insert(name, route);
        }
        let checkpoints = raw.checkpoints.map(|c| c.check(base, &sinks)).transpose()?;
        let archive = raw.archive.map(|a| a.check(base));
        let data_dir = resolve(&raw.data_dir);
        let defaults = Limits::default();
        let limits = Limits {
            deadline: raw
                .sandbox
                .deadline_ms
                .map_or(defaults.deadline, Duration::from_millis),
            memory: raw.sandbox.memory_mib.map_or(defaults.memory, |m| m << 20),
            output: raw.sandbox.output_kib.map_or(defaults.output, |k| k << 10),
            ..defaults
        };
        // An empty literal is refused like an empty secret from the environment: auth
        // must not be off by accident.
        let admin_token = match raw.admin_token {
            None => None,
            Some(token) => Some(token.resolve(base, "admin_token")?),
        };
        let allow_unauthenticated_admin = raw.allow_unauthenticated_admin.unwrap_or(false);
        if admin_token.is_none() && !raw.listen.ip().is_loopback() && !allow_unauthenticated_admin {
            return Err(format!(
                "listen = \"{}\" is not a loopback address and there is no admin_token: \
                 anyone who reaches it could push plugins and replay or discard dead letters; \
                 set admin_token, or allow_unauthenticated_admin = true",
                raw.listen
            ));
        }
        Ok(Self {
            listen: raw.listen,
            cache_dir: raw
                .sandbox
                .cache_dir
                .map_or_else(|| data_dir.join("compiled"), |d| resolve(&d)),
            cache_max_bytes: raw
                .sandbox
                .cache_max_mib
                .map_or(crate::plugin::DEFAULT_CACHE_MAX_BYTES, |m| {
                    m.saturating_mul(1 << 20)
                }),
            data_dir,
            store: store::check(raw.store, base)?,
            admin_token,
            allow_unauthenticated_admin,
            max_body: raw.max_body_bytes.unwrap_or(DEFAULT_MAX_BODY),
            limits,
            max_instances: raw
                .sandbox
                .max_instances
                .unwrap_or(crate::plugin::DEFAULT_MAX_INSTANCES),
            http: {
                let default = HttpConfig::default();
                HttpConfig {
                    max_connections: raw
                        .http
                        .max_connections
                        .unwrap_or(default.max_connections)
                        .max(1),
                    header_timeout: millis(raw.http.header_timeout_ms, default.header_timeout),
                    body_timeout: millis(raw.http.body_timeout_ms, default.body_timeout),
                    max_waiting: raw.http.max_waiting.unwrap_or(default.max_waiting),
                }
            },
            relay: RelayConfig {
                poll_interval: Duration::from_millis(raw.relay.poll_interval_ms.unwrap_or(1000)),
                published_retention: raw
                    .relay
                    .published_retention_secs
                    .map_or(DEFAULT_PUBLISHED_RETENTION, Duration::from_secs),
                concurrency: raw.relay.concurrency.unwrap_or(32).max(1),
                sweep_interval: Duration::from_secs(
                    raw.relay.sweep_interval_secs.unwrap_or(60).max(1),
                ),
            },
            plugins: raw.plugins.into_config(&resolve),
            sinks,
            breakers,
            vendors,
            routes,
            projectors: projectors::check(raw.projectors, base)?,
            checkpoints,
            archive,
        })
    }
}

/// Route and sink names appear in URLs and keys.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A duration given in milliseconds (at least 1), or `default`.
fn millis(ms: Option<u64>, default: Duration) -> Duration {
    ms.map_or(default, |ms| Duration::from_millis(ms.max(1)))
}

/// `path` as given when absolute, else taken from `base`.
fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_owned()
    } else {
        base.join(path)
    }
}

/// TOML errors come with a source snippet over several lines; keep them on one.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
