//! `dragoman serve` on a PostgreSQL store whose database goes away for 10 s under load,
//! through a TCP proxy the test cuts (other tests keep their database): the host says it is
//! not ready, refuses what it cannot commit with `503` and `Retry-After`, answers `2xx` for
//! nothing it did not commit, and delivers everything it acknowledged once the database is
//! back.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tests::net::{self, Http, Server, Webhook, wait_until};
use tests::pg::TestDatabase;
use tests::proxy::Proxy;

fn order(n: usize) -> Vec<u8> {
    format!(
        r#"{{"ord_id": "P-{n}", "ord_status": "O", "line_items": [{{"sku": "S", "qty": 1, "unit_prc": "2.50"}}]}}"#
    )
    .into_bytes()
}

/// When the outage was, as the clients see it.
#[derive(Debug, Default)]
struct Outage {
    cut: Option<Instant>,
    restored: Option<Instant>,
}

#[test]
fn a_database_away_for_10_s_under_load_gets_503s_and_loses_nothing_acknowledged() {
    let database = TestDatabase::create();
    let proxy = Proxy::start(tests::pg::server_address());
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let config = tests::pg::with_store_url(
        &net::config(&webhook.sink_table("hook"), "\"hook\"", ""),
        &database.url_through(proxy.address()),
    );
    let server = Server::start(dir.path(), &config);
    let readyz = format!("{}/readyz", server.url());
    let ingest = format!("{}/v1/routes/orders/messages", server.url());
    let http = Http::new();
    assert_eq!(http.send("GET", &readyz, &[], b"").unwrap().status, 200);
    let metrics_url = format!("{}/metrics", server.url());
    let metrics = || {
        http.send("GET", &metrics_url, &[], b"")
            .map(|reply| reply.text())
            .unwrap_or_default()
    };
    // The pool is in the metrics, and a transaction held open on the database elsewhere is
    // reported by its age.
    wait_until(
        Duration::from_secs(10),
        "the pool's size in /metrics",
        || metrics().contains("dragoman_store_pool_connections{state=\"max\"} 8\n"),
    );
    let holder = tests::pg::Session::open(database.url());
    holder.run("BEGIN; SELECT pg_current_xact_id()");
    wait_until(
        Duration::from_secs(20),
        "the open transaction's age",
        || {
            metric_value(&metrics(), "dragoman_store_oldest_transaction_seconds ")
                .is_some_and(|age| age >= 1.0)
        },
    );
    holder.run("COMMIT");

    let acknowledged: Arc<Mutex<BTreeMap<usize, Vec<String>>>> = Arc::default();
    let outage: Arc<Mutex<Outage>> = Arc::default();
    // Requests sent well inside the outage that were answered 2xx: must be none.
    let inside_2xx = Arc::new(AtomicUsize::new(0));
    let inside_503 = Arc::new(AtomicUsize::new(0));
    let retry_after_missing = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (ingest, acknowledged, outage, stop, next) = (
                ingest.clone(),
                acknowledged.clone(),
                outage.clone(),
                stop.clone(),
                next.clone(),
            );
            let (inside_2xx, inside_503, retry_after_missing) = (
                inside_2xx.clone(),
                inside_503.clone(),
                retry_after_missing.clone(),
            );
            std::thread::spawn(move || {
                let http = Http::new();
                while !stop.load(Ordering::SeqCst) {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    // Each message until it is acknowledged (bounded: 60 s of tries).
                    for _ in 0..3000 {
                        let sent = Instant::now();
                        let reply = http.send(
                            "POST",
                            &ingest,
                            &[("content-type", "application/json")],
                            &order(n),
                        );
                        let inside = {
                            let outage = outage.lock().unwrap();
                            outage
                                .cut
                                .is_some_and(|cut| sent > cut + Duration::from_millis(500))
                                && outage.restored.is_none()
                        };
                        match reply {
                            Ok(reply) if (200..300).contains(&reply.status) => {
                                if inside {
                                    inside_2xx.fetch_add(1, Ordering::SeqCst);
                                }
                                let ids = reply.json()["events"]
                                    .as_array()
                                    .unwrap()
                                    .iter()
                                    .map(|v| v.as_str().unwrap().to_owned())
                                    .collect();
                                acknowledged.lock().unwrap().insert(n, ids);
                                break;
                            }
                            Ok(reply) if reply.status == 503 => {
                                if inside {
                                    inside_503.fetch_add(1, Ordering::SeqCst);
                                }
                                if !reply.headers.contains_key("retry-after") {
                                    retry_after_missing.fetch_add(1, Ordering::SeqCst);
                                }
                                std::thread::sleep(Duration::from_millis(20));
                            }
                            // 409 (its own earlier try still claimed) or a refused connection.
                            Ok(_) | Err(_) => std::thread::sleep(Duration::from_millis(20)),
                        }
                    }
                }
            })
        })
        .collect();

    let count = |acknowledged: &Arc<Mutex<BTreeMap<usize, Vec<String>>>>| {
        acknowledged.lock().unwrap().len()
    };
    wait_until(
        Duration::from_secs(60),
        "acknowledgements before the cut",
        || count(&acknowledged) >= 40,
    );
    proxy.cut();
    outage.lock().unwrap().cut = Some(Instant::now());
    let before_cut = count(&acknowledged);
    wait_until(Duration::from_secs(10), "/readyz to say not ready", || {
        http.send("GET", &readyz, &[], b"")
            .is_ok_and(|reply| reply.status == 503)
    });
    std::thread::sleep(Duration::from_secs(10));
    outage.lock().unwrap().restored = Some(Instant::now());
    proxy.restore();
    wait_until(
        Duration::from_secs(30),
        "/readyz to say ready again",
        || {
            http.send("GET", &readyz, &[], b"")
                .is_ok_and(|reply| reply.status == 200)
        },
    );
    let target = count(&acknowledged) + 40;
    wait_until(
        Duration::from_secs(60),
        "acknowledgements after the outage",
        || count(&acknowledged) >= target,
    );
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }

    assert_eq!(
        inside_2xx.load(Ordering::SeqCst),
        0,
        "a message was acknowledged while the database was away"
    );
    assert!(
        inside_503.load(Ordering::SeqCst) > 0,
        "the clients met the outage"
    );
    assert_eq!(
        retry_after_missing.load(Ordering::SeqCst),
        0,
        "every 503 says when to retry"
    );
    assert!(
        metric_value(&metrics(), "dragoman_store_pool_errors_total ").is_some_and(|n| n > 0.0),
        "calls that got no connection are counted"
    );
    let acknowledged = acknowledged.lock().unwrap().clone();
    let expected: BTreeSet<String> = acknowledged.values().flatten().cloned().collect();
    wait_until(
        Duration::from_secs(60),
        "every acknowledged event at the sink",
        || {
            let delivered: BTreeSet<String> = webhook.counts().into_keys().collect();
            expected.is_subset(&delivered)
        },
    );
    eprintln!(
        "{} messages acknowledged ({before_cut} before the cut), {} refused with 503 during \
         the outage",
        acknowledged.len(),
        inside_503.load(Ordering::SeqCst)
    );
}

/// The value of the metric line starting with `prefix`.
fn metric_value(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(prefix))
        .and_then(|value| value.trim().parse().ok())
}
