//! `GET /v1/entities/{type}/{id}/events`: an entity's stream, in commit order, each event with
//! where it came from (the vendor message, the route, the plugin version that translated it).

use http::StatusCode;
use serde_json::json;

use super::problem::{self, Answer};
use crate::pipeline::Pipeline;
use crate::storage::{EntityEvent, EntityRef};

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
        "committed_at": e.time,
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
