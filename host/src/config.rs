//! The configuration file: `RawConfig` is what serde reads from TOML (unknown keys refused,
//! with their line), `Config` is what the host runs on, checked and with paths resolved.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::plugin::{Limits, PluginConfig};

mod auth;
mod breaker;
mod dead_letters;
mod plugins;
mod projectors;
mod secret;
mod sinks;
mod vendors;

pub use self::auth::{DEFAULT_TOLERANCE, RouteAuth};
pub use self::dead_letters::{
    DEFAULT_MAX_DEAD_LETTER_BYTES, DEFAULT_MAX_DEAD_LETTERS, DeadLetterBound,
};
use self::plugins::RawPlugins;
pub use self::plugins::{CanaryPolicy, DEFAULT_KEEP_VERSIONS, PluginsConfig};
pub use self::projectors::ProjectorConfig;
use self::sinks::RawSink;
pub use self::sinks::{HttpSink, SinkAuth, SinkConfig};
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    plugin: Spanned<PathBuf>,
    #[serde(default)]
    plugin_config: PluginConfig,
    #[serde(default)]
    sinks: Vec<Spanned<String>>,
    idempotency_retention_secs: Option<u64>,
    inflight_timeout_secs: Option<u64>,
    instance_reuse: Option<u32>,
    #[serde(default)]
    headers: Vec<Spanned<String>>,
    #[serde(default)]
    retry: RawRetry,
    commands: Option<vendors::RawCommands>,
    entity_streams: Option<bool>,
    #[serde(default)]
    dead_letters: dead_letters::RawDeadLetters,
    max_concurrency: Option<usize>,
    max_waiting: Option<usize>,
    auth: Option<auth::RawAuth>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    max_attempts: Option<u32>,
    max_retry_secs: Option<u64>,
    initial_backoff_ms: Option<u64>,
    max_backoff_ms: Option<u64>,
    max_retry_after_ms: Option<u64>,
    multiplier: Option<u32>,
}

// ===== What the host runs on =====

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the HTTP API listens.
    pub listen: SocketAddr,
    /// Where the store keeps its files.
    pub data_dir: PathBuf,
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

/// A route: a translator and where its events go.
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// The component file.
    pub plugin: PathBuf,
    /// What the plugin reads through its `config` import.
    pub plugin_config: PluginConfig,
    /// The sinks, by name, that get every event.
    pub sinks: Vec<String>,
    /// How long an idempotency key is remembered.
    pub retention: Duration,
    /// How long an in-flight claim blocks a redelivery before it can be taken over.
    pub inflight_timeout: Duration,
    /// How many messages one plugin instance serves before it is dropped (1: a fresh
    /// instance per message). See `plugin::Instances` for what survives between messages.
    pub instance_reuse: u32,
    /// How deliveries are retried.
    pub retry: RetryPolicy,
    /// Request headers its messages keep (stored, shown, passed to the plugin) beyond
    /// content type, idempotency key and trace context; never a credential.
    pub headers: Vec<String>,
    /// How it sends commands to its vendor, if it takes commands.
    pub commands: Option<CommandsConfig>,
    /// Whether its events are also appended to their entities' streams (on by default).
    pub entity_streams: bool,
    /// How much of the dead letter channel it may fill.
    pub dead_letters: DeadLetterBound,
    /// Its bulkhead: translations it runs at once (by default a fair share of the host's
    /// workers: split evenly between the routes, and with other routes at most the cores
    /// but one), and messages that may wait for one (by default `[http] max_waiting`); past
    /// both, `503` with `Retry-After`.
    pub max_concurrency: Option<usize>,
    /// See [`RouteConfig::max_concurrency`].
    pub max_waiting: usize,
    /// What its messages must carry to be let in, if anything.
    pub auth: Option<RouteAuth>,
}

/// Retries of a delivery: attempt `n` (from 1) waits `min(initial * multiplier^(n-1), max)`,
/// with up to 20% taken off at random so that retries of many events spread out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts before the event goes to the dead letter channel (`u32::MAX`: no count).
    pub max_attempts: u32,
    /// How long an event may keep failing at a sink, from its first failed attempt, before
    /// it goes to the dead letter channel. Attempts refused by an open circuit breaker are
    /// not made, so a sink that is down for an hour spends little of either budget.
    pub max_duration: Duration,
    /// The first wait.
    pub initial_backoff: Duration,
    /// The longest wait.
    pub max_backoff: Duration,
    /// The growth factor.
    pub multiplier: u32,
    /// The longest wait a sink's `Retry-After` can ask for: a sink must not hold a partition
    /// key for days with one answer. By default the larger of `max_backoff` and a minute.
    pub max_retry_after: Duration,
}

/// The ceiling on a sink's `Retry-After` when neither it nor a `max_backoff` above it is set.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: u32::MAX,
            max_duration: Duration::from_secs(6 * 3600),
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
            multiplier: 2,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        }
    }
}

impl RetryPolicy {
    /// The wait before attempt `attempt + 1`, after `attempt` failures, without jitter.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = self
            .multiplier
            .max(1)
            .saturating_pow(attempt.saturating_sub(1));
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }

    /// [`RetryPolicy::backoff`] less a jitter of up to 20%, `unit` being a random number in
    /// `[0, 1)`.
    pub fn backoff_with_jitter(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.backoff(attempt);
        base.mul_f64(1.0 - 0.2 * unit.clamp(0.0, 1.0))
    }

    /// The wait after `attempt` failures, the first `failing_for` ago: the backoff with
    /// jitter (`unit` in `[0, 1)`), or the sink's `asked` `Retry-After` when longer, up to
    /// [`RetryPolicy::max_retry_after`]; and never past the time budget, so the next attempt
    /// comes no later than the budget's end (and then is the last).
    pub fn wait(
        &self,
        attempt: u32,
        unit: f64,
        asked: Option<Duration>,
        failing_for: Duration,
    ) -> Duration {
        let asked = asked.unwrap_or_default().min(self.max_retry_after);
        let left = self.max_duration.saturating_sub(failing_for);
        self.backoff_with_jitter(attempt, unit).max(asked).min(left)
    }
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
        let mut routes = BTreeMap::new();
        for (name, route) in raw.routes {
            if !valid_name(&name) {
                return Err(format!(
                    "routes.{name}: a route name is letters, digits, `-` and `_`"
                ));
            }
            let mut names = Vec::new();
            for sink in route.sinks {
                if !sinks.contains_key(sink.get_ref()) {
                    return Err(format!(
                        "line {}: routes.{name}.sinks names `{}`, which no `[sinks.{}]` table defines",
                        line(sink.span()),
                        sink.get_ref(),
                        sink.get_ref()
                    ));
                }
                names.push(sink.into_inner());
            }
            let mut headers = Vec::new();
            for header in route.headers {
                let lower = header.get_ref().to_ascii_lowercase();
                if http::HeaderName::from_bytes(lower.as_bytes()).is_err() {
                    return Err(format!(
                        "line {}: routes.{name}.headers: `{}` is not a header name",
                        line(header.span()),
                        header.get_ref()
                    ));
                }
                if crate::pipeline::CREDENTIALS.contains(&lower.as_str()) {
                    return Err(format!(
                        "line {}: routes.{name}.headers: `{}` carries credentials, which are \
                         never kept",
                        line(header.span()),
                        header.get_ref()
                    ));
                }
                headers.push(lower);
            }
            let max_backoff = route
                .retry
                .max_backoff_ms
                .map_or(RetryPolicy::default().max_backoff, Duration::from_millis);
            let retry = RetryPolicy {
                max_attempts: route
                    .retry
                    .max_attempts
                    .unwrap_or(RetryPolicy::default().max_attempts)
                    .max(1),
                max_duration: route
                    .retry
                    .max_retry_secs
                    .map_or(RetryPolicy::default().max_duration, Duration::from_secs),
                initial_backoff: route.retry.initial_backoff_ms.map_or(
                    RetryPolicy::default().initial_backoff,
                    Duration::from_millis,
                ),
                max_backoff,
                multiplier: route
                    .retry
                    .multiplier
                    .unwrap_or(RetryPolicy::default().multiplier),
                max_retry_after: route.retry.max_retry_after_ms.map_or(
                    max_backoff.max(DEFAULT_MAX_RETRY_AFTER),
                    Duration::from_millis,
                ),
            };
            let commands = match route.commands {
                None => None,
                Some(commands) => {
                    let commands = commands.check(&name)?;
                    if !vendors.contains_key(&commands.vendor) {
                        return Err(format!(
                            "routes.{name}.commands.vendor names `{}`, which no `[vendors.{}]` \
                             table defines",
                            commands.vendor, commands.vendor
                        ));
                    }
                    Some(commands)
                }
            };
            let dead_letters = route.dead_letters.check(&name)?;
            let auth = route.auth.map(|a| a.check(&name, base)).transpose()?;
            routes.insert(
                name,
                RouteConfig {
                    plugin: resolve(route.plugin.get_ref()),
                    plugin_config: route.plugin_config,
                    sinks: names,
                    retention: route
                        .idempotency_retention_secs
                        .map_or(DEFAULT_RETENTION, Duration::from_secs),
                    inflight_timeout: route
                        .inflight_timeout_secs
                        .map_or(DEFAULT_INFLIGHT_TIMEOUT, Duration::from_secs),
                    instance_reuse: route.instance_reuse.unwrap_or(1).max(1),
                    retry,
                    headers,
                    commands,
                    entity_streams: route.entity_streams.unwrap_or(true),
                    dead_letters,
                    max_concurrency: route.max_concurrency.map(|n| n.max(1)),
                    max_waiting: route
                        .max_waiting
                        .or(raw.http.max_waiting)
                        .unwrap_or(HttpConfig::default().max_waiting),
                    auth,
                },
            );
        }
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
