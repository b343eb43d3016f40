//! `GET /v1/topology[?format=json|mermaid|dot]`: the routes, plugins and sinks as JSON (as
//! `GET /v1/routes`), or drawn: vendors, translators with their active versions, the
//! domain's entity types and the sinks (`crate::topology`).

use http::StatusCode;
use serde_json::json;

use super::Inner;
use super::problem::{self, Answer};
use crate::topology::Format;

pub(super) async fn answer(api: &Inner, format: Option<&str>) -> Answer {
    let format = match format {
        None | Some("json") => {
            return Answer::json(StatusCode::OK, &routes(api));
        }
        Some(name) => match Format::parse(name) {
            Some(format) => format,
            None => {
                return Answer::problem(
                    StatusCode::BAD_REQUEST,
                    "bad-request",
                    "Bad request",
                    &format!("format `{name}` is none of json, mermaid and dot"),
                    json!({}),
                );
            }
        },
    };
    match api
        .pipeline
        .topology_picture(&api.sinks, &api.sources.labels(), format)
        .await
    {
        Ok(picture) => {
            let media_type = match format {
                Format::Mermaid => "text/vnd.mermaid; charset=utf-8",
                Format::Dot => "text/vnd.graphviz; charset=utf-8",
            };
            Answer::text(StatusCode::OK, media_type, picture)
        }
        Err(e) => problem::internal(&e.to_string()),
    }
}

/// The routes and sinks as JSON, each route with its source and the source's state.
pub(super) fn routes(api: &Inner) -> serde_json::Value {
    let mut topology = api.pipeline.topology(&api.sinks);
    if let Some(routes) = topology["routes"].as_object_mut() {
        for (name, route) in routes.iter_mut() {
            if let (Some(source), Some(route)) = (api.sources.describe(name), route.as_object_mut())
            {
                route.insert("source".into(), source);
            }
        }
    }
    topology
}
