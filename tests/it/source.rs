//! Routes that take their messages from a NATS JetStream stream: a real `dragoman serve`
//! consuming a stream of its own on the local server, SIGKILLed while it consumes, held by an
//! open breaker, and taking one message by both doors.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tests::jetstream::TestStream;
use tests::net::{self, Http, Server, Webhook, wait_until};

const DURABLE: &str = "dragoman-orders";

/// A vendor order numbered `n`, for order `order`, with a status the plugin takes or not.
fn order(n: usize, order: &str, status: &str) -> Vec<u8> {
    format!(
        r#"{{"ord_id": "{order}", "ord_status": "{status}", "line_items": [{{"sku": "SKU-{n}", "qty": 1, "unit_prc": "2.50"}}]}}"#
    )
    .into_bytes()
}

/// The message number an event at the webhook came from (its line item's SKU).
fn number(received: &net::Received) -> usize {
    let sku = received.data["items"][0]["product_sku"]
        .as_str()
        .unwrap_or_else(|| panic!("an item with a SKU: {}", received.data));
    sku.trim_start_matches("SKU-").parse().expect("SKU-n")
}

/// A metric's value in the text exposition, 0 when absent.
fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(line_start)?.trim().parse().ok())
        .unwrap_or(0.0)
}

fn metrics(http: &Http, server: &Server) -> String {
    http.send("GET", &format!("{}/metrics", server.url()), &[], b"")
        .map(|r| r.text())
        .unwrap_or_default()
}

/// The source's state as `GET /v1/routes` shows it.
fn source_state(http: &Http, server: &Server) -> String {
    http.send("GET", &format!("{}/v1/routes", server.url()), &[], b"")
        .ok()
        .and_then(|r| {
            r.json()["routes"]["orders"]["source"]["state"]
                .as_str()
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

/// 2,000 vendor messages on a stream: one in ten published twice with the same
/// `Nats-Msg-Id`, one in twenty refused by the plugin. The host is SIGKILLed twice while it
/// consumes and restarted on the same data directory; at the end every good message has one
/// event at the webhook, in the order its entity's stream committed them per partition key,
/// every refused one is one dead letter, and the consumer holds nothing.
#[test]
fn a_stream_consumed_through_two_sigkills_loses_and_doubles_nothing() {
    let stream = TestStream::create("STORM");
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let retry = "[routes.orders.retry]\ninitial_backoff_ms = 5\nmax_backoff_ms = 100\n";
    let source = stream.source_table("orders", DURABLE, "batch = 32\nack_wait_secs = 3\n");
    let config = net::config(
        &webhook.sink_table("hook"),
        "\"hook\"",
        &format!("{retry}{source}"),
    );

    let total = 2_000;
    let refused = |n: usize| n % 20 == 3;
    let mut messages = Vec::new();
    for n in 0..total {
        let status = if refused(n) { "Z" } else { "O" };
        let headers = vec![
            ("Nats-Msg-Id".to_owned(), format!("m-{n}")),
            ("Content-Type".to_owned(), "application/json".to_owned()),
        ];
        messages.push((headers, order(n, &format!("S-{}", n % 100), status)));
    }
    stream.publish_all(&messages);
    // One in ten again with the same id, once the stream's duplicate window has passed (as a
    // vendor's resend after a timeout does), so the host sees them.
    let published = std::time::Instant::now();
    wait_until(
        Duration::from_secs(5),
        "the duplicate window to pass",
        || published.elapsed() > tests::jetstream::DUPLICATE_WINDOW * 2,
    );
    let again: Vec<_> = messages.iter().skip(5).step_by(10).cloned().collect();
    let duplicates = again.len();
    stream.publish_all(&again);
    assert_eq!(
        stream.messages(),
        (total + duplicates) as u64,
        "every copy on the stream"
    );

    let mut server = Server::start(dir.path(), &config);
    let http = Http::new();
    for at in [300, 900] {
        wait_until(
            Duration::from_secs(120),
            "consumption before the kill",
            || webhook.counts().len() >= at,
        );
        server.kill();
        server.restart();
        eprintln!("killed at {} events delivered", webhook.counts().len());
    }
    let good = (0..total).filter(|n| !refused(*n)).count();
    wait_until(
        Duration::from_secs(180),
        "every good message at the webhook",
        || webhook.counts().len() >= good,
    );
    wait_until(
        Duration::from_secs(60),
        "the consumer to hold nothing",
        || {
            stream
                .consumer(DURABLE)
                .is_some_and(|c| c.pending == 0 && c.ack_pending == 0)
        },
    );

    // Every good message: exactly one event id, from that message; no refused one.
    let received = webhook.received();
    let mut ids: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    for r in &received {
        ids.entry(number(r)).or_default().insert(r.id.clone());
    }
    for n in 0..total {
        let found = ids.get(&n).map_or(0, BTreeSet::len);
        let want = usize::from(!refused(n));
        assert_eq!(found, want, "message {n}: {found} distinct events");
    }

    // Per partition key, the webhook saw the events in the order the host committed them.
    let mut seen: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in &received {
        let keyed = seen.entry(r.partition_key.clone()).or_default();
        if !keyed.contains(&r.id) {
            keyed.push(r.id.clone());
        }
    }
    for (key, order) in &seen {
        let stream_of = http
            .send(
                "GET",
                &format!("{}/v1/entities/order/{key}/events", server.url()),
                &[],
                b"",
            )
            .unwrap()
            .json();
        let committed: Vec<String> = stream_of["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["id"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(order, &committed, "partition key {key}");
    }

    // Every refused message is one dead letter.
    let listing = http
        .send(
            "GET",
            &format!("{}/v1/dlq?limit=1000", server.url()),
            &[],
            b"",
        )
        .unwrap()
        .json();
    let entries = listing["dead_letters"].as_array().expect("dead letters");
    let mut keys = Vec::new();
    for entry in entries {
        assert_eq!(entry["code"], "unknown-status", "{entry}");
        let id = entry["id"].as_str().unwrap();
        let shown = http
            .send("GET", &format!("{}/v1/dlq/{id}", server.url()), &[], b"")
            .unwrap()
            .json();
        keys.push(
            shown["message"]["idempotency_key"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
    }
    keys.sort();
    let mut expected: Vec<String> = (0..total)
        .filter(|n| refused(*n))
        .map(|n| format!("m-{n}"))
        .collect();
    expected.sort();
    assert_eq!(keys, expected, "one dead letter per refused message");

    let text = metrics(&http, &server);
    let duplicate = metric(&text, "dragoman_messages_duplicate_total{route=\"orders\"}");
    assert!(
        duplicate >= 1.0,
        "{duplicates} messages were published twice; the host saw duplicates"
    );
    eprintln!(
        "{} deliveries for {} events; {duplicate} duplicates answered since the last start",
        received.len(),
        good
    );
    assert!(server.stop().success());
    let stdout = net::verify_offline(&server.data_dir);
    assert!(stdout.ends_with(", 0 problems\n"), "{stdout}");
}

/// The route's only sink is held open by its breaker for 30 s: the source stops fetching,
/// so messages published meanwhile spend no delivery (the consumer allows three, and its
/// ack wait is 2 s), none is dead-lettered, and all are delivered once the breaker closes.
#[test]
fn while_every_sink_is_refused_the_source_fetches_nothing() {
    let stream = TestStream::create("HELD");
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let source = stream.source_table("orders", DURABLE, "max_deliver = 3\nack_wait_secs = 2\n");
    let config = net::config(&webhook.sink_table("hook"), "\"hook\"", &source);
    let server = Server::start(dir.path(), &config);
    let http = Http::new();
    wait_until(Duration::from_secs(30), "the source to consume", || {
        source_state(&http, &server) == "consuming"
    });
    let breaker = |action: &str| {
        let url = format!("{}/v1/breakers/hook?action={action}", server.url());
        assert_eq!(http.send("POST", &url, &[], b"").unwrap().status, 200);
    };
    breaker("force-open");
    wait_until(Duration::from_secs(10), "the source to pause", || {
        source_state(&http, &server) == "paused_by_breaker"
    });
    let opened = std::time::Instant::now();
    for n in 0..50 {
        stream.publish(
            &[("Nats-Msg-Id", &format!("held-{n}"))],
            &order(n, &format!("H-{n}"), "O"),
        );
    }
    // Held for 30 s: ten ack waits, time for every message to reach max_deliver three times
    // over had the source kept fetching. Meanwhile the server keeps them all undelivered.
    while opened.elapsed() < Duration::from_secs(30) {
        let counts = stream.consumer(DURABLE).expect("the consumer");
        assert_eq!(
            counts.ack_pending, 0,
            "nothing is fetched while the breaker is open"
        );
        assert_eq!(source_state(&http, &server), "paused_by_breaker");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(stream.consumer(DURABLE).unwrap().pending, 50);
    breaker("reset");
    wait_until(
        Duration::from_secs(60),
        "every held message at the webhook",
        || webhook.counts().len() >= 50,
    );
    wait_until(
        Duration::from_secs(30),
        "the consumer to hold nothing",
        || {
            stream
                .consumer(DURABLE)
                .is_some_and(|c| c.pending == 0 && c.ack_pending == 0)
        },
    );
    let text = metrics(&http, &server);
    let fetched = metric(
        &text,
        "dragoman_source_messages_total{route=\"orders\",action=\"fetched\"}",
    );
    let naked = metric(
        &text,
        "dragoman_source_messages_total{route=\"orders\",action=\"naked\"}",
    );
    assert_eq!(
        (fetched, naked),
        (50.0, 0.0),
        "each message fetched once, none naked"
    );
    let listing = http
        .send("GET", &format!("{}/v1/dlq", server.url()), &[], b"")
        .unwrap()
        .json();
    assert_eq!(
        listing["dead_letters"].as_array().unwrap().len(),
        0,
        "{listing}"
    );
}

/// One vendor message sent over HTTP with an `Idempotency-Key` and on the stream with the
/// same `Nats-Msg-Id` is one message, whichever door it comes through first. A message from
/// the stream keeps only the headers its route lists, and its `traceparent` is read whatever
/// the header's case.
#[test]
fn one_message_by_both_doors_is_one_message() {
    let stream = TestStream::create("DOORS");
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let source = stream.source_table("orders", DURABLE, "");
    let config = net::config(
        &webhook.sink_table("hook"),
        "\"hook\"",
        &format!("headers = [\"x-vendor-ref\"]\n{source}"),
    );
    let server = Server::start(dir.path(), &config);
    let http = Http::new();
    let url = format!("{}/v1/routes/orders/messages", server.url());
    let drained = || {
        stream
            .consumer(DURABLE)
            .is_some_and(|c| c.pending == 0 && c.ack_pending == 0)
    };

    // HTTP first, then the stream.
    let body = order(1, "D-1", "O");
    let reply = http
        .send(
            "POST",
            &url,
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "both-1"),
            ],
            &body,
        )
        .unwrap();
    assert_eq!(reply.status, 202, "{}", reply.text());
    let event = reply.json()["events"][0].as_str().unwrap().to_owned();
    stream.publish(&[("Nats-Msg-Id", "both-1")], &body);
    wait_until(
        Duration::from_secs(30),
        "the stream's copy to be taken",
        || {
            drained()
                && metric(
                    &metrics(&http, &server),
                    "dragoman_source_messages_total{route=\"orders\",action=\"acked\"}",
                ) >= 1.0
        },
    );

    // The stream first, then HTTP: answered with the stream's outcome.
    let trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let body = order(2, "D-2", "O");
    stream.publish(&[("Nats-Msg-Id", "both-2"), ("TraceParent", trace)], &body);
    wait_until(
        Duration::from_secs(30),
        "the stream's message at the webhook",
        || webhook.received().iter().any(|r| number(r) == 2),
    );
    let reply = http
        .send(
            "POST",
            &url,
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "both-2"),
            ],
            &body,
        )
        .unwrap();
    assert_eq!(reply.status, 200, "a duplicate: {}", reply.text());

    // A refused one shows what its dead letter kept of the headers.
    stream.publish(
        &[
            ("Nats-Msg-Id", "both-3"),
            ("X-Vendor-Ref", "R-3"),
            ("X-Unlisted", "secret"),
        ],
        &order(3, "D-3", "Z"),
    );
    wait_until(
        Duration::from_secs(30),
        "the refused message to be termed",
        || {
            drained()
                && metric(
                    &metrics(&http, &server),
                    "dragoman_source_messages_total{route=\"orders\",action=\"termed\"}",
                ) >= 1.0
        },
    );

    let received = webhook.received();
    let of = |n: usize| -> BTreeSet<String> {
        received
            .iter()
            .filter(|r| number(r) == n)
            .map(|r| r.id.clone())
            .collect()
    };
    assert_eq!(of(1), BTreeSet::from([event]), "one message by both doors");
    assert_eq!(of(2).len(), 1);
    assert_eq!(
        reply.json()["events"][0].as_str().unwrap(),
        of(2).first().unwrap()
    );
    let traced = received.iter().find(|r| number(r) == 2).unwrap();
    assert!(
        traced
            .traceparent
            .starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "the stream's trace context carried on: {}",
        traced.traceparent
    );
    let listing = http
        .send("GET", &format!("{}/v1/dlq", server.url()), &[], b"")
        .unwrap()
        .json();
    let id = listing["dead_letters"][0]["id"]
        .as_str()
        .expect("one dead letter");
    let shown = http
        .send("GET", &format!("{}/v1/dlq/{id}", server.url()), &[], b"")
        .unwrap()
        .json();
    let headers = shown["message"]["headers"].to_string();
    assert!(
        headers.contains("R-3"),
        "the listed header is kept: {headers}"
    );
    assert!(
        !headers.contains("secret"),
        "an unlisted header is not: {headers}"
    );

    // The source shows in the routes and in the picture.
    let routes = http
        .send("GET", &format!("{}/v1/routes", server.url()), &[], b"")
        .unwrap()
        .json();
    assert_eq!(
        routes["routes"]["orders"]["source"]["stream"],
        stream.name.as_str()
    );
    let picture = http
        .send(
            "GET",
            &format!("{}/v1/topology?format=mermaid", server.url()),
            &[],
            b"",
        )
        .unwrap()
        .text();
    assert!(
        picture.contains(&format!("JetStream {}", stream.name)),
        "{picture}"
    );
}

/// SIGTERM while the source consumes: the host stops fetching, finishes and acknowledges what
/// it holds, then exits; the consumer is left with nothing delivered and unacknowledged, and
/// the next start takes the rest.
#[test]
fn sigterm_finishes_and_acknowledges_what_is_in_hand() {
    let stream = TestStream::create("TERM");
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let source = stream.source_table("orders", DURABLE, "batch = 64\n");
    let config = net::config(&webhook.sink_table("hook"), "\"hook\"", &source);
    let total = 1_500;
    let messages: Vec<_> = (0..total)
        .map(|n| {
            let headers = vec![("Nats-Msg-Id".to_owned(), format!("t-{n}"))];
            (headers, order(n, &format!("T-{}", n % 50), "O"))
        })
        .collect();
    stream.publish_all(&messages);
    let mut server = Server::start(dir.path(), &config);
    wait_until(
        Duration::from_secs(60),
        "consumption to be under way",
        || webhook.counts().len() >= 100,
    );
    assert!(server.stop().success(), "a clean exit");
    let counts = stream.consumer(DURABLE).expect("the consumer");
    assert_eq!(
        counts.ack_pending, 0,
        "everything in hand was acknowledged: {counts:?}"
    );
    assert!(counts.pending > 0, "stopped before the end: {counts:?}");
    server.restart();
    wait_until(
        Duration::from_secs(120),
        "the rest after the restart",
        || webhook.counts().len() >= total,
    );
    let received = webhook.received();
    let numbers: BTreeSet<usize> = received.iter().map(number).collect();
    assert_eq!(numbers.len(), total, "every message once by number");
    assert_eq!(webhook.counts().len(), total, "one event id per message");
}
