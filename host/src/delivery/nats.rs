//! The NATS JetStream sink: one publish per event, CloudEvents structured mode (a JSON
//! envelope), acknowledged by the stream's PubAck. The stream is created if it is missing,
//! with a duplicate window that drops a re-publish of the same event id.

use std::time::Duration;

use bytes::Bytes;
use serde_json::json;
use tokio::sync::OnceCell;

use super::{DeliveryError, source};
use crate::storage::OutboxEvent;

/// A JetStream subject that takes events; connected on the first delivery.
#[derive(Debug)]
pub(crate) struct JetStream {
    url: String,
    stream: String,
    subject: String,
    context: OnceCell<async_nats::jetstream::Context>,
}

impl JetStream {
    pub(super) fn new(url: &str, stream: &str, subject: &str) -> Self {
        Self {
            url: url.to_owned(),
            stream: stream.to_owned(),
            subject: subject.to_owned(),
            context: OnceCell::new(),
        }
    }

    pub(super) fn subject(&self) -> &str {
        &self.subject
    }

    pub(super) async fn publish(&self, event: &OutboxEvent) -> Result<(), DeliveryError> {
        let context = self.context.get_or_try_init(|| self.connect()).await?;
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", event.id.as_str());
        // The send span's context (or the stored one): in the headers and the envelope.
        let trace = crate::trace::outgoing(
            &tracing::Span::current(),
            &event.traceparent,
            event.tracestate.as_deref(),
        );
        headers.insert("traceparent", trace.traceparent.as_str());
        if let Some(state) = &trace.tracestate {
            headers.insert("tracestate", state.as_str());
        }
        let data: Box<serde_json::value::RawValue> =
            serde_json::value::RawValue::from_string(event.data.clone())
                .map_err(|e| DeliveryError::Unencodable(format!("event data is not JSON: {e}")))?;
        let mut envelope = json!({
            "specversion": "1.0",
            "id": event.id,
            "source": source(&event.route),
            "type": event.event_type,
            "subject": event.subject,
            "time": event.time.to_string(),
            "datacontenttype": "application/json",
            "correlationid": event.message_id,
            "causationid": event.message_id,
            "partitionkey": event.partition_key,
            "data": data,
        });
        if let Some(envelope) = envelope.as_object_mut() {
            envelope.insert("traceparent".into(), trace.traceparent.clone().into());
            if let Some(state) = &trace.tracestate {
                envelope.insert("tracestate".into(), state.clone().into());
            }
            if let Some(producer) = &event.producer {
                envelope.insert("plugin".into(), producer.label().into());
                envelope.insert("pluginsha256".into(), producer.sha256.clone().into());
            }
        }
        let payload = Bytes::from(serde_json::to_vec(&envelope).expect("JSON values serialize"));
        let ack = context
            .publish_with_headers(self.subject.clone(), headers, payload)
            .await
            .map_err(|e| DeliveryError::Refused(format!("publish failed: {e}")))?;
        ack.await
            .map_err(|e| DeliveryError::Refused(format!("no PubAck: {e}")))?;
        Ok(())
    }

    async fn connect(&self) -> Result<async_nats::jetstream::Context, DeliveryError> {
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(2))
            .connect(&self.url)
            .await
            .map_err(|e| DeliveryError::Connect(format!("cannot connect to {}: {e}", self.url)))?;
        let context = async_nats::jetstream::new(client);
        context
            .get_or_create_stream(async_nats::jetstream::stream::Config {
                name: self.stream.clone(),
                subjects: vec![self.subject.clone()],
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(|e| {
                DeliveryError::Refused(format!("cannot open stream {}: {e}", self.stream))
            })?;
        Ok(context)
    }
}
