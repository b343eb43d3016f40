//! Which request goes to which operation: the API's paths and methods, and the admin token
//! that every call but ingest, translate and the health checks needs.

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use jiff::Timestamp;
use serde_json::json;

use super::Inner;
use super::body::read;
use super::problem::{self, Answer};
use crate::archive::StateAt;
use crate::outcome::{Refusal, Unavailable};
use crate::pipeline::MAX_LISTING;

/// Answers one request.
pub(super) async fn handle<B>(api: &Inner, request: Request<B>) -> Response<Full<Bytes>>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send,
{
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    // One leading slash: `//v1/routes` is another path (RFC 3986), and answers 404. Each
    // segment is percent-decoded once, after the split: an id may hold `/`, `?`, `%` or a
    // space (`A%2FB%20C%3F%25` is `A/B C?%`).
    let decoded: Vec<String> = path
        .strip_prefix('/')
        .unwrap_or(&path)
        .split('/')
        .map(crate::percent::decode)
        .collect();
    let segments: Vec<&str> = decoded.iter().map(String::as_str).collect();
    if segments.first() == Some(&"console") {
        // The console authenticates by its own session cookie.
        return super::console::handle(api, Request::from_parts(parts, body), &segments).await;
    }
    let open = matches!(
        segments.as_slice(),
        ["v1", "routes", _, "messages" | "translate"] | ["healthz"] | ["readyz"]
    );
    if !open && !authorized(api, &parts.headers) {
        return Answer::problem(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "Unauthorized",
            "admin calls need `Authorization: Bearer <admin_token>`",
            json!({}),
        )
        .challenge()
        .into_response();
    }
    // HEAD is GET without the body (RFC 9110, 9.3.2); hyper leaves the body out.
    let method = if parts.method == Method::HEAD {
        &Method::GET
    } else {
        &parts.method
    };
    let answer = match segments.as_slice() {
        [
            "v1",
            "routes",
            route,
            action @ ("messages" | "translate" | "commands"),
        ] => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            // A vendor's credential, when its route asks for one, before anything is read.
            let vendor_door = *action != "commands";
            if vendor_door && let Err(refused) = api.doors.before_body(route, &parts.headers) {
                return problem::refusal(&refused).close().into_response();
            }
            // A place among the messages being handled, before the body is read: a host that
            // has as many as it lets wait says so at once.
            let Ok(_admitted) = api.admission.clone().try_acquire_owned() else {
                return problem::unavailable(&Unavailable::Saturated)
                    .close()
                    .into_response();
            };
            let reading = read(&parts.headers, body, api.max_body);
            let incoming = match tokio::time::timeout(api.body_timeout, reading).await {
                Ok(Ok(incoming)) => incoming,
                Ok(Err(refusal)) => return problem::refusal(&refusal).into_response(),
                Err(_) => {
                    let slow = Refusal::SlowBody {
                        limit: api.body_timeout,
                    };
                    return problem::refusal(&slow).into_response();
                }
            };
            if vendor_door
                && let Err(refused) = api.doors.with_body(route, &parts.headers, &incoming.body)
            {
                return problem::refusal(&refused).into_response();
            }
            if *action == "messages" {
                problem::ingested(api.pipeline.ingest(route, incoming).await)
            } else if *action == "commands" {
                super::commands::commanded(api.pipeline.command(route, incoming).await)
            } else {
                problem::translated(api.pipeline.translate(route, incoming).await)
            }
        }
        ["v1", "plugins"] if method == Method::POST => {
            super::plugins::upload(api, &parts, body, None).await
        }
        ["v1", "plugins", name] if method == Method::PUT => {
            super::plugins::upload(api, &parts, body, Some(name)).await
        }
        ["v1", "plugins", name, "shadow"] if method == Method::DELETE => {
            super::plugins::activated(api.pipeline.stop_shadow(name).await)
        }
        ["v1", "plugins", name, "shadow"] if method == Method::GET => {
            match api.pipeline.shadow_reports(name) {
                Some(reports) => Answer::json(StatusCode::OK, &json!({ "shadow": reports })),
                None => problem::not_found("plugin", name),
            }
        }
        [
            "v1",
            "plugins",
            name,
            action @ ("activate" | "rollback" | "shadow"),
        ] => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            if *action == "rollback" {
                super::plugins::activated(api.pipeline.rollback(name).await)
            } else {
                let body = match read(&parts.headers, body, 4096).await {
                    Ok(incoming) => incoming.body,
                    Err(refusal) => return problem::refusal(&refusal).into_response(),
                };
                match super::plugins::selector(&body) {
                    Ok((selector, serve)) => {
                        let serve = if *action == "shadow" {
                            crate::registry::Serve::Shadow
                        } else {
                            serve
                        };
                        super::plugins::activated(
                            api.pipeline.activate(name, selector, serve).await,
                        )
                    }
                    Err(answer) => answer,
                }
            }
        }
        ["v1", "plugins", "gc"] if method == Method::POST => {
            let dry_run = query(parts.uri.query(), "dry_run").is_some_and(|v| v == "true");
            match api.pipeline.collect_plugins(dry_run).await {
                Ok(collected) => Answer::json(StatusCode::OK, &json!(collected)),
                Err(unavailable) => problem::unavailable(&unavailable),
            }
        }
        ["v1", "plugins", _] if method != Method::GET => return method_not_allowed("GET, PUT"),
        ["v1", "dlq", id] if method == Method::DELETE => {
            let reason = query(parts.uri.query(), "reason");
            problem::discarded(api.pipeline.discard(id, reason.as_deref()).await, id)
        }
        ["v1", "dlq", "replay"] => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            let body = match read(&parts.headers, body, super::replay::MAX_BODY).await {
                Ok(incoming) => incoming.body,
                Err(refusal) => return problem::refusal(&refusal).into_response(),
            };
            match super::replay::batch(&body) {
                Ok((filter, target, dry_run)) => super::replay::replayed_batch(
                    api.pipeline.replay_batch(filter, target, dry_run).await,
                ),
                Err(answer) => answer,
            }
        }
        ["v1", "dlq", id, "replay"] => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            let body = match read(&parts.headers, body, super::replay::MAX_BODY).await {
                Ok(incoming) => incoming.body,
                Err(Refusal::EmptyBody) => Vec::new(),
                Err(refusal) => return problem::refusal(&refusal).into_response(),
            };
            match super::replay::target(&body) {
                Ok(target) => problem::replayed(api.pipeline.replay_pinned(id, target).await),
                Err(answer) => answer,
            }
        }
        ["v1", "dlq", _] if method != Method::GET => return method_not_allowed("GET, DELETE"),
        ["v1", "breakers", name] => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            let action = query(parts.uri.query(), "action");
            super::breakers::act(&api.breakers, name, action.as_deref())
        }
        ["v1", "sinks", sink, "retry"] => {
            if method != Method::POST {
                return method_not_allowed("POST");
            }
            let key = query(parts.uri.query(), "partition_key");
            problem::retried(api.release.release(sink, key).await)
        }
        _ if method != Method::GET => {
            if is_read_only(&segments) {
                return method_not_allowed("GET");
            }
            not_found(&path)
        }
        ["metrics"] => {
            return Response::builder()
                .status(StatusCode::OK)
                .header(
                    header::CONTENT_TYPE,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                )
                .body(Full::new(Bytes::from(api.pipeline.metrics_text())))
                .expect("a valid response");
        }
        _ => read_only(api, &segments, parts.uri.query())
            .await
            .unwrap_or_else(|| not_found(&path)),
    };
    answer.into_response()
}

/// Whether the request carries the admin token, when one is configured: the `Bearer` scheme
/// in any case (RFC 9110, 11.1), the token compared in constant time.
fn authorized(api: &Inner, headers: &http::HeaderMap) -> bool {
    use subtle::ConstantTimeEq as _;
    let Some(token) = &api.admin_token else {
        return true;
    };
    let Some(given) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let given = given.as_bytes();
    let Some(space) = given.iter().position(|b| *b == b' ') else {
        return false;
    };
    let (scheme, credentials) = given.split_at(space);
    let credentials = credentials.trim_ascii();
    scheme.eq_ignore_ascii_case(b"bearer")
        && bool::from(credentials.ct_eq(token.expose().as_bytes()))
}

/// The answers of the GET resources; `None` for a path that is none of them.
async fn read_only(api: &Inner, segments: &[&str], query: Option<&str>) -> Option<Answer> {
    let pipeline = &api.pipeline;
    let failed = |e: crate::Error| problem::internal(&e.to_string());
    Some(match segments {
        ["v1", "routes"] => Answer::json(StatusCode::OK, &super::topology::routes(api)),
        ["v1", "topology"] => {
            super::topology::answer(api, self::query(query, "format").as_deref()).await
        }
        ["v1", "breakers"] => super::breakers::list(&api.breakers),
        ["v1", "plugins"] => match pipeline.plugins().await {
            Ok(plugins) => Answer::json(StatusCode::OK, &json!({ "plugins": plugins })),
            Err(e) => problem::internal(&e.to_string()),
        },
        ["v1", "plugins", name] => match pipeline.plugins().await {
            Ok(plugins) => match plugins.get(*name) {
                Some(plugin) => Answer::json(StatusCode::OK, &json!({ *name: plugin })),
                None => problem::not_found("plugin", name),
            },
            Err(e) => problem::internal(&e.to_string()),
        },
        ["v1", "dlq"] => dead_letters(api, query).await,
        ["v1", "dlq", id] => match pipeline.dead_letter(id).await {
            Ok(Some((entry, message))) => {
                let message = message.map(|m| {
                    json!({
                        "id": m.id,
                        "route": m.route,
                        "idempotency_key": m.key,
                        "content_type": m.content_type,
                        "headers": m.headers,
                        "body": String::from_utf8_lossy(&m.body),
                        "body_cut": m.cut,
                        "received_at": m.received_at,
                    })
                });
                Answer::json(
                    StatusCode::OK,
                    &json!({"dead_letter": entry, "message": message}),
                )
            }
            Ok(None) => problem::not_found("dead letter", id),
            Err(e) => failed(e),
        },
        ["v1", "messages", id] => message_state(api, id, query).await,
        ["v1", "messages", id, "history"] => match pipeline.history(id).await {
            Ok(events) if events.is_empty() => problem::not_found("message", id),
            Ok(events) => {
                Answer::json(StatusCode::OK, &json!({"message_id": id, "events": events}))
            }
            Err(e) => failed(e),
        },
        ["v1", "entities", entity_type, id, "events"] => {
            super::entities::events(pipeline, entity_type, id).await
        }
        ["v1", "entities", entity_type, id] => {
            match super::entities::StateQuery::parse(
                self::query(query, "at").as_deref(),
                self::query(query, "time").as_deref(),
                self::query(query, "events").as_deref(),
            ) {
                Ok(asked) => super::entities::state(&api.projections, entity_type, id, asked).await,
                Err(detail) => problem::bad_request(&detail),
            }
        }
        ["v1", "audit", "verify"] => match pipeline.verify_audit().await {
            Ok((streams, findings)) => Answer::json(
                StatusCode::OK,
                &json!({"streams": streams, "findings": findings}),
            ),
            Err(e) => failed(e),
        },
        ["healthz"] => Answer::json(StatusCode::OK, &json!({"status": "ok"})),
        ["readyz"] => {
            let not_ready = |detail: &str| {
                Answer::problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "not-ready",
                    "Not ready",
                    detail,
                    json!({}),
                )
                .retry_after(crate::outcome::RETRY_AFTER)
            };
            if !api.relay.is_ready() {
                not_ready("the relay is not running")
            } else if !api.relay.plugins_watched() {
                not_ready("the plugins directory is not watched yet")
            } else if let Err(e) = pipeline.store_ready().await {
                not_ready(&format!("the store does not answer: {e}"))
            } else {
                Answer::json(StatusCode::OK, &json!({"status": "ready"}))
            }
        }
        _ => return None,
    })
}

/// Whether the path is one of the GET resources.
fn is_read_only(segments: &[&str]) -> bool {
    matches!(
        segments,
        ["v1", "routes"]
            | ["v1", "topology"]
            | ["v1", "breakers"]
            | ["v1", "plugins"]
            | ["v1", "dlq"]
            | ["v1", "dlq", _]
            | ["v1", "messages", _]
            | ["v1", "messages", _, "history"]
            | ["v1", "entities", _, _, "events"]
            | ["v1", "entities", _, _]
            | ["v1", "audit", "verify"]
            | ["healthz"]
            | ["readyz"]
            | ["metrics"]
    )
}

/// `GET /v1/dlq[?limit=N&after=ID]`: a page of the dead letter channel, oldest first, with
/// the id to ask `after` for the next page when there may be one.
async fn dead_letters(api: &Inner, query: Option<&str>) -> Answer {
    let limit = match self::query(query, "limit").map(|l| l.parse::<usize>()) {
        None => DEFAULT_LISTING,
        Some(Ok(limit)) if (1..=MAX_LISTING).contains(&limit) => limit,
        Some(_) => {
            return Answer::problem(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "Bad request",
                &format!("`limit` is a number from 1 to {MAX_LISTING}"),
                json!({}),
            );
        }
    };
    let after = self::query(query, "after");
    match api.pipeline.dead_letters(after, limit).await {
        Ok(entries) => {
            let next = (entries.len() == limit)
                .then(|| entries.last().map(|e| e.id.clone()))
                .flatten();
            Answer::json(
                StatusCode::OK,
                &json!({"dead_letters": entries, "next": next}),
            )
        }
        Err(e) => problem::internal(&e.to_string()),
    }
}

/// How many dead letter entries a listing gives when not told.
const DEFAULT_LISTING: usize = 100;

/// `GET /v1/messages/{id}[?at=RFC3339]`: the message's state, at an instant.
pub(super) async fn message_state(api: &Inner, id: &str, query: Option<&str>) -> Answer {
    let at = match self::query(query, "at").map(|t| t.parse::<Timestamp>()) {
        None => None,
        Some(Ok(at)) => Some(at),
        Some(Err(e)) => {
            return Answer::problem(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "Bad request",
                &format!("`at` is not an RFC 3339 instant: {e}"),
                json!({}),
            );
        }
    };
    match api.pipeline.message_state(id, at).await {
        Ok(StateAt::State(state)) => Answer::json(
            StatusCode::OK,
            &serde_json::to_value(state).expect("state serializes"),
        ),
        Ok(StateAt::Unknown) => problem::not_found("message", id),
        Ok(StateAt::Archived { until, segment }) => Answer::problem(
            StatusCode::GONE,
            "archived",
            "Archived",
            &format!(
                "message {id}'s events up to {until} were archived (segment {segment}): its \
                 state at an earlier instant is read with the archive (`dragoman audit show \
                 --archive DIR`)"
            ),
            json!({"until": until.to_string(), "segment": segment}),
        ),
        Err(e) => problem::internal(&e.to_string()),
    }
}

/// The value of `name` in the query, percent-decoded (RFC 3986: `%3A` is `:`, `%2B` is `+`;
/// a `+` stays a `+`).
pub(super) fn query(query: Option<&str>, name: &str) -> Option<String> {
    let raw = query?
        .split('&')
        .find_map(|pair| pair.strip_prefix(name)?.strip_prefix('='))?;
    Some(crate::percent::decode(raw))
}

fn not_found(path: &str) -> Answer {
    Answer::problem(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        &format!("no resource at {path}"),
        json!({}),
    )
}

fn method_not_allowed(allow: &'static str) -> Response<Full<Bytes>> {
    let mut response = Answer::problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        &format!("this resource allows {allow}"),
        json!({}),
    )
    .into_response();
    response
        .headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    response
}
