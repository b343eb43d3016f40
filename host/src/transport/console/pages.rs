//! What each page reads or does through the host's own operations (the same calls and answers
//! as the API's), handed to the pure renderers beside it.

use std::time::Instant;

use super::overview::Overview;
use super::session::Session;
use super::{Form, dead_letters, html, journey, plugins};
use crate::transport::Inner;

/// What the overview shows, read now: the counters and gauges are atomics the hot path
/// already keeps; the entity types are one store read.
pub(super) async fn gather(api: &Inner, session: &Session, now: Instant) -> Overview {
    let topology = api
        .pipeline
        .topology_model(&api.sinks, &api.sources.labels())
        .await
        .unwrap_or_default();
    let metrics = api.pipeline.metrics();
    let counts = topology
        .routes
        .keys()
        .map(|route| {
            let mut counts = metrics.route_counts(route);
            counts.latency = api.pipeline.route_latency(route).unwrap_or_default();
            (route.clone(), counts)
        })
        .collect();
    Overview {
        routes: api.console.rates.rows(counts, now),
        breakers: api
            .breakers
            .iter()
            .map(|(name, breaker)| (name.clone(), breaker.state().name()))
            .collect(),
        pending: topology
            .sinks
            .keys()
            .map(|sink| (sink.clone(), metrics.sink_pending(sink)))
            .collect(),
        outbox: metrics.outbox(),
        csrf: session.csrf.clone(),
        topology,
    }
}

/// The dead letters the query's filter matches (every entry, a page of them, without a
/// route), and the kept versions a replay may go through.
pub(super) async fn list(api: &Inner, query: &Form, session: &Session) -> dead_letters::List {
    let filter = dead_letters::FilterForm::read(query);
    let mut list = dead_letters::List {
        routes: route_names(api),
        csrf: session.csrf.clone(),
        ..dead_letters::List::default()
    };
    let found = match filter.filter() {
        Err(error) => Err(error),
        Ok(None) => api
            .pipeline
            .dead_letters(None, dead_letters::SHOWN)
            .await
            .map_err(|e| e.to_string()),
        Ok(Some(replay)) => {
            list.versions = kept_versions(api, &replay.route).await;
            api.pipeline
                .dead_letters_matching(replay)
                .await
                .map_err(|e| e.to_string())
        }
    };
    match found {
        Ok(entries) => list.entries = entries,
        Err(error) => list.error = Some(error),
    }
    list.filter = filter;
    list
}

/// The routes' names.
pub(super) fn route_names(api: &Inner) -> Vec<String> {
    crate::transport::topology::routes(api)["routes"]
        .as_object()
        .map(|routes| routes.keys().cloned().collect())
        .unwrap_or_default()
}

/// The kept versions of the plugin `route` serves, the newest received first.
pub(super) async fn kept_versions(api: &Inner, route: &str) -> Vec<String> {
    let Ok(listed) = api.pipeline.plugins().await else {
        return Vec::new();
    };
    let Some(entry) = listed
        .as_object()
        .into_iter()
        .flatten()
        .map(|(_, entry)| entry)
        .find(|entry| entry["routes"].get(route).is_some())
    else {
        return Vec::new();
    };
    let mut versions: Vec<(String, String)> = entry["versions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            let text = |key: &str| v[key].as_str().unwrap_or_default().to_owned();
            (text("received_at"), text("version"))
        })
        .collect();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .map(|(_, version)| version)
        .collect()
}

/// A dry run or a replay of the selection: every entry that matches the filter, or the ones
/// ticked.
pub(super) async fn replay(api: &Inner, form: &Form) -> String {
    let dry_run = form.get("mode") != Some("replay");
    let filter = match dead_letters::FilterForm::read(form).filter() {
        Ok(Some(filter)) => filter,
        Ok(None) => return "<p class=\"error\">Choose a route first.</p>".to_owned(),
        Err(error) => return format!("<p class=\"error\">{}</p>", html::escape(&error)),
    };
    let target = form
        .get("version")
        .filter(|v| !v.is_empty())
        .map(|v| crate::registry::Selector::Version(v.to_owned()));
    let all = form.get("all") == Some("on");
    let ticked: std::collections::BTreeSet<&str> = form.all("id").collect();
    if !all && ticked.is_empty() {
        return "<p class=\"error\" id=\"problem\">Nothing selected: tick entries, or select all that match.</p>"
            .to_owned();
    }
    let mut answer = if all || dry_run {
        crate::transport::replay::replayed_batch(
            api.pipeline.replay_batch(filter, target, dry_run).await,
        )
        .json_body()
    } else {
        let mut items = Vec::new();
        let mut counts = serde_json::Map::new();
        for id in &ticked {
            let item = replay_one(api, id, target.clone()).await;
            let kind = item["outcome"].as_str().unwrap_or_default().to_owned();
            let count = counts.entry(kind).or_insert(serde_json::json!(0));
            *count = serde_json::json!(count.as_u64().unwrap_or(0) + 1);
            items.push(item);
        }
        serde_json::json!({
            "target": form.get("version").unwrap_or("the active version"),
            "matched": items.len(), "counts": counts, "items": items,
        })
    };
    if !all && let Some(items) = answer["items"].as_array_mut() {
        items.retain(|item| {
            item["dead_letter"]
                .as_str()
                .is_some_and(|id| ticked.contains(id))
        });
        answer["matched"] = serde_json::json!(items.len());
    }
    dead_letters::render_outcome(&answer, dry_run, form)
}

/// Activates a kept version of `name` (or rolls it back), and shows the outcome with the
/// audit entry it wrote.
pub(super) async fn change_plugin(api: &Inner, name: &str, action: &str, form: &Form) -> String {
    let version = form.get("version");
    let outcome = if action == "rollback" {
        api.pipeline.rollback(name).await
    } else {
        let Some(version) = version.filter(|v| !v.is_empty()) else {
            return "<p class=\"error\">Which version?</p>".to_owned();
        };
        let selector = crate::registry::Selector::Version(version.to_owned());
        let serve = if action == "canary" {
            match form
                .get("percent")
                .and_then(|p| p.trim().parse::<u8>().ok())
            {
                Some(percent @ 1..=99) => crate::registry::Serve::Canary(percent),
                _ => return "<p class=\"error\">A canary serves 1 to 99 percent.</p>".to_owned(),
            }
        } else {
            crate::registry::Serve::Activate
        };
        api.pipeline.activate(name, selector, serve).await
    };
    let answer = crate::transport::plugins::activated(outcome);
    let body = answer.json_body();
    // A change is recorded in the stream of each route it swapped (`route:NAME`).
    let mut audit = Vec::new();
    if answer.status().is_success() {
        for swap in body["swaps"].as_array().into_iter().flatten() {
            let Some(route) = swap["route"].as_str() else {
                continue;
            };
            if let Ok(events) = api.pipeline.history(&format!("route:{route}")).await
                && let Some(last) = events.last()
            {
                audit.push(serde_json::json!(last));
            }
        }
    }
    tracing::warn!(
        plugin = name,
        action,
        version,
        "an operator changed a plugin from the console"
    );
    let audit = (!audit.is_empty()).then_some(serde_json::Value::Array(audit));
    plugins::outcome(answer.status().as_u16(), &body, audit.as_ref())
}

/// A message's page: its state and its audit events, in order.
pub(super) async fn message(api: &Inner, id: &str, session: &Session) -> String {
    let state = crate::transport::routes::message_state(api, id, None)
        .await
        .json_body();
    let history = match api.pipeline.history(id).await {
        Ok(events) => events.iter().map(|e| serde_json::json!(e)).collect(),
        Err(_) => Vec::new(),
    };
    journey::message(id, &state, &history, &session.csrf)
}

/// An entity's page at the query's instant (`at`, `time`).
pub(super) async fn entity(api: &Inner, entity_type: &str, id: &str, query: &Form) -> String {
    let at = query.get("at").unwrap_or_default().trim();
    let time = query.get("time").unwrap_or("committed");
    let answer = match crate::transport::entities::StateQuery::parse(
        (!at.is_empty()).then_some(at),
        Some(time),
        Some("all"),
    ) {
        Ok(asked) => crate::transport::entities::state(&api.projections, entity_type, id, asked)
            .await
            .json_body(),
        Err(error) => serde_json::json!({ "detail": error }),
    };
    journey::entity(entity_type, id, at, time, &answer)
}

/// Discards the dead letter the form names, with its reason; `Err` with what to show when it
/// could not.
pub(super) async fn discard(api: &Inner, form: &Form) -> Result<(), String> {
    let entry = form.get("dead_letter").unwrap_or_default();
    let reason = form.get("reason").unwrap_or_default().trim();
    if reason.is_empty() {
        return Err("A discard needs a reason.".into());
    }
    match api.pipeline.discard(entry, Some(reason)).await {
        crate::outcome::Discarded::Discarded => {
            tracing::warn!(
                dead_letter = entry,
                "an operator discarded a dead letter from the console"
            );
            Ok(())
        }
        other => Err(
            crate::transport::problem::discarded(other, entry).json_body()["detail"]
                .as_str()
                .unwrap_or("the entry could not be discarded")
                .to_owned(),
        ),
    }
}

/// Replays one entry through `target` (the active version when `None`): the entry, its
/// message, `accepted` or `refused`, and the API's answer.
pub(super) async fn replay_one(
    api: &Inner,
    id: &str,
    target: Option<crate::registry::Selector>,
) -> serde_json::Value {
    let outcome = api.pipeline.replay_pinned(id, target).await;
    let answer = crate::transport::problem::replayed(outcome).json_body();
    let kind = if answer.get("detail").is_some() {
        "refused"
    } else {
        "accepted"
    };
    serde_json::json!({
        "dead_letter": id, "message_id": answer["message_id"], "outcome": kind,
        "detail": answer,
    })
}
