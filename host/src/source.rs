//! Sources: doors of routes that take their messages from a broker rather than wait for
//! them over HTTP (`[routes.NAME.source]`). A source's messages go through the same ingest as
//! HTTP ones; what the broker is told follows from the outcome (`source/verdict.rs`), and a
//! route whose every sink's breaker refuses takes nothing from its source until one may
//! take events again.
//!
//! - `verdict.rs`: the outcome of an ingest as an ack, a term, a delayed nak, or a dead
//!   letter the host writes itself; pure functions;
//! - `jetstream.rs`: a NATS JetStream durable pull consumer.

mod jetstream;
mod verdict;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::breaker::Breaker;
use crate::circuits::Circuits;
use crate::config::{Config, RetryPolicy, SourceConfig};
use crate::pipeline::Pipeline;
use crate::telemetry::Metrics;

/// Every route's source, with the state each is in. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources {
    sources: Arc<BTreeMap<String, Arc<Source>>>,
}

/// One route's source.
#[derive(Debug)]
struct Source {
    route: String,
    config: SourceConfig,
    /// The route's delivery retry policy: its backoff spaces redeliveries.
    retry: RetryPolicy,
    /// The route's sinks' breakers.
    breakers: Vec<Arc<Breaker>>,
    /// The largest body the host takes.
    max_body: usize,
    state: Mutex<State>,
}

/// What a source is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum State {
    /// Connecting to its broker and binding its consumer.
    Starting,
    /// Taking messages.
    Consuming,
    /// Taking nothing: every sink of the route is refused by its breaker.
    PausedByBreaker,
    /// It could not reach or bind its broker; it tries again.
    Error(String),
    /// Shut down.
    Stopped,
}

impl Sources {
    /// The sources the config names.
    pub(crate) fn new(config: &Config, circuits: &Circuits) -> Self {
        let sources = config
            .routes
            .iter()
            .filter_map(|(name, route)| {
                let source = route.source.clone()?;
                let breakers = route
                    .sinks
                    .iter()
                    .filter_map(|sink| circuits.get(sink).cloned())
                    .collect();
                Some((
                    name.clone(),
                    Arc::new(Source {
                        route: name.clone(),
                        config: source,
                        retry: route.retry,
                        breakers,
                        max_body: config.max_body,
                        state: Mutex::new(State::Starting),
                    }),
                ))
            })
            .collect();
        Self {
            sources: Arc::new(sources),
        }
    }

    /// Runs every source until `cancel`: then each stops fetching, finishes and acknowledges
    /// what it holds, and returns.
    pub(crate) async fn run(
        &self,
        pipeline: Pipeline,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) {
        let mut running = tokio::task::JoinSet::new();
        for source in self.sources.values() {
            let SourceConfig::JetStream(config) = &source.config;
            let consumer = jetstream::Consumer {
                source: source.clone(),
                config: config.clone(),
                pipeline: pipeline.clone(),
                metrics: metrics.clone(),
            };
            running.spawn(consumer.run(cancel.clone()));
        }
        while let Some(finished) = running.join_next().await {
            if let Err(e) = finished {
                tracing::error!(error = %e, "a source task failed");
            }
        }
    }

    /// A route's source as `GET /v1/routes` shows it: its settings and its state.
    pub(crate) fn describe(&self, route: &str) -> Option<Value> {
        let source = self.sources.get(route)?;
        let SourceConfig::JetStream(config) = &source.config;
        let (state, error) = match source.state() {
            State::Starting => ("starting", None),
            State::Consuming => ("consuming", None),
            State::PausedByBreaker => ("paused_by_breaker", None),
            State::Error(e) => ("error", Some(e)),
            State::Stopped => ("stopped", None),
        };
        Some(json!({
            "type": "jetstream",
            "url": config.url,
            "stream": config.stream,
            "subject": config.subject,
            "durable": config.durable,
            "batch": config.batch,
            "max_ack_pending": config.max_ack_pending,
            "max_deliver": config.max_deliver,
            "ack_wait_secs": config.ack_wait.as_secs(),
            "state": state,
            "error": error,
        }))
    }

    /// Each route's source drawn as a node: `route` → label.
    pub(crate) fn labels(&self) -> BTreeMap<String, String> {
        self.sources
            .iter()
            .map(|(route, source)| {
                let SourceConfig::JetStream(config) = &source.config;
                (
                    route.clone(),
                    format!("JetStream {} ({})", config.stream, config.subject),
                )
            })
            .collect()
    }
}

impl Source {
    fn state(&self) -> State {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn set_state(&self, state: State) {
        let mut current = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if *current != state {
            match &state {
                State::Error(e) => tracing::warn!(route = %self.route, error = %e, "source failed"),
                other => tracing::info!(route = %self.route, state = ?other, "source"),
            }
            *current = state;
        }
    }

    /// How long every sink of the route stays refused, if every one is.
    fn held(&self) -> Option<std::time::Duration> {
        verdict::held_by_breakers(self.breakers.iter().map(|b| b.refusing_for()))
    }
}
