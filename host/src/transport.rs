//! The HTTP API on hyper 1: request decoding, routing to the host's operations, and
//! answers; every error is an RFC 9457 problem. The only module that knows hyper.

use std::convert::Infallible;
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming as Body;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use jiff::Timestamp;
use serde_json::json;
use tokio::net::TcpListener;

use crate::host::{Answer, Host, Incoming, check_key, check_not_empty, internal, not_found};

/// Headers beyond this many get 431 from the parser.
pub const MAX_HEADERS: usize = 100;
/// The most of a refused body that is read (and dropped) before answering.
const DRAIN_LIMIT: usize = 64 << 20;
/// How long in-flight requests may take to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(30);

/// Accepts connections until `shutdown` resolves, then lets in-flight requests finish.
pub(crate) async fn serve(host: Host, listener: TcpListener, shutdown: impl Future<Output = ()>) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let host = host.clone();
                let service = service_fn(move |request| {
                    let host = host.clone();
                    async move { Ok::<_, Infallible>(handle(&host, request).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .max_headers(MAX_HEADERS)
                    .serve_connection(TokioIo::new(stream), service);
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still in flight after {} s; closing",
            DRAIN.as_secs()
        );
    }
}

/// Answers one request.
pub async fn handle(host: &Host, request: Request<Body>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let admin = !matches!(
        segments.as_slice(),
        ["v1", "routes", _, "messages" | "translate"] | ["healthz"] | ["readyz"]
    );
    if admin && let Some(token) = &host.inner.config.admin_token {
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(format!("Bearer {token}").as_str()) {
            return respond(Answer::problem(
                401,
                "unauthorized",
                "Unauthorized",
                "admin calls need `Authorization: Bearer <admin_token>`",
                json!({}),
            ));
        }
    }
    let method = &parts.method;
    let answer = match segments.as_slice() {
        ["v1", "routes", route, action @ ("messages" | "translate")] => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            let incoming = match read(&parts.headers, body, host.inner.config.max_body).await {
                Ok(incoming) => incoming,
                Err(answer) => return respond(answer),
            };
            if *action == "messages" {
                host.ingest(route, incoming).await
            } else {
                host.translate(route, incoming).await
            }
        }
        ["v1", "routes"] if method == Method::GET => Answer::json(200, &host.topology()),
        ["v1", "dlq"] if method == Method::GET => match host.inner.storage.dead_letters() {
            Ok(entries) => Answer::json(200, &json!({"dead_letters": entries})),
            Err(e) => internal(&e.to_string()),
        },
        ["v1", "dlq", id] => match *method {
            Method::GET => match host.inner.storage.dead_letter(id) {
                Ok(Some(entry)) => {
                    let message = host.inner.storage.message(&entry.message_id).ok().flatten();
                    let message = message.map(|m| {
                        json!({
                            "id": m.id,
                            "route": m.route,
                            "idempotency_key": m.key,
                            "content_type": m.content_type,
                            "headers": m.headers,
                            "body": String::from_utf8_lossy(&m.body),
                            "received_at": m.received_at,
                        })
                    });
                    Answer::json(200, &json!({"dead_letter": entry, "message": message}))
                }
                Ok(None) => not_found("dead letter", id),
                Err(e) => internal(&e.to_string()),
            },
            Method::DELETE => host.discard(id).await,
            _ => return method_not_allowed("GET, DELETE"),
        },
        ["v1", "dlq", id, "replay"] => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            host.replay(id).await
        }
        ["v1", "messages", id] if method == Method::GET => {
            let at = match query(parts.uri.query(), "at").map(|t| t.parse::<Timestamp>()) {
                None => None,
                Some(Ok(at)) => Some(at),
                Some(Err(e)) => {
                    return respond(Answer::problem(
                        400,
                        "bad-request",
                        "Bad request",
                        &format!("`at` is not an RFC 3339 instant: {e}"),
                        json!({}),
                    ));
                }
            };
            match host.message_state(id, at) {
                Ok(Some(state)) => {
                    Answer::json(200, &serde_json::to_value(state).expect("state serializes"))
                }
                Ok(None) => not_found("message", id),
                Err(e) => internal(&e.to_string()),
            }
        }
        ["v1", "messages", id, "history"] if method == Method::GET => match host.history(id) {
            Ok(events) if events.is_empty() => not_found("message", id),
            Ok(events) => Answer::json(200, &json!({"message_id": id, "events": events})),
            Err(e) => internal(&e.to_string()),
        },
        ["v1", "audit", "verify"] if method == Method::GET => match host.verify_audit() {
            Ok((streams, findings)) => {
                Answer::json(200, &json!({"streams": streams, "findings": findings}))
            }
            Err(e) => internal(&e.to_string()),
        },
        ["healthz"] if method == Method::GET => Answer::json(200, &json!({"status": "ok"})),
        ["readyz"] if method == Method::GET => {
            if host.ready() {
                Answer::json(200, &json!({"status": "ready"}))
            } else {
                Answer::problem(
                    503,
                    "not-ready",
                    "Not ready",
                    "the store or the relay is not running",
                    json!({}),
                )
            }
        }
        ["metrics"] if method == Method::GET => {
            return Response::builder()
                .status(200)
                .header(header::CONTENT_TYPE, "text/plain; version=0.0.4")
                .body(Full::new(Bytes::from(host.metrics_text())))
                .expect("a valid response");
        }
        ["v1", "routes"]
        | ["v1", "dlq"]
        | ["v1", "messages", _]
        | ["v1", "messages", _, "history"]
        | ["v1", "audit", "verify"]
        | ["healthz"]
        | ["readyz"]
        | ["metrics"] => {
            return method_not_allowed("GET");
        }
        _ => Answer::problem(
            404,
            "not-found",
            "Not found",
            &format!("no resource at {path}"),
            json!({}),
        ),
    };
    respond(answer)
}

/// Reads a message request: headers checked, body read up to `max_body`.
async fn read(headers: &HeaderMap, body: Body, max_body: usize) -> Result<Incoming, Answer> {
    let bad =
        |detail: String| Answer::problem(400, "bad-request", "Bad request", &detail, json!({}));
    let too_large = || {
        Answer::problem(
            413,
            "too-large",
            "Body too large",
            &format!("the body is over {max_body} bytes"),
            json!({"limit": max_body}),
        )
    };
    // The body first, so that whatever the answer, the client has finished sending.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > max_body) {
        drain(body).await;
        return Err(too_large());
    }
    let mut body = body;
    let mut collected = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| bad(format!("the body could not be read: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > max_body {
                drain(body).await;
                return Err(too_large());
            }
            collected.extend_from_slice(&data);
        }
    }
    let body = collected;
    check_not_empty(&body)?;
    let idempotency_key = headers
        .get("idempotency-key")
        .map(|v| check_key(v.as_bytes()))
        .transpose()?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let headers: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect();
    Ok(Incoming {
        content_type,
        headers,
        body,
        idempotency_key,
        traceparent,
    })
}

/// Reads and drops what is left of a body that is refused, so the client gets the answer
/// instead of a reset connection: at most [`DRAIN_LIMIT`] bytes, for at most 10 s.
async fn drain(mut body: Body) {
    let mut seen = 0usize;
    let reading = async {
        while let Some(Ok(frame)) = body.frame().await {
            seen += frame.data_ref().map_or(0, Bytes::len);
            if seen > DRAIN_LIMIT {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), reading).await;
}

fn query<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))
}

fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = respond(Answer::problem(
        405,
        "method-not-allowed",
        "Method not allowed",
        &format!("this resource allows {allow}"),
        json!({}),
    ));
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}

fn respond(answer: Answer) -> Response<Full<Bytes>> {
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    if !answer.body.is_empty() {
        builder = builder.header(
            header::CONTENT_TYPE,
            if answer.problem {
                "application/problem+json"
            } else {
                "application/json"
            },
        );
    }
    if answer.replayed {
        builder = builder.header("idempotent-replayed", "true");
    }
    if let Some(seconds) = answer.retry_after {
        builder = builder.header(header::RETRY_AFTER, seconds.to_string());
    }
    builder
        .body(Full::new(Bytes::from(answer.body)))
        .expect("a valid response")
}
