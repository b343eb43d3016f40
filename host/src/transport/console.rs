//! The operator's console at `/console`: pages rendered by the host, one stylesheet and one
//! small script embedded in the binary (nothing fetched from elsewhere).
//!
//! - `console/session.rs`: the login's session cookie and each session's CSRF token;
//! - `console/html.rs`: escaping and the page frame;
//! - `console/overview.rs`: the overview (topology, routes, sinks and breakers);
//! - `console/dead_letters.rs`: the dead letters, filtered, selected, dry run and replayed;
//! - `console/plugins.rs`: the kept versions, activation and rollback after a confirmation;
//! - `console/journey.rs`: a message's journey and an entity's state and timeline;
//! - `console/pages.rs`: what each page reads or does through the host's operations.
//!
//! Authentication: with an admin token configured, the login form takes it once and the
//! browser keeps a session cookie (`HttpOnly`, `SameSite=Strict`), never the token; without
//! one (an open API), any browser gets a session. Every POST but the login carries the
//! session's CSRF token in its form, checked in constant time; a POST without it is refused
//! with `403`. Every answer forbids framing and inline script.

mod dead_letters;
mod html;
mod journey;
mod overview;
mod pages;
mod plugins;
mod session;

use std::time::Instant;

use bytes::Bytes;
use http::{Method, Request, StatusCode, header};
use http_body_util::Full;
use subtle::ConstantTimeEq as _;

use self::overview::Rates;
use self::session::{Session, Sessions};
use super::Inner;
use super::body::read;

const CSS: &str = include_str!("console/console.css");
const JS: &str = include_str!("console/console.js");
/// The largest form the console takes.
const MAX_FORM: usize = 4096;
/// What every page answers with: no framing, scripts and styles from the host alone.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                      connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the console keeps: its sessions and the routes' last sample.
#[derive(Debug, Default)]
pub(super) struct Console {
    sessions: Sessions,
    rates: Rates,
}

/// Answers a request under `/console`.
pub(super) async fn handle<B>(
    api: &Inner,
    request: Request<B>,
    segments: &[&str],
) -> http::Response<Full<Bytes>>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send,
{
    let (parts, body) = request.into_parts();
    let now = Instant::now();
    let method = &parts.method;
    match (method, segments) {
        (&Method::GET, ["console", "assets", "console.css"]) => {
            return asset("text/css; charset=utf-8", CSS);
        }
        (&Method::GET, ["console", "assets", "console.js"]) => {
            return asset("text/javascript; charset=utf-8", JS);
        }
        (&Method::GET, ["console", "login"]) => return html(StatusCode::OK, html::login(false)),
        (&Method::POST, ["console", "login"]) => {
            let form = match read_form(&parts.headers, body).await {
                Ok(form) => form,
                Err(status) => return plain(status, "the form could not be read"),
            };
            return login(api, form.get("token"), now);
        }
        _ => {}
    }
    let cookies = parts
        .headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok());
    let session = match api.console.sessions.find(cookies, now) {
        Some(session) => session,
        None if api.admin_token.is_none() && method == Method::GET => {
            // An open API: a session for the asking, then the page asked for.
            let session = api.console.sessions.start(now);
            let asked = parts
                .uri
                .path_and_query()
                .map_or("/console", http::uri::PathAndQuery::as_str);
            return see_other(asked, Some(session.set_cookie()));
        }
        None if method == Method::GET && !is_fragment(parts.uri.query()) => {
            return see_other("/console/login", None);
        }
        None => return plain(StatusCode::UNAUTHORIZED, "log in at /console/login"),
    };
    if method == Method::POST {
        let form = match read_form(&parts.headers, body).await {
            Ok(form) => form,
            Err(status) => return plain(status, "the form could not be read"),
        };
        if !session.csrf_matches(form.get("csrf")) {
            tracing::warn!("a console form without its session's CSRF token was refused");
            return plain(
                StatusCode::FORBIDDEN,
                "the form's CSRF token is missing or wrong",
            );
        }
        return act(api, &session, segments, &form).await;
    }
    if method != Method::GET && method != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "GET or POST");
    }
    match segments {
        ["console"] | ["console", "overview"] => {
            let main = overview::render(&pages::gather(api, &session, now).await);
            if is_fragment(parts.uri.query()) {
                html(StatusCode::OK, main)
            } else {
                html(
                    StatusCode::OK,
                    html::page("Overview", &main, Some(&session.csrf)),
                )
            }
        }
        ["console", "dead-letters"] => {
            let query = Form::parse(parts.uri.query().unwrap_or_default());
            let main = dead_letters::render(&pages::list(api, &query, &session).await);
            html(
                StatusCode::OK,
                html::page("Dead letters", &main, Some(&session.csrf)),
            )
        }
        ["console", "plugins"] => match api.pipeline.plugins().await {
            Ok(listed) => html(
                StatusCode::OK,
                html::page("Plugins", &plugins::render(&listed), Some(&session.csrf)),
            ),
            Err(e) => plain(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        },
        ["console", "messages", id] => {
            let main = pages::message(api, id, &session).await;
            html(
                StatusCode::OK,
                html::page("Message", &main, Some(&session.csrf)),
            )
        }
        ["console", "entities", entity_type, id] => {
            let query = Form::parse(parts.uri.query().unwrap_or_default());
            let main = pages::entity(api, entity_type, id, &query).await;
            html(
                StatusCode::OK,
                html::page("Entity", &main, Some(&session.csrf)),
            )
        }
        ["console", "plugins", name, "confirm"] => {
            let query = Form::parse(parts.uri.query().unwrap_or_default());
            let action = match query.get("action") {
                Some(action @ ("activate" | "canary" | "rollback")) => action,
                _ => {
                    return plain(
                        StatusCode::BAD_REQUEST,
                        "`action` is activate, canary or rollback",
                    );
                }
            };
            let main = plugins::confirm(name, action, query.get("version"), &session.csrf);
            html(
                StatusCode::OK,
                html::page("Confirm", &main, Some(&session.csrf)),
            )
        }
        _ => plain(StatusCode::NOT_FOUND, "no such console page"),
    }
}

/// A POST of a logged-in session, its CSRF token checked.
async fn act(
    api: &Inner,
    session: &Session,
    segments: &[&str],
    form: &Form,
) -> http::Response<Full<Bytes>> {
    match segments {
        ["console", "logout"] => {
            api.console.sessions.end(&session.id);
            see_other("/console/login", Some(session::clear_cookie()))
        }
        ["console", "breakers", name] => {
            let Some(breaker) = api.breakers.get(name) else {
                return plain(StatusCode::NOT_FOUND, "no such breaker");
            };
            match form.get("action") {
                Some("reset") => breaker.reset(),
                Some("force-open") => breaker.force_open(),
                _ => return plain(StatusCode::BAD_REQUEST, "`action` is reset or force-open"),
            }
            tracing::warn!(
                breaker = *name,
                action = form.get("action"),
                "an operator set a circuit breaker from the console"
            );
            see_other("/console", None)
        }
        ["console", "dead-letters", "replay"] => {
            let main = pages::replay(api, form).await;
            html(
                StatusCode::OK,
                html::page("Dead letters", &main, Some(&session.csrf)),
            )
        }
        ["console", "dead-letters", id, "replay"] => {
            // One entry of a selection the page's script replays one by one, with progress.
            let target = form
                .get("version")
                .filter(|v| !v.is_empty())
                .map(|v| crate::registry::Selector::Version(v.to_owned()));
            let item = pages::replay_one(api, id, target).await;
            response(StatusCode::OK, "application/json", item.to_string())
        }
        ["console", "messages", id, "discard"] => match pages::discard(api, form).await {
            Ok(()) => see_other(
                &format!("/console/messages/{}", crate::percent::encode(id)),
                None,
            ),
            Err(why) => html(
                StatusCode::BAD_REQUEST,
                html::page(
                    "Message",
                    &format!(
                        "<p class=\"error\" id=\"problem\">{}</p>",
                        html::escape(&why)
                    ),
                    Some(&session.csrf),
                ),
            ),
        },
        [
            "console",
            "plugins",
            name,
            action @ ("activate" | "canary" | "rollback"),
        ] => {
            let main = pages::change_plugin(api, name, action, form).await;
            html(
                StatusCode::OK,
                html::page("Plugins", &main, Some(&session.csrf)),
            )
        }
        _ => plain(StatusCode::NOT_FOUND, "no such console action"),
    }
}

/// The login form's token, compared in constant time with the admin token.
fn login(api: &Inner, token: Option<&str>, now: Instant) -> http::Response<Full<Bytes>> {
    let good = match &api.admin_token {
        None => true,
        Some(admin) => {
            token.is_some_and(|t| bool::from(t.as_bytes().ct_eq(admin.expose().as_bytes())))
        }
    };
    if !good {
        tracing::warn!("a console login with a wrong token was refused");
        return html(StatusCode::UNAUTHORIZED, html::login(true));
    }
    let session = api.console.sessions.start(now);
    see_other("/console", Some(session.set_cookie()))
}

fn is_fragment(query: Option<&str>) -> bool {
    Form::parse(query.unwrap_or_default()).get("fragment") == Some("1")
}

/// The fields of an `application/x-www-form-urlencoded` body or query, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Form(Vec<(String, String)>);

impl Form {
    fn parse(text: &str) -> Self {
        Self(
            text.split('&')
                .filter(|pair| !pair.is_empty())
                .map(|pair| {
                    let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                    let decode = |s: &str| crate::percent::decode(&s.replace('+', " "));
                    (decode(key), decode(value))
                })
                .collect(),
        )
    }

    /// The last value of `name`.
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every value of `name`, in order.
    pub(super) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    /// Every field, in order.
    pub(super) fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

/// An `application/x-www-form-urlencoded` body as its fields.
async fn read_form<B>(headers: &http::HeaderMap, body: B) -> Result<Form, StatusCode>
where
    B: hyper::body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: std::fmt::Display + Send,
{
    let incoming = read(headers, body, MAX_FORM)
        .await
        .map_err(|_| StatusCode::PAYLOAD_TOO_LARGE)?;
    let text = std::str::from_utf8(&incoming.body).map_err(|_| StatusCode::BAD_REQUEST)?;
    Ok(Form::parse(text))
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: String,
) -> http::Response<Full<Bytes>> {
    http::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_SECURITY_POLICY, POLICY)
        .header(header::X_CONTENT_TYPE_OPTIONS, "nosniff")
        .header(header::X_FRAME_OPTIONS, "DENY")
        .header(header::REFERRER_POLICY, "no-referrer")
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("a valid response")
}

fn html(status: StatusCode, body: String) -> http::Response<Full<Bytes>> {
    response(status, "text/html; charset=utf-8", body)
}

fn plain(status: StatusCode, text: &str) -> http::Response<Full<Bytes>> {
    response(status, "text/plain; charset=utf-8", format!("{text}\n"))
}

fn asset(content_type: &'static str, body: &'static str) -> http::Response<Full<Bytes>> {
    response(StatusCode::OK, content_type, body.to_owned())
}

fn see_other(location: &str, cookie: Option<String>) -> http::Response<Full<Bytes>> {
    let mut answer = response(
        StatusCode::SEE_OTHER,
        "text/plain; charset=utf-8",
        String::new(),
    );
    let headers = answer.headers_mut();
    if let Ok(location) = http::HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, location);
    }
    if let Some(cookie) = cookie.and_then(|c| http::HeaderValue::from_str(&c).ok()) {
        headers.insert(header::SET_COOKIE, cookie);
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_form_body_decodes_plus_and_percent_and_keeps_repeated_names() {
        let form = Form::parse("token=a+b%2Bc&csrf=&x&id=1&id=2");
        assert_eq!(form.get("token"), Some("a b+c"));
        assert_eq!(form.get("csrf"), Some(""));
        assert_eq!(form.get("x"), Some(""));
        assert_eq!(form.all("id").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(form.get("none"), None);
    }
}
