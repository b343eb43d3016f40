//! Where events go: an HTTP webhook (CloudEvents binary mode) or a NATS JetStream subject
//! (CloudEvents structured mode, JSON). Every delivery carries the event id as its
//! deduplication key (`Idempotency-Key`, `Nats-Msg-Id`) and the message's `traceparent`.
//! A delivery succeeds only on a positive acknowledgement: a 2xx, or a JetStream PubAck.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::json;
use tokio::sync::OnceCell;

use crate::config::SinkConfig;
use crate::storage::OutboxEvent;

/// The CloudEvents `source` of events from a route.
pub(crate) fn source(route: &str) -> String {
    format!("/dragoman/routes/{route}")
}

/// A configured sink.
#[derive(Debug)]
pub(crate) enum Sink {
    Http {
        url: http::Uri,
        timeout: Duration,
        client: Client<HttpConnector, Full<Bytes>>,
    },
    Nats {
        url: String,
        stream: String,
        subject: String,
        context: OnceCell<async_nats::jetstream::Context>,
    },
}

impl Sink {
    pub(crate) fn new(config: &SinkConfig) -> Result<Self, String> {
        Ok(match config {
            SinkConfig::Http { url, timeout } => Self::Http {
                url: url
                    .parse()
                    .map_err(|e| format!("`{url}` is not a URL: {e}"))?,
                timeout: *timeout,
                client: Client::builder(TokioExecutor::new()).build_http(),
            },
            SinkConfig::Nats {
                url,
                stream,
                subject,
            } => Self::Nats {
                url: url.clone(),
                stream: stream.clone(),
                subject: subject.clone(),
                context: OnceCell::new(),
            },
        })
    }

    /// Delivers one event; `Err` says why it was not acknowledged.
    pub(crate) async fn publish(&self, event: &OutboxEvent) -> Result<(), String> {
        match self {
            Self::Http {
                url,
                timeout,
                client,
            } => {
                let request = http::Request::post(url.clone())
                    .header("content-type", "application/json")
                    .header("ce-specversion", "1.0")
                    .header("ce-id", &event.id)
                    .header("ce-source", source(&event.route))
                    .header("ce-type", &event.event_type)
                    .header("ce-subject", &event.subject)
                    .header("ce-time", event.time.to_string())
                    .header("ce-correlationid", &event.message_id)
                    .header("ce-causationid", &event.message_id)
                    .header("ce-partitionkey", &event.partition_key)
                    .header("idempotency-key", &event.id)
                    .header("traceparent", &event.traceparent)
                    .body(Full::new(Bytes::from(event.data.clone())))
                    .map_err(|e| format!("cannot build the request: {e}"))?;
                let response = tokio::time::timeout(*timeout, client.request(request))
                    .await
                    .map_err(|_| format!("no answer within {} ms", timeout.as_millis()))?
                    .map_err(|e| format!("request failed: {e}"))?;
                let status = response.status();
                // Read the body so the connection can be reused.
                let _ = tokio::time::timeout(*timeout, response.into_body().collect()).await;
                if status.is_success() {
                    Ok(())
                } else {
                    Err(format!("the webhook answered {status}"))
                }
            }
            Self::Nats {
                url,
                stream,
                subject,
                context,
            } => {
                let context = context
                    .get_or_try_init(|| connect(url, stream, subject))
                    .await?;
                let mut headers = async_nats::HeaderMap::new();
                headers.insert("Nats-Msg-Id", event.id.as_str());
                headers.insert("traceparent", event.traceparent.as_str());
                let data: Box<serde_json::value::RawValue> =
                    serde_json::value::RawValue::from_string(event.data.clone())
                        .map_err(|e| format!("event data is not JSON: {e}"))?;
                let envelope = json!({
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
                let payload =
                    Bytes::from(serde_json::to_vec(&envelope).expect("JSON values serialize"));
                let ack = context
                    .publish_with_headers(subject.clone(), headers, payload)
                    .await
                    .map_err(|e| format!("publish failed: {e}"))?;
                ack.await.map_err(|e| format!("no PubAck: {e}"))?;
                Ok(())
            }
        }
    }
}

async fn connect(
    url: &str,
    stream: &str,
    subject: &str,
) -> Result<async_nats::jetstream::Context, String> {
    let client = async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(2))
        .connect(url)
        .await
        .map_err(|e| format!("cannot connect to {url}: {e}"))?;
    let context = async_nats::jetstream::new(client);
    context
        .get_or_create_stream(async_nats::jetstream::stream::Config {
            name: stream.to_owned(),
            subjects: vec![subject.to_owned()],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot open stream {stream}: {e}"))?;
    Ok(context)
}
