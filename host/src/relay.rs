//! The outbox relay: publishes durable outbox events to their sinks.
//!
//! It wakes on every commit and on a timer. Each pass reads pending events in commit order,
//! and for each sink splits them by partition key into chains that keep that order; chains
//! run concurrently, one event at a time each. A failed delivery stops its chain until its
//! retry time (so later events of the same key wait: order holds across retries); after the
//! route's last attempt the event goes to the dead letter channel and the chain moves on.
//! Every attempt is recorded with its audit event; an event leaves the outbox when every
//! sink has it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::host::Host;
use crate::metrics::SinkLabel;
use crate::sink::Sink;
use crate::storage::{DeadLetter, DeadLetterKind, DeliveryOutcome, OutboxRecord};

/// How many outbox records one pass reads at most.
const BATCH: usize = 2048;
/// How often expired keys and old published events are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Runs until `cancel` fires; a pass in progress finishes first.
pub(crate) async fn run(host: Host, cancel: CancellationToken) {
    let inner = &host.inner;
    inner.relay_running.store(true, Ordering::SeqCst);
    let mut last_sweep = Instant::now();
    let mut last_depths = Instant::now();
    loop {
        let next_retry = match pass(&host).await {
            Ok(next) => next,
            Err(e) => {
                tracing::error!(error = %e, "relay pass failed");
                None
            }
        };
        // Depths scan the outbox: refreshed once a second, not on every pass.
        if last_depths.elapsed() >= Duration::from_secs(1) {
            last_depths = Instant::now();
            host.refresh_depths();
        }
        if last_sweep.elapsed() >= SWEEP_EVERY {
            last_sweep = Instant::now();
            sweep(&host);
        }
        let mut wait = inner.config.relay.poll_interval;
        if let Some(at) = next_retry {
            let until = at.duration_since(inner.clock.now());
            let until = Duration::try_from(until).unwrap_or(Duration::ZERO);
            wait = wait.min(until.max(Duration::from_millis(1)));
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = inner.relay_wake.notified() => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
    inner.relay_running.store(false, Ordering::SeqCst);
}

fn sweep(host: &Host) {
    let inner = &host.inner;
    let now = inner.clock.now();
    let before = now
        .checked_sub(inner.config.relay.published_retention)
        .unwrap_or(Timestamp::MIN);
    match inner.storage.sweep(now, before) {
        Ok(0) => {}
        Ok(n) => tracing::debug!(removed = n, "swept expired keys and published events"),
        Err(e) => tracing::warn!(error = %e, "sweep failed"),
    }
}

/// One pass over the pending events; returns the earliest retry time it left behind.
async fn pass(host: &Host) -> Result<Option<Timestamp>, String> {
    let inner = &host.inner;
    let storage = inner.storage.clone();
    let records = tokio::task::spawn_blocking(move || storage.pending(BATCH))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if records.is_empty() {
        return Ok(None);
    }
    // sink -> partition key -> records, each chain in commit order.
    let mut chains: BTreeMap<(String, String), Vec<Arc<OutboxRecord>>> = BTreeMap::new();
    for record in records {
        let record = Arc::new(record);
        for sink in record.pending.keys() {
            chains
                .entry((sink.clone(), record.event.partition_key.clone()))
                .or_default()
                .push(record.clone());
        }
    }
    let limit = Arc::new(tokio::sync::Semaphore::new(inner.config.relay.concurrency));
    let mut tasks = JoinSet::new();
    for ((sink, _), chain) in chains {
        let host = host.clone();
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await.ok()?;
            run_chain(&host, &sink, &chain).await
        });
    }
    let mut next: Option<Timestamp> = None;
    while let Some(result) = tasks.join_next().await {
        if let Ok(Some(at)) = result {
            next = Some(next.map_or(at, |n| n.min(at)));
        }
    }
    Ok(next)
}

/// Delivers a chain in order; stops at the first event that must wait, and returns when.
async fn run_chain(host: &Host, sink_name: &str, chain: &[Arc<OutboxRecord>]) -> Option<Timestamp> {
    let inner = &host.inner;
    let label = SinkLabel {
        sink: sink_name.to_owned(),
    };
    let Some(sink) = inner.sinks.get(sink_name).cloned() else {
        tracing::error!(
            sink = sink_name,
            "an outbox event names a sink that is not configured; it waits"
        );
        return None;
    };
    for record in chain {
        let delivery = record.pending.get(sink_name).cloned().unwrap_or_default();
        let now = inner.clock.now();
        if let Some(at) = delivery.next_at
            && at > now
        {
            return Some(at);
        }
        let event = &record.event;
        let started = Instant::now();
        let attempt = delivery.attempts + 1;
        let result = publish(&sink, event).await;
        inner.metrics.observe("publish", started);
        let now = inner.clock.now();
        let draft = |kind: &str, data| host.draft(&event.message_id, now, kind, data);
        let (outcome, audit, wait) = match result {
            Ok(()) => {
                inner.metrics.published.get_or_create(&label).inc();
                let audit = vec![draft(
                    "publish_succeeded",
                    json!({"sink": sink_name, "event": event.id, "attempt": attempt}),
                )];
                (DeliveryOutcome::Delivered, audit, None)
            }
            Err(error) => {
                let route = inner.routes.get(&event.route);
                let retry = route.map(|r| r.retry).unwrap_or_default();
                let failed = draft(
                    "publish_failed",
                    json!({"sink": sink_name, "event": event.id, "attempt": attempt, "error": error}),
                );
                if attempt >= retry.max_attempts {
                    inner.metrics.dead_lettered.get_or_create(&label).inc();
                    let plugin = route.map(|r| r.plugin.id().clone());
                    let entry = DeadLetter {
                        id: uuid::Uuid::now_v7().to_string(),
                        kind: DeadLetterKind::Delivery {
                            sink: sink_name.to_owned(),
                            event: Box::new(event.clone()),
                        },
                        message_id: event.message_id.clone(),
                        route: event.route.clone(),
                        error: error.clone(),
                        code: "delivery-failed".into(),
                        plugin: plugin
                            .as_ref()
                            .map(|p| format!("{}@{}", p.name, p.version))
                            .unwrap_or_default(),
                        plugin_sha256: plugin.map(|p| p.sha256).unwrap_or_default(),
                        attempts: attempt,
                        created_at: now,
                        updated_at: now,
                    };
                    let dead = draft(
                        "dead_lettered",
                        json!({"dead_letter": entry.id, "sink": sink_name, "event": event.id, "error": error}),
                    );
                    (
                        DeliveryOutcome::DeadLettered(Box::new(entry)),
                        vec![failed, dead],
                        None,
                    )
                } else {
                    inner.metrics.retries.get_or_create(&label).inc();
                    let jitter: f64 = rand::random();
                    let backoff = retry.backoff_with_jitter(attempt, jitter);
                    let next_at = now.checked_add(backoff).unwrap_or(Timestamp::MAX);
                    tracing::debug!(sink = sink_name, event = %event.id, attempt, %error, "delivery failed; will retry");
                    (
                        DeliveryOutcome::Failed { error, next_at },
                        vec![failed],
                        Some(next_at),
                    )
                }
            }
        };
        if let Err(e) = inner
            .storage
            .record_delivery(record.seq, sink_name, outcome, audit, now)
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

async fn publish(sink: &Sink, event: &crate::storage::OutboxEvent) -> Result<(), String> {
    use tracing::Instrument as _;
    let span = tracing::debug_span!("publish", message_id = %event.message_id, event = %event.id);
    sink.publish(event).instrument(span).await
}
