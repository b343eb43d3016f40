//! Three `dragoman serve` replicas on one PostgreSQL database, HTTP to all three: 3,000
//! messages over 300 partition keys, each sent one to three times to different replicas (the
//! first two copies at once), while one replica is SIGKILLed and restarted twice and the
//! webhook refuses one delivery in five.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tests::net::{self, Http, Server, Webhook, wait_until};
use tests::pg::{Session, TestDatabase};

const MESSAGES: usize = 3000;
const KEYS: usize = 300;

fn body(n: usize) -> Vec<u8> {
    format!(
        r#"{{"ord_id": "R-{}", "ord_status": "O", "line_items": [{{"sku": "S{n}", "qty": 1, "unit_prc": "2.50"}}]}}"#,
        n % KEYS
    )
    .into_bytes()
}

/// Sends message `n` to the replica at `addresses[first]`, trying the next ones while a
/// replica is down or the key is in flight elsewhere, until it is acknowledged (at most
/// 60 s): its event ids.
fn send(http: &Http, addresses: &Mutex<Vec<String>>, first: usize, n: usize) -> Vec<String> {
    let key = format!("m-{n}");
    for attempt in 0..3000 {
        let address = {
            let addresses = addresses.lock().unwrap();
            addresses[(first + attempt) % addresses.len()].clone()
        };
        let reply = http.send(
            "POST",
            &format!("{address}/v1/routes/orders/messages"),
            &[
                ("content-type", "application/json"),
                ("idempotency-key", &key),
            ],
            &body(n),
        );
        match reply {
            Ok(reply) if reply.status == 202 || reply.status == 200 => {
                return reply.json()["events"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_str().unwrap().to_owned())
                    .collect();
            }
            // 409 (in flight at another replica), 503, or the replica is down.
            Ok(reply) => assert!(
                [409, 503].contains(&reply.status),
                "message {n}: {} {}",
                reply.status,
                reply.text()
            ),
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("message {n} was never acknowledged");
}

#[test]
fn three_replicas_lose_nothing_double_nothing_and_keep_order_per_key_through_kills() {
    let database = TestDatabase::create();
    let webhook = Webhook::start();
    webhook.fail_one_in(5);
    let retry = "[routes.orders.retry]\nmax_attempts = 1000\ninitial_backoff_ms = 5\nmax_backoff_ms = 100\n";
    let config = tests::pg::with_store(
        &net::config(&webhook.sink_table("hook"), "\"hook\"", retry),
        &database,
    );
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut servers: Vec<Server> = dirs
        .iter()
        .map(|dir| Server::start(dir.path(), &config))
        .collect();
    let addresses = Arc::new(Mutex::new(
        servers.iter().map(Server::url).collect::<Vec<_>>(),
    ));
    let acknowledged: Arc<Mutex<BTreeMap<usize, Vec<String>>>> = Arc::default();
    let next = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..6)
        .map(|_| {
            let (addresses, acknowledged, next) =
                (addresses.clone(), acknowledged.clone(), next.clone());
            std::thread::spawn(move || {
                let http = Http::new();
                loop {
                    let n = next.fetch_add(1, Ordering::SeqCst);
                    if n >= MESSAGES {
                        return;
                    }
                    let copies = 1 + n % 3;
                    // The first two copies at once, to two replicas; a third after them.
                    let mut answers: Vec<Vec<String>> = std::thread::scope(|scope| {
                        let running: Vec<_> = (0..copies.min(2))
                            .map(|copy| {
                                let (http, addresses) = (&http, &addresses);
                                scope.spawn(move || send(http, addresses, n + copy, n))
                            })
                            .collect();
                        running.into_iter().map(|r| r.join().unwrap()).collect()
                    });
                    if copies == 3 {
                        answers.push(send(&http, &addresses, n + 2, n));
                    }
                    for answer in &answers[1..] {
                        assert_eq!(answer, &answers[0], "message {n}: one message, one answer");
                    }
                    acknowledged.lock().unwrap().insert(n, answers.remove(0));
                }
            })
        })
        .collect();

    let count = || acknowledged.lock().unwrap().len();
    for (kill, at) in [800, 1800].into_iter().enumerate() {
        wait_until(
            Duration::from_secs(300),
            "acknowledgements before a kill",
            || count() >= at,
        );
        servers[0].kill();
        servers[0].restart();
        addresses.lock().unwrap()[0] = servers[0].url();
        eprintln!("kill {} done at {} acknowledged", kill + 1, count());
    }
    for client in clients {
        client.join().unwrap();
    }
    webhook.fail_one_in(0);
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert_eq!(acknowledged.len(), MESSAGES);
    let expected: BTreeSet<String> = acknowledged.values().flatten().cloned().collect();

    // Every acknowledged event arrives.
    wait_until(
        Duration::from_secs(300),
        "every acknowledged event at the sink",
        || {
            let delivered: BTreeSet<String> = webhook.counts().into_keys().collect();
            expected.is_subset(&delivered)
        },
    );
    let session = Session::open(database.url());
    wait_until(Duration::from_secs(60), "the outbox to drain", || {
        session.count("SELECT count(*) FROM dragoman.outbox WHERE sinks_left > 0") == 0
    });

    // Commit order per partition key, from the outbox's numbers.
    let mut committed: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in session.query("SELECT partition_key, event FROM dragoman.outbox ORDER BY seq") {
        let event: dragoman::storage::OutboxEvent =
            tests::pg::stored_record(&row.get::<_, Vec<u8>>(1));
        let id = event.id;
        committed.entry(row.get(0)).or_default().push(id);
    }
    let all: BTreeSet<String> = committed.values().flatten().cloned().collect();
    let missing: Vec<&String> = expected.difference(&all).collect();
    assert!(
        missing.is_empty(),
        "acknowledged, never committed: {missing:?}"
    );
    // The first arrival of each event, per partition key, in commit order.
    let mut arrived: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for received in webhook.received() {
        if seen.insert(received.id.clone()) {
            arrived
                .entry(received.partition_key.clone())
                .or_default()
                .push(received.id);
        }
    }
    assert_eq!(committed.len(), KEYS, "{} partition keys", committed.len());
    for (key, order) in &committed {
        assert_eq!(
            arrived.get(key),
            Some(order),
            "partition key {key}: arrivals out of commit order"
        );
    }
    // Each idempotency key made one message, whatever replicas it was sent to at once.
    assert_eq!(
        session.count("SELECT count(*) FROM dragoman.messages"),
        MESSAGES as i64
    );
    assert_eq!(
        session.count(
            "SELECT count(*) FROM (SELECT key FROM dragoman.messages GROUP BY route, key
             HAVING count(*) > 1) AS twice"
        ),
        0
    );
    let redelivered = webhook.counts().values().filter(|n| **n > 1).count();
    eprintln!(
        "{} events from {MESSAGES} messages over {KEYS} keys, {redelivered} delivered more than once",
        expected.len()
    );
    for server in &mut servers {
        assert!(server.stop().success());
    }
    let stdout = net::verify_database(database.url());
    assert!(stdout.ends_with(", 0 problems\n"), "{stdout}");
}

/// `PUT /v1/plugins/acme-erp-orders{query}` of `file` to `server`, which takes it.
fn put(http: &Http, server: &Server, query: &str, file: &std::path::Path) -> net::Reply {
    let reply = http
        .send(
            "PUT",
            &format!("{}/v1/plugins/acme-erp-orders{query}", server.url()),
            &[],
            &std::fs::read(file).unwrap(),
        )
        .unwrap();
    assert!(
        [200, 201].contains(&reply.status),
        "{} {}",
        reply.status,
        reply.text()
    );
    reply
}

/// The sha256 of the version route `orders` of `server` serves.
fn active(http: &Http, server: &Server) -> String {
    let reply = http
        .send("GET", &format!("{}/v1/plugins", server.url()), &[], b"")
        .unwrap();
    reply.json()["plugins"]["acme-erp-orders"]["routes"]["orders"]["active"]["sha256"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The versions (sha256) that translated orders posted to `server` until both `expected`
/// were seen (at most 60 orders): a canary beside the active version shows both.
fn translated_by(
    http: &Http,
    webhook: &Webhook,
    server: &Server,
    tag: &str,
    expected: &BTreeSet<String>,
) -> BTreeSet<String> {
    // Each call's orders are new ones, whatever the tag.
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::SeqCst);
    let mut seen = BTreeSet::new();
    for n in 0..60 {
        let id = format!("{tag}-{call}-{n}");
        let reply = http
            .send(
                "POST",
                &format!("{}/v1/routes/orders/messages", server.url()),
                &[("content-type", "application/json")],
                tests::swap::order(&id).as_bytes(),
            )
            .unwrap();
        assert_eq!(reply.status, 202, "{}", reply.text());
        let mut by = None;
        wait_until(Duration::from_secs(30), "the order's event", || {
            by = webhook
                .received()
                .into_iter()
                .find(|e| e.subject == id)
                .map(|e| e.plugin_sha256);
            by.is_some()
        });
        seen.extend(by);
        if &seen == expected {
            break;
        }
    }
    seen
}

#[test]
fn a_version_pushed_to_one_replica_serves_on_the_others_and_a_canary_survives_restarts() {
    let database = TestDatabase::create();
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let (v1, v2) = tests::swap::packed_versions(dir.path());
    let (sha1, sha2) = (tests::swap::sha256(&v1), tests::swap::sha256(&v2));
    // A canary that is never judged within the test: it runs until it is ended.
    let plugins = "[plugins]\ncanary_window = 100000\ncanary_minimum = 100000\n";
    let config = tests::pg::with_store(
        &net::config(&webhook.sink_table("hook"), "\"hook\"", plugins)
            .replace(tests::wasm::ACME_ERP_ORDERS, &v1.display().to_string()),
        &database,
    );
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut servers: Vec<Server> = dirs
        .iter()
        .map(|dir| Server::start(dir.path(), &config))
        .collect();
    let http = Http::new();
    for server in &servers {
        assert_eq!(active(&http, server), sha1);
    }

    // v2 pushed to the first replica serves on the other two within 2 s.
    put(&http, &servers[0], "", &v2);
    wait_until(
        Duration::from_secs(2),
        "v2 on every replica within 2 s",
        || servers.iter().all(|server| active(&http, server) == sha2),
    );

    // v1 as a canary at half the messages, started on the second replica: every replica
    // runs it, and after a restart of all three, still does.
    let canary = put(&http, &servers[1], "?canary=50", &v1);
    assert_eq!(canary.json()["status"], "canary", "{}", canary.text());
    let both: BTreeSet<String> = [sha1.clone(), sha2.clone()].into();
    wait_until(
        Duration::from_secs(10),
        "the canary on every replica",
        || {
            servers.iter().enumerate().all(|(i, server)| {
                translated_by(&http, &webhook, server, &format!("before-{i}"), &both) == both
            })
        },
    );
    for server in &mut servers {
        assert!(server.stop().success());
    }
    for server in &mut servers {
        server.restart();
    }
    for (i, server) in servers.iter().enumerate() {
        assert_eq!(active(&http, server), sha2, "replica {i} after the restart");
        let mut seen = BTreeSet::new();
        wait_until(
            Duration::from_secs(10),
            "the canary after the restart",
            || {
                seen = translated_by(&http, &webhook, server, &format!("after-{i}"), &both);
                seen == both
            },
        );
        assert_eq!(seen, both, "replica {i} runs the canary again");
    }
}
