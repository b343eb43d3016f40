//! The plugins page: each plugin's kept versions, the version each route serves and the ones
//! before it; activate a version or roll back, each after a page that asks for confirmation,
//! then the outcome with the audit entry it wrote.

use std::fmt::Write as _;

use serde_json::Value;

use super::html::escape;

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
                format!(
                    "<a class=\"button\" id=\"activate-{id}-{v}\" \
                     href=\"/console/plugins/{path}/confirm?action=activate&amp;version={query}\">\
                     Activate</a>",
                    v = escape(number),
                    path = escape(&crate::percent::encode(name)),
                    query = escape(&crate::percent::encode(number)),
                )
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

/// The page that asks before an activation or a rollback.
pub(super) fn confirm(name: &str, action: &str, version: Option<&str>, csrf: &str) -> String {
    let what = match (action, version) {
        ("activate", Some(version)) => format!(
            "Activate version <b>{}</b> of <b>{}</b> on every route that serves it?",
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
         <input type=\"hidden\" name=\"version\" value=\"{version}\">\
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
        escape(&serde_json::to_string_pretty(answer).unwrap_or_default()),
    );
    if let Some(audit) = audit {
        let _ = write!(
            out,
            "<h2>The audit entry it wrote</h2><pre id=\"audit\">{}</pre>",
            escape(&serde_json::to_string_pretty(audit).unwrap_or_default())
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
        let page = confirm("acme-erp-orders", "activate", Some("2.0.0"), "tok");
        assert!(
            page.contains("action=\"/console/plugins/acme-erp-orders/activate\""),
            "{page}"
        );
        assert!(page.contains("name=\"csrf\" value=\"tok\""));
    }
}
