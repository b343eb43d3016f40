//! One chain: the pending events of one partition key for one sink, delivered one at a time
//! in commit order. A failure stops the chain until its retry time, so later events of the
//! key wait behind it; the last failure dead-letters the event and the chain moves on.

use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use serde_json::json;

use super::Relay;
use crate::delivery::{DeliveryError, Sink};
use crate::storage::{
    AuditDraft, DeadLetter, DeadLetterKind, DeliveryOutcome, OutboxRecord, Producer,
};

pub(super) struct Chain<'a> {
    relay: &'a Relay,
    name: &'a str,
    sink: Arc<Sink>,
}

impl<'a> Chain<'a> {
    /// The chain for `sink`, or `None` (logged) when no such sink is configured: its events
    /// wait in the outbox until one is.
    pub(super) fn new(relay: &'a Relay, sink: &'a str) -> Option<Self> {
        let Some(found) = relay.sinks.get(sink).cloned() else {
            tracing::error!(
                sink,
                "an outbox event names a sink that is not configured; it waits"
            );
            return None;
        };
        Some(Self {
            relay,
            name: sink,
            sink: found,
        })
    }

    /// Delivers `records` in order; stops at the first event that must wait, and returns when
    /// it may be tried again.
    pub(super) async fn run(&self, records: &[Arc<OutboxRecord>]) -> Option<Timestamp> {
        for record in records {
            let delivery = record.pending.get(self.name).cloned().unwrap_or_default();
            if let Some(at) = delivery.next_at
                && at > self.relay.clock.now()
            {
                return Some(at);
            }
            let attempt = delivery.attempts + 1;
            let started = Instant::now();
            let result = self.publish(record).await;
            self.relay.metrics.observe("publish", started);
            let now = self.relay.clock.now();
            let (outcome, audit) = match result {
                Ok(()) => self.delivered(record, attempt, now),
                Err(error) => self.failed(record, attempt, &error, now),
            };
            let wait = match &outcome {
                DeliveryOutcome::Failed { next_at, .. } => Some(*next_at),
                _ => None,
            };
            if let Err(e) = self
                .relay
                .storage
                .record_delivery(record.seq, self.name, outcome, audit, now)
            {
                tracing::error!(error = %e, "recording a delivery failed; the event will be delivered again");
                return None;
            }
            if wait.is_some() {
                return wait;
            }
        }
        None
    }

    async fn publish(&self, record: &OutboxRecord) -> Result<(), DeliveryError> {
        use tracing::Instrument as _;
        let event = &record.event;
        let span =
            tracing::debug_span!("publish", message_id = %event.message_id, event = %event.id);
        self.sink.publish(event).instrument(span).await
    }

    fn delivered(
        &self,
        record: &OutboxRecord,
        attempt: u32,
        now: Timestamp,
    ) -> (DeliveryOutcome, Vec<AuditDraft>) {
        self.relay.metrics.published(self.name);
        let event = &record.event;
        let audit = vec![AuditDraft::new(
            &event.message_id,
            now,
            "publish_succeeded",
            json!({"sink": self.name, "event": event.id, "attempt": attempt}),
        )];
        (DeliveryOutcome::Delivered, audit)
    }

    /// A failed attempt: retried after a backoff, or dead-lettered after the route's last.
    fn failed(
        &self,
        record: &OutboxRecord,
        attempt: u32,
        error: &DeliveryError,
        now: Timestamp,
    ) -> (DeliveryOutcome, Vec<AuditDraft>) {
        let event = &record.event;
        let error = error.to_string();
        let route = self.relay.routes.get(&event.route);
        let retry = route.map(|r| r.retry).unwrap_or_default();
        let failed = AuditDraft::new(
            &event.message_id,
            now,
            "publish_failed",
            json!({"sink": self.name, "event": event.id, "attempt": attempt, "error": error}),
        );
        if attempt < retry.max_attempts {
            self.relay.metrics.retried(self.name);
            let backoff = retry.backoff_with_jitter(attempt, rand::random());
            let next_at = now.checked_add(backoff).unwrap_or(Timestamp::MAX);
            tracing::debug!(sink = self.name, event = %event.id, attempt, %error, "delivery failed; will retry");
            return (DeliveryOutcome::Failed { error, next_at }, vec![failed]);
        }
        self.relay.metrics.dead_lettered(self.name);
        // The plugin that produced the event; for records from before events carried it,
        // the route's plugin.
        let producer = event
            .producer
            .as_ref()
            .or(route.map(|route| &route.producer));
        let plugin = producer.map(Producer::label).unwrap_or_default();
        let plugin_sha256 = producer.map(|p| p.sha256.clone()).unwrap_or_default();
        let entry = DeadLetter {
            id: uuid::Uuid::now_v7().to_string(),
            kind: DeadLetterKind::Delivery {
                sink: self.name.to_owned(),
                event: Box::new(event.clone()),
            },
            message_id: event.message_id.clone(),
            route: event.route.clone(),
            error: error.clone(),
            code: "delivery-failed".into(),
            plugin,
            plugin_sha256,
            attempts: attempt,
            created_at: now,
            updated_at: now,
        };
        let dead = AuditDraft::new(
            &event.message_id,
            now,
            "dead_lettered",
            json!({"dead_letter": entry.id, "sink": self.name, "event": event.id, "error": error}),
        );
        (
            DeliveryOutcome::DeadLettered(Box::new(entry)),
            vec![failed, dead],
        )
    }
}
