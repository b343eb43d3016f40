//! `POST /v1/routes/{route}/commands`: a command's outcome as HTTP. The vendor's answer is
//! 200 with the events; a queued command 202; `cached` and `default` answers say so in
//! `Dragoman-Degraded` (and `Age` for a cached one); `fail` is 503 with `Retry-After` set to
//! the time until the next probe; a vendor that gave no answer is 502.

use http::{StatusCode, header};
use serde_json::json;

use super::problem::{self, Answer};
use crate::outcome::{Answered, Commanded, Degraded, Queued};

/// Names the degradation that answered.
const DEGRADED: header::HeaderName = header::HeaderName::from_static("dragoman-degraded");

pub(super) fn commanded(outcome: Commanded) -> Answer {
    match outcome {
        Commanded::Answered(answered) => self::answered(&answered),
        Commanded::Duplicate(settled) => problem::settled(settled),
        Commanded::Degraded(degraded) => self::degraded(degraded),
        Commanded::Rejected(rejected) => problem::rejected(&rejected, false),
        Commanded::Transient(t) => problem::transient(&t, json!({"code": t.code})),
        Commanded::VendorFailed { error } => Answer::problem(
            StatusCode::BAD_GATEWAY,
            "vendor-failed",
            "The vendor gave no answer",
            &error,
            json!({}),
        ),
        Commanded::InFlight(in_flight) => problem::in_flight(&in_flight),
        Commanded::KeyReused {
            idempotency_key,
            message_id,
        } => problem::key_reused(&idempotency_key, &message_id),
        Commanded::Refused(refusal) => problem::refusal(&refusal),
        Commanded::Unavailable(unavailable) => problem::unavailable(&unavailable),
    }
}

pub(super) fn answered(answered: &Answered) -> Answer {
    Answer::json(StatusCode::OK, &json!(answered))
}

pub(super) fn queued(queued: &Queued) -> Answer {
    Answer::json(StatusCode::ACCEPTED, &json!({"queued": true, "message_id": queued.message_id, "idempotency_key": queued.idempotency_key}))
        .header(DEGRADED, "queue".into())
}

fn degraded(degraded: Degraded) -> Answer {
    match degraded {
        Degraded::Failed { retry_after } => {
            let answer = Answer::problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "circuit-open",
                "The vendor's circuit is open",
                "the vendor is failing; nothing was sent",
                json!({}),
            )
            .header(DEGRADED, "fail".into());
            match retry_after {
                Some(after) if after < std::time::Duration::MAX => answer.retry_after(after),
                _ => answer,
            }
        }
        Degraded::Cached { answer, age } => self::answered(&answer)
            .header(header::AGE, age.as_secs().to_string())
            .header(DEGRADED, "cached".into()),
        Degraded::Default(answer) => {
            Answer::json(StatusCode::OK, &answer).header(DEGRADED, "default".into())
        }
        Degraded::Queued(queued) => self::queued(&queued),
    }
}
