//! The host's checkpoints as external anchors: at an interval, every chain's head read from
//! the store, signed, and published to a sink as a CloudEvent `dragoman.checkpoint.v1` whose data is
//! `{"origin", "time", "chains", "note"}`. A checkpoint that cannot be published is logged
//! and not retried: the next one names every head again.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::checkpoint::{Checkpoint, SignerKey, heads};
use crate::clock::Clock;
use crate::delivery::{DeliveryError, Sink};
use crate::storage::{OutboxEvent, Storage, StorageError};
use crate::telemetry::Metrics;

/// The CloudEvents type of a published checkpoint.
pub(crate) const EVENT_TYPE: &str = "dragoman.checkpoint.v1";

/// Why a checkpoint was not published.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    #[error("the heads could not be read: {0}")]
    Storage(#[from] StorageError),
    #[error("sink {sink} did not take it: {error}")]
    Delivery { sink: String, error: DeliveryError },
}

/// Signs and publishes checkpoints of one store.
#[derive(Debug)]
pub(crate) struct Checkpointer {
    storage: Arc<dyn Storage>,
    key: SignerKey,
    sink_name: String,
    sink: Arc<Sink>,
    interval: Duration,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl Checkpointer {
    pub(crate) fn new(
        storage: Arc<dyn Storage>,
        key: SignerKey,
        (sink_name, sink): (String, Arc<Sink>),
        interval: Duration,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            storage,
            key,
            sink_name,
            sink,
            interval,
            clock,
            metrics,
        }
    }

    /// Publishes a checkpoint every interval until `cancel`.
    pub(crate) async fn run(self: Arc<Self>, cancel: CancellationToken) {
        let mut beat = crate::clock::Beat::new(self.interval).await;
        while beat.next(&cancel).await {
            match self.publish().await {
                Ok(checkpoint) => {
                    self.metrics.checkpoint(Some(checkpoint.time));
                    tracing::info!(
                        chains = checkpoint.heads.len(),
                        time = %checkpoint.time,
                        sink = %self.sink_name,
                        "checkpoint published"
                    );
                }
                Err(e) => {
                    self.metrics.checkpoint(None);
                    tracing::error!(error = %e, "no checkpoint this interval");
                }
            }
        }
    }

    /// Reads every head, signs them and publishes the note.
    ///
    /// # Errors
    ///
    /// When the store cannot be read or the sink does not acknowledge.
    pub(crate) async fn publish(&self) -> Result<Checkpoint, PublishError> {
        let storage = self.storage.clone();
        let heads = tokio::task::spawn_blocking(move || heads(storage.as_ref()))
            .await
            .map_err(|e| StorageError::Backend(format!("the heads' walk failed: {e}")))??;
        let checkpoint = Checkpoint {
            origin: self.key.name().to_owned(),
            time: self.clock.now(),
            heads,
        };
        let note = checkpoint.sign(&self.key);
        let id = uuid::Uuid::now_v7();
        let data = serde_json::json!({
            "origin": checkpoint.origin,
            "time": checkpoint.time,
            "chains": checkpoint.heads.len(),
            "note": note,
        });
        let trace = crate::trace::carried(&tracing::Span::current(), None, None, id);
        let event = OutboxEvent {
            id: id.to_string(),
            message_id: id.to_string(),
            // No route: the CloudEvents source is the host itself, `/dragoman`.
            route: String::new(),
            event_type: EVENT_TYPE.into(),
            subject: checkpoint.origin.clone(),
            partition_key: checkpoint.origin.clone(),
            data: data.to_string(),
            time: checkpoint.time,
            traceparent: trace.traceparent,
            tracestate: None,
            producer: None,
        };
        self.sink
            .publish(&event)
            .await
            .map_err(|error| PublishError::Delivery {
                sink: self.sink_name.clone(),
                error,
            })?;
        Ok(checkpoint)
    }
}
