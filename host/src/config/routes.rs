//! A route's tables, `[routes.NAME]` and what hangs off it (its retry policy, its door,
//! its dead letter bound, its bulkhead, its commands), checked into a [`RouteConfig`]; and
//! the credential headers no route may keep.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{
    CommandsConfig, DEFAULT_INFLIGHT_TIMEOUT, DEFAULT_RETENTION, DeadLetterBound, RouteAuth,
    SinkConfig, VendorConfig, valid_name,
};
use crate::plugin::PluginConfig;

/// Request headers that carry credentials: never kept with a message, shown or given to a
/// plugin, whatever a route lists.
pub const CREDENTIAL_HEADERS: &[&str] = &[
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "x-api-key",
    "x-auth-token",
    "webhook-signature",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    plugin: Spanned<PathBuf>,
    #[serde(default)]
    plugin_config: BTreeMap<String, super::secret::RawSecret>,
    #[serde(default)]
    sinks: Vec<Spanned<String>>,
    idempotency_retention_secs: Option<u64>,
    inflight_timeout_secs: Option<u64>,
    instance_reuse: Option<u32>,
    #[serde(default)]
    headers: Vec<Spanned<String>>,
    #[serde(default)]
    retry: RawRetry,
    commands: Option<super::vendors::RawCommands>,
    entity_streams: Option<bool>,
    #[serde(default)]
    dead_letters: super::dead_letters::RawDeadLetters,
    max_concurrency: Option<usize>,
    max_waiting: Option<usize>,
    auth: Option<super::auth::RawAuth>,
    source: Option<super::source::RawSource>,
    #[serde(default)]
    retention: super::archive::RawRetention,
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
    /// Where it also takes messages from, besides its HTTP door.
    pub source: Option<super::SourceConfig>,
    /// How long its audit history and message bodies stay in the store.
    pub hot: super::HotRetention,
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

/// What checking a route needs from the rest of the file.
pub(super) struct Context<'a> {
    pub(super) sinks: &'a BTreeMap<String, SinkConfig>,
    pub(super) vendors: &'a BTreeMap<String, VendorConfig>,
    /// `[http] max_waiting`: a route's own by default.
    pub(super) max_waiting: usize,
    pub(super) base: &'a Path,
    /// Whether `[archive]` is set.
    pub(super) archive: bool,
    /// The line of a span of the file.
    pub(super) line: &'a dyn Fn(Range<usize>) -> usize,
}

impl RawRoute {
    /// The checked route `name`.
    pub(super) fn check(self, name: &str, context: &Context<'_>) -> Result<RouteConfig, String> {
        let Context {
            sinks,
            vendors,
            max_waiting,
            base,
            archive,
            line,
        } = *context;
        let route = self;
        let resolve = |p: &Path| super::resolve(base, p);
        if !valid_name(name) {
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
            if CREDENTIAL_HEADERS.contains(&lower.as_str()) {
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
                let commands = commands.check(name)?;
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
        let dead_letters = route.dead_letters.check(name)?;
        let idempotency = route
            .idempotency_retention_secs
            .map_or(DEFAULT_RETENTION, Duration::from_secs);
        let hot = route.retention.check(name, archive, idempotency)?;
        let auth = route.auth.map(|a| a.check(name, base)).transpose()?;
        let max_waiting = route.max_waiting.unwrap_or(max_waiting);
        let admitted = route.max_concurrency.unwrap_or(1).max(1) + max_waiting;
        let source = route
            .source
            .map(|s| s.check(name, admitted, base))
            .transpose()?;
        Ok(RouteConfig {
            plugin: resolve(route.plugin.get_ref()),
            plugin_config: route
                .plugin_config
                .into_iter()
                .map(|(key, value)| {
                    let value = value.value(base, &format!("routes.{name}.plugin_config.{key}"))?;
                    Ok((key, value))
                })
                .collect::<Result<PluginConfig, String>>()?,
            sinks: names,
            retention: idempotency,
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
            max_waiting,
            auth,
            source,
            hot,
        })
    }
}
