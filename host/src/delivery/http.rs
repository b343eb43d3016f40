//! The webhook sink: one POST per event, CloudEvents binary mode (the event's attributes in
//! `ce-*` headers, its data as the body).

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use ::http::{HeaderName, HeaderValue};

use super::{DeliveryError, source};
use crate::config::{HttpSink, SinkAuth};
use crate::storage::OutboxEvent;
use crate::webhooks::Signer;

/// An HTTP endpoint that takes events.
pub(crate) struct Webhook {
    url: ::http::Uri,
    timeout: Duration,
    signer: Option<Signer>,
    /// Sent with every delivery: `Authorization` and the sink's own headers, marked
    /// sensitive (never shown by `Debug`, and kept out of HTTP/2 header compression).
    credentials: Vec<(HeaderName, HeaderValue)>,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    pub(super) fn new(sink: &HttpSink) -> Result<Self, String> {
        let HttpSink {
            url,
            timeout,
            auth,
            headers,
            ca_file,
            signing_secret,
        } = sink;
        let mut credentials = Vec::new();
        let sensitive = |value: String| {
            let mut value = HeaderValue::from_str(&value)
                .map_err(|_| "a credential is not a header value".to_owned())?;
            value.set_sensitive(true);
            Ok::<_, String>(value)
        };
        match auth {
            None => {}
            Some(SinkAuth::Bearer(token)) => credentials.push((
                ::http::header::AUTHORIZATION,
                sensitive(format!("Bearer {}", token.expose()))?,
            )),
            Some(SinkAuth::Basic { user, password }) => {
                use base64::Engine as _;
                let pair = format!("{user}:{}", password.expose());
                let encoded = base64::engine::general_purpose::STANDARD.encode(pair);
                credentials.push((
                    ::http::header::AUTHORIZATION,
                    sensitive(format!("Basic {encoded}"))?,
                ));
            }
        }
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("`{name}` is not a header name"))?;
            credentials.push((name, sensitive(value.expose().to_owned())?));
        }
        let connector = crate::tls::connector(ca_file.as_deref()).map_err(|e| e.to_string())?;
        Ok(Self {
            url: url
                .expose()
                .parse()
                .map_err(|e| format!("`{}` is not a URL: {e}", url.redacted()))?,
            timeout: *timeout,
            signer: signing_secret.as_ref().map(Signer::new).transpose()?,
            credentials,
            client: Client::builder(TokioExecutor::new()).build(connector),
        })
    }

    pub(super) async fn publish(&self, event: &OutboxEvent) -> Result<(), DeliveryError> {
        // The send span's context (or the stored one), as the W3C header and the CloudEvents
        // distributed tracing extension.
        let trace = crate::trace::outgoing(
            &tracing::Span::current(),
            &event.traceparent,
            event.tracestate.as_deref(),
        );
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
            .header("traceparent", &trace.traceparent)
            .header("ce-traceparent", &trace.traceparent);
        if let Some(state) = &trace.tracestate {
            request = request
                .header("tracestate", state)
                .header("ce-tracestate", state);
        }
        if let Some(producer) = &event.producer {
            request = request
                .header("ce-plugin", attribute(&producer.label()))
                .header("ce-pluginsha256", attribute(&producer.sha256));
        }
        for (name, value) in &self.credentials {
            request = request.header(name, value);
        }
        if let Some(signer) = &self.signer {
            let now = jiff::Timestamp::now().as_second();
            for (name, value) in signer.headers(&event.id, now, event.data.as_bytes()) {
                request = request.header(name, value);
            }
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
