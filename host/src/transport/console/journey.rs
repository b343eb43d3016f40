//! A message's page (its journey from the audit trail: received, translated by which version,
//! committed, each delivery attempt per sink, dead-lettered, replayed) and an entity's page
//! (its state at a chosen instant on either clock, and the timeline of its events, each with
//! its vendor message and plugin version). Pure rendering over the API's own answers.

use std::fmt::Write as _;

use serde_json::Value;

use super::html::{escape, message_link, pretty};

fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// What an audit event adds to the journey, in a line.
fn summary(event: &Value) -> String {
    let data = &event["data"];
    let field = |key: &str| text(&data[key]);
    match event["kind"].as_str().unwrap_or_default() {
        "received" => format!("on route {}", field("route")),
        "translated" => format!("by {}", field("plugin")),
        "committed" => format!(
            "{} event(s) for {}",
            data["events"].as_array().map_or(0, Vec::len),
            data["sinks"]
                .as_array()
                .map(|s| s.iter().map(text).collect::<Vec<_>>().join(", "))
                .unwrap_or_default()
        ),
        "publish_succeeded" => format!("delivered to {}", field("sink")),
        "publish_failed" => format!("to {}: {}", field("sink"), field("error")),
        "discarded" => field("reason"),
        "rejected" | "dead_lettered" | "replayed" => {
            let (plugin, error) = (field("plugin"), field("error"));
            match (plugin.is_empty(), error.is_empty()) {
                (false, false) => format!("by {plugin}: {error}"),
                (false, true) => format!("by {plugin}"),
                _ => error,
            }
        }
        _ => String::new(),
    }
}

/// A message's page: its state (`GET /v1/messages/{id}`'s answer, or its problem) and its
/// audit events in order; while a dead letter holds it, the form that discards that entry
/// with a reason.
pub(super) fn message(id: &str, state: &Value, history: &[Value], csrf: &str) -> String {
    let mut out = format!("<h1>Message {}</h1>", escape(id));
    let facts = state;
    let known = facts.get("status").is_some();
    if known {
        let _ = write!(
            out,
            "<p id=\"status\">Status <b>{}</b> on route <b>{}</b>, translated by <b>{}</b></p>",
            escape(&text(&facts["status"])),
            escape(&text(&facts["route"])),
            escape(&text(&facts["plugin"])),
        );
    } else if let Some(detail) = state["detail"].as_str() {
        let _ = write!(out, "<p class=\"error\">{}</p>", escape(detail));
    }
    if let Some(entry) = facts["dead_letter"].as_str() {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/console/messages/{path}/discard\" id=\"discard\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <input type=\"hidden\" name=\"dead_letter\" value=\"{entry}\">\
             Dead letter <b>{entry}</b>: <label>reason <input name=\"reason\" id=\"reason\" \
             required></label> <button type=\"submit\" id=\"discard-entry\">Discard</button></form>",
            path = escape(&crate::percent::encode(id)),
            csrf = escape(csrf),
            entry = escape(entry),
        );
    }
    out.push_str(
        "<h2>Journey</h2><table id=\"journey\"><thead><tr><th>#</th><th>When</th>\
         <th>What</th><th></th><th>Details</th></tr></thead><tbody>",
    );
    for event in history {
        let kind = text(&event["kind"]);
        let _ = write!(
            out,
            "<tr class=\"step kind-{kind}\"><td>{}</td><td>{}</td><td class=\"kind\">{kind}</td>\
             <td>{}</td><td><details><summary>data</summary><pre>{}</pre></details></td></tr>",
            escape(&text(&event["version"])),
            escape(&text(&event["at"])),
            escape(&summary(event)),
            pretty(&event["data"]),
            kind = escape(&kind),
        );
    }
    out.push_str("</tbody></table>");
    if facts.is_object() {
        let _ = write!(
            out,
            "<h2>State</h2><pre id=\"state\">{}</pre>",
            pretty(facts)
        );
    }
    out
}

/// An entity's page: the form for the instant and the clock, the state, and the timeline
/// (`GET /v1/entities/{type}/{id}?at=&time=`).
pub(super) fn entity(entity_type: &str, id: &str, at: &str, time: &str, answer: &Value) -> String {
    let mut out = format!(
        "<h1>{} {}</h1>\
         <form method=\"get\" id=\"instant\"><label>At <input name=\"at\" id=\"at\" value=\"{}\" \
         placeholder=\"now, or 2026-12-01T00:00:00Z\"></label> <label>Clock <select name=\"time\" \
         id=\"time\"><option value=\"committed\"{}>committed</option><option value=\"occurred\"{}>\
         occurred</option></select></label> <button type=\"submit\" id=\"show\">Show</button></form>",
        escape(entity_type),
        escape(id),
        escape(at),
        if time == "occurred" { "" } else { " selected" },
        if time == "occurred" { " selected" } else { "" },
    );
    if let Some(detail) = answer["detail"].as_str() {
        let _ = write!(
            out,
            "<p class=\"error\" id=\"problem\">{}</p>",
            escape(detail)
        );
        return out;
    }
    let _ = write!(
        out,
        "<h2>State</h2><p id=\"folded\">Folded by {} through event {}, {} applied</p>\
         <pre id=\"state\">{}</pre>",
        escape(&text(&answer["projector"])),
        escape(&text(&answer["through"])),
        escape(&text(&answer["applied"])),
        pretty(&answer["state"]),
    );
    out.push_str(
        "<h2>Timeline</h2><table id=\"timeline\"><thead><tr><th>#</th><th>Event</th>\
         <th>Committed</th><th>Occurred</th><th>Vendor message</th><th>Plugin</th>\
         <th>Outcome</th></tr></thead><tbody>",
    );
    for event in answer["events"].as_array().into_iter().flatten() {
        let provenance = &event["provenance"];
        let outcome = match &event["outcome"] {
            Value::String(s) => s.clone(),
            other => format!("refused: {}", text(&other["refused"]["message"])),
        };
        let _ = write!(
            out,
            "<tr class=\"event\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            escape(&text(&event["seq"])),
            escape(&text(&event["type"])),
            escape(&text(&event["committed_at"])),
            escape(&text(&event["occurred_at"])),
            message_link(&text(&provenance["message_id"])),
            escape(&text(&provenance["plugin"])),
            escape(&outcome),
        );
    }
    out.push_str("</tbody></table>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_journey_lists_each_step_in_order_with_markup_as_text() {
        let history = [
            json!({"version": 1, "at": "t1", "kind": "received", "data": {"route": "orders"}}),
            json!({"version": 2, "at": "t2", "kind": "translated", "data": {"plugin": "p@1.0.0"}}),
            json!({"version": 3, "at": "t3", "kind": "committed", "data": {"events": ["e"], "sinks": ["hook"], "note": "<script>x</script>"}}),
        ];
        let html = message("m<1>", &json!({"status": "published"}), &history, "t");
        assert!(
            !html.contains("id=\"discard\""),
            "no dead letter, no discard"
        );
        let held = message(
            "m1",
            &json!({"status": "dead_lettered", "dead_letter": "d1"}),
            &[],
            "t",
        );
        assert!(held.contains("name=\"dead_letter\" value=\"d1\""), "{held}");
        let kinds: Vec<&str> = html
            .match_indices("class=\"kind\">")
            .map(|(i, _)| &html[i + 13..i + 20])
            .collect();
        assert_eq!(kinds, ["receive", "transla", "committ"]);
        assert!(
            html.contains("by p@1.0.0") && html.contains("1 event(s) for hook"),
            "{html}"
        );
        assert!(
            !html.contains("<script>") && html.contains("m&lt;1&gt;"),
            "{html}"
        );
    }

    #[test]
    fn an_entity_s_timeline_names_each_event_s_message_and_plugin() {
        let answer = json!({"projector": "fold@1.0.0", "through": 2, "applied": 2,
            "state": {"status": "cancelled"},
            "events": [{"seq": 1, "type": "order.created.v1", "committed_at": "t1", "occurred_at": "t0",
                        "provenance": {"message_id": "m1", "plugin": "acme@1.0.0"}, "outcome": "applied"}]});
        let html = entity("order", "A-1", "", "occurred", &answer);
        assert!(html.contains("href=\"/console/messages/m1\""), "{html}");
        assert!(
            html.contains("<option value=\"occurred\" selected>"),
            "{html}"
        );
        assert!(html.contains("&quot;cancelled&quot;"), "{html}");
    }
}
