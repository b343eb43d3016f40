//! Messages consumed from a NATS JetStream stream against the same orders ingested over HTTP.
//!
//! `cargo bench -p dragoman --bench source [-- --orders N --clients N --batch N --rounds N]`:
//! - HTTP: a host on sled, `--clients` (64) clients posting `--orders` (50,000) seed orders,
//!   each with an id of its own, timed from the host's start until all are answered `202`;
//! - the stream: the same orders published to a stream first (each with its own
//!   `Nats-Msg-Id`), then a host on sled with the route's source reading it, timed from its
//!   start until the consumer holds nothing (every message acknowledged, each after its commit
//!   was flushed: the ack waits for the ingest's answer, which waits for the flush).
//!
//! Each run has a host, a data directory and (for the stream) a stream of its own, on the
//! local NATS server (`DRAGOMAN_TEST_NATS_URL`, else 127.0.0.1:4222). The two are measured once
//! a round, the order reversed every other round, each keeping its best round; it prints both
//! and the ratio stream / HTTP.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use dragoman::config::Config;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

mod support;
use support::{arg, root};

#[path = "support/serving.rs"]
mod serving;
use serving::Serving;

#[path = "support/seed.rs"]
mod seed;

#[path = "../../tests/wasm_build.rs"]
#[allow(dead_code, reason = "this benchmark builds only the Rust plugin")]
mod wasm_build;

fn nats_url() -> String {
    std::env::var("DRAGOMAN_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// The seed order numbered `n`.
fn order(seed: &str, n: u64) -> String {
    seed.replacen("SEED-2026-000417", &format!("BENCH-{n}"), 1)
}

fn config(plugin: &Path, dir: &Path, source: &str) -> Config {
    seed::orders_config(plugin, dir, "", source)
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let orders = arg("--orders", 50_000);
    let clients = arg("--clients", 64) as usize;
    let batch = arg("--batch", 128);
    let rounds = arg("--rounds", 2).max(1);
    let root = root();
    let seed::Seed {
        translator: plugin,
        order: seed,
    } = seed::seed(&root);
    let runtime = seed::runtime();
    println!(
        "{orders} seed orders ({} bytes each): HTTP at {clients} clients, the stream in batches \
         of {batch}; best of {rounds} rounds",
        seed.len()
    );
    let (mut http, mut stream) = (0.0_f64, 0.0_f64);
    for round in 0..rounds {
        let mut runs = [true, false];
        if round % 2 == 1 {
            runs.reverse();
        }
        for over_http in runs {
            let rate = if over_http {
                runtime.block_on(by_http(&plugin, &seed, orders, clients))
            } else {
                runtime.block_on(by_stream(&plugin, &seed, orders, batch, round))
            };
            let kept = if over_http { &mut http } else { &mut stream };
            println!(
                "round {}: {:<28} {rate:>9.0} msg/s",
                round + 1,
                if over_http {
                    "HTTP ingest"
                } else {
                    "JetStream source"
                }
            );
            *kept = kept.max(rate);
        }
    }
    println!("HTTP ingest, {clients} clients (best)       {http:>9.0} msg/s");
    println!("JetStream source, batch {batch} (best)     {stream:>9.0} msg/s");
    println!(
        "stream / HTTP = {:.2} (target at least 1.0; every ack after its commit's flush)",
        stream / http
    );
}

/// `orders` orders posted by `clients` clients: messages per second, from the host's start
/// until the last is answered.
async fn by_http(plugin: &Path, seed: &str, orders: u64, clients: usize) -> f64 {
    let dir = tempfile::tempdir().expect("a temporary directory");
    // Timed from the host's start, as the stream is: both pay for opening the store and
    // loading the plugin.
    let started = Instant::now();
    let serving = Serving::start(config(plugin, dir.path(), "")).await;
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(clients)
        .build_http::<Full<Bytes>>();
    let url = format!("{}/v1/routes/orders/messages", serving.base);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (client, url, next, seed) =
            (client.clone(), url.clone(), next.clone(), seed.to_owned());
        tasks.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= orders {
                    break;
                }
                let request = http::Request::post(&url)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from(order(&seed, n))))
                    .expect("a request");
                let response = client.request(request).await.expect("the host answers");
                let status = response.status();
                let _ = response.into_body().collect().await;
                assert_eq!(status, 202);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.expect("a client task");
    }
    let rate = orders as f64 / started.elapsed().as_secs_f64();
    serving.stop().await;
    rate
}

/// `orders` orders published to a stream, then consumed by a host: messages per second, from
/// the host's start until its consumer holds nothing.
async fn by_stream(plugin: &Path, seed: &str, orders: u64, batch: u64, round: u64) -> f64 {
    let client = async_nats::connect(nats_url())
        .await
        .expect("the local NATS server (tests/run starts one)");
    let context = jetstream::new(client);
    let name = format!("BENCH_{}_{round}", std::process::id());
    let subject = format!("{name}.in");
    let stream = context
        .create_stream(jetstream::stream::Config {
            name: name.clone(),
            subjects: vec![subject.clone()],
            ..Default::default()
        })
        .await
        .expect("a stream");
    let mut acks = Vec::new();
    for n in 0..orders {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", format!("bench-{round}-{n}").as_str());
        headers.insert("Content-Type", "application/json");
        let ack = context
            .publish_with_headers(subject.clone(), headers, order(seed, n).into())
            .await
            .expect("published");
        acks.push(ack);
        if acks.len() >= 1_000 {
            for ack in acks.drain(..) {
                ack.await.expect("stored");
            }
        }
    }
    for ack in acks {
        ack.await.expect("stored");
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let source = format!(
        "[routes.orders.source]\ntype = \"jetstream\"\nurl = {url:?}\nstream = {name:?}\n\
         subject = {subject:?}\ndurable = \"bench\"\nbatch = {batch}\nmax_ack_pending = 10000\n",
        url = nats_url()
    );
    let started = Instant::now();
    let serving = Serving::start(config(plugin, dir.path(), &source)).await;
    let deadline = started + Duration::from_secs(600);
    loop {
        assert!(
            Instant::now() < deadline,
            "the stream was not consumed in 600 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
        let Ok(info) = stream.consumer_info("bench").await else {
            continue;
        };
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            break;
        }
    }
    let rate = orders as f64 / started.elapsed().as_secs_f64();
    serving.stop().await;
    context
        .delete_stream(&name)
        .await
        .expect("the stream deleted");
    rate
}
