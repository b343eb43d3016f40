//! The one place where outcomes become HTTP: a status, a JSON body or an RFC 9457 problem,
//! and the headers that go with them (`Retry-After`, `Idempotent-Replayed`).

use bytes::Bytes;
use http::{Response, StatusCode, header};
use http_body_util::Full;
use serde_json::json;

use crate::outcome::{
    Accepted, Cause, Discarded, InFlight, Ingested, Refusal, Rejected, Replayed, Settled,
    Transient, Translated, Unavailable,
};

/// An answer before it becomes a response.
#[derive(Debug)]
pub(super) struct Answer {
    status: StatusCode,
    body: Vec<u8>,
    problem: bool,
    replayed: bool,
    retry_after: Option<u64>,
    close: bool,
    challenge: Option<&'static str>,
    /// Headers of the outcome's own (`Age`, `Dragoman-Degraded`).
    headers: Vec<(header::HeaderName, String)>,
    /// The body's media type when it is not JSON.
    content_type: Option<&'static str>,
}

impl Answer {
    pub(super) fn json(status: StatusCode, body: &serde_json::Value) -> Self {
        Self {
            status,
            body: serde_json::to_vec(body).expect("JSON values serialize"),
            problem: false,
            replayed: false,
            retry_after: None,
            close: false,
            challenge: None,
            headers: Vec::new(),
            content_type: None,
        }
    }

    /// The status it answers with.
    pub(super) fn status(&self) -> StatusCode {
        self.status
    }

    /// Its body as JSON (`null` when it is not JSON): for the console, which shows the
    /// API's answers as pages.
    pub(super) fn json_body(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    pub(super) fn empty(status: StatusCode) -> Self {
        Self {
            status,
            body: Vec::new(),
            problem: false,
            replayed: false,
            retry_after: None,
            close: false,
            challenge: None,
            headers: Vec::new(),
            content_type: None,
        }
    }

    /// A body that is not JSON, of the media type given.
    pub(super) fn text(status: StatusCode, content_type: &'static str, body: String) -> Self {
        Self {
            body: body.into_bytes(),
            content_type: Some(content_type),
            ..Self::empty(status)
        }
    }

    /// An RFC 9457 problem: `kind` is the last part of its type URI.
    pub(super) fn problem(
        status: StatusCode,
        kind: &str,
        title: &str,
        detail: &str,
        extra: serde_json::Value,
    ) -> Self {
        let mut body = json!({
            "type": format!("urn:dragoman:problem:{kind}"),
            "title": title,
            "status": status.as_u16(),
            "detail": detail,
        });
        if let (Some(body), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
            body.extend(extra);
        }
        Self {
            problem: true,
            ..Self::json(status, &body)
        }
    }

    /// With a header of the outcome's own.
    pub(super) fn header(mut self, name: header::HeaderName, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    pub(super) fn retry_after(mut self, after: std::time::Duration) -> Self {
        self.retry_after = Some(after.as_secs().max(1));
        self
    }

    /// Closes the connection after the answer: what is left of the request is not read.
    pub(super) fn close(mut self) -> Self {
        self.close = true;
        self
    }

    /// Says which authentication scheme the resource takes (RFC 9110, 11.6.1): for a 401.
    /// With `WWW-Authenticate: Bearer`, as the admin API asks.
    pub(super) fn challenge(self) -> Self {
        self.challenge_as("Bearer realm=\"dragoman\"")
    }

    /// With `WWW-Authenticate: value`.
    pub(super) fn challenge_as(mut self, value: &'static str) -> Self {
        self.challenge = Some(value);
        self
    }

    pub(super) fn replayed(mut self) -> Self {
        self.replayed = true;
        self
    }

    pub(super) fn into_response(self) -> Response<Full<Bytes>> {
        let mut builder = Response::builder().status(self.status);
        if !self.body.is_empty() {
            builder = builder.header(
                header::CONTENT_TYPE,
                match self.content_type {
                    Some(media_type) => media_type,
                    None if self.problem => "application/problem+json",
                    None => "application/json",
                },
            );
        }
        if self.replayed {
            builder = builder.header("idempotent-replayed", "true");
        }
        if let Some(seconds) = self.retry_after {
            builder = builder.header(header::RETRY_AFTER, seconds.to_string());
        }
        if self.close {
            builder = builder.header(header::CONNECTION, "close");
        }
        if let Some(challenge) = self.challenge {
            builder = builder.header(header::WWW_AUTHENTICATE, challenge);
        }
        for (name, value) in self.headers {
            builder = builder.header(name, value);
        }
        builder
            .body(Full::new(Bytes::from(self.body)))
            .expect("a valid response")
    }
}

// ===== Outcomes =====

pub(super) fn ingested(outcome: Ingested) -> Answer {
    match outcome {
        Ingested::Accepted(accepted) => self::accepted(StatusCode::ACCEPTED, &accepted),
        Ingested::Rejected(rejected) => self::rejected(&rejected, false),
        Ingested::Duplicate(settled) => self::settled(settled),
        Ingested::InFlight(in_flight) => self::in_flight(&in_flight),
        Ingested::KeyReused {
            idempotency_key,
            message_id,
        } => key_reused(&idempotency_key, &message_id),
        Ingested::Transient(t) => transient(&t, json!({"code": t.code})),
        Ingested::Refused(refusal) => self::refusal(&refusal),
        Ingested::Unavailable(unavailable) => self::unavailable(&unavailable),
    }
}

/// A key given again for a different payload.
pub(super) fn key_reused(idempotency_key: &str, message_id: &str) -> Answer {
    Answer::problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        "key-reuse",
        "Idempotency key reused",
        &format!("idempotency key `{idempotency_key}` was used for a different payload"),
        json!({"idempotency_key": idempotency_key, "message_id": message_id}),
    )
}

/// The answer stored under a key, given again to a redelivery of it.
pub(super) fn settled(settled: Settled) -> Answer {
    match settled {
        Settled::Accepted(accepted) => self::accepted(StatusCode::OK, &accepted),
        Settled::Rejected(rejected) => self::rejected(&rejected, false),
        Settled::Answered(answered) => super::commands::answered(&answered),
        Settled::Queued(queued) => super::commands::queued(&queued),
    }
    .replayed()
}

pub(super) fn translated(outcome: Translated) -> Answer {
    match outcome {
        Translated::Events {
            idempotency_key,
            events,
        } => Answer::json(
            StatusCode::OK,
            &json!({"idempotency_key": idempotency_key, "events": events}),
        ),
        Translated::Rejected { cause, code, error } => {
            let (kind, title) = rejection_kind(cause, false);
            Answer::problem(
                StatusCode::UNPROCESSABLE_ENTITY,
                kind,
                title,
                &error,
                json!({"code": code}),
            )
        }
        Translated::Transient(t) => transient(&t, json!({"code": t.code})),
        Translated::Refused(refusal) => self::refusal(&refusal),
        Translated::Unavailable(unavailable) => self::unavailable(&unavailable),
    }
}

pub(super) fn replayed(outcome: Replayed) -> Answer {
    match outcome {
        Replayed::Accepted(accepted) => self::accepted(StatusCode::OK, &accepted),
        Replayed::Requeued {
            dead_letter,
            event,
            sink,
        } => Answer::json(
            StatusCode::OK,
            &json!({"dead_letter": dead_letter, "requeued": event, "sink": sink}),
        ),
        Replayed::RejectedAgain(rejected) => self::rejected(&rejected, true),
        Replayed::Transient {
            dead_letter,
            transient: t,
        } => transient(&t, json!({"code": t.code, "dead_letter": dead_letter})),
        Replayed::InProgress { dead_letter } => Answer::problem(
            StatusCode::CONFLICT,
            "replay-in-progress",
            "Replay in progress",
            &format!("dead letter `{dead_letter}` is being replayed; ask again for its outcome"),
            json!({"dead_letter": dead_letter}),
        )
        .retry_after(crate::outcome::RETRY_AFTER),
        Replayed::NotFound { what, id } => not_found(what, &id),
        Replayed::NotReplayable { dead_letter } => Answer::problem(
            StatusCode::CONFLICT,
            "not-replayable",
            "Not replayable",
            "a command's dead letter is not replayed: a vendor call is not repeated behind the \
             caller's back; send the command again with a new key",
            json!({"dead_letter": dead_letter}),
        ),
        Replayed::Target(refused) => super::plugins::activated(*refused),
        Replayed::BodyCut {
            dead_letter,
            kept,
            size,
        } => Answer::problem(
            StatusCode::CONFLICT,
            "body-cut",
            "Body cut",
            &format!(
                "the entry keeps only the first {kept} of its message's {size} bytes (the \
                 route's `dead_letters.max_body_bytes`): it cannot be replayed; have the \
                 vendor send it again, or discard the entry"
            ),
            json!({"dead_letter": dead_letter, "kept": kept, "size": size}),
        ),
        Replayed::Superseded {
            dead_letter,
            message_id,
        } => Answer::problem(
            StatusCode::CONFLICT,
            "superseded",
            "Superseded",
            &format!(
                "the entry's idempotency key was settled by message `{message_id}` since: \
                 replaying it would apply the key twice; discard the entry"
            ),
            json!({"dead_letter": dead_letter, "message_id": message_id}),
        ),
        Replayed::RouteGone { dead_letter, route } => Answer::problem(
            StatusCode::CONFLICT,
            "route-gone",
            "Route gone",
            &format!("route `{route}` is no longer configured"),
            json!({"dead_letter": dead_letter}),
        ),
        Replayed::Unavailable(unavailable) => self::unavailable(&unavailable),
    }
}

pub(super) fn retried(outcome: crate::outcome::Retried) -> Answer {
    use crate::outcome::Retried;
    match outcome {
        Retried::Released { sink, keys } => Answer::json(
            StatusCode::OK,
            &json!({"sink": sink, "released": keys.len(), "partition_keys": keys}),
        ),
        Retried::UnknownSink { sink } => not_found("sink", &sink),
        Retried::Unavailable(unavailable) => self::unavailable(&unavailable),
    }
}

pub(super) fn discarded(outcome: Discarded, id: &str) -> Answer {
    match outcome {
        Discarded::Discarded => Answer::empty(StatusCode::NO_CONTENT),
        Discarded::NotFound => not_found("dead letter", id),
        Discarded::Unavailable(unavailable) => self::unavailable(&unavailable),
    }
}

fn accepted(status: StatusCode, accepted: &Accepted) -> Answer {
    Answer::json(
        status,
        &json!({
            "message_id": accepted.message_id,
            "idempotency_key": accepted.idempotency_key,
            "events": accepted.events,
        }),
    )
}

pub(super) fn rejected(rejected: &Rejected, again: bool) -> Answer {
    let (kind, title) = rejection_kind(rejected.cause, again);
    Answer::problem(
        StatusCode::UNPROCESSABLE_ENTITY,
        kind,
        title,
        &rejected.error,
        json!({"code": rejected.code, "dead_letter": rejected.dead_letter, "message_id": rejected.message_id}),
    )
}

fn rejection_kind(cause: Cause, again: bool) -> (&'static str, &'static str) {
    match (cause, again) {
        (Cause::Fault, _) => ("plugin-fault", "The translator failed"),
        (Cause::Refused, false) => ("rejected", "The translator rejected the message"),
        (Cause::Refused, true) => ("rejected", "The translator rejected the message again"),
    }
}

pub(super) fn in_flight(in_flight: &InFlight) -> Answer {
    let key = &in_flight.idempotency_key;
    let (detail, extra) = if in_flight.taken_over {
        (
            format!("the claim on `{key}` was taken over; retry later"),
            json!({}),
        )
    } else {
        (
            format!("a message with idempotency key `{key}` is being processed; retry later"),
            json!({"idempotency_key": key}),
        )
    };
    Answer::problem(
        StatusCode::CONFLICT,
        "in-flight",
        "Message in flight",
        &detail,
        extra,
    )
}

/// A `transient` refusal: 503, retry later, nothing stored.
pub(super) fn transient(t: &Transient, extra: serde_json::Value) -> Answer {
    Answer::problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "transient",
        "Try again later",
        &t.message,
        extra,
    )
    .retry_after(t.retry_after)
}

/// The status a refusal at the door is answered with: always a 4xx.
pub fn refusal_status(refusal: &Refusal) -> StatusCode {
    match refusal {
        Refusal::Unauthenticated { .. } => StatusCode::UNAUTHORIZED,
        Refusal::UnknownRoute { .. } | Refusal::NoCommands { .. } => StatusCode::NOT_FOUND,
        Refusal::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
        Refusal::SlowBody { .. } => StatusCode::REQUEST_TIMEOUT,
        Refusal::Encoded { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Refusal::Unreadable(e) if e.kind() == dragoman_body::ErrorKind::UnsupportedFormat => {
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        }
        _ => StatusCode::BAD_REQUEST,
    }
}

pub(super) fn refusal(refusal: &Refusal) -> Answer {
    let status = refusal_status(refusal);
    let bad =
        |detail: &str| Answer::problem(status, "bad-request", "Bad request", detail, json!({}));
    match refusal {
        Refusal::UnknownRoute { route } => Answer::problem(
            status,
            "unknown-route",
            "Unknown route",
            &format!("no route named `{route}`"),
            json!({}),
        ),
        Refusal::NoCommands { route } => Answer::problem(
            status,
            "no-commands",
            "Route takes no commands",
            &format!("route `{route}` has no `[routes.{route}.commands]`"),
            json!({}),
        ),
        Refusal::BadKey { reason }
        | Refusal::BadRequest { reason }
        | Refusal::BadCommand { reason } => bad(reason),
        Refusal::EmptyBody => bad("the body is empty"),
        Refusal::TooLarge { limit } => Answer::problem(
            status,
            "too-large",
            "Body too large",
            &format!("the body is over {limit} bytes"),
            json!({"limit": limit}),
        )
        .close(),
        Refusal::SlowBody { limit } => Answer::problem(
            status,
            "slow-body",
            "Body too slow",
            &format!("the body did not arrive within {} ms", limit.as_millis()),
            json!({}),
        )
        .close(),
        Refusal::Encoded { encoding } => Answer::problem(
            status,
            "content-encoding",
            "Unsupported content encoding",
            &format!("the body is `{encoding}`-encoded; send it unencoded"),
            json!({}),
        ),
        Refusal::Unreadable(e) => Answer::problem(
            status,
            e.code(),
            "Unreadable body",
            e.message(),
            json!({"code": e.code()}),
        ),
        Refusal::Unauthenticated {
            route,
            scheme,
            reason,
        } => {
            let answer = Answer::problem(
                status,
                "unauthenticated",
                "Unauthenticated",
                &format!("route `{route}` takes messages with its {scheme} credential: {reason}"),
                json!({"route": route, "scheme": scheme}),
            );
            match *scheme {
                "bearer" => answer.challenge_as("Bearer realm=\"dragoman\""),
                "basic" => answer.challenge_as("Basic realm=\"dragoman\""),
                _ => answer,
            }
        }
    }
}

pub(super) fn unavailable(unavailable: &Unavailable) -> Answer {
    match unavailable {
        Unavailable::Storage(detail) => Answer::problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage",
            "Storage unavailable",
            detail,
            json!({}),
        )
        .retry_after(crate::outcome::RETRY_AFTER),
        Unavailable::Saturated => Answer::problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "saturated",
            "Too many messages waiting",
            "as many messages wait for a worker as the host lets wait; try again later",
            json!({}),
        )
        .retry_after(crate::outcome::RETRY_AFTER),
        Unavailable::RouteBusy { route } => Answer::problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "route-busy",
            "Route busy",
            &format!(
                "route `{route}` runs and has waiting as many messages as its bulkhead lets; \
                 try again later"
            ),
            json!({"route": route}),
        )
        .retry_after(crate::outcome::RETRY_AFTER),
        Unavailable::ShuttingDown => Answer::problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting-down",
            "Shutting down",
            "the host is shutting down",
            json!({}),
        ),
        Unavailable::Internal(detail) => internal(detail),
    }
}

/// `400`: the request itself is wrong, as `detail` says.
pub(super) fn bad_request(detail: &str) -> Answer {
    Answer::problem(
        StatusCode::BAD_REQUEST,
        "bad-request",
        "Bad request",
        detail,
        json!({}),
    )
}

pub(super) fn internal(detail: &str) -> Answer {
    Answer::problem(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "Internal error",
        detail,
        json!({}),
    )
}

pub(super) fn not_found(what: &str, id: &str) -> Answer {
    Answer::problem(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        &format!("no {what} `{id}`"),
        json!({}),
    )
}
