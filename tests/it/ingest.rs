//! Durable ingest over real HTTP: idempotency, answers, bad input.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use tests::net::{self, Http, Server, Webhook, wait_until};

fn order(id: &str) -> String {
    tests::seed_order().replacen("SEED-2026-000417", id, 1)
}

fn start(webhook: &Webhook, extra: &str) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let sinks = webhook.sink_table("hook");
    let server = Server::start(dir.path(), &net::config(&sinks, "\"hook\"", extra));
    (dir, server)
}

#[test]
fn concurrent_duplicates_commit_once_and_get_the_original_outcome() {
    const MESSAGES: usize = 200;
    let webhook = Webhook::start();
    let (_dir, server) = start(&webhook, "");
    let http = Http::new();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut sends: Vec<usize> = Vec::new();
    for i in 0..MESSAGES {
        let copies = 1 + (i * 7 + 3) % 5;
        sends.extend(std::iter::repeat_n(i, copies));
    }
    sends.shuffle(&mut rng);
    let total = sends.len();
    let url = format!("{}/v1/routes/orders/messages", server.url());
    let client = http.client();
    let replies: Vec<(usize, net::Reply)> = http.runtime().block_on(async {
        let queue = std::sync::Arc::new(tokio::sync::Mutex::new(sends));
        let mut workers = tokio::task::JoinSet::new();
        for _ in 0..16 {
            let queue = queue.clone();
            let client = client.clone();
            let url = url.clone();
            workers.spawn(async move {
                let mut out = Vec::new();
                loop {
                    let Some(i) = queue.lock().await.pop() else {
                        break;
                    };
                    let body = order(&format!("DUP-{i}")).into_bytes();
                    // A 409 means the first copy is still in flight: retry, as a client would.
                    let mut reply = None;
                    for _ in 0..200 {
                        let r = net::send(
                            &client,
                            "POST",
                            &url,
                            &[("content-type", "application/json")],
                            body.clone(),
                        )
                        .await
                        .unwrap();
                        if r.status != 409 {
                            reply = Some(r);
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    out.push((i, reply.expect("the in-flight copy finished")));
                }
                out
            });
        }
        let mut all = Vec::new();
        while let Some(done) = workers.join_next().await {
            all.extend(done.unwrap());
        }
        all
    });
    assert_eq!(replies.len(), total);

    let mut by_message: BTreeMap<usize, Vec<net::Reply>> = BTreeMap::new();
    for (i, reply) in replies {
        by_message.entry(i).or_default().push(reply);
    }
    let mut expected_ids = BTreeSet::new();
    for (i, replies) in &by_message {
        let originals: Vec<&net::Reply> = replies.iter().filter(|r| r.status == 202).collect();
        assert_eq!(
            originals.len(),
            1,
            "message {i}: exactly one delivery commits"
        );
        let original = originals[0];
        for duplicate in replies.iter().filter(|r| r.status != 202) {
            assert_eq!(duplicate.status, 200, "message {i}");
            assert_eq!(duplicate.headers["idempotent-replayed"], "true");
            assert_eq!(
                duplicate.body, original.body,
                "message {i}: the stored outcome, byte for byte"
            );
        }
        for id in original.json()["events"].as_array().unwrap() {
            expected_ids.insert(id.as_str().unwrap().to_owned());
        }
    }
    assert_eq!(expected_ids.len(), MESSAGES, "one event per order");
    wait_until(Duration::from_secs(60), "every event at the sink", || {
        webhook.counts().len() >= MESSAGES
    });
    let delivered: BTreeSet<String> = webhook.counts().into_keys().collect();
    assert_eq!(delivered, expected_ids);
    for r in webhook.received() {
        assert_eq!(
            r.idempotency_key, r.id,
            "the event id is the downstream idempotency key"
        );
        assert!(r.traceparent.starts_with("00-"), "{}", r.traceparent);
    }
    let metrics = http
        .send("GET", &format!("{}/metrics", server.url()), &[], b"")
        .unwrap();
    let text = String::from_utf8(metrics.body).unwrap();
    assert!(
        text.contains(&format!(
            "dragoman_messages_duplicate_total{{route=\"orders\"}} {}",
            total - MESSAGES
        )),
        "{text}"
    );
}

#[test]
fn keys_answers_and_problem_details() {
    let webhook = Webhook::start();
    let (_dir, server) = start(&webhook, "");
    let http = Http::new();
    let url = format!("{}/v1/routes/orders/messages", server.url());
    let json = [("content-type", "application/json")];

    // The caller's key wins over the plugin's.
    let first = http
        .send(
            "POST",
            &url,
            &[json[0], ("idempotency-key", "caller-key-1")],
            order("K-1").as_bytes(),
        )
        .unwrap();
    assert_eq!(first.status, 202);
    assert_eq!(first.json()["idempotency_key"], "caller-key-1");
    // Same key, different payload: 422 and nothing new.
    let reuse = http
        .send(
            "POST",
            &url,
            &[json[0], ("idempotency-key", "caller-key-1")],
            order("K-2").as_bytes(),
        )
        .unwrap();
    assert_eq!(reuse.status, 422);
    assert_eq!(reuse.headers["content-type"], "application/problem+json");
    assert_eq!(reuse.json()["type"], "urn:dragoman:problem:key-reuse");
    // No key from the caller or the plugin: the body's sha256.
    let body = br#"{"not": "an order"}"#;
    let hashed = http.send("POST", &url, &json, body).unwrap();
    assert_eq!(hashed.status, 422, "the plugin rejects it");
    assert!(hashed.json()["dead_letter"].is_string());
    let again = http.send("POST", &url, &json, body).unwrap();
    assert_eq!(
        (again.status, again.body.clone()),
        (422, hashed.body.clone()),
        "a rejection is remembered"
    );
    assert_eq!(again.headers["idempotent-replayed"], "true");

    // The same message id on two routes: keys are scoped per route (checked through the
    // translate endpoint, which stores nothing).
    let translated = http
        .send(
            "POST",
            &format!("{}/v1/routes/orders/translate", server.url()),
            &json,
            order("T-1").as_bytes(),
        )
        .unwrap();
    assert_eq!(translated.status, 200);
    assert_eq!(translated.json()["events"][0]["data"]["id"], "T-1");
    let dlq = http
        .send("GET", &format!("{}/v1/dlq", server.url()), &[], b"")
        .unwrap();
    assert_eq!(
        dlq.json()["dead_letters"].as_array().unwrap().len(),
        1,
        "translate stored nothing"
    );
}

#[test]
fn bad_input_gets_the_right_4xx_and_stores_nothing() {
    let webhook = Webhook::start();
    let (_dir, server) = start(&webhook, "");
    let http = Http::new();
    let base = server.url();
    let url = format!("{base}/v1/routes/orders/messages");
    let json = ("content-type", "application/json");
    let big = vec![b'x'; 10 << 20];
    let long_key = "k".repeat(10 << 10);
    /// What is sent, where, with which headers and body, and the status expected.
    type Case<'a> = (&'a str, String, Vec<(&'a str, &'a str)>, Vec<u8>, u16);
    let cases: Vec<Case> = vec![
        (
            "malformed JSON",
            url.clone(),
            vec![json],
            br#"{"ord_id": "X", "#.to_vec(),
            400,
        ),
        (
            "malformed XML",
            url.clone(),
            vec![("content-type", "application/xml")],
            b"<order><ord_id>X</order>".to_vec(),
            400,
        ),
        (
            "invalid UTF-8",
            url.clone(),
            vec![json],
            b"{\"ord_id\": \"\xff\xfe\"}".to_vec(),
            400,
        ),
        (
            "not a document",
            url.clone(),
            vec![json],
            b"hello there".to_vec(),
            415,
        ),
        ("empty body", url.clone(), vec![json], Vec::new(), 400),
        ("10 MiB body", url.clone(), vec![json], big, 413),
        (
            "10 KiB idempotency key",
            url.clone(),
            vec![json, ("idempotency-key", long_key.as_str())],
            order("Q-1").into_bytes(),
            400,
        ),
        (
            "unknown route",
            format!("{base}/v1/routes/nope/messages"),
            vec![json],
            order("Q-2").into_bytes(),
            404,
        ),
        (
            "unknown path",
            format!("{base}/v2/whatever"),
            vec![json],
            order("Q-3").into_bytes(),
            404,
        ),
    ];
    for (what, url, headers, body, status) in cases {
        let reply = http
            .send("POST", &url, &headers, &body)
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(
            reply.status,
            status,
            "{what}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        assert_eq!(
            reply.headers["content-type"], "application/problem+json",
            "{what}"
        );
        let problem = reply.json();
        assert_eq!(problem["status"], status, "{what}");
        assert!(
            problem["type"]
                .as_str()
                .unwrap()
                .starts_with("urn:dragoman:problem:"),
            "{what}"
        );
    }
    let wrong_method = http.send("GET", &url, &[], b"").unwrap();
    assert_eq!(wrong_method.status, 405);
    assert_eq!(wrong_method.headers["allow"], "POST");

    // A thousand headers: refused by the parser.
    let headers: Vec<(String, String)> = (0..1000)
        .map(|i| (format!("x-h-{i}"), "v".to_owned()))
        .collect();
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let many = http
        .send("POST", &url, &headers, order("Q-4").as_bytes())
        .unwrap();
    assert_eq!(many.status, 431, "the parser refuses a thousand headers");

    // Nothing was stored, nothing reached the sink, and the server still serves.
    let dlq = http
        .send("GET", &format!("{base}/v1/dlq"), &[], b"")
        .unwrap();
    assert_eq!(dlq.json()["dead_letters"].as_array().unwrap().len(), 0);
    let ok = http
        .send("POST", &url, &[json], order("Q-5").as_bytes())
        .unwrap();
    assert_eq!(ok.status, 202);
    wait_until(Duration::from_secs(30), "the one good event", || {
        webhook.counts().len() == 1
    });
    let metrics = String::from_utf8(
        http.send("GET", &format!("{base}/metrics"), &[], b"")
            .unwrap()
            .body,
    )
    .unwrap();
    assert!(
        metrics.contains("dragoman_messages_translated_total{route=\"orders\"} 1"),
        "{metrics}"
    );
}

/// A field that becomes an HTTP header (here the subject, from `ord_id`) with a control
/// character is refused before the answer: the message is dead-lettered as the plugin's
/// fault, not acknowledged and then retried as if the sink were failing.
#[test]
fn issue_8_a_control_character_in_a_header_field_is_refused_before_the_answer() {
    let webhook = Webhook::start();
    let (_dir, server) = start(&webhook, "");
    let http = Http::new();
    let url = format!("{}/v1/routes/orders/messages", server.url());
    for id in [r"CTL-\u0001X", r"CTL-line\nbreak"] {
        let reply = http
            .send(
                "POST",
                &url,
                &[("content-type", "application/json")],
                order(id).as_bytes(),
            )
            .unwrap();
        assert_eq!(
            reply.status,
            422,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let problem = reply.json();
        assert_eq!(problem["type"], "urn:dragoman:problem:plugin-fault");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("control character in its subject"),
            "{problem}"
        );
    }
    // The next message is served, and nothing of the refused ones reaches the sink.
    let ok = http
        .send(
            "POST",
            &url,
            &[("content-type", "application/json")],
            order("CTL-OK").as_bytes(),
        )
        .unwrap();
    assert_eq!(ok.status, 202);
    wait_until(
        Duration::from_secs(20),
        "the good event at the webhook",
        || !webhook.received().is_empty(),
    );
    let subjects: Vec<String> = webhook.received().into_iter().map(|r| r.subject).collect();
    assert_eq!(subjects, ["CTL-OK"]);
}
