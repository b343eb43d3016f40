//! The plugins page: each plugin's kept versions, the version each route serves, a canary's
//! failure rate against the active version's, a shadow's report with each difference side by
//! side; activate a version, start a canary of it or roll back, each after a page that asks
//! for confirmation, then the outcome with the audit entries it wrote.

use std::fmt::Write as _;

use serde_json::Value;

use super::html::{escape, message_link, pretty};

/// The page's main section, from `GET /v1/plugins`'s answer.
pub(super) fn render(plugins: &Value) -> String {
    let mut out = String::from("<h1>Plugins</h1>");
    for (name, entry) in plugins.as_object().into_iter().flatten() {
        let serving: Vec<(String, String)> = entry["routes"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(route, r)| {
                (
                    route.clone(),
                    r["active"]["version"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                )
            })
            .collect();
        let id = escape(name);
        let _ = write!(
            out,
            "<section class=\"plugin\" id=\"plugin-{id}\"><h2>{id}</h2>"
        );
        if serving.is_empty() {
            out.push_str("<p>No route serves it.</p>");
        } else {
            let routes: Vec<String> = serving
                .iter()
                .map(|(route, version)| {
                    format!("<b>{}</b> serves {}", escape(route), escape(version))
                })
                .collect();
            let _ = write!(out, "<p class=\"serving\">{}</p>", routes.join("; "));
        }
        for (route, state) in entry["routes"].as_object().into_iter().flatten() {
            out.push_str(&canary(route, state));
            out.push_str(&shadow(route, state));
        }
        out.push_str(
            "<table class=\"versions\"><thead><tr><th>Version</th><th>sha256</th>\
             <th>Vendor API</th><th>Received</th><th></th></tr></thead><tbody>",
        );
        let mut versions: Vec<&Value> =
            entry["versions"].as_array().into_iter().flatten().collect();
        versions.sort_by_key(|v| {
            std::cmp::Reverse(v["received_at"].as_str().unwrap_or_default().to_owned())
        });
        for version in versions {
            let number = version["version"].as_str().unwrap_or_default();
            let sha = version["sha256"].as_str().unwrap_or_default();
            let active = serving.iter().any(|(_, v)| v == number);
            let action = if active {
                "<span class=\"active\">active</span>".to_owned()
            } else {
                ["activate", "canary"]
                    .iter()
                    .map(|action| {
                        format!(
                            "<a class=\"button\" id=\"{action}-{id}-{v}\" \
                             href=\"/console/plugins/{path}/confirm?action={action}&amp;version={query}\">\
                             {label}</a> ",
                            v = escape(number),
                            path = escape(&crate::percent::encode(name)),
                            query = escape(&crate::percent::encode(number)),
                            label = if *action == "activate" { "Activate" } else { "Canary" },
                        )
                    })
                    .collect()
            };
            let _ = write!(
                out,
                "<tr><td>{}</td><td title=\"{sha}\">{}</td><td>{}</td><td>{}</td><td>{action}</td></tr>",
                escape(number),
                escape(&sha.chars().take(12).collect::<String>()),
                escape(version["vendor_api_version"].as_str().unwrap_or_default()),
                escape(version["received_at"].as_str().unwrap_or_default()),
                sha = escape(sha),
            );
        }
        let _ = write!(
            out,
            "</tbody></table><p><a class=\"button\" id=\"rollback-{id}\" \
             href=\"/console/plugins/{}/confirm?action=rollback\">Roll back</a></p></section>",
            escape(&crate::percent::encode(name)),
        );
    }
    out
}

/// A route's canary against its active version, if it has one.
fn canary(route: &str, state: &Value) -> String {
    let canary = &state["canary"];
    if canary.is_null() {
        return String::new();
    }
    let standing = &canary["standing"];
    let rate = |key: &str| standing[key].as_f64().unwrap_or(0.0);
    let (mine, stable) = (
        rate("canary_failure_percent"),
        rate("stable_failure_percent"),
    );
    format!(
        "<p class=\"canary{failing}\" id=\"canary-{route}\">Canary <b>{version}</b> on {percent}% of \
         {route}: failures {mine:.1}% of {counted} against {active}'s {stable:.1}% of {stable_counted}</p>",
        failing = if mine > stable { " failing" } else { "" },
        route = escape(route),
        version = escape(canary["version"]["version"].as_str().unwrap_or_default()),
        percent = canary["percent"],
        counted = standing["canary_counted"],
        active = escape(state["active"]["version"].as_str().unwrap_or_default()),
        stable_counted = standing["stable_counted"],
    )
}

/// A route's shadow report, each difference side by side, if a shadow runs.
fn shadow(route: &str, state: &Value) -> String {
    let report = &state["shadow"];
    if report.is_null() {
        return String::new();
    }
    let count = |key: &str| report[key].as_u64().unwrap_or(0);
    let mut out = format!(
        "<div class=\"shadow\" id=\"shadow-{route}\"><p>Shadow <b>{version}</b> on {route} since \
         {since}: {} compared, {} the same, {} different, {} dropped</p>\
         <table class=\"differences\"><thead><tr><th>Message</th><th>Active ({active})</th>\
         <th>Candidate ({version})</th></tr></thead><tbody>",
        count("compared"),
        count("same"),
        count("different"),
        count("dropped"),
        route = escape(route),
        version = escape(report["candidate"]["version"].as_str().unwrap_or_default()),
        since = escape(report["since"].as_str().unwrap_or_default()),
        active = escape(state["active"]["version"].as_str().unwrap_or_default()),
    );
    for sample in report["samples"].as_array().into_iter().flatten() {
        let _ = write!(
            out,
            "<tr class=\"difference\"><td>{}</td><td><pre>{}</pre></td><td><pre>{}</pre></td></tr>",
            message_link(sample["message_id"].as_str().unwrap_or_default()),
            pretty(&sample["active_output"]),
            pretty(&sample["candidate_output"]),
        );
    }
    out.push_str("</tbody></table></div>");
    out
}

/// The page that asks before an activation, a canary or a rollback.
pub(super) fn confirm(name: &str, action: &str, version: Option<&str>, csrf: &str) -> String {
    let percent = if action == "canary" {
        "<label>on <input name=\"percent\" id=\"percent\" value=\"10\" size=\"3\">% of each \
         route's messages</label> "
    } else {
        ""
    };
    let what = match (action, version) {
        ("activate", Some(version)) => format!(
            "Activate version <b>{}</b> of <b>{}</b> on every route that serves it?",
            escape(version),
            escape(name)
        ),
        ("canary", Some(version)) => format!(
            "Start a canary of version <b>{}</b> of <b>{}</b>, judged against the active \
             version and rolled back by itself if it fails more?",
            escape(version),
            escape(name)
        ),
        _ => format!(
            "Roll <b>{}</b> back: end its canary, else serve the version each route served \
             before?",
            escape(name)
        ),
    };
    format!(
        "<h1>Confirm</h1><p id=\"question\">{what}</p>\
         <form method=\"post\" action=\"/console/plugins/{path}/{action}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
         <input type=\"hidden\" name=\"version\" value=\"{version}\">{percent}\
         <button type=\"submit\" id=\"confirm\">Yes, {action}</button></form> \
         <a href=\"/console/plugins\" id=\"cancel\">Cancel</a>",
        path = escape(&crate::percent::encode(name)),
        action = escape(action),
        csrf = escape(csrf),
        version = escape(version.unwrap_or_default()),
    )
}

/// What an activation or rollback did (the API's answer), and the audit entry it wrote.
pub(super) fn outcome(status: u16, answer: &Value, audit: Option<&Value>) -> String {
    let ok = (200..300).contains(&status);
    let mut out = format!(
        "<h1>{}</h1><pre id=\"answer\">{}</pre>",
        if ok { "Done" } else { "Refused" },
        pretty(answer),
    );
    if let Some(audit) = audit {
        let _ = write!(
            out,
            "<h2>The audit entry it wrote</h2><pre id=\"audit\">{}</pre>",
            pretty(audit)
        );
    }
    out.push_str("<p><a href=\"/console/plugins\" id=\"back\">Back to the plugins</a></p>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kept_version_but_the_active_one_can_be_activated_after_a_confirmation() {
        let plugins = serde_json::json!({"acme-erp-orders": {
            "versions": [
                {"version": "1.0.0", "sha256": "aa11", "vendor_api_version": "acme-erp/v1", "received_at": "2026-12-01T00:00:00Z"},
                {"version": "2.0.0", "sha256": "bb22", "vendor_api_version": "acme-erp/v2", "received_at": "2026-12-02T00:00:00Z"},
            ],
            "routes": {"orders": {"active": {"name": "acme-erp-orders", "version": "1.0.0"}}},
        }});
        let html = render(&plugins);
        assert!(html.contains("<b>orders</b> serves 1.0.0"), "{html}");
        assert!(
            html.contains("id=\"activate-acme-erp-orders-2.0.0\""),
            "{html}"
        );
        assert!(
            !html.contains("id=\"activate-acme-erp-orders-1.0.0\""),
            "{html}"
        );
        assert!(
            html.contains("id=\"canary-acme-erp-orders-2.0.0\""),
            "{html}"
        );
        let page = confirm("acme-erp-orders", "activate", Some("2.0.0"), "tok");
        assert!(
            page.contains("action=\"/console/plugins/acme-erp-orders/activate\""),
            "{page}"
        );
        assert!(page.contains("name=\"csrf\" value=\"tok\""));
    }

    #[test]
    fn a_canary_stands_against_the_active_version_and_a_shadow_shows_each_difference() {
        let state = serde_json::json!({
            "active": {"version": "1.0.0"},
            "canary": {"version": {"version": "2.0.0"}, "percent": 50, "standing": {
                "canary_failure_percent": 40.0, "canary_counted": 10,
                "stable_failure_percent": 0.0, "stable_counted": 12}},
            "shadow": {"candidate": {"version": "2.0.0"}, "since": "t", "compared": 6, "same": 2,
                "different": 4, "dropped": 0, "samples": [{"message_id": "m1",
                "active_output": {"refused": {"code": "<b>missing-field</b>"}},
                "candidate_output": {"events": [{"type": "order.created.v1"}]}}]},
        });
        let canary = canary("orders", &state);
        assert!(canary.contains("class=\"canary failing\""), "{canary}");
        assert!(
            canary.contains("failures 40.0% of 10 against 1.0.0's 0.0% of 12"),
            "{canary}"
        );
        let shadow = shadow("orders", &state);
        assert!(
            shadow.contains("6 compared, 2 the same, 4 different, 0 dropped"),
            "{shadow}"
        );
        assert!(
            shadow.contains("&lt;b&gt;missing-field&lt;/b&gt;"),
            "{shadow}"
        );
        assert!(shadow.contains("order.created.v1"), "{shadow}");
        assert_eq!(
            super::canary("orders", &serde_json::json!({"canary": null})),
            ""
        );
    }
}
