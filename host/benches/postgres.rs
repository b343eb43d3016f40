//! Ingest on the PostgreSQL store against a bare PostgreSQL insert, at the same concurrency.
//!
//! `cargo bench -p dragoman --bench postgres [-- --seconds N --clients N --rounds N]` loads
//! real hosts over loopback with concurrent clients posting the 1 KiB seed order:
//! - on sled (one process, the embedded default);
//! - on PostgreSQL with one replica, and with two replicas on one database (the clients split
//!   between them; both hosts in this process, as two replicas on one machine would share
//!   its cores);
//! - and a bare PostgreSQL insert of the same bytes, in one transaction per message, from as
//!   many connections as there are clients: what any store on this database could give.
//!
//! Each run has a database of its own (on `DRAGOMAN_TEST_DATABASE_URL`'s server, else
//! 127.0.0.1:5432), dropped after it. Every run is measured once a round, the order reversed
//! every other round, and each keeps its best round. It prints throughput, p50, p99 and the
//! longest ingest of each, and the ratios PostgreSQL / bare, two replicas / one and
//! PostgreSQL / sled.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dragoman::config::Config;
use http_body_util::Full;
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

#[path = "support/load.rs"]
mod load;
use load::{Figures, figures, post_orders, show};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Sled,
    OneReplica,
    TwoReplicas,
    Bare,
    NoStore,
}

const KINDS: [Kind; 5] = [
    Kind::Sled,
    Kind::OneReplica,
    Kind::TwoReplicas,
    Kind::Bare,
    Kind::NoStore,
];

impl Kind {
    fn tag(self) -> &'static str {
        match self {
            Self::Sled => "sled",
            Self::OneReplica => "one",
            Self::TwoReplicas => "two",
            Self::Bare => "bare",
            Self::NoStore => "nostore",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Sled => "sled, one process",
            Self::OneReplica => "PostgreSQL, one replica",
            Self::TwoReplicas => "PostgreSQL, two replicas",
            Self::Bare => "bare PostgreSQL insert",
            Self::NoStore => "the host, nothing stored (translate)",
        }
    }
}

/// The server's URL.
fn server() -> String {
    std::env::var("DRAGOMAN_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

async fn admin(sql: &str) {
    let (client, connection) = tokio_postgres::connect(&server(), tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL answers (tests/run starts one)");
    tokio::spawn(connection);
    client.batch_execute(sql).await.expect("the statement runs");
}

/// A database of the run's own: its name and URL.
async fn database(n: usize) -> (String, String) {
    let name = format!("dragoman_bench_{}_{n}", std::process::id());
    admin(&format!("CREATE DATABASE {name}")).await;
    let server = server();
    let root = server
        .rsplit_once('/')
        .map_or(server.as_str(), |(head, _)| head);
    (name.clone(), format!("{root}/{name}"))
}

fn config(plugin: &Path, dir: &Path, database: Option<&str>) -> Config {
    let store = database.map_or_else(String::new, |url| {
        format!("store = {{ type = \"postgres\", url = {url:?}, pool = 16 }}\n")
    });
    seed::orders_config(plugin, dir, &store, "")
}

fn main() {
    if std::env::args().any(|a| a == "--list" || a == "--test") {
        return;
    }
    let seconds = arg("--seconds", 8);
    let clients = arg("--clients", 64) as usize;
    let rounds = arg("--rounds", 2).max(1);
    let root = root();
    let seed::Seed {
        translator: plugin,
        order: seed,
    } = seed::seed(&root);
    let runtime = seed::runtime();
    println!(
        "{clients} concurrent clients, {seconds} s each, 1 KiB seed order ({} bytes)",
        seed.len()
    );
    let duration = Duration::from_secs(seconds);
    // `DRAGOMAN_BENCH_ONLY=one,bare` measures only those (for a quick look; the ratios need
    // all).
    let only: Option<Vec<String>> = std::env::var("DRAGOMAN_BENCH_ONLY")
        .ok()
        .map(|v| v.split(',').map(str::to_owned).collect());
    let mut best: [Option<Figures>; KINDS.len()] = Default::default();
    let mut runs = 0;
    for round in 0..rounds {
        let mut order = KINDS;
        if round % 2 == 1 {
            order.reverse();
        }
        for kind in order {
            if only
                .as_ref()
                .is_some_and(|only| !only.iter().any(|o| o == kind.tag()))
            {
                continue;
            }
            runs += 1;
            let figures = runtime.block_on(run(kind, runs, &plugin, &seed, clients, duration));
            let slot = &mut best[kind as usize];
            if slot
                .as_ref()
                .is_none_or(|b| figures.throughput > b.throughput)
            {
                *slot = Some(figures);
            }
        }
    }
    if only.is_some() {
        for (kind, figures) in KINDS.iter().zip(&best) {
            if let Some(figures) = figures {
                show(kind.name(), figures);
            }
        }
        return;
    }
    let best = best.map(|kept| kept.expect("every run ran at least once"));
    for (kind, figures) in KINDS.iter().zip(&best) {
        show(&format!("{} (best of {rounds})", kind.name()), figures);
    }
    let [sled, one, two, bare, ceiling] = best;
    println!(
        "one replica / bare = {:.2} (target at least 0.7), p99 {:.1} ms (target under 100)",
        one.throughput / bare.throughput,
        one.p99.as_secs_f64() * 1e3
    );
    println!(
        "two replicas / one = {:.2} (target at least 1.0)",
        two.throughput / one.throughput
    );
    println!(
        "one replica / sled = {:.2}",
        one.throughput / sled.throughput
    );
    println!(
        "the host with nothing stored / bare = {:.2}: the most any store could give the host \
         on this machine, against the bare insert",
        ceiling.throughput / bare.throughput
    );
}

async fn run(
    kind: Kind,
    n: usize,
    plugin: &Path,
    seed: &str,
    clients: usize,
    duration: Duration,
) -> Figures {
    let dir = tempfile::tempdir().expect("a temporary directory");
    match kind {
        Kind::Sled | Kind::NoStore => {
            let serving = Serving::start(config(plugin, dir.path(), None)).await;
            let action = if kind == Kind::Sled {
                "messages"
            } else {
                "translate"
            };
            let figures = load(
                std::slice::from_ref(&serving.base),
                action,
                seed,
                clients,
                duration,
            )
            .await;
            serving.stop().await;
            figures
        }
        Kind::OneReplica | Kind::TwoReplicas => {
            let (name, url) = database(n).await;
            let replicas = if kind == Kind::OneReplica { 1 } else { 2 };
            let mut servings = Vec::new();
            for r in 0..replicas {
                let dir = dir.path().join(format!("replica-{r}"));
                std::fs::create_dir_all(&dir).expect("a replica's directory");
                servings.push(Serving::start(config(plugin, &dir, Some(&url))).await);
            }
            let bases: Vec<String> = servings.iter().map(|s| s.base.clone()).collect();
            let figures = load(&bases, "messages", seed, clients, duration).await;
            for serving in servings {
                serving.stop().await;
            }
            admin(&format!("DROP DATABASE {name} WITH (FORCE)")).await;
            figures
        }
        Kind::Bare => {
            let (name, url) = database(n).await;
            let figures = bare(&url, seed.as_bytes(), clients, duration).await;
            admin(&format!("DROP DATABASE {name} WITH (FORCE)")).await;
            figures
        }
    }
}

/// `clients` clients posting the seed order to `action` for `duration` (after a second of warm-up),
/// client `i` to `bases[i % bases.len()]`.
async fn load(
    bases: &[String],
    action: &str,
    seed: &str,
    clients: usize,
    duration: Duration,
) -> Figures {
    let answered = if action == "messages" { 202 } else { 200 };
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(clients)
        .build_http::<Full<Bytes>>();
    let counter = Arc::new(AtomicU64::new(0));
    let urls: Vec<String> = bases
        .iter()
        .map(|base| format!("{base}/v1/routes/orders/{action}"))
        .collect();
    let warmup = Instant::now() + Duration::from_secs(1);
    post_orders(&client, &urls, seed, &counter, clients, warmup, answered).await;
    let started = Instant::now();
    let kept = post_orders(
        &client,
        &urls,
        seed,
        &counter,
        clients,
        started + duration,
        answered,
    )
    .await;
    let elapsed = started.elapsed();
    figures(kept, elapsed)
}

/// `clients` connections each inserting the seed order's bytes, one transaction per insert.
async fn bare(url: &str, bytes: &[u8], clients: usize, duration: Duration) -> Figures {
    admin_on(
        url,
        "CREATE TABLE bare (id bigint PRIMARY KEY, body bytea NOT NULL)",
    )
    .await;
    let counter = Arc::new(AtomicU64::new(0));
    let bytes = bytes.to_vec();
    let started = Instant::now();
    let until = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let (url, counter, bytes) = (url.to_owned(), counter.clone(), bytes.clone());
        tasks.spawn(async move {
            let (mut client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("a connection");
            tokio::spawn(connection);
            let insert = client
                .prepare("INSERT INTO bare (id, body) VALUES ($1, $2)")
                .await
                .expect("the insert prepares");
            let mut latencies = Vec::new();
            while Instant::now() < until {
                let n = counter.fetch_add(1, Ordering::Relaxed) as i64;
                let begun = Instant::now();
                let tx = client.transaction().await.expect("a transaction");
                tx.execute(&insert, &[&n, &bytes])
                    .await
                    .expect("the insert");
                tx.commit().await.expect("the commit");
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

async fn admin_on(url: &str, sql: &str) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("the database answers");
    tokio::spawn(connection);
    client.batch_execute(sql).await.expect("the statement runs");
}
