//! An OTLP/HTTP trace receiver in the test process: it takes `POST /v1/traces` (protobuf)
//! on a loopback port, keeps every span it is sent, and answers `200`.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;

/// A span as received.
#[derive(Debug, Clone)]
pub struct Span {
    /// The trace id, in hex.
    pub trace_id: String,
    /// The span id, in hex.
    pub span_id: String,
    /// The parent's span id, in hex (empty for a root).
    pub parent_span_id: String,
    /// The span's name.
    pub name: String,
    /// Its kind (`SpanKind` as a number: 2 server, 3 client, 4 producer, 5 consumer).
    pub kind: i32,
    /// Its attributes, each value as text.
    pub attributes: BTreeMap<String, String>,
    /// The spans it links to: (trace id, span id), in hex.
    pub links: Vec<(String, String)>,
    /// The resource's `service.name`.
    pub service: String,
}

/// The receiver; it stops with the test process.
#[derive(Debug)]
pub struct Collector {
    port: u16,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Collector {
    /// Listens on a free loopback port.
    ///
    /// # Panics
    ///
    /// When no port can be bound.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let port = listener.local_addr().expect("an address").port();
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let kept = spans.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(Result::ok) {
                let kept = kept.clone();
                std::thread::spawn(move || serve(stream, &kept));
            }
        });
        Self { port, spans }
    }

    /// The base endpoint, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits up to 20 s until a span of each of `names` has been received.
    ///
    /// # Panics
    ///
    /// When one has not come by then.
    pub fn wait_for(&self, names: &[&str]) {
        crate::net::wait_until(
            std::time::Duration::from_secs(20),
            &format!("spans {names:?}"),
            || {
                let spans = self.spans();
                names
                    .iter()
                    .all(|name| spans.iter().any(|s| s.name == *name))
            },
        );
    }

    /// Every span received so far.
    ///
    /// # Panics
    ///
    /// When a receiving thread panicked.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().expect("not poisoned").clone()
    }
}

/// Serves the requests of one connection until it closes.
fn serve(stream: TcpStream, kept: &Mutex<Vec<Span>>) {
    let mut writer = stream.try_clone().expect("the stream clones");
    let mut reader = BufReader::new(stream);
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        // The request line, then the headers.
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(request) = ExportTraceServiceRequest::decode(body.as_slice()) {
            kept.lock().expect("not poisoned").extend(spans_of(request));
        }
        let answer =
            "HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(value: Option<&Value>) -> String {
    match value {
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::IntValue(n)) => n.to_string(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(other) => format!("{other:?}"),
        None => String::new(),
    }
}

fn spans_of(request: ExportTraceServiceRequest) -> Vec<Span> {
    let mut spans = Vec::new();
    for resource in request.resource_spans {
        let service = resource
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|a| a.key == "service.name")
            .map(|a| text(a.value.as_ref().and_then(|v| v.value.as_ref())))
            .unwrap_or_default();
        for scope in resource.scope_spans {
            for span in scope.spans {
                spans.push(Span {
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    name: span.name,
                    kind: span.kind,
                    attributes: span
                        .attributes
                        .into_iter()
                        .map(|a| (a.key, text(a.value.as_ref().and_then(|v| v.value.as_ref()))))
                        .collect(),
                    links: span
                        .links
                        .into_iter()
                        .map(|l| (hex(&l.trace_id), hex(&l.span_id)))
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
    spans
}
