//! Where events go: an HTTP webhook (CloudEvents binary mode, `delivery/http.rs`) or a NATS
//! JetStream subject (CloudEvents structured mode, `delivery/nats.rs`). Every delivery carries
//! the event id as its deduplication key (`Idempotency-Key`, `Nats-Msg-Id`) and the message's
//! `traceparent`. A delivery succeeds only on a positive acknowledgement: a 2xx, or a
//! JetStream PubAck; anything else is a [`DeliveryError`] saying which way it failed, so that
//! retries (and breakers) can tell a timeout from a refusal.

mod http;
mod nats;

use std::time::Duration;

use crate::config::SinkConfig;
use crate::storage::OutboxEvent;

/// The CloudEvents `source` of events from a route; `/dragoman` for the host's own (no
/// route: its checkpoints).
pub(crate) fn source(route: &str) -> String {
    if route.is_empty() {
        "/dragoman".into()
    } else {
        format!("/dragoman/routes/{route}")
    }
}

/// Why a sink did not acknowledge an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DeliveryError {
    /// No answer within the sink's timeout.
    #[error("no answer within {} ms", .after.as_millis())]
    Timeout {
        /// The timeout.
        after: Duration,
    },
    /// The sink could not be reached: connection refused, reset, DNS, TLS.
    #[error("{0}")]
    Connect(String),
    /// The webhook answered with a status other than 2xx.
    #[error("the webhook answered {status}")]
    Status {
        /// The status it answered.
        status: ::http::StatusCode,
        /// Its `Retry-After`, when it sent one in seconds.
        retry_after: Option<Duration>,
    },
    /// The broker took the connection but refused the event or gave no acknowledgement.
    #[error("{0}")]
    Refused(String),
    /// The event cannot be put into a request at all: retrying will not help.
    #[error("{0}")]
    Unencodable(String),
}

/// A sink the host is itself: a vendor that takes the commands queued for it while its
/// circuit was open.
pub(crate) trait Deliver: Send + Sync + std::fmt::Debug {
    /// Delivers one event.
    fn deliver<'a>(
        &'a self,
        event: &'a OutboxEvent,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), DeliveryError>> + Send + 'a>>;
}

/// A configured sink.
#[derive(Debug)]
pub(crate) enum Sink {
    Http(http::Webhook),
    Nats(nats::JetStream),
    Host(std::sync::Arc<dyn Deliver>),
}

impl Sink {
    /// The sink `config` describes; nothing is connected yet.
    ///
    /// # Errors
    ///
    /// A sentence naming what is wrong with the config.
    pub(crate) fn new(config: &SinkConfig) -> Result<Self, String> {
        Ok(match config {
            SinkConfig::Http(sink) => Self::Http(http::Webhook::new(sink)?),
            SinkConfig::Nats {
                url,
                stream,
                subject,
            } => Self::Nats(nats::JetStream::new(url, stream, subject)),
        })
    }

    /// The messaging system it delivers to, as the OpenTelemetry conventions name it.
    pub(crate) fn system(&self) -> &'static str {
        match self {
            Self::Http(_) => "http",
            Self::Nats(_) => "nats",
            Self::Host(_) => "dragoman",
        }
    }

    /// Where it delivers: a NATS sink's subject; else the sink's name.
    pub(crate) fn destination<'a>(&'a self, name: &'a str) -> &'a str {
        match self {
            Self::Nats(stream) => stream.subject(),
            _ => name,
        }
    }

    /// Delivers one event.
    ///
    /// # Errors
    ///
    /// Why it was not acknowledged.
    pub(crate) async fn publish(&self, event: &OutboxEvent) -> Result<(), DeliveryError> {
        match self {
            Self::Http(webhook) => webhook.publish(event).await,
            Self::Nats(stream) => stream.publish(event).await,
            Self::Host(host) => host.deliver(event).await,
        }
    }
}
