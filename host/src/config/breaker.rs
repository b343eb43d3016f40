//! A sink's circuit breaker as the file gives it (`[sinks.NAME.breaker]`, every key
//! optional), checked into a [`BreakerConfig`].

use std::time::Duration;

use serde::Deserialize;

use super::millis;
use crate::breaker::{BreakerConfig, FailurePolicy, WindowKind};

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
    failure_statuses: Option<Vec<String>>,
    count_no_answer: Option<bool>,
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
            failures: FailurePolicy {
                statuses: match self.failure_statuses {
                    None => default.failures.statuses,
                    Some(given) => given
                        .iter()
                        .map(|s| {
                            statuses(s).ok_or_else(|| {
                            format!(
                                "{what}.failure_statuses: `{s}` is not a status (`503`), a class \
                                 (`5xx`) or a range (`500-504`) from 100 to 599"
                            )
                        })
                        })
                        .collect::<Result<_, _>>()?,
                },
                no_answer: self.count_no_answer.unwrap_or(default.failures.no_answer),
            },
        })
    }
}

/// A status (`503`), a class (`5xx`) or a range (`500-504`), within 100 to 599.
fn statuses(text: &str) -> Option<std::ops::RangeInclusive<u16>> {
    let text = text.trim();
    let range = if let Some(class) = text.strip_suffix("xx").or_else(|| text.strip_suffix("XX")) {
        let class: u16 = class.parse().ok()?;
        class * 100..=class * 100 + 99
    } else if let Some((low, high)) = text.split_once('-') {
        low.trim().parse().ok()?..=high.trim().parse().ok()?
    } else {
        let status: u16 = text.parse().ok()?;
        status..=status
    };
    let valid = (100..=599).contains(range.start())
        && (100..=599).contains(range.end())
        && range.start() <= range.end();
    valid.then_some(range)
}
