//! OpenTelemetry traces, exported over OTLP/HTTP (protobuf) when the standard environment
//! names an endpoint (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, or `OTEL_EXPORTER_OTLP_ENDPOINT`
//! with `/v1/traces` added) and `OTEL_SDK_DISABLED` is not `true`. The rest of the standard
//! variables (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`,
//! `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`…) are read by the SDK. Without an endpoint no
//! exporter, no processor and no layer exist.

use anyhow::{Context, Result};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

/// The exporter's provider: shut down at exit, so that the spans still queued are sent.
pub(crate) struct Traces(SdkTracerProvider);

impl Drop for Traces {
    fn drop(&mut self) {
        if let Err(e) = self.0.shutdown() {
            eprintln!("dragoman: the last spans were not exported: {e}");
        }
    }
}

/// Whether the environment asks for traces.
fn wanted() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") || set("OTEL_EXPORTER_OTLP_ENDPOINT"))
}

/// The layer that turns the host's spans into OpenTelemetry spans, with the provider that
/// exports them; `None` when the environment names no endpoint.
pub(crate) fn layer<S>() -> Result<Option<(impl Layer<S>, Traces)>>
where
    S: Subscriber + for<'span> LookupSpan<'span>,
{
    if !wanted() {
        return Ok(None);
    }
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .build()
        .context("cannot set up the OTLP trace exporter")?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none() {
        resource = resource.with_service_name("dragoman");
    }
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource.build())
        .build();
    let tracer = provider.tracer("dragoman");
    let layer = tracing_opentelemetry::layer().with_tracer(tracer);
    Ok(Some((layer, Traces(provider))))
}
