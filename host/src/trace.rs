//! The W3C trace context of a message: taken from its caller (`traceparent`, `tracestate`),
//! continued by the host's spans, stored with each outbox event and sent on every delivery.
//!
//! With the `otel` feature and an OpenTelemetry layer in the process's subscriber (the binary
//! installs one when an OTLP endpoint is set), the host's spans join the caller's trace, and
//! the context stored and sent on is that of the host's own span. Otherwise it is continued
//! by hand: the caller's trace id and sampled flag, a new span id; a message with no valid
//! context starts a trace whose id is the message id. The library installs no subscriber.

use tracing::Span;

use crate::storage::OutboxEvent;

/// A `traceparent` of version 00, in lower-case hex, with a trace id that is not all zeros.
fn valid(traceparent: &str) -> bool {
    let parts: Vec<&str> = traceparent.split('-').collect();
    parts.len() == 4
        && parts[0] == "00"
        && parts[1].len() == 32
        && parts[2].len() == 16
        && parts[3].len() == 2
        && parts.iter().all(|p| {
            p.bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        })
        && parts[1] != "00000000000000000000000000000000"
        && parts[2] != "0000000000000000"
}

/// A message's trace context as the host carries it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TraceContext {
    /// `00-TRACE-SPAN-FLAGS`.
    pub(crate) traceparent: String,
    /// The vendors' entries, passed on as they came.
    pub(crate) tracestate: Option<String>,
}

impl TraceContext {
    /// The context `event` was stored with.
    pub(crate) fn of(event: &OutboxEvent) -> Self {
        Self {
            traceparent: event.traceparent.clone(),
            tracestate: event.tracestate.clone(),
        }
    }
}

/// Makes `span` a child of the caller's context, when it gave a valid one.
pub(crate) fn continue_caller(span: &Span, traceparent: Option<&str>, tracestate: Option<&str>) {
    #[cfg(feature = "otel")]
    if let Some(traceparent) = traceparent.filter(|t| valid(t)) {
        otel::set_parent(span, traceparent, tracestate);
    }
    #[cfg(not(feature = "otel"))]
    let _ = (span, traceparent, tracestate);
}

/// The context a message goes on with from `span` (its door): the span's own when it is
/// traced; else the caller's trace id and flags with a new span id; else a new trace whose id
/// is the message id.
pub(crate) fn carried(
    span: &Span,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
    message_id: uuid::Uuid,
) -> TraceContext {
    #[cfg(feature = "otel")]
    if let Some(context) = otel::context_of(span) {
        return context;
    }
    #[cfg(not(feature = "otel"))]
    let _ = span;
    let id: u64 = rand::random::<u64>() | 1;
    match traceparent.filter(|t| valid(t)) {
        Some(t) => TraceContext {
            traceparent: format!("00-{}-{id:016x}-{}", &t[3..35], &t[53..55]),
            tracestate: tracestate.map(str::to_owned),
        },
        None => TraceContext {
            traceparent: format!("00-{}-{id:016x}-01", message_id.simple()),
            tracestate: None,
        },
    }
}

/// Makes `span` (a delivery's or a vendor call's) a child of the context it goes on with (as
/// stored with its event: `traceparent`, `tracestate`), and links it there: the messaging
/// conventions' link from a send to the message that made it.
pub(crate) fn follow(span: &Span, traceparent: &str, tracestate: Option<&str>) {
    #[cfg(feature = "otel")]
    if valid(traceparent) {
        otel::follow(span, traceparent, tracestate);
    }
    #[cfg(not(feature = "otel"))]
    let _ = (span, traceparent, tracestate);
}

/// The context to send from within `span`: the span's own when it is traced, else the one
/// given (`traceparent`, `tracestate`).
pub(crate) fn outgoing(span: &Span, traceparent: &str, tracestate: Option<&str>) -> TraceContext {
    #[cfg(feature = "otel")]
    if let Some(context) = otel::context_of(span) {
        return context;
    }
    #[cfg(not(feature = "otel"))]
    let _ = span;
    TraceContext {
        traceparent: traceparent.to_owned(),
        tracestate: tracestate.map(str::to_owned),
    }
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::propagation::{Extractor, TextMapPropagator as _};
    use opentelemetry::trace::TraceContextExt as _;
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt as _;

    use super::TraceContext;

    /// The two headers of a context, for the propagator to read.
    struct Carrier<'a> {
        traceparent: &'a str,
        tracestate: Option<&'a str>,
    }

    impl Extractor for Carrier<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            match key {
                "traceparent" => Some(self.traceparent),
                "tracestate" => self.tracestate,
                _ => None,
            }
        }

        fn keys(&self) -> Vec<&str> {
            vec!["traceparent", "tracestate"]
        }
    }

    fn extract(traceparent: &str, tracestate: Option<&str>) -> opentelemetry::Context {
        TraceContextPropagator::new().extract(&Carrier {
            traceparent,
            tracestate,
        })
    }

    pub(super) fn set_parent(span: &Span, traceparent: &str, tracestate: Option<&str>) {
        // An error says there is no OpenTelemetry layer: nothing to join.
        let _ = span.set_parent(extract(traceparent, tracestate));
    }

    /// The context as the span's parent and as its link, read once.
    pub(super) fn follow(span: &Span, traceparent: &str, tracestate: Option<&str>) {
        let context = extract(traceparent, tracestate);
        let linked = context.span().span_context().clone();
        // An error says there is no OpenTelemetry layer: nothing to join or link.
        if span.set_parent(context).is_ok() && linked.is_valid() {
            span.add_link(linked);
        }
    }

    /// The span's own context, when an OpenTelemetry layer traces it.
    pub(super) fn context_of(span: &Span) -> Option<TraceContext> {
        if span.is_disabled() {
            return None;
        }
        let context = span.context();
        let span = context.span();
        let own = span.span_context();
        if !own.is_valid() {
            return None;
        }
        let state = own.trace_state().header();
        Some(TraceContext {
            traceparent: format!(
                "00-{}-{}-{:02x}",
                own.trace_id(),
                own.span_id(),
                own.trace_flags().to_u8()
            ),
            tracestate: (!state.is_empty()).then_some(state),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn by_hand_the_callers_trace_and_flags_go_on_with_a_new_span() {
        let id = uuid::Uuid::now_v7();
        let given = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        let context = carried(&Span::none(), Some(given), Some("v=1"), id);
        assert!(
            context
                .traceparent
                .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-")
        );
        assert!(context.traceparent.ends_with("-00"), "{context:?}");
        assert_ne!(&context.traceparent[36..52], "00f067aa0ba902b7");
        assert_eq!(context.tracestate.as_deref(), Some("v=1"));

        for bad in [
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "garbage",
        ] {
            let context = carried(&Span::none(), Some(bad), Some("v=1"), id);
            assert_eq!(
                &context.traceparent[3..35],
                id.simple().to_string(),
                "{bad}"
            );
            assert!(context.traceparent.ends_with("-01"));
            assert_eq!(context.tracestate, None);
        }
    }
}
