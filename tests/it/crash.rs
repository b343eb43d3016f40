//! A real `dragoman serve` SIGKILLed at random moments under continuous ingest, with a sink
//! that fails part of the time, restarted on the same data directory each time.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use tests::net::{self, Http, Server, Webhook, wait_until};

/// What the clients learned about each message: its accepted event ids, or that it was
/// rejected.
#[derive(Debug, Clone)]
enum Outcome {
    Accepted(Vec<String>),
    Rejected,
}

fn body(n: usize) -> String {
    // One message in ten has a status the plugin rejects.
    let status = if n % 10 == 7 { "Z" } else { "O" };
    format!(
        r#"{{"ord_id": "C-{n}", "ord_status": "{status}", "line_items": [{{"sku": "S", "qty": 1, "unit_prc": "2.50"}}]}}"#
    )
}

#[test]
fn acknowledged_messages_survive_sigkill_and_reach_the_sink_once_per_event_id() {
    storm(6, None);
}

/// The same storm on a PostgreSQL store: the host keeps nothing but its plugins and compiled
/// cache on disk, and every kill leaves its claims and commits to the database.
#[test]
fn on_postgresql_acknowledged_messages_survive_sigkill_and_reach_the_sink() {
    let database = tests::pg::TestDatabase::create();
    storm(3, Some(&database));
}

/// Ingest from four clients while the host is SIGKILLed `kills` times, on sled or on the
/// database given.
fn storm(kills: usize, database: Option<&tests::pg::TestDatabase>) {
    let webhook = Webhook::start();
    webhook.fail_one_in(4);
    let dir = tempfile::tempdir().unwrap();
    let sinks = webhook.sink_table("hook");
    let retry = "[routes.orders.retry]\nmax_attempts = 1000\ninitial_backoff_ms = 5\nmax_backoff_ms = 100\n";
    let mut config = net::config(&sinks, "\"hook\"", retry);
    if let Some(database) = database {
        config = tests::pg::with_store(&config, database);
    }
    let mut server = Server::start(dir.path(), &config);
    let address = Arc::new(Mutex::new(server.url()));
    let outcomes: Arc<Mutex<BTreeMap<usize, Outcome>>> = Arc::default();
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicUsize::new(0));

    // Four clients send distinct messages until told to stop; each retries its message
    // (same body, so the same key) until it gets a definite answer.
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (address, outcomes, acknowledged, stop, next) = (
                address.clone(),
                outcomes.clone(),
                acknowledged.clone(),
                stop.clone(),
                next.clone(),
            );
            std::thread::spawn(move || {
                let http = Http::new();
                while !stop.load(Ordering::SeqCst) {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    for _attempt in 0..2000 {
                        let url = format!("{}/v1/routes/orders/messages", address.lock().unwrap());
                        match http.send(
                            "POST",
                            &url,
                            &[("content-type", "application/json")],
                            body(n).as_bytes(),
                        ) {
                            Ok(reply) if reply.status == 202 || reply.status == 200 => {
                                let ids = reply.json()["events"]
                                    .as_array()
                                    .unwrap()
                                    .iter()
                                    .map(|v| v.as_str().unwrap().to_owned())
                                    .collect();
                                outcomes.lock().unwrap().insert(n, Outcome::Accepted(ids));
                                acknowledged.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            Ok(reply) if reply.status == 422 => {
                                assert_eq!(reply.json()["code"], "unknown-status", "message {n}");
                                outcomes.lock().unwrap().insert(n, Outcome::Rejected);
                                acknowledged.fetch_add(1, Ordering::SeqCst);
                                break;
                            }
                            // 409 (a claim left in flight), 503, or the host is down: retry.
                            Ok(_) | Err(_) => std::thread::sleep(Duration::from_millis(10)),
                        }
                    }
                }
            })
        })
        .collect();

    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    for kill in 0..kills {
        // Kill once a random number of further messages have been acknowledged.
        let target = acknowledged.load(Ordering::SeqCst) + rng.random_range(20..80);
        wait_until(
            Duration::from_secs(120),
            "acknowledgements before the kill",
            || acknowledged.load(Ordering::SeqCst) >= target,
        );
        server.kill();
        server.restart();
        *address.lock().unwrap() = server.url();
        eprintln!(
            "kill {} done at {} acknowledged",
            kill + 1,
            acknowledged.load(Ordering::SeqCst)
        );
    }
    let target = acknowledged.load(Ordering::SeqCst) + 20;
    wait_until(
        Duration::from_secs(120),
        "acknowledgements after the last restart",
        || acknowledged.load(Ordering::SeqCst) >= target,
    );
    stop.store(true, Ordering::SeqCst);
    for client in clients {
        client.join().unwrap();
    }
    webhook.fail_one_in(0);

    let outcomes = outcomes.lock().unwrap().clone();
    let expected: BTreeSet<String> = outcomes
        .values()
        .filter_map(|o| match o {
            Outcome::Accepted(ids) => Some(ids.clone()),
            Outcome::Rejected => None,
        })
        .flatten()
        .collect();
    let rejected: BTreeSet<String> = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Rejected))
        .map(|(n, _)| format!("C-{n}"))
        .collect();
    assert!(
        !rejected.is_empty() && expected.len() > 100,
        "enough traffic: {} accepted, {} rejected",
        expected.len(),
        rejected.len()
    );

    // The outbox drains, and every acknowledged event is at the sink.
    let http = Http::new();
    wait_until(Duration::from_secs(120), "the outbox to drain", || {
        let metrics = http
            .send("GET", &format!("{}/metrics", server.url()), &[], b"")
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .unwrap_or_default();
        metrics.contains("dragoman_outbox_depth 0\n") && webhook.counts().len() >= expected.len()
    });
    let counts = webhook.counts();
    let delivered: BTreeSet<String> = counts.keys().cloned().collect();
    let missing: Vec<&String> = expected.difference(&delivered).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged events never reached the sink: {missing:?}",
        missing.len()
    );
    let unexpected: Vec<&String> = delivered.difference(&expected).collect();
    assert!(
        unexpected.is_empty(),
        "events the clients never saw acknowledged: {unexpected:?}"
    );
    for received in webhook.received() {
        assert!(
            !rejected.contains(&received.subject),
            "an event for rejected message {}",
            received.subject
        );
    }
    let redelivered = counts.values().filter(|n| **n > 1).count();
    eprintln!(
        "{} events, {} delivered more than once (at least once; one per id after dedupe)",
        counts.len(),
        redelivered
    );

    // A clean stop, then the audit trail verifies offline.
    assert!(server.stop().success());
    let stdout = match database {
        None => net::verify_offline(&server.data_dir),
        Some(database) => net::verify_database(database.url()),
    };
    assert!(stdout.ends_with(", 0 problems\n"), "{stdout}");
}
