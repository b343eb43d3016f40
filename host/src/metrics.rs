//! The Prometheus metrics: what the host counts, rendered as text for `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Labels naming a route.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabel {
    pub(crate) route: String,
}

/// Labels naming a sink.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SinkLabel {
    pub(crate) sink: String,
}

/// Labels naming a pipeline stage.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct StageLabel {
    pub(crate) stage: &'static str,
}

/// Every metric of the host.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) received: Family<RouteLabel, Counter>,
    pub(crate) duplicates: Family<RouteLabel, Counter>,
    pub(crate) translated: Family<RouteLabel, Counter>,
    pub(crate) rejected: Family<RouteLabel, Counter>,
    pub(crate) published: Family<SinkLabel, Counter>,
    pub(crate) retries: Family<SinkLabel, Counter>,
    pub(crate) dead_lettered: Family<SinkLabel, Counter>,
    pub(crate) dlq_size: Gauge,
    pub(crate) outbox_depth: Gauge,
    pub(crate) outbox_oldest_age: Gauge,
    pub(crate) latency: Family<StageLabel, Histogram>,
}

impl Default for Metrics {
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
            published: Family::default(),
            retries: Family::default(),
            dead_lettered: Family::default(),
            dlq_size: Gauge::default(),
            outbox_depth: Gauge::default(),
            outbox_oldest_age: Gauge::default(),
            latency,
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
            "stage_latency_seconds",
            "Latency per pipeline stage",
            metrics.latency.clone(),
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

    pub(crate) fn observe(&self, stage: &'static str, since: std::time::Instant) {
        self.latency
            .get_or_create(&StageLabel { stage })
            .observe(since.elapsed().as_secs_f64());
    }
}
