//! One chain: the due deliveries of one partition key to one sink, one at a time in commit
//! order. A failure stops the chain, and the store keeps the key in backoff until its retry
//! time, so later events of the key wait behind it; the last failure dead-letters the event
//! and the key moves on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::json;

use super::Relay;
use crate::delivery::{DeliveryError, Sink};
use tokio_util::sync::CancellationToken;

use crate::breaker::{Admission, Breaker, Outcome};

use crate::storage::{
    AuditDraft, DeadLetter, DeadLetterKind, DeliveryOutcome, OutboxEvent, PendingDelivery, Producer,
};

pub(super) struct Chain<'a> {
    relay: &'a Relay,
    name: &'a str,
    sink: Arc<Sink>,
    breaker: &'a Breaker,
}

impl<'a> Chain<'a> {
    pub(super) fn new(
        relay: &'a Relay,
        name: &'a str,
        sink: Arc<Sink>,
        breaker: &'a Breaker,
    ) -> Self {
        Self {
            relay,
            name,
            sink,
            breaker,
        }
    }

    /// Delivers `deliveries` (one key's, in commit order) one at a time; stops at the first
    /// that fails (its key then waits for the retry time the store now holds), and between
    /// deliveries once `cancel` fires.
    pub(super) async fn run(&self, deliveries: Vec<PendingDelivery>, cancel: &CancellationToken) {
        for pending in deliveries {
            if cancel.is_cancelled() {
                return;
            }
            if let Some(at) = pending.delivery.next_at
                && at > self.relay.clock.now()
            {
                return;
            }
            // Through the sink's breaker: refused, the event waits with its attempts unspent.
            let Admission::Permitted(permit) = self.breaker.admit() else {
                return;
            };
            let attempt = pending.delivery.attempts + 1;
            let started = Instant::now();
            let result = self.publish(&pending.event).await;
            permit.record(match &result {
                Ok(()) => Outcome::Success,
                Err(error) => health(self.breaker, error),
            });
            self.relay.metrics.observe("publish", started);
            let now = self.relay.clock.now();
            let (outcome, audit) = match result {
                Ok(()) => self.delivered(&pending.event, attempt, now),
                Err(error) => self.failed(&pending, attempt, &error, now),
            };
            let failed = matches!(outcome, DeliveryOutcome::Failed { .. });
            // A dead letter keeps its route within its bound.
            let bound = matches!(outcome, DeliveryOutcome::DeadLettered(_))
                .then(|| self.relay.routes.get(&pending.event.route))
                .flatten()
                .map(|r| (pending.event.route.clone(), r.dead_letters));
            let (storage, sink, seq, metrics) = (
                self.relay.storage.clone(),
                self.name.to_owned(),
                pending.seq,
                self.relay.metrics.clone(),
            );
            let recorded = tokio::task::spawn_blocking(move || {
                storage.record_delivery(seq, &sink, outcome, audit, now)?;
                if let Some((route, bound)) = bound
                    && let Err(e) = crate::evict::enforce(&*storage, &metrics, &route, bound, now)
                {
                    tracing::error!(route, error = %e, "keeping the dead letters within their bound failed");
                }
                Ok::<_, crate::storage::StorageError>(())
            })
            .await;
            let error = match recorded {
                Ok(Ok(())) => None,
                Ok(Err(crate::storage::StorageError::LeaseLost { partition_key, .. })) => {
                    // Another host delivers the key now (it will deliver this event again).
                    tracing::info!(
                        sink = self.name,
                        partition_key,
                        "the key's lease went to another host"
                    );
                    return;
                }
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(e.to_string()),
            };
            if let Some(error) = error {
                tracing::error!(sink = self.name, %error, "recording a delivery failed; the event will be delivered again");
                // The key stays with this chain a moment, so a failing store is not hammered.
                tokio::time::sleep(self.relay.config.poll_interval).await;
                return;
            }
            if failed {
                return;
            }
        }
    }

    async fn publish(&self, event: &OutboxEvent) -> Result<(), DeliveryError> {
        use tracing::Instrument as _;
        // A span per attempt: a child of the ingest that made the event, and linked to it.
        let span = tracing::info_span!(
            "send",
            otel.kind = "producer",
            messaging.system = self.sink.system(),
            messaging.operation.type = "send",
            messaging.destination.name = self.sink.destination(self.name),
            messaging.message.id = %event.id,
            message_id = %event.message_id,
            sink = self.name,
        );
        crate::trace::follow(&span, &event.traceparent, event.tracestate.as_deref());
        self.sink.publish(event).instrument(span).await
    }

    fn delivered(
        &self,
        event: &OutboxEvent,
        attempt: u32,
        now: Timestamp,
    ) -> (DeliveryOutcome, Vec<AuditDraft>) {
        self.relay.metrics.published(self.name);
        tracing::debug!(sink = self.name, message_id = %event.message_id, event = %event.id, attempt, "delivered");
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
        pending: &PendingDelivery,
        attempt: u32,
        error: &DeliveryError,
        now: Timestamp,
    ) -> (DeliveryOutcome, Vec<AuditDraft>) {
        let event = &pending.event;
        // The server's Retry-After, when it gave one.
        let asked = match error {
            DeliveryError::Status { retry_after, .. } => *retry_after,
            _ => None,
        };
        let error = error.to_string();
        let route = self.relay.routes.get(&event.route);
        let retry = route.map(|r| r.retry).unwrap_or_default();
        let failed = AuditDraft::new(
            &event.message_id,
            now,
            "publish_failed",
            json!({"sink": self.name, "event": event.id, "attempt": attempt, "error": error}),
        );
        // The budget: a count of attempts, and a time from the first failure.
        let failing_for = pending
            .delivery
            .first_failed_at
            .map_or(Duration::ZERO, |first| {
                Duration::try_from(now.duration_since(first)).unwrap_or(Duration::ZERO)
            });
        if attempt < retry.max_attempts && failing_for < retry.max_duration {
            self.relay.metrics.retried(self.name);
            // The server's Retry-After, when it is longer than the backoff, up to the
            // route's ceiling and never past its budget.
            let wait = retry.wait(attempt, rand::random(), asked, failing_for);
            let next_at = now.checked_add(wait).unwrap_or(Timestamp::MAX);
            tracing::debug!(sink = self.name, event = %event.id, attempt, %error, "delivery failed; will retry");
            return (DeliveryOutcome::Failed { error, next_at }, vec![failed]);
        }
        self.relay.metrics.dead_lettered(self.name);
        tracing::warn!(sink = self.name, message_id = %event.message_id, route = %event.route, event = %event.id, attempt, %error, "delivery dead-lettered");
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
            bytes: event.data.len() as u64,
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

/// What a failed delivery says of the sink's health, by its breaker's failure policy: by
/// default timeouts, connection errors, a broker that refused or did not acknowledge, 5xx
/// and 429 count against it; other 4xx and an event that cannot be encoded do not.
fn health(breaker: &Breaker, error: &DeliveryError) -> Outcome {
    match error {
        DeliveryError::Timeout { .. } | DeliveryError::Connect(_) | DeliveryError::Refused(_) => {
            breaker.classify(None)
        }
        DeliveryError::Status { status, .. } => breaker.classify(Some(status.as_u16())),
        DeliveryError::Unencodable(_) => Outcome::Ignored,
    }
}
