//! A route's NATS JetStream source: a durable pull consumer with explicit acks, bound at
//! start (created with the route's settings when absent; an existing one's settings checked,
//! and refused when they would break a guarantee), then fetched from in batches while the
//! route's sinks can take events.
//!
//! Each message is ingested as an HTTP one is, up to two batches at once, and
//! answered as `verdict.rs` says once its outcome is durable. The consumer has no delivery
//! limit of its own: the host counts deliveries and dead-letters a message at the source's
//! `max_deliver`, so a message whose last delivery finds the store down is delivered again
//! rather than dropped by the server without a trace.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, AckKind};
use futures_util::StreamExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::verdict::{self, Action, Delivery};
use super::{Source, State};
use crate::config::JetStreamSource;
use crate::outcome::{Ingested, Refusal};
use crate::pipeline::{Incoming, Pipeline};
use crate::telemetry::Metrics;

/// The most headers of a message kept for the pipeline to choose from.
const MAX_HEADERS: usize = 100;

/// How long one fetch waits for messages when the stream has none.
const FETCH_WAIT: Duration = Duration::from_secs(1);

/// How often the consumer's counts are read from the server for `/metrics`.
const REFRESH: Duration = Duration::from_secs(2);

/// How long a source that could not bind waits before it tries again, at most.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(5);

/// Why a source cannot take messages now.
#[derive(Debug, thiserror::Error)]
enum SourceError {
    #[error("cannot connect to {url}: {error}")]
    Connect { url: String, error: String },
    #[error("cannot open stream {stream}: {error}")]
    Stream { stream: String, error: String },
    #[error("consumer {durable}: {error}")]
    Consumer { durable: String, error: String },
    #[error("fetching failed: {0}")]
    Fetch(String),
}

/// One route's consumer.
pub(super) struct Consumer {
    pub(super) source: Arc<Source>,
    pub(super) config: JetStreamSource,
    pub(super) pipeline: Pipeline,
    pub(super) metrics: Arc<Metrics>,
}

impl Consumer {
    /// Binds and consumes until `cancel`, binding again after a failure.
    pub(super) async fn run(mut self, cancel: CancellationToken) {
        let mut wait = Duration::from_millis(200);
        while !cancel.is_cancelled() {
            let failed = match self.bind().await {
                Ok((client, consumer)) => {
                    wait = Duration::from_millis(200);
                    let consumed = self.consume(&consumer, &cancel).await;
                    // The acks of what was in hand leave before the connection does.
                    if let Err(e) = client.flush().await {
                        tracing::warn!(route = %self.source.route, error = %e, "flushing the acks failed; the server delivers those messages again");
                    }
                    consumed.err()
                }
                Err(e) => Some(e),
            };
            let Some(error) = failed else { break };
            self.source.set_state(State::Error(error.to_string()));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = cancel.cancelled() => {}
            }
            wait = (wait * 2).min(MAX_RETRY_WAIT);
        }
        self.source.set_state(State::Stopped);
    }

    /// Connects, opens the stream (created when absent) and binds the durable consumer.
    async fn bind(&mut self) -> Result<(async_nats::Client, PullConsumer), SourceError> {
        let config = &self.config;
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(&config.url)
            .await
            .map_err(|e| SourceError::Connect {
                url: config.url.clone(),
                error: e.to_string(),
            })?;
        let context = jetstream::new(client.clone());
        let stream = context
            .get_or_create_stream(jetstream::stream::Config {
                name: config.stream.clone(),
                subjects: vec![config.subject.clone()],
                ..Default::default()
            })
            .await
            .map_err(|e| SourceError::Stream {
                stream: config.stream.clone(),
                error: e.to_string(),
            })?;
        let consumer_error = |e: &dyn std::fmt::Display| SourceError::Consumer {
            durable: config.durable.clone(),
            error: e.to_string(),
        };
        let consumer = match stream.consumer_info(&config.durable).await {
            Ok(info) => {
                let max_deliver =
                    check_existing(&info.config, config).map_err(|e| consumer_error(&e))?;
                let consumer: PullConsumer = stream
                    .get_consumer(&config.durable)
                    .await
                    .map_err(|e| consumer_error(&e))?;
                self.config.max_deliver = max_deliver;
                consumer
            }
            Err(_) => stream
                .create_consumer(pull::Config {
                    durable_name: Some(config.durable.clone()),
                    filter_subject: config.subject.clone(),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: config.ack_wait,
                    max_deliver: -1,
                    max_ack_pending: config.max_ack_pending,
                    deliver_policy: DeliverPolicy::All,
                    ..Default::default()
                })
                .await
                .map_err(|e| consumer_error(&e))?,
        };
        tracing::info!(
            route = %self.source.route,
            stream = %self.config.stream,
            durable = %self.config.durable,
            "source bound"
        );
        Ok((client, consumer))
    }

    /// Fetches while the route's sinks can take events, until `cancel`; then finishes what
    /// it holds.
    async fn consume(
        &self,
        consumer: &PullConsumer,
        cancel: &CancellationToken,
    ) -> Result<(), SourceError> {
        // Two batches in hand: the next is fetched while the last is still being committed,
        // so the pipeline never waits on a fetch's round trip.
        let permits = Arc::new(Semaphore::new(self.config.in_hand()));
        let mut in_hand = tokio::task::JoinSet::new();
        let mut refreshed: Option<Instant> = None;
        let result = loop {
            while in_hand.try_join_next().is_some() {}
            if cancel.is_cancelled() {
                break Ok(());
            }
            if refreshed.is_none_or(|at| at.elapsed() >= REFRESH) {
                self.refresh(consumer).await;
                refreshed = Some(Instant::now());
            }
            // Every sink refused by its breaker: nothing is fetched, so no message spends a
            // delivery while the events could not leave anyway.
            if let Some(held) = self.source.held() {
                self.source.set_state(State::PausedByBreaker);
                tokio::select! {
                    () = tokio::time::sleep(held.min(Duration::from_millis(250))) => {}
                    () = cancel.cancelled() => {}
                }
                continue;
            }
            self.source.set_state(State::Consuming);
            // Fetched a batch at a time: one request per message would cost the server more
            // than the messages.
            let free = permits.available_permits();
            if free < self.config.batch {
                let batch = u32::try_from(self.config.batch).unwrap_or(u32::MAX);
                tokio::select! {
                    permit = permits.clone().acquire_many_owned(batch) => drop(permit),
                    () = cancel.cancelled() => {}
                }
                continue;
            }
            let batch = consumer
                .batch()
                .max_messages(free)
                .expires(FETCH_WAIT)
                .messages()
                .await;
            let mut batch = match batch {
                Ok(batch) => batch,
                Err(e) => break Err(SourceError::Fetch(e.to_string())),
            };
            // A batch ends within FETCH_WAIT: what it brings is taken in hand, even at shutdown.
            while let Some(message) = batch.next().await {
                match message {
                    Ok(message) => {
                        let Ok(permit) = permits.clone().try_acquire_owned() else {
                            // More than asked for: the server delivers it again after ack_wait.
                            continue;
                        };
                        in_hand.spawn(self.handler().handle(message, permit));
                    }
                    Err(e) => {
                        tracing::debug!(route = %self.source.route, error = %e, "a fetch ended early");
                        break;
                    }
                }
            }
        };
        while let Some(done) = in_hand.join_next().await {
            if let Err(e) = done {
                tracing::error!(route = %self.source.route, error = %e, "a message task failed");
            }
        }
        result
    }

    /// The consumer's counts, for `/metrics`.
    async fn refresh(&self, consumer: &PullConsumer) {
        match consumer.get_info().await {
            Ok(info) => self.metrics.source_consumer(
                &self.source.route,
                info.num_ack_pending as u64,
                info.num_redelivered as u64,
                info.num_pending,
            ),
            Err(e) => {
                tracing::debug!(route = %self.source.route, error = %e, "reading the consumer's counts failed")
            }
        }
    }

    fn handler(&self) -> Handler {
        Handler {
            source: self.source.clone(),
            pipeline: self.pipeline.clone(),
            metrics: self.metrics.clone(),
            max_deliver: self.config.max_deliver,
        }
    }
}

/// Checks an existing consumer's settings against the route's: refused when they would
/// break a guarantee (a push consumer, acks that are not explicit, another subject); reported
/// when they only differ. Answers the delivery count at which the host gives up: the
/// route's, or the consumer's own limit when lower (the server then stops by itself).
fn check_existing(
    existing: &jetstream::consumer::Config,
    wanted: &JetStreamSource,
) -> Result<u32, String> {
    if existing.deliver_subject.is_some() {
        return Err("it is a push consumer; a source takes a pull consumer".into());
    }
    if existing.ack_policy != AckPolicy::Explicit {
        return Err(format!(
            "its ack policy is {:?}; a source acknowledges each message after its commit, \
             which takes `explicit`",
            existing.ack_policy
        ));
    }
    let filters = (!existing.filter_subject.is_empty())
        .then_some(&existing.filter_subject)
        .into_iter()
        .chain(&existing.filter_subjects)
        .collect::<Vec<_>>();
    if filters != [&wanted.subject] {
        return Err(format!(
            "it filters {filters:?}, not `{}`; give the source another durable name",
            wanted.subject
        ));
    }
    if existing.ack_wait != wanted.ack_wait || existing.max_ack_pending != wanted.max_ack_pending {
        tracing::info!(
            durable = %wanted.durable,
            ack_wait = ?existing.ack_wait,
            max_ack_pending = existing.max_ack_pending,
            "the existing consumer keeps its own ack_wait and max_ack_pending"
        );
    }
    match u32::try_from(existing.max_deliver) {
        Ok(limit) if limit > 0 && limit <= wanted.max_deliver => {
            tracing::warn!(
                durable = %wanted.durable,
                limit,
                "the existing consumer stops delivering a message after {limit} deliveries; \
                 the host dead-letters at that count instead of max_deliver, and a message \
                 whose last delivery finds the store down is lost to the consumer"
            );
            Ok(limit)
        }
        _ => Ok(wanted.max_deliver),
    }
}

/// What one message needs.
struct Handler {
    source: Arc<Source>,
    pipeline: Pipeline,
    metrics: Arc<Metrics>,
    max_deliver: u32,
}

impl Handler {
    /// Ingests `message` and tells the server what became of it, once that is durable.
    async fn handle(self, message: jetstream::Message, _permit: OwnedSemaphorePermit) {
        let route = &self.source.route;
        self.metrics.source(route, "fetched");
        let (delivered, sequence) = message.info().map_or((1, 0), |info| {
            let delivered = u32::try_from(info.delivered).unwrap_or(u32::MAX).max(1);
            (delivered, info.stream_sequence)
        });
        let delivery = Delivery {
            delivered,
            sequence,
            max_deliver: self.max_deliver,
            backoff: self.source.retry.backoff(delivered),
        };
        let action = match self.source.held() {
            Some(held) => Action::Nak(verdict::delay(held)),
            None => {
                let (incoming, refused) = to_incoming(&message, self.source.max_body);
                let outcome = match refused {
                    Some(refusal) => Ingested::Refused(refusal),
                    None => self.pipeline.ingest(route, incoming).await,
                };
                match verdict::settle(&outcome, delivery) {
                    Action::GiveUp(failure) => {
                        tracing::warn!(route = %route, sequence, delivered, code = %failure.code, "the host dead-letters a message from its source");
                        let (incoming, _) = to_incoming(&message, self.source.max_body);
                        let outcome = self
                            .pipeline
                            .give_up(route, incoming, failure.failure())
                            .await;
                        verdict::after_giving_up(&outcome, delivery)
                    }
                    action => action,
                }
            }
        };
        let (kind, counted) = match action {
            Action::Ack => (AckKind::Ack, "acked"),
            Action::Term => (AckKind::Term, "termed"),
            Action::Nak(delay) => (AckKind::Nak(Some(delay)), "naked"),
            Action::GiveUp(_) => (AckKind::Nak(Some(delivery.backoff)), "naked"),
        };
        match message.ack_with(kind).await {
            Ok(()) => self.metrics.source(route, counted),
            Err(e) => {
                tracing::warn!(route = %route, sequence, error = %e, "the answer to the server was not sent; it delivers the message again");
            }
        }
    }
}

/// A message as the pipeline takes it: its headers (names in lower case, in order, at most
/// [`MAX_HEADERS`]), its content type, `Nats-Msg-Id` as the idempotency key and
/// `traceparent` and `tracestate`, each found whatever its case; and what the door refuses before the
/// pipeline (a key that is not one, a body over the host's limit).
fn to_incoming(message: &async_nats::Message, max_body: usize) -> (Incoming, Option<Refusal>) {
    let mut incoming = Incoming::default();
    let mut refused = None;
    let mut headers: Vec<(String, String)> = message
        .headers
        .iter()
        .flat_map(|map| map.iter())
        .flat_map(|(name, values)| {
            values.iter().map(move |value| {
                (
                    name.to_string().to_ascii_lowercase(),
                    value.as_str().to_owned(),
                )
            })
        })
        .collect();
    headers.sort();
    headers.truncate(MAX_HEADERS);
    for (name, value) in &headers {
        match name.as_str() {
            "content-type" => incoming.content_type = Some(value.clone()),
            "traceparent" => incoming.traceparent = Some(value.clone()),
            "tracestate" => incoming.tracestate = Some(value.clone()),
            "nats-msg-id" => match crate::pipeline::check_key(value.as_bytes()) {
                Ok(key) => incoming.idempotency_key = Some(key),
                Err(refusal) => refused = Some(refusal),
            },
            _ => {}
        }
    }
    incoming.headers = headers;
    if message.payload.len() > max_body {
        refused = Some(Refusal::TooLarge { limit: max_body });
    }
    incoming.body = message.payload.to_vec();
    (incoming, refused)
}
