//! Replay pinned to a version over HTTP (admin token):
//!
//! - `POST /v1/dlq/{id}/replay` with an optional body `{"version": "2.0.0"}` or
//!   `{"sha256": "…"}`: one entry through that kept version of its route's plugin;
//! - `POST /v1/dlq/replay` with `{"filter": {"route", "code", "plugin", "since", "until"},
//!   "version" or "sha256", "dry_run": true}`: every matching translation entry of the
//!   route, dry run (what each would become) or for real.

use http::StatusCode;
use jiff::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

use super::problem::{self, Answer, bad_request as bad};
use crate::ReplayFilter;
use crate::outcome::{ItemOutcome, Replayed, ReplayedBatch};
use crate::registry::Selector;

/// The largest body a replay call takes.
pub(super) const MAX_BODY: usize = 64 << 10;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Batch {
    filter: Filter,
    version: Option<String>,
    sha256: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Filter {
    route: String,
    code: Option<String>,
    plugin: Option<String>,
    since: Option<Timestamp>,
    until: Option<Timestamp>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Target {
    version: Option<String>,
    sha256: Option<String>,
}

fn selector(version: Option<String>, sha256: Option<String>) -> Result<Option<Selector>, Answer> {
    match (version, sha256) {
        (None, None) => Ok(None),
        (Some(version), None) => Ok(Some(Selector::Version(version))),
        (None, Some(sha)) => match Selector::parse(&sha) {
            selector @ Selector::Sha256(_) => Ok(Some(selector)),
            Selector::Version(_) => Err(bad("`sha256` is 12 to 64 hex digits")),
        },
        (Some(_), Some(_)) => Err(bad("give `version` or `sha256`, not both")),
    }
}

/// The target of a single replay: none for an empty body.
pub(super) fn target(body: &[u8]) -> Result<Option<Selector>, Answer> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let target: Target =
        serde_json::from_slice(body).map_err(|e| bad(&format!("the body: {e}")))?;
    selector(target.version, target.sha256)
}

/// The filter, target and mode of a batch.
pub(super) fn batch(body: &[u8]) -> Result<(ReplayFilter, Option<Selector>, bool), Answer> {
    let batch: Batch = serde_json::from_slice(body).map_err(|e| bad(&format!("the body: {e}")))?;
    let filter = ReplayFilter {
        route: batch.filter.route,
        code: batch.filter.code,
        plugin: batch.filter.plugin,
        since: batch.filter.since,
        until: batch.filter.until,
    };
    Ok((
        filter,
        selector(batch.version, batch.sha256)?,
        batch.dry_run,
    ))
}

/// What a batch answers: each entry with its outcome, and the counts.
pub(super) fn replayed_batch(outcome: ReplayedBatch) -> Answer {
    match outcome {
        ReplayedBatch::Done {
            target,
            dry_run,
            items,
        } => {
            let mut counts = serde_json::Map::new();
            let items: Vec<Value> = items
                .into_iter()
                .map(|item| {
                    let (kind, detail) = item_outcome(item.outcome);
                    let count = counts.entry(kind.clone()).or_insert(json!(0));
                    *count = json!(count.as_u64().unwrap_or(0) + 1);
                    json!({
                        "dead_letter": item.dead_letter,
                        "message_id": item.message_id,
                        "outcome": kind,
                        "detail": detail,
                    })
                })
                .collect();
            Answer::json(
                StatusCode::OK,
                &json!({
                    "target": target, "dry_run": dry_run, "matched": items.len(),
                    "counts": counts, "items": items,
                }),
            )
        }
        ReplayedBatch::UnknownRoute { route } => {
            problem::refusal(&crate::outcome::Refusal::UnknownRoute { route })
        }
        ReplayedBatch::Target(refused) => super::plugins::activated(*refused),
        ReplayedBatch::Unavailable(unavailable) => problem::unavailable(&unavailable),
    }
}

/// An entry's outcome: its kind, and what goes with it.
fn item_outcome(outcome: ItemOutcome) -> (String, Value) {
    match outcome {
        ItemOutcome::Events(events) => ("would_accept".into(), json!({ "events": events })),
        ItemOutcome::Refused { code, message } => (
            "would_reject".into(),
            json!({"code": code, "message": message}),
        ),
        ItemOutcome::Fault(detail) => ("would_fault".into(), json!({ "error": detail })),
        ItemOutcome::Replayed(Replayed::Accepted(accepted)) => (
            "accepted".into(),
            json!({"message_id": accepted.message_id, "events": accepted.events}),
        ),
        ItemOutcome::Replayed(Replayed::RejectedAgain(rejected)) => (
            "rejected_again".into(),
            json!({"code": rejected.code, "error": rejected.error}),
        ),
        ItemOutcome::Replayed(Replayed::InProgress { .. }) => ("in_progress".into(), json!({})),
        ItemOutcome::Replayed(Replayed::NotFound { .. }) => ("gone".into(), json!({})),
        ItemOutcome::Replayed(other) => ("not_replayed".into(), json!(format!("{other:?}"))),
    }
}
