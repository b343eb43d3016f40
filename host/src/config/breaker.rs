//! A sink's circuit breaker as the file gives it (`[sinks.NAME.breaker]`, every key
//! optional), checked into a [`BreakerConfig`].

use std::time::Duration;

use serde::Deserialize;

use super::millis;
use crate::breaker::{BreakerConfig, WindowKind};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBreaker {
    window_calls: Option<u32>,
    window_secs: Option<u64>,
    failure_rate_percent: Option<u32>,
    slow_call_ms: Option<u64>,
    slow_rate_percent: Option<u32>,
    minimum_calls: Option<u32>,
    wait_in_open_ms: Option<u64>,
    wait_multiplier: Option<u32>,
    max_wait_in_open_ms: Option<u64>,
    probes: Option<u32>,
    probe_timeout_ms: Option<u64>,
}

impl RawBreaker {
    /// The checked config; `what` names the table in errors.
    pub(super) fn check(self, what: &str) -> Result<BreakerConfig, String> {
        let default = BreakerConfig::default();
        let window = match (self.window_calls, self.window_secs) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{what}: give window_calls or window_secs, not both"
                ));
            }
            (Some(calls), None) => WindowKind::Count(calls.max(1)),
            (None, Some(secs)) => WindowKind::Time(Duration::from_secs(secs.max(1))),
            (None, None) => default.window,
        };
        let percent = |value: Option<u32>, key: &str, default: f64| match value {
            None => Ok(default),
            Some(p @ 1..=100) => Ok(f64::from(p) / 100.0),
            Some(_) => Err(format!("{what}.{key}: a percentage from 1 to 100")),
        };
        Ok(BreakerConfig {
            window,
            failure_rate: percent(
                self.failure_rate_percent,
                "failure_rate_percent",
                default.failure_rate,
            )?,
            slow_rate: percent(
                self.slow_rate_percent,
                "slow_rate_percent",
                default.slow_rate,
            )?,
            slow_call: millis(self.slow_call_ms, default.slow_call),
            minimum_calls: self.minimum_calls.unwrap_or(default.minimum_calls).max(1),
            wait_in_open: millis(self.wait_in_open_ms, default.wait_in_open),
            wait_multiplier: self
                .wait_multiplier
                .unwrap_or(default.wait_multiplier)
                .max(1),
            max_wait_in_open: millis(self.max_wait_in_open_ms, default.max_wait_in_open),
            probes: self.probes.unwrap_or(default.probes).max(1),
            probe_timeout: millis(self.probe_timeout_ms, default.probe_timeout),
        })
    }
}
