//! The host's circuit breakers, one per downstream it calls (each sink, each vendor), by
//! name, and the watcher that makes every change of state visible: in `/metrics`, as a
//! tracing event, and as an audit event on the breaker's own stream (`breaker:NAME`), so
//! that an operator can read when a downstream went away and came back, with the same
//! tamper-evidence as a message's history.
//!
//! The breakers themselves (`crate::breaker`) know nothing of the host. The metrics are told
//! of each transition as it happens (a breaker's observer), so a gauge never lags its
//! breaker; the log and the audit trail are written by the watcher, which collects the
//! transitions every [`WATCH_EVERY`] off the callers' path: a transition carries the time it
//! happened, so the record is exact even when it is written a moment later.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::breaker::{Breaker, BreakerConfig, Observer, State, Transition};
use crate::clock::Clock;
use crate::storage::{AuditDraft, Storage};
use crate::telemetry::Metrics;

/// How often the watcher collects transitions.
pub(crate) const WATCH_EVERY: Duration = Duration::from_millis(100);

/// The audit stream of the breaker named `name`.
pub(crate) fn audit_stream(name: &str) -> String {
    format!("breaker:{name}")
}

/// Every breaker of the host, by the name of its downstream. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Circuits {
    breakers: Arc<BTreeMap<String, Arc<Breaker>>>,
}

impl Circuits {
    /// A breaker for each `(name, config)`, on `clock`, its state in `metrics`.
    pub(crate) fn new(
        configs: impl IntoIterator<Item = (String, BreakerConfig)>,
        clock: &Arc<dyn Clock>,
        metrics: &Arc<Metrics>,
    ) -> Self {
        let breakers = configs
            .into_iter()
            .map(|(name, config)| {
                metrics.breaker_state(&name, State::Closed);
                let (metrics, named) = (metrics.clone(), name.clone());
                let observer = Observer::new(move |t: &Transition| metrics.breaker(&named, t.to));
                let breaker = Breaker::with_observer(config, clock.clone(), observer);
                (name, Arc::new(breaker))
            })
            .collect();
        Self {
            breakers: Arc::new(breakers),
        }
    }

    /// The breaker named `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Arc<Breaker>> {
        self.breakers.get(name)
    }

    /// Every breaker, by name.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Arc<Breaker>)> {
        self.breakers.iter()
    }

    /// Logs and audits every transition until `cancel` fires, then once more.
    pub(crate) async fn watch(self, storage: Arc<dyn Storage>, cancel: CancellationToken) {
        loop {
            let stopping = tokio::select! {
                () = cancel.cancelled() => true,
                () = tokio::time::sleep(WATCH_EVERY) => false,
            };
            let mut drafts = Vec::new();
            for (name, breaker) in self.iter() {
                for transition in breaker.take_transitions() {
                    log(name, &transition);
                    drafts.push(draft(name, &transition));
                }
            }
            if !drafts.is_empty() {
                let storage = storage.clone();
                let written = tokio::task::spawn_blocking(move || storage.append(drafts)).await;
                if !matches!(written, Ok(Ok(()))) {
                    tracing::error!("recording breaker transitions in the audit trail failed");
                }
            }
            if stopping {
                return;
            }
        }
    }
}

/// The tracing event of one transition.
fn log(name: &str, transition: &Transition) {
    let (from, to) = (transition.from.name(), transition.to.name());
    match transition.to {
        State::Closed => {
            tracing::info!(breaker = name, from, to, at = %transition.at, "circuit closed");
        }
        _ => tracing::warn!(breaker = name, from, to, at = %transition.at, "circuit changed"),
    }
}

/// The audit event of one transition: pure.
fn draft(name: &str, transition: &Transition) -> AuditDraft {
    AuditDraft::new(
        &audit_stream(name),
        transition.at,
        "breaker_transition",
        json!({
            "breaker": name,
            "from": transition.from.name(),
            "to": transition.to.name(),
        }),
    )
}
