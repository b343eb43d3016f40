//! What the store and the routes tell: the dead letter channel, a message's state folded from
//! its audit events, its history, the check of every audit chain, and the topology.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde_json::json;

use super::Pipeline;
use crate::Error;
use crate::audit::{self, Finding, MessageState};
use crate::config::SinkConfig;
use crate::storage::{AuditEvent, DeadLetter, Depths, MessageRecord};

impl Pipeline {
    /// The dead letter channel, oldest first.
    pub(crate) fn dead_letters(&self) -> Result<Vec<DeadLetter>, Error> {
        Ok(self.core.storage.dead_letters()?)
    }

    /// One dead letter entry with the message it concerns, if that is still stored.
    pub(crate) fn dead_letter(
        &self,
        id: &str,
    ) -> Result<Option<(DeadLetter, Option<MessageRecord>)>, Error> {
        let storage = &self.core.storage;
        let Some(entry) = storage.dead_letter(id)? else {
            return Ok(None);
        };
        let message = storage.message(&entry.message_id).ok().flatten();
        Ok(Some((entry, message)))
    }

    /// The message's state folded from its audit events, at `at` or now.
    pub(crate) fn message_state(
        &self,
        id: &str,
        at: Option<Timestamp>,
    ) -> Result<Option<MessageState>, Error> {
        let events = self.core.storage.history(id)?;
        if events.is_empty() {
            return Ok(None);
        }
        Ok(Some(audit::fold(id, &events, at)))
    }

    /// The message's audit events.
    pub(crate) fn history(&self, id: &str) -> Result<Vec<AuditEvent>, Error> {
        Ok(self.core.storage.history(id)?)
    }

    /// Verifies every audit stream: how many there are, and what is wrong.
    pub(crate) fn verify_audit(&self) -> Result<(usize, Vec<Finding>), Error> {
        let streams = self.core.storage.audit_streams()?;
        Ok((streams.len(), audit::verify(&streams)))
    }

    /// Outbox and dead letter sizes; the metrics' gauges are set from them.
    pub(crate) fn depths(&self) -> Result<Depths, Error> {
        let depths = self.core.storage.depths()?;
        self.core.metrics.set_depths(&depths, self.core.clock.now());
        Ok(depths)
    }

    /// The routes, their plugins and `sinks`, as JSON.
    pub(crate) fn topology(&self, sinks: &BTreeMap<String, SinkConfig>) -> serde_json::Value {
        let routes: serde_json::Map<String, serde_json::Value> = self
            .core
            .routes
            .iter()
            .map(|route| {
                let id = route.plugin.id();
                (route.name.clone(), json!({
                    "plugin": {"name": id.name, "version": id.version, "sha256": id.sha256, "vendor_api_version": route.plugin.info().vendor_api_version},
                    "sinks": route.sinks,
                    "idempotency_retention_secs": route.retention.as_secs(),
                    "inflight_timeout_secs": route.inflight_timeout.as_secs(),
                    "instance_reuse": route.instances.max_uses(),
                    "retry": {
                        "max_attempts": route.retry.max_attempts,
                        "initial_backoff_ms": route.retry.initial_backoff.as_millis() as u64,
                        "max_backoff_ms": route.retry.max_backoff.as_millis() as u64,
                        "multiplier": route.retry.multiplier,
                    },
                }))
            })
            .collect();
        let sinks: serde_json::Map<String, serde_json::Value> = sinks
            .iter()
            .map(|(name, sink)| {
                (name.clone(), match sink {
                    SinkConfig::Http { url, .. } => json!({"type": "http", "url": url}),
                    SinkConfig::Nats { url, stream, subject } => json!({"type": "nats", "url": url, "stream": stream, "subject": subject}),
                })
            })
            .collect();
        json!({"routes": routes, "sinks": sinks})
    }

    /// The Prometheus text exposition, with the store's depths refreshed.
    pub(crate) fn metrics_text(&self) -> String {
        let _ = self.depths();
        self.core.metrics.render()
    }
}
