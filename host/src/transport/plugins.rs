//! The plugin registry over HTTP (every call needs the admin token):
//!
//! - `GET /v1/plugins`: every kept version of every plugin, and what each route serves;
//! - `PUT /v1/plugins/{name}[?activate=false|?canary=PERCENT|?shadow=true]`: a new version, the
//!   component as the body; checked, kept, and made active on the routes that serve the
//!   plugin (or only kept, or started as a canary for that share of their messages);
//! - `POST /v1/plugins[?…]`: the same, for whichever plugin the component names itself;
//! - `POST /v1/plugins/{name}/activate` with `{"version": "2.0.0"}` or `{"sha256": "…"}`
//!   (and `"canary_percent": N` for a canary);
//! - `POST /v1/plugins/{name}/rollback`: ends a canary where one runs, else goes back to
//!   the version before;
//! - `POST /v1/plugins/{name}/shadow` with a version as for `activate`: it translates the
//!   live messages in shadow; `GET` the report (counts and the latest differences with both
//!   outputs), `DELETE` stops it.
//!
//! A projector is pushed, activated and rolled back through the same calls (`"status":
//! "folding"`); it has no canary or shadow.

use http::StatusCode;
use serde_json::{Value, json};

use super::problem::{self, Answer, bad_request as bad};
use crate::outcome::Activated;
use crate::registry::{Selector, Serve};

/// `PUT /v1/plugins/{name}` (or `POST /v1/plugins`, `name` then from the component).
pub(super) async fn upload<B>(
    api: &super::Inner,
    parts: &http::request::Parts,
    body: B,
    name: Option<&str>,
) -> Answer
where
    B: hyper::body::Body<Data = bytes::Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send,
{
    let wasm =
        match super::body::read(&parts.headers, body, crate::plugin::MAX_COMPONENT_BYTES).await {
            Ok(incoming) => incoming.body,
            Err(refusal) => return problem::refusal(&refusal),
        };
    let asked = |key| super::routes::query(parts.uri.query(), key);
    let (activate, canary, shadow) = (asked("activate"), asked("canary"), asked("shadow"));
    match serve(activate.as_deref(), canary.as_deref(), shadow.as_deref()) {
        Ok(serve) => activated(api.pipeline.push(name, wasm, serve).await),
        Err(answer) => answer,
    }
}

/// A canary's share: a whole percent from 1 to 99.
fn percent(value: &str) -> Result<u8, Answer> {
    value
        .trim()
        .parse::<u8>()
        .ok()
        .filter(|p| (1..=99).contains(p))
        .ok_or_else(|| bad("a canary's share is a whole percent from 1 to 99"))
}

/// What an upload asks for: `?activate=false` keeps it, `?canary=PERCENT` starts a canary,
/// `?shadow=true` a shadow, else it is made active.
pub(super) fn serve(
    activate: Option<&str>,
    canary: Option<&str>,
    shadow: Option<&str>,
) -> Result<Serve, Answer> {
    match (activate, canary) {
        _ if shadow == Some("true") => Ok(Serve::Shadow),
        (_, Some(canary)) => percent(canary).map(Serve::Canary),
        (Some("false"), None) => Ok(Serve::Keep),
        (Some("true") | None, None) => Ok(Serve::Activate),
        (Some(_), None) => Err(bad("`activate` is true or false")),
    }
}

/// The body of `POST /v1/plugins/{name}/activate`: which version, and with
/// `"canary_percent"` as a canary.
pub(super) fn selector(body: &[u8]) -> Result<(Selector, Serve), Answer> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad(&format!("the body is not JSON: {e}")))?;
    let serve = match value.get("canary_percent") {
        None => Serve::Activate,
        Some(p) => Serve::Canary(percent(&p.to_string())?),
    };
    let selector = match (
        value.get("version").and_then(Value::as_str),
        value.get("sha256").and_then(Value::as_str),
    ) {
        (Some(version), None) => Selector::Version(version.to_owned()),
        (None, Some(sha)) => match Selector::parse(sha) {
            Selector::Sha256(sha) => Selector::Sha256(sha),
            Selector::Version(_) => return Err(bad("`sha256` is 12 to 64 hex digits")),
        },
        _ => return Err(bad("give one of `version` and `sha256`, as a string")),
    };
    Ok((selector, serve))
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
            Answer::json(
                created(new),
                &json!({"status": "serving", "version": version, "swaps": swaps}),
            )
        }
        Activated::Folding {
            version,
            new,
            changed,
        } => {
            let changed: Vec<Value> = changed
                .iter()
                .map(|c| json!({"entity_type": c.entity_type, "from": c.from, "to": c.to}))
                .collect();
            Answer::json(
                created(new),
                &json!({"status": "folding", "version": version, "changed": changed}),
            )
        }
        Activated::NotForProjectors { name, asked } => Answer::problem(
            StatusCode::CONFLICT,
            "not-for-projectors",
            "Not for projectors",
            &format!(
                "`{name}` is a projector, which cannot serve as a {asked}: a read is not a \
                 message whose outcome can be judged; push it to activate, or keep it"
            ),
            json!({"plugin": name}),
        ),
        Activated::Canary {
            version,
            new,
            percent,
            routes,
        } => Answer::json(
            created(new),
            &json!({"status": "canary", "version": version, "percent": percent, "routes": routes}),
        ),
        Activated::Shadowing {
            version,
            new,
            routes,
        } => Answer::json(
            created(new),
            &json!({"status": "shadowing", "version": version, "routes": routes}),
        ),
        Activated::ShadowStopped { name, routes } => Answer::json(
            StatusCode::OK,
            &json!({"status": "shadow_stopped", "plugin": name, "routes": routes}),
        ),
        Activated::CanaryEnded { name, routes } => Answer::json(
            StatusCode::OK,
            &json!({"status": "canary_ended", "plugin": name, "routes": routes}),
        ),
        Activated::Kept { version, new } => {
            Answer::json(created(new), &json!({"status": "kept", "version": version}))
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

/// `201` for a version the registry received just now, `200` for one it had.
fn created(new: bool) -> StatusCode {
    if new {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    }
}
