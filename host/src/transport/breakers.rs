//! `GET /v1/breakers` and `POST /v1/breakers/{name}?action=force-open|disable|reset`: every
//! circuit breaker (one per sink, one per vendor) as an operator sees it and sets it.

use http::StatusCode;
use serde_json::json;

use super::problem::{self, Answer};
use crate::breaker::Breaker;
use crate::circuits::Circuits;

/// Every breaker: its state and what its window holds.
pub(super) fn list(breakers: &Circuits) -> Answer {
    let breakers: serde_json::Map<String, serde_json::Value> = breakers
        .iter()
        .map(|(name, breaker)| (name.clone(), describe(breaker)))
        .collect();
    Answer::json(StatusCode::OK, &json!({ "breakers": breakers }))
}

/// An operator's action on one breaker.
pub(super) fn act(breakers: &Circuits, name: &str, action: Option<&str>) -> Answer {
    let Some(breaker) = breakers.get(name) else {
        return problem::not_found("breaker", name);
    };
    match action {
        Some("force-open") => breaker.force_open(),
        Some("disable") => breaker.disable(),
        Some("reset") => breaker.reset(),
        _ => {
            return Answer::problem(
                StatusCode::BAD_REQUEST,
                "bad-request",
                "Bad request",
                "`action` is force-open, disable or reset",
                json!({}),
            );
        }
    }
    tracing::warn!(breaker = name, action, "an operator set a circuit breaker");
    Answer::json(StatusCode::OK, &json!({ name: describe(breaker) }))
}

fn describe(breaker: &Breaker) -> serde_json::Value {
    let window = breaker.snapshot();
    json!({
        "state": breaker.state().name(),
        "refusing_for_ms": breaker.refusing_for().map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        "window": {"calls": window.calls, "failures": window.failures, "slow": window.slow},
    })
}
