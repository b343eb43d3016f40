//! Canary: a candidate version that serves a share of a route's messages beside the stable
//! version, judged on what it does, and rolled back by itself when it fails more.
//!
//! Which version a message meets is a stable function of what decides its idempotency key
//! (the caller's key, else the body's hash): CRC-32 of it, modulo 100, below the canary's
//! percent. A retried message meets the same version; the share holds for any mix of keys.
//!
//! Each version's latest outcomes are counted in a window (`CanaryPolicy`): a refusal,
//! transient or not, and a fault count as failures. Once the canary has `minimum` outcomes,
//! a failure rate above the stable version's by more than the margin ends the canary: the
//! stable version serves every message again, and the messages the canary failed are in
//! the dead letter channel naming it, for replay through the stable one. The canary lives
//! in memory: a restart serves the stable version only (the registry's active one).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde_json::json;

use serde::Serialize;

use super::Pipeline;
use super::routes::{Route, Version};
use crate::config::CanaryPolicy;

/// A version serving a share of a route's messages, with the tally that judges it.
#[derive(Debug)]
pub(crate) struct Canary {
    pub(crate) version: Arc<Version>,
    /// Percent of messages, 1 to 99.
    pub(crate) percent: u8,
    tally: Mutex<Tally>,
}

#[derive(Debug, Default)]
struct Tally {
    canary: Window,
    stable: Window,
}

/// The latest outcomes of one version: whether each failed.
#[derive(Debug, Default)]
struct Window {
    outcomes: VecDeque<bool>,
    failed: usize,
}

impl Window {
    fn push(&mut self, failed: bool, size: usize) {
        self.outcomes.push_back(failed);
        self.failed += usize::from(failed);
        while self.outcomes.len() > size {
            if self.outcomes.pop_front() == Some(true) {
                self.failed -= 1;
            }
        }
    }

    /// The failure rate in percent, 0 when empty.
    fn rate(&self) -> f64 {
        if self.outcomes.is_empty() {
            return 0.0;
        }
        self.failed as f64 * 100.0 / self.outcomes.len() as f64
    }
}

/// Why a canary was rolled back by itself.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Failing {
    /// Its failure rate over its window, in percent.
    pub(crate) canary_rate: f64,
    /// The stable version's, in percent.
    pub(crate) stable_rate: f64,
    /// How many of its messages were counted.
    pub(crate) counted: usize,
}

/// How a canary stands against the stable version, over their windows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Standing {
    /// The canary's failure rate, in percent.
    pub(crate) canary_failure_percent: f64,
    /// Its messages counted.
    pub(crate) canary_counted: usize,
    /// The stable version's failure rate, in percent.
    pub(crate) stable_failure_percent: f64,
    /// Its messages counted.
    pub(crate) stable_counted: usize,
}

impl Canary {
    /// How it stands now.
    pub(crate) fn standing(&self) -> Standing {
        let tally = self
            .tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Standing {
            canary_failure_percent: tally.canary.rate(),
            canary_counted: tally.canary.outcomes.len(),
            stable_failure_percent: tally.stable.rate(),
            stable_counted: tally.stable.outcomes.len(),
        }
    }

    pub(crate) fn new(version: Arc<Version>, percent: u8) -> Self {
        Self {
            version,
            percent: percent.clamp(1, 99),
            tally: Mutex::default(),
        }
    }

    /// Whether the message whose key is decided by `stable_key` meets the canary.
    pub(crate) fn takes(&self, stable_key: &str) -> bool {
        crc32fast::hash(stable_key.as_bytes()) % 100 < u32::from(self.percent)
    }

    fn count(&self, canary: bool, failed: bool, policy: CanaryPolicy) -> Option<Failing> {
        self.tally
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .count(canary, failed, policy)
    }
}

impl Tally {
    /// Counts one outcome, of the canary (`canary`) or the stable version; says when the
    /// canary fails beyond the policy's margin.
    fn count(&mut self, canary: bool, failed: bool, policy: CanaryPolicy) -> Option<Failing> {
        let window = if canary {
            &mut self.canary
        } else {
            &mut self.stable
        };
        window.push(failed, policy.window);
        let counted = self.canary.outcomes.len();
        let (canary_rate, stable_rate) = (self.canary.rate(), self.stable.rate());
        let margin = f64::from(policy.margin_percent);
        (counted >= policy.minimum && canary_rate > stable_rate + margin).then_some(Failing {
            canary_rate,
            stable_rate,
            counted,
        })
    }
}

impl Pipeline {
    /// Starts a canary of `plugin` for `percent` of the messages on each of `routes` (each
    /// checked to serve it); the routes' names.
    pub(super) fn start_canaries(
        &self,
        routes: &[Arc<Route>],
        plugin: &crate::plugin::Plugin,
        loaded: crate::plugin::Provenance,
        percent: u8,
    ) -> Vec<String> {
        let mut started = Vec::new();
        for route in routes {
            route.start_canary(plugin.clone(), loaded, percent);
            let (from, to) = (route.version().producer.clone(), plugin.id());
            self.audit(
                &super::activate::route_stream(&route.name),
                "canary_started",
                json!({
                    "from": from.label(), "from_sha256": from.sha256,
                    "to": format!("{}@{}", to.name, to.version), "to_sha256": to.sha256,
                    "percent": percent.clamp(1, 99),
                }),
            );
            tracing::warn!(route = route.name, canary = %to, percent, "canary started");
            started.push(route.name.clone());
        }
        started
    }

    /// Ends the canary on each of `routes` that runs one: rolled back by hand (`how` is
    /// `by_hand`), or ended by an activation; the routes where one ended.
    pub(super) fn end_canaries(&self, routes: &[Arc<Route>], how: &str) -> Vec<String> {
        let mut ended = Vec::new();
        for route in routes {
            let Some(canary) = route.end_canary() else {
                continue;
            };
            let (from, to) = (&canary.version.producer, route.version().producer.clone());
            let kind = if how == "by_hand" {
                "canary_rolled_back"
            } else {
                "canary_ended"
            };
            self.audit(
                &super::activate::route_stream(&route.name),
                kind,
                json!({
                    "from": from.label(), "from_sha256": from.sha256,
                    "to": to.label(), "to_sha256": to.sha256,
                    "how": how,
                }),
            );
            tracing::warn!(
                route = route.name,
                canary = from.label(),
                how,
                "canary ended"
            );
            ended.push(route.name.clone());
        }
        ended
    }

    /// Counts what `version` made of a message on `route` while a canary runs there, and
    /// rolls the canary back when it fails beyond the margin.
    pub(super) fn judge(&self, route: &Route, version: &Arc<Version>, failed: bool) {
        let Some(canary) = route.canary() else {
            return;
        };
        let is_canary = Arc::ptr_eq(&canary.version, version);
        let policy = self.core.versions.canary;
        let Some(failing) = canary.count(is_canary, failed, policy) else {
            return;
        };
        // Only the call that ends this very canary reports it.
        if !route.end_canary_if(&canary) {
            return;
        }
        let (from, to) = (&canary.version.producer, &route.version().producer);
        self.audit(
            &super::activate::route_stream(&route.name),
            "canary_rolled_back",
            json!({
                "from": from.label(), "from_sha256": from.sha256,
                "to": to.label(), "to_sha256": to.sha256,
                "how": "automatic",
                "canary_failure_percent": failing.canary_rate,
                "stable_failure_percent": failing.stable_rate,
                "counted": failing.counted,
            }),
        );
        tracing::warn!(
            route = route.name,
            canary = from.label(),
            stable = to.label(),
            canary_failure_percent = failing.canary_rate,
            stable_failure_percent = failing.stable_rate,
            "canary rolled back: it fails more than the stable version"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_keeps_the_latest_outcomes_and_their_failures() {
        let mut window = Window::default();
        for failed in [true, true, false, false] {
            window.push(failed, 3);
        }
        assert_eq!((window.outcomes.len(), window.failed), (3, 1));
        assert!((window.rate() - 100.0 / 3.0).abs() < 1e-9);
        assert!(Window::default().rate().abs() < f64::EPSILON);
    }

    const POLICY: CanaryPolicy = CanaryPolicy {
        window: 10,
        minimum: 4,
        margin_percent: 20,
    };

    #[test]
    fn a_canary_is_judged_only_once_it_has_the_minimum_and_only_beyond_the_margin() {
        let mut tally = Tally::default();
        // The stable version fails 1 in 10.
        for n in 0..10 {
            assert!(tally.count(false, n == 0, POLICY).is_none());
        }
        // The canary fails its first three: too few to judge.
        for _ in 0..3 {
            assert!(tally.count(true, true, POLICY).is_none());
        }
        // The fourth, a success: 75 % against 10 %, beyond the 20-point margin.
        let failing = tally.count(true, false, POLICY).unwrap();
        assert_eq!(failing.counted, 4);
        assert!((failing.canary_rate - 75.0).abs() < 1e-9);
        assert!((failing.stable_rate - 10.0).abs() < 1e-9);
    }

    #[test]
    fn a_canary_that_fails_as_often_as_the_stable_version_within_the_margin_stays() {
        let mut tally = Tally::default();
        for n in 0..10 {
            tally.count(false, n % 4 == 0, POLICY);
        }
        // 3 of 10 (30 %) against 3 of 10 (30 %), then 4 of 10 (40 % < 30 + 20).
        for n in 0..10 {
            assert!(
                tally.count(true, n % 4 == 1 || n == 9, POLICY).is_none(),
                "{n}"
            );
        }
    }

    #[test]
    fn the_share_follows_the_percent_and_a_key_always_meets_the_same_version() {
        let share = |percent: u8| {
            (0..10_000)
                .filter(|n| {
                    crc32fast::hash(format!("key-{n}").as_bytes()) % 100 < u32::from(percent)
                })
                .count()
        };
        let ten = share(10);
        assert!((800..1200).contains(&ten), "{ten} of 10,000 at 10 %");
        assert_eq!(share(10), ten, "the same keys again");
    }
}
