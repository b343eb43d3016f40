//! Headless Chromium driven through its WebDriver (W3C WebDriver over HTTP on loopback), for
//! the console's tests. `tests/browser` installs Debian's `chromium` and `chromium-driver`
//! when they are missing; `tests/run` exports the driver's path as
//! `DRAGOMAN_TEST_CHROMEDRIVER` (else `/usr/bin/chromedriver` is tried).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};

use crate::net::Http;

/// A browser session, closed (and its driver stopped) on drop.
pub struct Browser {
    driver: Child,
    base: String,
    http: Http,
    profile: tempfile::TempDir,
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser").field("base", &self.base).finish()
    }
}

/// The driver's path.
///
/// # Panics
///
/// When there is none, with how to get one.
fn driver_path() -> PathBuf {
    let path = std::env::var_os("DRAGOMAN_TEST_CHROMEDRIVER")
        .map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from);
    assert!(
        path.exists(),
        "no ChromeDriver at {}: run tests/browser (or tests/run, which does)",
        path.display()
    );
    path
}

impl Browser {
    /// Starts ChromeDriver on a free loopback port and a headless Chromium session with a
    /// profile of its own.
    ///
    /// # Panics
    ///
    /// When the driver or the browser does not start within 30 s.
    pub fn start() -> Self {
        let port = crate::net::unused_addr().port();
        let driver = Command::new(driver_path())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("ChromeDriver starts");
        let http = Http::new();
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while http
            .send("GET", &format!("{base}/status"), &[], b"")
            .is_err()
        {
            assert!(Instant::now() < deadline, "ChromeDriver did not answer");
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile = tempfile::tempdir().expect("a profile directory");
        let mut browser = Self {
            driver,
            base,
            http,
            profile,
        };
        let args = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,900",
            &format!("--user-data-dir={}", browser.profile.path().display()),
        ];
        let session = browser.call(
            "POST",
            "/session",
            &json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": "/usr/bin/chromium", "args": args},
            }}}),
        );
        let id = session["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("a session: {session}"))
            .to_owned();
        browser.base = format!("{}/session/{id}", browser.base);
        browser
    }

    /// A WebDriver command: its `value`.
    fn call(&self, method: &str, path: &str, body: &Value) -> Value {
        self.try_call(method, path, body)
            .unwrap_or_else(|(status, answer)| {
                panic!("WebDriver {method} {path}: {status} {answer}")
            })
    }

    /// A WebDriver command: its `value`, or the status and answer of its error.
    fn try_call(&self, method: &str, path: &str, body: &Value) -> Result<Value, (u16, Value)> {
        let body = if method == "GET" || method == "DELETE" {
            Vec::new()
        } else {
            serde_json::to_vec(body).expect("JSON")
        };
        let reply = self
            .http
            .send(
                method,
                &format!("{}{path}", self.base),
                &[("content-type", "application/json")],
                &body,
            )
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"));
        let answer: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
        if reply.status == 200 {
            Ok(answer["value"].clone())
        } else {
            Err((reply.status, answer))
        }
    }

    /// Opens `url` and waits for it to load.
    pub fn goto(&self, url: &str) {
        self.call("POST", "/url", &json!({ "url": url }));
    }

    /// The current page's URL.
    pub fn url(&self) -> String {
        self.call("GET", "/url", &Value::Null)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The element `css` selects, if any.
    pub fn find(&self, css: &str) -> Option<String> {
        let found = self.call(
            "POST",
            "/elements",
            &json!({"using": "css selector", "value": css}),
        );
        found
            .as_array()?
            .first()
            .and_then(|e| e.as_object()?.values().next()?.as_str().map(str::to_owned))
    }

    /// The visible text of the element `css` selects (empty when there is none), read in one
    /// step: a page that refreshes a section cannot swap it between the find and the read.
    pub fn text(&self, css: &str) -> String {
        self.call(
            "POST",
            "/execute/sync",
            &json!({
                "script": "const e = document.querySelector(arguments[0]); return e ? (e.innerText ?? e.textContent) : '';",
                "args": [css],
            }),
        )
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Types `text` into the element `css` selects.
    pub fn type_into(&self, css: &str, text: &str) {
        let element = self.find(css).unwrap_or_else(|| panic!("no {css}"));
        self.call(
            "POST",
            &format!("/element/{element}/value"),
            &json!({ "text": text }),
        );
    }

    /// Clicks the element `css` selects; found again when the page replaced it between the
    /// find and the click (a section that refreshes itself), at most five times.
    pub fn click(&self, css: &str) {
        for _ in 0..5 {
            let element = self.find(css).unwrap_or_else(|| panic!("no {css}"));
            match self.try_call("POST", &format!("/element/{element}/click"), &json!({})) {
                Ok(_) => return,
                Err((_, answer)) if answer["value"]["error"] == "stale element reference" => {}
                Err((status, answer)) => panic!("WebDriver click on {css}: {status} {answer}"),
            }
        }
        panic!("{css} was replaced five times before it could be clicked");
    }

    /// Runs `script` in the page; what it returns.
    pub fn execute(&self, script: &str) -> Value {
        self.call(
            "POST",
            "/execute/sync",
            &json!({ "script": script, "args": [] }),
        )
    }

    /// The page's cookie `name` (the browser sends it; the page's script cannot read an
    /// `HttpOnly` one).
    pub fn cookie(&self, name: &str) -> Option<Value> {
        let cookies = self.call("GET", "/cookie", &Value::Null);
        cookies
            .as_array()?
            .iter()
            .find(|c| c["name"] == name)
            .cloned()
    }

    /// Waits up to `limit` for the text of `css` to satisfy `done`; the last text.
    ///
    /// # Panics
    ///
    /// When it does not, with the text seen.
    pub fn wait_text(&self, css: &str, limit: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let text = self.text(css);
            if done(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {limit:?} waiting on {css}: last `{text}`"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Writes a PNG of the window to `path` (its directory made if missing).
    pub fn screenshot(&self, path: &Path) {
        let png = self.call("GET", "/screenshot", &Value::Null);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64"))
            .expect("a PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("the screenshots' directory");
        }
        std::fs::write(path, bytes).expect("the screenshot is written");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.http.send("DELETE", &self.base, &[], b"");
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Where the tests write their screenshots: `target/console-screenshots` (not kept in the
/// repository).
pub fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
}
