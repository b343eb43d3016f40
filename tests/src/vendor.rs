//! A vendor API on loopback that fails on demand: ACME ERP's API v2 for orders
//! (`GET /v2/orders/{id}`, `POST /v2/orders/{id}/cancellation`), with faults to inject:
//! errors (a status), latency, dropped connections and 429 with `Retry-After`. It records
//! every request it sees, faulted or not, and answers a repeated `Idempotency-Key` with the
//! answer it gave the first time, as a vendor that deduplicates does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// What the stub does with the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers as the API does.
    None,
    /// Answers every request with this status.
    Status(u16),
    /// Answers 429 with `Retry-After` in seconds.
    TooMany(u64),
    /// Answers as the API does, this long after the request.
    Latency(Duration),
    /// Closes the connection without answering.
    Drop,
}

/// One request as the stub saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The method.
    pub method: String,
    /// The path.
    pub path: String,
    /// Its `Idempotency-Key`.
    pub idempotency_key: String,
    /// Its body.
    pub body: Vec<u8>,
    /// Its `traceparent`.
    pub traceparent: String,
}

#[derive(Debug)]
struct State {
    fault: Mutex<Fault>,
    seen: Mutex<Vec<Seen>>,
    /// The first answer to each key that was carried out (2xx), by key.
    done: Mutex<BTreeMap<String, (u16, String)>>,
    /// Requests carried out (not faulted, not answered from `done`).
    carried_out: AtomicU64,
    /// 2xx answers per key, replays of a stored answer included.
    ok: Mutex<BTreeMap<String, usize>>,
}

/// The stub. Cheap to clone.
#[derive(Debug, Clone)]
pub struct VendorStub {
    /// Where it listens.
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl VendorStub {
    /// Starts the stub on its own thread and runtime.
    pub fn start() -> Self {
        Self::start_on(std::net::TcpListener::bind("127.0.0.1:0").expect("a loopback port"))
    }

    fn start_on(listener: std::net::TcpListener) -> Self {
        listener.set_nonblocking(true).expect("non-blocking");
        let addr = listener.local_addr().expect("an address");
        let state = Arc::new(State {
            fault: Mutex::new(Fault::None),
            seen: Mutex::default(),
            done: Mutex::default(),
            carried_out: AtomicU64::new(0),
            ok: Mutex::default(),
        });
        let serving = state.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("a listener");
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let state = serving.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request| {
                            let state = state.clone();
                            async move { state.answer(request).await }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Self { addr, state }
    }

    /// The base URL to configure as the vendor's.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Sets what the stub does with the next requests.
    pub fn set(&self, fault: Fault) {
        *self.state.fault.lock().expect("not poisoned") = fault;
    }

    /// Every request seen, faulted or not, in arrival order.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().expect("not poisoned").clone()
    }

    /// How many requests arrived.
    pub fn requests(&self) -> usize {
        self.state.seen.lock().expect("not poisoned").len()
    }

    /// How many 2xx answers each key got, replays of a stored answer included: a command
    /// the vendor took exactly once has 1.
    pub fn ok_answers(&self) -> BTreeMap<String, usize> {
        self.state.ok.lock().expect("not poisoned").clone()
    }

    /// How many requests were carried out: answered 2xx the first time their key came.
    pub fn carried_out(&self) -> u64 {
        self.state.carried_out.load(Ordering::SeqCst)
    }
}

impl State {
    async fn answer(
        &self,
        request: http::Request<hyper::body::Incoming>,
    ) -> Result<http::Response<Full<Bytes>>, std::io::Error> {
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes().to_vec())
            .unwrap_or_default();
        let header = |name: &str| crate::net::header_text(&parts.headers, name);
        let key = header("idempotency-key");
        let traceparent = header("traceparent");
        let path = parts.uri.path().to_owned();
        self.seen.lock().expect("not poisoned").push(Seen {
            method: parts.method.to_string(),
            path: path.clone(),
            idempotency_key: key.clone(),
            body: body.clone(),
            traceparent,
        });
        let fault = *self.fault.lock().expect("not poisoned");
        match fault {
            Fault::None => {}
            Fault::Status(status) => return Ok(reply(status, "{\"error\": \"injected\"}", None)),
            Fault::TooMany(seconds) => {
                return Ok(reply(429, "{\"error\": \"slow down\"}", Some(seconds)));
            }
            Fault::Latency(pause) => tokio::time::sleep(pause).await,
            Fault::Drop => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "dropped on purpose",
                ));
            }
        }
        let stored = if key.is_empty() {
            None
        } else {
            self.done.lock().expect("not poisoned").get(&key).cloned()
        };
        let replay = stored.is_some();
        let (status, answer) = stored.unwrap_or_else(|| api(&parts.method, &path));
        if (200..300).contains(&status) {
            *self
                .ok
                .lock()
                .expect("not poisoned")
                .entry(key.clone())
                .or_default() += 1;
        }
        if replay {
            return Ok(reply(status, &answer, None));
        }
        if (200..300).contains(&status) {
            self.carried_out.fetch_add(1, Ordering::SeqCst);
            if !key.is_empty() {
                self.done
                    .lock()
                    .expect("not poisoned")
                    .insert(key, (status, answer.clone()));
            }
        }
        Ok(reply(status, &answer, None))
    }
}

/// ACME's API v2: an order `{id}` exists unless its id starts with `Z`.
fn api(method: &http::Method, path: &str) -> (u16, String) {
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let order = |id: &str, status: &str| {
        serde_json::json!({
            "orderNumber": id,
            "orderStatus": status,
            "currency": "EUR",
            "lines": [{"productCode": "SKU-RED-42", "quantity": 2, "unitPrice": "12.50"}],
        })
        .to_string()
    };
    match (method.as_str(), segments.as_slice()) {
        (_, ["v2", "orders", id, ..]) if id.starts_with('Z') => {
            (404, "{\"error\": \"no such order\"}".into())
        }
        ("GET", ["v2", "orders", id]) => (200, order(id, "OPEN")),
        ("POST", ["v2", "orders", id, "cancellation"]) => (200, order(id, "CANCELLED")),
        _ => (404, "{\"error\": \"no such resource\"}".into()),
    }
}

fn reply(status: u16, body: &str, retry_after: Option<u64>) -> http::Response<Full<Bytes>> {
    let mut response = http::Response::builder()
        .status(status)
        .header("content-type", "application/json");
    if let Some(seconds) = retry_after {
        response = response.header("retry-after", seconds.to_string());
    }
    response
        .body(Full::new(Bytes::from(body.to_owned())))
        .expect("a response")
}
