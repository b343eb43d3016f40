//! The load the ingest and PostgreSQL benchmarks put on their hosts (clients posting the seed
//! order), and what a run measured: throughput and latency percentiles, one line a run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;

/// The clients' HTTP client.
pub(crate) type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// `clients` clients posting the seed order until `until`, client `i` to
/// `urls[i % urls.len()]`, each order with an id of its own (`counter`'s next number), each
/// answer `answered`: every request's latency.
pub(crate) async fn post_orders(
    client: &HttpClient,
    urls: &[String],
    seed: &str,
    counter: &Arc<AtomicU64>,
    clients: usize,
    until: Instant,
    answered: u16,
) -> Vec<Duration> {
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..clients {
        let url = urls[i % urls.len()].clone();
        let (client, counter, seed) = (client.clone(), counter.clone(), seed.to_owned());
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
                assert_eq!(status, answered);
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

pub(crate) struct Figures {
    pub(crate) throughput: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
    pub(crate) max: Duration,
    pub(crate) count: usize,
}

/// The figures of `latencies` measured over `elapsed`.
pub(crate) fn figures(mut latencies: Vec<Duration>, elapsed: Duration) -> Figures {
    latencies.sort_unstable();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    Figures {
        throughput: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        max: latencies.last().copied().unwrap_or_default(),
        count: latencies.len(),
    }
}

/// Prints one run's line.
pub(crate) fn show(name: &str, f: &Figures) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:38} {:>8.0} msg/s   p50 {:>7.2} ms   p99 {:>7.2} ms   max {:>7.2} ms   ({} messages)",
        f.throughput,
        ms(f.p50),
        ms(f.p99),
        ms(f.max),
        f.count
    );
}
