//! HTML as text: every value from outside the page (a route's, a sink's or a plugin's name,
//! a message's field, an error) goes through [`escape`] on its way in, in element content
//! and in quoted attributes alike. The pages carry no inline script, so a policy of
//! `script-src 'self'` holds even where escaping were missed.

use std::fmt::Write as _;

/// `text` with `&`, `<`, `>`, `"` and `'` as character references.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `value` as indented JSON, escaped for a `<pre>`.
pub(super) fn pretty(value: &serde_json::Value) -> String {
    escape(&serde_json::to_string_pretty(value).unwrap_or_default())
}

/// A link to message `id`'s page, the id as its text.
pub(super) fn message_link(id: &str) -> String {
    format!(
        "<a href=\"/console/messages/{}\">{}</a>",
        escape(&crate::percent::encode(id)),
        escape(id)
    )
}

/// The pages' navigation: (path, label).
const PAGES: [(&str, &str); 3] = [
    ("/console", "Overview"),
    ("/console/dead-letters", "Dead letters"),
    ("/console/plugins", "Plugins"),
];

/// A whole page: `main` is HTML already escaped; `csrf` is the session's token, for the
/// logout form (`None` on the login page).
pub(super) fn page(title: &str, main: &str, csrf: Option<&str>) -> String {
    let mut nav = String::new();
    if let Some(csrf) = csrf {
        for (path, label) in PAGES {
            let _ = write!(nav, "<a href=\"{path}\">{label}</a>");
        }
        let _ = write!(
            nav,
            "<form method=\"post\" action=\"/console/logout\" class=\"logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\">Log out</button></form>",
            escape(csrf)
        );
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} · Dragoman</title>\
         <link rel=\"stylesheet\" href=\"/console/assets/console.css\">\
         <script src=\"/console/assets/console.js\" defer></script></head>\
         <body><header><span class=\"brand\">Dragoman</span><nav>{nav}</nav></header>\
         <main id=\"main\">{main}</main></body></html>\n",
        title = escape(title),
    )
}

/// The login form, with an error line when a token was refused.
pub(super) fn login(refused: bool) -> String {
    let error = if refused {
        "<p class=\"error\" id=\"login-error\">That is not the admin token.</p>"
    } else {
        ""
    };
    page(
        "Log in",
        &format!(
            "<section class=\"login\"><h1>Log in</h1>{error}\
             <form method=\"post\" action=\"/console/login\">\
             <label>Admin token <input type=\"password\" name=\"token\" id=\"token\" \
             autocomplete=\"current-password\" autofocus></label>\
             <button type=\"submit\" id=\"login\">Log in</button></form></section>"
        ),
        None,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_in_a_value_is_text() {
        assert_eq!(
            escape("<img src=x onerror=alert(1)> & \"q\" 'a'"),
            "&lt;img src=x onerror=alert(1)&gt; &amp; &quot;q&quot; &#39;a&#39;"
        );
        let page = page("<b>", "", Some("\"><script>"));
        assert!(
            !page.contains("<b>") && !page.contains("\"><script>"),
            "{page}"
        );
    }
}
