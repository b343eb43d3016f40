//! Durable ingest over loopback against the limit, bare sled.
//!
//! A real host (`Host::serve` on 127.0.0.1) with the seed translator and no sink is loaded by
//! 64 concurrent clients posting distinct 1 KiB seed orders for a fixed time; then, in the
//! same run, 64 concurrent writers do what the store must do at the least for each message
//! (one `apply_batch` of the same bytes under three keys, then a flush that concurrent
//! writers share) on bare sled. Both report throughput and p50/p99 latency; the summary
//! gives their ratio.
//!
//! Run: `cargo bench -p dragoman --bench ingest` (`-- --seconds N --clients N` to change the
//! load).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dragoman::Host;
use dragoman::config::Config;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

#[path = "../../tests/wasm_build.rs"]
#[allow(dead_code, reason = "this benchmark builds only the Rust plugin")]
mod wasm_build;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ sits in the repository root")
        .to_owned()
}

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Figures {
    throughput: f64,
    p50: Duration,
    p99: Duration,
    count: usize,
}

fn figures(mut latencies: Vec<Duration>, elapsed: Duration) -> Figures {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Figures {
        throughput: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        count: latencies.len(),
    }
}

fn show(name: &str, f: &Figures) {
    println!(
        "{name:28} {:>8.0} msg/s   p50 {:>7.2} ms   p99 {:>7.2} ms   ({} messages)",
        f.throughput,
        f.p50.as_secs_f64() * 1e3,
        f.p99.as_secs_f64() * 1e3,
        f.count
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let seconds = arg("--seconds", 8);
    let clients = arg("--clients", 64) as usize;
    let root = root();
    let target = wasm_build::target_dir(&root);
    wasm_build::build(&root.join("plugins/acme-erp-orders/Cargo.toml"), &target)
        .expect("the plugin builds");
    let plugin = wasm_build::artifact(&target, "acme-erp-orders");
    let seed =
        std::fs::read_to_string(root.join("examples/seed-order.json")).expect("the seed order");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");

    println!(
        "{clients} concurrent clients, {seconds} s each, 1 KiB seed order ({} bytes)",
        seed.len()
    );
    let ingest = runtime.block_on(ingest(
        &plugin,
        &seed,
        clients,
        Duration::from_secs(seconds),
    ));
    show("durable ingest over HTTP", &ingest);
    let bare = runtime.block_on(bare_sled(
        seed.as_bytes(),
        clients,
        Duration::from_secs(seconds),
    ));
    show("bare sled batch + flush", &bare);
    println!("ingest / bare = {:.2}", ingest.throughput / bare.throughput);
}

async fn ingest(plugin: &Path, seed: &str, clients: usize, duration: Duration) -> Figures {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = {:?}\n[routes.orders]\nplugin = {:?}\n",
        dir.path().join("data").display().to_string(),
        plugin.display().to_string()
    );
    let config = Config::parse(&config, dir.path()).expect("the bench config parses");
    let host = Host::builder()
        .config(config)
        .build()
        .expect("the host builds");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let url = format!(
        "http://{}/v1/routes/orders/messages",
        listener.local_addr().expect("an address")
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        host.serve(listener, async {
            let _ = stopped.await;
        })
        .await
    });

    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(clients)
        .build_http::<Full<Bytes>>();
    let counter = Arc::new(AtomicU64::new(0));
    let run = |warmup: bool| {
        let (client, url, counter, seed) = (
            client.clone(),
            url.clone(),
            counter.clone(),
            seed.to_owned(),
        );
        async move {
            let until = Instant::now()
                + if warmup {
                    Duration::from_secs(1)
                } else {
                    duration
                };
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..clients {
                let (client, url, counter, seed) =
                    (client.clone(), url.clone(), counter.clone(), seed.clone());
                tasks.spawn(async move {
                    let mut latencies = Vec::new();
                    while Instant::now() < until {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        let body = seed.replacen("SEED-2026-000417", &format!("BENCH-{n}"), 1);
                        let request = http::Request::post(&url)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body)))
                            .expect("a request");
                        let started = Instant::now();
                        let response = client.request(request).await.expect("the host answers");
                        let status = response.status();
                        let _ = response.into_body().collect().await;
                        assert_eq!(status, 202);
                        latencies.push(started.elapsed());
                    }
                    latencies
                });
            }
            let mut all = Vec::new();
            while let Some(done) = tasks.join_next().await {
                all.extend(done.expect("a client task"));
            }
            all
        }
    };
    run(true).await;
    let started = Instant::now();
    let latencies = run(false).await;
    let elapsed = started.elapsed();
    let _ = stop.send(());
    server
        .await
        .expect("the server task")
        .expect("a clean shutdown");
    figures(latencies, elapsed)
}

async fn bare_sled(bytes: &[u8], clients: usize, duration: Duration) -> Figures {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = sled::Config::new()
        .path(dir.path())
        .open()
        .expect("sled opens");
    let tree = db.open_tree("bare").expect("a tree");
    let counter = Arc::new(AtomicU64::new(0));
    let bytes = Bytes::copy_from_slice(bytes);
    let started = Instant::now();
    let until = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (db, tree, counter, bytes) = (db.clone(), tree.clone(), counter.clone(), bytes.clone());
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let n = counter.fetch_add(1, Ordering::Relaxed);
                let begun = Instant::now();
                let (tree, bytes) = (tree.clone(), bytes.clone());
                tokio::task::spawn_blocking(move || {
                    let mut batch = sled::Batch::default();
                    batch.insert(format!("i/{n}").as_bytes(), &bytes[..64]);
                    batch.insert(format!("m/{n}").as_bytes(), &bytes[..]);
                    batch.insert(format!("o/{n:016x}").as_bytes(), &bytes[..]);
                    tree.apply_batch(batch).expect("the batch applies");
                })
                .await
                .expect("a blocking task");
                // A blocking flush per writer: concurrent flushes share the disk write. (sled's
                // `flush_async` deadlocked here against concurrent batches.)
                let db = db.clone();
                tokio::task::spawn_blocking(move || db.flush().expect("the flush succeeds"))
                    .await
                    .expect("a blocking task");
                latencies.push(begun.elapsed());
            }
            latencies
        });
    }
    let mut all = Vec::new();
    while let Some(done) = tasks.join_next().await {
        all.extend(done.expect("a writer task"));
    }
    figures(all, started.elapsed())
}
