//! What the host tells about itself: the Prometheus metrics, rendered as text for
//! `/metrics`, and each route's latency buckets for the console (`telemetry/latency.rs`).
//! Trace context is `trace.rs`'s. The library never installs a tracing
//! subscriber; the binary (or the embedding service) does.

mod latency;

use jiff::Timestamp;
pub(crate) use latency::{BUCKETS, Latency, quantile};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::storage::Depths;

/// Labels naming a route.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabel {
    route: String,
}

/// Labels naming a sink.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabel {
    sink: String,
}

/// Labels naming a circuit breaker (its downstream: a sink or a vendor).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BreakerLabel {
    breaker: String,
}

/// Labels naming a circuit breaker and the state it entered.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransitionLabel {
    breaker: String,
    to: &'static str,
}

/// Labels naming what became of a file in the watched plugins directory.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FileLabel {
    outcome: &'static str,
}

/// Labels naming a route's source and what it did with a message.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabel {
    route: String,
    action: &'static str,
}

/// Labels naming a pipeline stage.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabel {
    stage: &'static str,
}

/// Every metric of the host.
/// A state of the store's connections.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabel {
    state: &'static str,
}

#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    received: Family<RouteLabel, Counter>,
    duplicates: Family<RouteLabel, Counter>,
    translated: Family<RouteLabel, Counter>,
    rejected: Family<RouteLabel, Counter>,
    evicted: Family<RouteLabel, Counter>,
    busy: Family<RouteLabel, Counter>,
    door_refused: Family<RouteLabel, Counter>,
    published: Family<SinkLabel, Counter>,
    retries: Family<SinkLabel, Counter>,
    dead_lettered: Family<SinkLabel, Counter>,
    dlq_size: Gauge,
    outbox_depth: Gauge,
    outbox_oldest_age: Gauge,
    sink_pending: Family<SinkLabel, Gauge>,
    pool_connections: Family<PoolLabel, Gauge>,
    pool_waits: Counter,
    pool_errors: Counter,
    oldest_transaction: Gauge,
    breaker_state: Family<BreakerLabel, Gauge>,
    breaker_transitions: Family<TransitionLabel, Counter>,
    swept: Counter,
    checkpoints_published: Counter,
    checkpoints_failed: Counter,
    checkpoint_time: Gauge,
    archived_events: Counter,
    forgotten_bodies: Counter,
    retention_failed: Counter,
    plugin_files: Family<FileLabel, Counter>,
    latency: Family<StageLabel, Histogram>,
    source_messages: Family<SourceLabel, Counter>,
    source_pending: Family<RouteLabel, Gauge>,
    source_redelivered: Family<RouteLabel, Gauge>,
    source_lag: Family<RouteLabel, Gauge>,
}

impl Default for Metrics {
    // Long on purpose: the list of every metric with its name and help text, in one place.
    fn default() -> Self {
        let mut registry = Registry::with_prefix("dragoman");
        let latency = Family::<StageLabel, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                1.0, 2.5,
            ])
        });
        let metrics = Self {
            registry: Registry::default(),
            received: Family::default(),
            duplicates: Family::default(),
            translated: Family::default(),
            rejected: Family::default(),
            evicted: Family::default(),
            busy: Family::default(),
            door_refused: Family::default(),
            published: Family::default(),
            retries: Family::default(),
            dead_lettered: Family::default(),
            dlq_size: Gauge::default(),
            outbox_depth: Gauge::default(),
            outbox_oldest_age: Gauge::default(),
            sink_pending: Family::default(),
            pool_connections: Family::default(),
            pool_waits: Counter::default(),
            pool_errors: Counter::default(),
            oldest_transaction: Gauge::default(),
            breaker_state: Family::default(),
            breaker_transitions: Family::default(),
            swept: Counter::default(),
            checkpoints_published: Counter::default(),
            checkpoints_failed: Counter::default(),
            checkpoint_time: Gauge::default(),
            archived_events: Counter::default(),
            forgotten_bodies: Counter::default(),
            retention_failed: Counter::default(),
            plugin_files: Family::default(),
            latency,
            source_messages: Family::default(),
            source_pending: Family::default(),
            source_redelivered: Family::default(),
            source_lag: Family::default(),
        };
        registry.register(
            "messages_received",
            "Messages received, per route",
            metrics.received.clone(),
        );
        registry.register(
            "messages_duplicate",
            "Redeliveries answered from the stored outcome",
            metrics.duplicates.clone(),
        );
        registry.register(
            "messages_translated",
            "Messages translated and committed",
            metrics.translated.clone(),
        );
        registry.register(
            "messages_rejected",
            "Messages refused or faulted on by their plugin (dead-lettered)",
            metrics.rejected.clone(),
        );
        registry.register(
            "dead_letters_evicted",
            "Dead letters removed, oldest first, to keep a route within its bound",
            metrics.evicted.clone(),
        );
        registry.register(
            "messages_route_busy",
            "Messages refused (503) because their route's bulkhead was full",
            metrics.busy.clone(),
        );
        registry.register(
            "door_refused",
            "Messages refused at the door (401): their route's credential missing or wrong",
            metrics.door_refused.clone(),
        );
        registry.register(
            "events_published",
            "Events acknowledged by a sink",
            metrics.published.clone(),
        );
        registry.register(
            "publish_retries",
            "Failed publish attempts that will be retried",
            metrics.retries.clone(),
        );
        registry.register(
            "events_dead_lettered",
            "Events moved to the dead letter channel after their last attempt",
            metrics.dead_lettered.clone(),
        );
        registry.register(
            "dlq_size",
            "Entries in the dead letter channel",
            metrics.dlq_size.clone(),
        );
        registry.register(
            "outbox_depth",
            "Outbox events with a sink to go",
            metrics.outbox_depth.clone(),
        );
        registry.register(
            "outbox_oldest_age_seconds",
            "Age of the oldest pending outbox event",
            metrics.outbox_oldest_age.clone(),
        );
        registry.register(
            "sink_pending",
            "Deliveries a sink still waits for",
            metrics.sink_pending.clone(),
        );
        registry.register(
            "store_pool_connections",
            "The store's database connections: the most it may open, open, idle, and calls \
             waiting for one (absent for the embedded store)",
            metrics.pool_connections.clone(),
        );
        registry.register(
            "store_pool_waits",
            "Calls that waited for a database connection",
            metrics.pool_waits.clone(),
        );
        registry.register(
            "store_pool_errors",
            "Calls that got no database connection",
            metrics.pool_errors.clone(),
        );
        registry.register(
            "store_oldest_transaction_seconds",
            "Age of the oldest transaction open on the store's database by another session \
             (0 when none, or for the embedded store)",
            metrics.oldest_transaction.clone(),
        );
        registry.register(
            "breaker_state",
            "Each circuit breaker (one per sink and per vendor): 0 closed, 1 open, 2 half-open, 3 forced open, 4 disabled",
            metrics.breaker_state.clone(),
        );
        registry.register(
            "breaker_transitions",
            "Changes of a circuit breaker, by the state entered",
            metrics.breaker_transitions.clone(),
        );
        registry.register(
            "swept",
            "Expired idempotency keys and published events forgotten by the sweeper",
            metrics.swept.clone(),
        );
        registry.register(
            "checkpoints_published",
            "Signed checkpoints of the chains' heads published to their sink",
            metrics.checkpoints_published.clone(),
        );
        registry.register(
            "checkpoints_failed",
            "Checkpoints not published: the heads could not be read or the sink did not take it",
            metrics.checkpoints_failed.clone(),
        );
        registry.register(
            "checkpoint_time_seconds",
            "When the heads of the last published checkpoint were read, Unix seconds (0: none yet)",
            metrics.checkpoint_time.clone(),
        );
        registry.register(
            "archived_events",
            "Audit events moved from the hot store to the archive",
            metrics.archived_events.clone(),
        );
        registry.register(
            "forgotten_bodies",
            "Message bodies removed past their route's retention",
            metrics.forgotten_bodies.clone(),
        );
        registry.register(
            "retention_failed",
            "Retention runs that failed (the store or the archive could not be read or written)",
            metrics.retention_failed.clone(),
        );
        registry.register(
            "plugin_files",
            "Files of the watched plugins directory: taken as a new version, unchanged, or incomplete (still being written)",
            metrics.plugin_files.clone(),
        );
        registry.register(
            "stage_latency_seconds",
            "Latency per pipeline stage",
            metrics.latency.clone(),
        );
        registry.register(
            "source_messages",
            "Messages a route took from its broker source: fetched, then acked, naked (with a \
             delay) or termed",
            metrics.source_messages.clone(),
        );
        registry.register(
            "source_pending",
            "Messages the route's consumer has delivered and not yet had acknowledged",
            metrics.source_pending.clone(),
        );
        registry.register(
            "source_redelivered",
            "Messages the route's consumer delivered more than once and not yet had acknowledged",
            metrics.source_redelivered.clone(),
        );
        registry.register(
            "source_lag",
            "Messages on the stream for the route's consumer not yet delivered",
            metrics.source_lag.clone(),
        );
        Self {
            registry,
            ..metrics
        }
    }
}

impl Metrics {
    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// Records how long a pipeline stage took, from `since` to now.
    pub(crate) fn observe(&self, stage: &'static str, since: std::time::Instant) {
        self.latency
            .get_or_create(&StageLabel { stage })
            .observe(since.elapsed().as_secs_f64());
    }

    /// A message arrived on `route`.
    pub(crate) fn received(&self, route: &str) {
        self.received.get_or_create(&route_label(route)).inc();
    }

    /// A redelivery on `route` was answered from the stored outcome.
    pub(crate) fn duplicate(&self, route: &str) {
        self.duplicates.get_or_create(&route_label(route)).inc();
    }

    /// A message on `route` was translated and committed.
    pub(crate) fn translated(&self, route: &str) {
        self.translated.get_or_create(&route_label(route)).inc();
    }

    /// A message on `route` was refused or faulted on by its plugin, and dead-lettered.
    pub(crate) fn rejected(&self, route: &str) {
        self.rejected.get_or_create(&route_label(route)).inc();
    }

    /// A message to `route` was refused at the door: its credential was missing or wrong.
    pub(crate) fn door_refused(&self, route: &str) {
        self.door_refused.get_or_create(&route_label(route)).inc();
    }

    /// A message to `route` was refused: its bulkhead was full.
    pub(crate) fn busy(&self, route: &str) {
        self.busy.get_or_create(&route_label(route)).inc();
    }

    /// A dead letter of `route` was removed to keep the route within its bound.
    pub(crate) fn evicted(&self, route: &str) {
        self.evicted.get_or_create(&route_label(route)).inc();
    }

    /// `sink` acknowledged an event.
    pub(crate) fn published(&self, sink: &str) {
        self.published.get_or_create(&sink_label(sink)).inc();
    }

    /// A delivery to `sink` failed and will be retried.
    pub(crate) fn retried(&self, sink: &str) {
        self.retries.get_or_create(&sink_label(sink)).inc();
    }

    /// An event for `sink` went to the dead letter channel after its last attempt.
    pub(crate) fn dead_lettered(&self, sink: &str) {
        self.dead_lettered.get_or_create(&sink_label(sink)).inc();
    }

    /// Sets the store's gauges from `depths`, the oldest pending age as of `now`.
    pub(crate) fn set_depths(&self, depths: &Depths, now: Timestamp) {
        self.outbox_depth
            .set(i64::try_from(depths.outbox).unwrap_or(i64::MAX));
        self.dlq_size
            .set(i64::try_from(depths.dead_letters).unwrap_or(i64::MAX));
        let age = depths
            .oldest
            .map_or(0, |oldest| (now - oldest).as_secs().max(0));
        self.outbox_oldest_age.set(age);
        if let Some(pool) = depths.pool {
            for (state, n) in [
                ("max", pool.max),
                ("open", pool.open),
                ("idle", pool.idle),
                ("waiting", pool.waiting),
            ] {
                self.pool_connections
                    .get_or_create(&PoolLabel { state })
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
            // The store counts since it opened; the counters follow it.
            self.pool_waits
                .inc_by(pool.waits.saturating_sub(self.pool_waits.get()));
            self.pool_errors
                .inc_by(pool.errors.saturating_sub(self.pool_errors.get()));
        }
        self.oldest_transaction.set(
            depths
                .oldest_transaction
                .as_ref()
                .map_or(0, |t| i64::try_from(t.age.as_secs()).unwrap_or(i64::MAX)),
        );
        for (sink, pending) in &depths.sinks {
            self.sink_pending
                .get_or_create(&sink_label(sink))
                .set(i64::try_from(*pending).unwrap_or(i64::MAX));
        }
    }

    /// The breaker `name` entered `state`.
    pub(crate) fn breaker(&self, name: &str, state: crate::breaker::State) {
        self.breaker_state(name, state);
        self.breaker_transitions
            .get_or_create(&TransitionLabel {
                breaker: name.to_owned(),
                to: state.name(),
            })
            .inc();
    }

    /// The breaker `name` stands in `state` (at start, before any transition).
    pub(crate) fn breaker_state(&self, name: &str, state: crate::breaker::State) {
        self.breaker_state
            .get_or_create(&BreakerLabel {
                breaker: name.to_owned(),
            })
            .set(i64::from(state.code()));
    }

    /// A file of the watched plugins directory was taken, or left (`unchanged`,
    /// `incomplete`).
    pub(crate) fn plugin_file(&self, outcome: &'static str) {
        self.plugin_files
            .get_or_create(&FileLabel { outcome })
            .inc();
    }

    /// The sweeper forgot `n` records.
    /// A route's source `action`ed a message: `fetched`, `acked`, `naked` or `termed`.
    pub(crate) fn source(&self, route: &str, action: &'static str) {
        self.source_messages
            .get_or_create(&SourceLabel {
                route: route.to_owned(),
                action,
            })
            .inc();
    }

    /// A route's consumer as its server sees it.
    pub(crate) fn source_consumer(&self, route: &str, pending: u64, redelivered: u64, lag: u64) {
        let label = RouteLabel {
            route: route.to_owned(),
        };
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.source_pending
            .get_or_create(&label)
            .set(gauge(pending));
        self.source_redelivered
            .get_or_create(&label)
            .set(gauge(redelivered));
        self.source_lag.get_or_create(&label).set(gauge(lag));
    }

    pub(crate) fn swept(&self, n: u64) {
        self.swept.inc_by(n);
    }

    /// A checkpoint published (its heads read at `time`), or not.
    pub(crate) fn checkpoint(&self, time: Option<jiff::Timestamp>) {
        match time {
            Some(time) => {
                self.checkpoints_published.inc();
                self.checkpoint_time.set(time.as_second());
            }
            None => {
                self.checkpoints_failed.inc();
            }
        }
    }

    /// A retention run that archived `events` and removed `bodies`, or failed.
    pub(crate) fn retained(&self, events: u64, bodies: u64, ok: bool) {
        self.archived_events.inc_by(events);
        self.forgotten_bodies.inc_by(bodies);
        if !ok {
            self.retention_failed.inc();
        }
    }
}

/// A route's counts since the host started, as the console reads them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RouteCounts {
    /// Messages that arrived.
    pub(crate) received: u64,
    /// Messages translated and committed.
    pub(crate) translated: u64,
    /// Messages refused: by the plugin (dead-lettered), at the door, or by a full bulkhead.
    pub(crate) refused: u64,
    /// Its ingests' latency buckets (filled by the reader that has the route).
    pub(crate) latency: [u64; BUCKETS],
}

/// The outbox as the relay last measured it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct OutboxGauges {
    /// Events with a sink to go.
    pub(crate) depth: i64,
    /// Seconds since the oldest of them was committed.
    pub(crate) oldest_age_secs: i64,
    /// Entries in the dead letter channel.
    pub(crate) dead_letters: i64,
}

impl Metrics {
    /// `route`'s counts: read without adding a series for a route that has none.
    pub(crate) fn route_counts(&self, route: &str) -> RouteCounts {
        let label = route_label(route);
        let count =
            |family: &Family<RouteLabel, Counter>| family.get(&label).map_or(0, |c| c.get());
        RouteCounts {
            received: count(&self.received),
            translated: count(&self.translated),
            refused: count(&self.rejected) + count(&self.door_refused) + count(&self.busy),
            latency: [0; BUCKETS],
        }
    }

    /// The deliveries `sink` waits for, as the relay last measured them.
    pub(crate) fn sink_pending(&self, sink: &str) -> i64 {
        self.sink_pending
            .get(&sink_label(sink))
            .map_or(0, |gauge| gauge.get())
    }

    /// The outbox's gauges.
    pub(crate) fn outbox(&self) -> OutboxGauges {
        OutboxGauges {
            depth: self.outbox_depth.get(),
            oldest_age_secs: self.outbox_oldest_age.get(),
            dead_letters: self.dlq_size.get(),
        }
    }
}

fn route_label(route: &str) -> RouteLabel {
    RouteLabel {
        route: route.to_owned(),
    }
}

fn sink_label(sink: &str) -> SinkLabel {
    SinkLabel {
        sink: sink.to_owned(),
    }
}
