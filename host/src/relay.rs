//! The outbox relay: publishes durable outbox events to their sinks.
//!
//! It wakes on every commit and on a timer. Each pass reads pending events in commit order,
//! and for each sink splits them by partition key into chains that keep that order
//! (`relay/chain.rs`); chains run concurrently, one event at a time each. A failed delivery
//! stops its chain until its retry time (so later events of the same key wait: order holds
//! across retries); after the route's last attempt the event goes to the dead letter channel
//! and the chain moves on. Every attempt is recorded with its audit event; an event leaves the
//! outbox when every sink has it. Now and then the relay sweeps expired keys and old
//! published events (`relay/sweeper.rs`).
//!
//! The relay holds only what it uses: the store, the sinks, each route's retry policy, the
//! clock, the metrics and its wake-up. It knows nothing of the pipeline or of HTTP.

mod chain;
mod sweeper;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{RelayConfig, RetryPolicy};
use crate::delivery::Sink;
use crate::storage::{OutboxRecord, Producer, Storage, StorageError};
use crate::telemetry::Metrics;

/// How many outbox records one pass reads at most.
const BATCH: usize = 2048;
/// How often expired keys and old published events are swept.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Wakes the relay: a commit has put events in the outbox.
#[derive(Debug, Clone, Default)]
pub(crate) struct Wake(Arc<Notify>);

impl Wake {
    /// Wakes the relay now, or at the end of its current pass.
    pub(crate) fn notify(&self) {
        self.0.notify_one();
    }
}

/// Whether the relay runs: what readiness reports.
#[derive(Debug, Clone, Default)]
pub(crate) struct Running(Arc<AtomicBool>);

impl Running {
    pub(crate) fn is_running(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn set(&self, running: bool) {
        self.0.store(running, Ordering::SeqCst);
    }
}

/// What the relay needs of a route: how to retry its events, and which plugin to name on a
/// dead letter whose event was stored before events carried their producer.
#[derive(Debug, Clone)]
pub(crate) struct RouteDelivery {
    pub(crate) retry: RetryPolicy,
    pub(crate) producer: Producer,
}

/// Everything the relay is made of.
#[derive(Debug)]
pub(crate) struct RelayParts {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) sinks: BTreeMap<String, Arc<Sink>>,
    pub(crate) routes: BTreeMap<String, RouteDelivery>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) config: RelayConfig,
    pub(crate) wake: Wake,
    pub(crate) running: Running,
}

/// The relay; run it with [`Relay::run`]. Its parts are its own once it is made.
#[derive(Debug)]
pub(crate) struct Relay {
    parts: RelayParts,
}

impl std::ops::Deref for Relay {
    type Target = RelayParts;

    fn deref(&self) -> &RelayParts {
        &self.parts
    }
}

impl Relay {
    pub(crate) fn new(parts: RelayParts) -> Self {
        Self { parts }
    }

    /// Runs until `cancel` fires; a pass in progress finishes first.
    pub(crate) async fn run(self: Arc<Self>, cancel: CancellationToken) {
        self.running.set(true);
        let mut last_sweep = Instant::now();
        let mut last_depths = Instant::now();
        loop {
            let next_retry = match self.pass().await {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(error = %e, "relay pass failed");
                    None
                }
            };
            // Depths scan the outbox: refreshed once a second, not on every pass.
            if last_depths.elapsed() >= Duration::from_secs(1) {
                last_depths = Instant::now();
                if let Ok(depths) = self.storage.depths() {
                    self.metrics.set_depths(&depths, self.clock.now());
                }
            }
            if last_sweep.elapsed() >= SWEEP_EVERY {
                last_sweep = Instant::now();
                sweeper::sweep(&*self.storage, &*self.clock, &self.config);
            }
            let wait = self.wait(next_retry);
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.wake.0.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        self.running.set(false);
    }

    /// How long to sleep: until the earliest retry, at most the poll interval.
    fn wait(&self, next_retry: Option<Timestamp>) -> Duration {
        let mut wait = self.config.poll_interval;
        if let Some(at) = next_retry {
            let until = at.duration_since(self.clock.now());
            let until = Duration::try_from(until).unwrap_or(Duration::ZERO);
            wait = wait.min(until.max(Duration::from_millis(1)));
        }
        wait
    }

    /// One pass over the pending events; returns the earliest retry time it left behind.
    async fn pass(self: &Arc<Self>) -> Result<Option<Timestamp>, PassError> {
        let storage = self.storage.clone();
        let records = tokio::task::spawn_blocking(move || storage.pending(BATCH))
            .await
            .map_err(|e| PassError::Task(e.to_string()))??;
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
        let limit = Arc::new(tokio::sync::Semaphore::new(self.config.concurrency));
        let mut tasks = JoinSet::new();
        for ((sink, _), records) in chains {
            let relay = self.clone();
            let limit = limit.clone();
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await.ok()?;
                chain::Chain::new(&relay, &sink)?.run(&records).await
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
}

/// Why a pass could not read the outbox.
#[derive(Debug, thiserror::Error)]
enum PassError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the read task failed: {0}")]
    Task(String),
}
