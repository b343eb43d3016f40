//! The operator's console in headless Chromium against `dragoman serve` on loopback: the
//! login, the overview's topology and breakers as a sink goes away and comes back, and the
//! CSRF defence of its forms, a message's journey and an entity's state; `console/recovery.rs`
//! the 2 AM story through the plugins and dead letters pages.

mod recovery;

use std::path::Path;
use std::time::Duration;

use tests::browser::{Browser, screenshots_dir};
use tests::net::{self, Http, Server, Webhook, wait_until};
use tests::proxy::Proxy;

const TOKEN: &str = "console-admin-token-7f3a";

/// The quickstart with an admin token, its sink a webhook behind a proxy the test cuts, and
/// a browser.
struct Rig {
    webhook: Webhook,
    proxy: Proxy,
    server: Server,
    http: Http,
    browser: Browser,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn start() -> Self {
        let webhook = Webhook::start();
        let proxy = Proxy::start(webhook.addr);
        let dir = tempfile::tempdir().unwrap();
        let server = host(dir.path(), &proxy);
        Self {
            webhook,
            proxy,
            server,
            http: Http::new(),
            browser: Browser::start(),
            _dir: dir,
        }
    }
}

/// The quickstart's own configuration (`examples/quickstart/dragoman.toml`: its routes, its
/// sink `watch`, the order fold) with an admin token, on a free port and the test's
/// directory; the sink is the webhook behind the proxy, its breaker quick to open and probe.
fn host(dir: &std::path::Path, proxy: &Proxy) -> Server {
    let quickstart = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let text = std::fs::read_to_string(quickstart.join("dragoman.toml")).unwrap();
    let built = Path::new(tests::wasm::ACME_ERP_ORDERS).parent().unwrap();
    let config = format!("admin_token = \"{TOKEN}\"\n{text}")
        .replace("\"127.0.0.1:8080\"", "\"127.0.0.1:0\"")
        .replace("\"../../target/quickstart/data\"", "\"{data_dir}\"")
        .replace("[sandbox]\n", "[sandbox]\ncache_dir = \"{cache_dir}\"\n")
        .replace(
            "\"http://127.0.0.1:9090/events\"",
            &format!("\"http://{}/events\"", proxy.address()),
        )
        .replace("max_attempts = 8", "max_attempts = 1000")
        .replace(
            "\"../../target/wasm/wasm32-wasip2/release/",
            &format!("\"{}/", built.display()),
        )
        + "\n[sinks.watch.breaker]\nminimum_calls = 3\nwait_in_open_ms = 2000\n\
           wait_multiplier = 1\nprobes = 1\n";
    assert!(!config.contains("../../"), "every path replaced: {config}");
    Server::start(dir, &config)
}

/// Posts seed order `id` to the quickstart's ERP route.
fn send_order(server: &Server, http: &Http, id: &str) {
    server.send_order(http, "erp-orders", id);
}

/// Logs in on the login page shown, and waits for the overview.
fn log_in(browser: &Browser) {
    browser.type_into("#token", TOKEN);
    browser.click("#login");
    browser.wait_text("#breaker-watch", Duration::from_secs(10), |t| t == "closed");
}

#[test]
fn an_operator_logs_in_and_sees_a_sink_s_breaker_open_and_close_on_the_overview() {
    let Rig {
        webhook,
        proxy,
        server,
        http,
        browser,
        _dir,
    } = Rig::start();
    let shots = screenshots_dir();

    // Not logged in: the login form. A wrong token is refused on the page.
    browser.goto(&format!("{}/console", server.url()));
    assert!(
        browser.url().ends_with("/console/login"),
        "{}",
        browser.url()
    );
    browser.type_into("#token", "not-the-token");
    browser.click("#login");
    browser.wait_text("#login-error", Duration::from_secs(10), |t| {
        t.contains("not the admin token")
    });
    browser.screenshot(&shots.join("login.png"));
    log_in(&browser);
    let url = browser.url();
    assert!(url.ends_with("/console") && !url.contains(TOKEN), "{url}");
    // The session is a cookie the page's script cannot read, sent to the console alone, and
    // it is not the token.
    let cookie = browser
        .cookie("dragoman_console")
        .expect("a session cookie");
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");
    assert_eq!(cookie["path"], "/console", "{cookie}");
    assert!(!cookie["value"].as_str().unwrap().contains(TOKEN));
    assert_eq!(
        browser.execute("return document.cookie"),
        "",
        "HttpOnly: not in document.cookie"
    );

    // The quickstart's routes and sink, in the tables and in the picture.
    for (route, plugin) in [
        ("erp-orders", "acme-erp-orders@1.0.0"),
        ("erp-cancellations", "acme-erp-cancellations@"),
        ("payments", "paylane-payments@"),
    ] {
        let row = browser.text(&format!("#route-{route}"));
        assert!(row.contains(plugin), "{route}: {row}");
    }
    assert!(browser.text("#sink-watch").contains("http"));
    let picture = browser.text("#topology");
    for part in ["erp-orders", "acme-erp-orders@1.0.0", "watch · closed"] {
        assert!(picture.contains(part), "{part} in the topology: {picture}");
    }

    // Orders flow; the overview counts them by itself (its script refreshes it).
    for n in 0..3 {
        send_order(&server, &http, &format!("C-{n}"));
    }
    wait_until(Duration::from_secs(20), "three deliveries", || {
        webhook.counts().len() == 3
    });
    browser.wait_text("#route-erp-orders", Duration::from_secs(10), |t| {
        t.split_whitespace().nth(2) == Some("3")
    });
    browser.screenshot(&shots.join("overview.png"));

    // The sink goes away: its breaker shows open within the refresh period, the row marked.
    proxy.cut();
    for n in 3..9 {
        send_order(&server, &http, &format!("C-{n}"));
    }
    browser.wait_text("#breaker-watch", Duration::from_secs(20), |t| t == "open");
    assert_eq!(
        browser.execute("return document.querySelector('#sink-watch').className"),
        "failing"
    );
    assert!(browser.text("#topology").contains("watch · open"));
    browser.screenshot(&shots.join("overview-open.png"));

    // It comes back: closed again, every order delivered.
    proxy.restore();
    browser.wait_text("#breaker-watch", Duration::from_secs(30), |t| t == "closed");
    wait_until(Duration::from_secs(30), "every order delivered", || {
        webhook.counts().len() == 9
    });
}

#[test]
fn a_console_form_needs_the_session_s_csrf_token_and_the_api_keeps_its_bearer_token() {
    let rig = Rig::start();
    let (server, http, browser) = (&rig.server, &rig.http, &rig.browser);
    browser.goto(&format!("{}/console/login", server.url()));
    log_in(browser);
    let session = browser.cookie("dragoman_console").unwrap()["value"]
        .as_str()
        .unwrap()
        .to_owned();
    let cookie = format!("dragoman_console={session}");
    let action = format!("{}/console/breakers/watch", server.url());
    let form = ("content-type", "application/x-www-form-urlencoded");

    // The session's cookie without its token, or with another: refused, nothing done.
    for body in ["action=force-open", "action=force-open&csrf=0000"] {
        let reply = http
            .send(
                "POST",
                &action,
                &[form, ("cookie", &cookie)],
                body.as_bytes(),
            )
            .unwrap();
        assert_eq!(reply.status, 403, "{body}: {}", reply.text());
    }
    let reply = http
        .send("POST", &action, &[form], b"action=force-open")
        .unwrap();
    assert_eq!(reply.status, 401, "no session");
    let breakers = format!("{}/v1/breakers", server.url());
    let bearer = format!("Bearer {TOKEN}");
    let state = || {
        let reply = http
            .send("GET", &breakers, &[("authorization", &bearer)], b"")
            .unwrap();
        assert_eq!(reply.status, 200);
        reply.json()["breakers"]["watch"]["state"].clone()
    };
    assert_eq!(state(), "closed");
    assert_eq!(
        http.send("GET", &breakers, &[], b"").unwrap().status,
        401,
        "the API still wants its bearer token"
    );

    // The page's own form carries the token: the operator forces the breaker open, then
    // resets it.
    browser.click("#sink-watch button");
    browser.wait_text("#breaker-watch", Duration::from_secs(10), |t| {
        t == "forced_open"
    });
    assert_eq!(state(), "forced_open");
    browser.click("#sink-watch button");
    browser.wait_text("#breaker-watch", Duration::from_secs(10), |t| t == "closed");
    assert_eq!(state(), "closed");

    // Logging out ends the session: its cookie no longer opens a page.
    browser.click(".logout button");
    wait_until(Duration::from_secs(10), "the login page", || {
        browser.url().ends_with("/console/login")
    });
    let reply = http
        .send(
            "GET",
            &format!("{}/console", server.url()),
            &[("cookie", &cookie)],
            b"",
        )
        .unwrap();
    assert_eq!(reply.status, 303, "back to the login");
}

/// The kinds of the journey's steps on a message's page, in order.
pub(super) fn journey(browser: &Browser) -> Vec<String> {
    let kinds = browser.execute(
        "return [...document.querySelectorAll('#journey td.kind')].map(e => e.textContent)",
    );
    kinds
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_owned())
        .collect()
}

/// An entity's page: its state before and after a cancellation, on the commit clock, and a
/// timeline whose events name their vendor messages and plugin versions; a message of it
/// opens on its journey.
#[test]
fn an_entity_page_shows_the_state_before_and_after_a_cancellation() {
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let config = net::config(&webhook.sink_table("hook"), "\"hook\"", "")
        + &format!(
            "\n[routes.cancellations]\nplugin = \"{}\"\nsinks = [\"hook\"]\n\n\
             [projectors.order]\nplugin = \"{}\"\n",
            tests::wasm::ACME_ERP_CANCELLATIONS,
            tests::wasm::ORDER_FOLD,
        );
    let server = Server::start(dir.path(), &config);
    let http = Http::new();
    server.send_order(&http, "orders", "E-1");
    // The creation is committed when its answer comes; the cancellation after this instant.
    let between = jiff::Timestamp::now();
    let cancel = serde_json::json!({
        "ord_id": "E-1", "cancel_reason": "CUST",
        "cancelled_at": jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M:%S").to_string(),
    });
    let reply = http
        .send(
            "POST",
            &format!("{}/v1/routes/cancellations/messages", server.url()),
            &[("content-type", "application/json")],
            cancel.to_string().as_bytes(),
        )
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.text());

    // An order whose id is markup: its entity's page shows the id as text and runs nothing
    // (an alert would fail every WebDriver command after it).
    let markup = "<img src=x onerror=alert(1)>";
    server.send_order(&http, "orders", markup);
    let browser = Browser::start();
    // The first visit to an open API's console gets a session and comes back to the page it
    // asked for, query and all.
    browser.goto(&format!(
        "{}/console/entities/order/%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E?time=occurred",
        server.url()
    ));
    browser.wait_text("main h1", Duration::from_secs(10), |t| t.contains(markup));
    assert!(
        browser.url().ends_with("?time=occurred"),
        "{}",
        browser.url()
    );
    assert!(browser.text("#timeline").contains("order.created.v1"));
    assert_eq!(
        browser.execute("return document.querySelectorAll('main img').length"),
        0
    );
    browser.goto(&format!("{}/console/entities/order/E-1", server.url()));
    browser.wait_text("#state", Duration::from_secs(10), |t| {
        t.contains("\"cancelled\"")
    });
    let timeline = browser.text("#timeline");
    for part in [
        "order.created.v1",
        "order.cancelled.v1",
        "acme-erp-orders@1.0.0",
        "acme-erp-cancellations@",
    ] {
        assert!(timeline.contains(part), "{part} in {timeline}");
    }
    browser.screenshot(&screenshots_dir().join("entity.png"));

    // The instant between the two commits: created, one event applied.
    browser.type_into("#at", &between.to_string());
    browser.click("#show");
    browser.wait_text("#state", Duration::from_secs(10), |t| {
        t.contains("\"created\"")
    });
    assert!(browser.text("#folded").contains("through event 1"));
    assert!(!browser.text("#timeline").contains("order.cancelled.v1"));

    // The creation's vendor message, on its own page.
    browser.click("#timeline tr.event a");
    browser.wait_text("#status", Duration::from_secs(10), |t| t.contains("orders"));
    let kinds = journey(&browser);
    assert_eq!(
        kinds[..3],
        ["received", "translated", "committed"],
        "{kinds:?}"
    );
}
