//! The vendors the host calls on a route's behalf (`[vendors.NAME]`: a base URL, trust and a
//! circuit breaker), and how a route sends its commands to one (`[routes.NAME.commands]`:
//! the vendor, the timeout and retries, and what to answer while the vendor's circuit is
//! open).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::breaker::RawBreaker;
use super::millis;
use crate::breaker::BreakerConfig;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawVendor {
    base_url: super::secret::RawSecret,
    ca_file: Option<PathBuf>,
    #[serde(default)]
    breaker: RawBreaker,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCommands {
    vendor: String,
    timeout_ms: Option<u64>,
    attempts: Option<u32>,
    backoff_ms: Option<u64>,
    degradation: Option<String>,
    default_answer: Option<toml::Value>,
}

/// A vendor API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VendorConfig {
    /// Requests go to this URL joined with the path the plugin gives (`http://` or
    /// `https://`, no trailing slash).
    pub base_url: String,
    /// A PEM file of the CA certificates to trust for `https://`, instead of the system's.
    pub ca_file: Option<PathBuf>,
}

/// How a route sends commands to its vendor.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandsConfig {
    /// The vendor, by name.
    pub vendor: String,
    /// How long one attempt may take.
    pub timeout: Duration,
    /// Attempts in all for a request that may be retried (1: never retried).
    pub attempts: u32,
    /// The wait before the second attempt; it doubles with each one.
    pub backoff: Duration,
    /// What a command is answered while the vendor's circuit is open.
    pub degradation: Degradation,
}

/// What a command is answered while the vendor's circuit is open: chosen per route, not
/// improvised.
#[derive(Debug, Clone, PartialEq)]
pub enum Degradation {
    /// 503 with `Retry-After` set to the time until the next probe.
    Fail,
    /// The last good answer for the same command type and subject, with its age; without
    /// one, as `Fail`.
    Cached,
    /// This answer, as configured.
    Default(serde_json::Value),
    /// Accepted (202) and kept in the outbox; sent once the circuit closes.
    Queue,
}

impl Degradation {
    /// Its name in the config and the answers.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Fail => "fail",
            Self::Cached => "cached",
            Self::Default(_) => "default",
            Self::Queue => "queue",
        }
    }
}

impl RawVendor {
    /// The checked vendor named `name` and its breaker.
    pub(super) fn check(
        self,
        name: &str,
        base: &Path,
    ) -> Result<(VendorConfig, BreakerConfig), String> {
        let breaker = self.breaker.check(&format!("vendors.{name}.breaker"))?;
        let url = self
            .base_url
            .value(base, &format!("vendors.{name}.base_url"))?;
        let url = url.trim_end_matches('/').to_owned();
        let parsed: Result<http::Uri, _> = url.parse();
        let valid = parsed.as_ref().is_ok_and(|uri| {
            matches!(uri.scheme_str(), Some("http" | "https"))
                && uri.authority().is_some_and(|a| !a.as_str().contains('@'))
                && uri.query().is_none()
        });
        if !valid {
            return Err(format!(
                "vendors.{name}.base_url: `{url}` is not an http:// or https:// URL without \
                 credentials or query"
            ));
        }
        let vendor = VendorConfig {
            base_url: url,
            ca_file: self.ca_file.map(|path| super::resolve(base, &path)),
        };
        Ok((vendor, breaker))
    }
}

impl RawCommands {
    /// The checked commands table of route `route`.
    pub(super) fn check(self, route: &str) -> Result<CommandsConfig, String> {
        let what = |key: &str| format!("routes.{route}.commands.{key}");
        let degradation = match (self.degradation.as_deref(), self.default_answer) {
            (None | Some("fail"), None) => Degradation::Fail,
            (Some("cached"), None) => Degradation::Cached,
            (Some("queue"), None) => Degradation::Queue,
            (Some("default"), Some(answer)) => Degradation::Default(
                serde_json::to_value(answer)
                    .map_err(|e| format!("{}: {e}", what("default_answer")))?,
            ),
            (Some("default"), None) => {
                return Err(format!(
                    "{}: `default` needs a `default_answer`",
                    what("degradation")
                ));
            }
            (_, Some(_)) => {
                return Err(format!(
                    "{}: only `degradation = \"default\"` takes one",
                    what("default_answer")
                ));
            }
            (Some(other), None) => {
                return Err(format!(
                    "{}: `{other}` is not one of fail, cached, default, queue",
                    what("degradation")
                ));
            }
        };
        Ok(CommandsConfig {
            vendor: self.vendor,
            timeout: millis(self.timeout_ms, Duration::from_secs(5)),
            attempts: self.attempts.unwrap_or(3).max(1),
            backoff: millis(self.backoff_ms, Duration::from_millis(200)),
            degradation,
        })
    }
}
