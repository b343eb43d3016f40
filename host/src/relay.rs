//! The outbox relay: publishes durable outbox events to their sinks.
//!
//! Every sink has a lane of its own (`relay/lane.rs`) that reads only that sink's partition
//! keys whose next delivery is due, and delivers each key's events one at a time in commit
//! order (`relay/chain.rs`), up to `concurrency` keys at once. A failed delivery puts its key
//! at that sink in backoff until its retry time (so later events of the key wait: order holds
//! across retries), and after the route's last attempt the event goes to the dead letter
//! channel and the key moves on. A sink that is down, a key in backoff, or a backlog of any
//! size therefore holds up nothing but itself. Every delivery goes through the sink's circuit
//! breaker: while it is open the lane reads and tries nothing, so the sink's events wait with
//! their attempts unspent. Every attempt is recorded with its audit event; an event is
//! published when every sink has it.
//!
//! Beside the lanes run the depth gauges (refreshed once a second from the store's counters)
//! and the sweeper (`relay/sweeper.rs`), both on blocking threads. An operator releases the
//! keys a sink holds in backoff through `relay/release.rs`.
//!
//! The relay holds only what it uses: the store, the sinks and their breakers, each route's
//! retry policy, the clock, the metrics and its wake-up. It knows nothing of the pipeline or of HTTP.

mod chain;
mod lane;
mod release;
mod sweeper;

pub(crate) use release::Release;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::circuits::Circuits;
use crate::clock::Clock;
use crate::config::{RelayConfig, RetryPolicy};
use crate::delivery::Sink;
use crate::storage::{Producer, Storage};
use crate::telemetry::Metrics;

/// How often the depth gauges are refreshed.
const GAUGES_EVERY: Duration = Duration::from_secs(1);

/// How long a transaction may stay open on the store's database before the relay names it.
const LONG_TRANSACTION: Duration = Duration::from_secs(30);

/// Wakes every lane of the relay: a commit has put events in the outbox.
#[derive(Debug, Clone)]
pub(crate) struct Wake(Arc<watch::Sender<u64>>);

impl Default for Wake {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl Wake {
    /// Wakes every lane now, or at the end of what it is doing.
    pub(crate) fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// Whether the relay runs and the store answered its last reading: what readiness reports.
#[derive(Debug, Clone)]
pub(crate) struct Running(Arc<Readiness>);

#[derive(Debug)]
struct Readiness {
    relay_runs: AtomicBool,
    store_answers: AtomicBool,
    /// Whether the watched plugins directory, if any, is watched yet: a file dropped before
    /// would be neither taken nor noticed.
    plugins_watched: AtomicBool,
}

impl Default for Running {
    fn default() -> Self {
        Self(Arc::new(Readiness {
            relay_runs: AtomicBool::new(false),
            store_answers: AtomicBool::new(true),
            plugins_watched: AtomicBool::new(true),
        }))
    }
}

impl Running {
    /// The relay runs and the store answered.
    pub(crate) fn is_ready(&self) -> bool {
        self.0.relay_runs.load(Ordering::SeqCst) && self.0.store_answers.load(Ordering::SeqCst)
    }

    /// Whether the watched plugins directory (if the config names one) is watched.
    pub(crate) fn plugins_watched(&self) -> bool {
        self.0.plugins_watched.load(Ordering::SeqCst)
    }

    /// Sets whether the watched plugins directory is watched.
    pub(crate) fn set_plugins_watched(&self, watched: bool) {
        self.0.plugins_watched.store(watched, Ordering::SeqCst);
    }

    fn set(&self, running: bool) {
        self.0.relay_runs.store(running, Ordering::SeqCst);
    }

    fn store_answered(&self, answered: bool) {
        self.0.store_answers.store(answered, Ordering::SeqCst);
    }
}

/// What the relay needs of a route: how to retry its events, and which plugin to name on a
/// dead letter whose event was stored before events carried their producer.
#[derive(Debug, Clone)]
pub(crate) struct RouteDelivery {
    pub(crate) retry: RetryPolicy,
    pub(crate) producer: Producer,
    /// How much of the dead letter channel the route may fill.
    pub(crate) dead_letters: crate::config::DeadLetterBound,
}

/// Everything the relay is made of.
#[derive(Debug)]
pub(crate) struct RelayParts {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) sinks: BTreeMap<String, Arc<Sink>>,
    /// Each sink's circuit breaker: while it is open, the sink's events wait without
    /// spending delivery attempts.
    pub(crate) circuits: Circuits,
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

    /// Runs until `cancel` fires; deliveries in progress finish first.
    pub(crate) async fn run(self: Arc<Self>, cancel: CancellationToken) {
        self.running.set(true);
        let mut tasks = JoinSet::new();
        for sink in self.sinks.keys() {
            tasks.spawn(lane::run(self.clone(), sink.clone(), cancel.clone()));
        }
        tasks.spawn(self.clone().gauges(cancel.clone()));
        tasks.spawn(sweeper::run(self.clone(), cancel.clone()));
        while let Some(done) = tasks.join_next().await {
            if let Err(e) = done {
                tracing::error!(error = %e, "a relay task failed");
            }
        }
        self.running.set(false);
    }

    /// Refreshes the depth gauges from the store's counters, once a second, and says
    /// whether the store answers; warns once about deliveries waiting for a sink that is not
    /// configured.
    async fn gauges(self: Arc<Self>, cancel: CancellationToken) {
        let mut warned = false;
        // The open transaction last reported, so that one is reported once.
        let mut reported = None;
        loop {
            let storage = self.storage.clone();
            let depths = tokio::task::spawn_blocking(move || storage.depths()).await;
            match depths {
                Ok(Ok(depths)) => {
                    self.running.store_answered(true);
                    self.metrics.set_depths(&depths, self.clock.now());
                    if let Some(open) = &depths.oldest_transaction
                        && open.age >= LONG_TRANSACTION
                        && reported != Some(open.pid)
                    {
                        reported = Some(open.pid);
                        tracing::warn!(
                            pid = open.pid,
                            state = %open.state,
                            age_s = open.age.as_secs(),
                            "a transaction has been open on the store's database for long: the \
                             rows it locks wait, and commits on its partition keys with them \
                             (pg_terminate_backend(pid) ends it)"
                        );
                    }
                    let orphans: Vec<&String> = depths
                        .sinks
                        .iter()
                        .filter(|(sink, n)| **n > 0 && !self.sinks.contains_key(*sink))
                        .map(|(sink, _)| sink)
                        .collect();
                    if !orphans.is_empty() && !warned {
                        warned = true;
                        tracing::error!(
                            sinks = ?orphans,
                            "outbox events wait for sinks that are not configured"
                        );
                    }
                }
                Ok(Err(e)) => {
                    self.running.store_answered(false);
                    tracing::warn!(error = %e, "the store did not answer for its depths");
                }
                Err(e) => tracing::error!(error = %e, "the depth task failed"),
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(GAUGES_EVERY) => {}
            }
        }
    }

    /// How long to sleep: until `next_at`, at most the poll interval.
    fn wait(&self, next_at: Option<Timestamp>) -> Duration {
        let mut wait = self.config.poll_interval;
        if let Some(at) = next_at {
            let until = at.duration_since(self.clock.now());
            let until = Duration::try_from(until).unwrap_or(Duration::ZERO);
            wait = wait.min(until.max(Duration::from_millis(1)));
        }
        wait
    }
}
