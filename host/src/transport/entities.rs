//! `GET /v1/entities/{type}/{id}/events`: an entity's stream, in commit order, each event with
//! where it came from (the vendor message, the route, the plugin version that translated it).
//! `GET /v1/entities/{type}/{id}[?at=RFC3339&time=committed|occurred&events=all|none]`: its
//! state at an instant, folded by its type's projector, with the events that made it and
//! those the projector refused.

use http::StatusCode;
use jiff::Timestamp;
use serde_json::json;

use super::problem::{self, Answer};
use crate::pipeline::Pipeline;
use crate::projection::{Basis, EntityState, ProjectionError, Projections};
use crate::storage::{EntityEvent, EntityRef};

/// What a state read asks for, from its query.
pub(super) struct StateQuery {
    at: Option<Timestamp>,
    basis: Basis,
    events: bool,
}

impl StateQuery {
    /// `at`, `time` and `events`, or a sentence saying which is wrong.
    pub(super) fn parse(
        at: Option<&str>,
        time: Option<&str>,
        events: Option<&str>,
    ) -> Result<Self, String> {
        let at = at
            .map(|t| {
                t.parse::<Timestamp>()
                    .map_err(|e| format!("`at` is not an RFC 3339 instant: {e}"))
            })
            .transpose()?;
        let basis = match time {
            None | Some("committed") => Basis::Committed,
            Some("occurred") => Basis::Occurred,
            Some(other) => {
                return Err(format!(
                    "`time` is `committed` or `occurred`, not `{other}`"
                ));
            }
        };
        let events = match events {
            None | Some("all") => true,
            Some("none") => false,
            Some(other) => return Err(format!("`events` is `all` or `none`, not `{other}`")),
        };
        Ok(Self { at, basis, events })
    }
}

/// The state of `entity_type`/`id` at the query's instant.
pub(super) async fn state(
    projections: &Projections,
    entity_type: &str,
    id: &str,
    query: StateQuery,
) -> Answer {
    let entity = EntityRef {
        entity_type: entity_type.to_owned(),
        id: id.to_owned(),
    };
    let projections = projections.clone();
    let read = {
        let entity = entity.clone();
        tokio::task::spawn_blocking(move || {
            let state = projections.state_at(&entity, query.at, query.basis)?;
            let events = if query.events {
                Some(projections.storage().entity_stream(&entity)?)
            } else {
                None
            };
            Ok::<_, ProjectionError>((state, events))
        })
    };
    match read.await {
        Ok(Ok((state, events))) => Answer::json(
            StatusCode::OK,
            &shown_state(&state, query.at, query.basis, events.as_deref()),
        ),
        Ok(Err(ProjectionError::UnknownEntity { .. })) => {
            problem::not_found("entity", &entity.label())
        }
        Ok(Err(ProjectionError::NoProjector { entity_type })) => Answer::problem(
            StatusCode::NOT_FOUND,
            "no-projector",
            "No projector",
            &format!(
                "no projector folds entity type `{entity_type}`: add a `[projectors.{entity_type}]` table"
            ),
            json!({"entity_type": entity_type}),
        ),
        Ok(Err(ProjectionError::Fault(fault))) => Answer::problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "projector-fault",
            "Projector fault",
            &fault.to_string(),
            json!({"projector": fault.plugin()}),
        ),
        Ok(Err(e)) => problem::internal(&e.to_string()),
        Err(e) => problem::internal(&format!("the read did not finish: {e}")),
    }
}

/// A state as the API shows it: the state, how it was folded, and (when asked) every event of
/// the stream up to the instant with its outcome: `applied`, `refused` with the projector's
/// reason, or `later` (event time: it happened after the instant).
fn shown_state(
    state: &EntityState,
    at: Option<Timestamp>,
    basis: Basis,
    events: Option<&[EntityEvent]>,
) -> serde_json::Value {
    let value: serde_json::Value =
        serde_json::from_str(&state.state).unwrap_or_else(|_| json!(state.state.clone()));
    let mut out = json!({
        "entity": {"type": state.entity.entity_type, "id": state.entity.id},
        "at": at,
        "time": match basis { Basis::Committed => "committed", Basis::Occurred => "occurred" },
        "projector": state.projector,
        "state": value,
        "through": state.through,
        "refused": state.refused,
        "snapshot": state.snapshot,
        "applied": state.applied,
    });
    if let Some(events) = events {
        let listed: Vec<serde_json::Value> = events
            .iter()
            .filter(|e| e.seq <= state.through)
            .map(|e| {
                let mut shown = shown(e);
                shown["outcome"] = if !state.counts(e.seq) {
                    json!("later")
                } else if let Some(r) = state.refused.iter().find(|r| r.seq == e.seq) {
                    json!({"refused": {"code": r.code, "message": r.message}})
                } else {
                    json!("applied")
                };
                shown
            })
            .collect();
        out["events"] = json!(listed);
    }
    out
}

/// The stream of `entity_type`/`id`; 404 for an entity no event was ever about.
pub(super) async fn events(pipeline: &Pipeline, entity_type: &str, id: &str) -> Answer {
    let entity = EntityRef {
        entity_type: entity_type.to_owned(),
        id: id.to_owned(),
    };
    match pipeline.entity_stream(entity.clone()).await {
        Ok(events) if events.is_empty() => problem::not_found("entity", &entity.label()),
        Ok(events) => Answer::json(
            StatusCode::OK,
            &json!({
                "entity": {"type": entity.entity_type, "id": entity.id},
                "events": events.iter().map(shown).collect::<Vec<_>>(),
            }),
        ),
        Err(e) => problem::internal(&e.to_string()),
    }
}

/// One event as the API shows it: its data as JSON, its provenance spelled out.
pub(super) fn shown(event: &EntityEvent) -> serde_json::Value {
    let e = &event.event;
    let data: serde_json::Value =
        serde_json::from_str(&e.data).unwrap_or_else(|_| json!(e.data.clone()));
    json!({
        "seq": event.seq,
        "id": e.id,
        "type": e.event_type,
        "data": data,
        "committed_at": event.committed_at,
        "occurred_at": event.occurred_at,
        "provenance": {
            "message_id": e.message_id,
            "route": e.route,
            "plugin": e.producer.as_ref().map(|p| p.label()),
            "plugin_sha256": e.producer.as_ref().map(|p| p.sha256.clone()),
        },
        "hash": event.hash,
    })
}
