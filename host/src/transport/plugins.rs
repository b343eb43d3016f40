//! The plugin registry over HTTP (every call needs the admin token):
//!
//! - `GET /v1/plugins`: every kept version of every plugin, and what each route serves;
//! - `PUT /v1/plugins/{name}[?activate=false]`: a new version, the component as the body;
//!   checked, kept, and made active on the routes that serve the plugin unless told not to;
//! - `POST /v1/plugins[?activate=false]`: the same, for whichever plugin the component
//!   names itself;
//! - `POST /v1/plugins/{name}/activate` with `{"version": "2.0.0"}` or `{"sha256": "…"}`;
//! - `POST /v1/plugins/{name}/rollback`.

use http::StatusCode;
use serde_json::{Value, json};

use super::problem::{self, Answer};
use crate::outcome::Activated;
use crate::registry::Selector;

/// The largest component an upload may carry (an interpreter-based plugin is tens of MB).
pub(super) const MAX_COMPONENT: usize = 256 << 20;

/// The body of `POST /v1/plugins/{name}/activate`: which version.
pub(super) fn selector(body: &[u8]) -> Result<Selector, Answer> {
    let bad = |detail: &str| {
        Answer::problem(
            StatusCode::BAD_REQUEST,
            "bad-request",
            "Bad request",
            detail,
            json!({}),
        )
    };
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad(&format!("the body is not JSON: {e}")))?;
    match (
        value.get("version").and_then(Value::as_str),
        value.get("sha256").and_then(Value::as_str),
    ) {
        (Some(version), None) => Ok(Selector::Version(version.to_owned())),
        (None, Some(sha)) => match Selector::parse(sha) {
            Selector::Sha256(sha) => Ok(Selector::Sha256(sha)),
            Selector::Version(_) => Err(bad("`sha256` is 12 to 64 hex digits")),
        },
        _ => Err(bad("give one of `version` and `sha256`, as a string")),
    }
}

/// What a push, an activation or a rollback answers.
pub(super) fn activated(outcome: Activated) -> Answer {
    match outcome {
        Activated::Serving {
            version,
            new,
            swaps,
        } => {
            let swaps: Vec<Value> = swaps
                .iter()
                .map(|s| json!({"route": s.route, "from": s.from, "to": s.to}))
                .collect();
            let status = if new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Answer::json(
                status,
                &json!({"status": "serving", "version": version, "swaps": swaps}),
            )
        }
        Activated::Kept { version, new } => {
            let status = if new {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Answer::json(status, &json!({"status": "kept", "version": version}))
        }
        Activated::Refused {
            name,
            sha256,
            reason,
        } => Answer::problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "candidate-refused",
            "Candidate refused",
            &reason.to_string(),
            json!({"plugin": name, "sha256": sha256, "code": reason.code()}),
        ),
        Activated::UnknownPlugin { name } => Answer::problem(
            StatusCode::NOT_FOUND,
            "unknown-plugin",
            "Unknown plugin",
            &format!("no route serves a plugin named `{name}`"),
            json!({}),
        ),
        Activated::UnknownVersion { name, selector } => Answer::problem(
            StatusCode::NOT_FOUND,
            "unknown-version",
            "Unknown version",
            &format!("the registry keeps no {selector} of `{name}`"),
            json!({}),
        ),
        Activated::Ambiguous { name, versions } => Answer::problem(
            StatusCode::CONFLICT,
            "ambiguous-version",
            "Ambiguous version",
            &format!("several components of `{name}` give that version; name one by its sha256"),
            json!({"versions": versions}),
        ),
        Activated::NothingToRollBack { name } => Answer::problem(
            StatusCode::CONFLICT,
            "nothing-to-roll-back",
            "Nothing to roll back",
            &format!("no route serving `{name}` has an earlier version"),
            json!({}),
        ),
        Activated::Unavailable(unavailable) => problem::unavailable(&unavailable),
    }
}
