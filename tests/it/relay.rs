//! The relay: order per partition key across retries, and a real NATS JetStream sink.

use std::collections::BTreeMap;
use std::time::Duration;

use tests::net::{self, Http, Server, Webhook, wait_until};

const RETRY_FAST: &str =
    "[routes.orders.retry]\nmax_attempts = 100\ninitial_backoff_ms = 5\nmax_backoff_ms = 50\n";

fn order(id: &str, qty: usize) -> String {
    format!(
        r#"{{"ord_id": "{id}", "ord_status": "O", "line_items": [{{"sku": "S", "qty": {qty}, "unit_prc": "1.00"}}]}}"#
    )
}

/// Sends order `P-{key}` with quantities `quantities`, for `keys` keys: each key's messages
/// one after another (so their commit order is known), the keys concurrently.
fn send_per_key(
    http: &Http,
    server: &Server,
    keys: usize,
    quantities: std::ops::RangeInclusive<usize>,
) {
    let url = format!("{}/v1/routes/orders/messages", server.url());
    let client = http.client();
    http.runtime().block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for key in 0..keys {
            let (client, url, quantities) = (client.clone(), url.clone(), quantities.clone());
            tasks.spawn(async move {
                for n in quantities {
                    let idempotency = format!("p{key}-n{n}");
                    let headers = [
                        ("content-type", "application/json"),
                        ("idempotency-key", idempotency.as_str()),
                    ];
                    let reply = net::send(
                        &client,
                        "POST",
                        &url,
                        &headers,
                        order(&format!("P-{key}"), n).into_bytes(),
                    )
                    .await
                    .unwrap();
                    assert_eq!(reply.status, 202);
                }
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
    });
}

/// Each partition key's quantities in the order the webhook first acknowledged its events.
fn arrival_order(webhook: &Webhook) -> BTreeMap<String, Vec<u64>> {
    let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let mut first = std::collections::BTreeSet::new();
    for received in webhook.received() {
        if first.insert(received.id.clone()) {
            let qty = received.data["items"][0]["quantity"].as_u64().unwrap();
            seen.entry(received.partition_key).or_default().push(qty);
        }
    }
    seen
}

#[test]
fn events_of_one_partition_key_arrive_in_commit_order_across_retries() {
    const KEYS: usize = 5;
    const PER_KEY: usize = 20;
    let webhook = Webhook::start();
    webhook.fail_one_in(3);
    let dir = tempfile::tempdir().unwrap();
    let sinks = webhook.sink_table("hook");
    let server = Server::start(dir.path(), &net::config(&sinks, "\"hook\"", RETRY_FAST));
    let http = Http::new();
    send_per_key(&http, &server, KEYS, 1..=PER_KEY);
    wait_until(Duration::from_secs(60), "every event at the sink", || {
        webhook.counts().len() == KEYS * PER_KEY
    });
    assert!(
        webhook.requests() > (KEYS * PER_KEY) as u64,
        "the sink failed some deliveries, so some were retried"
    );
    let seen = arrival_order(&webhook);
    assert_eq!(seen.len(), KEYS);
    for (key, quantities) in seen {
        let expected: Vec<u64> = (1..=PER_KEY as u64).collect();
        assert_eq!(quantities, expected, "partition {key} in commit order");
    }
}

#[test]
fn issue_8_a_sink_that_is_down_holds_up_neither_the_other_sink_nor_later_keys() {
    // More than the 2,048 events one relay pass used to read, then more after them.
    const KEYS: usize = 10;
    const FIRST: usize = 210;
    const LATER: usize = 3;
    let healthy = Webhook::start();
    let down = net::unused_addr();
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "{}\n[sinks.down]\ntype = \"http\"\nurl = \"http://{down}/events\"\n\
         [sinks.down.breaker]\nwait_in_open_ms = 200\nmax_wait_in_open_ms = 1000\n",
        healthy.sink_table("healthy")
    );
    // A long budget: the down sink's events wait, they are not dead-lettered.
    let retry = "[routes.orders.retry]\nmax_attempts = 100000\ninitial_backoff_ms = 50\nmax_backoff_ms = 1000\n";
    let server = Server::start(
        dir.path(),
        &net::config(&sinks, "\"healthy\", \"down\"", retry),
    );
    let http = Http::new();
    send_per_key(&http, &server, KEYS, 1..=FIRST);
    wait_until(
        Duration::from_secs(60),
        "every event at the healthy sink while the other is down",
        || healthy.counts().len() == KEYS * FIRST,
    );
    send_per_key(&http, &server, KEYS, FIRST + 1..=FIRST + LATER);
    wait_until(
        Duration::from_secs(20),
        "events sent after the backlog at the healthy sink",
        || healthy.counts().len() == KEYS * (FIRST + LATER),
    );
    let metrics = http
        .send("GET", &format!("{}/metrics", server.url()), &[], b"")
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.body).into_owned();
    assert!(
        metrics.contains("dragoman_publish_retries_total{sink=\"down\"}"),
        "the down sink was tried and failed"
    );
    assert!(
        metrics.contains("dragoman_breaker_transitions_total{breaker=\"down\",to=\"open\"}"),
        "and its breaker opened"
    );

    let back = Webhook::start_at(down);
    wait_until(
        Duration::from_secs(60),
        "every event at the sink once it is back",
        || back.counts().len() == KEYS * (FIRST + LATER),
    );
    let expected: Vec<u64> = (1..=(FIRST + LATER) as u64).collect();
    for (name, webhook) in [("healthy", &healthy), ("down", &back)] {
        let seen = arrival_order(webhook);
        assert_eq!(seen.len(), KEYS, "{name}");
        for (key, quantities) in seen {
            assert_eq!(
                quantities, expected,
                "{name}: partition {key} in commit order"
            );
        }
    }
    let dlq = http
        .send("GET", &format!("{}/v1/dlq", server.url()), &[], b"")
        .unwrap();
    assert_eq!(dlq.json()["dead_letters"], serde_json::json!([]));
}

/// A webhook sink `hook` that fails every delivery with 503, and its config table.
fn failing_hook() -> (Webhook, String) {
    let webhook = Webhook::start();
    webhook.fail_next(u32::MAX);
    let sinks = webhook.sink_table("hook");
    (webhook, sinks)
}

/// The count of `name` with `labels` in the host's metrics, 0 when absent.
fn metric(http: &Http, server: &Server, name_and_labels: &str) -> u64 {
    let reply = http
        .send("GET", &format!("{}/metrics", server.url()), &[], b"")
        .unwrap();
    String::from_utf8_lossy(&reply.body)
        .lines()
        .find_map(|line| line.strip_prefix(name_and_labels)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn issue_10_while_a_sink_s_breaker_is_open_it_sees_only_probes_and_nothing_is_dead_lettered() {
    const KEYS: usize = 10;
    let (webhook, hook) = failing_hook();
    let dir = tempfile::tempdir().unwrap();
    let sinks = format!(
        "{hook}[sinks.hook.breaker]\nminimum_calls = 5\nwait_in_open_ms = 300\nwait_multiplier = 1\nprobes = 1\n"
    );
    // A short budget in attempts: were they spent while the circuit is open, events would be
    // dead-lettered.
    let retry =
        "[routes.orders.retry]\nmax_attempts = 8\ninitial_backoff_ms = 10\nmax_backoff_ms = 20\n";
    let server = Server::start(dir.path(), &net::config(&sinks, "\"hook\"", retry));
    let http = Http::new();
    send_per_key(&http, &server, KEYS, 1..=3);
    let opened = "dragoman_breaker_transitions_total{breaker=\"hook\",to=\"open\"}";
    let probing = "dragoman_breaker_transitions_total{breaker=\"hook\",to=\"half_open\"}";
    wait_until(Duration::from_secs(20), "the breaker open", || {
        metric(&http, &server, opened) >= 1
    });
    let before = webhook.requests();
    let probes_before = metric(&http, &server, probing);
    wait_until(Duration::from_secs(20), "five more probes", || {
        metric(&http, &server, probing) >= probes_before + 5
    });
    let probes = metric(&http, &server, probing) - probes_before;
    let seen = webhook.requests() - before;
    assert!(
        seen <= probes + 1,
        "{seen} requests while the breaker let {probes} probes through"
    );
    webhook.fail_next(0);
    wait_until(
        Duration::from_secs(30),
        "every event once the sink is back",
        || webhook.counts().len() == KEYS * 3,
    );
    let order = arrival_order(&webhook);
    for (key, quantities) in order {
        assert_eq!(quantities, [1, 2, 3], "partition {key} in commit order");
    }
    let dlq = http
        .send("GET", &format!("{}/v1/dlq", server.url()), &[], b"")
        .unwrap();
    assert_eq!(dlq.json()["dead_letters"], serde_json::json!([]));
}

#[test]
fn issue_10_a_retry_budget_in_time_dead_letters_an_event_that_keeps_failing_that_long() {
    let (_webhook, sinks) = failing_hook();
    let dir = tempfile::tempdir().unwrap();
    // No count of attempts: only the time, one second from the first failure.
    let retry = "[routes.orders.retry]\nmax_retry_secs = 1\ninitial_backoff_ms = 100\nmax_backoff_ms = 100\n";
    let server = Server::start(dir.path(), &net::config(&sinks, "\"hook\"", retry));
    let http = Http::new();
    send_per_key(&http, &server, 1, 1..=1);
    let dlq = format!("{}/v1/dlq", server.url());
    wait_until(Duration::from_secs(30), "the event dead-lettered", || {
        !http.send("GET", &dlq, &[], b"").unwrap().json()["dead_letters"]
            .as_array()
            .unwrap()
            .is_empty()
    });
    let entry = http.send("GET", &dlq, &[], b"").unwrap().json()["dead_letters"][0].clone();
    let attempts = entry["attempts"].as_u64().unwrap();
    // About ten attempts 100 ms apart fit in the second; the bound allows a slow machine.
    assert!(
        (3..200).contains(&attempts),
        "{attempts} attempts in a one-second budget"
    );
    assert_eq!(entry["kind"]["kind"], "delivery");
}

#[test]
fn a_delivery_that_keeps_failing_is_dead_lettered_and_can_be_requeued() {
    let webhook = Webhook::start();
    webhook.fail_next(3);
    let dir = tempfile::tempdir().unwrap();
    let sinks = webhook.sink_table("hook");
    let retry =
        "[routes.orders.retry]\nmax_attempts = 3\ninitial_backoff_ms = 5\nmax_backoff_ms = 10\n";
    let server = Server::start(dir.path(), &net::config(&sinks, "\"hook\"", retry));
    let http = Http::new();
    let reply = http
        .send(
            "POST",
            &format!("{}/v1/routes/orders/messages", server.url()),
            &[("content-type", "application/json")],
            order("D-1", 1).as_bytes(),
        )
        .unwrap();
    assert_eq!(reply.status, 202);
    let event = reply.json()["events"][0].as_str().unwrap().to_owned();
    let message = reply.json()["message_id"].as_str().unwrap().to_owned();
    let dlq = format!("{}/v1/dlq", server.url());
    wait_until(
        Duration::from_secs(30),
        "the event in the dead letter channel",
        || {
            http.send("GET", &dlq, &[], b"").unwrap().json()["dead_letters"]
                .as_array()
                .unwrap()
                .len()
                == 1
        },
    );
    let entry = http.send("GET", &dlq, &[], b"").unwrap().json()["dead_letters"][0].clone();
    assert_eq!(entry["kind"]["kind"], "delivery");
    assert_eq!(entry["attempts"], 3);
    assert_eq!(webhook.requests(), 3);
    assert!(webhook.counts().is_empty());
    let replay = http
        .send(
            "POST",
            &format!("{dlq}/{}/replay", entry["id"].as_str().unwrap()),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(
        replay.status,
        200,
        "{}",
        String::from_utf8_lossy(&replay.body)
    );
    wait_until(
        Duration::from_secs(30),
        "the requeued event at the sink",
        || webhook.counts().contains_key(&event),
    );
    let state = http
        .send(
            "GET",
            &format!("{}/v1/messages/{message}", server.url()),
            &[],
            b"",
        )
        .unwrap()
        .json();
    assert_eq!(state["failed_attempts"], 3);
}

#[test]
fn nats_jetstream_receives_events_and_drops_a_republished_one() {
    let suffix = format!("{:08x}", rand::random::<u32>());
    let stream = format!("DRAGOMAN_TEST_{suffix}");
    let subject = format!("dragoman.test.{suffix}");
    let dir = tempfile::tempdir().unwrap();
    let nats = tests::nats_url();
    let sinks = format!(
        "[sinks.js]\ntype = \"nats\"\nurl = \"{nats}\"\nstream = \"{stream}\"\nsubject = \"{subject}\"\n"
    );
    let server = Server::start(dir.path(), &net::config(&sinks, "\"js\"", ""));
    let http = Http::new();
    let mut ids = Vec::new();
    for n in 0..5 {
        let reply = http
            .send(
                "POST",
                &format!("{}/v1/routes/orders/messages", server.url()),
                &[("content-type", "application/json")],
                order(&format!("N-{n}"), 1).as_bytes(),
            )
            .unwrap();
        assert_eq!(reply.status, 202);
        ids.push(reply.json()["events"][0].as_str().unwrap().to_owned());
    }
    http.runtime().block_on(async {
        let client = async_nats::connect(nats.as_str())
            .await
            .unwrap_or_else(|e| {
                panic!("NATS with JetStream at {nats} (tests/run provides one): {e}")
            });
        let js = async_nats::jetstream::new(client);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let mut count = 0;
        while count < 5 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {count} of 5 events reached the stream"
            );
            if let Ok(mut s) = js.get_stream(&stream).await {
                count = s.info().await.unwrap().state.messages;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The five orders have five partition keys, delivered side by side: find N-0's.
        let mut s = js.get_stream(&stream).await.unwrap();
        let mut first = None;
        for sequence in 1..=5 {
            let message = s.get_raw_message(sequence).await.unwrap();
            let envelope: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
            if envelope["id"] == ids[0].as_str() {
                first = Some((message, envelope));
            }
        }
        let (first, envelope) = first.expect("N-0's event is in the stream");
        assert_eq!(envelope["specversion"], "1.0");
        assert_eq!(envelope["type"], "order.created.v1");
        assert_eq!(envelope["data"]["id"], "N-0");
        assert_eq!(
            first.headers.get("Nats-Msg-Id").map(|v| v.as_str()),
            Some(ids[0].as_str())
        );

        // A re-publish of the same event (as after a crash between PubAck and marking it):
        // the server drops it by its Nats-Msg-Id.
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", ids[0].as_str());
        let ack = js
            .publish_with_headers(subject.clone(), headers, first.payload.clone())
            .await
            .unwrap()
            .await
            .unwrap();
        assert!(ack.duplicate, "JetStream deduplicates by event id");
        assert_eq!(s.info().await.unwrap().state.messages, 5);
        js.delete_stream(&stream).await.unwrap();
    });
}

/// Decodes `%XX` escapes (the CloudEvents HTTP binding's encoding of attribute values).
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap()
}

/// `ce-*` values outside printable ASCII, and space, `"` and `%`, are percent-encoded as the
/// CloudEvents HTTP binding asks; the webhook decodes the original subject.
#[test]
fn issue_8_a_non_ascii_subject_arrives_percent_encoded() {
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let sinks = webhook.sink_table("hook");
    let server = Server::start(dir.path(), &net::config(&sinks, "\"hook\"", ""));
    let http = Http::new();
    let url = format!("{}/v1/routes/orders/messages", server.url());
    let subject = "Zürich 1 \"q\" 100% ✓";
    let body = order(&subject.replace('"', "\\\""), 1);
    let reply = http
        .send(
            "POST",
            &url,
            &[("content-type", "application/json")],
            body.as_bytes(),
        )
        .unwrap();
    assert_eq!(
        reply.status,
        202,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    wait_until(Duration::from_secs(20), "the event at the webhook", || {
        !webhook.received().is_empty()
    });
    let received = webhook.received().remove(0);
    assert!(received.subject.is_ascii(), "{}", received.subject);
    assert!(!received.subject.contains(' '), "{}", received.subject);
    assert_eq!(percent_decode(&received.subject), subject);
    assert_eq!(percent_decode(&received.partition_key), subject);
}

/// An event carries the plugin version that produced it: on every delivery (`ce-plugin`,
/// `ce-pluginsha256`), and on its dead letter even after the route moved to another version.
#[test]
fn issue_8_a_delivery_dead_letter_names_the_plugin_that_produced_the_event() {
    let (webhook, sinks) = failing_hook();
    let dir = tempfile::tempdir().unwrap();
    let retry = |attempts: u32| {
        format!(
            "[routes.orders.retry]\nmax_attempts = {attempts}\ninitial_backoff_ms = 5\nmax_backoff_ms = 20\n"
        )
    };
    let v1 = net::config(&sinks, "\"hook\"", &retry(1_000_000));
    let mut server = Server::start(dir.path(), &v1);
    let http = Http::new();
    let admin = |server: &Server, path: &str| {
        http.send("GET", &format!("{}{path}", server.url()), &[], b"")
            .unwrap()
            .json()
    };
    let produced_by = admin(&server, "/v1/routes")["routes"]["orders"]["plugin"].clone();
    let reply = http
        .send(
            "POST",
            &format!("{}/v1/routes/orders/messages", server.url()),
            &[("content-type", "application/json")],
            order("PROV-1", 1).as_bytes(),
        )
        .unwrap();
    assert_eq!(reply.status, 202);
    wait_until(Duration::from_secs(20), "a failed attempt", || {
        webhook.requests() >= 1
    });

    // The route moves to the v2 translator, with one attempt left for what is pending.
    assert!(server.stop().success());
    server.set_config(&net::config(&sinks, "\"hook\"", &retry(1)).replace(
        tests::wasm::ACME_ERP_ORDERS,
        tests::wasm::ACME_ERP_ORDERS_V2,
    ));
    server.restart();
    let now_serving = admin(&server, "/v1/routes")["routes"]["orders"]["plugin"].clone();
    assert_ne!(now_serving["sha256"], produced_by["sha256"]);
    let mut entries = serde_json::Value::Null;
    wait_until(Duration::from_secs(20), "the delivery dead letter", || {
        entries = admin(&server, "/v1/dlq")["dead_letters"].clone();
        entries.as_array().is_some_and(|e| !e.is_empty())
    });
    let entry = &entries[0];
    assert_eq!(entry["kind"]["kind"], "delivery", "{entry}");
    assert_eq!(
        entry["plugin"],
        format!(
            "{}@{}",
            produced_by["name"].as_str().unwrap(),
            produced_by["version"].as_str().unwrap()
        )
    );
    assert_eq!(entry["plugin_sha256"], produced_by["sha256"]);

    // Once the sink takes events, a replayed delivery carries the producer too.
    webhook.fail_next(0);
    let id = entry["id"].as_str().unwrap();
    let replayed = http
        .send(
            "POST",
            &format!("{}/v1/dlq/{id}/replay", server.url()),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(replayed.status, 200);
    wait_until(Duration::from_secs(20), "the replayed delivery", || {
        !webhook.received().is_empty()
    });
    let received = webhook.received().remove(0);
    assert_eq!(received.plugin, entry["plugin"].as_str().unwrap());
    assert_eq!(
        received.plugin_sha256,
        produced_by["sha256"].as_str().unwrap()
    );
}

#[test]
fn issue_10_an_operator_sees_and_sets_each_sink_s_breaker() {
    let webhook = Webhook::start();
    let dir = tempfile::tempdir().unwrap();
    let sinks = webhook.sink_table("hook");
    let server = Server::start(dir.path(), &net::config(&sinks, "\"hook\"", ""));
    let http = Http::new();
    let breakers = format!("{}/v1/breakers", server.url());
    let listed = http.send("GET", &breakers, &[], b"").unwrap().json();
    assert_eq!(listed["breakers"]["hook"]["state"], "closed");

    // `dragoman breakers force-open hook`: the sink's events wait.
    let cli = |args: &[&str]| {
        let output = std::process::Command::new(tests::dragoman_bin())
            .arg("breakers")
            .args(args)
            .args(["--server", &server.url()])
            .output()
            .expect("dragoman runs");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };
    assert_eq!(cli(&["force-open", "hook"])["hook"]["state"], "forced_open");
    send_per_key(&http, &server, 1, 1..=1);
    wait_until(
        Duration::from_secs(10),
        "the event counted as pending",
        || metric(&http, &server, "dragoman_sink_pending{sink=\"hook\"}") == 1,
    );
    assert!(
        webhook.received().is_empty(),
        "nothing is tried while forced open"
    );
    assert_eq!(cli(&[])["breakers"]["hook"]["state"], "forced_open");

    let wrong = http
        .send("POST", &format!("{breakers}/hook?action=close"), &[], b"")
        .unwrap();
    assert_eq!(wrong.status, 400);
    let unknown = http
        .send("POST", &format!("{breakers}/nope?action=reset"), &[], b"")
        .unwrap();
    assert_eq!(unknown.status, 404);

    assert_eq!(cli(&["reset", "hook"])["hook"]["state"], "closed");
    wait_until(Duration::from_secs(10), "the event once reset", || {
        webhook.counts().len() == 1
    });
    assert_eq!(cli(&["disable", "hook"])["hook"]["state"], "disabled");
}

/// A host told to stop while its sweeper works through a large backlog of expired keys
/// stops between two batches, not after the whole sweep: on a large store a sweep takes
/// minutes, and the host waits for its relay. What is left is swept by the next run.
#[test]
fn a_host_stopped_mid_sweep_stops_between_two_batches() {
    use dragoman::outcome::{Accepted, Settled};
    use dragoman::storage::{Commit, Completed, Db, MessageRecord, Storage};

    const KEYS: u64 = 5_000;
    let dir = tempfile::tempdir().unwrap();
    let expired = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
    {
        let store = std::sync::Arc::new(Db::open(&dir.path().join("data")).unwrap());
        std::thread::scope(|scope| {
            for writer in 0..8 {
                let store = store.clone();
                scope.spawn(move || {
                    for n in (writer..KEYS).step_by(8) {
                        let (id, key) = (format!("m{n}"), format!("k{n}"));
                        let commit = Commit {
                            claim: None,
                            completed: Completed {
                                fingerprint: "f".into(),
                                settled: Settled::Accepted(Accepted {
                                    message_id: id.clone(),
                                    idempotency_key: key.clone(),
                                    events: vec![],
                                }),
                                expires_at: expired,
                            },
                            message: MessageRecord {
                                id,
                                route: "orders".into(),
                                key,
                                content_type: None,
                                headers: vec![],
                                body: b"{}".to_vec(),
                                received_at: expired,
                                cut: None,
                            },
                            events: vec![],
                            dead_letter: None,
                            resolves: None,
                            audit: vec![],
                            new_message: true,
                            entities: vec![],
                        };
                        store.commit(commit).unwrap();
                    }
                });
            }
        });
        Http::new().runtime().block_on(store.durable()).unwrap();
    }
    let config = format!(
        "listen = \"127.0.0.1:0\"\ndata_dir = \"{{data_dir}}\"\n\
         [sandbox]\ncache_dir = \"{{cache_dir}}\"\n\
         [relay]\nsweep_interval_secs = 1\n\
         [routes.orders]\nplugin = \"{}\"\n",
        tests::wasm::ACME_ERP_ORDERS
    );
    let mut server = Server::start(dir.path(), &config);
    let http = Http::new();
    wait_until(Duration::from_secs(30), "the sweep to begin", || {
        metric(&http, &server, "dragoman_swept_total ") > 0
    });
    assert!(server.stop().success(), "a clean exit");

    // The host left most of the backlog for its next run.
    let store = Db::open(&dir.path().join("data")).unwrap();
    let mut left = 0;
    for _ in 0..100 {
        let swept = store
            .sweep(jiff::Timestamp::now(), jiff::Timestamp::MIN, 1_000)
            .unwrap();
        left += swept.removed;
        if !swept.more {
            break;
        }
    }
    assert!(
        (KEYS / 2..KEYS).contains(&left),
        "the host swept some and left the rest ({left} of {KEYS} left)"
    );
}

/// One `429` with `Retry-After: 999999` (11.6 days) holds the partition key no longer than
/// the route's ceiling (`max_retry_after_ms`), and the events behind it follow.
#[test]
fn issue_25_a_sink_s_retry_after_is_honoured_only_up_to_the_ceiling() {
    let webhook = Webhook::start();
    webhook.throttle_next(1, 999_999);
    let dir = tempfile::tempdir().unwrap();
    let retry = "[routes.orders.retry]\nmax_retry_after_ms = 1500\n";
    let server = Server::start(
        dir.path(),
        &net::config(&webhook.sink_table("hook"), "\"hook\"", retry),
    );
    let http = Http::new();
    send_per_key(&http, &server, 1, 1..=3);
    wait_until(
        Duration::from_secs(20),
        "the three events past the 429",
        || webhook.counts().len() == 3,
    );
    assert_eq!(arrival_order(&webhook)["P-0"], [1, 2, 3]);
    assert!(webhook.requests() >= 4, "the first attempt was refused");
}

/// A key held by a `Retry-After` under the default ceiling (a minute) is delivered at once
/// when an operator releases it (`dragoman sinks retry`), and the audit trail says so.
#[test]
fn issue_25_an_operator_releases_a_held_sink_and_it_delivers_at_once() {
    let webhook = Webhook::start();
    webhook.throttle_next(1, 999_999);
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(
        dir.path(),
        &net::config(&webhook.sink_table("hook"), "\"hook\"", ""),
    );
    let http = Http::new();
    send_per_key(&http, &server, 1, 1..=2);
    wait_until(Duration::from_secs(10), "the refused attempt", || {
        webhook.requests() >= 1
            && metric(
                &http,
                &server,
                "dragoman_publish_retries_total{sink=\"hook\"}",
            ) >= 1
    });
    assert!(webhook.counts().is_empty(), "held for its Retry-After");
    let unknown = std::process::Command::new(tests::dragoman_bin())
        .args(["sinks", "retry", "nope", "--server", &server.url()])
        .output()
        .unwrap();
    assert!(!unknown.status.success());
    let released = std::process::Command::new(tests::dragoman_bin())
        .args(["sinks", "retry", "hook", "--server", &server.url()])
        .output()
        .unwrap();
    assert!(
        released.status.success(),
        "{}",
        String::from_utf8_lossy(&released.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&released.stdout).unwrap();
    assert_eq!(answer["released"], 1, "{answer}");
    assert_eq!(answer["partition_keys"][0], "P-0");
    wait_until(
        Duration::from_secs(10),
        "both events after the release",
        || webhook.counts().len() == 2,
    );
    assert_eq!(arrival_order(&webhook)["P-0"], [1, 2]);
    let history = http
        .send(
            "GET",
            &format!("{}/v1/messages/sink:hook/history", server.url()),
            &[],
            b"",
        )
        .unwrap();
    assert_eq!(
        history.status,
        200,
        "{}",
        String::from_utf8_lossy(&history.body)
    );
    let events = history.json()["events"].clone();
    assert_eq!(events[0]["kind"], "released");
    assert_eq!(events[0]["data"]["partition_keys"][0], "P-0");
}
