//! The dead letters page: entries filtered by route, code, plugin version and time, each with
//! its fault and provenance; every entry that matches the filter selected at once (not only
//! the page shown), a dry run through a chosen kept version that says what each would become
//! and stores nothing, then the replay, entry by entry, with each one's outcome.

use std::fmt::Write as _;

use jiff::Timestamp;
use serde_json::Value;

use super::Form;
use super::html::{escape, message_link, pretty};
use crate::ReplayFilter;
use crate::storage::DeadLetter;

/// Rows shown on one page; a selection of all that match takes the rest too.
pub(super) const SHOWN: usize = 100;

/// The filter as the form holds it (text, so that a bad value shows as typed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct FilterForm {
    pub(super) route: String,
    pub(super) code: String,
    pub(super) plugin: String,
    pub(super) since: String,
    pub(super) until: String,
}

impl FilterForm {
    /// The fields of a query string or a posted form.
    pub(super) fn read(form: &Form) -> Self {
        let field = |name| form.get(name).unwrap_or_default().trim().to_owned();
        Self {
            route: field("route"),
            code: field("code"),
            plugin: field("plugin"),
            since: field("since"),
            until: field("until"),
        }
    }

    /// The replay filter, when a route is chosen; an error for a time that is not RFC 3339.
    pub(super) fn filter(&self) -> Result<Option<ReplayFilter>, String> {
        if self.route.is_empty() {
            return Ok(None);
        }
        let time = |name: &str, text: &str| {
            (!text.is_empty())
                .then(|| {
                    text.parse::<Timestamp>()
                        .map_err(|e| format!("`{name}` is not an RFC 3339 instant: {e}"))
                })
                .transpose()
        };
        let some = |text: &str| (!text.is_empty()).then(|| text.to_owned());
        Ok(Some(ReplayFilter {
            route: self.route.clone(),
            code: some(&self.code),
            plugin: some(&self.plugin),
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
        }))
    }

    /// The filter as hidden fields of a form.
    fn hidden(&self) -> String {
        [
            ("route", &self.route),
            ("code", &self.code),
            ("plugin", &self.plugin),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .iter()
        .map(|(name, value)| {
            format!(
                "<input type=\"hidden\" name=\"{name}\" value=\"{}\">",
                escape(value)
            )
        })
        .collect()
    }
}

/// What the list shows.
#[derive(Debug, Clone, Default)]
pub(super) struct List {
    pub(super) routes: Vec<String>,
    pub(super) filter: FilterForm,
    /// What the filter matched (every entry when no route is chosen), oldest first.
    pub(super) entries: Vec<DeadLetter>,
    /// The kept versions of the chosen route's plugin, newest first.
    pub(super) versions: Vec<String>,
    /// Why the filter could not be applied.
    pub(super) error: Option<String>,
    pub(super) csrf: String,
}

/// The list page's main section.
pub(super) fn render(list: &List) -> String {
    let mut out = String::from("<h1>Dead letters</h1>");
    out.push_str(&filter_form(list));
    if let Some(error) = &list.error {
        let _ = write!(out, "<p class=\"error\">{}</p>", escape(error));
    }
    let chosen = !list.filter.route.is_empty();
    let _ = write!(
        out,
        "<p id=\"matched\">{} {}{}</p>",
        list.entries.len(),
        if chosen {
            "match the filter"
        } else {
            "entries (choose a route to select and replay)"
        },
        if list.entries.len() > SHOWN {
            format!(", the first {SHOWN} shown")
        } else {
            String::new()
        }
    );
    if chosen {
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/console/dead-letters/replay\" id=\"replay-form\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">{}\
             <p class=\"bulk\"><label><input type=\"checkbox\" name=\"all\" value=\"on\" \
             id=\"select-all\"> Select all {} that match the filter (not only this page)</label> \
             <label>through version <select name=\"version\" id=\"version\">{}</select></label> \
             <button type=\"submit\" name=\"mode\" value=\"dry-run\" id=\"dry-run\">Dry run</button> \
             <button type=\"submit\" name=\"mode\" value=\"replay\" id=\"replay\">Replay</button></p>",
            escape(&list.csrf),
            list.filter.hidden(),
            list.entries.len(),
            list.versions
                .iter()
                .map(|v| format!("<option value=\"{v}\">{v}</option>", v = escape(v)))
                .collect::<String>(),
        );
    }
    out.push_str(
        "<table id=\"dead-letters\"><thead><tr><th></th><th>Entry</th><th>Made</th>\
         <th>Route</th><th>Code</th><th>Plugin</th><th>Fault</th><th>Attempts</th></tr>\
         </thead><tbody>",
    );
    for entry in list.entries.iter().take(SHOWN) {
        let select = if chosen {
            format!(
                "<input type=\"checkbox\" name=\"id\" value=\"{}\">",
                escape(&entry.id)
            )
        } else {
            String::new()
        };
        let _ = write!(
            out,
            "<tr class=\"entry\"><td>{select}</td><td><a href=\"/console/messages/{message}\">{id}</a></td>\
             <td>{made}</td><td>{route}</td><td>{code}</td><td title=\"{sha}\">{plugin}</td>\
             <td>{error}</td><td>{attempts}</td></tr>",
            message = escape(&crate::percent::encode(&entry.message_id)),
            id = escape(&entry.id),
            made = entry.created_at,
            route = escape(&entry.route),
            code = escape(&entry.code),
            sha = escape(&entry.plugin_sha256),
            plugin = escape(&entry.plugin),
            error = escape(&entry.error),
            attempts = entry.attempts,
        );
    }
    out.push_str("</tbody></table>");
    if chosen {
        out.push_str("</form>");
    }
    out
}

fn filter_form(list: &List) -> String {
    let routes: String = list
        .routes
        .iter()
        .map(|r| {
            let selected = if *r == list.filter.route {
                " selected"
            } else {
                ""
            };
            format!(
                "<option value=\"{r}\"{selected}>{r}</option>",
                r = escape(r)
            )
        })
        .collect();
    let field = |name: &str, label: &str, value: &str, hint: &str| {
        format!(
            "<label>{label} <input name=\"{name}\" id=\"filter-{name}\" value=\"{}\" \
             placeholder=\"{hint}\"></label> ",
            escape(value)
        )
    };
    format!(
        "<form method=\"get\" action=\"/console/dead-letters\" id=\"filter\">\
         <label>Route <select name=\"route\" id=\"filter-route\"><option value=\"\">any</option>\
         {routes}</select></label> {}{}{}{}<button type=\"submit\" id=\"apply\">Filter</button></form>",
        field("code", "Code", &list.filter.code, "missing-field"),
        field("plugin", "Plugin version", &list.filter.plugin, "1.0.0"),
        field("since", "Since", &list.filter.since, "2026-12-01T00:00:00Z"),
        field("until", "Until", &list.filter.until, ""),
    )
}

/// A dry run's or a replay's outcome, as the API answers it (`/v1/dlq/replay`): each entry
/// with what it would become or became. A dry run's page offers the replay of the same
/// selection.
pub(super) fn render_outcome(answer: &Value, dry_run: bool, again: &Form) -> String {
    let mut out = String::new();
    if dry_run {
        out.push_str(
            "<h1>Dry run</h1><p id=\"stored\">Nothing was stored: this is what each entry \
             would become.</p>",
        );
    } else {
        out.push_str("<h1>Replayed</h1>");
    }
    if let Some(problem) = answer.get("detail").and_then(Value::as_str) {
        let _ = write!(
            out,
            "<p class=\"error\" id=\"problem\">{}</p>",
            escape(problem)
        );
        return out;
    }
    let counts: Vec<String> = answer["counts"]
        .as_object()
        .map(|counts| {
            counts
                .iter()
                .map(|(k, v)| format!("{} {}", v, escape(k)))
                .collect()
        })
        .unwrap_or_default();
    let _ = write!(
        out,
        "<p id=\"counts\" data-target=\"{target}\">Through <b>{target}</b>: {} of {} matched.</p>\
         <p id=\"progress\"></p>",
        if counts.is_empty() {
            "none".to_owned()
        } else {
            counts.join(", ")
        },
        answer["matched"].as_u64().unwrap_or(0),
        target = escape(&producer(&answer["target"])),
    );
    if dry_run {
        let fields: String = again
            .pairs()
            .filter(|(name, _)| *name != "mode")
            .map(|(name, value)| {
                format!(
                    "<input type=\"hidden\" name=\"{}\" value=\"{}\">",
                    escape(name),
                    escape(value)
                )
            })
            .collect();
        let _ = write!(
            out,
            "<form method=\"post\" action=\"/console/dead-letters/replay\" data-progress>{fields}\
             <button type=\"submit\" name=\"mode\" value=\"replay\" id=\"replay-now\">Replay \
             these now</button></form>"
        );
    }
    out.push_str(
        "<table id=\"outcomes\"><thead><tr><th>Entry</th><th>Message</th><th>Outcome</th>\
         <th>What</th></tr></thead><tbody>",
    );
    for item in answer["items"].as_array().into_iter().flatten() {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let _ = write!(
            out,
            "<tr class=\"outcome\" data-entry=\"{entry}\"><td>{entry}</td><td>{}</td>\
             <td class=\"kind\">{}</td><td><pre>{}</pre></td></tr>",
            message_link(&text(&item["message_id"])),
            escape(&text(&item["outcome"])),
            pretty(&item["detail"]),
            entry = escape(&text(&item["dead_letter"])),
        );
    }
    out.push_str(
        "</tbody></table><p><a href=\"/console/dead-letters\">Back to the dead letters</a></p>",
    );
    out
}

/// `name@version` of a producer as the API writes it.
fn producer(target: &Value) -> String {
    match (target["name"].as_str(), target["version"].as_str()) {
        (Some(name), Some(version)) => format!("{name}@{version}"),
        _ => target.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, error: &str) -> DeadLetter {
        serde_json::from_value(serde_json::json!({
            "id": id, "kind": {"kind": "translation"}, "message_id": "m-1", "route": "orders",
            "error": error, "code": "missing-field", "plugin": "acme@1.0.0",
            "plugin_sha256": "ab", "attempts": 1,
            "created_at": "2026-12-01T00:00:00Z", "updated_at": "2026-12-01T00:00:00Z",
        }))
        .unwrap()
    }

    #[test]
    fn a_fault_holding_markup_shows_as_text_and_a_chosen_route_offers_all_that_match() {
        let list = List {
            routes: vec!["orders".into()],
            filter: FilterForm {
                route: "orders".into(),
                ..FilterForm::default()
            },
            entries: (0..SHOWN + 5)
                .map(|n| entry(&format!("d{n}"), "<img src=x onerror=alert(1)>"))
                .collect(),
            versions: vec!["2.0.0".into(), "1.0.0".into()],
            csrf: "tok".into(),
            ..List::default()
        };
        let html = render(&list);
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("Select all 105 that match"), "{html}");
        assert_eq!(html.matches("class=\"entry\"").count(), SHOWN);
        assert!(html.contains("<option value=\"1.0.0\">1.0.0</option>"));
    }

    #[test]
    fn a_filter_needs_a_route_and_instants_in_rfc_3339() {
        let mut form = FilterForm::default();
        assert!(matches!(form.filter(), Ok(None)));
        form.route = "orders".into();
        form.since = "yesterday".into();
        assert!(form.filter().unwrap_err().contains("`since`"));
        form.since = "2026-12-01T00:00:00Z".into();
        let filter = form.filter().unwrap().unwrap();
        assert_eq!(filter.route, "orders");
        assert_eq!(filter.code, None);
        assert!(filter.since.is_some());
    }
}
