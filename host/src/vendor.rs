//! Calls to a vendor's API: the request a plugin encoded, sent to the vendor's base URL
//! through the vendor's circuit breaker, with the route's timeout and retries.
//!
//! A request is sent again only when that cannot do harm: its method is idempotent (`GET`,
//! `HEAD`, `PUT`, `DELETE`, `OPTIONS`), or the plugin marked it safe to retry with the header
//! [`RETRY_HEADER`]`: safe` (which is not sent), because the vendor deduplicates by the
//! `Idempotency-Key` the host adds: the same on every attempt. Only a failure that says the
//! vendor is unwell is retried (a timeout, a connection error, a 5xx or a 429, honouring its
//! `Retry-After` up to the attempt timeout); every attempt asks the breaker first, and the
//! last answer, whatever its status, goes back to the plugin to decode.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::breaker::{Admission, Breaker, Outcome};
use crate::circuits::Circuits;
use crate::config::{CommandsConfig, VendorConfig};
use crate::plugin::{Header, VendorRequest, VendorResponse};
use crate::trace::TraceContext;

/// The request header by which a plugin marks a non-idempotent request safe to retry.
pub const RETRY_HEADER: &str = "dragoman-retry";

/// The largest vendor answer the host reads.
const MAX_RESPONSE: usize = 8 << 20;

/// Why a vendor call gave no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VendorError {
    /// The vendor's circuit is open: nothing was sent. The next probe may go in
    /// `retry_after` (`None`: forced open by an operator).
    #[error("the vendor's circuit is open")]
    Open {
        /// Until the next probe.
        retry_after: Option<Duration>,
    },
    /// No answer within the attempt timeout.
    #[error("the vendor did not answer within {} ms", .after.as_millis())]
    Timeout {
        /// The timeout.
        after: Duration,
    },
    /// The vendor could not be reached, or dropped the connection.
    #[error("the vendor could not be reached: {0}")]
    Connect(String),
    /// The plugin's request cannot be sent (a bad method, path or header).
    #[error("the plugin's request cannot be sent: {0}")]
    Unsendable(String),
}

/// Every vendor, by name.
#[derive(Debug, Clone, Default)]
pub(crate) struct Vendors {
    vendors: BTreeMap<String, Arc<Vendor>>,
}

impl Vendors {
    /// A client for each configured vendor, with its breaker from `circuits`.
    pub(crate) fn new(
        configs: &BTreeMap<String, VendorConfig>,
        circuits: &Circuits,
    ) -> Result<Self, String> {
        let mut vendors = BTreeMap::new();
        for (name, config) in configs {
            let breaker = circuits
                .get(name)
                .cloned()
                .ok_or_else(|| format!("vendor {name} has no breaker"))?;
            let connector = crate::tls::connector(config.ca_file.as_deref())
                .map_err(|e| format!("vendor {name}: {e}"))?;
            vendors.insert(
                name.clone(),
                Arc::new(Vendor {
                    base_url: config.base_url.clone(),
                    client: Client::builder(TokioExecutor::new()).build(connector),
                    breaker,
                }),
            );
        }
        Ok(Self { vendors })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&Arc<Vendor>> {
        self.vendors.get(name)
    }
}

/// One vendor's API.
pub(crate) struct Vendor {
    base_url: String,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    breaker: Arc<Breaker>,
}

impl std::fmt::Debug for Vendor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vendor")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// Who lets a call go: the vendor's breaker, asked before every attempt, or a caller that
/// holds a permit already (the relay's lane, for a queued command): then one attempt only.
#[derive(Debug)]
pub(crate) enum Gate {
    Breaker,
    Admitted,
}

impl Vendor {
    /// The vendor's breaker.
    pub(crate) fn breaker(&self) -> &Arc<Breaker> {
        &self.breaker
    }

    /// Sends `request` with `key` as its `Idempotency-Key`, retried as the module says.
    ///
    /// # Errors
    ///
    /// [`VendorError`] when no answer came: `Open` only when the first attempt was refused.
    pub(crate) async fn send(
        &self,
        request: &VendorRequest,
        key: &str,
        trace: &TraceContext,
        policy: &CommandsConfig,
        gate: &Gate,
    ) -> Result<VendorResponse, VendorError> {
        let retryable = retryable(request);
        let attempts = match gate {
            Gate::Admitted => 1,
            Gate::Breaker if retryable => policy.attempts,
            Gate::Breaker => 1,
        };
        let mut wait = policy.backoff;
        let mut last = None;
        for attempt in 1..=attempts {
            let permit = match gate {
                Gate::Admitted => None,
                Gate::Breaker => match self.breaker.admit() {
                    Admission::Permitted(permit) => Some(permit),
                    Admission::Refused { retry_after } => {
                        return last.unwrap_or(Err(VendorError::Open { retry_after }));
                    }
                },
            };
            let result = self
                .attempt(request, key, trace, attempt, policy.timeout)
                .await;
            let health = match &result {
                Ok(response) => self.breaker.classify(Some(response.status)),
                Err(VendorError::Unsendable(_)) => Outcome::Ignored,
                Err(_) => self.breaker.classify(None),
            };
            if let Some(permit) = permit {
                permit.record(health);
            }
            let retry_after = result.as_ref().ok().and_then(retry_after);
            last = Some(result);
            if health != Outcome::Failure || attempt == attempts {
                break;
            }
            let pause = match retry_after {
                Some(asked) if asked <= policy.timeout => asked.max(wait),
                Some(_) => break,
                None => wait,
            };
            tracing::debug!(
                attempt,
                pause_ms = pause.as_millis() as u64,
                "retrying a vendor call"
            );
            tokio::time::sleep(pause).await;
            wait = wait.saturating_mul(2);
        }
        last.unwrap_or(Err(VendorError::Open { retry_after: None }))
    }

    async fn attempt(
        &self,
        request: &VendorRequest,
        key: &str,
        trace: &TraceContext,
        attempt: u32,
        timeout: Duration,
    ) -> Result<VendorResponse, VendorError> {
        use tracing::Instrument as _;
        // A span per attempt, a child of the command's trace; the vendor gets its context.
        let span = tracing::info_span!(
            "vendor command",
            otel.kind = "client",
            http.request.method = %request.method,
            url.path = %request.path,
            attempt,
            http.response.status_code = tracing::field::Empty,
        );
        let (traceparent, tracestate) = (&trace.traceparent, trace.tracestate.as_deref());
        crate::trace::follow(&span, traceparent, tracestate);
        let outgoing = crate::trace::outgoing(&span, traceparent, tracestate);
        let built = self.build(request, key, &outgoing)?;
        let started = Instant::now();
        let call = async {
            let response = self
                .client
                .request(built)
                .await
                .map_err(|e| VendorError::Connect(e.to_string()))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_RESPONSE)
                .collect()
                .await
                .map_err(|e| VendorError::Connect(format!("reading the answer: {e}")))?
                .to_bytes();
            Ok(VendorResponse {
                status: parts.status.as_u16(),
                headers: parts
                    .headers
                    .iter()
                    .map(|(name, value)| Header {
                        name: name.as_str().to_owned(),
                        value: String::from_utf8_lossy(value.as_bytes()).into_owned(),
                    })
                    .collect(),
                body: body.to_vec(),
            })
        };
        let result = tokio::time::timeout(timeout, call.instrument(span.clone()))
            .await
            .unwrap_or(Err(VendorError::Timeout { after: timeout }));
        if let Ok(response) = &result {
            span.record("http.response.status_code", response.status);
        }
        tracing::debug!(
            elapsed_ms = started.elapsed().as_millis() as u64,
            ok = result.is_ok(),
            "vendor call"
        );
        result
    }

    fn build(
        &self,
        request: &VendorRequest,
        key: &str,
        trace: &TraceContext,
    ) -> Result<http::Request<Full<Bytes>>, VendorError> {
        let bad = |what: String| VendorError::Unsendable(what);
        let method = http::Method::from_bytes(request.method.as_bytes())
            .map_err(|_| bad(format!("`{}` is not a method", request.method)))?;
        if !request.path.starts_with('/') {
            return Err(bad(format!(
                "the path `{}` does not start with /",
                request.path
            )));
        }
        let uri: http::Uri = format!("{}{}", self.base_url, request.path)
            .parse()
            .map_err(|e| bad(format!("the path `{}`: {e}", request.path)))?;
        let mut builder = http::Request::builder().method(method).uri(uri);
        for header in &request.headers {
            if header.name.eq_ignore_ascii_case(RETRY_HEADER)
                || header.name.eq_ignore_ascii_case("idempotency-key")
                || header.name.eq_ignore_ascii_case("traceparent")
                || header.name.eq_ignore_ascii_case("tracestate")
            {
                continue;
            }
            let name = http::HeaderName::from_bytes(header.name.as_bytes())
                .map_err(|_| bad(format!("`{}` is not a header name", header.name)))?;
            let value = http::HeaderValue::from_str(&header.value).map_err(|_| {
                bad(format!(
                    "the value of `{}` is not a header value",
                    header.name
                ))
            })?;
            builder = builder.header(name, value);
        }
        builder = builder
            .header("idempotency-key", key)
            .header("traceparent", &trace.traceparent);
        if let Some(state) = &trace.tracestate {
            builder = builder.header("tracestate", state);
        }
        builder
            .body(Full::new(Bytes::from(request.body.clone())))
            .map_err(|e| bad(e.to_string()))
    }
}

/// Whether sending `request` twice can do no harm.
fn retryable(request: &VendorRequest) -> bool {
    let idempotent = matches!(
        request.method.as_str(),
        "GET" | "HEAD" | "PUT" | "DELETE" | "OPTIONS"
    );
    idempotent
        || request.headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case(RETRY_HEADER) && h.value.trim().eq_ignore_ascii_case("safe")
        })
}

/// The `Retry-After` of a 429 or 503, in seconds.
pub(crate) fn retry_after(response: &VendorResponse) -> Option<Duration> {
    if response.status != 429 && response.status != 503 {
        return None;
    }
    response
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("retry-after"))
        .and_then(|h| h.value.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}
