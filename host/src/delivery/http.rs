//! The webhook sink: one POST per event, CloudEvents binary mode (the event's attributes in
//! `ce-*` headers, its data as the body).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::{DeliveryError, source};
use crate::storage::OutboxEvent;

/// An HTTP endpoint that takes events.
#[derive(Debug)]
pub(crate) struct Webhook {
    url: ::http::Uri,
    timeout: Duration,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Webhook {
    pub(super) fn new(url: &str, timeout: Duration) -> Result<Self, String> {
        Ok(Self {
            url: url
                .parse()
                .map_err(|e| format!("`{url}` is not a URL: {e}"))?,
            timeout,
            client: Client::builder(TokioExecutor::new()).build_http(),
        })
    }

    pub(super) async fn publish(&self, event: &OutboxEvent) -> Result<(), DeliveryError> {
        let mut request = ::http::Request::post(self.url.clone())
            .header("content-type", "application/json")
            .header("ce-specversion", "1.0")
            .header("ce-id", attribute(&event.id))
            .header("ce-source", attribute(&source(&event.route)))
            .header("ce-type", attribute(&event.event_type))
            .header("ce-subject", attribute(&event.subject))
            .header("ce-time", event.time.to_string())
            .header("ce-correlationid", attribute(&event.message_id))
            .header("ce-causationid", attribute(&event.message_id))
            .header("ce-partitionkey", attribute(&event.partition_key))
            .header("idempotency-key", &event.id)
            .header("traceparent", &event.traceparent);
        if let Some(producer) = &event.producer {
            request = request
                .header("ce-plugin", attribute(&producer.label()))
                .header("ce-pluginsha256", attribute(&producer.sha256));
        }
        let request = request
            .body(Full::new(Bytes::from(event.data.clone())))
            .map_err(|e| DeliveryError::Unencodable(format!("cannot build the request: {e}")))?;
        let response = tokio::time::timeout(self.timeout, self.client.request(request))
            .await
            .map_err(|_| DeliveryError::Timeout {
                after: self.timeout,
            })?
            .map_err(|e| DeliveryError::Connect(format!("request failed: {e}")))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(::http::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        // Read the body so the connection can be reused.
        let _ = tokio::time::timeout(self.timeout, response.into_body().collect()).await;
        if status.is_success() {
            Ok(())
        } else {
            Err(DeliveryError::Status {
                status,
                retry_after,
            })
        }
    }
}

/// A CloudEvents attribute value as the HTTP binding carries it in a `ce-*` header: every
/// byte of its UTF-8 outside printable ASCII, and space, `"` and `%`, percent-encoded.
fn attribute(value: &str) -> String {
    let mut encoded = String::with_capacity(value.len());
    for byte in value.bytes() {
        if (0x21..=0x7e).contains(&byte) && byte != b'"' && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests;
