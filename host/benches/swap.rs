//! Hot swap over loopback: how long a new version takes to serve, and what swapping does to
//! ingest, in the same run.
//!
//! A real host (`Host::serve` on 127.0.0.1) serves route `orders` on the seed translator
//! (v1) with its fixtures embedded; v2 carries its own. Measured:
//!
//! 1. **serving after an upload, cached**: `PUT /v1/plugins/acme-erp-orders` of a version
//!    whose compiled form is in the cache, until the answer (the host answers once the
//!    version serves: loaded, checked, its fixtures run, swapped in). v1 and v2 in turn.
//! 2. **serving after an upload, cold**: the same with a version never seen (v2 with a
//!    unique custom section appended, so its sha256 is new and it compiles).
//! 3. **serving after a file lands**: v1 or v2 (cached) renamed into the watched directory,
//!    until `GET /v1/plugins` shows it active (the debounce, 10 ms here, included).
//! 4. **ingest without swaps**, then **ingest with a swap a second** (uploads of v1 and v2 in
//!    turn), 32 concurrent clients posting distinct seed orders for a fixed time each.
//!
//! Run: `cargo bench -p dragoman --bench swap` (`-- --seconds N --clients N --rounds N`).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dragoman::config::Config;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

mod support;
use support::{arg, root};

#[path = "support/serving.rs"]
mod serving;
use serving::Serving;

#[path = "../../tests/wasm_build.rs"]
#[allow(dead_code, reason = "this benchmark builds only the Rust plugins")]
mod wasm_build;

type Http = Client<HttpConnector, Full<Bytes>>;

/// A plugin built and packed with its fixtures.
fn packed(root: &Path, target: &Path, project: &str) -> Vec<u8> {
    let dir = root.join("plugins").join(project);
    wasm_build::build(&dir.join("Cargo.toml"), target).expect("the plugin builds");
    let wasm = std::fs::read(wasm_build::artifact(target, project)).expect("the plugin");
    dragoman::fixtures::pack(&wasm, &dir.join("fixtures")).expect("its fixtures pack")
}

/// `wasm` with a custom section `bench-nonce` holding `n`: the same plugin, a new sha256.
fn renamed(wasm: &[u8], n: u64) -> Vec<u8> {
    let name = b"bench-nonce";
    let payload = n.to_le_bytes();
    let mut out = wasm.to_vec();
    out.push(0);
    out.push(u8::try_from(1 + name.len() + payload.len()).expect("a short section"));
    out.push(u8::try_from(name.len()).expect("a short name"));
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn send(http: &Http, method: &str, url: &str, body: Vec<u8>) -> (u16, Bytes) {
    let content_type = if url.ends_with("/messages") {
        "application/json"
    } else {
        "application/wasm"
    };
    let request = http::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", content_type)
        .body(Full::new(Bytes::from(body)))
        .expect("a request");
    let response = http.request(request).await.expect("the host answers");
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("the body")
        .to_bytes();
    (status, body)
}

/// The sha256 of the version route `orders` serves.
async fn active(http: &Http, base: &str) -> String {
    let (_, body) = send(http, "GET", &format!("{base}/v1/plugins"), Vec::new()).await;
    let listing: serde_json::Value = serde_json::from_slice(&body).expect("JSON");
    listing["plugins"]["acme-erp-orders"]["routes"]["orders"]["active"]["sha256"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Uploads `wasm`; the time until the host answered that it serves.
async fn upload(http: &Http, base: &str, wasm: Vec<u8>) -> Duration {
    let started = Instant::now();
    let (status, body) = send(
        http,
        "PUT",
        &format!("{base}/v1/plugins/acme-erp-orders"),
        wasm,
    )
    .await;
    let took = started.elapsed();
    assert!(
        status == 200 || status == 201,
        "{status} {}",
        String::from_utf8_lossy(&body)
    );
    took
}

fn summary(name: &str, mut times: Vec<Duration>) {
    times.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:40} median {:>7.1} ms   max {:>7.1} ms   ({} swaps)",
        ms(times[times.len() / 2]),
        ms(*times.last().expect("some")),
        times.len()
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let seconds = arg("--seconds", 8);
    let clients = arg("--clients", 32) as usize;
    let rounds = arg("--rounds", 10) as usize;
    let root = root();
    let target = wasm_build::target_dir(&root);
    let v1 = packed(&root, &target, "acme-erp-orders");
    let v2 = packed(&root, &target, "acme-erp-orders-v2");
    let seed =
        std::fs::read_to_string(root.join("examples/seed-order.json")).expect("the seed order");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let v1_file = dir.path().join("v1.wasm");
    std::fs::write(&v1_file, &v1).expect("v1 written");
    let drop = dir.path().join("drop");
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {data:?}\n\
         [plugins]\nwatch_dir = {drop:?}\ndebounce_ms = 10\n\
         [routes.orders]\nplugin = {plugin:?}\n",
        data = dir.path().join("data").display().to_string(),
        drop = drop.display().to_string(),
        plugin = v1_file.display().to_string(),
    );
    let config = Config::parse(&config, dir.path()).expect("the bench config parses");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let serving = Serving::start(config).await;
        let base = serving.base.clone();
        let http: Http = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(clients + 4)
            .build_http();

        // Both versions once, so that both are in the compiled cache.
        upload(&http, &base, v2.clone()).await;
        upload(&http, &base, v1.clone()).await;

        let mut cached = Vec::new();
        for i in 0..rounds * 2 {
            let wasm = if i % 2 == 0 { &v2 } else { &v1 };
            cached.push(upload(&http, &base, wasm.clone()).await);
        }
        let mut cold = Vec::new();
        for i in 0..rounds {
            // A new sha256 each time: compiled, then swapped in; v1 between them.
            cold.push(upload(&http, &base, renamed(&v2, i as u64)).await);
            upload(&http, &base, v1.clone()).await;
        }
        let mut by_file = Vec::new();
        for i in 0..rounds * 2 {
            let wasm = if i % 2 == 0 { &v2 } else { &v1 };
            let sha = sha256(wasm);
            let hidden = drop.join(format!(".landing-{i}"));
            std::fs::write(&hidden, wasm).expect("written");
            let started = Instant::now();
            std::fs::rename(&hidden, drop.join(format!("version-{i}.wasm"))).expect("renamed");
            let deadline = started + Duration::from_secs(30);
            while active(&http, &base).await != sha {
                assert!(Instant::now() < deadline, "the dropped file did not serve");
            }
            by_file.push(started.elapsed());
        }

        let url = format!("{base}/v1/routes/orders/messages");
        let duration = Duration::from_secs(seconds);
        let counter = Arc::new(AtomicU64::new(0));
        let steady = load(&http, &url, &seed, clients, duration, &counter).await;
        let swapping = {
            let (swapper, base, v1, v2) = (http.clone(), base.clone(), v1.clone(), v2.clone());
            let swaps = tokio::spawn(async move {
                let until = Instant::now() + duration;
                let mut n = 0u64;
                while Instant::now() < until {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let wasm = if n.is_multiple_of(2) {
                        v2.clone()
                    } else {
                        v1.clone()
                    };
                    upload(&swapper, &base, wasm).await;
                    n += 1;
                }
                n
            });
            let measured = load(&http, &url, &seed, clients, duration, &counter).await;
            (measured, swaps.await.expect("the swapping task"))
        };

        println!("time until the new version serves (acme-erp-orders, Rust):");
        summary("upload, compiled form in the cache", cached);
        summary("upload, cold compile", cold);
        summary("file landing (10 ms debounce), cached", by_file);
        println!("ingest, {clients} clients, {seconds} s each:");
        println!("{:40} {:>8.0} msg/s", "without swaps", steady);
        println!(
            "{:40} {:>8.0} msg/s   ({} swaps)",
            "one swap a second", swapping.0, swapping.1
        );
        println!("with swaps / without = {:.2}", swapping.0 / steady);
        serving.stop().await;
    });
}

/// Posts distinct seed orders from `clients` tasks for `duration`; messages a second.
async fn load(
    http: &Http,
    url: &str,
    seed: &str,
    clients: usize,
    duration: Duration,
    counter: &Arc<AtomicU64>,
) -> f64 {
    let until = Instant::now() + duration;
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (http, url, seed, counter) = (
            http.clone(),
            url.to_owned(),
            seed.to_owned(),
            counter.clone(),
        );
        tasks.spawn(async move {
            let mut done = 0u64;
            while Instant::now() < until {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let body = seed.replacen("SEED-2026-000417", &format!("SWAP-{n}"), 1);
                let (status, _) = send(&http, "POST", &url, body.into_bytes()).await;
                assert_eq!(status, 202, "every message accepted");
                done += 1;
            }
            done
        });
    }
    let mut total = 0;
    while let Some(done) = tasks.join_next().await {
        total += done.expect("a client task");
    }
    total as f64 / started.elapsed().as_secs_f64()
}
