//! Real processes and sockets for the pipeline tests: a `dragoman serve` process, a webhook
//! sink that records what it receives (and fails on demand), and an HTTP client.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// Waits until `done` holds, polling every 20 ms, at most `limit`.
///
/// # Panics
///
/// When it does not hold in time, with `what`.
pub fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

// ===== The server process =====

/// A `dragoman serve` process with its own config and data directory.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    /// The program and the arguments before the config file's path.
    command: (PathBuf, Vec<String>),
    /// Where it listens.
    pub addr: SocketAddr,
    config: PathBuf,
    /// Its data directory.
    pub data_dir: PathBuf,
    /// What it wrote to stderr (its log), line by line; also echoed to the test's stderr.
    log: Arc<Mutex<Vec<String>>>,
    /// Its environment besides the test's: `DRAGOMAN_LOG=warn` unless the test says.
    env: Vec<(String, String)>,
}

impl Server {
    /// Writes `config` (with `{data_dir}` and `{cache_dir}` filled in) to `dir` and starts the
    /// host on it.
    pub fn start(dir: &Path, config: &str) -> Self {
        let serve = (crate::dragoman_bin().to_owned(), vec!["serve".into()]);
        Self::start_program(serve, dir, config)
    }

    /// Starts `program` with its `arguments`, then `--config` and the written config. It
    /// must print `listening on http://ADDR` as its first line, as `dragoman serve` does.
    pub fn start_program(command: (PathBuf, Vec<String>), dir: &Path, config: &str) -> Self {
        let mut server = Self::unstarted(command, dir);
        server.set_config(config);
        server.spawn();
        server
    }

    fn unstarted(command: (PathBuf, Vec<String>), dir: &Path) -> Self {
        Self {
            child: None,
            command,
            addr: "127.0.0.1:0".parse().expect("an address"),
            config: dir.join("dragoman.toml"),
            data_dir: dir.join("data"),
            log: Arc::default(),
            env: vec![("DRAGOMAN_LOG".into(), "warn".into())],
        }
    }

    /// Starts `dragoman serve` with these environment variables set (they override the
    /// default `DRAGOMAN_LOG=warn`).
    pub fn start_with_env(dir: &Path, config: &str, env: &[(&str, &str)]) -> Self {
        let serve = (crate::dragoman_bin().to_owned(), vec!["serve".into()]);
        let mut server = Self::unstarted(serve, dir);
        for (name, value) in env {
            server.env.retain(|(n, _)| n != name);
            server.env.push(((*name).to_owned(), (*value).to_owned()));
        }
        server.set_config(config);
        server.spawn();
        server
    }

    /// Rewrites the config file; it takes effect at the next (re)start.
    pub fn set_config(&mut self, config: &str) {
        let cache = crate::shared_cache().join("serve");
        let text = config
            .replace("{data_dir}", &self.data_dir.display().to_string())
            .replace("{cache_dir}", &cache.display().to_string());
        std::fs::write(&self.config, text).expect("the config is written");
    }

    fn spawn(&mut self) {
        let (program, arguments) = &self.command;
        let mut child = Command::new(program)
            .args(arguments)
            .arg("--config")
            .arg(&self.config)
            .envs(self.env.iter().map(|(n, v)| (n, v)))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{} starts: {e}", program.display()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = self.log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("{line}");
                log.lock().expect("the log lock is not poisoned").push(line);
            }
        });
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = tx.send(line);
            }
            // Keep draining so the host never blocks on a full pipe.
            for _ in lines {}
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "{} did not say where it listens within 60 s",
                    program.display()
                )
            });
        let addr = line
            .strip_prefix("listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line: {line}"));
        self.addr = addr.parse().expect("a socket address");
        self.child = Some(child);
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL is delivered");
            child.wait().expect("the process is reaped");
        }
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        let mut child = self.child.take().expect("the server is running");
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().expect("the process can be waited for") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "dragoman serve did not stop within 60 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the host again on the same config and data directory (and a new port).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "stop or kill the server first");
        self.spawn();
    }

    /// Its resident memory now, in bytes (`VmRSS` in `/proc/PID/status`).
    ///
    /// # Panics
    ///
    /// When it is not running, or the file cannot be read.
    pub fn resident_bytes(&self) -> u64 {
        self.status_kib("VmRSS:") * 1024
    }

    /// Its peak resident memory since it started or since [`Server::reset_peak`], in bytes
    /// (`VmHWM` in `/proc/PID/status`).
    ///
    /// # Panics
    ///
    /// When it is not running, or the file cannot be read.
    pub fn peak_bytes(&self) -> u64 {
        self.status_kib("VmHWM:") * 1024
    }

    /// Starts its peak resident memory again from what it holds now (`5` into
    /// `/proc/PID/clear_refs`).
    ///
    /// # Panics
    ///
    /// When it is not running, or the file cannot be written.
    pub fn reset_peak(&self) {
        let pid = self.child.as_ref().expect("the server is running").id();
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("procfs");
    }

    fn status_kib(&self, field: &str) -> u64 {
        let pid = self.child.as_ref().expect("the server is running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("procfs");
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("a size in kB")
    }

    /// The names of its threads now (`/proc/PID/task/*/comm`, at most 15 bytes each).
    ///
    /// # Panics
    ///
    /// When it is not running.
    pub fn thread_names(&self) -> Vec<String> {
        let pid = self.child.as_ref().expect("the server is running").id();
        let mut names = Vec::new();
        for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("procfs") {
            let comm = task.expect("a task").path().join("comm");
            if let Ok(name) = std::fs::read_to_string(comm) {
                names.push(name.trim_end().to_owned());
            }
        }
        names
    }

    /// The lines it has logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log
            .lock()
            .expect("the log lock is not poisoned")
            .clone()
    }

    /// The base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Posts the seed order with its order id replaced by `order_id` to `route`, and asserts
    /// it was accepted (`202`).
    ///
    /// # Panics
    ///
    /// When the request fails or is not accepted.
    pub fn send_order(&self, http: &Http, route: &str, order_id: &str) -> Reply {
        let body = crate::seed_order().replace("SEED-2026-000417", order_id);
        let reply = http
            .send(
                "POST",
                &format!("{}/v1/routes/{route}/messages", self.url()),
                &[("content-type", "application/json")],
                body.as_bytes(),
            )
            .expect("the order is sent");
        assert_eq!(reply.status, 202, "{}", reply.text());
        reply
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `dragoman audit verify --data-dir` on a stopped server's store, asserts it exits 0
/// and returns what it printed.
///
/// # Panics
///
/// When the verification fails.
pub fn verify_offline(data_dir: &Path) -> String {
    let verify = Command::new(crate::dragoman_bin())
        .args(["audit", "verify", "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("dragoman runs");
    let stdout = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(verify.status.success(), "{stdout}");
    stdout
}

/// Runs `dragoman audit verify --database-url` on a PostgreSQL store, asserts it exits 0 and
/// returns what it printed.
///
/// # Panics
///
/// When the verification fails.
pub fn verify_database(url: &str) -> String {
    let verify = Command::new(crate::dragoman_bin())
        .args(["audit", "verify", "--database-url", url])
        .output()
        .expect("dragoman runs");
    let stdout = String::from_utf8_lossy(&verify.stdout).into_owned();
    assert!(
        verify.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    stdout
}

// ===== The webhook sink =====

/// One event as the webhook received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// `ce-id`.
    pub id: String,
    /// `ce-type`.
    pub event_type: String,
    /// `ce-subject`.
    pub subject: String,
    /// `ce-partitionkey`.
    pub partition_key: String,
    /// `Idempotency-Key`.
    pub idempotency_key: String,
    /// `traceparent`.
    pub traceparent: String,
    /// `ce-plugin`: the plugin that produced the event, `name@version`.
    pub plugin: String,
    /// `ce-pluginsha256`.
    pub plugin_sha256: String,
    /// Every header of the delivery.
    pub headers: http::HeaderMap,
    /// The body as it arrived.
    pub raw_body: Vec<u8>,
    /// The body.
    pub data: serde_json::Value,
}

/// Serves one webhook connection until it closes.
async fn serve_connection<S>(stream: S, state: Arc<WebhookState>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let state = state.clone();
        async move { Ok::<_, std::convert::Infallible>(state.receive(request).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// A loopback address where nothing listens (a sink that is down): a port taken from the
/// system and given back.
pub fn unused_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a loopback port")
}

/// A webhook on loopback that records every delivery it acknowledges.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<WebhookState>,
}

#[derive(Debug, Default)]
struct WebhookState {
    received: Mutex<Vec<Received>>,
    /// Answer 503 to this many requests, then accept.
    fail_next: AtomicU32,
    /// Answer 503 to one request in this many (0: never), by a seeded counter.
    fail_one_in: AtomicU32,
    /// Answer 429 with `Retry-After: retry_after` to this many requests.
    throttle_next: AtomicU32,
    retry_after: AtomicU64,
    requests: AtomicU64,
}

impl Webhook {
    /// Starts a webhook on its own thread and runtime.
    pub fn start() -> Self {
        Self::serve(std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port"))
    }

    /// Starts a webhook at `addr`: a sink that was down (nothing listened there) comes back.
    /// Waits up to 10 s for the address to be free.
    pub fn start_at(addr: SocketAddr) -> Self {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match std::net::TcpListener::bind(addr) {
                Ok(listener) => return Self::serve(listener),
                Err(e) if Instant::now() >= deadline => {
                    panic!("cannot listen on {addr}: {e}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// Starts a webhook that speaks HTTPS with `tls` (see [`crate::tls`]).
    pub fn start_tls(tls: Arc<rustls::ServerConfig>) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        Self::serve_with(listener, Some(tokio_rustls::TlsAcceptor::from(tls)))
    }

    fn serve(std_listener: std::net::TcpListener) -> Self {
        Self::serve_with(std_listener, None)
    }

    fn serve_with(
        std_listener: std::net::TcpListener,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> Self {
        std_listener.set_nonblocking(true).expect("non-blocking");
        let addr = std_listener.local_addr().expect("an address");
        let state = Arc::new(WebhookState::default());
        let serving = state.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(std_listener).expect("a tokio listener");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let state = serving.clone();
                    let tls = tls.clone();
                    tokio::spawn(async move {
                        match tls {
                            None => serve_connection(stream, state).await,
                            Some(tls) => {
                                if let Ok(stream) = tls.accept(stream).await {
                                    serve_connection(stream, state).await;
                                }
                            }
                        }
                    });
                }
            });
        });
        Self { addr, state }
    }

    /// The URL to configure as the sink.
    pub fn url(&self) -> String {
        format!("http://{}/events", self.addr)
    }

    /// A `[sinks.NAME]` table that delivers to this webhook.
    pub fn sink_table(&self, name: &str) -> String {
        format!(
            "[sinks.{name}]\ntype = \"http\"\nurl = \"{}\"\n",
            self.url()
        )
    }

    /// Fails the next `n` requests with 503.
    pub fn fail_next(&self, n: u32) {
        self.state.fail_next.store(n, Ordering::SeqCst);
    }

    /// Answers the next `n` requests `429 Too Many Requests` with `Retry-After: secs`.
    pub fn throttle_next(&self, n: u32, secs: u64) {
        self.state.retry_after.store(secs, Ordering::SeqCst);
        self.state.throttle_next.store(n, Ordering::SeqCst);
    }

    /// Fails one request in `n` with 503 (0 stops).
    pub fn fail_one_in(&self, n: u32) {
        self.state.fail_one_in.store(n, Ordering::SeqCst);
    }

    /// What was acknowledged, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.state
            .received
            .lock()
            .expect("the lock is not poisoned")
            .clone()
    }

    /// Acknowledged deliveries per event id.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in self.received() {
            *counts.entry(r.id).or_default() += 1;
        }
        counts
    }

    /// How many requests arrived, failed or not.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }
}

impl WebhookState {
    async fn receive(
        &self,
        request: http::Request<hyper::body::Incoming>,
    ) -> http::Response<Full<Bytes>> {
        let n = self.requests.fetch_add(1, Ordering::SeqCst) + 1;
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let failing = self
            .fail_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        let throttled = self
            .throttle_next
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        if throttled {
            let secs = self.retry_after.load(Ordering::SeqCst);
            return http::Response::builder()
                .status(429)
                .header("retry-after", secs.to_string())
                .body(Full::new(Bytes::new()))
                .expect("a response");
        }
        let one_in = self.fail_one_in.load(Ordering::SeqCst);
        if failing || (one_in > 0 && n.is_multiple_of(u64::from(one_in))) {
            return http::Response::builder()
                .status(503)
                .body(Full::new(Bytes::new()))
                .expect("a response");
        }
        let header = |name: &str| header_text(&parts.headers, name);
        let received = Received {
            id: header("ce-id"),
            event_type: header("ce-type"),
            subject: header("ce-subject"),
            partition_key: header("ce-partitionkey"),
            idempotency_key: header("idempotency-key"),
            traceparent: header("traceparent"),
            plugin: header("ce-plugin"),
            plugin_sha256: header("ce-pluginsha256"),
            headers: parts.headers.clone(),
            raw_body: body.to_vec(),
            data: serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null),
        };
        self.received
            .lock()
            .expect("the lock is not poisoned")
            .push(received);
        http::Response::new(Full::new(Bytes::new()))
    }
}

// ===== The client =====

/// The bytes of every file under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => dirs.push(entry.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// An answer: status, headers, body.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: u16,
    /// The headers.
    pub headers: http::HeaderMap,
    /// The body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The body as text, for messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An HTTP/1 client with its own runtime, for synchronous tests.
#[derive(Debug)]
pub struct Http {
    runtime: tokio::runtime::Runtime,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl Default for Http {
    fn default() -> Self {
        Self::new()
    }
}

impl Http {
    /// A client.
    pub fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let client = Client::builder(TokioExecutor::new()).build_http();
        Self { runtime, client }
    }

    /// Sends a request and waits for the answer.
    ///
    /// # Errors
    ///
    /// When the connection fails (the server is down, for example).
    pub fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> Result<Reply, String> {
        self.runtime
            .block_on(send(&self.client, method, url, headers, body.to_vec()))
    }

    /// The runtime, for tests that send concurrently.
    pub fn runtime(&self) -> &tokio::runtime::Runtime {
        &self.runtime
    }

    /// A clone of the client, for tasks.
    pub fn client(&self) -> Client<HttpConnector, Full<Bytes>> {
        self.client.clone()
    }
}

/// Sends one request.
///
/// # Errors
///
/// When the connection fails or no answer comes within 30 s.
pub async fn send(
    client: &Client<HttpConnector, Full<Bytes>>,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> Result<Reply, String> {
    let mut request = http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .map_err(|_| "no answer within 30 s".to_owned())?
        .map_err(|e| e.to_string())?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes()
        .to_vec();
    Ok(Reply {
        status,
        headers,
        body,
    })
}

/// A config for one route `orders` on the seed plugin, with the given sinks block and route
/// extras; `{data_dir}` and `{cache_dir}` are filled in by [`Server::start`].
pub fn config(sinks: &str, route_sinks: &str, extra: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
data_dir = "{{data_dir}}"

[sandbox]
cache_dir = "{{cache_dir}}"

[relay]
poll_interval_ms = 100

{sinks}

[routes.orders]
plugin = "{plugin}"
sinks = [{route_sinks}]
{extra}
"#,
        plugin = crate::wasm::ACME_ERP_ORDERS,
    )
}

/// A header's value as text (empty when absent or not text).
pub fn header_text(headers: &http::HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}
